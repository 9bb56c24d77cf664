//! SPEC §9 through the real binary: per-key order under failures, across a SIGKILL, across two
//! nodes on PostgreSQL, keys in parallel, the `ordering_key` field's validation and
//! `GET /v1/deliveries/{id}`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    assert_error_body, wait_for, Config, Herald, Mode, Received, Receiver, Sub, TestDb,
};

fn ordered_sub(name: &str, rx: &Receiver) -> Sub {
    Sub::new(name, &rx.url(&format!("/{name}")))
        .max_in_flight(10)
        .attempts(1000)
        .intervals("50ms", "200ms")
        .top("ordering = \"per_key\"")
        // 30 % failures must not throttle the test to a crawl.
        .extra("[throttle]\nerror_rate = 1.0")
}

/// (key, seq) of a keyed test payload.
fn key_seq(r: &Received) -> (String, u64) {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["seq"].as_u64().unwrap(),
    )
}

/// Posts `events` keyed events in batches of `batch` (key = `key-{seq % keys}`), starting at
/// `from`; returns how many were acknowledged (a batch refused by a dying daemon is retried).
async fn post_keyed(h: &Herald, from: u64, events: u64, keys: u64, batch: u64) {
    let mut seq = from;
    while seq < from + events {
        let n = batch.min(from + events - seq);
        let items: Vec<Value> = (seq..seq + n)
            .map(|s| {
                json!({
                    "event_type": "PROCESS_STATE_CHANGED",
                    "ordering_key": format!("key-{}", s % keys),
                    "payload": {"key": format!("key-{}", s % keys), "seq": s},
                })
            })
            .collect();
        let (status, body) = h
            .post("/v1/events/batch", &json!({ "events": items }))
            .await;
        assert_eq!(status, 202, "{body}");
        seq += n;
    }
}

