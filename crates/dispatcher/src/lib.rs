//! Herald's dispatcher: turns the persistent queue into HTTP attempts without ever overrunning a
//! subscriber, and without one subscriber's trouble reaching another.
//!
//! Each subscriber gets its own **pump** task (`pump.rs` lists the stages in order: pause gate →
//! concurrency cap → claim → rate limit → attempt) and its own state (settings, throttle,
//! counters); the only thing subscribers share is the HTTP connection pool and the store.
//! A black-holed endpoint fills its own `max_in_flight` slots and nobody else's.
//!
//! **The dispatcher owns the path** "change the store → make it durable → wake the pumps":
//! the API calls [`Dispatcher::ingest`], [`Dispatcher::retry`], [`Dispatcher::redrive`],
//! [`Dispatcher::replay`], [`Dispatcher::pause`] and [`Dispatcher::resume`]; each changes the
//! store (durably, as the store's methods promise), and the store tells the dispatcher, as its
//! registered [`StoreListener`], which subscriber got work
//! (`work_available` wakes that pump) or changed (`subscriber_changed` re-reads its pause from
//! the store). With a shared engine the same calls arrive for changes made on other nodes.
//!
//! Leases are the store's: a pump claims within its effective limit (`cap`), keeps each
//! claim's lease token and presents it with the outcome or the release. An outcome refused
//! with `LeaseLost` (the lease expired and the delivery was claimed again) is logged and
//! dropped: the newer lease owns the delivery.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn herald_core::DeliveryStore>,
//! #               subs: Vec<herald_core::SubscriberConfig>,
//! #               events: Vec<herald_core::NewEvent>) -> Result<(), Box<dyn std::error::Error>> {
//! use herald_delivery::HttpClient;
//! let client = HttpClient::new(herald_core::SecurityPolicy::default())?;
//! let dispatcher = herald_dispatcher::Dispatcher::start(store, client, subs).await?;
//! // Durable when it returns; the pumps of the subscribers that got work are woken.
//! let receipts = dispatcher.ingest(events).await?;
//! dispatcher.shutdown(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

mod alerts;
mod attempt;
mod cluster;
mod pump;
mod subscriber;
mod throttle;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use herald_core::{
    ClusterState, DeliveryId, DeliveryRecord, DeliveryStore, DisplayUrl, EnqueueReceipt, NewEvent,
    NodeInfo, OrderingMode, QueueCounts, ReplayRequest, ReplayResult, SpanSink, StoreError,
    StoreListener, SubscriberConfig, SubscriberId, UnixMillis,
};
use herald_delivery::{DeliveryError, HttpClient};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use subscriber::{Settings, Subscriber};

pub use alerts::{
    DELIVERY_DEAD, SUBSCRIBER_PAUSED, SUBSCRIBER_RECOVERED, SUBSCRIBER_RESUMED,
    SUBSCRIBER_THROTTLED,
};
pub use attempt::GONE_REASON;

