//! The behaviour every [`DeliveryStore`] must show, as a reusable test suite.
//!
//! Each case takes a fresh, empty store and drives it only through the trait. A backend's tests
//! call [`run_all`] with a factory:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use herald_core::DeliveryStore;
//! # use herald_queue::{SledOptions, SledStore};
//! let dirs = parking_lot::Mutex::new(Vec::new());
//! herald_queue::conformance::run_all(&|| {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
//!     dirs.lock().push(dir); // keep the directory alive as long as the test
//!     Arc::new(store) as Arc<dyn DeliveryStore>
//! });
//! ```
//!
//! Call it from a plain `#[test]`, not from inside a tokio runtime: the cases that exercise
//! [`DeliveryStore::sync`] start their own runtime.
//!
//! Times are synthetic (around [`T0`]) except where the trait says the store reads the clock.
//! Panics (assertion failures) are the failure mode: this is test code.

// This module is a test suite shipped for other backends; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use herald_core::{
    AttemptRecord, DeliveryId, DeliveryStatus, DeliveryStore, EnqueueReceipt, ListQuery, NewEvent,
    Outcome, QueueCounts, StoreError, SubscriberId, UnixMillis,
};

/// The synthetic "now" the cases start from.
pub const T0: UnixMillis = UnixMillis(1_000_000);

