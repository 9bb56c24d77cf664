//! Claims and leases: the claim (expired leases first, then due deliveries, within the cap),
//! lease tokens, the per-subscriber expiry index, `next_due` and `release`.
//!
//! A lease lives in its delivery's lock stripe (token, end, what the claim read) and in the
//! subscriber's expiry index, keyed by its end. A claim counts the subscriber's unexpired
//! leases from that index (`cap`), takes the expired ones out of it first (a new lease with a
//! new token, no attempt counted), then pops due deliveries from the ready index: no scan of
//! anything but the leases that actually expired. A stale token is refused by comparing it
//! with the stripe's lease, under the stripe's lock.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use herald_core::{
    ClaimRequest, ClaimedDelivery, DeliveryId, LeaseToken, StoreError, SubscriberId, UnixMillis,
};
use tracing::error;

use super::{Lease, SledStore};
use crate::error;
use crate::index::{Ready, SubscriberState};
use crate::keys;
use crate::records::{self, Claimed, Delivery, Status};

/// The smallest delivery id, for range bounds on `(ms, id)` keys.
fn min_id() -> DeliveryId {
    DeliveryId::from_bytes([0; 16])
}

impl SledStore {
    pub(super) fn claim_sync(
        &self,
        request: &ClaimRequest<'_>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let (subscriber, now) = (request.subscriber, request.now);
        if request.max == 0 {
            return Ok(Vec::new());
        }
        let Some(state) = self.subscribers.get(subscriber) else {
            return Ok(Vec::new());
        };
        let _turn = state.claiming.lock();
        // Expired leases (end ≤ now) come out of the index to be leased again; the rest count
        // against the cap.
        let (expired, mut room) = {
            let mut leases = state.leases.lock();
            let bound = (now.0.saturating_add(1), min_id());
            let expired_count = leases.range(..bound).count();
            let unexpired = leases.len() - expired_count;
            let cap = usize::try_from(request.cap).unwrap_or(usize::MAX);
            let room = request.max.min(cap.saturating_sub(unexpired));
            let mut expired = Vec::with_capacity(room.min(expired_count));
            while expired.len() < room {
                match leases.first_key_value() {
                    Some((&(until, _), _)) if until <= now.0 => {}
                    _ => break,
                }
                if let Some(entry) = leases.pop_first() {
                    expired.push(entry);
                }
            }
            (expired, room)
        };
        if room == 0 {
            return Ok(Vec::new());
        }
        let mut claimed = Vec::with_capacity(room);
        for ((_, id), token) in expired {
            room -= 1;
            match self.reclaim_expired(subscriber, &state, id, token, request) {
                Ok(Some(c)) => claimed.push(c),
                Ok(None) => {}
                Err(e) => {
                    error!(error = %e, subscriber = %subscriber, delivery = %id, "claiming an expired lease failed");
                }
            }
        }
        let popped: Vec<((u64, DeliveryId), Ready)> = state.ready.lock().pop_due(now.0, room);
        let mut rest = popped.into_iter();
        while let Some(((due, id), entry)) = rest.next() {
            match self.claim_one(subscriber, &state, id, entry, request, None) {
                Ok(Some(c)) => claimed.push(c),
                Ok(None) => {}
                Err(e) => {
                    // Nothing was changed for this one or the rest: give them back.
                    let mut ready = state.ready.lock();
                    ready.give_back(due, id, entry);
                    for ((due, id), entry) in rest {
                        ready.give_back(due, id, entry);
                    }
                    if claimed.is_empty() {
                        return Err(e);
                    }
                    error!(error = %e, subscriber = %subscriber, "claim stopped early");
                    break;
                }
            }
        }
        self.index_claim(&claimed, now);
        Ok(claimed)
    }

