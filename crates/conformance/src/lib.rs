//! The behaviour every [`DeliveryStore`] engine must show, as one reusable test suite.
//!
//! Each case gets a fresh, empty store and drives it only through the trait. Both engines
//! (sled in `herald-queue`, PostgreSQL in `herald-postgres`) run the whole suite from their
//! tests; this crate is a dev-dependency only, never needed at run time.
//!
//! # Plugging an engine in
//!
//! Implement [`Engine`] (how to make a fresh store, and how to open a new store object on the
//! same data), then call [`run_all`] from a multi-threaded tokio test:
//!
//! ```ignore
//! struct Sled;
//!
//! #[async_trait::async_trait]
//! impl herald_conformance::Engine for Sled {
//!     type Handle = tempfile::TempDir;
//!     async fn create(&self) -> (Arc<dyn DeliveryStore>, Self::Handle) {
//!         let dir = tempfile::tempdir().unwrap();
//!         (SledStore::open_shared(dir.path(), SledOptions::default()).unwrap(), dir)
//!     }
//!     async fn reopen(&self, dir: &Self::Handle) -> Arc<dyn DeliveryStore> {
//!         SledStore::open_shared(dir.path(), SledOptions::default()).unwrap()
//!     }
//! }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn sled_passes_the_conformance_suite() {
//!     herald_conformance::run_all(&Sled).await;
//! }
//! ```
//!
//! [`Engine::reopen`] is "a restart": the suite drops every reference to the old store first,
//! then asks for a new store object on the same data (sled: the same directory; PostgreSQL: a
//! new pool on the same database and schema). [`run_all`] runs every case, each on its own
//! tokio task (so a panic fails that case only) and reports all failures together; a single
//! case can be run with [`run_one`] while debugging.
//!
//! # What the cases assume
//!
//! - Times are synthetic (around [`T0`]); the store must use the `now` it is given, except
//!   where the trait says it reads the clock (`updated_at` of a release).
//! - Leases are honoured: the cases claim with a `lease_until` after every `now` they use,
//!   except the cases about lease expiry, which move `now` past it on purpose.
//! - `finish_attempt` and `release` succeed only with the delivery's current lease token;
//!   otherwise they answer [`StoreError::NotFound`] (no such delivery) or
//!   [`StoreError::LeaseLost`] (not leased, or leased under another token), changing nothing.
//! - Listener calls may arrive asynchronously (a shared engine relays them through the
//!   database): the cases wait up to [`NOTIFY_WAIT`] for each.
//! - Ordering keys round-trip (stored with the event, shown on the records and claims of the
//!   subscribers in `ordered_for`), and the per-key claim rules of SPEC §9 hold: see the
//!   `ordering` module's cases.
//!
//! Panics (assertion failures) are the failure mode: this is test code.

// A suite shipped for every engine; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryId, DeliveryStatus, DeliveryStore,
    EnqueueReceipt, EventQuery, LeaseToken, ListQuery, NewEvent, Outcome, QueueCounts,
    ReplayRequest, RetryBudget, StoreError, StoreListener, SubscriberId, UnixMillis,
};
use parking_lot::Mutex;

mod cases_new;
mod ordering;
pub use cases_new::*;
pub use ordering::*;

/// The synthetic "now" the cases start from.
pub const T0: UnixMillis = UnixMillis(1_000_000);

/// How long a case waits for a listener call it expects.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(5);

/// A boxed case future.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One conformance case: a name and an async function that gets a fresh, empty store.
pub type Case = (&'static str, fn(Arc<dyn DeliveryStore>) -> CaseFuture);

/// How the suite gets stores of one engine.
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    /// What identifies the data of one store (a temporary directory, a database schema), so it
    /// can be reopened; dropped when the case ends.
    type Handle: Send + Sync + 'static;

    /// A fresh, empty store and the handle of its data.
    async fn create(&self) -> (Arc<dyn DeliveryStore>, Self::Handle);

    /// A new store object on the data of `handle` (a restart). The suite has dropped every
    /// reference to the previous store object before calling this.
    async fn reopen(&self, handle: &Self::Handle) -> Arc<dyn DeliveryStore>;
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |s| Box::pin($name(s)) as CaseFuture)),*]
    };
}

