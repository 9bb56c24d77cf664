//! A fault injector around the real store: [`FaultyStore`] delegates every call to a
//! [`SledStore`] on a temporary directory, except that the next N `finish_attempt` or `release`
//! calls fail (or panic) on demand. [`Rig`] runs a dispatcher over it with its own Prometheus
//! recorder, so a test can read the metrics it produced.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use herald_core::{
    AttemptRecord, BoxFuture, ClaimedDelivery, DeliveryDetails, DeliveryId, DeliveryPage,
    DeliveryRecord, DeliveryStore, EnqueueReceipt, ListQuery, NewEvent, Outcome, PurgeStats,
    QueueCounts, StoreError, SubscriberConfig, SubscriberId, UnixMillis,
};
use herald_dispatcher::Dispatcher;
use herald_queue::{SledOptions, SledStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tempfile::TempDir;

use crate::harness::client;

/// Takes one from `budget` if it is not zero.
fn take(budget: &AtomicU32) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn injected(what: &str) -> StoreError {
    StoreError::Backend(format!("injected {what} failure").into())
}

/// A real [`SledStore`] whose `finish_attempt` / `release` fail or panic on demand.
pub(crate) struct FaultyStore {
    inner: SledStore,
    /// The next this many `finish_attempt` calls fail with a backend error.
    pub(crate) fail_finish: AtomicU32,
    /// The next this many `finish_attempt` calls panic.
    pub(crate) panic_finish: AtomicU32,
    /// The next this many `release` calls fail with a backend error.
    pub(crate) fail_release: AtomicU32,
    /// Every `finish_attempt` call, failed or not.
    pub(crate) finish_calls: AtomicU32,
    /// Every `release` call, failed or not.
    pub(crate) release_calls: AtomicU32,
}

impl DeliveryStore for FaultyStore {
    fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError> {
        self.inner.enqueue(events)
    }
    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.sync()
    }
    fn claim(
        &self,
        subscriber: &SubscriberId,
        now: UnixMillis,
        lease_until: UnixMillis,
        max: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.inner.claim(subscriber, now, lease_until, max)
    }
    fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError> {
        self.inner.next_due(subscriber)
    }
    fn finish_attempt(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.finish_calls.fetch_add(1, Ordering::SeqCst);
        if take(&self.panic_finish) {
            panic!("injected panic in finish_attempt");
        }
        if take(&self.fail_finish) {
            return Err(injected("finish_attempt"));
        }
        self.inner.finish_attempt(id, attempt, outcome)
    }
    fn release(&self, id: DeliveryId, due: UnixMillis) -> Result<(), StoreError> {
        self.release_calls.fetch_add(1, Ordering::SeqCst);
        if take(&self.fail_release) {
            return Err(injected("release"));
        }
        self.inner.release(id, due)
    }
    fn retry_dead(&self, id: DeliveryId, now: UnixMillis) -> Result<DeliveryRecord, StoreError> {
        self.inner.retry_dead(id, now)
    }
    fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError> {
        self.inner.redrive(subscriber, now)
    }
    fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        self.inner.get(id)
    }
    fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
        self.inner.list(query)
    }
    fn counts(&self, subscriber: &SubscriberId) -> QueueCounts {
        self.inner.counts(subscriber)
    }
    fn all_counts(&self) -> Vec<(SubscriberId, QueueCounts)> {
        self.inner.all_counts()
    }
    fn set_paused(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.inner.set_paused(subscriber, reason)
    }
    fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
        self.inner.paused()
    }
    fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        self.inner.purge(cutoff)
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}

/// A dispatcher over a [`FaultyStore`], with a Prometheus recorder of its own (the metric
/// handles bind to it when the dispatcher starts; no global recorder is touched).
pub(crate) struct Rig {
    pub(crate) faults: Arc<FaultyStore>,
    pub(crate) store: Arc<dyn DeliveryStore>,
    pub(crate) dispatcher: Dispatcher,
    metrics: PrometheusHandle,
    _dir: TempDir,
}

impl Rig {
    /// Must run inside a tokio runtime.
    pub(crate) fn start(subscribers: Vec<SubscriberConfig>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultyStore {
            inner: SledStore::open(dir.path(), SledOptions::default()).unwrap(),
            fail_finish: AtomicU32::new(0),
            panic_finish: AtomicU32::new(0),
            fail_release: AtomicU32::new(0),
            finish_calls: AtomicU32::new(0),
            release_calls: AtomicU32::new(0),
        });
        let store: Arc<dyn DeliveryStore> = Arc::clone(&faults) as Arc<dyn DeliveryStore>;
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let dispatcher = metrics::with_local_recorder(&recorder, || {
            Dispatcher::start(Arc::clone(&store), client(), subscribers).unwrap()
        });
        Self {
            faults,
            store,
            dispatcher,
            metrics,
            _dir: dir,
        }
    }

    pub(crate) fn counts(&self, subscriber: &str) -> QueueCounts {
        self.store.counts(&crate::harness::sid(subscriber))
    }

    /// The value of a counter with the single label `subscriber`, 0 if never incremented.
    pub(crate) fn counter(&self, name: &str, subscriber: &str) -> u64 {
        let wanted = format!("{name}{{subscriber=\"{subscriber}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&wanted)?.trim().parse().ok())
            .unwrap_or(0)
    }
}
