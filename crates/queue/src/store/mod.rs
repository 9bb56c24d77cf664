//! [`SledStore`]: the sled implementation of [`DeliveryStore`].
//!
//! The struct, its helpers and the trait implementation live here; each responsibility has
//! its own module:
//!
//! - [`recovery`]: opening, the format marker, and the scan that rebuilds the in-memory state;
//! - [`enqueue`]: storing events (the commit order, idempotency keys);
//! - [`leases`]: claims, lease tokens, the expiry index, the cap, `next_due`, `release`;
//! - [`transitions`]: attempt outcomes, retry, redrive, replay, pauses;
//! - [`purge`]: the retention purge, in bounded chunks;
//! - [`reads`]: `get`, `list`, events, counts.

mod enqueue;
mod leases;
mod purge;
mod reads;
mod recovery;
mod transitions;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryDetails, DeliveryId, DeliveryPage,
    DeliveryRecord, DeliveryStore, EnqueueReceipt, EventDetails, EventId, EventPage, EventQuery,
    LeaseToken, ListQuery, NewEvent, Outcome, PurgeStats, QueueCounts, ReplayRequest, ReplayResult,
    StoreError, StoreListener, SubscriberId, UnixMillis,
};
use parking_lot::{Mutex, MutexGuard, RwLock};
use tracing::{error, info, warn};

use crate::commit::{Barrier, GroupCommit};
use crate::error::{self, QueueError};
use crate::index::{Ready, Subscribers};
use crate::keys;
use crate::records::Delivery;

#[cfg(test)]
pub(crate) use enqueue::event_id_at;

/// The sled tree holding every record.
const TREE_NAME: &[u8] = b"herald";
/// Lock stripes for read-modify-write of deliveries (by delivery id).
const DELIVERY_STRIPES: usize = 256;
/// Lock stripes for idempotency keys (by key hash).
const KEY_STRIPES: usize = 64;
/// `list` page size when the query says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `list` page.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Records one `list` call examines at most before returning a (possibly short) page with a
/// cursor, so a very selective filter cannot turn one request into a full scan.
pub const MAX_LIST_SCAN: usize = 100_000;
/// Finished-index entries handled per purge step.
const PURGE_CHUNK: usize = 512;
/// How long [`SledStore::open`] retries a locked directory before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(1);
/// Corrupt records logged one by one at open; beyond that only the total is logged.
const MAX_CORRUPT_LOGS: u64 = 20;

/// Tuning of the sled engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page cache. Bounds most of the store's memory; sled's default (1 GiB) is far more
    /// than a queue needs; 32 MiB measured best here (a 1M-event backlog stays near 200 MiB of
    /// RSS, and throughput is no lower than with 64 MiB). Default 32 MiB.
    pub cache_capacity_bytes: u64,
    /// sled's own background flush (and fsync) interval. A backstop only: acknowledged
    /// enqueues are made durable by [`DeliveryStore::sync`], and attempt results, releases,
    /// redrives, replays and pauses ask for the next group commit themselves. What it still
    /// carries is housekeeping (claim index records, purges), whose loss a crash tolerates, so a
    /// shorter interval would add idle fsyncs and buy nothing. `None` disables it. Default 500 ms.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 32 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// What [`SledStore::open`] found and repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Deliveries loaded.
    pub deliveries: u64,
    /// Delivery records without their event (an enqueue or purge interrupted by a crash before
    /// it was acknowledged or finished); removed.
    pub orphans_removed: u64,
    /// Records that could not be decoded; kept on disk, skipped, and logged.
    pub corrupt_records: u64,
}

/// The sled-backed [`DeliveryStore`]. See the crate docs for the layout and guarantees.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    /// fsyncs what sled's `flush` only wrote; shared with the flusher thread.
    barrier: Arc<Barrier>,
    commit: GroupCommit,
    subscribers: Subscribers,
    delivery_locks: Box<[Mutex<Stripe>]>,
    key_locks: Box<[Mutex<()>]>,
    /// One purge at a time (held across its chunks, so an async lock).
    purge_lock: tokio::sync::Mutex<()>,
    report: OpenReport,
    corrupt_seen: AtomicU64,
    /// Sequence of `c` keys within a millisecond. Starts at a random value, so a restart (or a
    /// clock stepped back) never reuses the key of a claim record that is still stored.
    claim_seq: AtomicU64,
    /// The next lease token. Starts at a random value, so tokens differ across restarts.
    next_token: AtomicU64,
    listener: Listener,
}

