//! SPEC §9 through the dispatcher, real HTTP receivers and a sled store: per-key order under
//! failures, a failing head delays only its key, keys run in parallel, and the routing fills
//! `ordered_for` from the subscribers' `ordering`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use herald_core::{NewEvent, OrderingMode, UnixMillis};
use parking_lot::Mutex;

use crate::harness::{serial, sid, subscriber, Harness};
use crate::receiver::{Mode, Receiver, Recorded};

/// What a keyed payload says: its key and its place in the acceptance order.
fn key_and_seq(req: &Recorded) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["seq"].as_u64().unwrap(),
    )
}

/// Ingests `keys[i]`-keyed events through the dispatcher (as the API does, `ordered_for`
/// left to it), in batches of `batch`, to the given subscribers; `seq` is the global order.
async fn ingest_keyed(h: &Harness, subs: &[&str], keys: &[String], batch: usize) {
    let mut seq = 0u64;
    for chunk in keys.chunks(batch) {
        let events = chunk
            .iter()
            .map(|key| {
                let e = NewEvent {
                    event_type: "test.event".to_owned(),
                    payload: Bytes::from(format!(r#"{{"key":"{key}","seq":{seq}}}"#)),
                    subscribers: subs.iter().map(|s| sid(s)).collect(),
                    idempotency_key: None,
                    received_at: UnixMillis::now(),
                    ordering_key: Some(key.clone()),
                    ordered_for: Vec::new(),
                    traceparent: None,
                };
                seq += 1;
                e
            })
            .collect();
        h.dispatcher.ingest(events).await.unwrap();
    }
}

/// A cheap deterministic hash of a request (its id and attempt), for "random" failures that
/// every run repeats.
fn roll(req: &Recorded) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in req.webhook_id().bytes().chain(req.attempt().to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// (key, seq, start, end, ok) of one request, as the script decided it.
type Entry = (String, u64, Instant, Instant, bool);

/// Every request's [`Entry`].
type Log = Arc<Mutex<Vec<Entry>>>;

/// A script that fails about `fail_pct` % of requests and answers after 2–10 ms, logging each.
fn flaky(log: &Log, fail_pct: u64) -> Mode {
    let log = Arc::clone(log);
    Mode::script(move |req| {
        let r = roll(req);
        let ok = r % 100 >= fail_pct;
        let delay = Duration::from_millis(2 + (r >> 8) % 9);
        let (key, seq) = key_and_seq(req);
        log.lock().push((key, seq, req.at, req.at + delay, ok));
        (if ok { 200 } else { 500 }, delay)
    })
}

/// Per key: the first successes are in acceptance order, and no two requests overlap.
fn check_order(log: &[Entry], keys: usize, per_key: usize) -> Result<(), String> {
    let mut by_key: HashMap<&str, Vec<&Entry>> = HashMap::new();
    for entry in log {
        by_key.entry(entry.0.as_str()).or_default().push(entry);
    }
    assert_eq!(by_key.len(), keys);
    for (key, mut reqs) in by_key {
        reqs.sort_by_key(|r| r.2);
        for pair in reqs.windows(2) {
            if pair[1].2 < pair[0].3 {
                return Err(format!(
                    "key {key}: a request of seq {} started before the one of seq {} ended",
                    pair[1].1, pair[0].1
                ));
            }
        }
        let mut firsts: Vec<u64> = Vec::new();
        for r in reqs.iter().filter(|r| r.4) {
            if !firsts.contains(&r.1) {
                firsts.push(r.1);
            }
        }
        assert_eq!(firsts.len(), per_key, "key {key}: every event delivered");
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        if firsts != sorted {
            return Err(format!(
                "key {key}: first successes out of order: {firsts:?}"
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_under_failures() {
    let _serial = serial().await;
    let log: Log = Arc::default();
    let rx = Receiver::start(flaky(&log, 30)).await;
    let mut cfg = subscriber("ordered", &rx);
    cfg.ordering = OrderingMode::PerKey;
    cfg.max_in_flight = 10;
    cfg.retry.initial_interval = Duration::from_millis(20);
    cfg.retry.max_interval = Duration::from_millis(50);
    cfg.retry.max_attempts = 100;
    cfg.throttle.error_rate = 1.0; // the 30 % failures must not throttle the test to a crawl
    let h = Harness::start(vec![cfg]).await;

    let (keys, per_key) = (20, 15);
    let order: Vec<String> = (0..keys * per_key)
        .map(|i| format!("process-{}", i % keys))
        .collect();
    ingest_keyed(&h, &["ordered"], &order, 37).await;
    h.wait_delivered("ordered", (keys * per_key) as u64, Duration::from_secs(60))
        .await;
    let log = log.lock().clone();
    let failed = log.iter().filter(|r| !r.4).count();
    println!(
        "{} requests, {failed} failed, max {} in flight at once",
        log.len(),
        rx.max_concurrent()
    );
    assert!(
        failed > 30,
        "the receiver failed too rarely to test anything"
    );
    check_order(&log, keys, per_key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_per_key_the_same_failures_reorder() {
    // The control for the test above: the same stream to a subscriber with ordering = "none"
    // does break per-key order (so the check above has teeth).
    let _serial = serial().await;
    let log: Log = Arc::default();
    let rx = Receiver::start(flaky(&log, 30)).await;
    let mut cfg = subscriber("unordered", &rx);
    cfg.max_in_flight = 10;
    cfg.retry.initial_interval = Duration::from_millis(20);
    cfg.retry.max_interval = Duration::from_millis(50);
    cfg.retry.max_attempts = 100;
    cfg.throttle.error_rate = 1.0;
    let h = Harness::start(vec![cfg]).await;
    let order: Vec<String> = (0..300).map(|i| format!("process-{}", i % 20)).collect();
    ingest_keyed(&h, &["unordered"], &order, 37).await;
    h.wait_delivered("unordered", 300, Duration::from_secs(60))
        .await;
    let log = log.lock().clone();
    let result = check_order(&log, 20, 15);
    println!("unordered: {result:?}");
    assert!(
        result.is_err(),
        "an unordered subscriber kept per-key order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_head_delays_only_its_key() {
    let _serial = serial().await;
    // The head of "stuck" fails for its first 8 attempts (~0.5 s of retries); everything else
    // succeeds at once.
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let rx = Receiver::start(Mode::script(move |req| {
        let (key, seq) = key_and_seq(req);
        let ok = !(seq == 0 && req.attempt() <= 8);
        seen.lock()
            .push((key, seq, req.at, req.at + Duration::from_millis(1), ok));
        (if ok { 200 } else { 500 }, Duration::from_millis(1))
    }))
    .await;
    let mut cfg = subscriber("ordered", &rx);
    cfg.ordering = OrderingMode::PerKey;
    cfg.retry.initial_interval = Duration::from_millis(60);
    cfg.retry.multiplier = 1.0;
    cfg.retry.max_interval = Duration::from_millis(60);
    cfg.retry.max_attempts = 20;
    cfg.throttle.error_rate = 1.0;
    let h = Harness::start(vec![cfg]).await;
    // seq 0 and 11 are "stuck"; the rest go to 10 other keys.
    let mut order = vec!["stuck".to_owned()];
    order.extend((0..10).map(|i| format!("free-{i}")));
    order.push("stuck".to_owned());
    order.extend((0..20).map(|i| format!("free-{}", i % 10)));
    ingest_keyed(&h, &["ordered"], &order, 100).await;
    h.wait_delivered("ordered", order.len() as u64, Duration::from_secs(20))
        .await;

    let log = log.lock().clone();
    let head_ok = log.iter().find(|r| r.1 == 0 && r.4).unwrap().2;
    let second = log.iter().find(|r| r.1 == 11).unwrap().2;
    let last_free = log
        .iter()
        .filter(|r| r.0 != "stuck")
        .map(|r| r.2)
        .max()
        .unwrap();
    assert!(
        second >= head_ok,
        "the second event of the stuck key went before its head succeeded"
    );
    assert!(
        last_free < head_ok,
        "other keys waited for the failing head ({:?} after it)",
        last_free - head_ok
    );
    assert_eq!(log.iter().filter(|r| r.1 == 0).count(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_run_in_parallel() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(200))).await;
    let mut cfg = subscriber("ordered", &rx);
    cfg.ordering = OrderingMode::PerKey;
    cfg.max_in_flight = 16;
    let h = Harness::start(vec![cfg]).await;
    // 32 keys × 3 events: one at a time per key, but 16 keys at once.
    let order: Vec<String> = (0..96).map(|i| format!("k{}", i % 32)).collect();
    let started = Instant::now();
    ingest_keyed(&h, &["ordered"], &order, 96).await;
    h.wait_delivered("ordered", 96, Duration::from_secs(20))
        .await;
    let took = started.elapsed();
    println!(
        "96 deliveries over 32 keys, 200 ms each: {took:?}, max {} in flight",
        rx.max_concurrent()
    );
    assert!(
        rx.max_concurrent() >= 12,
        "only {} in flight at once",
        rx.max_concurrent()
    );
    // Serial per key would be 3 × 200 ms per key; 96 × 200 ms / 16 = 1.2 s is the floor.
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_orders_only_per_key_subscribers() {
    let rx = Receiver::start(Mode::status(200)).await;
    let mut ordered = subscriber("ordered", &rx);
    ordered.ordering = OrderingMode::PerKey;
    let plain = subscriber("plain", &rx);
    let h = Harness::start(vec![ordered, plain]).await;
    h.dispatcher.pause("ordered", "test").await.unwrap();
    h.dispatcher.pause("plain", "test").await.unwrap();
    ingest_keyed(&h, &["ordered", "plain"], &["k".to_owned()], 1).await;
    let listed = h
        .store
        .list(&herald_core::ListQuery::default())
        .await
        .unwrap();
    let key_of = |s: &str| {
        listed
            .deliveries
            .iter()
            .find(|d| d.record.subscriber.as_str() == s)
            .unwrap()
            .record
            .ordering_key
            .clone()
    };
    assert_eq!(key_of("ordered").as_deref(), Some("k"));
    assert_eq!(key_of("plain"), None);
}
