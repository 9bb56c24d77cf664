//! Enqueue: storing events in the order that makes the event record the commit point, and
//! idempotency keys.

use std::collections::{HashMap, HashSet};

use herald_core::{
    DeliveryId, EnqueueReceipt, EventId, NewEvent, ReceiptDelivery, StoreError, SubscriberId,
};

use super::{stripe, SledStore, KEY_STRIPES};
use crate::error;
use crate::index::Ready;
use crate::keys;
use crate::records::{self, Delivery, EventMeta, Idempotency, Status};

/// The 16 bytes of a new event id stamped with its acceptance time: a UUIDv7 whose 48-bit
/// millisecond prefix is `received_ms` (the rest from a fresh UUIDv7: version, variant, and
/// the counter and random bits that keep ids unique and increasing within a millisecond). So
/// the `e` keys are in acceptance order, and a time window of events is one key range.
pub(crate) fn event_id_at(received_ms: u64) -> [u8; 16] {
    let mut bytes = EventId::generate().to_bytes();
    let ms = received_ms.min((1 << 48) - 1).to_be_bytes();
    bytes[..6].copy_from_slice(&ms[2..]);
    bytes
}

impl SledStore {
    fn stored_receipt(&self, key: &str) -> Result<Option<Idempotency>, StoreError> {
        let k = keys::idempotency(key);
        let Some(v) = self.tree.get(&k).map_err(error::backend)? else {
            return Ok(None);
        };
        let stored = match Idempotency::decode(&v) {
            Ok(s) => s,
            Err(e) => {
                // Treat as absent (the key will be rewritten) but say so.
                self.note_corrupt(&error::corrupt(&k, e));
                return Ok(None);
            }
        };
        if stored.deliveries.is_empty()
            || self
                .tree
                .contains_key(keys::event(stored.event_id))
                .map_err(error::backend)?
        {
            Ok(Some(stored))
        } else {
            Ok(None)
        }
    }

    /// Writes one event. Order: idempotency expiry entry and receipt, delivery records, then the
    /// event record (the commit point: a delivery without its event is an interrupted enqueue,
    /// removed at open). Only then does the delivery become claimable.
    fn store_event(&self, event: &NewEvent) -> Result<EnqueueReceipt, StoreError> {
        let event_id = EventId::from_bytes(event_id_at(event.received_at.0));
        let mut seen = HashSet::with_capacity(event.subscribers.len());
        let deliveries: Vec<(DeliveryId, SubscriberId)> = event
            .subscribers
            .iter()
            .filter(|s| seen.insert(*s))
            .map(|s| (DeliveryId::generate(), s.clone()))
            .collect();
        let received = event.received_at.0;

        if let Some(key) = &event.idempotency_key {
            self.insert(&keys::idempotency_ttl(received, key), Vec::new())?;
            let stored = Idempotency {
                event_id,
                deliveries: deliveries.clone(),
                created_at: received,
            };
            self.insert(&keys::idempotency(key), stored.encode())?;
        }

        if !deliveries.is_empty() {
            let written = self.write_new_deliveries(event, event_id, &deliveries);
            let meta = EventMeta {
                event_type: event.event_type.clone(),
                received_at: received,
                ordering_key: event.ordering_key.clone(),
                traceparent: event.traceparent.clone(),
                ordered_for: event.ordered_for.clone(),
                idempotency_key: event.idempotency_key.clone(),
                deliveries: deliveries.clone(),
            };
            let committed = written.and_then(|()| {
                self.insert(
                    &keys::event(event_id),
                    records::encode_event(&meta, &event.payload),
                )
            });
            if let Err(e) = committed {
                // Best effort: take back what was written (open would remove it anyway).
                for (id, _) in &deliveries {
                    let _ = self.tree.remove(keys::delivery(*id));
                }
                return Err(e);
            }
            for (id, sub) in &deliveries {
                let state = self.subscribers.get_or_create(sub);
                state.add(Status::Pending);
                state.make_ready(
                    received,
                    *id,
                    Ready {
                        event_id,
                        attempts: 0,
                        fresh: true,
                    },
                    event
                        .ordered_for
                        .contains(sub)
                        .then_some(event.ordering_key.as_deref())
                        .flatten(),
                );
            }
        }

        Ok(EnqueueReceipt {
            event_id,
            deliveries: deliveries
                .into_iter()
                .map(|(id, subscriber)| ReceiptDelivery { id, subscriber })
                .collect(),
            duplicate: false,
        })
    }

    fn write_new_deliveries(
        &self,
        event: &NewEvent,
        event_id: EventId,
        deliveries: &[(DeliveryId, SubscriberId)],
    ) -> Result<(), StoreError> {
        let received = event.received_at.0;
        for (id, sub) in deliveries {
            let ordering_key = event
                .ordering_key
                .clone()
                .filter(|_| event.ordered_for.contains(sub));
            let row = Delivery::fresh(
                event_id,
                sub.clone(),
                event.event_type.clone(),
                received,
                ordering_key,
            );
            self.write_delivery(*id, &row)?;
        }
        Ok(())
    }

    /// Stores the events (not yet durable: the trait's `enqueue` waits for the group commit).
    pub(crate) fn enqueue_sync(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<EnqueueReceipt>, StoreError> {
        // Hold the stripes of every idempotency key in this call (in order, so concurrent calls
        // cannot deadlock) for the whole call: two enqueues of one key cannot both create.
        let mut stripes: Vec<usize> = events
            .iter()
            .filter_map(|e| e.idempotency_key.as_deref())
            .map(|k| stripe(k.as_bytes(), KEY_STRIPES))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = stripes.iter().map(|&i| self.key_locks[i].lock()).collect();

        let mut receipts: Vec<EnqueueReceipt> = Vec::with_capacity(events.len());
        // Keys already handled in this very call → index of their receipt.
        let mut in_call: HashMap<&str, usize> = HashMap::new();
        for event in &events {
            if let Some(key) = event.idempotency_key.as_deref() {
                if let Some(&first) = in_call.get(key) {
                    let mut dup = receipts[first].clone();
                    dup.duplicate = true;
                    receipts.push(dup);
                    continue;
                }
                in_call.insert(key, receipts.len());
                if let Some(stored) = self.stored_receipt(key)? {
                    receipts.push(stored.receipt(true));
                    continue;
                }
            }
            receipts.push(self.store_event(event)?);
        }
        Ok(receipts)
    }
}