/// Every case that needs one fresh store, in the order [`run_all`] runs them.
pub const CASES: &[Case] = cases![
    enqueue_creates_one_pending_delivery_per_subscriber,
    sync_resolves_for_concurrent_writers,
    claim_takes_due_deliveries_in_due_order,
    claims_are_isolated_per_subscriber,
    concurrent_claims_never_hand_out_a_delivery_twice,
    delivered_records_the_attempt,
    retry_reschedules_and_dead_stops,
    dead_deliveries_can_be_retried_and_redriven,
    release_gives_back_without_an_attempt,
    list_pages_in_id_order_with_filters,
    list_limit_defaults_and_clamps,
    idempotency_key_returns_the_first_receipt,
    concurrent_enqueues_of_one_key_create_once,
    purge_removes_finished_and_expired,
    purge_keeps_events_with_remaining_deliveries,
    pause_state_round_trips,
    unknown_ids_and_subscribers,
    payload_is_stored_byte_for_byte,
    size_on_disk_is_reported,
    expired_leases_are_claimable_again_with_a_new_token,
    stale_tokens_are_fenced_off,
    concurrent_claimers_never_share_a_valid_lease,
    claim_cap_counts_unexpired_leases,
    listener_is_told_about_work_and_pauses,
    replay_makes_finished_deliveries_pending_again,
    get_event_returns_payload_and_deliveries,
    list_events_pages_and_filters,
    all_counts_keeps_subscribers_that_fell_to_zero,
    ordering_and_trace_fields_round_trip,
    ordered_keys_are_claimed_one_at_a_time_in_acceptance_order,
    a_retried_head_blocks_only_its_key_until_dead,
    a_repended_delivery_takes_its_place_by_acceptance_order,
    an_expired_head_is_claimable_again_alone,
    keys_are_per_subscriber_and_only_for_ordered_ones,
    the_cap_still_applies_to_heads,
    interleaved_keys_drain_in_order_under_failures,
];

/// Cases that restart the store through [`Engine::reopen`], by name.
pub const REOPEN_CASES: &[&str] = &[
    "reopen_keeps_acknowledged_work_and_leases_expire",
    "ordering_survives_a_restart",
];

