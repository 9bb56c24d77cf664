//! What goes on the wire: the protocol headers, static headers, the exact body, keep-alive.

use herald_core::{DeliveryId, UnixMillis};
use herald_delivery::{AttemptRequest, Verdict};

use crate::support::*;

#[tokio::test]
async fn sends_protocol_headers_and_static_headers() {
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/hooks/acme"));
    cfg.headers = vec![
        ("X-Tenant".to_owned(), "acme".to_owned()),
        // Protocol headers win over a static one with the same name.
        ("Content-Type".to_owned(), "text/plain".to_owned()),
    ];
    let endpoint = endpoint(&cfg);
    let id = DeliveryId::generate();
    let before = UnixMillis::now().as_secs();
    let result = endpoint
        .attempt(AttemptRequest {
            delivery_id: id,
            attempt: 3,
            payload: bytes::Bytes::from_static(PAYLOAD),
            traceparent: None,
        })
        .await;
    let after = UnixMillis::now().as_secs();

    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    assert_eq!(result.status_code, Some(204));
    assert_eq!(result.error, None);
    let seen = receiver.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/acme");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.headers.get_all("content-type").iter().count(), 1);
    assert_eq!(r.header("user-agent"), herald_core::USER_AGENT);
    assert!(r.header("user-agent").starts_with("herald/"));
    assert_eq!(r.header("webhook-id"), id.to_string());
    assert_eq!(r.header("webhook-attempt"), "3");
    let ts: u64 = r.header("webhook-timestamp").parse().unwrap();
    assert!(before <= ts && ts <= after, "{before} <= {ts} <= {after}");
    assert_eq!(ts, result.started_at.as_secs());
    assert_eq!(r.header("x-tenant"), "acme");
    assert!(r.headers.get("authorization").is_none());
    assert!(r.headers.get("webhook-signature").is_none());
}

#[tokio::test]
async fn webhook_id_is_stable_and_attempt_counts_across_retries() {
    let receiver = Receiver::ok().await;
    let endpoint = endpoint(&subscriber(receiver.url("/")));
    let id = DeliveryId::generate();
    for attempt in 1..=3 {
        endpoint
            .attempt(AttemptRequest {
                delivery_id: id,
                attempt,
                payload: bytes::Bytes::from_static(PAYLOAD),
                traceparent: None,
            })
            .await;
    }
    let seen = receiver.requests();
    let ids: Vec<&str> = seen.iter().map(|r| r.header("webhook-id")).collect();
    let attempts: Vec<&str> = seen.iter().map(|r| r.header("webhook-attempt")).collect();
    assert_eq!(ids, vec![id.to_string().as_str(); 3]);
    assert_eq!(attempts, ["1", "2", "3"]);
}

#[tokio::test]
async fn payload_arrives_byte_for_byte() {
    const ODD: &[u8] = "{ \"a\" :\t\"h\u{e9}llo \u{2713} \u{1f980}\" ,\r\n  \"b\":[1 , 2.50, -0e0],\"esc\":\"\\u00e9\\n\"   }\n\n"
        .as_bytes();
    let receiver = Receiver::ok().await;
    let endpoint = endpoint(&subscriber(receiver.url("/")));
    let result = endpoint.attempt(request(1, ODD)).await;
    assert_eq!(result.verdict, Verdict::Success);
    assert_eq!(receiver.requests()[0].body.as_ref(), ODD);
}

#[tokio::test]
async fn sequential_attempts_reuse_one_keep_alive_connection() {
    let receiver = Receiver::ok().await;
    let endpoint = endpoint(&subscriber(receiver.url("/")));
    for _ in 0..20 {
        let result = endpoint.attempt(request(1, PAYLOAD)).await;
        assert_eq!(result.verdict, Verdict::Success);
    }
    let peers: std::collections::HashSet<_> = receiver.requests().iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
}
