//! Reads: deliveries (`get`, `list`), events (`get_event`, `list_events`), counts and pauses.

use std::ops::Bound;

use bytes::Bytes;
use herald_core::{
    DeliveryDetails, DeliveryId, DeliveryPage, DeliveryStatus, EventDelivery, EventDetails,
    EventId, EventPage, EventQuery, ListQuery, QueueCounts, StoreError, SubscriberId,
};

use super::{SledStore, DEFAULT_PAGE_SIZE, MAX_LIST_SCAN, MAX_PAGE_SIZE};
use crate::error;
use crate::keys;
use crate::records::{self, Attempt, Delivery, EventMeta};

impl SledStore {
    /// The stored payload of an event, exactly as enqueued (shares sled's buffer, no copy).
    pub fn event_payload(&self, event_id: EventId) -> Result<Option<Bytes>, StoreError> {
        let key = keys::event(event_id);
        let Some(value) = self.tree.get(key).map_err(error::backend)? else {
            return Ok(None);
        };
        let range = records::event_payload_range(&value).map_err(|e| error::corrupt(&key, e))?;
        Ok(Some(Bytes::from_owner(value).slice(range)))
    }

    fn list_page(
        &self,
        query: &ListQuery,
        limit: usize,
        mut rows: impl Iterator<Item = Result<(DeliveryId, Option<Delivery>), StoreError>>,
    ) -> Result<DeliveryPage, StoreError> {
        let mut out: Vec<DeliveryDetails> = Vec::with_capacity(limit.min(256));
        let mut scanned = 0usize;
        for item in rows.by_ref() {
            let (id, row) = item?;
            scanned += 1;
            if let Some(row) = row {
                let row = self.delivery_lock(id).current(id, row);
                let wanted = query
                    .subscriber
                    .as_ref()
                    .is_none_or(|s| *s == row.subscriber)
                    && query.status.is_none_or(|s| s == row.status.public());
                if wanted {
                    if out.len() == limit {
                        // One more match exists: the page is full and not the last.
                        let next_cursor = out.last().map(|d| d.record.id);
                        return Ok(DeliveryPage {
                            deliveries: out,
                            next_cursor,
                        });
                    }
                    out.push(DeliveryDetails {
                        record: row.public(id),
                        attempts: row.history.iter().map(Attempt::public).collect(),
                    });
                }
            }
            if scanned >= MAX_LIST_SCAN {
                // Scan budget spent: hand back what we have and where to resume.
                return Ok(DeliveryPage {
                    deliveries: out,
                    next_cursor: Some(id),
                });
            }
        }
        Ok(DeliveryPage {
            deliveries: out,
            next_cursor: None,
        })
    }

    pub(super) fn get_sync(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        let stripe = self.delivery_lock(id);
        Ok(self.read_delivery(id)?.map(|row| {
            let row = stripe.current(id, row);
            DeliveryDetails {
                record: row.public(id),
                attempts: row.history.iter().map(Attempt::public).collect(),
            }
        }))
    }

