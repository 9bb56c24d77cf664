//! The retention purge: finished deliveries, their events and expired idempotency keys, in
//! bounded chunks (see the crate docs for the claim records that index finishes).

use std::ops::Bound;

use herald_core::{DeliveryId, EventId, PurgeStats, StoreError, UnixMillis};
use tracing::info;

use super::{blocking, stripe, SledStore, KEY_STRIPES, PURGE_CHUNK};
use crate::error;
use crate::keys;
use crate::records::{self, Claimed, Delivery, Idempotency, Status};

impl SledStore {
    /// Removes an event once none of its deliveries remain. Deliveries are never added to an
    /// existing event and only purge removes them, so "all absent" cannot change under us.
    fn remove_event_if_unused(&self, event_id: EventId) -> Result<bool, StoreError> {
        let key = keys::event(event_id);
        let Some(value) = self.tree.get(key).map_err(error::backend)? else {
            return Ok(false);
        };
        let meta = match records::decode_event_meta(&value) {
            Ok(meta) => meta,
            Err(e) => {
                self.note_corrupt(&error::corrupt(&key, e));
                return Ok(false);
            }
        };
        for (id, _) in &meta.deliveries {
            if self
                .tree
                .contains_key(keys::delivery(*id))
                .map_err(error::backend)?
            {
                return Ok(false);
            }
        }
        self.remove(&key)?;
        Ok(true)
    }

    /// The next `PURGE_CHUNK` index entries in `start..end`; each purge pass removes the entries
    /// it has handled, so calling this again moves on.
    fn purge_chunk(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        self.tree
            .range(start..end)
            .take(PURGE_CHUNK)
            .collect::<Result<Vec<_>, _>>()
            .map_err(error::backend)
    }

    /// One chunk of the `f` index before `cutoff`; `Ok(true)` when nothing is left.
    fn purge_finished_step(
        &self,
        cutoff: UnixMillis,
        stats: &mut PurgeStats,
    ) -> Result<bool, StoreError> {
        let start = [keys::FINISHED];
        let end = keys::finished_bound(cutoff.0);
        {
            let chunk = self.purge_chunk(&start, &end)?;
            if chunk.is_empty() {
                return Ok(true);
            }
            let mut events = Vec::with_capacity(chunk.len());
            for (key, value) in &chunk {
                if let Ok(bytes) = <[u8; 16]>::try_from(value.as_ref()) {
                    events.push(EventId::from_bytes(bytes));
                }
                let Some((finished_at, id)) = keys::parse_finished(key) else {
                    self.note_corrupt(&error::bad_key(key, "malformed finished-index key"));
                    continue;
                };
                let _guard = self.delivery_lock(id);
                match self.read_delivery(id) {
                    Ok(Some(row)) if row.status.is_finished() && row.finished_at == finished_at => {
                        self.purge_delivery(id, &row, stats)?;
                    }
                    // Revived, finished again later (a newer entry exists), or already gone.
                    Ok(_) => {}
                    Err(e @ StoreError::Corrupt { .. }) => self.note_corrupt(&e),
                    Err(e) => return Err(e),
                }
            }
            events.sort_unstable();
            events.dedup();
            for event in events {
                if self.remove_event_if_unused(event)? {
                    stats.events += 1;
                }
            }
            // Index entries last: a crash before this point makes the next purge revisit them.
            // Keep one only if its delivery was revived and finished again at the very same
            // millisecond meanwhile (the key then belongs to that newer finish).
            for (key, _) in &chunk {
                if let Some((finished_at, id)) = keys::parse_finished(key) {
                    let _guard = self.delivery_lock(id);
                    if let Ok(Some(row)) = self.read_delivery(id) {
                        if row.status.is_finished() && row.finished_at == finished_at {
                            continue;
                        }
                    }
                    self.remove(key)?;
                } else {
                    self.remove(key)?;
                }
            }
        }
        Ok(false)
    }

    /// Removes one finished delivery (record, dead-index entry, counts); its event goes once no
    /// delivery of it is left. The caller holds the delivery's lock.
    fn purge_delivery(
        &self,
        id: DeliveryId,
        row: &Delivery,
        stats: &mut PurgeStats,
    ) -> Result<(), StoreError> {
        self.remove(&keys::delivery(id))?;
        if let Some(state) = self.subscribers.get(&row.subscriber) {
            state.remove(row.status);
        }
        stats.deliveries += 1;
        if row.status == Status::Dead {
            self.remove(&keys::dead(&row.subscriber, id))?;
        }
        Ok(())
    }