/// One conformance case: a name and a function that gets a fresh store.
pub type Case = (&'static str, fn(&dyn DeliveryStore));

/// Every case, in the order [`run_all`] runs them.
pub const CASES: &[Case] = &[
    (
        "enqueue_creates_one_pending_delivery_per_subscriber",
        enqueue_creates_one_pending_delivery_per_subscriber,
    ),
    (
        "sync_resolves_for_concurrent_writers",
        sync_resolves_for_concurrent_writers,
    ),
    (
        "claim_takes_due_deliveries_in_due_order",
        claim_takes_due_deliveries_in_due_order,
    ),
    (
        "claims_are_isolated_per_subscriber",
        claims_are_isolated_per_subscriber,
    ),
    (
        "concurrent_claims_never_hand_out_a_delivery_twice",
        concurrent_claims_never_hand_out_a_delivery_twice,
    ),
    (
        "delivered_records_the_attempt",
        delivered_records_the_attempt,
    ),
    (
        "retry_reschedules_and_dead_stops",
        retry_reschedules_and_dead_stops,
    ),
    (
        "dead_deliveries_can_be_retried_and_redriven",
        dead_deliveries_can_be_retried_and_redriven,
    ),
    (
        "release_gives_back_without_an_attempt",
        release_gives_back_without_an_attempt,
    ),
    (
        "list_pages_in_id_order_with_filters",
        list_pages_in_id_order_with_filters,
    ),
    (
        "list_limit_defaults_and_clamps",
        list_limit_defaults_and_clamps,
    ),
    (
        "idempotency_key_returns_the_first_receipt",
        idempotency_key_returns_the_first_receipt,
    ),
    (
        "concurrent_enqueues_of_one_key_create_once",
        concurrent_enqueues_of_one_key_create_once,
    ),
    (
        "purge_removes_finished_and_expired",
        purge_removes_finished_and_expired,
    ),
    (
        "purge_keeps_events_with_remaining_deliveries",
        purge_keeps_events_with_remaining_deliveries,
    ),
    ("pause_state_round_trips", pause_state_round_trips),
    ("unknown_ids_and_subscribers", unknown_ids_and_subscribers),
    (
        "payload_is_stored_byte_for_byte",
        payload_is_stored_byte_for_byte,
    ),
    ("size_on_disk_is_reported", size_on_disk_is_reported),
];

/// Runs every case, each on a fresh store from `make`, and panics listing the failed ones.
pub fn run_all(make: &dyn Fn() -> Arc<dyn DeliveryStore>) {
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let store = make();
        let outcome = catch_unwind(AssertUnwindSafe(|| case(store.as_ref())));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} conformance case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// Helpers

/// A subscriber id (panics on an invalid one).
pub fn sub(id: &str) -> SubscriberId {
    SubscriberId::new(id).unwrap()
}

/// A new event for `subs`, received at `at`.
pub fn event(subs: &[&SubscriberId], at: UnixMillis, payload: &str) -> NewEvent {
    NewEvent {
        event_type: "TEST_EVENT".into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        subscribers: subs.iter().map(|s| (*s).clone()).collect(),
        idempotency_key: None,
        received_at: at,
    }
}

fn keyed(mut e: NewEvent, key: &str) -> NewEvent {
    e.idempotency_key = Some(key.into());
    e
}

/// An attempt record starting at `at` and lasting `ms`.
pub fn attempt(
    at: UnixMillis,
    status_code: Option<u16>,
    error: Option<&str>,
    ms: u64,
) -> AttemptRecord {
    AttemptRecord {
        attempt: 0,
        at,
        status_code,
        error: error.map(str::to_owned),
        duration_ms: ms,
    }
}

fn enqueue_one(store: &dyn DeliveryStore, e: NewEvent) -> EnqueueReceipt {
    let mut r = store.enqueue(vec![e]).unwrap();
    assert_eq!(r.len(), 1);
    r.remove(0)
}

/// Enqueues one event for `s` at `at` and returns its delivery id.
fn one(store: &dyn DeliveryStore, s: &SubscriberId, at: UnixMillis) -> DeliveryId {
    enqueue_one(store, event(&[s], at, "{}")).deliveries[0].id
}

fn far() -> UnixMillis {
    UnixMillis(T0.0 + 1_000_000_000)
}

fn lease() -> UnixMillis {
    UnixMillis(T0.0 + 30_000)
}

fn claim_ids(
    store: &dyn DeliveryStore,
    s: &SubscriberId,
    now: UnixMillis,
    max: usize,
) -> Vec<DeliveryId> {
    store
        .claim(s, now, lease(), max)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn status(store: &dyn DeliveryStore, id: DeliveryId) -> DeliveryStatus {
    store.get(id).unwrap().unwrap().record.status
}

fn counts(pending: u64, in_flight: u64, delivered: u64, dead: u64) -> QueueCounts {
    QueueCounts {
        pending,
        in_flight,
        delivered,
        dead,
    }
}

/// Claims `id` (which must be the subscriber's only due delivery) and finishes it dead.
fn make_dead(store: &dyn DeliveryStore, s: &SubscriberId, id: DeliveryId) {
    assert_eq!(claim_ids(store, s, far(), 1), vec![id]);
    store
        .finish_attempt(
            id,
            attempt(T0, Some(500), Some("HTTP 500"), 1),
            Outcome::Dead,
        )
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Cases

/// Enqueue stores one pending delivery per subscriber, due at `received_at`.
pub fn enqueue_creates_one_pending_delivery_per_subscriber(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let receipts = store
        .enqueue(vec![
            event(&[&a, &b], T0, r#"{"n":1}"#),
            event(&[], T0, r#"{"n":2}"#),
            event(&[&b], UnixMillis(T0.0 + 5), r#"{"n":3}"#),
        ])
        .unwrap();
    assert_eq!(receipts.len(), 3, "one receipt per event, in order");
    let first = &receipts[0];
    assert!(!first.duplicate);
    assert_eq!(first.deliveries.len(), 2);
    assert_eq!(first.deliveries[0].subscriber, a);
    assert_eq!(first.deliveries[1].subscriber, b);
    assert_ne!(first.deliveries[0].id, first.deliveries[1].id);
    assert!(
        receipts[1].deliveries.is_empty(),
        "no subscribers, no deliveries"
    );
    assert_ne!(receipts[0].event_id, receipts[2].event_id);

    let d = store.get(first.deliveries[0].id).unwrap().unwrap();
    assert_eq!(d.record.id, first.deliveries[0].id);
    assert_eq!(d.record.event_id, first.event_id);
    assert_eq!(d.record.subscriber, a);
    assert_eq!(d.record.event_type, "TEST_EVENT");
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.attempts, 0);
    assert_eq!(d.record.next_attempt_at, Some(T0));
    assert_eq!(d.record.created_at, T0);
    assert_eq!(d.record.last_error, None);
    assert!(d.attempts.is_empty());

    assert_eq!(store.counts(&a), counts(1, 0, 0, 0));
    assert_eq!(store.counts(&b), counts(2, 0, 0, 0));
    let mut all = store.all_counts();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        all,
        vec![
            (a.clone(), counts(1, 0, 0, 0)),
            (b.clone(), counts(2, 0, 0, 0))
        ],
        "all_counts lists every subscriber with deliveries"
    );
}

/// Many concurrent writers each see their `sync` resolve, and the data is there.
pub fn sync_resolves_for_concurrent_writers(store: &dyn DeliveryStore) {
    let a = sub("a");
    let ids = std::sync::Mutex::new(Vec::new());
    let rt = runtime();
    rt.block_on(async {
        store.sync().await.unwrap(); // nothing written: still resolves
        let mut joins = Vec::new();
        // Scoped concurrency without 'static: poll all futures together.
        for i in 0..32u64 {
            let a = a.clone();
            let ids = &ids;
            joins.push(async move {
                let r = store
                    .enqueue(vec![event(&[&a], UnixMillis(T0.0 + i), "{}")])
                    .unwrap();
                store.sync().await.unwrap();
                ids.lock().unwrap().push(r[0].deliveries[0].id);
            });
        }
        join_all(joins).await;
    });
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 32);
    for id in ids {
        assert_eq!(status(store, id), DeliveryStatus::Pending);
    }
    assert_eq!(store.counts(&a).pending, 32);
}

/// Polls futures concurrently on the current task (no `'static` bound needed).
async fn join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

/// Claim returns only due deliveries, earliest first (ties in creation order), at most `max`.
pub fn claim_takes_due_deliveries_in_due_order(store: &dyn DeliveryStore) {
    let a = sub("a");
    let at = |ms: u64| UnixMillis(T0.0 + ms);
    let d300 = one(store, &a, at(300));
    let d100 = one(store, &a, at(100));
    let d200 = one(store, &a, at(200));
    let tie1 = one(store, &a, at(400));
    let tie2 = one(store, &a, at(400));

    assert!(
        store.claim(&a, at(50), lease(), 10).unwrap().is_empty(),
        "nothing due yet"
    );
    assert_eq!(store.next_due(&a).unwrap(), Some(at(100)));

    let first = store.claim(&a, at(150), lease(), 10).unwrap();
    assert_eq!(
        first.len(),
        1,
        "only the delivery due at +100 is due at +150"
    );
    let c = &first[0];
    assert_eq!(c.id, d100);
    assert_eq!(c.attempt, 1);
    assert_eq!(c.subscriber, a);
    assert_eq!(c.event_type, "TEST_EVENT");
    assert_eq!(c.created_at, at(100));
    assert_eq!(&c.payload[..], b"{}");
    assert_eq!(status(store, d100), DeliveryStatus::InFlight);
    assert_eq!(store.next_due(&a).unwrap(), Some(at(200)));

    assert_eq!(
        claim_ids(store, &a, at(1000), 1),
        vec![d200],
        "max is respected"
    );
    assert_eq!(claim_ids(store, &a, at(1000), 10), vec![d300, tie1, tie2]);
    assert!(claim_ids(store, &a, far(), 10).is_empty());
    assert_eq!(store.next_due(&a).unwrap(), None);
    assert!(store.claim(&a, far(), lease(), 0).unwrap().is_empty());
    assert_eq!(store.counts(&a), counts(0, 5, 0, 0));
}

/// One subscriber's claims never see another's deliveries.
pub fn claims_are_isolated_per_subscriber(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let r = enqueue_one(store, event(&[&a, &b], T0, "{}"));
    let for_b = one(store, &b, T0);
    let got_a = claim_ids(store, &a, far(), 10);
    assert_eq!(got_a, vec![r.deliveries[0].id]);
    assert_eq!(store.counts(&b), counts(2, 0, 0, 0));
    let got_b = claim_ids(store, &b, far(), 10);
    assert_eq!(got_b, vec![r.deliveries[1].id, for_b]);
    assert_eq!(store.counts(&a), counts(0, 1, 0, 0));
}

/// Claims racing on one subscriber (and finishes racing with them) hand each delivery out once.
pub fn concurrent_claims_never_hand_out_a_delivery_twice(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let events: Vec<NewEvent> = (0..1000)
        .map(|i| event(&[&a, &b], UnixMillis(T0.0 + i), "{}"))
        .collect();
    store.enqueue(events).unwrap();
    let claimed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let claimed = &claimed;
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            scope.spawn(move || loop {
                let got = store.claim(&s, far(), lease(), 7).unwrap();
                if got.is_empty() {
                    break;
                }
                for c in got {
                    store
                        .finish_attempt(c.id, attempt(T0, Some(200), None, 0), Outcome::Delivered)
                        .unwrap();
                    claimed.lock().unwrap().push(c.id);
                }
            });
        }
    });
    let claimed = claimed.into_inner().unwrap();
    let unique: BTreeSet<DeliveryId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 2000, "every delivery claimed");
    assert_eq!(unique.len(), 2000, "and none twice");
    assert_eq!(store.counts(&a), counts(0, 0, 1000, 0));
    assert_eq!(store.counts(&b), counts(0, 0, 1000, 0));
}