    pub(super) fn list_sync(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
        let limit = match query.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        if let (Some(sub), Some(DeliveryStatus::Dead)) = (&query.subscriber, query.status) {
            // The dead index is per subscriber and in id order.
            let prefix = keys::dead_prefix(sub);
            let start = match query.cursor {
                Some(c) => Bound::Excluded(keys::dead(sub, c)),
                None => Bound::Included(prefix.clone()),
            };
            let end = Bound::Excluded(keys::prefix_end(&prefix));
            let rows = self.tree.range((start, end)).filter_map(|item| {
                let (key, _) = match item {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(error::backend(e))),
                };
                let id = keys::dead_id(&key)?;
                match self.read_delivery(id) {
                    Ok(row) => Some(Ok((id, row))),
                    Err(e @ StoreError::Corrupt { .. }) => {
                        self.note_corrupt(&e);
                        Some(Ok((id, None)))
                    }
                    Err(e) => Some(Err(e)),
                }
            });
            return self.list_page(query, limit, rows);
        }
        let start = match query.cursor {
            Some(c) => Bound::Excluded(keys::delivery(c).to_vec()),
            None => Bound::Included(vec![keys::DELIVERY]),
        };
        let end = Bound::Excluded(vec![keys::DELIVERY + 1]);
        let rows = self.tree.range((start, end)).filter_map(|item| {
            let (key, value) = match item {
                Ok(kv) => kv,
                Err(e) => return Some(Err(error::backend(e))),
            };
            let id = DeliveryId::from_bytes(keys::id_of(&key)?);
            match Delivery::decode(&value) {
                Ok(row) => Some(Ok((id, Some(row)))),
                Err(e) => {
                    self.note_corrupt(&error::corrupt(&key, e));
                    Some(Ok((id, None)))
                }
            }
        });
        self.list_page(query, limit, rows)
    }

    pub(super) fn counts_sync(&self, subscriber: &SubscriberId) -> QueueCounts {
        self.subscribers
            .get(subscriber)
            .map(|s| s.counts())
            .unwrap_or_default()
    }

    /// Every subscriber seen since open, with its counts: one whose deliveries were all purged
    /// stays listed at zero, so its gauges fall to 0.
    pub(super) fn all_counts_sync(&self) -> Vec<(SubscriberId, QueueCounts)> {
        let mut all: Vec<(SubscriberId, QueueCounts)> = self
            .subscribers
            .all()
            .into_iter()
            .map(|(id, s)| (id, s.counts()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(super) fn paused_sync(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([keys::PAUSE]) {
            let (key, value) = item.map_err(error::backend)?;
            let id = std::str::from_utf8(&key[1..])
                .ok()
                .and_then(|s| SubscriberId::new(s).ok());
            let Some(id) = id else {
                self.note_corrupt(&error::bad_key(&key, "pause key is not a subscriber id"));
                continue;
            };
            match records::decode_pause(&value) {
                Ok(reason) => out.push((id, reason)),
                Err(e) => self.note_corrupt(&error::corrupt(&key, e)),
            }
        }
        Ok(out)
    }

    pub(super) fn get_event_sync(&self, id: EventId) -> Result<Option<EventDetails>, StoreError> {
        let key = keys::event(id);
        let Some(value) = self.tree.get(key).map_err(error::backend)? else {
            return Ok(None);
        };
        let meta = records::decode_event_meta(&value).map_err(|e| error::corrupt(&key, e))?;
        let range = records::event_payload_range(&value).map_err(|e| error::corrupt(&key, e))?;
        let payload = Bytes::from_owner(value).slice(range);
        let mut deliveries = Vec::with_capacity(meta.deliveries.len());
        for (delivery, subscriber) in &meta.deliveries {
            let stripe = self.delivery_lock(*delivery);
            match self.read_delivery(*delivery) {
                Ok(Some(row)) => deliveries.push(EventDelivery {
                    id: *delivery,
                    subscriber: subscriber.clone(),
                    status: stripe.current(*delivery, row).status.public(),
                }),
                Ok(None) => {} // purged
                Err(e @ StoreError::Corrupt { .. }) => self.note_corrupt(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(event_details(id, meta, payload, deliveries)))
    }

    /// Events in id (acceptance) order: `since`/`until` are a key range (ids carry their
    /// acceptance time), the type is a filter; at most [`MAX_LIST_SCAN`] records per call.
    /// Listed events come without their deliveries.
    pub(super) fn list_events_sync(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let limit = match query.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let since = keys::event_at(query.since.map_or(0, |s| s.0)).to_vec();
        let start = match query.cursor {
            Some(c) if keys::event(c)[..] >= since[..] => Bound::Excluded(keys::event(c).to_vec()),
            _ => Bound::Included(since),
        };
        let end = match query.until {
            Some(u) => Bound::Excluded(keys::event_at(u.0).to_vec()),
            None => Bound::Excluded(vec![keys::EVENT + 1]),
        };
        let mut events: Vec<EventDetails> = Vec::with_capacity(limit.min(256));
        let mut scanned = 0usize;
        for item in self.tree.range((start, end)) {
            let (key, value) = item.map_err(error::backend)?;
            let Some(id) = keys::id_of(&key).map(EventId::from_bytes) else {
                continue;
            };
            scanned += 1;
            let decoded = records::decode_event_meta(&value)
                .and_then(|meta| Ok((meta, records::event_payload_range(&value)?)));
            match decoded {
                Ok((meta, range)) => {
                    let in_window = query.since.is_none_or(|s| meta.received_at >= s.0)
                        && query.until.is_none_or(|u| meta.received_at < u.0);
                    let wanted = query
                        .event_type
                        .as_deref()
                        .is_none_or(|t| t == meta.event_type);
                    if in_window && wanted {
                        if events.len() == limit {
                            let next_cursor = events.last().map(|e| e.id);
                            return Ok(EventPage {
                                events,
                                next_cursor,
                            });
                        }
                        let payload = Bytes::from_owner(value).slice(range);
                        events.push(event_details(id, meta, payload, Vec::new()));
                    }
                }
                Err(e) => self.note_corrupt(&error::corrupt(&key, e)),
            }
            if scanned >= MAX_LIST_SCAN {
                return Ok(EventPage {
                    events,
                    next_cursor: Some(id),
                });
            }
        }
        Ok(EventPage {
            events,
            next_cursor: None,
        })
    }
}

fn event_details(
    id: EventId,
    meta: EventMeta,
    payload: Bytes,
    deliveries: Vec<EventDelivery>,
) -> EventDetails {
    EventDetails {
        id,
        event_type: meta.event_type,
        received_at: herald_core::UnixMillis(meta.received_at),
        ordering_key: meta.ordering_key,
        idempotency_key: meta.idempotency_key,
        traceparent: meta.traceparent,
        payload,
        deliveries,
    }
}