/// Runs every case ([`CASES`] and [`REOPEN_CASES`]), each on a fresh store from `engine` and
/// its own tokio task, and panics listing every failed case. Call it from a multi-threaded
/// tokio runtime.
pub async fn run_all<E: Engine>(engine: &E) {
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let (store, handle) = engine.create().await;
        let outcome = tokio::spawn(case(store)).await;
        drop(handle);
        if let Err(e) = outcome {
            failed.push(format!("{name}: {}", panic_text(e)));
        }
    }
    if let Err(msg) = reopen_keeps_acknowledged_work_and_leases_expire(engine).await {
        failed.push(format!("{}: {msg}", REOPEN_CASES[0]));
    }
    // Not on a task of its own (it borrows the engine): a panic in it fails the whole run.
    if let Err(msg) = ordering_survives_a_restart(engine).await {
        failed.push(format!("{}: {msg}", REOPEN_CASES[1]));
    }
    assert!(
        failed.is_empty(),
        "{} conformance case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Runs one case of [`CASES`] by name on a fresh store from `engine` (panics if it fails or
/// does not exist).
pub async fn run_one<E: Engine>(engine: &E, name: &str) {
    if name == REOPEN_CASES[0] {
        if let Err(msg) = reopen_keeps_acknowledged_work_and_leases_expire(engine).await {
            panic!("{name}: {msg}");
        }
        return;
    }
    if name == REOPEN_CASES[1] {
        if let Err(msg) = ordering_survives_a_restart(engine).await {
            panic!("{name}: {msg}");
        }
        return;
    }
    let (_, case) = CASES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no conformance case {name:?}"));
    let (store, handle) = engine.create().await;
    let outcome = tokio::spawn(case(store)).await;
    drop(handle);
    if let Err(e) = outcome {
        panic!("{name}: {}", panic_text(e));
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

// ------------------------------------------------------------------------------------------
// Helpers

/// The store under test, remembering the lease token of every delivery it claimed, so the
/// cases that are not about fencing can finish and release by id as before. Methods of the
/// trait not shadowed here are reached through `Deref`.
#[derive(Clone)]
pub struct Tracked {
    store: Arc<dyn DeliveryStore>,
    leases: Arc<Mutex<HashMap<DeliveryId, LeaseToken>>>,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("leases", &self.leases.lock().len())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Tracked {
    type Target = dyn DeliveryStore;
    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

impl Tracked {
    /// Wraps a store.
    pub fn new(store: Arc<dyn DeliveryStore>) -> Self {
        Self {
            store,
            leases: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn DeliveryStore> {
        &self.store
    }

    /// Claims with no cap, remembering the tokens.
    pub async fn claim(
        &self,
        s: &SubscriberId,
        now: UnixMillis,
        lease_until: UnixMillis,
        max: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim_capped(s, now, lease_until, max, u32::MAX).await
    }

    /// Claims within `cap`, remembering the tokens.
    pub async fn claim_capped(
        &self,
        s: &SubscriberId,
        now: UnixMillis,
        lease_until: UnixMillis,
        max: usize,
        cap: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claimed = self
            .store
            .claim(ClaimRequest {
                subscriber: s,
                now,
                lease_until,
                max,
                cap,
            })
            .await?;
        let mut leases = self.leases.lock();
        for c in &claimed {
            leases.insert(c.id, c.lease);
        }
        Ok(claimed)
    }

    /// The last token this wrapper saw for `id` (a token nobody holds if none).
    pub fn token(&self, id: DeliveryId) -> LeaseToken {
        self.leases
            .lock()
            .get(&id)
            .copied()
            .unwrap_or(LeaseToken(u64::MAX - 7))
    }

    /// `finish_attempt` with the last token claimed for `id`.
    pub async fn finish_attempt(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let token = self.token(id);
        self.store.finish_attempt(id, token, attempt, outcome).await
    }

    /// `release` with the last token claimed for `id`.
    pub async fn release(&self, id: DeliveryId, due: UnixMillis) -> Result<(), StoreError> {
        let token = self.token(id);
        self.store.release(id, token, due).await
    }
}

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
        ordering_key: None,
        ordered_for: Vec::new(),
        traceparent: None,
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

async fn enqueue_one(store: &Tracked, e: NewEvent) -> EnqueueReceipt {
    let mut r = store.enqueue(vec![e]).await.unwrap();
    assert_eq!(r.len(), 1);
    r.remove(0)
}

/// Enqueues one event for `s` at `at` and returns its delivery id.
async fn one(store: &Tracked, s: &SubscriberId, at: UnixMillis) -> DeliveryId {
    enqueue_one(store, event(&[s], at, "{}")).await.deliveries[0].id
}

/// A `now` later than any the cases use, except [`lease`].
fn far() -> UnixMillis {
    UnixMillis(T0.0 + 1_000_000_000)
}

/// The lease end of ordinary claims: after every `now` the cases use (claiming with `now`
/// past `lease_until` would make earlier leases claimable again).
fn lease() -> UnixMillis {
    UnixMillis(far().0 + 1_000_000)
}

async fn claim_ids(
    store: &Tracked,
    s: &SubscriberId,
    now: UnixMillis,
    max: usize,
) -> Vec<DeliveryId> {
    store
        .claim(s, now, lease(), max)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn status(store: &Tracked, id: DeliveryId) -> DeliveryStatus {
    store.get(id).await.unwrap().unwrap().record.status
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
async fn make_dead(store: &Tracked, s: &SubscriberId, id: DeliveryId) {
    assert_eq!(claim_ids(store, s, far(), 1).await, vec![id]);
    store
        .finish_attempt(
            id,
            attempt(T0, Some(500), Some("HTTP 500"), 1),
            Outcome::Dead,
        )
        .await
        .unwrap();
}

/// Counts of one subscriber.
async fn counts_of(store: &Tracked, s: &SubscriberId) -> QueueCounts {
    store.counts(s).await.unwrap()
}

/// Runs futures concurrently on tokio tasks and waits for all; a panic in one is re-raised.
async fn join_tasks<T: Send + 'static>(
    futures: Vec<impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => panic!("{}", panic_text(e)),
        }
    }
    out
}

/// A [`StoreListener`] that records every call.
#[derive(Debug, Default)]
pub struct RecordingListener {
    calls: Mutex<Vec<(&'static str, SubscriberId)>>,
}

impl StoreListener for RecordingListener {
    fn work_available(&self, subscriber: &SubscriberId) {
        self.calls
            .lock()
            .push(("work_available", subscriber.clone()));
    }
    fn subscriber_changed(&self, subscriber: &SubscriberId) {
        self.calls
            .lock()
            .push(("subscriber_changed", subscriber.clone()));
    }
}

impl RecordingListener {
    /// Waits up to [`NOTIFY_WAIT`] for a call `kind(subscriber)`, then forgets every call
    /// recorded so far; panics naming `after` if it never comes.
    pub async fn expect(&self, kind: &str, subscriber: &SubscriberId, after: &str) {
        let deadline = tokio::time::Instant::now() + NOTIFY_WAIT;
        loop {
            {
                let mut calls = self.calls.lock();
                if calls.iter().any(|(k, s)| *k == kind && s == subscriber) {
                    calls.clear();
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listener was not told {kind}({subscriber}) after {after}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Cases

/// Enqueue stores one pending delivery per subscriber, due at `received_at`.
pub async fn enqueue_creates_one_pending_delivery_per_subscriber(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let receipts = store
        .enqueue(vec![
            event(&[&a, &b], T0, r#"{"n":1}"#),
            event(&[], T0, r#"{"n":2}"#),
            event(&[&b], UnixMillis(T0.0 + 5), r#"{"n":3}"#),
        ])
        .await
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

    let d = store.get(first.deliveries[0].id).await.unwrap().unwrap();
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

    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 0));
    assert_eq!(counts_of(store, &b).await, counts(2, 0, 0, 0));
    let mut all = store.all_counts().await.unwrap();
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

/// Many concurrent writers each see their enqueue and `sync` resolve, and the data is there.
pub async fn sync_resolves_for_concurrent_writers(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    store.sync().await.unwrap(); // nothing written: still resolves
    let writers = (0..32u64).map(|i| {
        let (store, a) = (store.clone(), a.clone());
        async move {
            let r = store
                .enqueue(vec![event(&[&a], UnixMillis(T0.0 + i), "{}")])
                .await
                .unwrap();
            store.sync().await.unwrap();
            r[0].deliveries[0].id
        }
    });
    let ids = join_tasks(writers.collect()).await;
    assert_eq!(ids.len(), 32);
    for id in ids {
        assert_eq!(status(store, id).await, DeliveryStatus::Pending);
    }
    assert_eq!(counts_of(store, &a).await.pending, 32);
}

/// Claim returns only due deliveries, earliest first (ties in creation order), at most `max`.
pub async fn claim_takes_due_deliveries_in_due_order(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let at = |ms: u64| UnixMillis(T0.0 + ms);
    let d300 = one(store, &a, at(300)).await;
    let d100 = one(store, &a, at(100)).await;
    let d200 = one(store, &a, at(200)).await;
    let tie1 = one(store, &a, at(400)).await;
    let tie2 = one(store, &a, at(400)).await;

    assert!(
        store
            .claim(&a, at(50), lease(), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing due yet"
    );
    assert_eq!(store.next_due(&a).await.unwrap(), Some(at(100)));

    let first = store.claim(&a, at(150), lease(), 10).await.unwrap();
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
    assert_eq!(status(store, d100).await, DeliveryStatus::InFlight);
    assert_eq!(store.next_due(&a).await.unwrap(), Some(at(200)));

    assert_eq!(
        claim_ids(store, &a, at(1000), 1).await,
        vec![d200],
        "max is respected"
    );
    assert_eq!(
        claim_ids(store, &a, at(1000), 10).await,
        vec![d300, tie1, tie2]
    );
    assert!(claim_ids(store, &a, far(), 10).await.is_empty());
    assert_eq!(
        store.next_due(&a).await.unwrap(),
        Some(lease()),
        "with nothing pending, the first lease's end"
    );
    assert!(store.claim(&a, far(), lease(), 0).await.unwrap().is_empty());
    assert_eq!(counts_of(store, &a).await, counts(0, 5, 0, 0));
}

/// One subscriber's claims never see another's deliveries.
pub async fn claims_are_isolated_per_subscriber(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let r = enqueue_one(store, event(&[&a, &b], T0, "{}")).await;
    let for_b = one(store, &b, T0).await;
    let got_a = claim_ids(store, &a, far(), 10).await;
    assert_eq!(got_a, vec![r.deliveries[0].id]);
    assert_eq!(counts_of(store, &b).await, counts(2, 0, 0, 0));
    let got_b = claim_ids(store, &b, far(), 10).await;
    assert_eq!(got_b, vec![r.deliveries[1].id, for_b]);
    assert_eq!(counts_of(store, &a).await, counts(0, 1, 0, 0));
}

/// Claims racing on one subscriber (and finishes racing with them) hand each delivery out once.
pub async fn concurrent_claims_never_hand_out_a_delivery_twice(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let events: Vec<NewEvent> = (0..1000)
        .map(|i| event(&[&a, &b], UnixMillis(T0.0 + i), "{}"))
        .collect();
    store.enqueue(events).await.unwrap();
    let workers = (0..4).map(|t| {
        let store = store.clone();
        let s = if t % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&s, far(), lease(), 7).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for c in got {
                    store
                        .inner()
                        .finish_attempt(
                            c.id,
                            c.lease,
                            attempt(T0, Some(200), None, 0),
                            Outcome::Delivered,
                        )
                        .await
                        .unwrap();
                    mine.push(c.id);
                }
            }
            mine
        }
    });
    let claimed: Vec<DeliveryId> = join_tasks(workers.collect())
        .await
        .into_iter()
        .flatten()
        .collect();
    let unique: BTreeSet<DeliveryId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 2000, "every delivery claimed");
    assert_eq!(unique.len(), 2000, "and none twice");
    assert_eq!(counts_of(store, &a).await, counts(0, 0, 1000, 0));
    assert_eq!(counts_of(store, &b).await, counts(0, 0, 1000, 0));
}

/// Delivered is final and keeps the attempt; state errors are typed.
pub async fn delivered_records_the_attempt(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let id = one(store, &a, T0).await;
    assert!(matches!(
        store.finish_attempt(id, attempt(T0, Some(200), None, 1), Outcome::Delivered).await,
        Err(StoreError::LeaseLost(x)) if x == id
    ));
    assert_eq!(claim_ids(store, &a, far(), 1).await, vec![id]);
    store
        .finish_attempt(
            id,
            attempt(UnixMillis(T0.0 + 10), Some(200), None, 12),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    let d = store.get(id).await.unwrap().unwrap();
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
    assert_eq!(counts_of(store, &a).await, counts(0, 0, 1, 0));

    assert!(matches!(
        store.finish_attempt(id, attempt(T0, Some(200), None, 1), Outcome::Delivered).await,
        Err(StoreError::LeaseLost(x)) if x == id
    ));
    assert!(matches!(
        store.release(id, T0).await,
        Err(StoreError::LeaseLost(x)) if x == id
    ));
    let unknown = DeliveryId::generate();
    assert!(matches!(
        store.finish_attempt(unknown, attempt(T0, None, None, 0), Outcome::Delivered).await,
        Err(StoreError::NotFound(x)) if x == unknown
    ));
    assert!(
        claim_ids(store, &a, far(), 10).await.is_empty(),
        "delivered is never claimed again"
    );
    assert_eq!(counts_of(store, &a).await, counts(0, 0, 1, 0));
}

/// RetryAt makes a delivery pending at the given time; Dead ends it. History is oldest first.
pub async fn retry_reschedules_and_dead_stops(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let id = one(store, &a, T0).await;
    let retry_at = UnixMillis(T0.0 + 500);
    assert_eq!(claim_ids(store, &a, T0, 1).await, vec![id]);
    store
        .finish_attempt(
            id,
            attempt(T0, Some(503), Some("HTTP 503"), 3),
            Outcome::RetryAt(retry_at),
        )
        .await
        .unwrap();
    let d = store.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.next_attempt_at, Some(retry_at));
    assert_eq!(d.record.attempts, 1);
    assert_eq!(d.record.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 0));
    assert_eq!(store.next_due(&a).await.unwrap(), Some(retry_at));

    assert!(claim_ids(store, &a, UnixMillis(retry_at.0 - 1), 1)
        .await
        .is_empty());
    let again = store.claim(&a, retry_at, lease(), 1).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    store
        .finish_attempt(
            id,
            attempt(retry_at, None, Some("timeout"), 10_000),
            Outcome::Dead,
        )
        .await
        .unwrap();
    let d = store.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Dead);
    assert_eq!(d.record.next_attempt_at, None);
    assert_eq!(d.record.attempts, 2);
    assert_eq!(d.record.last_error.as_deref(), Some("timeout"));
    let numbers: Vec<u32> = d.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(d.attempts[0].status_code, Some(503));
    assert_eq!(d.attempts[1].status_code, None);
    assert_eq!(counts_of(store, &a).await, counts(0, 0, 0, 1));
    assert!(
        claim_ids(store, &a, far(), 10).await.is_empty(),
        "dead is never claimed"
    );
}

/// retry_dead moves one dead delivery back; redrive moves all of a subscriber's.
pub async fn dead_deliveries_can_be_retried_and_redriven(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let mut dead_a: Vec<DeliveryId> = Vec::new();
    for _ in 0..3 {
        let id = one(store, &a, T0).await;
        make_dead(store, &a, id).await;
        dead_a.push(id);
    }
    let dead_b = one(store, &b, T0).await;
    make_dead(store, &b, dead_b).await;
    let pending = one(store, &a, far()).await;
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 3));

    let now = UnixMillis(T0.0 + 9_000);
    let rec = store.retry_dead(dead_a[0], now).await.unwrap();
    assert_eq!(rec.id, dead_a[0]);
    assert_eq!(rec.status, DeliveryStatus::Pending);
    assert_eq!(rec.next_attempt_at, Some(now));
    assert_eq!(rec.attempts, 1, "history is kept");
    assert_eq!(counts_of(store, &a).await, counts(2, 0, 0, 2));
    assert!(matches!(
        store.retry_dead(pending, now).await,
        Err(StoreError::InvalidState {
            expected: DeliveryStatus::Dead,
            actual: DeliveryStatus::Pending,
            ..
        })
    ));
    assert!(matches!(
        store.retry_dead(DeliveryId::generate(), now).await,
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(store.redrive(&a, now).await.unwrap(), 2);
    assert_eq!(store.redrive(&a, now).await.unwrap(), 0);
    assert_eq!(counts_of(store, &a).await, counts(4, 0, 0, 0));
    assert_eq!(
        counts_of(store, &b).await,
        counts(0, 0, 0, 1),
        "other subscribers untouched"
    );

    let claimed = store.claim(&a, now, lease(), 10).await.unwrap();
    let got: BTreeSet<DeliveryId> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(got, dead_a.iter().copied().collect());
    assert!(claimed.iter().all(|c| c.attempt == 2));
    let listed = store
        .list(&ListQuery {
            subscriber: Some(b.clone()),
            status: Some(DeliveryStatus::Dead),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.deliveries.len(), 1);
    assert_eq!(listed.deliveries[0].record.id, dead_b);
    // A page carries each delivery's attempt history, the same as `get`.
    let details = store.get(dead_b).await.unwrap().unwrap();
    assert!(!details.attempts.is_empty());
    assert_eq!(listed.deliveries[0].attempts, details.attempts);
}

/// release makes an in-flight delivery pending again without counting an attempt.
pub async fn release_gives_back_without_an_attempt(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let id = one(store, &a, T0).await;
    assert_eq!(claim_ids(store, &a, T0, 1).await, vec![id]);
    let due = UnixMillis(T0.0 + 700);
    store.release(id, due).await.unwrap();
    let d = store.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.attempts, 0);
    assert_eq!(d.record.next_attempt_at, Some(due));
    assert!(d.attempts.is_empty());
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 0));
    assert!(claim_ids(store, &a, UnixMillis(due.0 - 1), 1)
        .await
        .is_empty());
    let again = store.claim(&a, due, lease(), 1).await.unwrap();
    assert_eq!(again[0].attempt, 1);
    store.release(id, due).await.unwrap();
    assert!(matches!(
        store.release(id, due).await,
        Err(StoreError::LeaseLost(x)) if x == id
    ));
    assert!(matches!(
        store.release(DeliveryId::generate(), due).await,
        Err(StoreError::NotFound(_))
    ));
}

/// list pages through deliveries in id order, with subscriber and status filters.
pub async fn list_pages_in_id_order_with_filters(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let mut all = Vec::new();
    let mut of_b = Vec::new();
    for i in 0..30 {
        if i % 6 == 0 {
            let id = one(store, &b, T0).await;
            of_b.push(id);
            all.push(id);
        } else {
            all.push(one(store, &a, T0).await);
        }
    }
    // Make two of a's dead and one in flight.
    let a_ids: Vec<DeliveryId> = all
        .iter()
        .copied()
        .filter(|id| !of_b.contains(id))
        .collect();
    let claimed = claim_ids(store, &a, far(), 3).await;
    assert_eq!(claimed, a_ids[..3].to_vec());
    for id in &claimed[..2] {
        store
            .finish_attempt(*id, attempt(T0, Some(500), None, 1), Outcome::Dead)
            .await
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
            .await
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
        .await
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

    let dead = |subscriber: Option<SubscriberId>| async move {
        store
            .list(&ListQuery {
                subscriber,
                status: Some(DeliveryStatus::Dead),
                ..ListQuery::default()
            })
            .await
            .unwrap()
    };
    assert_eq!(
        dead(Some(a.clone()))
            .await
            .deliveries
            .iter()
            .map(|d| d.record.id)
            .collect::<Vec<_>>(),
        claimed[..2].to_vec()
    );
    assert_eq!(dead(None).await.deliveries.len(), 2);
    assert!(dead(Some(b.clone())).await.deliveries.is_empty());
    // Paging the dead filter with a cursor.
    let first = store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Dead),
            limit: 1,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(first.deliveries.len(), 1);
    let second = store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Dead),
            limit: 1,
            cursor: first.next_cursor,
        })
        .await
        .unwrap();
    assert_eq!(second.deliveries[0].record.id, claimed[1]);
    assert_eq!(second.next_cursor, None);

    let in_flight = store
        .list(&ListQuery {
            status: Some(DeliveryStatus::InFlight),
            ..ListQuery::default()
        })
        .await
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
        .await
        .unwrap();
    assert_eq!(pending_a.deliveries.len(), a_ids.len() - 3);
    assert!(pending_a
        .deliveries
        .iter()
        .all(|d| d.record.status == DeliveryStatus::Pending && d.record.subscriber == a));
}

/// limit 0 means 100; larger limits are clamped to 1000.
pub async fn list_limit_defaults_and_clamps(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let events: Vec<NewEvent> = (0..1001).map(|_| event(&[&a], T0, "{}")).collect();
    store.enqueue(events).await.unwrap();
    let default = store.list(&ListQuery::default()).await.unwrap();
    assert_eq!(default.deliveries.len(), 100);
    assert!(default.next_cursor.is_some());
    let big = store
        .list(&ListQuery {
            limit: 5000,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(big.deliveries.len(), 1000);
    let rest = store
        .list(&ListQuery {
            limit: 5000,
            cursor: big.next_cursor,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(rest.next_cursor, None);
}

/// The same idempotency key returns the first receipt (duplicate = true) and creates nothing.
pub async fn idempotency_key_returns_the_first_receipt(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let first = enqueue_one(store, keyed(event(&[&a], T0, "{\"v\":1}"), "k1")).await;
    assert!(!first.duplicate);
    let again = enqueue_one(store, keyed(event(&[&a, &b], T0, "{\"v\":2}"), "k1")).await;
    assert!(again.duplicate);
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.deliveries, first.deliveries);
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 0));
    assert_eq!(counts_of(store, &b).await, QueueCounts::default());

    // Within one call, and alongside new keys.
    let batch = store
        .enqueue(vec![
            keyed(event(&[&a], T0, "{}"), "k2"),
            keyed(event(&[&a], T0, "{}"), "k2"),
            keyed(event(&[&a], T0, "{}"), "k1"),
            event(&[&a], T0, "{}"),
        ])
        .await
        .unwrap();
    assert!(!batch[0].duplicate);
    assert!(batch[1].duplicate);
    assert_eq!(batch[1].event_id, batch[0].event_id);
    assert!(batch[2].duplicate);
    assert_eq!(batch[2].event_id, first.event_id);
    assert!(!batch[3].duplicate);
    assert_eq!(counts_of(store, &a).await, counts(3, 0, 0, 0));

    // A key is remembered even when the event had no subscribers.
    let empty = enqueue_one(store, keyed(event(&[], T0, "{}"), "k3")).await;
    let empty_again = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "k3")).await;
    assert!(empty_again.duplicate);
    assert_eq!(empty_again.event_id, empty.event_id);
    assert!(empty_again.deliveries.is_empty());
    assert_eq!(counts_of(store, &a).await, counts(3, 0, 0, 0));

    // The first delivery is still claimable with the first payload.
    let c = store.claim(&a, far(), lease(), 1).await.unwrap();
    assert_eq!(c[0].id, first.deliveries[0].id);
    assert_eq!(&c[0].payload[..], b"{\"v\":1}");
}

/// Concurrent enqueues of one key: exactly one creates.
pub async fn concurrent_enqueues_of_one_key_create_once(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let writers = (0..8).map(|_| {
        let (store, a) = (store.clone(), a.clone());
        async move {
            let mut mine = Vec::new();
            for round in 0..20 {
                let r = store
                    .enqueue(vec![keyed(
                        event(&[&a], T0, "{}"),
                        &format!("race-{round}"),
                    )])
                    .await
                    .unwrap();
                mine.push((round, r[0].clone()));
            }
            mine
        }
    });
    let receipts: Vec<(i32, EnqueueReceipt)> = join_tasks(writers.collect())
        .await
        .into_iter()
        .flatten()
        .collect();
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
    assert_eq!(counts_of(store, &a).await.pending, 20);
}

/// purge removes finished deliveries finished before the cutoff, their lone events and
/// idempotency keys older than the cutoff; pending work is untouched.
pub async fn purge_removes_finished_and_expired(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let delivered = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "kd"))
        .await
        .deliveries[0]
        .id;
    let dead = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "kz"))
        .await
        .deliveries[0]
        .id;
    let pending = enqueue_one(store, event(&[&a], far(), "{\"p\":1}"))
        .await
        .deliveries[0]
        .id;
    assert_eq!(claim_ids(store, &a, T0, 2).await, vec![delivered, dead]);
    store
        .finish_attempt(
            delivered,
            attempt(UnixMillis(T0.0 + 10), Some(200), None, 0),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    store
        .finish_attempt(
            dead,
            attempt(UnixMillis(T0.0 + 20), Some(500), None, 0),
            Outcome::Dead,
        )
        .await
        .unwrap();

    // Nothing is older than T0.
    assert_eq!(
        store.purge(T0).await.unwrap(),
        herald_core::PurgeStats::default()
    );
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 1, 1));

    // Finished at T0+10 (attempt start + duration) < T0+15: the delivered one goes.
    let stats = store.purge(UnixMillis(T0.0 + 15)).await.unwrap();
    assert_eq!(stats.deliveries, 1);
    assert_eq!(stats.events, 1);
    assert_eq!(stats.idempotency_keys, 2, "both keys were created at T0");
    assert!(store.get(delivered).await.unwrap().is_none());
    assert_eq!(status(store, dead).await, DeliveryStatus::Dead);
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 1));

    let stats = store.purge(UnixMillis(T0.0 + 100)).await.unwrap();
    assert_eq!(
        (stats.deliveries, stats.events, stats.idempotency_keys),
        (1, 1, 0)
    );
    assert!(store.get(dead).await.unwrap().is_none());
    assert!(store
        .list(&ListQuery {
            subscriber: Some(a.clone()),
            status: Some(DeliveryStatus::Dead),
            ..ListQuery::default()
        })
        .await
        .unwrap()
        .deliveries
        .is_empty());
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 0, 0));
    assert_eq!(store.redrive(&a, far()).await.unwrap(), 0);

    // Expired keys create anew.
    let fresh = enqueue_one(store, keyed(event(&[&a], T0, "{}"), "kd")).await;
    assert!(!fresh.duplicate);

    // Pending work and its payload survive any purge.
    store.purge(far()).await.unwrap();
    assert_eq!(status(store, pending).await, DeliveryStatus::Pending);
    let c = store.claim(&a, far(), lease(), 10).await.unwrap();
    let p = c.iter().find(|c| c.id == pending).unwrap();
    assert_eq!(&p.payload[..], b"{\"p\":1}");
}

