//! Ingest → delivered: exact bytes, headers, signature, the delivery view, fan-out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::{receipt_ids, wait_for, Config, Herald, Receiver, Sub};

const SECRET_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// An RFC 3339 timestamp such as `2021-02-25T15:02:10.123Z` (shape check, no time crate).
fn looks_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'))
        && s[..4].parse::<u32>().is_ok_and(|y| y >= 2024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_bytes_headers_and_fan_out() {
    payload_bytes_headers_and_fan_out_on(Config::default()).await;
}

/// The same on PostgreSQL (the engine is a parameter of the harness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_bytes_headers_and_fan_out_on_postgres() {
    let db = crate::harness::TestDb::create().await;
    payload_bytes_headers_and_fan_out_on(Config::default().postgres(&db.url, None)).await;
}

async fn payload_bytes_headers_and_fan_out_on(base: Config) {
    let rx = Receiver::start_with(crate::harness::Mode::Status(204)).await;
    let h = Herald::start(
        base.sub(
            Sub::new("a", &rx.url("/a"))
                .events(&["ORDER_CREATED"])
                .extra(&format!(
                    "[signing]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_{SECRET_B64}\"\n"
                )),
        )
        .sub(Sub::new("b", &rx.url("/b")).events(&["*"]))
        .sub(Sub::new("c", &rx.url("/c")).events(&["OTHER", "ORDER_DELETED"])),
    )
    .await;

    // Odd whitespace, unicode (raw and escaped), key order, number formatting: all kept.
    let payload = "{ \"z\" : 1,\"a\":[ 1.50 , \"\u{fc}\\u00e9 \u{2603}\" ],\n\t\"nested\":{\"k\":null ,\"big\":12345678901234567890} }";
    let body = format!("{{\"event_type\":\"ORDER_CREATED\",\"payload\":{payload}}}");
    let (status, receipt) = h.post_raw("/v1/events", body).await;
    assert_eq!(status, 202, "{receipt}");
    assert!(receipt["event_id"].as_str().is_some_and(|s| !s.is_empty()));
    let mut ids = receipt_ids(&receipt);
    ids.sort();
    let subs: Vec<&str> = ids.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subs, ["a", "b"], "fan-out went to {receipt}");

    for (sub, id) in &ids {
        let path = format!("/{sub}");
        let req = wait_for(
            Duration::from_secs(10),
            "the delivery to arrive",
            || async { rx.requests_to(&path).into_iter().next() },
        )
        .await;
        assert_eq!(&req.body[..], payload.as_bytes(), "payload bytes changed");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(
            req.header("user-agent"),
            Some(format!("herald/{}", env!("CARGO_PKG_VERSION")).as_str())
        );
        assert_eq!(req.header("webhook-id"), Some(id.as_str()));
        assert_eq!(req.header("webhook-attempt"), Some("1"));
        let ts: u64 = req
            .header("webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .expect("numeric webhook-timestamp");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(ts.abs_diff(now) < 60, "webhook-timestamp {ts} vs now {now}");

        if sub == "a" {
            let key = base64::engine::general_purpose::STANDARD
                .decode(SECRET_B64)
                .unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(format!("{id}.{ts}.").as_bytes());
            mac.update(&req.body);
            let want = format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            );
            let got = req.header("webhook-signature").expect("webhook-signature");
            assert!(
                got.split(' ').any(|s| s == want),
                "signature {got} != {want}"
            );
        } else {
            assert!(req.header("webhook-signature").is_none());
        }

        let view = h
            .wait_delivery(id, "delivered", Duration::from_secs(10))
            .await;
        assert_eq!(view["id"], id.as_str());
        assert_eq!(view["subscriber"], sub.as_str());
        assert_eq!(view["event_type"], "ORDER_CREATED");
        assert_eq!(view["event_id"], receipt["event_id"]);
        let attempts = view["attempts"].as_array().expect("attempts list");
        assert_eq!(attempts.len(), 1, "{view}");
        let a = &attempts[0];
        assert_eq!(a["attempt"], 1);
        assert!(
            a["at"].as_str().is_some_and(looks_rfc3339),
            "attempt time {} is not RFC 3339",
            a["at"]
        );
        assert_eq!(a["status_code"], 204);
        assert_eq!(a["error"], Value::Null);
        assert!(a["duration_ms"].is_u64(), "{a}");
    }

    // Nothing was created for "c" (its events do not match); an explicit OTHER event reaches it.
    let other = h
        .ingest(&serde_json::json!({"event_type": "OTHER", "payload": {"n": 2}}))
        .await;
    let other_ids = receipt_ids(&other);
    let mut other_subs: Vec<&str> = other_ids.iter().map(|(s, _)| s.as_str()).collect();
    other_subs.sort_unstable();
    assert_eq!(other_subs, ["b", "c"], "{other}");
    for (_, id) in &other_ids {
        h.wait_delivery(id, "delivered", Duration::from_secs(10))
            .await;
    }
    let c = h.subscriber("c").await;
    assert_eq!(c["delivered"], 1, "c got something not meant for it: {c}");
    assert_eq!(c["queued"], 0, "{c}");
    assert_eq!(rx.requests_to("/c").len(), 1);
    assert_eq!(rx.requests_to("/a").len(), 1, "a got OTHER");
    let b = h.subscriber("b").await;
    assert_eq!(b["delivered"], 2, "{b}");
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_caps_concurrent_requests() {
    let rx =
        Receiver::start_with(crate::harness::Mode::Delay(Duration::from_millis(150), 200)).await;
    let h = Herald::start(
        Config::default()
            .sub(Sub::new("capped", &rx.url("/capped")).max_in_flight(4))
            .sub(Sub::new("fast", &rx.url("/fast")).events(&["FAST"])),
    )
    .await;
    let events: Vec<Value> = (0..40)
        .map(
            |n| serde_json::json!({"event_type": "X", "subscriber": "capped", "payload": {"n": n}}),
        )
        .collect();
    let (status, body) = h
        .post("/v1/events/batch", &serde_json::json!({ "events": events }))
        .await;
    assert_eq!(status, 202, "{body}");
    wait_for(Duration::from_secs(20), "40 deliveries", || async {
        (h.subscriber("capped").await["delivered"] == 40).then_some(())
    })
    .await;
    assert_eq!(
        rx.max_in_flight(),
        4,
        "max_in_flight = 4 not used or exceeded"
    );
    h.assert_no_panic();
}

