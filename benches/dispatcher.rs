//! Dispatcher throughput and latency, end to end: sled store on a temporary directory →
//! dispatcher → real HTTP client → axum receiver on 127.0.0.1 answering `204` at once.
//!
//! - `drain/1x20000`: a backlog of 20,000 deliveries to one subscriber (`max_in_flight` 500)
//!   is drained; throughput in deliveries per second. The backlog is enqueued while the
//!   subscriber is paused (untimed); the clock runs from `resume` until the store counts all
//!   20,000 as delivered. Delivered records are purged between iterations (untimed).
//! - `drain/100x200`: the same with 200 events fanned out to 100 subscribers
//!   (`max_in_flight` 20 each, so 2,000 requests in flight): 20,000 deliveries. Each subscriber
//!   has its own receiver (listener and connection pool), as distinct endpoints would. With
//!   `max_in_flight` 200 each, 20,000 connections would be opened at once on loopback: more
//!   file descriptors than the process may have, and far past a listener's accept backlog.
//! - Latency (a plain timed run after the criterion groups, printed): enqueue → arrival at
//!   the receiver, p50/p90/p99/max, for events sent one at a time into an idle dispatcher and
//!   for a steady 1,000 events/s. "enqueue" is the API's path: `enqueue`, `sync` (the fsync
//!   behind a `202`), `notify`; the figures are also given from `notify` on, which is the
//!   dispatcher's own share.
//!
//! The receiver shares the runtime (2 worker threads) and the cores with the dispatcher and the
//! store, so the numbers are a floor for the dispatcher alone.
//!
//! Run: `cargo bench --bench dispatcher -- --warm-up-time 1 --measurement-time 5 --sample-size 10`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_core::{
    DeliveryStore, NewEvent, SecurityPolicy, SubscriberConfig, SubscriberId, UnixMillis,
};
use herald_delivery::HttpClient;
use herald_dispatcher::Dispatcher;
use herald_queue::{SledOptions, SledStore};
use parking_lot::Mutex;
use tempfile::TempDir;
use tokio::runtime::Runtime;

mod support;
use support::runtime;

/// A typical event payload (~200 bytes of JSON).
const PAYLOAD: &[u8] = br#"{"processId":"8263a268-5388-492a-bca2-28e1ff4a69f0","state":"PROCESS_STATE_FINISHED","flow":"id","lastEvent":"EVENT_TYPE_PROCESS_CREATED","lastEventDescription":"Process created"}"#;

const BACKLOG: usize = 20_000;
/// Events per `enqueue` call while building a backlog.
const ENQUEUE_CHUNK: usize = 1_000;

/// Arrival times by `webhook-id`, when the receiver is asked to keep them.
type Arrivals = Arc<Mutex<Option<Vec<(String, Instant)>>>>;

async fn start_receiver(arrivals: Arrivals) -> SocketAddr {
    async fn hook(
        State(arrivals): State<Arrivals>,
        headers: HeaderMap,
        _body: Bytes,
    ) -> StatusCode {
        if let Some(log) = arrivals.lock().as_mut() {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            log.push((id, Instant::now()));
        }
        StatusCode::NO_CONTENT
    }
    let app = Router::new().fallback(hook).with_state(arrivals);
    support::serve(app).await
}

fn subscriber(id: &str, addr: SocketAddr, max_in_flight: u32) -> SubscriberConfig {
    SubscriberConfig {
        max_in_flight,
        ..SubscriberConfig::new(
            SubscriberId::new(id).expect("id"),
            format!("http://{addr}/hook").parse().expect("url"),
        )
    }
}

/// Store, dispatcher and receiver, on `rt`.
struct Rig {
    store: Arc<dyn DeliveryStore>,
    dispatcher: Dispatcher,
    subscribers: Vec<SubscriberId>,
    arrivals: Arrivals,
    _dir: TempDir,
}

impl Rig {
    fn start(rt: &Runtime, subscribers: usize, max_in_flight: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn DeliveryStore> =
            Arc::new(SledStore::open(dir.path(), SledOptions::default()).expect("open store"));
        let arrivals: Arrivals = Arc::new(Mutex::new(None));
        // One receiver (listener, connection pool) per subscriber, as distinct endpoints have.
        let configs: Vec<SubscriberConfig> = (0..subscribers)
            .map(|i| {
                let addr = rt.block_on(start_receiver(Arc::clone(&arrivals)));
                subscriber(&format!("bench-{i:03}"), addr, max_in_flight)
            })
            .collect();
        let ids = configs.iter().map(|c| c.id.clone()).collect();
        let client = HttpClient::new(SecurityPolicy {
            allow_http: true,
            allow_private_networks: true,
        })
        .expect("client");
        let dispatcher = {
            let _guard = rt.enter();
            rt.block_on(Dispatcher::start(Arc::clone(&store), client, configs))
                .expect("dispatcher")
        };
        Self {
            store,
            dispatcher,
            subscribers: ids,
            arrivals,
            _dir: dir,
        }
    }

    async fn delivered(&self) -> u64 {
        let mut sum = 0;
        for s in &self.subscribers {
            sum += self.store.counts(s).await.expect("counts").delivered;
        }
        sum
    }