/// An event stays while any of its deliveries remains.
pub async fn purge_keeps_events_with_remaining_deliveries(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let r = enqueue_one(store, event(&[&a, &b], T0, "{\"shared\":true}")).await;
    let (da, db) = (r.deliveries[0].id, r.deliveries[1].id);
    assert_eq!(claim_ids(store, &a, T0, 1).await, vec![da]);
    store
        .finish_attempt(da, attempt(T0, Some(200), None, 0), Outcome::Delivered)
        .await
        .unwrap();
    let stats = store.purge(far()).await.unwrap();
    assert_eq!((stats.deliveries, stats.events), (1, 0));
    let c = store.claim(&b, far(), lease(), 1).await.unwrap();
    assert_eq!(c[0].id, db);
    assert_eq!(&c[0].payload[..], b"{\"shared\":true}");
    store
        .finish_attempt(db, attempt(T0, Some(200), None, 0), Outcome::Delivered)
        .await
        .unwrap();
    let stats = store.purge(far()).await.unwrap();
    assert_eq!((stats.deliveries, stats.events), (1, 1));
    assert!(
        store
            .all_counts()
            .await
            .unwrap()
            .iter()
            .all(|(_, c)| *c == QueueCounts::default()),
        "nothing stored any more"
    );
}

/// Pause reasons are stored and removed.
pub async fn pause_state_round_trips(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    assert!(store.paused().await.unwrap().is_empty());
    store
        .set_paused(&a, Some("maintenance window"))
        .await
        .unwrap();
    store.set_paused(&b, Some("")).await.unwrap();
    let mut paused = store.paused().await.unwrap();
    paused.sort();
    assert_eq!(
        paused,
        vec![
            (a.clone(), "maintenance window".to_owned()),
            (b.clone(), String::new())
        ]
    );
    store.set_paused(&a, Some("changed")).await.unwrap();
    store.set_paused(&b, None).await.unwrap();
    store.set_paused(&b, None).await.unwrap();
    assert_eq!(
        store.paused().await.unwrap(),
        vec![(a, "changed".to_owned())]
    );
}