/// Sends `head` then `body` on a raw TCP connection, half-closes it (the client sends nothing
/// more), and returns what the daemon answered.
async fn raw_exchange(h: &Herald, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The daemon may answer and stop reading before an oversized body is all sent.
    if stream.write_all(body).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    // A reset after the answer is fine: what was read is kept.
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Only a body larger than the limit is 413; a body that breaks off (shorter than its
/// Content-Length, then the client stops) or malformed chunked encoding is 400 `bad_request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_is_400_and_only_an_oversized_one_is_413() {
    let rx = Receiver::start().await;
    let h = Herald::start(Config::default().sub(Sub::new("a", &rx.url("/a")))).await;
    let event = br#"{"event_type":"X","payload":{"n":1}}"#;

    let short = raw_exchange(
        &h,
        &format!(
            "POST /v1/events HTTP/1.1\r\nHost: herald\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            event.len() + 100
        ),
        event,
    )
    .await;
    assert!(short.starts_with("HTTP/1.1 400"), "{short}");
    assert!(short.contains("\"bad_request\""), "{short}");

    let bad_chunk = raw_exchange(
        &h,
        "POST /v1/events HTTP/1.1\r\nHost: herald\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n",
        b"zz\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert!(bad_chunk.starts_with("HTTP/1.1 400"), "{bad_chunk}");
    assert!(bad_chunk.contains("\"bad_request\""), "{bad_chunk}");

    // A chunked body (no Content-Length to refuse early) over the limit is still 413.
    let big = vec![b' '; 2 << 20];
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let oversized = raw_exchange(
        &h,
        "POST /v1/events HTTP/1.1\r\nHost: herald\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n",
        &chunked,
    )
    .await;
    assert!(oversized.starts_with("HTTP/1.1 413"), "{oversized}");

    // The daemon still takes events, and nothing was stored from the broken requests.
    let (status, _) = h
        .post(
            "/v1/events",
            &serde_json::json!({"event_type": "X", "payload": {}}),
        )
        .await;
    assert_eq!(status, 202);
    h.assert_no_panic();
}