    /// Leases again a delivery whose lease expired, if that lease (`token`) is still the
    /// current one (its attempt may have finished since the claim took it out of the index).
    fn reclaim_expired(
        &self,
        subscriber: &SubscriberId,
        state: &SubscriberState,
        id: DeliveryId,
        token: LeaseToken,
        request: &ClaimRequest<'_>,
    ) -> Result<Option<ClaimedDelivery>, StoreError> {
        let old = {
            let mut stripe = self.delivery_lock(id);
            match stripe.take_lease(id, token) {
                Some(old) => old,
                None => return Ok(None),
            }
        };
        // The stripe lock is released for a moment: nobody can finish the old lease (it is
        // gone) and nobody else claims this delivery (claims of the subscriber are serialized).
        let ready = old.ready;
        let restore = |old: Lease| {
            // Put the old lease back (expired, so the next claim tries again).
            let until = old.until;
            self.delivery_lock(id).leased.insert(id, old);
            state.leases.lock().insert((until, id), token);
        };
        match self.claim_one(
            subscriber,
            state,
            id,
            ready,
            request,
            Some(old.record.clone()),
        ) {
            Ok(Some(c)) => Ok(Some(c)),
            Ok(None) => Ok(None),
            Err(e) => {
                restore(old);
                Err(e)
            }
        }
    }

    /// Leases one delivery: one point read (the event, for its payload), no write. `again`:
    /// the delivery was leased already (an expired lease), with the record that lease kept.
    /// `Ok(None)` when the delivery was unusable (then it was dead-lettered and logged).
    fn claim_one(
        &self,
        subscriber: &SubscriberId,
        state: &SubscriberState,
        id: DeliveryId,
        ready: Ready,
        request: &ClaimRequest<'_>,
        again: Option<Option<Box<Delivery>>>,
    ) -> Result<Option<ClaimedDelivery>, StoreError> {
        let now = request.now;
        let was = if again.is_some() {
            Status::InFlight
        } else {
            Status::Pending
        };
        let mut stripe = self.delivery_lock(id);
        let key = keys::event(ready.event_id);
        let value = self.tree.get(key).map_err(error::backend)?;
        let decoded = value.as_ref().map(|v| records::decode_event_head(v));
        let (head, range) = match decoded {
            Some(Ok(parts)) => parts,
            Some(Err(e)) => {
                let e = error::corrupt(&key, e);
                self.note_corrupt(&e);
                self.dead_letter_unreadable(state, id, was, now, &e.to_string())?;
                return Ok(None);
            }
            None => {
                self.dead_letter_unreadable(state, id, was, now, "event record missing")?;
                return Ok(None);
            }
        };
        let payload = match value {
            Some(v) => Bytes::from_owner(v).slice(range),
            None => Bytes::new(),
        };
        let ordering_key = head.ordering_key_for(subscriber).map(str::to_owned);
        let record = match again {
            Some(kept) => kept,
            None => ready.fresh.then(|| {
                Box::new(Delivery::fresh(
                    ready.event_id,
                    subscriber.clone(),
                    head.event_type.clone(),
                    head.received_at,
                    ordering_key.clone(),
                ))
            }),
        };
        // A never-attempted delivery's budget is its creation; otherwise the record says (it
        // may have been replayed), and is read back only when it is not kept already.
        let budget = match &record {
            Some(row) => row.budget(),
            None if ready.attempts == 0 => {
                herald_core::RetryBudget::new(UnixMillis(head.received_at))
            }
            None => match self.read_delivery(id) {
                Ok(Some(row)) => row.budget(),
                _ => herald_core::RetryBudget::new(UnixMillis(head.received_at)),
            },
        };
        let token = LeaseToken(self.next_token.fetch_add(1, Ordering::Relaxed));
        let until = request.lease_until.0;
        stripe.leased.insert(
            id,
            Lease {
                token,
                until,
                claimed_at: now.0,
                ready,
                record,
                indexed: false,
            },
        );
        state.leases.lock().insert((until, id), token);
        if was == Status::Pending {
            state.transition(Status::Pending, Status::InFlight);
        }
        Ok(Some(ClaimedDelivery {
            id,
            event_id: ready.event_id,
            subscriber: subscriber.clone(),
            event_type: head.event_type,
            attempt: ready.attempts.saturating_add(1),
            created_at: UnixMillis(head.received_at),
            payload,
            lease: token,
            lease_until: request.lease_until,
            budget,
            ordering_key: ordering_key.map(Into::into),
            traceparent: head.traceparent.map(Into::into),
        }))
    }

