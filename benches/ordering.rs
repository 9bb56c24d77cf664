//! Per-key ordering (SPEC §9) against no ordering, on the sled store, in the same run.
//!
//! `drain/{none,per_key}/keys/{1000,32}`: deliveries per second draining a backlog of 10,000
//! deliveries of one subscriber spread over that many keys (interleaved: key = n % keys), the
//! way a pump does: claim up to `max_in_flight` (32) within the cap of 32, finish each as
//! delivered, claim again. The backlog is built outside the timed part; the store and its
//! backlog are new for every sample. The same events are ordered (`ordered_for` = the
//! subscriber) or not; with keys ≥ max_in_flight the target is ≥ 70 % of the unordered rate.
//!
//! Run: `cargo bench --bench ordering -- --warm-up-time 1 --measurement-time 5`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_core::{
    AttemptRecord, ClaimRequest, DeliveryStore, NewEvent, Outcome, SubscriberId, UnixMillis,
};
use herald_queue::{SledOptions, SledStore};
mod support;
use support::runtime;

const BACKLOG: u64 = 10_000;
const MAX_IN_FLIGHT: u32 = 32;

fn backlog(ordered: bool, keys: u64) -> (tempfile::TempDir, Arc<SledStore>, SubscriberId) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SledStore::open(dir.path(), SledOptions::default()).expect("open"));
    let sub = SubscriberId::new("acme").expect("id");
    let body = Bytes::from_static(br#"{"processId":"p","state":"PROCESS_STATE_FINISHED"}"#);
    let rt = runtime();
    rt.block_on(async {
        for chunk in 0..BACKLOG / 1000 {
            let events = (chunk * 1000..(chunk + 1) * 1000)
                .map(|n| NewEvent {
                    event_type: "PROCESS_STATE_FINISHED".into(),
                    payload: body.clone(),
                    subscribers: vec![sub.clone()],
                    idempotency_key: None,
                    received_at: UnixMillis(1),
                    ordering_key: Some(format!("process-{}", n % keys)),
                    ordered_for: if ordered {
                        vec![sub.clone()]
                    } else {
                        Vec::new()
                    },
                    traceparent: None,
                })
                .collect();
            store.enqueue(events).await.expect("enqueue");
        }
    });
    (dir, store, sub)
}

async fn drain(store: &SledStore, sub: &SubscriberId) -> u64 {
    let mut done = 0;
    while done < BACKLOG {
        let claimed = store
            .claim(ClaimRequest {
                subscriber: sub,
                now: UnixMillis(10),
                lease_until: UnixMillis(u64::MAX / 2),
                max: MAX_IN_FLIGHT as usize,
                cap: MAX_IN_FLIGHT,
            })
            .await
            .expect("claim");
        assert!(!claimed.is_empty(), "the drain stalled at {done}");
        for c in claimed {
            let attempt = AttemptRecord {
                attempt: c.attempt,
                at: UnixMillis(10),
                status_code: Some(204),
                error: None,
                duration_ms: 1,
            };
            store
                .finish_attempt(c.id, c.lease, attempt, Outcome::Delivered)
                .await
                .expect("finish");
            done += 1;
        }
    }
    done
}

fn drains(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("drain");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BACKLOG));
    for keys in [1000u64, 32] {
        for (name, ordered) in [("none", false), ("per_key", true)] {
            group.bench_with_input(
                BenchmarkId::new(name, format!("keys/{keys}")),
                &keys,
                |b, &keys| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let (_dir, store, sub) = backlog(ordered, keys);
                            let started = Instant::now();
                            let n = rt.block_on(drain(&store, &sub));
                            total += started.elapsed();
                            assert_eq!(n, BACKLOG);
                        }
                        total
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, drains);
criterion_main!(benches);
