//! Cluster mode: the rate limit and the throttle come from the cluster's state. Two
//! dispatchers are two nodes on one real PostgreSQL database (herald-postgres's `PgStore`, the
//! daemon's store and cluster state), on the server of `HERALD_TEST_DATABASE_URL` (these tests
//! fail without it). The only stand-in is [`Observed`], which counts the throttle calls a node
//! makes and passes each one to the real store.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{
    ClusterState, DeliveryStore, NodeInfo, RateLimitConfig, StoreError, SubscriberConfig,
    SubscriberId, ThrottleConfig, ThrottleState, UnixMillis,
};
use herald_dispatcher::Dispatcher;
use herald_postgres::testing::TestDb;
use herald_postgres::PgStore;

use crate::harness::{client, enqueue, serial, sid, subscriber};
use crate::receiver::{Mode, Receiver};

/// A node's cluster state: the real store, with the `record_outcomes` calls that carried
/// outcomes, and the outcomes, counted.
struct Observed {
    store: Arc<PgStore>,
    calls_with_outcomes: AtomicU32,
    outcomes: AtomicU32,
}

#[async_trait::async_trait]
impl ClusterState for Observed {
    fn node_id(&self) -> &str {
        self.store.node_id()
    }

    async fn heartbeat(&self, in_flight: u64) -> Result<(), StoreError> {
        self.store.heartbeat(in_flight).await
    }

    async fn nodes(&self, now: UnixMillis) -> Result<Vec<NodeInfo>, StoreError> {
        self.store.nodes(now).await
    }

    async fn take_rate_tokens(
        &self,
        subscriber: &SubscriberId,
        limit: RateLimitConfig,
        want: u32,
        now: UnixMillis,
    ) -> Result<u32, StoreError> {
        self.store
            .take_rate_tokens(subscriber, limit, want, now)
            .await
    }

    async fn record_outcomes(
        &self,
        subscriber: &SubscriberId,
        config: &ThrottleConfig,
        max: u32,
        succeeded: u32,
        failed: u32,
        now: UnixMillis,
    ) -> Result<ThrottleState, StoreError> {
        if succeeded + failed > 0 {
            self.calls_with_outcomes.fetch_add(1, Ordering::Relaxed);
        }
        self.outcomes
            .fetch_add(succeeded + failed, Ordering::Relaxed);
        self.store
            .record_outcomes(subscriber, config, max, succeeded, failed, now)
            .await
    }
}

/// A node on `db`: its store, dispatcher and observed cluster state.
struct Node {
    store: Arc<dyn DeliveryStore>,
    dispatcher: Dispatcher,
    cluster: Arc<Observed>,
}

async fn node(db: &TestDb, name: &str, cfg: SubscriberConfig) -> Node {
    let pg = Arc::new(db.store(name).await);
    let store: Arc<dyn DeliveryStore> = pg.clone();
    let cluster = Arc::new(Observed {
        store: pg,
        calls_with_outcomes: AtomicU32::new(0),
        outcomes: AtomicU32::new(0),
    });
    let state: Arc<dyn ClusterState> = cluster.clone();
    let dispatcher =
        Dispatcher::start_with_cluster(Arc::clone(&store), client(), vec![cfg], Some(state))
            .await
            .unwrap();
    Node {
        store,
        dispatcher,
        cluster,
    }
}

