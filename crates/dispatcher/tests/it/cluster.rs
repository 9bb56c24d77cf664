//! Cluster mode: the rate limit and the throttle come from the cluster's state. The cluster here
//! is an in-memory `ClusterState` shared by two dispatchers (each on its own sled store), so
//! what the test sees is what the dispatcher does with it, not what an engine does.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{
    ClusterState, DeliveryStore, NodeInfo, RateLimitConfig, StoreError, SubscriberId,
    ThrottleConfig, ThrottleState, UnixMillis,
};
use herald_dispatcher::Dispatcher;
use herald_queue::{SledOptions, SledStore};
use parking_lot::Mutex;

use crate::harness::{client, enqueue, eventually, ready, serial, sid, subscriber};
use crate::receiver::{Mode, Receiver};

/// A cluster in memory: one token bucket, a fixed throttle answer, counts of what it was told.
struct FakeCluster {
    /// (tokens, last refill).
    bucket: Mutex<(f64, Instant)>,
    limit: AtomicU32,
    calls: AtomicU32,
    outcomes: AtomicU32,
}

impl FakeCluster {
    fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            bucket: Mutex::new((1.0, Instant::now())),
            limit: AtomicU32::new(limit),
            calls: AtomicU32::new(0),
            outcomes: AtomicU32::new(0),
        })
    }
}

#[async_trait::async_trait]
impl ClusterState for FakeCluster {
    fn node_id(&self) -> &str {
        "fake"
    }

    async fn heartbeat(&self, _in_flight: u64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn nodes(&self, now: UnixMillis) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(vec![NodeInfo {
            id: "fake".to_owned(),
            started_at: now,
            last_seen: now,
            in_flight: 0,
        }])
    }

    async fn take_rate_tokens(
        &self,
        _subscriber: &SubscriberId,
        limit: RateLimitConfig,
        want: u32,
        _now: UnixMillis,
    ) -> Result<u32, StoreError> {
        let mut b = self.bucket.lock();
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * f64::from(limit.per_second.get());
        b.0 = (b.0 + refill).min(f64::from(limit.burst.get()));
        b.1 = now;
        let take = b.0.floor().min(f64::from(want));
        b.0 -= take;
        Ok(take as u32)
    }

    async fn record_outcomes(
        &self,
        _subscriber: &SubscriberId,
        _config: &ThrottleConfig,
        _max: u32,
        succeeded: u32,
        failed: u32,
        _now: UnixMillis,
    ) -> Result<ThrottleState, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.outcomes
            .fetch_add(succeeded + failed, Ordering::Relaxed);
        Ok(ThrottleState {
            limit: self.limit.load(Ordering::Relaxed),
            previous_limit: self.limit.load(Ordering::Relaxed),
            error_rate: 0.25,
        })
    }
}

async fn node(
    cfg: herald_core::SubscriberConfig,
    cluster: Arc<FakeCluster>,
) -> (Arc<dyn DeliveryStore>, Dispatcher, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DeliveryStore> =
        Arc::new(SledStore::open(dir.path(), SledOptions::default()).unwrap());
    let cluster: Arc<dyn ClusterState> = cluster;
    let dispatcher =
        Dispatcher::start_with_cluster(Arc::clone(&store), client(), vec![cfg], Some(cluster))
            .await
            .unwrap();
    (store, dispatcher, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_effective_limit_is_the_claim_cap_and_outcomes_are_sent_in_batches() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(50))).await;
    let mut cfg = subscriber("shared", &rx);
    cfg.max_in_flight = 10;
    let cluster = FakeCluster::new(2);
    let (store, d, _dir) = node(cfg, Arc::clone(&cluster)).await;
    enqueue(&store, &d, "shared", 40).await;
    eventually(Duration::from_secs(20), "40 delivered", || {
        ready(store.counts(&sid("shared"))).unwrap().delivered == 40
    })
    .await;
    assert_eq!(rx.max_concurrent(), 2, "the cluster's limit of 2 holds");
    let stats = d.stats_of("shared").await.unwrap();
    assert_eq!(stats.effective_limit, 2);
    assert!(
        (stats.error_rate - 0.25).abs() < 1e-9,
        "{}",
        stats.error_rate
    );
    eventually(Duration::from_secs(2), "every outcome sent", || {
        cluster.outcomes.load(Ordering::Relaxed) == 40
    })
    .await;
    let calls = cluster.calls.load(Ordering::Relaxed);
    assert!(
        calls < 40,
        "outcomes are batched per step, not sent per delivery ({calls} calls)"
    );
    // A raised cluster limit is applied within a step.
    cluster.limit.store(7, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(d.stats_of("shared").await.unwrap().effective_limit, 7);
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_rate_limit() {
    let _serial = serial().await;
    const PER_SECOND: u32 = 20;
    let rx = Receiver::start(Mode::status(204)).await;
    let mut cfg = subscriber("limited", &rx);
    cfg.max_in_flight = 50;
    cfg.rate_limit = Some(RateLimitConfig {
        per_second: NonZeroU32::new(PER_SECOND).unwrap(),
        burst: NonZeroU32::new(1).unwrap(),
    });
    let cluster = FakeCluster::new(50);
    let (store_a, a, _da) = node(cfg.clone(), Arc::clone(&cluster)).await;
    let (store_b, b, _db) = node(cfg, Arc::clone(&cluster)).await;
    let started = Instant::now();
    enqueue(&store_a, &a, "limited", 30).await;
    enqueue(&store_b, &b, "limited", 30).await;
    rx.wait_for_count(60, Duration::from_secs(15)).await;
    let elapsed = started.elapsed();
    // 60 requests at 20/s for the two nodes together: about 3 s (each alone would take 1.5 s).
    assert!(
        elapsed >= Duration::from_millis(2_700),
        "60 requests in {elapsed:?}: the rate limit was not shared"
    );
    let arrivals: Vec<Instant> = rx.requests().iter().map(|r| r.at).collect();
    let busiest = arrivals
        .iter()
        .map(|&from| {
            arrivals
                .iter()
                .filter(|&&t| t >= from && t < from + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 23, "{busiest} arrivals in one second at 20/s");
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lists_this_node_alone_without_a_cluster() {
    let rx = Receiver::start(Mode::status(204)).await;
    let h = crate::harness::Harness::start(vec![subscriber("one", &rx)]).await;
    let nodes = h.dispatcher.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(
        nodes[0].id.ends_with(&format!("-{}", std::process::id())),
        "{}",
        nodes[0].id
    );
    assert!(nodes[0].started_at <= nodes[0].last_seen);
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
