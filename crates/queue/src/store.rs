//! [`SledStore`]: the sled implementation of [`DeliveryStore`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_core::{
    AttemptRecord, BoxFuture, ClaimedDelivery, DeliveryDetails, DeliveryId, DeliveryPage,
    DeliveryRecord, DeliveryStatus, DeliveryStore, EnqueueReceipt, EventId, ListQuery, NewEvent,
    Outcome, PurgeStats, QueueCounts, ReceiptDelivery, StoreError, SubscriberId, UnixMillis,
};
use parking_lot::{Mutex, MutexGuard};
use tracing::{error, info, warn};

use crate::commit::{Barrier, GroupCommit};
use crate::error::{self, QueueError};
use crate::index::{Ready, SubscriberState, Subscribers};
use crate::keys;
use crate::records::{self, Attempt, Claimed, Delivery, EventMeta, Idempotency, Status};

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
    /// redrives and pauses ask for the next group commit themselves. What it still carries is
    /// housekeeping (claim index records, purges), whose loss a crash tolerates, so a shorter
    /// interval would add idle fsyncs and buy nothing. `None` disables it. Default 500 ms.
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
    purge_lock: Mutex<()>,
    report: OpenReport,
    corrupt_seen: AtomicU64,
    /// Sequence of `c` keys within a millisecond. Starts at a random value, so a restart (or a
    /// clock stepped back) never reuses the key of a claim record that is still stored.
    claim_seq: AtomicU64,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// An in-flight delivery's lease. Leases live in memory only: on disk a leased delivery stays