/// A dispatcher failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// No subscriber with this id is configured.
    #[error("unknown subscriber {0:?}")]
    UnknownSubscriber(String),
    /// A subscriber's endpoint could not be set up.
    #[error("subscriber {subscriber}: {source}")]
    Endpoint {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Why.
        #[source]
        source: DeliveryError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Live figures of one subscriber, for the API and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberStats {
    /// Subscriber id.
    pub id: SubscriberId,
    /// Endpoint URL as shown: no query string, no user info (deliveries use the full URL).
    pub url: DisplayUrl,
    /// Configured event types (`["*"]` for all).
    pub events: Vec<String>,
    /// Configured cap.
    pub max_in_flight: u32,
    /// Current cap after throttling.
    pub effective_limit: u32,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Failure share over the throttle window.
    pub error_rate: f64,
    /// Why the subscriber is paused, if it is.
    pub paused_reason: Option<String>,
    /// Stored deliveries by state.
    pub counts: QueueCounts,
    /// Age of the oldest delivery that is due and not yet sent (the store's earliest claimable
    /// time, one index lookup); zero when none is due: a stuck queue shows as a growing age.
    pub oldest_pending: Duration,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Subscribers now configured.
    pub subscribers: usize,
    /// Newly added ids.
    pub added: Vec<SubscriberId>,
    /// Removed ids (their stored deliveries are kept, see `orphaned`).
    pub removed: Vec<SubscriberId>,
    /// Subscribers no longer configured that still have pending or in-flight deliveries.
    pub orphaned: Vec<(SubscriberId, u64)>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True if every in-flight attempt finished within the grace period.
    pub drained: bool,
}

/// Event-type routing table, rebuilt on reload so fan-out never scans every subscriber: each
/// known event type maps to its sorted subscriber list (wildcard subscribers included); any
/// other type goes to the wildcard subscribers alone.
#[derive(Debug, Default)]
struct Routes {
    by_type: HashMap<String, Vec<SubscriberId>>,
    all: Vec<SubscriberId>,
}

impl Routes {
    fn build(configs: &BTreeMap<SubscriberId, Arc<Subscriber>>) -> Self {
        let mut routes = Routes::default();
        for sub in configs.values() {
            match &sub.settings().config.events {
                herald_core::EventFilter::All => routes.all.push(sub.id.clone()),
                herald_core::EventFilter::Only(types) => {
                    for t in types {
                        routes
                            .by_type
                            .entry(t.clone())
                            .or_default()
                            .push(sub.id.clone());
                    }
                }
            }
        }
        for ids in routes.by_type.values_mut() {
            ids.extend(routes.all.iter().cloned());
            ids.sort();
            ids.dedup();
        }
        routes
    }

    fn lookup(&self, event_type: &str) -> Vec<SubscriberId> {
        self.by_type.get(event_type).unwrap_or(&self.all).clone()
    }
}

/// State shared by the dispatcher handle, pumps and attempt tasks.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn DeliveryStore>,
    /// The cluster the store is shared with (a shared engine), or `None` (one node).
    pub(crate) cluster: Option<Arc<dyn ClusterState>>,
    /// This node's id and start time, for `GET /v1/cluster` without a cluster.
    node_id: String,
    started_at: UnixMillis,
    client: HttpClient,
    subscribers: RwLock<BTreeMap<SubscriberId, Arc<Subscriber>>>,
    routes: RwLock<Arc<Routes>>,
    /// Stop claiming (shutdown begins).
    stop: CancellationToken,
    /// Abandon attempts still running when the grace period ends.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Where operator alerts go.
    pub(crate) alerts: alerts::Alerts,
    /// Where attempt spans go (`[telemetry]`); `None`: no span is built.
    pub(crate) spans: Option<Arc<dyn SpanSink>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("subscribers", &self.subscribers.read().len())
            .field("stopping", &self.stop.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// What [`Dispatcher::start_with`] starts with besides the store, the client and the
/// subscribers. The default is a single node without span export.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct StartOptions {
    /// The cluster the store is shared with (a shared engine), or `None` (one node).
    pub cluster: Option<Arc<dyn ClusterState>>,
    /// Where each attempt's span goes, or `None` (the default): then no span is built and an
    /// attempt sends a `traceparent` only when its event came with one.
    pub spans: Option<Arc<dyn SpanSink>>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("cluster", &self.cluster.is_some())
            .field("spans", &self.spans)
            .finish()
    }
}

impl StartOptions {
    /// These options with this cluster.
    pub fn cluster(mut self, cluster: Option<Arc<dyn ClusterState>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// These options with this span sink.
    pub fn spans(mut self, spans: Option<Arc<dyn SpanSink>>) -> Self {
        self.spans = spans;
        self
    }
}

/// The running dispatcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// Builds every subscriber's endpoint, restores persisted pauses, registers itself as the
    /// store's listener and starts one pump per subscriber on the current tokio runtime.
    /// One node: [`Dispatcher::start_with_cluster`] with no cluster.
    pub async fn start(
        store: Arc<dyn DeliveryStore>,
        client: HttpClient,
        subscribers: Vec<SubscriberConfig>,
    ) -> Result<Self, DispatchError> {
        Self::start_with_cluster(store, client, subscribers, None).await
    }