/// Delivered is final and keeps the attempt; state errors are typed.
pub fn delivered_records_the_attempt(store: &dyn DeliveryStore) {
    let a = sub("a");
    let id = one(store, &a, T0);
    assert!(matches!(
        store.finish_attempt(id, attempt(T0, Some(200), None, 1), Outcome::Delivered),
        Err(StoreError::InvalidState {
            expected: DeliveryStatus::InFlight,
            actual: DeliveryStatus::Pending,
            ..
        })
    ));
    assert_eq!(claim_ids(store, &a, far(), 1), vec![id]);
    store
        .finish_attempt(
            id,
            attempt(UnixMillis(T0.0 + 10), Some(200), None, 12),
            Outcome::Delivered,
        )
        .unwrap();
    let d = store.get(id).unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Delivered);
    assert_eq!(d.record.attempts, 1);
    assert_eq!(d.record.next_attempt_at, None);
    assert_eq!(d.record.last_error, None);
    assert_eq!(d.attempts.len(), 1);
    let att = &d.attempts[0];
    assert_eq!(att.attempt, 1);
    assert_eq!(att.at, UnixMillis(T0.0 + 10));
    assert_eq!(att.status_code, Some(200));
    assert_eq!(att.error, None);
    assert_eq!(att.duration_ms, 12);
    assert_eq!(store.counts(&a), counts(0, 0, 1, 0));

    assert!(matches!(
        store.finish_attempt(id, attempt(T0, Some(200), None, 1), Outcome::Delivered),
        Err(StoreError::InvalidState {
            expected: DeliveryStatus::InFlight,
            actual: DeliveryStatus::Delivered,
            ..
        })
    ));
    assert!(matches!(
        store.release(id, T0),
        Err(StoreError::InvalidState {
            actual: DeliveryStatus::Delivered,
            ..
        })
    ));
    let unknown = DeliveryId::generate();
    assert!(matches!(
        store.finish_attempt(unknown, attempt(T0, None, None, 0), Outcome::Delivered),
        Err(StoreError::NotFound(x)) if x == unknown
    ));
    assert!(
        claim_ids(store, &a, far(), 10).is_empty(),
        "delivered is never claimed again"
    );
    assert_eq!(store.counts(&a), counts(0, 0, 1, 0));
}