/// What the store tells about changes (see [`StoreListener`]); nobody until one is set.
#[derive(Default)]
struct Listener(RwLock<Option<Arc<dyn StoreListener>>>);

impl Listener {
    fn get(&self) -> Option<Arc<dyn StoreListener>> {
        self.0.read().clone()
    }
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// A leased delivery. Leases live in memory only: on disk a leased delivery stays pending,
/// which is exactly the state a restart must find it in (at-least-once), so a claim costs no
/// write to the delivery record.
#[derive(Debug)]
struct Lease {
    /// The fencing token `finish_attempt` and `release` must present.
    token: LeaseToken,
    /// When the lease expires (the delivery is claimable again from then on).
    until: u64,
    claimed_at: u64,
    /// The ready entry the delivery was claimed from (what a new claim of an expired lease
    /// needs).
    ready: Ready,
    /// The record as it is on disk, when the claim could rebuild it (a fresh delivery): the
    /// attempt's result then skips reading it back.
    record: Option<Box<Delivery>>,
    /// A claim's `c` record lists this delivery, so its finish needs no `f` entry.
    indexed: bool,
}

/// One lock stripe: serializes the read-modify-write of the deliveries hashing to it and holds
/// their leases.
#[derive(Debug, Default)]
struct Stripe {
    leased: HashMap<DeliveryId, Lease>,
}

impl Stripe {
    /// The delivery as callers see it: a leased one is in flight.
    fn current(&self, id: DeliveryId, mut row: Delivery) -> Delivery {
        if let Some(lease) = self.leased.get(&id) {
            row.status = crate::records::Status::InFlight;
            row.updated_at = lease.claimed_at;
        }
        row
    }

    /// Takes the lease of `id` out if `token` is its current one.
    fn take_lease(&mut self, id: DeliveryId, token: LeaseToken) -> Option<Lease> {
        match self.leased.get(&id) {
            Some(lease) if lease.token == token => self.leased.remove(&id),
            _ => None,
        }
    }
}

/// 64 random bits (the random tail of a fresh UUIDv7).
fn random_u64() -> u64 {
    let bytes = EventId::generate().to_bytes();
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&bytes[8..]);
    u64::from_be_bytes(tail)
}

/// FNV-1a: a stable, cheap hash for picking a lock stripe.
fn stripe(bytes: &[u8], stripes: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // `stripes` is a small power of two; the modulo fits in usize.
    usize::try_from(h % stripes as u64).unwrap_or(0)
}

