//! A short throughput run of the PostgreSQL engine alone (no HTTP): batch ingest, then drain
//! (claim + delivered outcome). Not a benchmark suite: a quick figure for one machine.
//!
//! ```text
//! cargo run --release -p herald-postgres --example pg_throughput -- postgres://postgres@127.0.0.1:5432/herald_bench 50000
//! ```
//! The database must exist; the run adds its rows to it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_core::{
    AttemptRecord, ClaimRequest, DeliveryStore, NewEvent, Outcome, SubscriberId, UnixMillis,
};
use herald_postgres::{PgOptions, PgStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: pg_throughput URL [EVENTS]");
    let total: usize = args.next().map(|n| n.parse().unwrap()).unwrap_or(50_000);
    let store = Arc::new(
        PgStore::connect(PgOptions::new(&url).node_id("bench"))
            .await
            .unwrap(),
    );
    let subs: Vec<SubscriberId> = (0..4)
        .map(|i| SubscriberId::new(&format!("bench-{i}-{}", std::process::id())).unwrap())
        .collect();
    let payload = Bytes::from_static(
        br#"{"processId":"8263a268-5388-492a-bca2-28e1ff4a69f0","state":"PROCESS_STATE_FINISHED"}"#,
    );

    // Batch ingest: 16 concurrent callers of 100 events each (as /v1/events/batch would).
    let start = Instant::now();
    let per_task = total / 16;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (store, subs, payload) = (store.clone(), subs.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            for chunk in 0..per_task.div_ceil(100) {
                let n = 100.min(per_task - chunk * 100);
                let events = (0..n)
                    .map(|_| NewEvent {
                        event_type: "PROCESS_STATE_FINISHED".into(),
                        payload: payload.clone(),
                        subscribers: vec![subs[t % subs.len()].clone()],
                        idempotency_key: None,
                        received_at: UnixMillis::now(),
                        ordering_key: None,
                        ordered_for: Vec::new(),
                        traceparent: None,
                    })
                    .collect();
                store.enqueue(events).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ingest = start.elapsed();
    let ingested = per_task * 16;
    println!(
        "batch ingest: {ingested} events in {:.2} s = {:.0} events/s ({} transactions)",
        ingest.as_secs_f64(),
        ingested as f64 / ingest.as_secs_f64(),
        store.enqueue_transactions()
    );

    // Drain: one worker per subscriber claims up to 100 and reports each delivered.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in subs.clone() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let now = UnixMillis::now();
                let claimed = store
                    .claim(ClaimRequest {
                        subscriber: &s,
                        now,
                        lease_until: UnixMillis(now.0 + 60_000),
                        max: 100,
                        cap: 500,
                    })
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return done;
                }
                // Concurrent outcomes share the writer's flushes, as the dispatcher's do.
                let mut set = tokio::task::JoinSet::new();
                for c in &claimed {
                    let (store, id, lease, attempt) = (store.clone(), c.id, c.lease, c.attempt);
                    set.spawn(async move {
                        store
                            .finish_attempt(
                                id,
                                lease,
                                AttemptRecord {
                                    attempt,
                                    at: now,
                                    status_code: Some(200),
                                    error: None,
                                    duration_ms: 1,
                                },
                                Outcome::Delivered,
                            )
                            .await
                    });
                }
                while let Some(r) = set.join_next().await {
                    r.unwrap().unwrap();
                }
                done += claimed.len();
            }
        }));
    }
    let mut drained = 0;
    for t in tasks {
        drained += t.await.unwrap();
    }
    let drain = start.elapsed();
    println!(
        "drain: {drained} deliveries in {:.2} s = {:.0} deliveries/s ({} outcome flushes)",
        drain.as_secs_f64(),
        drained as f64 / drain.as_secs_f64(),
        store.outcome_flushes()
    );
}
