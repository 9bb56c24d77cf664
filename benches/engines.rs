//! The two storage engines side by side, in one run, through the same [`DeliveryStore`] calls:
//! sled (`herald-queue`, in a temp dir) and PostgreSQL (`herald-postgres`, on a fresh database).
//!
//! - `engines_enqueue/{sled,postgres}/32x{1,100}`: 32 producers call `enqueue` concurrently,
//!   each with a batch of 1 or 100 events (one subscriber, 500-byte payload). Every call
//!   returns once its events are durable (sled: a group-committed fsync; PostgreSQL: COMMIT
//!   with synchronous commit), so concurrent calls share one commit. Throughput: events.
//! - `engines_claim_finish/{sled,postgres}/32`: one claimer leases up to 32 due deliveries at a
//!   time and reports each one `Delivered` concurrently, as the dispatcher's attempts do
//!   (PostgreSQL batches those outcomes into one statement). The backlog is built outside the
//!   timing. Throughput: deliveries.
//!
//! Both engines run on the same two-worker runtime. PostgreSQL: the server of
//! `HERALD_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), a role
//! that may CREATE DATABASE; one fresh database per group (herald-postgres's `TestDb`), dropped
//! at the end. If it cannot be reached the bench stops with a message saying so: it never
//! skips.
//!
//! Run: `cargo bench --bench engines -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use herald_core::{
    AttemptRecord, ClaimRequest, DeliveryStore, NewEvent, Outcome, SubscriberId, UnixMillis,
};
use herald_postgres::testing::TestDb;
use herald_postgres::{PgOptions, PgStore};
use herald_queue::{SledOptions, SledStore};
use tempfile::TempDir;
use tokio::runtime::Runtime;
mod support;
use support::runtime;

/// The server used when `HERALD_TEST_DATABASE_URL` is not set.
const LOCAL_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Concurrent producers in the enqueue benchmarks.
const PRODUCERS: usize = 32;

/// Most deliveries leased per claim.
const CLAIM_MAX: usize = 32;

/// A 500-byte JSON payload.
fn payload(len: usize) -> Bytes {
    let head = br#"{"processId":"8263a268-5388-492a-bca2-28e1ff4a69f0","state":"PROCESS_STATE_FINISHED","pad":""#;
    let mut v = head.to_vec();
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

fn new_event(sub: &SubscriberId, body: &Bytes, at: u64) -> NewEvent {
    NewEvent {
        event_type: "PROCESS_STATE_FINISHED".into(),
        payload: body.clone(),
        subscribers: vec![sub.clone()],
        idempotency_key: None,
        received_at: UnixMillis(at),
        ordering_key: None,
        ordered_for: Vec::new(),
        traceparent: None,
    }
}

fn delivered() -> AttemptRecord {
    AttemptRecord {
        attempt: 1,
        at: UnixMillis(1),
        status_code: Some(204),
        error: None,
        duration_ms: 3,
    }
}

/// The PostgreSQL server the bench creates its databases on: `HERALD_TEST_DATABASE_URL`, or
/// the local default.
fn server_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| LOCAL_DATABASE.to_owned())
}

/// One store of each engine, fresh, for one group. Fields drop in order: the stores, then the
/// database.
struct Engines {
    _dir: TempDir,
    sled: Arc<dyn DeliveryStore>,
    postgres: Arc<dyn DeliveryStore>,
    _database: TestDb,
}

impl Engines {
    async fn open() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sled = SledStore::open(dir.path(), SledOptions::default()).expect("open sled store");
        let database = TestDb::create_on(server_url()).await;
        eprintln!("engines bench: PostgreSQL database {}", database.name);
        let postgres = PgStore::connect(PgOptions::new(&database.url).node_id("bench"))
            .await
            .unwrap_or_else(|e| panic!("engines bench: connecting the PostgreSQL store: {e}"));
        Self {
            _dir: dir,
            sled: Arc::new(sled),
            postgres: Arc::new(postgres),
            _database: database,
        }
    }

    fn each(&self) -> [(&'static str, &Arc<dyn DeliveryStore>); 2] {
        [("sled", &self.sled), ("postgres", &self.postgres)]
    }
}

