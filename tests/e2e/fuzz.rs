//! Randomised bad input against the real ingest API: byte-level mutations of valid requests,
//! random bytes, deep nesting, huge numbers, odd unicode. Every answer must be a well-formed
//! JSON `202` or a JSON error with `error` and `message` (400, 404 or 413), the daemon must stay
//! up, and it must never panic. The seed is printed so a failure can be replayed.

use serde_json::{json, Value};

use crate::harness::{Config, Herald, Receiver, Rng, Sub};

/// A valid request to mutate.
fn seed_body(rng: &mut Rng) -> Vec<u8> {
    let event = json!({
        "event_type": "PROCESS_STATE_FINISHED",
        "subscriber": if rng.unit() < 0.5 { json!("a") } else { json!(null) },
        "payload": {"processId": "8263a268", "n": 1.5e3, "ok": true, "list": [1, "二", null]},
        "idempotency_key": format!("k-{}", rng.next_u64() % 50),
    });
    if rng.unit() < 0.3 {
        serde_json::to_vec(&json!({"events": [event.clone(), event]})).unwrap()
    } else {
        serde_json::to_vec(&event).unwrap()
    }
}

const SPICE: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"\0",
    b"\r\n",
    b"1e999999",
    b"-0",
    b"99999999999999999999999999",
    b"null",
    b"\"payload\"",
    b"\"event_type\"",
    b"\"subscriber\":\"../x\"",
    b"\xf0\x9f\x92\xa9",
];

fn mutate(rng: &mut Rng, mut body: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.range(1, 6) {
        let at = rng.range(0, body.len() as u64 + 1) as usize;
        match rng.range(0, 4) {
            0 if !body.is_empty() => {
                let end = (at + rng.range(1, 8) as usize).min(body.len());
                body.drain(at.min(body.len())..end);
            }
            1 => {
                let spice = SPICE[rng.range(0, SPICE.len() as u64) as usize];
                body.splice(at..at, spice.iter().copied());
            }
            2 => body.insert(at, rng.next_u64() as u8),
            _ => {
                if let Some(b) = body.get_mut(at) {
                    *b ^= 1 << rng.range(0, 8);
                }
            }
        }
    }
    body
}

fn special(rng: &mut Rng) -> Vec<u8> {
    match rng.range(0, 4) {
        0 => (0..rng.range(0, 512))
            .map(|_| rng.next_u64() as u8)
            .collect(),
        1 => {
            let depth = rng.range(100, 5000) as usize;
            format!(
                r#"{{"event_type":"X","payload":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes()
        }
        2 => format!(
            r#"{{"event_type":"{}","payload":{{}}}}"#,
            "E".repeat(rng.range(200, 400) as usize)
        )
        .into_bytes(),
        _ => br#"{"event_type":"X","payload":{},"payload":{}}"#.to_vec(),
    }
}

fn check_answer(status: u16, body: &Value, sent: &[u8]) {
    let shown = String::from_utf8_lossy(sent);
    // Whatever else it does, ingest never accepts a body that is not JSON at all.
    if serde_json::from_slice::<serde::de::IgnoredAny>(sent).is_err() {
        assert_ne!(status, 202, "accepted a body that is not JSON: {shown:?}");
    }
    match status {
        202 => assert!(
            body.get("event_id").is_some() || body.get("results").is_some(),
            "202 without a receipt for {shown:?}: {body}"
        ),
        400 | 404 | 413 => {
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{status} without a JSON error for {shown:?}: {body}"
            );
        }
        other => panic!("unexpected status {other} for {shown:?}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_requests_never_break_ingest() {
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .max_payload(64 * 1024)
            .sub(Sub::new("a", &rx.url("/a"))),
    )
    .await;
    let mut rng = Rng::seeded();
    eprintln!("fuzz seed state: {:?}", rng);
    let mut accepted = 0;
    for i in 0..600 {
        let body = if i % 5 == 4 {
            special(&mut rng)
        } else {
            let seed = seed_body(&mut rng);
            mutate(&mut rng, seed)
        };
        let path = if rng.unit() < 0.5 {
            "/v1/events"
        } else {
            "/v1/events/batch"
        };
        let (status, answer) = h.post_raw(path, body.clone()).await;
        check_answer(status, &answer, &body);
        if status == 202 {
            accepted += 1;
        }
    }
    let (status, _) = h.get("/healthz").await;
    assert_eq!(status, 200);
    // The daemon still ingests and delivers normally afterwards.
    let receipt = h
        .ingest(&json!({"event_type": "AFTER", "payload": {"still": "fine"}}))
        .await;
    let id = receipt["deliveries"][0]["id"].as_str().unwrap().to_owned();
    crate::harness::wait_for(std::time::Duration::from_secs(10), "the delivery", || {
        let done = rx.succeeded().contains(&id);
        async move { done.then_some(()) }
    })
    .await;
    h.assert_no_panic();
    eprintln!("fuzz: 600 requests, {accepted} accepted, every other one a JSON 4xx");
}
