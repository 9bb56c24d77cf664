//! In-memory state per subscriber: the ready index, the ordering lines and the counts.
//!
//! All are derived from the `d` records, rebuilt by one scan at open and then maintained by
//! every transition (never by scanning again).
//!
//! ## Ordering lines (SPEC §9)
//!
//! An ordered delivery (its record has an `ordering_key`) belongs to its key's *line*: the
//! subscriber's unfinished deliveries with that key by acceptance order, which is delivery id
//! order (UUIDv7, generated at enqueue and monotonic within the process: `Uuid::now_v7`
//! guarantees it; event ids are not used, as they carry the caller's `received_at`). sled is
//! one node, so no other node's clock takes part; across a restart the order holds as long as
//! the wall clock did not step back past the last id written before it.
//!
//! Only a line's *head* — its first delivery, when nothing of the line is leased — sits in the
//! ready index; the others wait in the line with their due time. A claim therefore pops heads
//! only, without looking at what waits behind them; a finish (delivered, dead) removes the head
//! from its line and puts the next one in the ready index at its due time; a retry or release
//! puts the head back at its new due time; a delivery made pending again (retry of a dead one,
//! redrive, replay) enters its line by acceptance order and takes the head's place in the ready
//! index if it is earlier (once no attempt of the line is under way).

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

/// A delivery in its key's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Pending, due at `due` (in the ready index only when it is the line's head).
    Waiting { due: u64, ready: Ready },
    /// Leased; `attempts` finished before this attempt.
    Leased { attempts: u32 },
}

impl Slot {
    fn attempts(self) -> u32 {
        match self {
            Self::Waiting { ready, .. } => ready.attempts,
            Self::Leased { attempts } => attempts,
        }
    }
}

/// One key's unfinished deliveries, by acceptance order (delivery id).
#[derive(Debug, Default)]
struct Line {
    members: BTreeMap<DeliveryId, Slot>,
    /// Members leased now (0 or 1).
    leased: u32,
    /// The member in the ready index, under this (due, id) key.
    promoted: Option<(u64, DeliveryId)>,
}

impl Line {
    /// The head failed at least once and is not finished: the key is blocked on it.
    fn blocked(&self) -> bool {
        self.members
            .first_key_value()
            .is_some_and(|(_, slot)| slot.attempts() > 0)
    }
}

/// The ready index and the ordering lines, under one lock so that a claim and a transition
/// always agree on which member of a line is its head.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// The claimable candidates: keyless deliveries and the heads of lines.
    pub(crate) due: ReadyIndex,
    lines: HashMap<Arc<str>, Line>,
    /// Ordered, unfinished delivery → its line's key.
    keyed: HashMap<DeliveryId, Arc<str>>,
    /// Lines whose head failed at least once (the blocked-keys gauge).
    blocked: u64,
}

impl Queue {
    /// A pending delivery (new, retried, released, revived) due at `due`; `key` when ordered.
    pub(crate) fn insert(&mut self, due: u64, id: DeliveryId, ready: Ready, key: Option<&str>) {
        let Some(key) = key else {
            self.due.insert((due, id), ready);
            return;
        };
        let key: Arc<str> = match self.keyed.get(&id) {
            Some(k) => Arc::clone(k),
            None => match self.lines.get_key_value(key) {
                Some((k, _)) => Arc::clone(k),
                None => Arc::from(key),
            },
        };
        self.keyed.insert(id, Arc::clone(&key));
        self.change(&key, |line| {
            let old = line.members.insert(id, Slot::Waiting { due, ready });
            if let Some(Slot::Leased { .. }) = old {
                line.leased = line.leased.saturating_sub(1);
            }
        });
    }

    /// Takes claimable entries due at or before `now`, at most `room`, earliest first; ordered
    /// ones are marked leased in their line (nothing else of it is claimable until they end).
    pub(crate) fn pop_due(&mut self, now: u64, room: usize) -> Vec<((u64, DeliveryId), Ready)> {
        let mut popped = Vec::with_capacity(room.min(self.due.len()));
        while popped.len() < room {
            match self.due.first_key_value() {
                Some((&(due, _), _)) if due <= now => {}
                _ => break,
            }
            let Some(((due, id), ready)) = self.due.pop_first() else {
                break;
            };
            if let Some(key) = self.keyed.get(&id).cloned() {
                self.change(&key, |line| {
                    line.promoted = None;
                    line.leased += 1;
                    line.members.insert(
                        id,
                        Slot::Leased {
                            attempts: ready.attempts,
                        },
                    );
                });
            }
            popped.push(((due, id), ready));
        }
        popped
    }

    /// Puts back an entry [`pop_due`](Self::pop_due) took, unclaimed (a claim that failed).
    pub(crate) fn give_back(&mut self, due: u64, id: DeliveryId, ready: Ready) {
        let key = self.keyed.get(&id).cloned();
        self.insert(due, id, ready, key.as_deref());
    }

    /// A delivery finished (delivered or dead): out of its line, the next one becomes the head.
    pub(crate) fn finished(&mut self, id: DeliveryId) {
        let Some(key) = self.keyed.remove(&id) else {
            return;
        };
        self.change(&key, |line| {
            if let Some(Slot::Leased { .. }) = line.members.remove(&id) {
                line.leased = line.leased.saturating_sub(1);
            }
        });
    }

    /// Keys blocked on a failing head.
    pub(crate) fn blocked(&self) -> u64 {
        self.blocked
    }

    /// Applies `f` to the line of `key`, then puts the right member (if any) in the ready index
    /// and keeps the blocked count.
    fn change(&mut self, key: &Arc<str>, f: impl FnOnce(&mut Line)) {
        let line = self.lines.entry(Arc::clone(key)).or_default();
        let was_blocked = line.blocked();
        f(line);
        let is_blocked = line.blocked();
        let head = match line.members.first_key_value() {
            Some((&id, &Slot::Waiting { due, ready })) if line.leased == 0 => {
                Some((due, id, ready))
            }
            _ => None,
        };
        let wanted = head.map(|(due, id, _)| (due, id));
        if line.promoted != wanted {
            if let Some(old) = line.promoted.take() {
                self.due.remove(&old);
            }
            if let Some((due, id, ready)) = head {
                self.due.insert((due, id), ready);
            }
            line.promoted = wanted;
        }
        if line.members.is_empty() {
            self.lines.remove(key);
        }
        match (was_blocked, is_blocked) {
            (false, true) => self.blocked += 1,
            (true, false) => self.blocked = self.blocked.saturating_sub(1),
            _ => {}
        }
    }
}

/// Leases by (lease_until ms, id) → token: which leases expire first, and how many are out.
pub(crate) type LeaseIndex = BTreeMap<(u64, DeliveryId), LeaseToken>;

/// One subscriber's pending deliveries, its leases and its counts by state.
#[derive(Debug, Default)]
pub(crate) struct SubscriberState {
    /// Only this subscriber's pump and transitions of this subscriber's deliveries take this
    /// lock. Invariant: a delivery is in here exactly when its record is pending and not leased,
    /// under the key of its due time.
    pub(crate) ready: Mutex<Queue>,
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

    /// Makes a pending delivery claimable at `due` (when ordered by `key`: once it is the
    /// head of its line).
    pub(crate) fn make_ready(&self, due: u64, id: DeliveryId, ready: Ready, key: Option<&str>) {
        self.ready.lock().insert(due, id, ready, key);
    }

    /// A delivery finished (delivered or dead): its line, if any, moves on.
    pub(crate) fn finish_line(&self, id: DeliveryId) {
        self.ready.lock().finished(id);
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