    /// [`Dispatcher::start`] on a store shared by a cluster: with `Some(cluster)`, each
    /// subscriber's rate limit and error-rate throttle are the cluster's (see the `cluster`
    /// module), its `in_flight` figure is the store's cluster-wide count, and
    /// [`Dispatcher::nodes`] lists the cluster's nodes. With `None`, behaviour is exactly
    /// [`Dispatcher::start`]'s.
    pub async fn start_with_cluster(
        store: Arc<dyn DeliveryStore>,
        client: HttpClient,
        subscribers: Vec<SubscriberConfig>,
        cluster: Option<Arc<dyn ClusterState>>,
    ) -> Result<Self, DispatchError> {
        let options = StartOptions {
            cluster,
            ..StartOptions::default()
        };
        Self::start_with(store, client, subscribers, options).await
    }

    /// [`Dispatcher::start`] with every option: a cluster (see
    /// [`Dispatcher::start_with_cluster`]) and a [`SpanSink`] that gets an `attempt` span for
    /// every attempt (SPEC §10).
    pub async fn start_with(
        store: Arc<dyn DeliveryStore>,
        client: HttpClient,
        subscribers: Vec<SubscriberConfig>,
        options: StartOptions,
    ) -> Result<Self, DispatchError> {
        let StartOptions { cluster, spans } = options;
        let settings = subscribers
            .into_iter()
            .map(|c| Settings::build(c, &client))
            .collect::<Result<Vec<_>, _>>()?;
        let paused: HashMap<SubscriberId, String> = store.paused().await?.into_iter().collect();
        let node_id = cluster
            .as_ref()
            .map_or_else(local_node_id, |c| c.node_id().to_owned());
        let shared = Arc::new(Shared {
            store,
            cluster,
            node_id,
            started_at: UnixMillis::now(),
            client,
            subscribers: RwLock::new(BTreeMap::new()),
            routes: RwLock::new(Arc::new(Routes::default())),
            stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            alerts: alerts::Alerts::default(),
            spans,
        });
        let dispatcher = Self { shared };
        {
            let mut map = dispatcher.shared.subscribers.write();
            for s in settings {
                let reason = paused.get(&s.config.id).cloned();
                let sub = dispatcher.spawn_subscriber(s, reason);
                map.insert(sub.id.clone(), sub);
            }
            *dispatcher.shared.routes.write() = Arc::new(Routes::build(&map));
        }
        dispatcher.shared.store.set_listener(Arc::new(Listener {
            shared: Arc::downgrade(&dispatcher.shared),
            runtime: tokio::runtime::Handle::current(),
        }));
        if let Some(cluster) = dispatcher.shared.cluster.clone() {
            // Every subscriber's limit from the cluster before the first claims go far.
            let subs: Vec<Arc<Subscriber>> = dispatcher
                .shared
                .subscribers
                .read()
                .values()
                .cloned()
                .collect();
            for sub in &subs {
                cluster::sync_one(sub, cluster.as_ref()).await;
            }
            tokio::spawn(cluster::sync_throttles(
                Arc::clone(&dispatcher.shared),
                cluster,
            ));
        }
        dispatcher.report_orphans().await;
        Ok(dispatcher)
    }

    fn spawn_subscriber(&self, settings: Arc<Settings>, paused: Option<String>) -> Arc<Subscriber> {
        let sub = Subscriber::new(
            settings,
            paused,
            self.shared.stop.child_token(),
            self.shared.cluster.is_some(),
        );
        self.shared
            .tasks
            .spawn(pump::run(Arc::clone(&sub), Arc::clone(&self.shared)));
        sub
    }

    /// The store the dispatcher reads from.
    pub fn store(&self) -> &Arc<dyn DeliveryStore> {
        &self.shared.store
    }