fn enqueue(c: &mut Criterion, rt: &Runtime) {
    let engines = rt.block_on(Engines::open());
    let mut group = c.benchmark_group("engines_enqueue");
    // An iteration of 32 × 100 events takes ~0.1 s: 20 samples of the same size.
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    let body = payload(500);
    let sub = SubscriberId::new("enqueue").expect("id");
    for batch in [1usize, 100] {
        group.throughput(Throughput::Elements((PRODUCERS * batch) as u64));
        for (name, store) in engines.each() {
            group.bench_function(
                BenchmarkId::new(name, format!("{PRODUCERS}x{batch}")),
                |b| {
                    b.to_async(rt).iter_custom(|iters| {
                        let (store, body, sub) = (Arc::clone(store), body.clone(), sub.clone());
                        async move {
                            // One iteration: every producer makes one durable enqueue of `batch`.
                            let start = Instant::now();
                            let mut tasks = tokio::task::JoinSet::new();
                            for _ in 0..PRODUCERS {
                                let (store, body, sub) =
                                    (Arc::clone(&store), body.clone(), sub.clone());
                                tasks.spawn(async move {
                                    for i in 0..iters {
                                        let events =
                                            (0..batch).map(|_| new_event(&sub, &body, i)).collect();
                                        store.enqueue(events).await.expect("enqueue");
                                    }
                                });
                            }
                            while let Some(r) = tasks.join_next().await {
                                r.expect("producer");
                            }
                            start.elapsed()
                        }
                    });
                },
            );
        }
    }
    group.finish();
    drop(engines);
}

fn claim_finish(c: &mut Criterion, rt: &Runtime) {
    let engines = rt.block_on(Engines::open());
    let mut group = c.benchmark_group("engines_claim_finish");
    group.throughput(Throughput::Elements(1));
    let body = payload(500);
    let sub = SubscriberId::new("claim").expect("id");
    for (name, store) in engines.each() {
        group.bench_function(BenchmarkId::new(name, CLAIM_MAX), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (store, body, sub) = (Arc::clone(store), body.clone(), sub.clone());
                async move {
                    // Untimed: the backlog to drain, due at 0.
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(1000);
                        let events = (0..n).map(|_| new_event(&sub, &body, 0)).collect();
                        store.enqueue(events).await.expect("enqueue");
                        left -= n;
                    }
                    let start = Instant::now();
                    let mut done = 0u64;
                    while done < iters {
                        let claimed = store
                            .claim(ClaimRequest {
                                subscriber: &sub,
                                now: UnixMillis(1),
                                lease_until: UnixMillis(30_001),
                                max: CLAIM_MAX,
                                cap: u32::MAX,
                            })
                            .await
                            .expect("claim");
                        assert!(!claimed.is_empty(), "backlog ran dry");
                        done += claimed.len() as u64;
                        let mut outcomes = tokio::task::JoinSet::new();
                        for c in claimed {
                            black_box(&c.payload);
                            let store = Arc::clone(&store);
                            outcomes.spawn(async move {
                                store
                                    .finish_attempt(c.id, c.lease, delivered(), Outcome::Delivered)
                                    .await
                                    .expect("finish");
                            });
                        }
                        while let Some(r) = outcomes.join_next().await {
                            r.expect("outcome");
                        }
                    }
                    start.elapsed()
                }
            });
        });
    }
    group.finish();
    drop(engines);
}

fn main() {
    let rt = runtime();
    let mut c = Criterion::default().configure_from_args();
    enqueue(&mut c, &rt);
    claim_finish(&mut c, &rt);
    c.final_summary();
}
