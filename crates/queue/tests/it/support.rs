//! Shared helpers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryDetails, DeliveryId, DeliveryPage,
    DeliveryRecord, DeliveryStore, EnqueueReceipt, LeaseToken, ListQuery, NewEvent, Outcome,
    PurgeStats, QueueCounts, StoreError, SubscriberId, UnixMillis,
};
use herald_queue::{SledOptions, SledStore};
use parking_lot::Mutex;

/// Small cache and no background flush: tests decide when to flush.
pub(crate) fn options() -> SledOptions {
    SledOptions {
        cache_capacity_bytes: 8 * 1024 * 1024,
        flush_every_ms: None,
    }
}

pub(crate) fn open(path: &Path) -> Store {
    Store::new(SledStore::open(path, options()).unwrap())
}

/// A sled store driven from plain (non-async) tests: each trait call runs to completion on a
/// private current-thread runtime, and the lease token of every claim is remembered so
/// `finish_attempt` and `release` can be called by id. Everything else of [`SledStore`] is
/// reached through `Deref`.
pub(crate) struct Store {
    inner: Arc<SledStore>,
    rt: tokio::runtime::Runtime,
    leases: Mutex<HashMap<DeliveryId, LeaseToken>>,
}

impl std::ops::Deref for Store {
    type Target = SledStore;
    fn deref(&self) -> &SledStore {
        &self.inner
    }
}

#[allow(dead_code)] // each test module uses a different subset
impl Store {
    pub(crate) fn new(store: SledStore) -> Self {
        Self {
            inner: Arc::new(store),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            leases: Mutex::default(),
        }
    }

    /// The store for async callers.
    pub(crate) fn shared(&self) -> Arc<SledStore> {
        Arc::clone(&self.inner)
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    pub(crate) fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError> {
        self.run(self.inner.enqueue(events))
    }

    pub(crate) fn sync(&self) -> herald_core::BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(DeliveryStore::sync(&*self.inner))
    }

    pub(crate) fn claim(
        &self,
        subscriber: &SubscriberId,
        now: UnixMillis,
        lease_until: UnixMillis,
        max: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claimed = self.run(self.inner.claim(ClaimRequest {
            subscriber,
            now,
            lease_until,
            max,
            cap: u32::MAX,
        }))?;
        let mut leases = self.leases.lock();
        for c in &claimed {
            leases.insert(c.id, c.lease);
        }
        Ok(claimed)
    }

    pub(crate) fn token(&self, id: DeliveryId) -> LeaseToken {
        self.leases
            .lock()
            .get(&id)
            .copied()
            .unwrap_or(LeaseToken(u64::MAX - 7))
    }

    pub(crate) fn next_due(&self, s: &SubscriberId) -> Result<Option<UnixMillis>, StoreError> {
        self.run(self.inner.next_due(s))
    }

    pub(crate) fn finish_attempt(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.run(
            self.inner
                .finish_attempt(id, self.token(id), attempt, outcome),
        )
    }

    pub(crate) fn release(&self, id: DeliveryId, due: UnixMillis) -> Result<(), StoreError> {
        self.run(self.inner.release(id, self.token(id), due))
    }

    pub(crate) fn retry_dead(
        &self,
        id: DeliveryId,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        self.run(self.inner.retry_dead(id, now))
    }

    pub(crate) fn redrive(&self, s: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError> {
        self.run(self.inner.redrive(s, now))
    }

    pub(crate) fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        self.run(self.inner.get(id))
    }

    pub(crate) fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
        self.run(self.inner.list(query))
    }

    pub(crate) fn counts(&self, s: &SubscriberId) -> QueueCounts {
        self.run(self.inner.counts(s)).unwrap()
    }

    pub(crate) fn all_counts(&self) -> Vec<(SubscriberId, QueueCounts)> {
        self.run(self.inner.all_counts()).unwrap()
    }

    pub(crate) fn set_paused(
        &self,
        s: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.run(self.inner.set_paused(s, reason))
    }

    pub(crate) fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
        self.run(self.inner.paused())
    }

    pub(crate) fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        self.run(self.inner.purge(cutoff))
    }
}

pub(crate) fn sub(s: &str) -> SubscriberId {
    SubscriberId::new(s).unwrap()
}

pub(crate) fn event(subs: &[&SubscriberId], at: u64, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: "T".into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        subscribers: subs.iter().map(|s| (*s).clone()).collect(),
        idempotency_key: None,
        received_at: UnixMillis(at),
        ordering_key: None,
        ordered_for: Vec::new(),
        traceparent: None,
    }
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Opens the raw sled tree of a closed store (to damage it on purpose). sled's background
/// thread may hold the directory lock for a moment after the store is dropped, so a lock error
/// is retried for up to 5 s (as `SledStore::open` itself does).
pub(crate) fn raw_tree(path: &Path) -> (sled::Db, sled::Tree) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening the raw tree: {e}"),
        }
    };
    let tree = db.open_tree("herald").unwrap();
    (db, tree)
}