/// The subscriber's cluster-wide throttle row: (limit, successes and failures in its window).
async fn throttle_row(db: &TestDb, subscriber: &str) -> Option<(i32, i64, i64)> {
    db.client()
        .await
        .query_opt(
            "SELECT lim, (SELECT coalesce(sum(x), 0)::int8 FROM unnest(oks) x),
                    (SELECT coalesce(sum(x), 0)::int8 FROM unnest(fails) x)
             FROM herald_throttle WHERE subscriber = $1",
            &[&subscriber],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Polls the async `cond` every 20 ms until it holds; panics naming `what` after `within`.
async fn eventually_async<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delivered(store: &Arc<dyn DeliveryStore>, subscriber: &str) -> u64 {
    store.counts(&sid(subscriber)).await.unwrap().delivered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_limit_caps_both_nodes_and_their_outcomes_reach_it_in_batches() {
    let _serial = serial().await;
    let db = TestDb::create().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(50))).await;
    let mut cfg = subscriber("shared", &rx);
    cfg.max_in_flight = 10;
    // A window of 10 minutes: the limit changes at most once a minute, so the limit written
    // below stays put while the test runs.
    cfg.throttle.window = Duration::from_secs(600);
    // The schema first (a store migrates it), then the limit, then the nodes.
    drop(db.store("setup").await);
    let now = UnixMillis::now().0;
    db.exec(&format!(
        "INSERT INTO herald_throttle (subscriber, lim, max_limit, last_change, slots, oks, fails)
         VALUES ('shared', 2, 10, {now}, array_fill(-1::int8, ARRAY[10]),
                 array_fill(0, ARRAY[10]), array_fill(0, ARRAY[10]))"
    ))
    .await;
    let a = node(&db, "node-a", cfg.clone()).await;
    let b = node(&db, "node-b", cfg).await;
    enqueue(&a.store, &a.dispatcher, "shared", 20).await;
    enqueue(&b.store, &b.dispatcher, "shared", 20).await;
    eventually_async(Duration::from_secs(30), "40 delivered", || async {
        delivered(&a.store, "shared").await == 40
    })
    .await;
    assert_eq!(rx.count(), 40);
    assert_eq!(
        rx.max_concurrent(),
        2,
        "the cluster's limit of 2 holds for the two nodes together"
    );
    for n in [&a, &b] {
        let stats = n.dispatcher.stats_of("shared").await.unwrap();
        assert_eq!(stats.effective_limit, 2, "{}", n.cluster.node_id());
    }
    // Every outcome of both nodes reached the cluster's window, in batches.
    eventually_async(Duration::from_secs(3), "every outcome recorded", || async {
        throttle_row(&db, "shared").await.map(|r| (r.1, r.2)) == Some((40, 0))
    })
    .await;
    let total = |f: fn(&Observed) -> u32| f(&a.cluster) + f(&b.cluster);
    assert_eq!(total(|o| o.outcomes.load(Ordering::Relaxed)), 40);
    let calls = total(|o| o.calls_with_outcomes.load(Ordering::Relaxed));
    assert!(
        calls <= 20,
        "outcomes are sent per step, not per delivery ({calls} calls for 40)"
    );
    // A limit changed in the database is applied by every node within a step.
    db.exec("UPDATE herald_throttle SET lim = 7 WHERE subscriber = 'shared'")
        .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for n in [&a, &b] {
        assert_eq!(
            n.dispatcher
                .stats_of("shared")
                .await
                .unwrap()
                .effective_limit,
            7
        );
    }
    a.dispatcher.shutdown(Duration::from_secs(1)).await;
    b.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_seen_by_both_nodes_cut_the_one_limit_they_share() {
    let _serial = serial().await;
    let db = TestDb::create().await;
    let rx = Receiver::start(Mode::answer(500, Duration::from_millis(20))).await;
    let mut cfg = subscriber("failing", &rx);
    cfg.max_in_flight = 8;
    cfg.throttle = ThrottleConfig {
        error_rate: 0.5,
        window: Duration::from_secs(2),
        min_requests: 4,
    };
    let a = node(&db, "node-a", cfg.clone()).await;
    let b = node(&db, "node-b", cfg).await;
    enqueue(&a.store, &a.dispatcher, "failing", 10).await;
    enqueue(&b.store, &b.dispatcher, "failing", 10).await;
    eventually_async(
        Duration::from_secs(15),
        "both nodes on the cluster's cut limit",
        || async {
            let Some((lim, _, fails)) = throttle_row(&db, "failing").await else {
                return false;
            };
            let la = a
                .dispatcher
                .stats_of("failing")
                .await
                .unwrap()
                .effective_limit;
            let lb = b
                .dispatcher
                .stats_of("failing")
                .await
                .unwrap()
                .effective_limit;
            fails > 0 && lim < 8 && i64::from(la) == i64::from(lim) && la == lb
        },
    )
    .await;
    a.dispatcher.shutdown(Duration::from_secs(1)).await;
    b.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_rate_limit() {
    let _serial = serial().await;
    const PER_SECOND: u32 = 20;
    let db = TestDb::create().await;
    let rx = Receiver::start(Mode::status(204)).await;
    let mut cfg = subscriber("limited", &rx);
    cfg.max_in_flight = 50;
    cfg.rate_limit = Some(RateLimitConfig {
        per_second: NonZeroU32::new(PER_SECOND).unwrap(),
        burst: NonZeroU32::new(1).unwrap(),
    });
    let a = node(&db, "node-a", cfg.clone()).await;
    let b = node(&db, "node-b", cfg).await;
    let started = Instant::now();
    enqueue(&a.store, &a.dispatcher, "limited", 30).await;
    enqueue(&b.store, &b.dispatcher, "limited", 30).await;
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
    a.dispatcher.shutdown(Duration::from_secs(1)).await;
    b.dispatcher.shutdown(Duration::from_secs(1)).await;
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