/// RetryAt makes a delivery pending at the given time; Dead ends it. History is oldest first.
pub fn retry_reschedules_and_dead_stops(store: &dyn DeliveryStore) {
    let a = sub("a");
    let id = one(store, &a, T0);
    let retry_at = UnixMillis(T0.0 + 500);
    assert_eq!(claim_ids(store, &a, T0, 1), vec![id]);
    store
        .finish_attempt(
            id,
            attempt(T0, Some(503), Some("HTTP 503"), 3),
            Outcome::RetryAt(retry_at),
        )
        .unwrap();
    let d = store.get(id).unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.next_attempt_at, Some(retry_at));
    assert_eq!(d.record.attempts, 1);
    assert_eq!(d.record.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(store.counts(&a), counts(1, 0, 0, 0));
    assert_eq!(store.next_due(&a).unwrap(), Some(retry_at));

    assert!(claim_ids(store, &a, UnixMillis(retry_at.0 - 1), 1).is_empty());
    let again = store.claim(&a, retry_at, lease(), 1).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    store
        .finish_attempt(
            id,
            attempt(retry_at, None, Some("timeout"), 10_000),
            Outcome::Dead,
        )
        .unwrap();
    let d = store.get(id).unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Dead);
    assert_eq!(d.record.next_attempt_at, None);
    assert_eq!(d.record.attempts, 2);
    assert_eq!(d.record.last_error.as_deref(), Some("timeout"));
    let numbers: Vec<u32> = d.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(d.attempts[0].status_code, Some(503));
    assert_eq!(d.attempts[1].status_code, None);
    assert_eq!(store.counts(&a), counts(0, 0, 0, 1));
    assert!(
        claim_ids(store, &a, far(), 10).is_empty(),
        "dead is never claimed"
    );
}