    /// Writes the `c` record of one claim: the finished index of every delivery it leased,
    /// one write for the lot instead of one `f` entry per finished delivery. On failure the
    /// leases stay unindexed and each finish writes its own `f` entry, as before.
    fn index_claim(&self, claimed: &[ClaimedDelivery], now: UnixMillis) {
        if claimed.is_empty() {
            return;
        }
        let record = Claimed {
            deliveries: claimed.iter().map(|c| (c.id, c.event_id)).collect(),
        };
        let seq = self.claim_seq.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.insert(&keys::claimed(now.0, seq), record.encode()) {
            tracing::warn!(error = %e, "claim index not written; finishes will index themselves");
            return;
        }
        for c in claimed {
            let mut stripe = self.delivery_lock(c.id);
            if let Some(lease) = stripe.leased.get_mut(&c.id) {
                if lease.token == c.lease {
                    lease.indexed = true;
                }
            }
        }
    }

    /// A delivery whose payload cannot be read can never be sent: dead-letter it with the
    /// reason, so it shows up in the dead list instead of blocking the subscriber. The caller
    /// holds the delivery's lock and has taken it out of the ready (or lease) index; `was` is
    /// the state it is counted in.
    fn dead_letter_unreadable(
        &self,
        state: &SubscriberState,
        id: DeliveryId,
        was: Status,
        now: UnixMillis,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut row = match self.read_delivery(id) {
            Ok(Some(row)) if row.status == Status::Pending => row,
            Ok(_) => return Ok(()),
            Err(e @ StoreError::Corrupt { .. }) => {
                self.note_corrupt(&e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        error!(delivery = %id, event = %row.event_id, reason, "dead-lettering a delivery whose payload cannot be read");
        row.updated_at = now.0;
        row.last_error = Some(format!("stored payload unreadable: {reason}"));
        self.write_finished(id, &mut row, Status::Dead, now.0, false)?;
        state.transition(was, Status::Dead);
        self.commit.request();
        state.finish_line(id);
        Ok(())
    }

    /// The earliest due time of the subscriber's pending deliveries or lease expiry.
    pub(super) fn next_due_sync(&self, subscriber: &SubscriberId) -> Option<UnixMillis> {
        let state = self.subscribers.get(subscriber)?;
        let due = state
            .ready
            .lock()
            .due
            .first_key_value()
            .map(|(&(due, _), _)| due);
        let expiry = state
            .leases
            .lock()
            .first_key_value()
            .map(|(&(until, _), _)| until);
        match (due, expiry) {
            (Some(a), Some(b)) => Some(UnixMillis(a.min(b))),
            (a, b) => a.or(b).map(UnixMillis),
        }
    }

    /// Ends the lease `token` of `id` without an attempt, due at `due`; returns the subscriber.
    pub(super) fn release_sync(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        due: UnixMillis,
    ) -> Result<SubscriberId, StoreError> {
        let mut stripe = self.delivery_lock(id);
        let mut row = self.read_delivery(id)?.ok_or(StoreError::NotFound(id))?;
        let Some(lease) = stripe.leased.get(&id) else {
            return Err(StoreError::LeaseLost(id));
        };
        if lease.token != token {
            return Err(StoreError::LeaseLost(id));
        }
        let until = lease.until;
        row.status = Status::Pending;
        row.due = due.0;
        row.updated_at = UnixMillis::now().0;
        self.write_delivery(id, &row)?;
        stripe.leased.remove(&id);
        let state = self.subscribers.get_or_create(&row.subscriber);
        state.leases.lock().remove(&(until, id));
        state.transition(Status::InFlight, Status::Pending);
        state.make_ready(due.0, id, row.ready(), row.ordering_key.as_deref());
        Ok(row.subscriber)
    }
}