/// Per key: requests never overlap (each starts after the previous one was answered), and
/// the first successes are in acceptance (seq) order. `answers`: every answered request.
fn check_keys(answers: &[(Received, u16, Instant)], keys: usize, per_key: usize) {
    let mut by_key: HashMap<String, Vec<(u64, Instant, Instant, bool)>> = HashMap::new();
    for (req, status, end) in answers {
        let (key, seq) = key_seq(req);
        by_key
            .entry(key)
            .or_default()
            .push((seq, req.at, *end, (200..300).contains(status)));
    }
    assert_eq!(by_key.len(), keys);
    for (key, mut reqs) in by_key {
        reqs.sort_by_key(|r| r.1);
        for pair in reqs.windows(2) {
            assert!(
                pair[1].1 >= pair[0].2,
                "key {key}: seq {} was sent while seq {} was in flight",
                pair[1].0,
                pair[0].0
            );
        }
        let mut firsts = Vec::new();
        for r in reqs.iter().filter(|r| r.3) {
            if !firsts.contains(&r.0) {
                firsts.push(r.0);
            }
        }
        assert_eq!(firsts.len(), per_key, "key {key}: every event delivered");
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        assert_eq!(firsts, sorted, "key {key}: first successes out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_under_failures() {
    let rx = Receiver::start_with(Mode::Flaky {
        p_500: 0.3,
        delay: Duration::from_millis(3),
    })
    .await;
    let h = Herald::start(Config::default().sub(ordered_sub("ordered", &rx))).await;
    // 20 keys × 15 events, interleaved, in batches of 25.
    post_keyed(&h, 0, 300, 20, 25).await;
    wait_for(Duration::from_secs(60), "300 delivered", || async {
        (rx.succeeded().len() >= 300).then_some(())
    })
    .await;
    let answers = rx.answers();
    let failed = answers.iter().filter(|a| a.1 >= 500).count();
    println!("{} requests, {failed} failed", answers.len());
    assert!(failed > 30, "too few failures to test anything");
    check_keys(&answers, 20, 15);
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_run_in_parallel_with_a_slow_receiver() {
    let rx = Receiver::start_with(Mode::Delay(Duration::from_millis(200), 200)).await;
    let h =
        Herald::start(Config::default().sub(ordered_sub("ordered", &rx).max_in_flight(16))).await;
    let started = Instant::now();
    post_keyed(&h, 0, 96, 32, 96).await;
    wait_for(Duration::from_secs(30), "96 delivered", || async {
        (rx.succeeded().len() >= 96).then_some(())
    })
    .await;
    println!(
        "96 over 32 keys at 200 ms: {:?}, max {} in flight",
        started.elapsed(),
        rx.max_in_flight()
    );
    assert!(rx.max_in_flight() >= 12, "{}", rx.max_in_flight());
    check_keys(&rx.answers(), 32, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_stream_keeps_the_order() {
    let rx = Receiver::start_with(Mode::Flaky {
        p_500: 0.2,
        delay: Duration::from_millis(5),
    })
    .await;
    let mut h = Herald::start(Config::default().sub(ordered_sub("ordered", &rx))).await;
    post_keyed(&h, 0, 150, 10, 50).await;
    wait_for(Duration::from_secs(20), "some deliveries", || async {
        (rx.succeeded().len() >= 30).then_some(())
    })
    .await;
    h.sigkill();
    h.restart().await;
    post_keyed(&h, 150, 150, 10, 50).await;
    wait_for(Duration::from_secs(60), "300 delivered", || async {
        (rx.succeeded().len() >= 300).then_some(())
    })
    .await;
    // Duplicates are allowed (an attempt cut by the kill is sent again), and a request cut by
    // the kill may overlap its retry: order is judged on first successes only.
    let mut firsts: HashMap<String, Vec<u64>> = HashMap::new();
    for (req, status, _) in rx.answers() {
        if (200..300).contains(&status) {
            let (key, seq) = key_seq(&req);
            let line = firsts.entry(key).or_default();
            if !line.contains(&seq) {
                line.push(seq);
            }
        }
    }
    assert_eq!(firsts.len(), 10);
    for (key, line) in firsts {
        assert_eq!(line.len(), 30, "{key}");
        let mut sorted = line.clone();
        sorted.sort_unstable();
        assert_eq!(line, sorted, "key {key}: out of order across the kill");
    }
}

/// Two nodes on one PostgreSQL database, both ingesting and both delivering one ordered
/// subscriber: per key, one request at a time and first successes in acceptance order, across
/// the nodes (the line is in the database, not in either process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_two_nodes_on_postgres() {
    let db = TestDb::create().await;
    let rx = Receiver::start_with(Mode::Flaky {
        p_500: 0.3,
        delay: Duration::from_millis(3),
    })
    .await;
    let config = Config::default()
        .sub(ordered_sub("ordered", &rx))
        .postgres(&db.url, Some("node-a"));
    let a = Herald::start(config.clone()).await;
    let b = Herald::start(config.another_node("node-b")).await;
    // 16 keys × 15 events, in batches of 20 alternating between the nodes: acceptance order is
    // seq order (each batch is acknowledged before the next is sent).
    for (i, from) in (0..240).step_by(20).enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        post_keyed(node, from, 20, 16, 20).await;
    }
    wait_for(Duration::from_secs(90), "240 delivered", || async {
        (rx.succeeded().len() >= 240).then_some(())
    })
    .await;
    let answers = rx.answers();
    let failed = answers.iter().filter(|a| a.1 >= 500).count();
    println!("{} requests, {failed} failed", answers.len());
    assert!(failed > 20, "too few failures to test anything");
    check_keys(&answers, 16, 15);
    // Both nodes were members of the cluster throughout.
    let (_, cluster) = a.get("/v1/cluster").await;
    assert_eq!(
        cluster["nodes"].as_array().map(Vec::len),
        Some(2),
        "{cluster}"
    );
    a.assert_no_panic();
    b.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_key_is_validated_and_shown() {
    let rx = Receiver::start_with(Mode::Status(200)).await;
    let h = Herald::start(Config::default().sub(ordered_sub("ordered", &rx))).await;
    for bad in [json!(""), json!("x".repeat(257)), json!(42), json!(["a"])] {
        let (status, body) = h
            .post(
                "/v1/events",
                &json!({"event_type": "T", "payload": {}, "ordering_key": bad}),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_error_body(&body, "bad ordering_key");
        assert_eq!(body["error"], "bad_request", "{body}");
    }
    let (status, body) = h
        .post(
            "/v1/events/batch",
            &json!({"events": [
                {"event_type": "T", "payload": {}, "ordering_key": 7},
                {"event_type": "T", "payload": {}, "ordering_key": "x".repeat(256)},
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["results"][0]["error"], "bad_request", "{body}");
    let id = body["results"][1]["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = h
        .wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(d["ordering_key"], json!("x".repeat(256)), "{d}");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("herald_ordering_blocked_keys{subscriber=\"ordered\"} 0"),
        "{metrics}"
    );
}