    /// The subscribers an event goes to: `subscriber` alone when given (whatever its `events`
    /// filter: an explicitly addressed event is delivered), else every subscriber whose
    /// `events` match `event_type`.
    pub fn route(
        &self,
        event_type: &str,
        subscriber: Option<&str>,
    ) -> Result<Vec<SubscriberId>, DispatchError> {
        match subscriber {
            Some(id) => self
                .shared
                .subscribers
                .read()
                .get(id)
                .map(|sub| vec![sub.id.clone()])
                .ok_or_else(|| DispatchError::UnknownSubscriber(id.to_owned())),
            None => Ok(self.shared.routes.read().lookup(event_type)),
        }
    }

    /// Tells a subscriber's pump that new deliveries may be due.
    pub fn notify(&self, subscriber: &SubscriberId) {
        if let Some(sub) = self.shared.subscribers.read().get(subscriber) {
            sub.wake.notify_one();
        }
    }

    fn get(&self, id: &str) -> Result<Arc<Subscriber>, DispatchError> {
        self.shared
            .subscribers
            .read()
            .get(id)
            .map(Arc::clone)
            .ok_or_else(|| DispatchError::UnknownSubscriber(id.to_owned()))
    }

    /// Holds a subscriber's deliveries (persisted: a restart, and every node, keeps the pause).
    pub async fn pause(&self, id: &str, reason: &str) -> Result<(), DispatchError> {
        let sub = self.get(id)?;
        self.shared.store.set_paused(&sub.id, Some(reason)).await?;
        sub.set_paused(Some(reason.to_owned()));
        tracing::info!(subscriber = %sub.id, reason, "subscriber paused");
        alerts::Alerts::paused(&self.shared, &sub.id, reason);
        Ok(())
    }

    /// Releases a paused subscriber.
    pub async fn resume(&self, id: &str) -> Result<(), DispatchError> {
        let sub = self.get(id)?;
        self.shared.store.set_paused(&sub.id, None).await?;
        sub.set_paused(None);
        tracing::info!(subscriber = %sub.id, "subscriber resumed");
        alerts::Alerts::resumed(&self.shared, &sub.id, "resumed by an operator");
        Ok(())
    }

    /// Sends Herald's own events (SPEC §10: paused, resumed, throttled, recovered, dead) to
    /// this configured subscriber from now on; `None` turns alerts off. Nothing about the
    /// alert subscriber itself is sent to it.
    pub fn set_alert_subscriber(&self, subscriber: Option<SubscriberId>) {
        self.shared.alerts.set_target(subscriber);
    }

    /// Stores events (durable when this returns: the API may answer `202`); the store wakes
    /// the pumps of the subscribers that got work. An event with an `ordering_key` is ordered
    /// (SPEC §9) for those of its subscribers configured with `ordering = "per_key"` now: fixed
    /// in `ordered_for` at enqueue, so a later reload never reorders stored work.
    pub async fn ingest(
        &self,
        mut events: Vec<NewEvent>,
    ) -> Result<Vec<EnqueueReceipt>, DispatchError> {
        if events.iter().any(|e| e.ordering_key.is_some()) {
            let subscribers = self.shared.subscribers.read();
            for event in events.iter_mut().filter(|e| e.ordering_key.is_some()) {
                event.ordered_for = event
                    .subscribers
                    .iter()
                    .filter(|id| {
                        subscribers.get(id.as_str()).is_some_and(|sub| {
                            sub.settings().config.ordering == OrderingMode::PerKey
                        })
                    })
                    .cloned()
                    .collect();
            }
        }
        Ok(self.shared.store.enqueue(events).await?)
    }

    /// Moves one dead delivery back to pending, due now.
    pub async fn retry(&self, id: DeliveryId) -> Result<DeliveryRecord, DispatchError> {
        let record = self.shared.store.retry_dead(id, UnixMillis::now()).await?;
        self.shared.store.sync().await?;
        Ok(record)
    }

    /// Moves every dead delivery of a subscriber back to pending, due now; returns how many.
    /// Works for a subscriber no longer configured too (its deliveries wait for it).
    pub async fn redrive(&self, subscriber: &SubscriberId) -> Result<u64, DispatchError> {
        let moved = self
            .shared
            .store
            .redrive(subscriber, UnixMillis::now())
            .await?;
        self.shared.store.sync().await?;
        Ok(moved)
    }

