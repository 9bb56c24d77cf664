//! A fault injector around the real store: [`FaultyStore`] delegates every call to a
//! [`SledStore`] on a temporary directory, except that the next N `finish_attempt` or `release`
//! calls fail (or panic) on demand. [`Rig`] runs a dispatcher over it with its own Prometheus
//! recorder, so a test can read the metrics it produced.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures_util::FutureExt as _;
use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryDetails, DeliveryId, DeliveryPage,
    DeliveryRecord, DeliveryStore, EnqueueReceipt, EventDetails, EventId, EventPage, EventQuery,
    LeaseToken, ListQuery, NewEvent, Outcome, PurgeStats, QueueCounts, ReplayRequest, ReplayResult,
    StoreError, StoreListener, SubscriberConfig, SubscriberId, UnixMillis,
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

#[async_trait::async_trait]
impl DeliveryStore for FaultyStore {
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError> {
        self.inner.enqueue(events).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.inner.claim(request).await
    }
    async fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError> {
        self.inner.next_due(subscriber).await
    }
    async fn finish_attempt(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
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
        self.inner.finish_attempt(id, lease, attempt, outcome).await
    }
    async fn release(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        due: UnixMillis,
    ) -> Result<(), StoreError> {
        self.release_calls.fetch_add(1, Ordering::SeqCst);
        if take(&self.fail_release) {
            return Err(injected("release"));
        }
        self.inner.release(id, lease, due).await
    }
    async fn retry_dead(
        &self,
        id: DeliveryId,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        self.inner.retry_dead(id, now).await
    }
    async fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError> {
        self.inner.redrive(subscriber, now).await
    }
    async fn replay(&self, request: &ReplayRequest) -> Result<ReplayResult, StoreError> {
        self.inner.replay(request).await
    }
    async fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
        self.inner.list(query).await
    }
    async fn get_event(&self, id: EventId) -> Result<Option<EventDetails>, StoreError> {
        self.inner.get_event(id).await
    }
    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.inner.list_events(query).await
    }
    async fn counts(&self, subscriber: &SubscriberId) -> Result<QueueCounts, StoreError> {
        self.inner.counts(subscriber).await
    }
    async fn all_counts(&self) -> Result<Vec<(SubscriberId, QueueCounts)>, StoreError> {
        self.inner.all_counts().await
    }
    async fn blocked_keys(&self) -> Result<Vec<(SubscriberId, u64)>, StoreError> {
        self.inner.blocked_keys().await
    }
    async fn set_paused(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.inner.set_paused(subscriber, reason).await
    }
    async fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
        self.inner.paused().await
    }
    async fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        self.inner.purge(cutoff).await
    }
    async fn size_on_disk(&self) -> Result<Option<u64>, StoreError> {
        self.inner.size_on_disk().await
    }
    fn set_listener(&self, listener: Arc<dyn StoreListener>) {
        self.inner.set_listener(listener);
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
        // The metric handles bind while `start` runs, so it must finish inside the closure: over
        // sled it never waits, and one poll completes it.
        let dispatcher = metrics::with_local_recorder(&recorder, || {
            Dispatcher::start(Arc::clone(&store), client(), subscribers)
                .now_or_never()
                .expect("starting over sled completes without waiting")
        })
        .unwrap();
        Self {
            faults,
            store,
            dispatcher,
            metrics,
            _dir: dir,
        }
    }

    /// sled keeps its counts in memory: the call completes at once, from any thread.
    pub(crate) fn counts(&self, subscriber: &str) -> QueueCounts {
        self.store
            .counts(&crate::harness::sid(subscriber))
            .now_or_never()
            .expect("sled counts without waiting")
            .unwrap()
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