/// Runs a chunk of synchronous store work from async code without stalling the runtime: on a
/// multi-threaded runtime the worker hands its other tasks to another thread meanwhile
/// (`block_in_place`); elsewhere (a current-thread runtime, no runtime) it just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl SledStore {
    /// Opens (creating if needed) the queue in directory `path`, then recovers: every delivery
    /// that was in flight becomes pending again, counts and the ready index are rebuilt, and
    /// leftovers of interrupted writes are removed.
    ///
    /// Fails with [`QueueError::Locked`] if another process has the directory open (after
    /// retrying for a second).
    pub fn open(path: impl AsRef<Path>, options: SledOptions) -> Result<Self, QueueError> {
        let path = path.as_ref().to_path_buf();
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(options.flush_every_ms);
        // sled releases its file lock when its last background write finishes, which can be a
        // moment after the previous store in this process was dropped: retry briefly before
        // reporting the directory as locked.
        let started = Instant::now();
        let db = loop {
            match config
                .open()
                .map_err(|e| QueueError::from_open(path.clone(), e))
            {
                Ok(db) => break db,
                Err(QueueError::Locked { .. }) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        let tree = db
            .open_tree(TREE_NAME)
            .map_err(|e| QueueError::from_open(path.clone(), e))?;
        recovery::check_format(&tree, &path)?;

        let barrier =
            Arc::new(
                Barrier::open(tree.clone(), &path).map_err(|e| QueueError::Open {
                    path: path.clone(),
                    source: sled::Error::Io(e),
                })?,
            );
        let flusher = Arc::clone(&barrier);
        let commit = GroupCommit::start(move || flusher.run()).map_err(QueueError::Thread)?;

        let mut store = Self {
            path,
            db,
            tree,
            barrier,
            commit,
            subscribers: Subscribers::default(),
            delivery_locks: (0..DELIVERY_STRIPES)
                .map(|_| Mutex::new(Stripe::default()))
                .collect(),
            key_locks: (0..KEY_STRIPES).map(|_| Mutex::new(())).collect(),
            purge_lock: tokio::sync::Mutex::new(()),
            report: OpenReport::default(),
            corrupt_seen: AtomicU64::new(0),
            claim_seq: AtomicU64::new(random_u64()),
            next_token: AtomicU64::new(random_u64()),
            listener: Listener::default(),
        };
        store.report = store.recover().map_err(|source| QueueError::Recovery {
            path: store.path.clone(),
            source,
        })?;
        let r = store.report;
        info!(
            path = %store.path.display(),
            deliveries = r.deliveries,
            orphans_removed = r.orphans_removed,
            corrupt_records = r.corrupt_records,
            "queue opened"
        );
        if r.corrupt_records > 0 {
            warn!(
                path = %store.path.display(),
                corrupt_records = r.corrupt_records,
                "queue has records that cannot be decoded; they are kept on disk and skipped"
            );
        }
        Ok(store)
    }

    /// [`open`](Self::open), wrapped for sharing as a trait object.
    pub fn open_shared(
        path: impl AsRef<Path>,
        options: SledOptions,
    ) -> Result<Arc<dyn DeliveryStore>, QueueError> {
        Ok(Arc::new(Self::open(path, options)?))
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the open-time recovery found.
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// Corrupt records met since open (at open, in claims, lists and purges).
    pub fn corrupt_records(&self) -> u64 {
        self.report.corrupt_records + self.corrupt_seen.load(Ordering::Relaxed)
    }

    /// The stored payload of an event, exactly as enqueued (shares sled's buffer, no copy).
    /// Makes everything written so far durable now (sled flush, then fsync), blocking the
    /// calling thread (for shutdown paths that are not async). Prefer [`DeliveryStore::sync`]
    /// elsewhere: it shares one fsync among concurrent callers.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.barrier.run()
    }

    fn delivery_lock(&self, id: DeliveryId) -> MutexGuard<'_, Stripe> {
        self.delivery_locks[stripe(&id.to_bytes(), DELIVERY_STRIPES)].lock()
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.tree
            .insert(key, value)
            .map(drop)
            .map_err(error::backend)
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key).map(drop).map_err(error::backend)
    }

    fn read_delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let key = keys::delivery(id);
        match self.tree.get(key).map_err(error::backend)? {
            None => Ok(None),
            Some(v) => Delivery::decode(&v)
                .map(Some)
                .map_err(|e| error::corrupt(&key, e)),
        }
    }

    fn write_delivery(&self, id: DeliveryId, row: &Delivery) -> Result<(), StoreError> {
        self.insert(&keys::delivery(id), row.encode())
    }

    fn note_corrupt(&self, e: &StoreError) {
        self.corrupt_seen.fetch_add(1, Ordering::Relaxed);
        error!(error = %e, "skipping corrupt queue record");
    }

    fn notify_work(&self, subscriber: &SubscriberId) {
        if let Some(l) = self.listener.get() {
            l.work_available(subscriber);
        }
    }

    fn notify_changed(&self, subscriber: &SubscriberId) {
        if let Some(l) = self.listener.get() {
            l.subscriber_changed(subscriber);
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.commit.shutdown();
        if let Err(e) = self.barrier.run() {
            error!(error = %e, path = %self.path.display(), "final queue flush failed");
        }
    }
}