/// retry_dead moves one dead delivery back; redrive moves all of a subscriber's.
pub fn dead_deliveries_can_be_retried_and_redriven(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let dead_a: Vec<DeliveryId> = (0..3)
        .map(|_| {
            let id = one(store, &a, T0);
            make_dead(store, &a, id);
            id
        })
        .collect();
    let dead_b = one(store, &b, T0);
    make_dead(store, &b, dead_b);
    let pending = one(store, &a, far());
    assert_eq!(store.counts(&a), counts(1, 0, 0, 3));

    let now = UnixMillis(T0.0 + 9_000);
    let rec = store.retry_dead(dead_a[0], now).unwrap();
    assert_eq!(rec.id, dead_a[0]);
    assert_eq!(rec.status, DeliveryStatus::Pending);
    assert_eq!(rec.next_attempt_at, Some(now));
    assert_eq!(rec.attempts, 1, "history is kept");
    assert_eq!(store.counts(&a), counts(2, 0, 0, 2));
    assert!(matches!(
        store.retry_dead(pending, now),
        Err(StoreError::InvalidState {
            expected: DeliveryStatus::Dead,
            actual: DeliveryStatus::Pending,
            ..
        })
    ));
    assert!(matches!(
        store.retry_dead(DeliveryId::generate(), now),
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(store.redrive(&a, now).unwrap(), 2);
    assert_eq!(store.redrive(&a, now).unwrap(), 0);
    assert_eq!(store.counts(&a), counts(4, 0, 0, 0));
    assert_eq!(
        store.counts(&b),
        counts(0, 0, 0, 1),
        "other subscribers untouched"
    );

    let claimed = store.claim(&a, now, lease(), 10).unwrap();
    let got: BTreeSet<DeliveryId> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(got, dead_a.iter().copied().collect());
    assert!(claimed.iter().all(|c| c.attempt == 2));
    let listed = store
        .list(&ListQuery {
            subscriber: Some(b.clone()),
            status: Some(DeliveryStatus::Dead),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(listed.deliveries.len(), 1);
    assert_eq!(listed.deliveries[0].record.id, dead_b);
    // A page carries each delivery's attempt history, the same as `get`.
    let details = store.get(dead_b).unwrap().unwrap();
    assert!(!details.attempts.is_empty());
    assert_eq!(listed.deliveries[0].attempts, details.attempts);
}

/// release makes an in-flight delivery pending again without counting an attempt.
pub fn release_gives_back_without_an_attempt(store: &dyn DeliveryStore) {
    let a = sub("a");
    let id = one(store, &a, T0);
    assert_eq!(claim_ids(store, &a, T0, 1), vec![id]);
    let due = UnixMillis(T0.0 + 700);
    store.release(id, due).unwrap();
    let d = store.get(id).unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.attempts, 0);
    assert_eq!(d.record.next_attempt_at, Some(due));
    assert!(d.attempts.is_empty());
    assert_eq!(store.counts(&a), counts(1, 0, 0, 0));
    assert!(claim_ids(store, &a, UnixMillis(due.0 - 1), 1).is_empty());
    let again = store.claim(&a, due, lease(), 1).unwrap();
    assert_eq!(again[0].attempt, 1);
    store.release(id, due).unwrap();
    assert!(matches!(
        store.release(id, due),
        Err(StoreError::InvalidState {
            expected: DeliveryStatus::InFlight,
            actual: DeliveryStatus::Pending,
            ..
        })
    ));
    assert!(matches!(
        store.release(DeliveryId::generate(), due),
        Err(StoreError::NotFound(_))
    ));
}

/// list pages through deliveries in id order, with subscriber and status filters.
pub fn list_pages_in_id_order_with_filters(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let mut all = Vec::new();
    let mut of_b = Vec::new();
    for i in 0..30 {
        if i % 6 == 0 {
            let id = one(store, &b, T0);
            of_b.push(id);
            all.push(id);
        } else {
            all.push(one(store, &a, T0));
        }
    }
    // Make two of a's dead and one in flight.
    let a_ids: Vec<DeliveryId> = all
        .iter()
        .copied()
        .filter(|id| !of_b.contains(id))
        .collect();
    let claimed = claim_ids(store, &a, far(), 3);
    assert_eq!(claimed, a_ids[..3].to_vec());
    for id in &claimed[..2] {
        store
            .finish_attempt(*id, attempt(T0, Some(500), None, 1), Outcome::Dead)
            .unwrap();
    }

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(&ListQuery {
                limit: 7,
                cursor,
                ..ListQuery::default()
            })
            .unwrap();
        pages += 1;
        assert!(page.deliveries.len() <= 7);
        seen.extend(page.deliveries.iter().map(|d| d.record.id));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(
                    Some(c),
                    page.deliveries.last().map(|d| d.record.id),
                    "cursor is the page's last id"
                );
                cursor = Some(c);
            }
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "every delivery once, in id order");
    assert_eq!(
        pages, 5,
        "30 deliveries in pages of 7: the 5th page is the last"
    );

    let only_b = store
        .list(&ListQuery {
            subscriber: Some(b.clone()),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(
        only_b
            .deliveries
            .iter()
            .map(|d| d.record.id)
            .collect::<Vec<_>>(),
        of_b
    );
    assert_eq!(only_b.next_cursor, None);

    let dead = |subscriber: Option<SubscriberId>| {
        store
            .list(&ListQuery {
                subscriber,
                status: Some(DeliveryStatus::Dead),
                ..ListQuery::default()
            })
            .unwrap()
    };
    assert_eq!(
        dead(Some(a.clone()))
            .deliveries
            .iter()
            .map(|d| d.record.id)
            .collect::<Vec<_>>(),
        claimed[..2].to_vec()
    );
    assert_eq!(dead(None).deliveries.len(), 2);
    assert!(dead(Some(b.clone())).deliveries.is_empty());
    // Paging the dead filter with a cursor.
    let first = store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Dead),
            limit: 1,
            cursor: None,
        })
        .unwrap();
    assert_eq!(first.deliveries.len(), 1);
    let second = store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Dead),
            limit: 1,
            cursor: first.next_cursor,
        })
        .unwrap();
    assert_eq!(second.deliveries[0].record.id, claimed[1]);
    assert_eq!(second.next_cursor, None);

    let in_flight = store
        .list(&ListQuery {
            status: Some(DeliveryStatus::InFlight),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(
        in_flight
            .deliveries
            .iter()
            .map(|d| d.record.id)
            .collect::<Vec<_>>(),
        vec![claimed[2]]
    );
    let pending_a = store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Pending),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(pending_a.deliveries.len(), a_ids.len() - 3);
    assert!(pending_a
        .deliveries
        .iter()
        .all(|d| d.record.status == DeliveryStatus::Pending && d.record.subscriber == a));
}

