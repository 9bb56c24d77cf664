//! A flapping receiver (500s, dropped connections, answers slower than the timeout), then
//! healthy: every delivery ends delivered or dead, none stuck, and Herald's delivered count
//! matches what the receiver acknowledged.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{metric_sum, wait_for, Config, Herald, Mode, Receiver, Sub};

const EVENTS: usize = 300;
const MAX_ATTEMPTS: usize = 4;

async fn ids_with_status(h: &Herald, status: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let (code, page) = h
            .get(&format!(
                "/v1/deliveries?subscriber=f&status={status}&limit=1000&cursor={cursor}"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        for d in page["deliveries"].as_array().unwrap() {
            ids.insert(d["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => c.clone_into(&mut cursor),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_receiver_ends_delivered_or_dead() {
    let rx = Receiver::start_with(Mode::Flap {
        p_500: 0.3,
        p_drop: 0.2,
        p_slow: 0.15,
        slow: Duration::from_millis(1500),
    })
    .await;
    let h = Herald::start(
        Config::default().sub(
            Sub::new("f", &rx.url("/f"))
                .timeout("400ms")
                .max_in_flight(20)
                .attempts(MAX_ATTEMPTS as u32)
                .intervals("100ms", "800ms"),
        ),
    )
    .await;
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| json!({"event_type": "X", "payload": {"n": n}}))
        .collect();
    let (status, body) = h
        .post("/v1/events/batch", &json!({ "events": events }))
        .await;
    assert_eq!(status, 202);
    let ids: HashSet<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deliveries"][0]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), EVENTS);

    // Flap for three seconds (the scenario's length, not a synchronisation) and until a good
    // share of the attempts have failed one way or another, then heal.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for(
        Duration::from_secs(15),
        "a few seconds of flapping",
        || async { (rx.request_count() >= 150).then_some(()) },
    )
    .await;
    rx.set(Mode::Status(200));

    let view = wait_for(
        Duration::from_secs(60),
        "every delivery finished",
        || async {
            let s = h.subscriber("f").await;
            (s["queued"] == 0 && s["in_flight"] == 0).then_some(s)
        },
    )
    .await;
    let delivered = ids_with_status(&h, "delivered").await;
    let dead = ids_with_status(&h, "dead").await;
    assert_eq!(delivered.len() + dead.len(), EVENTS, "{view}");
    assert!(delivered.is_disjoint(&dead));
    assert!(ids_with_status(&h, "pending").await.is_empty());
    assert!(ids_with_status(&h, "in_flight").await.is_empty());

    // Herald's count equals the receiver's distinct acknowledged ids (no kills here, so no
    // duplicates: an id acknowledged by the receiver is delivered, never dead).
    let acked = rx.succeeded();
    assert_eq!(
        acked, delivered,
        "receiver 2xx ids vs Herald's delivered ids"
    );
    let metrics = h.metrics().await;
    let counted = metric_sum(
        &metrics,
        "herald_deliveries_total",
        &["subscriber=\"f\"", "outcome=\"delivered\""],
    );
    assert_eq!(counted, Some(acked.len() as f64), "{metrics}");
    for id in &ids {
        let n = rx.count_of(id);
        assert!(
            (1..=MAX_ATTEMPTS).contains(&n),
            "{id}: {n} requests, max_attempts = {MAX_ATTEMPTS}"
        );
    }
    let failures = rx.request_count() - acked.len();
    println!(
        "flapping: {} delivered, {} dead, {} requests, {failures} failed attempts, receiver peak concurrency {} (counts abandoned slow requests too)",
        delivered.len(),
        dead.len(),
        rx.request_count(),
        rx.max_in_flight()
    );
    h.assert_no_panic();
}