/// Unknown ids and subscribers are answered, not errors.
pub async fn unknown_ids_and_subscribers(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let x = sub("nobody");
    assert!(store.get(DeliveryId::generate()).await.unwrap().is_none());
    assert_eq!(counts_of(store, &x).await, QueueCounts::default());
    assert!(store
        .claim(&x, far(), lease(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due(&x).await.unwrap(), None);
    assert_eq!(store.redrive(&x, far()).await.unwrap(), 0);
    assert!(store.all_counts().await.unwrap().is_empty());
    let page = store.list(&ListQuery::default()).await.unwrap();
    assert!(page.deliveries.is_empty());
    assert_eq!(page.next_cursor, None);
    assert_eq!(
        store.purge(far()).await.unwrap(),
        herald_core::PurgeStats::default()
    );
}

/// Payloads come back exactly, whatever the bytes and size.
pub async fn payload_is_stored_byte_for_byte(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
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
        ids.push(enqueue_one(store, e).await.deliveries[0].id);
    }
    let claimed = store.claim(&a, far(), lease(), 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    for (c, (id, p)) in claimed.iter().zip(ids.iter().zip(&payloads)) {
        assert_eq!(c.id, *id);
        assert_eq!(c.payload, *p);
    }
}

/// size_on_disk answers (non-zero, where the engine knows it, once something is stored).
pub async fn size_on_disk_is_reported(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    one(store, &a, T0).await;
    store.sync().await.unwrap();
    if let Some(bytes) = store.size_on_disk().await.unwrap() {
        assert!(bytes > 0);
    }
}