/// limit 0 means 100; larger limits are clamped to 1000.
pub fn list_limit_defaults_and_clamps(store: &dyn DeliveryStore) {
    let a = sub("a");
    let events: Vec<NewEvent> = (0..1001).map(|_| event(&[&a], T0, "{}")).collect();
    store.enqueue(events).unwrap();
    let default = store.list(&ListQuery::default()).unwrap();
    assert_eq!(default.deliveries.len(), 100);
    assert!(default.next_cursor.is_some());
    let big = store
        .list(&ListQuery {
            limit: 5000,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(big.deliveries.len(), 1000);
    let rest = store
        .list(&ListQuery {
            limit: 5000,
            cursor: big.next_cursor,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(rest.next_cursor, None);
}

/// The same idempotency key returns the first receipt (duplicate = true) and creates nothing.
pub fn idempotency_key_returns_the_first_receipt(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let first = enqueue_one(store, keyed(event(&[&a], T0, "{\"v\":1}"), "k1"));
    assert!(!first.duplicate);
    let again = enqueue_one(store, keyed(event(&[&a, &b], T0, "{\"v\":2}"), "k1"));
    assert!(again.duplicate);
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.deliveries, first.deliveries);
    assert_eq!(store.counts(&a), counts(1, 0, 0, 0));
    assert_eq!(store.counts(&b), QueueCounts::default());

    // Within one call, and alongside new keys.
    let batch = store
        .enqueue(vec![
            keyed(event(&[&a], T0, "{}"), "k2"),
            keyed(event(&[&a], T0, "{}"), "k2"),
            keyed(event(&[&a], T0, "{}"), "k1"),
            event(&[&a], T0, "{}"),
        ])
        .unwrap();
    assert!(!batch[0].duplicate);
    assert!(batch[1].duplicate);
    assert_eq!(batch[1].event_id, batch[0].event_id);
    assert!(batch[2].duplicate);
    assert_eq!(batch[2].event_id, first.event_id);
    assert!(!batch[3].duplicate);
    assert_eq!(store.counts(&a), counts(3, 0, 0, 0));

    // A key is remembered even when the event had no subscribers.
    let empty = enqueue_one(store, keyed(event(&[], T0, "{}"), "k3"));
    let empty_again = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "k3"));
    assert!(empty_again.duplicate);
    assert_eq!(empty_again.event_id, empty.event_id);
    assert!(empty_again.deliveries.is_empty());
    assert_eq!(store.counts(&a), counts(3, 0, 0, 0));

    // The first delivery is still claimable with the first payload.
    let c = store.claim(&a, far(), lease(), 1).unwrap();
    assert_eq!(c[0].id, first.deliveries[0].id);
    assert_eq!(&c[0].payload[..], b"{\"v\":1}");
}

/// Concurrent enqueues of one key: exactly one creates.
pub fn concurrent_enqueues_of_one_key_create_once(store: &dyn DeliveryStore) {
    let a = sub("a");
    let receipts = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for round in 0..20 {
                    let r = store
                        .enqueue(vec![keyed(
                            event(&[&a], T0, "{}"),
                            &format!("race-{round}"),
                        )])
                        .unwrap();
                    receipts.lock().unwrap().push((round, r[0].clone()));
                }
            });
        }
    });
    let receipts = receipts.into_inner().unwrap();
    for round in 0..20 {
        let of_round: Vec<&EnqueueReceipt> = receipts
            .iter()
            .filter(|(r, _)| *r == round)
            .map(|(_, x)| x)
            .collect();
        assert_eq!(of_round.len(), 8);
        assert_eq!(
            of_round.iter().filter(|r| !r.duplicate).count(),
            1,
            "round {round}"
        );
        assert!(of_round.iter().all(|r| r.event_id == of_round[0].event_id));
    }
    assert_eq!(store.counts(&a).pending, 20);
}

