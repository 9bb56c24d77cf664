//! Queue throughput and latency (`herald-queue`, sled).
//!
//! - `durable_enqueue/producers/{1,16,256}`: events per second through `enqueue` (the API's path
//!   to a `202`: it returns once the group-committed fsync that covers the event is done), with
//!   that many producers calling concurrently. 500-byte payload, one subscriber.
//! - `claim_complete/batch/{1,32}`: deliveries per second through `claim` + `finish_attempt
//!   (Delivered)` for one subscriber (one pump), claiming that many at a time (awaited on a
//!   current-thread runtime, as a pump does; the lease token fences each finish).
//! - `claim_latency/backlog/{1000,1000000}`: time of one `claim(max = 1)` with that many pending
//!   deliveries of the subscriber. The backlog is built once, outside the timed loop; after each
//!   claim the delivery is released to the back of the queue (untimed), so the backlog stays
//!   constant and every claim reads a different record.
//!
//! Run: `cargo bench --bench queue -- --warm-up-time 1 --measurement-time 3`
//! Memory and disk footprint: `cargo run --release --example queue_footprint`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_core::{
    AttemptRecord, ClaimRequest, DeliveryStore, NewEvent, Outcome, SubscriberId, UnixMillis,
};
use herald_queue::{SledOptions, SledStore};
use tempfile::TempDir;
mod support;
use support::runtime;

/// A 500-byte JSON payload.
fn payload(len: usize) -> Bytes {
    let head = br#"{"processId":"8263a268-5388-492a-bca2-28e1ff4a69f0","state":"PROCESS_STATE_FINISHED","pad":""#;
    let mut v = head.to_vec();
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

fn open_store() -> (TempDir, Arc<SledStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path(), SledOptions::default()).expect("open store");
    (dir, Arc::new(store))
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

fn claim_request(sub: &SubscriberId, now: UnixMillis, max: usize) -> ClaimRequest<'_> {
    ClaimRequest {
        subscriber: sub,
        now,
        lease_until: UnixMillis(now.0.saturating_add(30_000)),
        max,
        cap: u32::MAX,
    }
}

/// A current-thread runtime to await the store's calls on (they do not wait: in-memory work
/// and sled writes).
fn local() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn ok_attempt() -> AttemptRecord {
    AttemptRecord {
        attempt: 1,
        at: UnixMillis(1),
        status_code: Some(204),
        error: None,
        duration_ms: 3,
    }
}

fn durable_enqueue(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("durable_enqueue");
    let body = payload(500);
    let sub = SubscriberId::new("acme").expect("id");
    for producers in [1usize, 16, 256] {
        let (_dir, store) = open_store();
        group.throughput(Throughput::Elements(producers as u64));
        group.bench_with_input(
            BenchmarkId::new("producers", producers),
            &producers,
            |b, &producers| {
                b.to_async(&rt).iter_custom(|iters| {
                    let store = Arc::clone(&store);
                    let body = body.clone();
                    let sub = sub.clone();
                    async move {
                        // Each producer makes `iters` durable enqueues; one iteration is one
                        // durable enqueue per producer.
                        let start = Instant::now();
                        let mut tasks = tokio::task::JoinSet::new();
                        for _ in 0..producers {
                            let store = Arc::clone(&store);
                            let body = body.clone();
                            let sub = sub.clone();
                            tasks.spawn(async move {
                                for i in 0..iters {
                                    store
                                        .enqueue(vec![new_event(&sub, &body, i)])
                                        .await
                                        .expect("enqueue");
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
    group.finish();
}

fn claim_complete(c: &mut Criterion) {
    let rt = local();
    let mut group = c.benchmark_group("claim_complete");
    group.throughput(Throughput::Elements(1));
    let body = payload(500);
    let sub = SubscriberId::new("acme").expect("id");
    for batch in [1usize, 32] {
        let (_dir, store) = open_store();
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    // Untimed: the backlog to drain.
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
                            .claim(claim_request(&sub, UnixMillis(1), batch))
                            .await
                            .expect("claim");
                        assert!(!claimed.is_empty(), "backlog ran dry");
                        for c in claimed {
                            black_box(&c.payload);
                            store
                                .finish_attempt(c.id, c.lease, ok_attempt(), Outcome::Delivered)
                                .await
                                .expect("finish");
                            done += 1;
                        }
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn claim_latency(c: &mut Criterion) {
    let rt = local();
    let mut group = c.benchmark_group("claim_latency");
    let body = payload(200);
    let sub = SubscriberId::new("acme").expect("id");
    for backlog in [1_000u64, 1_000_000] {
        // Built on first use (so filtering this benchmark out skips it), outside the timing.
        let mut state: Option<(TempDir, Arc<SledStore>, u64)> = None;
        group.bench_with_input(
            BenchmarkId::new("backlog", backlog),
            &backlog,
            |b, &backlog| {
                let (_, store, back) = state.get_or_insert_with(|| {
                    let (dir, store) = open_store();
                    let built = Instant::now();
                    let mut i = 0;
                    while i < backlog {
                        let n = (backlog - i).min(1000);
                        let events = (i..i + n).map(|at| new_event(&sub, &body, at)).collect();
                        rt.block_on(store.enqueue(events)).expect("enqueue");
                        i += n;
                    }
                    eprintln!("backlog of {backlog} built in {:?}", built.elapsed());
                    // Due times are 0..backlog; released deliveries go behind everything.
                    (dir, store, backlog)
                });
                let now = UnixMillis(u64::MAX / 4);
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            let claimed = store
                                .claim(claim_request(&sub, now, 1))
                                .await
                                .expect("claim");
                            total += start.elapsed();
                            let c = claimed.first().expect("a due delivery");
                            black_box(&c.payload);
                            store
                                .release(c.id, c.lease, UnixMillis(*back))
                                .await
                                .expect("release");
                            *back += 1;
                        }
                        total
                    })
                });
                let counts = rt.block_on(store.counts(&sub)).expect("counts");
                assert_eq!(counts.pending, backlog);
            },
        );
    }
    group.finish();
}

criterion_group!(benches, durable_enqueue, claim_complete, claim_latency);
criterion_main!(benches);