    /// One timed drain of `events` events fanned out to every subscriber.
    async fn drain(&self, events: usize) -> Duration {
        for id in &self.subscribers {
            self.dispatcher
                .pause(id.as_str(), "bench")
                .await
                .expect("pause");
        }
        let mut left = events;
        while left > 0 {
            let n = left.min(ENQUEUE_CHUNK);
            left -= n;
            let now = UnixMillis::now();
            let batch = (0..n)
                .map(|_| NewEvent {
                    event_type: "PROCESS_STATE_FINISHED".to_owned(),
                    payload: Bytes::from_static(PAYLOAD),
                    subscribers: self.subscribers.clone(),
                    idempotency_key: None,
                    received_at: now,
                    ordering_key: None,
                    ordered_for: Vec::new(),
                    traceparent: None,
                })
                .collect();
            self.store.enqueue(batch).await.expect("enqueue");
        }
        let target = (events * self.subscribers.len()) as u64;

        let start = Instant::now();
        for id in &self.subscribers {
            self.dispatcher.resume(id.as_str()).await.expect("resume");
        }
        while self.delivered().await < target {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let elapsed = start.elapsed();

        // Untimed: forget the delivered records so every iteration starts from the same store.
        self.store
            .purge(UnixMillis::now().plus(Duration::from_secs(60)))
            .await
            .expect("purge");
        elapsed
    }
}

fn drain(c: &mut Criterion) {
    let rt = runtime();

    let mut group = c.benchmark_group("drain");
    group.throughput(Throughput::Elements(BACKLOG as u64));
    for (subscribers, max_in_flight) in [(1usize, 500u32), (100, 20)] {
        let rig = Rig::start(&rt, subscribers, max_in_flight);
        let per_subscriber = BACKLOG / subscribers;
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{subscribers}x{per_subscriber}")),
            &per_subscriber,
            |b, &events| {
                b.to_async(&rt).iter_custom(|iters| {
                    let rig = &rig;
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += rig.drain(events).await;
                        }
                        total
                    }
                });
            },
        );
        rt.block_on(rig.dispatcher.shutdown(Duration::from_secs(5)));
    }
    group.finish();
}

/// Per delivery: when `ingest` was called and when it returned (durable, pumps woken).
type Sent = HashMap<String, (Instant, Instant)>;

async fn send_one(rig: &Rig, sent: &Mutex<Sent>) {
    let t0 = Instant::now();
    let receipts = rig
        .dispatcher
        .ingest(vec![NewEvent {
            event_type: "PROCESS_STATE_FINISHED".to_owned(),
            payload: Bytes::from_static(PAYLOAD),
            subscribers: rig.subscribers.clone(),
            idempotency_key: None,
            received_at: UnixMillis::now(),
            ordering_key: None,
            ordered_for: Vec::new(),
            traceparent: None,
        }])
        .await
        .expect("ingest");
    let t1 = Instant::now();
    let mut sent = sent.lock();
    for d in receipts.iter().flat_map(|r| &r.deliveries) {
        sent.insert(d.id.to_string(), (t0, t1));
    }
}

/// Percentiles of enqueue→arrival and notify→arrival, printed as one line each.
fn report(name: &str, sent: &Sent, arrivals: &[(String, Instant)]) {
    let mut from_enqueue = Vec::with_capacity(arrivals.len());
    let mut from_notify = Vec::with_capacity(arrivals.len());
    for (id, at) in arrivals {
        if let Some(&(t0, t1)) = sent.get(id) {
            from_enqueue.push(at.saturating_duration_since(t0));
            from_notify.push(at.saturating_duration_since(t1));
        }
    }
    assert_eq!(
        from_enqueue.len(),
        sent.len(),
        "{name}: every event arrives once"
    );
    for (what, mut v) in [
        ("enqueue→arrival", from_enqueue),
        ("notify→arrival ", from_notify),
    ] {
        v.sort_unstable();
        let pct = |p: f64| {
            let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
            v[i].as_secs_f64() * 1e3
        };
        println!(
            "latency/{name:<14} {what}: n={:>5}  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            v.len(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0)
        );
    }
}

fn latency(_c: &mut Criterion) {
    let rt = runtime();
    let rig = Rig::start(&rt, 1, 500);
    rt.block_on(async {
        // Warm the connection pool and the store.
        let warm = Mutex::new(Sent::new());
        for _ in 0..50 {
            send_one(&rig, &warm).await;
        }
        while rig.delivered().await < 50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        // Idle: one event at a time, the next 5 ms after the previous one arrived.
        let sent = Mutex::new(Sent::new());
        *rig.arrivals.lock() = Some(Vec::new());
        let before = rig.delivered().await;
        for i in 0..300u64 {
            send_one(&rig, &sent).await;
            while rig.delivered().await < before + i + 1 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let arrivals = rig.arrivals.lock().take().unwrap_or_default();
        report("idle", &sent.lock(), &arrivals);

        // Steady 1,000 events/s for 3 s; each event is enqueued by its own task, as concurrent
        // API requests would be, so syncs share fsyncs (group commit).
        let sent = Arc::new(Mutex::new(Sent::new()));
        *rig.arrivals.lock() = Some(Vec::new());
        let before = rig.delivered().await;
        let rig = Arc::new(rig);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        let events = 3_000u64;
        for _ in 0..events {
            tick.tick().await;
            let (rig, sent) = (Arc::clone(&rig), Arc::clone(&sent));
            tasks.spawn(async move { send_one(&rig, &sent).await });
        }
        while tasks.join_next().await.is_some() {}
        while rig.delivered().await < before + events {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let arrivals = rig.arrivals.lock().take().unwrap_or_default();
        report("1000/s", &sent.lock(), &arrivals);
        rig.dispatcher.shutdown(Duration::from_secs(5)).await;
    });
}

criterion_group!(benches, drain, latency);
criterion_main!(benches);