/// purge removes finished deliveries finished before the cutoff, their lone events and
/// idempotency keys older than the cutoff; pending work is untouched.
pub fn purge_removes_finished_and_expired(store: &dyn DeliveryStore) {
    let a = sub("a");
    let delivered = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "kd")).deliveries[0].id;
    let dead = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "kz")).deliveries[0].id;
    let pending = enqueue_one(store, event(&[&a], far(), "{\"p\":1}")).deliveries[0].id;
    assert_eq!(claim_ids(store, &a, T0, 2), vec![delivered, dead]);
    store
        .finish_attempt(
            delivered,
            attempt(UnixMillis(T0.0 + 10), Some(200), None, 0),
            Outcome::Delivered,
        )
        .unwrap();
    store
        .finish_attempt(
            dead,
            attempt(UnixMillis(T0.0 + 20), Some(500), None, 0),
            Outcome::Dead,
        )
        .unwrap();

    // Nothing is older than T0.
    assert_eq!(store.purge(T0).unwrap(), herald_core::PurgeStats::default());
    assert_eq!(store.counts(&a), counts(1, 0, 1, 1));

    // Finished at T0+10 (attempt start + duration) < T0+15: the delivered one goes.
    let stats = store.purge(UnixMillis(T0.0 + 15)).unwrap();
    assert_eq!(stats.deliveries, 1);
    assert_eq!(stats.events, 1);
    assert_eq!(stats.idempotency_keys, 2, "both keys were created at T0");
    assert!(store.get(delivered).unwrap().is_none());
    assert_eq!(status(store, dead), DeliveryStatus::Dead);
    assert_eq!(store.counts(&a), counts(1, 0, 0, 1));

    let stats = store.purge(UnixMillis(T0.0 + 100)).unwrap();
    assert_eq!(
        (stats.deliveries, stats.events, stats.idempotency_keys),
        (1, 1, 0)
    );
    assert!(store.get(dead).unwrap().is_none());
    assert!(store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Dead),
            ..ListQuery::default()
        })
        .unwrap()
        .deliveries
        .is_empty());
    assert_eq!(store.counts(&a), counts(1, 0, 0, 0));
    assert_eq!(store.redrive(&a, far()).unwrap(), 0);

    // Expired keys create anew.
    let fresh = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "kd"));
    assert!(!fresh.duplicate);

    // Pending work and its payload survive any purge.
    store.purge(far()).unwrap();
    assert_eq!(status(store, pending), DeliveryStatus::Pending);
    let c = store.claim(&a, far(), lease(), 10).unwrap();
    let p = c.iter().find(|c| c.id == pending).unwrap();
    assert_eq!(&p.payload[..], b"{\"p\":1}");
}

