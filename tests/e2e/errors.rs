//! SPEC §3 errors: JSON `{"error", "message"}` with the right status, and nothing created.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{assert_error_body, Config, Herald, Receiver, Sub};

const TOKEN: &str = "e2e-token-4c1f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_errors_are_json_and_change_nothing() {
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .token(TOKEN)
            .max_payload(4096)
            .sub(Sub::new("a", &rx.url("/a")))
            .sub(Sub::new("idem", &rx.url("/idem")).events(&["IDEM"])),
    )
    .await;

    // 401: missing and wrong bearer on /v1/* and /metrics; /healthz stays open.
    let ev = json!({"event_type": "X", "payload": {}});
    for (path, token) in [
        ("/v1/events", None),
        ("/v1/events", Some("wrong")),
        ("/v1/subscribers", None),
        ("/metrics", None),
        ("/metrics", Some("wrong")),
    ] {
        let mut req = if path == "/v1/events" {
            h.http.post(h.url(path)).json(&ev)
        } else {
            h.http.get(h.url(path))
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401, "{path} with {token:?}");
        let body: Value = res.json().await.unwrap();
        assert_error_body(&body, path);
    }
    let res = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "/healthz must not need the token"
    );
    let (status, _) = h.get_text("/metrics").await;
    assert_eq!(status, 200, "/metrics with the right token");

    // 400: malformed JSON, missing field, unknown field, wrong type.
    for (what, body) in [
        (
            "malformed",
            r#"{"event_type": "X", "payload": {"#.to_owned(),
        ),
        ("not json", "hello".to_owned()),
        ("empty", String::new()),
        ("missing event_type", r#"{"payload": {}}"#.to_owned()),
        ("missing payload", r#"{"event_type": "X"}"#.to_owned()),
        (
            "unknown field",
            r#"{"event_type": "X", "payload": {}, "colour": "red"}"#.to_owned(),
        ),
        (
            "wrong type",
            r#"{"event_type": 7, "payload": {}}"#.to_owned(),
        ),
    ] {
        let (status, body) = h.post_raw("/v1/events", body).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_error_body(&body, what);
    }

    // 404 unknown subscriber.
    let (status, body) = h
        .post(
            "/v1/events",
            &json!({"event_type": "X", "subscriber": "nobody", "payload": {}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_error_body(&body, "unknown subscriber");

    // 413: a payload over max_payload_bytes, and a body far over any limit.
    let big = format!(
        r#"{{"event_type": "X", "payload": {{"s": "{}"}}}}"#,
        "x".repeat(5000)
    );
    let (status, body) = h.post_raw("/v1/events", big).await;
    assert_eq!(status, 413, "{body}");
    assert_error_body(&body, "oversize payload");
    let huge = format!(
        r#"{{"event_type": "X", "payload": {{"s": "{}"}}}}"#,
        "x".repeat(300_000)
    );
    let (status, body) = h.post_raw("/v1/events", huge.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert_error_body(&body, "oversize body");
    // The refused body is never read, so the answer must close the connection; otherwise a
    // keep-alive client sends its next request into a socket the server is closing.
    let res = reqwest::Client::new()
        .post(h.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );

    // Nothing of the above was stored.
    let a = h.subscriber("a").await;
    assert_eq!(
        a["queued"].as_u64().unwrap() + a["delivered"].as_u64().unwrap(),
        0,
        "{a}"
    );

    // Batch: more than 1000 is a 400, also when the 1001 events' body is larger than
    // 16 × max_payload_bytes (64 KiB here): the batch body limit has a floor, so the count is
    // what gets refused, not the size.
    for filler in ["", &"f".repeat(100)] {
        let events: Vec<Value> = (0..1001)
            .map(|_| json!({"event_type": "X", "payload": {"filler": filler}}))
            .collect();
        let (status, body) = h
            .post("/v1/events/batch", &json!({ "events": events }))
            .await;
        assert_eq!(status, 400, "filler of {} bytes: {body}", filler.len());
        assert_error_body(&body, "batch of 1001");
    }
    // Batch: one unknown subscriber fails its own item only; results keep the order.
    let (status, body) = h
        .post(
            "/v1/events/batch",
            &json!({"events": [
                {"event_type": "X", "subscriber": "a", "payload": {"n": 0}},
                {"event_type": "X", "subscriber": "nobody", "payload": {"n": 1}},
                {"event_type": "X", "subscriber": "a", "payload": {"n": 2}},
                {"event_type": "X", "subscriber": "a", "payload": {"n": 3}, "bogus": true},
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "{body}");
    assert_error_body(&results[1], "batch item 1");
    assert_error_body(&results[3], "batch item 3");
    assert!(results[1].get("event_id").is_none());
    for (i, n) in [(0, 0), (2, 2)] {
        let id = results[i]["deliveries"][0]["id"].as_str().expect("id");
        let req = crate::harness::wait_for(Duration::from_secs(10), "batch item", || async {
            rx.requests().into_iter().find(|r| r.webhook_id() == id)
        })
        .await;
        assert_eq!(
            &req.body[..],
            json!({ "n": n }).to_string().as_bytes(),
            "result {i} belongs to another event"
        );
    }

    // Idempotency: the same key again answers the first receipt and creates nothing.
    let ev = json!({"event_type": "IDEM", "payload": {"k": 1}, "idempotency_key": "key-1"});
    let first = h.ingest(&ev).await;
    let again = h.ingest(&ev).await;
    assert_eq!(
        first, again,
        "a repeated idempotency_key must answer the first receipt"
    );
    let id = first["deliveries"][0]["id"].as_str().unwrap().to_owned();
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    let idem = h.subscriber("idem").await;
    assert_eq!(idem["delivered"], 1, "{idem}");
    assert_eq!(idem["queued"], 0, "{idem}");
    assert_eq!(rx.requests_to("/idem").len(), 1);

    // Bad input elsewhere: odd ids, queries and bodies are errors, never crashes.
    for path in [
        "/v1/deliveries/not-an-id",
        "/v1/deliveries/00000000-0000-7000-8000-000000000000",
        "/v1/deliveries?limit=0",
        "/v1/deliveries?limit=abc",
        "/v1/deliveries?status=sleeping",
        "/v1/deliveries?cursor=%00%ff",
        "/v1/deliveries?subscriber=a%2Fb",
        "/v1/subscribers/nobody",
        "/v1/nothing-here",
    ] {
        let (status, body) = h.get(path).await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert_error_body(&body, path);
    }
    for (path, body) in [
        ("/v1/subscribers/a/pause", "{not json"),
        ("/v1/subscribers/nobody/pause", ""),
        ("/v1/deliveries/xyz/retry", ""),
        ("/v1/events/batch", r#"{"events": 5}"#),
        ("/v1/events/batch", r#"[1,2,3]"#),
        ("/v1/events", "\u{0}\u{1}\u{2}"),
        ("/v1/events", &"[".repeat(10_000)),
    ] {
        let (status, answer) = h.post_raw(path, body.to_owned()).await;
        assert!((400..500).contains(&status), "{path}: {status} {answer}");
        assert_error_body(&answer, path);
    }
    let (status, answer) = h
        .post_raw("/v1/events", vec![0xffu8, 0xfe, b'{', b'}'])
        .await;
    assert_eq!(status, 400, "invalid UTF-8: {answer}");
    assert_eq!(h.subscriber("a").await["paused"], false);
    h.assert_no_panic();
}