/// pending, which is exactly the state a restart must find it in (at-least-once), so a claim
/// costs no write.
#[derive(Debug)]
struct Lease {
    claimed_at: u64,
    /// The record as it is on disk, when the claim could rebuild it (a fresh delivery): the
    /// attempt's result then skips reading it back.
    record: Option<Box<Delivery>>,
    /// The claim's `c` record lists this delivery, so its finish needs no `f` entry.
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
            row.status = Status::InFlight;
            row.updated_at = lease.claimed_at;
        }
        row
    }

    /// Refuses unless the delivery is leased (in flight).
    fn expect_leased(&self, id: DeliveryId, row: &Delivery) -> Result<(), StoreError> {
        if self.leased.contains_key(&id) {
            Ok(())
        } else {
            Err(StoreError::InvalidState {
                id,
                expected: DeliveryStatus::InFlight,
                actual: row.status.public(),
            })
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
        check_format(&tree, &path)?;

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
            purge_lock: Mutex::new(()),
            report: OpenReport::default(),
            corrupt_seen: AtomicU64::new(0),
            claim_seq: AtomicU64::new(random_u64()),
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
    pub fn event_payload(&self, event_id: EventId) -> Result<Option<Bytes>, StoreError> {
        let key = keys::event(event_id);
        let Some(value) = self.tree.get(key).map_err(error::backend)? else {
            return Ok(None);
        };
        let range = records::event_payload_range(&value).map_err(|e| error::corrupt(&key, e))?;
        Ok(Some(Bytes::from_owner(value).slice(range)))
    }

    /// Makes everything written so far durable now (sled flush, then fsync), blocking the
    /// calling thread (for shutdown paths that are not async). Prefer [`DeliveryStore::sync`]
    /// elsewhere: it shares one fsync among concurrent callers.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.barrier.run()
    }

    fn recover(&self) -> Result<OpenReport, StoreError> {
        let mut report = OpenReport::default();
        let now = UnixMillis::now().0;
        let mut last_event: Option<(EventId, bool)> = None;
        for item in self.tree.scan_prefix([keys::DELIVERY]) {
            let (key, value) = item.map_err(error::backend)?;
            let Some(id) = keys::id_of(&key).map(DeliveryId::from_bytes) else {
                report.corrupt_records += 1;
                log_corrupt(
                    report.corrupt_records,
                    &key,
                    "delivery key has the wrong length",
                );
                continue;
            };
            let mut row = match Delivery::decode(&value) {
                Ok(row) => row,
                Err(e) => {
                    report.corrupt_records += 1;
                    log_corrupt(report.corrupt_records, &key, &e.0);
                    continue;
                }
            };
            let has_event = match last_event {
                Some((event, exists)) if event == row.event_id => exists,
                _ => {
                    let exists = self
                        .tree
                        .contains_key(keys::event(row.event_id))
                        .map_err(error::backend)?;
                    last_event = Some((row.event_id, exists));
                    exists
                }
            };
            if !has_event {
                // Written by an enqueue that crashed before its event record (so it was never
                // acknowledged), or left by a purge that removed the event first.
                self.tree.remove(&key).map_err(error::backend)?;
                report.orphans_removed += 1;
                continue;
            }
            report.deliveries += 1;
            let state = self.subscribers.get_or_create(&row.subscriber);
            match row.status {
                Status::InFlight => {
                    // Leases are never written, so this only appears if a future version
                    // persists them; treat it like any lease lost in a restart: pending again.
                    row.status = Status::Pending;
                    row.updated_at = now;
                    self.tree
                        .insert(&key, row.encode())
                        .map_err(error::backend)?;
                    state.add(Status::Pending);
                    state.make_ready(row.due, id, row.ready());
                }
                Status::Pending => {
                    state.add(Status::Pending);
                    state.make_ready(row.due, id, row.ready());
                }
                finished => state.add(finished),
            }
        }
        if report.corrupt_records > MAX_CORRUPT_LOGS {
            warn!(
                total = report.corrupt_records,
                "more corrupt delivery records than logged individually"
            );
        }
        Ok(report)
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

    /// Marks `row` finished (delivered or dead) at `at`: index entries first, the delivery last,
    /// so a crash in between leaves only stale index entries (which readers verify).
    ///
    /// A delivery never finishes before its event was received (`at` is clamped to
    /// `created_at`, e.g. after the wall clock stepped back). The purge relies on it: a
    /// delivery finished before the cutoff implies an event — and idempotency key — received
    /// before it, so an event is never purged while its idempotency key must still answer.
    ///
    /// `indexed`: the claim's `c` record already lists the delivery (written before this, so a
    /// crash cannot keep the finish and lose the index); otherwise an `f` entry is written.
    fn write_finished(
        &self,
        id: DeliveryId,
        row: &mut Delivery,
        status: Status,
        at: u64,
        indexed: bool,
    ) -> Result<(), StoreError> {
        let at = at.max(row.created_at);
        row.status = status;
        row.finished_at = at;
        if !indexed {
            self.insert(&keys::finished(at, id), row.event_id.to_bytes().to_vec())?;
        }
        if status == Status::Dead {
            self.insert(&keys::dead(&row.subscriber, id), Vec::new())?;
        }
        self.write_delivery(id, row)
    }

    /// Dead → pending, due at `now`. The caller holds the delivery's lock.
    fn revive(
        &self,
        id: DeliveryId,
        mut row: Delivery,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        let finished_at = row.finished_at;
        row.status = Status::Pending;
        row.due = now.0;
        row.finished_at = 0;
        row.updated_at = now.0;
        self.write_delivery(id, &row)?;
        let state = self.subscribers.get_or_create(&row.subscriber);
        state.transition(Status::Dead, Status::Pending);
        state.make_ready(row.due, id, row.ready());
        // Index entries go after the state change. If removing them fails they are merely
        // stale, which every reader tolerates.
        for key in [
            keys::dead(&row.subscriber, id),
            keys::finished(finished_at, id).to_vec(),
        ] {
            if let Err(e) = self.remove(&key) {
                warn!(error = %e, key = %keys::describe(&key), "stale index entry left behind");
            }
        }
        Ok(row.public(id))
    }

    /// Leases one popped ready entry: one point read (the event, for its payload), no write.
    /// `Ok(None)` when the delivery was unusable (then it was dead-lettered and logged).
    fn claim_one(
        &self,
        subscriber: &SubscriberId,
        state: &SubscriberState,
        id: DeliveryId,
        ready: Ready,
        now: UnixMillis,
    ) -> Result<Option<ClaimedDelivery>, StoreError> {
        let mut stripe = self.delivery_lock(id);
        let key = keys::event(ready.event_id);
        let value = self.tree.get(key).map_err(error::backend)?;
        let decoded = value.as_ref().map(|v| records::decode_event_head(v));
        let (head, range) = match decoded {
            Some(Ok(parts)) => parts,
            Some(Err(e)) => {
                let e = error::corrupt(&key, e);
                self.note_corrupt(&e);
                self.dead_letter_unreadable(state, id, now, &e.to_string())?;
                return Ok(None);
            }
            None => {
                self.dead_letter_unreadable(state, id, now, "event record missing")?;
                return Ok(None);
            }
        };
        let payload = match value {
            Some(v) => Bytes::from_owner(v).slice(range),
            None => Bytes::new(),
        };
        let record = ready.fresh.then(|| {
            Box::new(Delivery::fresh(
                ready.event_id,
                subscriber.clone(),
                head.event_type.clone(),
                head.received_at,
            ))
        });
        stripe.leased.insert(
            id,
            Lease {
                claimed_at: now.0,
                record,
                indexed: false,
            },
        );
        state.transition(Status::Pending, Status::InFlight);
        Ok(Some(ClaimedDelivery {
            id,
            event_id: ready.event_id,
            subscriber: subscriber.clone(),
            event_type: head.event_type,
            attempt: ready.attempts.saturating_add(1),
            created_at: UnixMillis(head.received_at),
            payload,
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
            warn!(error = %e, "claim index not written; finishes will index themselves");
            return;
        }
        for c in claimed {
            let mut stripe = self.delivery_lock(c.id);
            if let Some(lease) = stripe.leased.get_mut(&c.id) {
                lease.indexed = true;
            }
        }
    }

    /// A pending delivery whose payload cannot be read can never be sent: dead-letter it with
    /// the reason, so it shows up in the dead list instead of blocking the subscriber. The
    /// caller holds the delivery's lock and has taken it out of the ready index.
    fn dead_letter_unreadable(
        &self,
        state: &SubscriberState,
        id: DeliveryId,
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
        state.transition(Status::Pending, Status::Dead);
        self.commit.request();
        Ok(())
    }

    /// Looks up a stored receipt. A receipt whose event is missing (an enqueue that crashed
    /// between writing the receipt and its event, hence never acknowledged) is ignored.
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
        let event_id = EventId::generate();
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
            let row = Delivery::fresh(event_id, sub.clone(), event.event_type.clone(), received);
            self.write_delivery(*id, &row)?;
        }
        Ok(())
    }

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

    fn purge_finished(&self, cutoff: UnixMillis, stats: &mut PurgeStats) -> Result<(), StoreError> {
        let start = [keys::FINISHED];
        let end = keys::finished_bound(cutoff.0);
        loop {
            let chunk = self.purge_chunk(&start, &end)?;
            if chunk.is_empty() {
                return Ok(());
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
    fn purge_claimed(&self, cutoff: UnixMillis, stats: &mut PurgeStats) -> Result<(), StoreError> {
        let end = keys::claimed_bound(cutoff.0);
        let mut from = Bound::Included(vec![keys::CLAIMED]);
        loop {
            let chunk = self
                .tree
                .range::<Vec<u8>, _>((from.clone(), Bound::Excluded(end.to_vec())))
                .take(PURGE_CHUNK)
                .collect::<Result<Vec<_>, _>>()
                .map_err(error::backend)?;
            let Some((last, _)) = chunk.last() else {
                return Ok(());
            };
            from = Bound::Excluded(last.to_vec());
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
    }

    fn purge_keys(&self, cutoff: UnixMillis, stats: &mut PurgeStats) -> Result<(), StoreError> {
        let start = [keys::IDEMPOTENCY_TTL];
        let end = keys::idempotency_ttl_bound(cutoff.0);
        loop {
            let chunk = self.purge_chunk(&start, &end)?;
            if chunk.is_empty() {
                return Ok(());
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
}

fn check_format(tree: &sled::Tree, path: &Path) -> Result<(), QueueError> {
    let open_err = |e| QueueError::from_open(path.to_path_buf(), e);
    match tree.get(keys::FORMAT_KEY).map_err(open_err)? {
        Some(v) if v.as_ref() == [records::FORMAT_VERSION] => Ok(()),
        Some(v) => Err(QueueError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: v.first().copied().unwrap_or(0),
            supported: records::FORMAT_VERSION,
        }),
        None if tree.is_empty() => {
            // Not flushed here: it is the first write, so any later flush carries it, and
            // sled recovers a prefix of its log (nothing after the marker without the marker).
            tree.insert(keys::FORMAT_KEY, &[records::FORMAT_VERSION])
                .map_err(open_err)?;
            Ok(())
        }
        None => Err(QueueError::NotAQueue {
            path: path.to_path_buf(),
        }),
    }
}

fn log_corrupt(n: u64, key: &[u8], reason: &str) {
    if n <= MAX_CORRUPT_LOGS {
        warn!(key = %keys::describe(key), reason, "corrupt queue record kept and skipped");
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

impl DeliveryStore for SledStore {
    fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError> {
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

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.commit.sync())
    }

    fn claim(
        &self,
        subscriber: &SubscriberId,
        now: UnixMillis,
        // A lease ends with finish_attempt or release, or with the process (see the crate
        // docs); the store does not take deliveries back from a live dispatcher.
        _lease_until: UnixMillis,
        max: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let Some(state) = self.subscribers.get(subscriber) else {
            return Ok(Vec::new());
        };
        let popped: Vec<((u64, DeliveryId), Ready)> = {
            let mut ready = state.ready.lock();
            let mut popped = Vec::with_capacity(max.min(ready.len()));
            while popped.len() < max {
                match ready.first_key_value() {
                    Some((&(due, _), _)) if due <= now.0 => {}
                    _ => break,
                }
                if let Some(entry) = ready.pop_first() {
                    popped.push(entry);
                }
            }
            popped
        };
        let mut claimed = Vec::with_capacity(popped.len());
        let mut rest = popped.into_iter();
        while let Some(((due, id), entry)) = rest.next() {
            match self.claim_one(subscriber, &state, id, entry, now) {
                Ok(Some(c)) => claimed.push(c),
                Ok(None) => {}
                Err(e) => {
                    // Nothing was changed for this one or the rest: give them back.
                    let mut ready = state.ready.lock();
                    ready.insert((due, id), entry);
                    ready.extend(rest);
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

    fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError> {
        Ok(self.subscribers.get(subscriber).and_then(|s| {
            s.ready
                .lock()
                .first_key_value()
                .map(|(&(due, _), _)| UnixMillis(due))
        }))
    }

    fn finish_attempt(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let mut stripe = self.delivery_lock(id);
        let (known, indexed, claimed_at) = match stripe.leased.get_mut(&id) {
            Some(lease) => (lease.record.take(), lease.indexed, lease.claimed_at),
            None => (None, false, 0),
        };
        let mut row = match known {
            Some(row) => *row,
            None => {
                let row = self.read_delivery(id)?.ok_or(StoreError::NotFound(id))?;
                stripe.expect_leased(id, &row)?;
                row
            }
        };
        // The store numbers attempts itself, so history stays consistent whatever the caller
        // passed.
        let number = row.attempts.saturating_add(1);
        let ended = attempt.at.0.saturating_add(attempt.duration_ms);
        // The claim record is keyed by the claim's time; a purge finds the delivery through it
        // only if it finished no earlier (always so unless the clock stepped back).
        let indexed = indexed && ended.max(row.created_at) >= claimed_at;
        row.attempts = number;
        row.updated_at = ended;
        row.last_error = match outcome {
            Outcome::Delivered => None,
            _ => attempt.error.clone(),
        };
        row.push_attempt(Attempt {
            attempt: number,
            at: attempt.at.0,
            status_code: attempt.status_code,
            error: attempt.error,
            duration_ms: attempt.duration_ms,
        });
        let state = self.subscribers.get_or_create(&row.subscriber);
        match outcome {
            Outcome::Delivered => {
                self.write_finished(id, &mut row, Status::Delivered, ended, indexed)?;
                state.transition(Status::InFlight, Status::Delivered);
            }
            Outcome::Dead => {
                self.write_finished(id, &mut row, Status::Dead, ended, indexed)?;
                state.transition(Status::InFlight, Status::Dead);
            }
            Outcome::RetryAt(due) => {
                row.status = Status::Pending;
                row.due = due.0;
                self.write_delivery(id, &row)?;
                state.transition(Status::InFlight, Status::Pending);
                state.make_ready(due.0, id, row.ready());
            }
        }
        stripe.leased.remove(&id);
        drop(stripe);
        // Ride the next group commit: nobody waits, and the outcome is on disk within a flush.
        self.commit.request();
        Ok(())
    }

    fn release(&self, id: DeliveryId, due: UnixMillis) -> Result<(), StoreError> {
        let mut stripe = self.delivery_lock(id);
        let mut row = self.read_delivery(id)?.ok_or(StoreError::NotFound(id))?;
        stripe.expect_leased(id, &row)?;
        row.status = Status::Pending;
        row.due = due.0;
        row.updated_at = UnixMillis::now().0;
        self.write_delivery(id, &row)?;
        stripe.leased.remove(&id);
        drop(stripe);
        let state = self.subscribers.get_or_create(&row.subscriber);
        state.transition(Status::InFlight, Status::Pending);
        state.make_ready(due.0, id, row.ready());
        self.commit.request();
        Ok(())
    }

    fn retry_dead(&self, id: DeliveryId, now: UnixMillis) -> Result<DeliveryRecord, StoreError> {
        let stripe = self.delivery_lock(id);
        let row = self.read_delivery(id)?.ok_or(StoreError::NotFound(id))?;
        let row = stripe.current(id, row);
        if row.status != Status::Dead {
            return Err(StoreError::InvalidState {
                id,
                expected: DeliveryStatus::Dead,
                actual: row.status.public(),
            });
        }
        let record = self.revive(id, row, now)?;
        self.commit.request();
        Ok(record)
    }

    fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError> {
        let prefix = keys::dead_prefix(subscriber);
        let mut moved = 0;
        for item in self.tree.scan_prefix(&prefix) {
            let (key, _) = item.map_err(error::backend)?;
            let Some(id) = keys::dead_id(&key) else {
                continue;
            };
            let _guard = self.delivery_lock(id);
            match self.read_delivery(id) {
                Ok(Some(row)) if row.status == Status::Dead && row.subscriber == *subscriber => {
                    self.revive(id, row, now)?;
                    moved += 1;
                }
                Ok(_) => self.remove(&key)?, // stale index entry
                Err(e @ StoreError::Corrupt { .. }) => self.note_corrupt(&e),
                Err(e) => return Err(e),
            }
        }
        self.commit.request();
        Ok(moved)
    }

    fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        let stripe = self.delivery_lock(id);
        Ok(self.read_delivery(id)?.map(|row| {
            let row = stripe.current(id, row);
            DeliveryDetails {
                record: row.public(id),
                attempts: row.history.iter().map(Attempt::public).collect(),
            }
        }))
    }

    fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
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

    fn counts(&self, subscriber: &SubscriberId) -> QueueCounts {
        self.subscribers
            .get(subscriber)
            .map(|s| s.counts())
            .unwrap_or_default()
    }

    fn all_counts(&self) -> Vec<(SubscriberId, QueueCounts)> {
        let mut all: Vec<(SubscriberId, QueueCounts)> = self
            .subscribers
            .all()
            .into_iter()
            .map(|(id, s)| (id, s.counts()))
            .filter(|(_, c)| *c != QueueCounts::default())
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn set_paused(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = keys::pause(subscriber);
        match reason {
            Some(reason) => self.insert(&key, records::encode_pause(reason))?,
            None => self.remove(&key)?,
        }
        self.commit.request();
        Ok(())
    }

    fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
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

    fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        let _one_at_a_time = self.purge_lock.lock();
        let mut stats = PurgeStats::default();
        self.purge_claimed(cutoff, &mut stats)?;
        self.purge_finished(cutoff, &mut stats)?;
        self.purge_keys(cutoff, &mut stats)?;
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

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(error::backend)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        };
        let later = UnixMillis(received.0 + 60_000);
        let lease = later.plus(Duration::from_secs(30));
        {
            let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
            store.enqueue((0..3).map(event).collect()).unwrap();
            let claimed = store.claim(&sub, later, lease, 10).unwrap();
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
            store
                .finish_attempt(claimed[0].id, attempt, Outcome::RetryAt(later))
                .unwrap();
            let again = store.claim(&sub, later, lease, 10).unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(kept_record(&store, again[0].id), None);
            store.release(again[0].id, later).unwrap();
            for c in &claimed[1..] {
                store.release(c.id, received).unwrap();
            }
            // Never claimed before the restart: fresh on disk.
            store.enqueue((3..6).map(event).collect()).unwrap();
            store.flush_blocking().unwrap();
        }
        // After a restart the open scan finds the fresh records again, and what the claim
        // rebuilds for them matches the disk byte for byte; the others are read back.
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        let claimed = store.claim(&sub, later, lease, 10).unwrap();
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
        store
            .finish_attempt(id, attempt, Outcome::Delivered)
            .unwrap();
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
        };
        let lease = UnixMillis(t + 1_000_000);
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        store.enqueue((0..4).map(event).collect()).unwrap();
        // One claim, one `c` record, no `f` entries when they finish.
        let claimed = store.claim(&sub, UnixMillis(t + 100), lease, 10).unwrap();
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
        store
            .finish_attempt(claimed[2].id, retry, Outcome::RetryAt(UnixMillis(t + 300)))
            .unwrap();
        // claimed[3] stays in flight.
        assert_eq!(count_prefix(&store, keys::FINISHED), 0);

        // Cutoff between the two finishes: only the first goes; the retried one is dropped
        // from the record (pending again), the others are kept.
        let stats = store.purge(UnixMillis(t + 2_000)).unwrap();
        assert_eq!(stats.deliveries, 1);
        assert!(store.get(claimed[0].id).unwrap().is_none());
        assert!(store.get(claimed[1].id).unwrap().is_some());
        assert_eq!(count_prefix(&store, keys::CLAIMED), 1);

        // The retried delivery is claimed again (a second record) and delivered; the one in
        // flight finishes too. A restart in between changes nothing.
        let again = store.claim(&sub, UnixMillis(t + 6_000), lease, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, claimed[2].id);
        delivered_at(&store, claimed[2].id, t + 6_000);
        delivered_at(&store, claimed[3].id, t + 7_000);
        assert_eq!(count_prefix(&store, keys::CLAIMED), 2);
        assert_eq!(count_prefix(&store, keys::FINISHED), 0);
        drop(store);
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();

        let stats = store.purge(UnixMillis(t + 10_000)).unwrap();
        assert_eq!((stats.deliveries, stats.events), (3, 3));
        assert_eq!(count_prefix(&store, keys::CLAIMED), 0);
        assert_eq!(count_prefix(&store, keys::DELIVERY), 0);
        assert_eq!(count_prefix(&store, keys::EVENT), 0);
        assert!(store
            .all_counts()
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
            .enqueue(vec![NewEvent {
                event_type: "T".into(),
                payload: Bytes::from_static(b"1"),
                subscribers: vec![sub.clone()],
                idempotency_key: None,
                received_at: UnixMillis(t),
            }])
            .unwrap();
        let claimed = store
            .claim(&sub, UnixMillis(t + 9_000), UnixMillis(t + 99_000), 1)
            .unwrap();
        delivered_at(&store, claimed[0].id, t + 1_000);
        assert_eq!(count_prefix(&store, keys::FINISHED), 1);
        let stats = store.purge(UnixMillis(t + 2_000)).unwrap();
        assert_eq!(stats.deliveries, 1);
        // The claim record, left behind, goes once its own time is past the cutoff.
        assert_eq!(count_prefix(&store, keys::CLAIMED), 1);
        store.purge(UnixMillis(t + 10_000)).unwrap();
        assert_eq!(count_prefix(&store, keys::CLAIMED), 0);
    }
}