/// An event stays while any of its deliveries remains.
pub fn purge_keeps_events_with_remaining_deliveries(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    let r = enqueue_one(store, event(&[&a, &b], T0, "{\"shared\":true}"));
    let (da, db) = (r.deliveries[0].id, r.deliveries[1].id);
    assert_eq!(claim_ids(store, &a, T0, 1), vec![da]);
    store
        .finish_attempt(da, attempt(T0, Some(200), None, 0), Outcome::Delivered)
        .unwrap();
    let stats = store.purge(far()).unwrap();
    assert_eq!((stats.deliveries, stats.events), (1, 0));
    let c = store.claim(&b, far(), lease(), 1).unwrap();
    assert_eq!(c[0].id, db);
    assert_eq!(&c[0].payload[..], b"{\"shared\":true}");
    store
        .finish_attempt(db, attempt(T0, Some(200), None, 0), Outcome::Delivered)
        .unwrap();
    let stats = store.purge(far()).unwrap();
    assert_eq!((stats.deliveries, stats.events), (1, 1));
    assert!(store.all_counts().is_empty(), "nothing stored any more");
}

/// Pause reasons are stored and removed.
pub fn pause_state_round_trips(store: &dyn DeliveryStore) {
    let (a, b) = (sub("a"), sub("b"));
    assert!(store.paused().unwrap().is_empty());
    store.set_paused(&a, Some("maintenance window")).unwrap();
    store.set_paused(&b, Some("")).unwrap();
    let mut paused = store.paused().unwrap();
    paused.sort();
    assert_eq!(
        paused,
        vec![
            (a.clone(), "maintenance window".to_owned()),
            (b.clone(), String::new())
        ]
    );
    store.set_paused(&a, Some("changed")).unwrap();
    store.set_paused(&b, None).unwrap();
    store.set_paused(&b, None).unwrap();
    assert_eq!(store.paused().unwrap(), vec![(a, "changed".to_owned())]);
}

/// Unknown ids and subscribers are answered, not errors.
pub fn unknown_ids_and_subscribers(store: &dyn DeliveryStore) {
    let x = sub("nobody");
    assert!(store.get(DeliveryId::generate()).unwrap().is_none());
    assert_eq!(store.counts(&x), QueueCounts::default());
    assert!(store.claim(&x, far(), lease(), 10).unwrap().is_empty());
    assert_eq!(store.next_due(&x).unwrap(), None);
    assert_eq!(store.redrive(&x, far()).unwrap(), 0);
    assert!(store.all_counts().is_empty());
    let page = store.list(&ListQuery::default()).unwrap();
    assert!(page.deliveries.is_empty());
    assert_eq!(page.next_cursor, None);
    assert_eq!(
        store.purge(far()).unwrap(),
        herald_core::PurgeStats::default()
    );
}

/// Payloads come back exactly, whatever the bytes and size.
pub fn payload_is_stored_byte_for_byte(store: &dyn DeliveryStore) {
    let a = sub("a");
    let mut big = Vec::with_capacity(256 * 1024);
    for i in 0..256 * 1024u32 {
        big.push((i.wrapping_mul(2_654_435_761) >> 24) as u8);
    }
    let payloads = [
        Bytes::new(),
        Bytes::from_static(b"\x00\xff{\"a\": 1}\n"),
        Bytes::from(big),
    ];
    let mut ids = Vec::new();
    for p in &payloads {
        let mut e = event(&[&a], T0, "");
        e.payload = p.clone();
        ids.push(enqueue_one(store, e).deliveries[0].id);
    }
    let claimed = store.claim(&a, far(), lease(), 10).unwrap();
    assert_eq!(claimed.len(), 3);
    for (c, (id, p)) in claimed.iter().zip(ids.iter().zip(&payloads)) {
        assert_eq!(c.id, *id);
        assert_eq!(c.payload, *p);
    }
}

/// size_on_disk answers (non-zero once something is stored).
pub fn size_on_disk_is_reported(store: &dyn DeliveryStore) {
    let a = sub("a");
    one(store, &a, T0);
    runtime().block_on(store.sync()).unwrap();
    assert!(store.size_on_disk().unwrap() > 0);
}