    /// Makes a subscriber's matching finished deliveries pending again (SPEC §10).
    pub async fn replay(&self, request: &ReplayRequest) -> Result<ReplayResult, DispatchError> {
        let result = self.shared.store.replay(request).await?;
        if result.replayed > 0 {
            self.shared.store.sync().await?;
            metrics::counter!("herald_replayed_total", "subscriber" => request.subscriber.to_string())
                .increment(result.replayed);
            tracing::info!(subscriber = %request.subscriber, matched = result.matched, replayed = result.replayed, "deliveries replayed");
        }
        Ok(result)
    }

    /// Requests this node has in flight now, over every subscriber (its heartbeat figure).
    pub fn local_in_flight(&self) -> u64 {
        self.shared
            .subscribers
            .read()
            .values()
            .map(|s| u64::from(s.in_flight()))
            .sum()
    }

    /// The cluster this dispatcher runs in, if any.
    pub fn cluster(&self) -> Option<&Arc<dyn ClusterState>> {
        self.shared.cluster.as_ref()
    }

    /// The nodes for `GET /v1/cluster`: the cluster's nodes seen in the last 30 s, or this
    /// node alone without a cluster.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, DispatchError> {
        let now = UnixMillis::now();
        match &self.shared.cluster {
            Some(cluster) => Ok(cluster.nodes(now).await?),
            None => Ok(vec![NodeInfo {
                id: self.shared.node_id.clone(),
                started_at: self.shared.started_at,
                last_seen: now,
                in_flight: self.local_in_flight(),
            }]),
        }
    }

    /// Whether `id` is a configured subscriber.
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_ok()
    }

    /// Live figures of every configured subscriber, by id. Fails when the store cannot be
    /// read (its counts).
    pub async fn stats(&self) -> Result<Vec<SubscriberStats>, DispatchError> {
        let subs: Vec<Arc<Subscriber>> = self.shared.subscribers.read().values().cloned().collect();
        let mut out = Vec::with_capacity(subs.len());
        for s in &subs {
            out.push(self.stats_of_sub(s).await?);
        }
        Ok(out)
    }

    /// Live figures of one subscriber.
    pub async fn stats_of(&self, id: &str) -> Result<SubscriberStats, DispatchError> {
        let sub = self.get(id)?;
        self.stats_of_sub(&sub).await
    }

    async fn stats_of_sub(&self, sub: &Subscriber) -> Result<SubscriberStats, DispatchError> {
        let counts = self.shared.store.counts(&sub.id).await?;
        let oldest_pending = match self.shared.store.next_due(&sub.id).await? {
            Some(due) => Duration::from_millis(UnixMillis::now().0.saturating_sub(due.0)),
            None => Duration::ZERO,
        };
        let settings = sub.settings();
        // Cluster mode: the store's leased rows, on every node (the same on each).
        let in_flight = if self.shared.cluster.is_some() {
            u32::try_from(counts.in_flight).unwrap_or(u32::MAX)
        } else {
            sub.in_flight()
        };
        Ok(SubscriberStats {
            id: sub.id.clone(),
            url: DisplayUrl::new(&settings.config.url),
            events: settings.config.events.to_vec(),
            max_in_flight: settings.config.max_in_flight,
            effective_limit: sub.effective_limit(),
            in_flight,
            error_rate: sub.error_rate(),
            paused_reason: sub.paused_reason(),
            counts,
            oldest_pending,
        })
    }

    /// Applies a new subscriber set. Every endpoint is built first: if any fails, nothing
    /// changes. Changed limits apply to new requests; in-flight ones finish as they started.
    pub async fn reload(
        &self,
        configs: Vec<SubscriberConfig>,
    ) -> Result<ReloadReport, DispatchError> {
        let built = configs
            .into_iter()
            .map(|c| Settings::build(c, &self.shared.client))
            .collect::<Result<Vec<_>, _>>()?;
        let paused: HashMap<SubscriberId, String> =
            self.shared.store.paused().await?.into_iter().collect();
        let mut report = ReloadReport::default();
        {
            let mut map = self.shared.subscribers.write();
            let mut next = BTreeMap::new();
            for settings in built {
                let id = settings.config.id.clone();
                let sub = match map.remove(&id) {
                    Some(existing) => {
                        existing.replace_settings(settings);
                        existing
                    }
                    None => {
                        report.added.push(id.clone());
                        self.spawn_subscriber(settings, paused.get(&id).cloned())
                    }
                };
                next.insert(id, sub);
            }
            for (id, old) in std::mem::take(&mut *map) {
                old.stop.cancel();
                report.removed.push(id);
            }
            report.subscribers = next.len();
            *self.shared.routes.write() = Arc::new(Routes::build(&next));
            *map = next;
        }
        report.orphaned = self.report_orphans().await;
        tracing::info!(
            subscribers = report.subscribers,
            added = %ids_text(&report.added),
            removed = %ids_text(&report.removed),
            "subscribers reloaded"
        );
        Ok(report)
    }

    /// Logs (and returns) stored deliveries waiting for subscribers that are not configured.
    async fn report_orphans(&self) -> Vec<(SubscriberId, u64)> {
        let all = match self.shared.store.all_counts().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queue counts to look for orphaned deliveries");
                return Vec::new();
            }
        };
        let map = self.shared.subscribers.read();
        let orphans: Vec<(SubscriberId, u64)> = all
            .into_iter()
            .filter(|(id, c)| !map.contains_key(id) && c.pending + c.in_flight > 0)
            .map(|(id, c)| (id, c.pending + c.in_flight))
            .collect();
        for (id, queued) in &orphans {
            tracing::warn!(subscriber = %id, queued, "deliveries are queued for a subscriber that is not configured; they are kept until it is configured again");
        }
        orphans
    }

    /// Stops claiming, lets in-flight attempts finish within `grace`, then gives back the
    /// leases of any still running (they are sent again at the next start).
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.shared.stop.cancel();
        self.shared.tasks.close();
        let drained = tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(?grace, "grace period over; releasing unfinished attempts");
            self.shared.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.shared.tasks.wait()).await;
        }
        ShutdownReport { drained }
    }
}

