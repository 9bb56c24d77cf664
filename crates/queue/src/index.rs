//! In-memory state per subscriber: the ready index and the counts.
//!
//! Both are derived from the `d` records, rebuilt by one scan at open and then maintained by
//! every transition (never by scanning again).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use herald_core::{DeliveryId, EventId, LeaseToken, QueueCounts, SubscriberId};
use parking_lot::{Mutex, RwLock};

use crate::records::Status;

/// What a claim needs besides the payload, kept with the ready entry so a claim does not read
/// the delivery record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) event_id: EventId,
    /// Attempts finished so far.
    pub(crate) attempts: u32,
    /// The record on disk is still exactly as enqueued (`Delivery::fresh`), so the claim can
    /// rebuild it from the event it reads anyway and the attempt's result need not read it back.
    pub(crate) fresh: bool,
}

/// Pending deliveries by (due ms, id): earliest due first, ties in creation order.
pub(crate) type ReadyIndex = BTreeMap<(u64, DeliveryId), Ready>;

/// Leases by (lease_until ms, id) → token: which leases expire first, and how many are out.
pub(crate) type LeaseIndex = BTreeMap<(u64, DeliveryId), LeaseToken>;

/// One subscriber's pending deliveries, its leases and its counts by state.
#[derive(Debug, Default)]
pub(crate) struct SubscriberState {
    /// Only this subscriber's pump and transitions of this subscriber's deliveries take this
    /// lock. Invariant: a delivery is in here exactly when its record is pending and not leased,
    /// under the key of its due time.
    pub(crate) ready: Mutex<ReadyIndex>,
    /// The expiry index of this subscriber's leases. Invariant: a delivery is in here exactly
    /// when it is leased (its stripe holds the lease with the same token and end), except for
    /// the moment a claim takes an expired entry out to lease it again.
    pub(crate) leases: Mutex<LeaseIndex>,
    /// Serializes this subscriber's claims, so the cap (counted from `leases`) is exact. The
    /// pump is the only claimer of its subscriber, so nobody waits on it in practice.
    pub(crate) claiming: Mutex<()>,
    pending: AtomicU64,
    in_flight: AtomicU64,
    delivered: AtomicU64,
    dead: AtomicU64,
}

impl SubscriberState {
    fn counter(&self, status: Status) -> &AtomicU64 {
        match status {
            Status::Pending => &self.pending,
            Status::InFlight => &self.in_flight,
            Status::Delivered => &self.delivered,
            Status::Dead => &self.dead,
        }
    }

    pub(crate) fn add(&self, status: Status) {
        self.counter(status).fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, status: Status) {
        // Transitions of one delivery are serialized and each increments its new state before
        // decrementing the old one, so this never goes below zero; saturate anyway.
        let _ = self
            .counter(status)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Makes a pending delivery claimable at `due`.
    pub(crate) fn make_ready(&self, due: u64, id: DeliveryId, ready: Ready) {
        self.ready.lock().insert((due, id), ready);
    }

    /// Moves one delivery's count from `from` to `to`.
    pub(crate) fn transition(&self, from: Status, to: Status) {
        self.add(to);
        self.remove(from);
    }

    pub(crate) fn counts(&self) -> QueueCounts {
        QueueCounts {
            pending: self.pending.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
        }
    }
}

/// Subscriber id → state. Read-mostly: a write lock is taken only when a subscriber is seen
/// for the first time.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    map: RwLock<HashMap<SubscriberId, Arc<SubscriberState>>>,
}

impl Subscribers {
    pub(crate) fn get(&self, id: &SubscriberId) -> Option<Arc<SubscriberState>> {
        self.map.read().get(id).cloned()
    }

    pub(crate) fn get_or_create(&self, id: &SubscriberId) -> Arc<SubscriberState> {
        if let Some(s) = self.get(id) {
            return s;
        }
        Arc::clone(self.map.write().entry(id.clone()).or_default())
    }

    pub(crate) fn all(&self) -> Vec<(SubscriberId, Arc<SubscriberState>)> {
        self.map
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn transitions_move_counts() {
        let s = SubscriberState::default();
        s.add(Status::Pending);
        s.add(Status::Pending);
        s.transition(Status::Pending, Status::InFlight);
        s.transition(Status::InFlight, Status::Dead);
        assert_eq!(
            s.counts(),
            QueueCounts {
                pending: 1,
                in_flight: 0,
                delivered: 0,
                dead: 1
            }
        );
        s.remove(Status::Delivered);
        assert_eq!(s.counts().delivered, 0);
    }

    #[test]
    fn get_or_create_returns_the_same_state() {
        let subs = Subscribers::default();
        let id = SubscriberId::new("a").unwrap();
        assert!(subs.get(&id).is_none());
        let a = subs.get_or_create(&id);
        a.add(Status::Pending);
        assert_eq!(subs.get_or_create(&id).counts().pending, 1);
        assert_eq!(subs.all().len(), 1);
    }
}