/// The trait's methods run synchronously where they are in-memory work plus sled writes (no
/// fsync, microseconds); `enqueue` and `set_paused` then wait for the group commit; `purge`
/// and `replay` work in bounded chunks that never stall the runtime.
#[async_trait::async_trait]
impl DeliveryStore for SledStore {
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError> {
        let receipts = self.enqueue_sync(events)?;
        self.commit.sync().await?;
        let mut woken: Vec<&SubscriberId> = receipts
            .iter()
            .filter(|r| !r.duplicate)
            .flat_map(|r| r.deliveries.iter().map(|d| &d.subscriber))
            .collect();
        woken.sort_unstable();
        woken.dedup();
        for sub in woken {
            self.notify_work(sub);
        }
        Ok(receipts)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.commit.sync().await
    }

    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim_sync(&request)
    }

    async fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError> {
        Ok(self.next_due_sync(subscriber))
    }

    async fn finish_attempt(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.finish_sync(id, lease, attempt, outcome)?;
        // Ride the next group commit: nobody waits, and the outcome is on disk within a flush.
        self.commit.request();
        Ok(())
    }

    async fn release(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        due: UnixMillis,
    ) -> Result<(), StoreError> {
        let subscriber = self.release_sync(id, lease, due)?;
        self.commit.request();
        self.notify_work(&subscriber);
        Ok(())
    }

    async fn retry_dead(
        &self,
        id: DeliveryId,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        let record = self.retry_dead_sync(id, now)?;
        self.commit.request();
        self.notify_work(&record.subscriber);
        Ok(record)
    }

    async fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError> {
        let moved = blocking(|| self.redrive_sync(subscriber, now))?;
        self.commit.request();
        if moved > 0 {
            self.notify_work(subscriber);
        }
        Ok(moved)
    }

    async fn replay(&self, request: &ReplayRequest) -> Result<ReplayResult, StoreError> {
        let result = self.replay_chunked(request).await?;
        if result.replayed > 0 {
            self.commit.request();
            self.notify_work(&request.subscriber);
        }
        Ok(result)
    }

    async fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        self.get_sync(id)
    }

    async fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
        blocking(|| self.list_sync(query))
    }

    async fn get_event(&self, id: EventId) -> Result<Option<EventDetails>, StoreError> {
        self.get_event_sync(id)
    }

    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        blocking(|| self.list_events_sync(query))
    }

    async fn counts(&self, subscriber: &SubscriberId) -> Result<QueueCounts, StoreError> {
        Ok(self.counts_sync(subscriber))
    }

    async fn all_counts(&self) -> Result<Vec<(SubscriberId, QueueCounts)>, StoreError> {
        Ok(self.all_counts_sync())
    }

    async fn blocked_keys(&self) -> Result<Vec<(SubscriberId, u64)>, StoreError> {
        // Maintained by every transition of an ordered delivery: no scan.
        Ok(self
            .subscribers
            .all()
            .into_iter()
            .map(|(id, state)| (id, state.ready.lock().blocked()))
            .collect())
    }

    async fn set_paused(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.set_paused_sync(subscriber, reason)?;
        self.commit.sync().await?;
        self.notify_changed(subscriber);
        Ok(())
    }

    async fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
        self.paused_sync()
    }

    async fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        self.purge_chunked(cutoff).await
    }

    async fn size_on_disk(&self) -> Result<Option<u64>, StoreError> {
        self.db.size_on_disk().map(Some).map_err(error::backend)
    }

    fn set_listener(&self, listener: Arc<dyn StoreListener>) {
        *self.listener.0.write() = Some(listener);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn claim(
        store: &SledStore,
        subscriber: &SubscriberId,
        now: UnixMillis,
        lease_until: UnixMillis,
        max: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        store.claim_sync(&ClaimRequest {
            subscriber,
            now,
            lease_until,
            max,
            cap: u32::MAX,
        })
    }

    /// The current lease token of `id` (a token nobody holds if it is not leased).
    fn token(store: &SledStore, id: DeliveryId) -> LeaseToken {
        store
            .delivery_lock(id)
            .leased
            .get(&id)
            .map_or(LeaseToken(u64::MAX), |l| l.token)
    }

    fn finish(
        store: &SledStore,
        id: DeliveryId,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        store.finish_sync(id, token(store, id), attempt, outcome)
    }

    fn release(store: &SledStore, id: DeliveryId, due: UnixMillis) -> Result<(), StoreError> {
        store.release_sync(id, token(store, id), due).map(drop)
    }

    #[test]
    fn stripes_spread() {
        let mut hit = [false; DELIVERY_STRIPES];
        for _ in 0..10_000 {
            hit[stripe(&DeliveryId::generate().to_bytes(), DELIVERY_STRIPES)] = true;
        }
        assert!(hit.iter().filter(|h| **h).count() > DELIVERY_STRIPES * 9 / 10);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        let err = SledStore::open(dir.path(), SledOptions::default()).unwrap_err();
        assert!(matches!(err, QueueError::Locked { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains("locked"), "{msg}");
    }

    #[test]
    fn an_unopenable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = SledStore::open(&file, SledOptions::default()).unwrap_err();
        assert!(matches!(err, QueueError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    /// The record a claim keeps for a fresh delivery, if any.
    fn kept_record(store: &SledStore, id: DeliveryId) -> Option<Delivery> {
        let stripe = store.delivery_lock(id);
        stripe.leased.get(&id).unwrap().record.as_deref().cloned()
    }

    #[test]
    fn a_claim_rebuilds_a_fresh_delivery_exactly_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriberId::new("acme").unwrap();
        let received = UnixMillis(1_700_000_000_123);
        let event = |n: u32| NewEvent {
            event_type: format!("TYPE_{n}"),
            payload: Bytes::from(format!("{{\"n\":{n}}}")),
            subscribers: vec![sub.clone()],
            idempotency_key: None,
            received_at: received,
            ordering_key: None,
            ordered_for: Vec::new(),
            traceparent: None,
        };
        let later = UnixMillis(received.0 + 60_000);
        let lease = later.plus(Duration::from_secs(30));
        {
            let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
            store.enqueue_sync((0..3).map(event).collect()).unwrap();
            let claimed = claim(&store, &sub, later, lease, 10).unwrap();
            assert_eq!(claimed.len(), 3);
            for c in &claimed {
                let stored = store.read_delivery(c.id).unwrap().unwrap();
                assert_eq!(kept_record(&store, c.id), Some(stored));
            }
            // A retried delivery is no longer fresh: its result must read the record back.
            let attempt = AttemptRecord {
                attempt: 1,
                at: later,
                status_code: Some(500),
                error: Some("HTTP 500".into()),
                duration_ms: 3,
            };
            finish(&store, claimed[0].id, attempt, Outcome::RetryAt(later)).unwrap();
            let again = claim(&store, &sub, later, lease, 10).unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(kept_record(&store, again[0].id), None);
            release(&store, again[0].id, later).unwrap();
            for c in &claimed[1..] {
                release(&store, c.id, received).unwrap();
            }
            // Never claimed before the restart: fresh on disk.
            store.enqueue_sync((3..6).map(event).collect()).unwrap();
            store.flush_blocking().unwrap();
        }
        // After a restart the open scan finds the fresh records again, and what the claim
        // rebuilds for them matches the disk byte for byte; the others are read back.
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        let claimed = claim(&store, &sub, later, lease, 10).unwrap();
        assert_eq!(claimed.len(), 6);
        let mut rebuilt = 0;
        for c in &claimed {
            let stored = store.read_delivery(c.id).unwrap().unwrap();
            match kept_record(&store, c.id) {
                Some(kept) => {
                    assert_eq!(kept.encode(), stored.encode());
                    rebuilt += 1;
                }
                None => assert!(!stored.is_fresh(), "{stored:?}"),
            }
        }
        assert_eq!(rebuilt, 3);
    }

    fn count_prefix(store: &SledStore, prefix: u8) -> usize {
        store.tree.scan_prefix([prefix]).count()
    }

    fn delivered_at(store: &SledStore, id: DeliveryId, at: u64) {
        let attempt = AttemptRecord {
            attempt: 1,
            at: UnixMillis(at),
            status_code: Some(200),
            error: None,
            duration_ms: 5,
        };
        finish(store, id, attempt, Outcome::Delivered).unwrap();
    }

    #[test]
    fn the_claim_record_indexes_finishes_for_the_purge() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriberId::new("acme").unwrap();
        let t = 1_700_000_000_000;
        let event = |n: u32| NewEvent {
            event_type: "T".into(),
            payload: Bytes::from(format!("{n}")),
            subscribers: vec![sub.clone()],
            idempotency_key: None,
            received_at: UnixMillis(t),
            ordering_key: None,
            ordered_for: Vec::new(),
            traceparent: None,
        };
        let lease = UnixMillis(t + 1_000_000);
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        store.enqueue_sync((0..4).map(event).collect()).unwrap();
        // One claim, one `c` record, no `f` entries when they finish.
        let claimed = claim(&store, &sub, UnixMillis(t + 100), lease, 10).unwrap();
        assert_eq!(claimed.len(), 4);
        assert_eq!(count_prefix(&store, keys::CLAIMED), 1);
        delivered_at(&store, claimed[0].id, t + 1_000); // finished at t + 1005
        delivered_at(&store, claimed[1].id, t + 5_000); // finished at t + 5005
        let retry = AttemptRecord {
            attempt: 1,
            at: UnixMillis(t + 200),
            status_code: Some(500),
            error: Some("HTTP 500".into()),
            duration_ms: 1,
        };
        finish(
            &store,
            claimed[2].id,
            retry,
            Outcome::RetryAt(UnixMillis(t + 300)),
        )
        .unwrap();
        // claimed[3] stays in flight.
        assert_eq!(count_prefix(&store, keys::FINISHED), 0);

        // Cutoff between the two finishes: only the first goes; the retried one is dropped
        // from the record (pending again), the others are kept.
        let stats = block_on(store.purge_chunked(UnixMillis(t + 2_000))).unwrap();
        assert_eq!(stats.deliveries, 1);
        assert!(store.get_sync(claimed[0].id).unwrap().is_none());
        assert!(store.get_sync(claimed[1].id).unwrap().is_some());
        assert_eq!(count_prefix(&store, keys::CLAIMED), 1);

        // The retried delivery is claimed again (a second record) and delivered; the one in
        // flight finishes too. A restart in between changes nothing.
        let again = claim(&store, &sub, UnixMillis(t + 6_000), lease, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, claimed[2].id);
        delivered_at(&store, claimed[2].id, t + 6_000);
        delivered_at(&store, claimed[3].id, t + 7_000);
        assert_eq!(count_prefix(&store, keys::CLAIMED), 2);
        assert_eq!(count_prefix(&store, keys::FINISHED), 0);
        drop(store);
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();

        let stats = block_on(store.purge_chunked(UnixMillis(t + 10_000))).unwrap();
        assert_eq!((stats.deliveries, stats.events), (3, 3));
        assert_eq!(count_prefix(&store, keys::CLAIMED), 0);
        assert_eq!(count_prefix(&store, keys::DELIVERY), 0);
        assert_eq!(count_prefix(&store, keys::EVENT), 0);
        assert!(store
            .all_counts_sync()
            .iter()
            .all(|(_, c)| *c == QueueCounts::default()));
    }

    #[test]
    fn a_finish_before_its_claim_time_indexes_itself() {
        // Claim at a later clock reading than the attempt's end (the clock stepped back): the
        // claim record would not be reached by a cutoff between the two, so the finish writes
        // its own `f` entry and the purge still finds it.
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriberId::new("acme").unwrap();
        let t = 1_700_000_000_000;
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        store
            .enqueue_sync(vec![NewEvent {
                event_type: "T".into(),
                payload: Bytes::from_static(b"1"),
                subscribers: vec![sub.clone()],
                idempotency_key: None,
                received_at: UnixMillis(t),
                ordering_key: None,
                ordered_for: Vec::new(),
                traceparent: None,
            }])
            .unwrap();
        let claimed = claim(
            &store,
            &sub,
            UnixMillis(t + 9_000),
            UnixMillis(t + 99_000),
            1,
        )
        .unwrap();
        delivered_at(&store, claimed[0].id, t + 1_000);
        assert_eq!(count_prefix(&store, keys::FINISHED), 1);
        let stats = block_on(store.purge_chunked(UnixMillis(t + 2_000))).unwrap();
        assert_eq!(stats.deliveries, 1);
        // The claim record, left behind, goes once its own time is past the cutoff.
        assert_eq!(count_prefix(&store, keys::CLAIMED), 1);
        block_on(store.purge_chunked(UnixMillis(t + 10_000))).unwrap();
        assert_eq!(count_prefix(&store, keys::CLAIMED), 0);
    }
}