/// The dispatcher as the store's [`StoreListener`]: wakes pumps and refreshes pauses. Holds
/// the dispatcher weakly (the store holds the listener, the dispatcher holds the store).
struct Listener {
    shared: Weak<Shared>,
    runtime: tokio::runtime::Handle,
}

impl Listener {
    fn subscriber(&self, id: &SubscriberId) -> Option<(Arc<Shared>, Arc<Subscriber>)> {
        let shared = self.shared.upgrade()?;
        let sub = shared.subscribers.read().get(id).cloned()?;
        Some((shared, sub))
    }
}

impl StoreListener for Listener {
    fn work_available(&self, subscriber: &SubscriberId) {
        if let Some((_, sub)) = self.subscriber(subscriber) {
            sub.wake.notify_one();
        }
    }

    fn subscriber_changed(&self, subscriber: &SubscriberId) {
        let Some((shared, sub)) = self.subscriber(subscriber) else {
            return;
        };
        // Reading the store may wait (a database): do it on a task, never in the caller.
        self.runtime.spawn(async move {
            // One refresh at a time per subscriber, each reading the store afresh: whichever
            // runs last applies the latest stored state.
            let _one = sub.pause_refresh.lock().await;
            match shared.store.paused().await {
                Ok(paused) => {
                    let reason = paused
                        .into_iter()
                        .find(|(id, _)| *id == sub.id)
                        .map(|(_, reason)| reason);
                    if reason != sub.paused_reason() {
                        tracing::info!(subscriber = %sub.id, paused = reason.is_some(), "subscriber pause changed in the store");
                    }
                    sub.set_paused(reason);
                }
                Err(e) => {
                    tracing::warn!(subscriber = %sub.id, error = %e, "cannot re-read the pause state");
                }
            }
        });
    }
}

/// This process's node id without a cluster: the host name and the process id.
fn local_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".to_owned());
    format!("{host}-{}", std::process::id())
}

/// `a, b, c` for a log line.
fn ids_text(ids: &[SubscriberId]) -> String {
    ids.iter()
        .map(SubscriberId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