    /// The `c` records of claims made before `cutoff`. Each listed delivery is, by now:
    /// finished before the cutoff (purged), in flight or finished since (kept for a later
    /// pass), pending again (dropped: its next claim lists it anew) or gone (dropped). A record
    /// is rewritten with what it keeps, or removed when nothing is left.
    ///
    /// One chunk, from `from` on; `Ok(true)` when nothing is left.
    fn purge_claimed_step(
        &self,
        cutoff: UnixMillis,
        from: &mut Bound<Vec<u8>>,
        stats: &mut PurgeStats,
    ) -> Result<bool, StoreError> {
        let end = keys::claimed_bound(cutoff.0);
        {
            let chunk = self
                .tree
                .range::<Vec<u8>, _>((from.clone(), Bound::Excluded(end.to_vec())))
                .take(PURGE_CHUNK)
                .collect::<Result<Vec<_>, _>>()
                .map_err(error::backend)?;
            let Some((last, _)) = chunk.last() else {
                return Ok(true);
            };
            *from = Bound::Excluded(last.to_vec());
            for (key, value) in &chunk {
                let record = match Claimed::decode(value) {
                    Ok(record) => record,
                    Err(e) => {
                        // Kept (never dropped), counted, and skipped like any corrupt record.
                        self.note_corrupt(&error::corrupt(key, e));
                        continue;
                    }
                };
                let mut kept = Vec::new();
                let mut events = Vec::new();
                for (id, event) in record.deliveries {
                    let stripe = self.delivery_lock(id);
                    if stripe.leased.contains_key(&id) {
                        kept.push((id, event));
                        continue;
                    }
                    match self.read_delivery(id) {
                        Ok(Some(row)) if row.status.is_finished() => {
                            if row.finished_at < cutoff.0 {
                                self.purge_delivery(id, &row, stats)?;
                                events.push(event);
                            } else {
                                kept.push((id, event));
                            }
                        }
                        // Pending again (its next claim indexes it) or already gone.
                        Ok(_) => {}
                        Err(e @ StoreError::Corrupt { .. }) => {
                            self.note_corrupt(&e);
                            kept.push((id, event));
                        }
                        Err(e) => return Err(e),
                    }
                    drop(stripe);
                }
                events.sort_unstable();
                events.dedup();
                for event in events {
                    if self.remove_event_if_unused(event)? {
                        stats.events += 1;
                    }
                }
                // The record last: a crash before this point makes the next pass revisit it.
                if kept.is_empty() {
                    self.remove(key)?;
                } else {
                    self.insert(key, Claimed { deliveries: kept }.encode())?;
                }
            }
        }
        Ok(false)
    }

    /// One chunk of expired idempotency keys; `Ok(true)` when nothing is left.
    fn purge_keys_step(
        &self,
        cutoff: UnixMillis,
        stats: &mut PurgeStats,
    ) -> Result<bool, StoreError> {
        let start = [keys::IDEMPOTENCY_TTL];
        let end = keys::idempotency_ttl_bound(cutoff.0);
        {
            let chunk = self.purge_chunk(&start, &end)?;
            if chunk.is_empty() {
                return Ok(true);
            }
            for (ttl_key, _) in &chunk {
                if let Some((created, key)) = keys::parse_idempotency_ttl(ttl_key) {
                    let _guard = self.key_locks[stripe(key, KEY_STRIPES)].lock();
                    let mut k = Vec::with_capacity(1 + key.len());
                    k.push(keys::IDEMPOTENCY);
                    k.extend_from_slice(key);
                    if let Some(v) = self.tree.get(&k).map_err(error::backend)? {
                        // A key re-used after an interrupted enqueue has a newer time and its
                        // own expiry entry; only remove the receipt this entry belongs to.
                        let expired = Idempotency::decode(&v)
                            .map(|r| r.created_at == created)
                            .unwrap_or(true);
                        if expired {
                            self.remove(&k)?;
                            stats.idempotency_keys += 1;
                        }
                    }
                }
                self.remove(ttl_key)?;
            }
        }
        Ok(false)
    }

    /// The retention purge: claim records, then the `f` index, then idempotency keys, each in
    /// chunks of [`PURGE_CHUNK`] entries, letting other tasks run between chunks.
    pub(super) async fn purge_chunked(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        let _one_at_a_time = self.purge_lock.lock().await;
        let mut stats = PurgeStats::default();
        let mut from = Bound::Included(vec![keys::CLAIMED]);
        while !blocking(|| self.purge_claimed_step(cutoff, &mut from, &mut stats))? {
            tokio::task::yield_now().await;
        }
        while !blocking(|| self.purge_finished_step(cutoff, &mut stats))? {
            tokio::task::yield_now().await;
        }
        while !blocking(|| self.purge_keys_step(cutoff, &mut stats))? {
            tokio::task::yield_now().await;
        }
        if stats != PurgeStats::default() {
            info!(
                deliveries = stats.deliveries,
                events = stats.events,
                idempotency_keys = stats.idempotency_keys,
                "queue retention purge"
            );
        }
        Ok(stats)
    }
}
