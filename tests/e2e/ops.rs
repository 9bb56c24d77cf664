//! Operating Herald (SPEC §10): event lookup, replay of a time window after an outage, the
//! stuck-queue signal and trace context on every attempt, through the real binary.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{metric_sum, receipt_ids, wait_for, Config, Herald, Mode, Receiver, Sub};

/// A payload with spacing and a number form that re-serialisation would change.
const ODD_PAYLOAD: &str = r#"{"b": 1,  "a":[1.50, 1e2], "s":"\u00e9"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_answer_the_payload_as_stored_with_their_deliveries() {
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .sub(Sub::new("a", &rx.url("/a")))
            .sub(Sub::new("b", &rx.url("/b")).events(&["other"])),
    )
    .await;
    let body =
        format!(r#"{{"event_type":"order.paid","payload":{ODD_PAYLOAD},"idempotency_key":"k-1"}}"#);
    let (status, receipt) = h.post_raw("/v1/events", body).await;
    assert_eq!(status, 202, "{receipt}");
    let event_id = receipt["event_id"].as_str().unwrap().to_owned();
    let (_, delivery) = receipt_ids(&receipt).pop().unwrap();
    h.wait_delivery(&delivery, "delivered", Duration::from_secs(10))
        .await;

    let (status, text) = h.get_text(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!(r#""payload":{ODD_PAYLOAD}"#)),
        "payload not byte for byte: {text}"
    );
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["event_type"], "order.paid");
    assert_eq!(event["idempotency_key"], "k-1");
    assert_eq!(event["ordering_key"], Value::Null);
    assert!(event["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        event["deliveries"],
        json!([{"id": delivery, "subscriber": "a", "status": "delivered"}])
    );

    // Unknown ids (well-formed or not) are 404.
    let (status, body) = h
        .get("/v1/events/0192f0c4-0000-7000-8000-000000000000")
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(h.get("/v1/events/nope").await.0, 404);

    // A page: more events, listed in id order, paged by cursor, filtered by type and window.
    for i in 0..3 {
        h.ingest(&json!({"event_type": "other", "payload": {"i": i}}))
            .await;
    }
    let (status, page) = h.get("/v1/events?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let first: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], event_id);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = h
        .get(&format!("/v1/events?limit=1000&cursor={cursor}"))
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 2, "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, others) = h.get("/v1/events?event_type=other").await;
    assert_eq!(others["events"].as_array().unwrap().len(), 3, "{others}");
    assert_eq!(others["events"][0]["payload"], json!({"i": 0}));
    let (_, none) = h.get("/v1/events?until=2000-01-01T00:00:00Z").await;
    assert_eq!(none["events"], json!([]));
    let (_, all) = h.get("/v1/events?since=2000-01-01T00:00:00Z").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 4);

    for bad in [
        "since=yesterday",
        "until=12",
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=nope",
    ] {
        let (status, body) = h.get(&format!("/v1/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request", "{bad}");
    }

    // CLI.
    let out = h.cli(&["-o", "json", "events", "get", &event_id]).await;
    assert!(out.status.success(), "{out:?}");
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["deliveries"][0]["id"], delivery.as_str());
    let out = h
        .cli(&[
            "-o",
            "json",
            "events",
            "list",
            "--since",
            "1h",
            "--event-type",
            "other",
            "--limit",
            "2",
        ])
        .await;
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["events"].as_array().unwrap().len(), 2, "{listed}");
    assert!(listed["next_cursor"].is_string());
    // For people: a header and one row per event; the next page's hint on stderr.
    let out = h
        .cli(&[
            "events",
            "list",
            "--since",
            "1h",
            "--event-type",
            "other",
            "--limit",
            "2",
        ])
        .await;
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" other ")).count(),
        2,
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cursor"),
        "{out:?}"
    );
    let out = h.cli(&["events", "list", "--since", "soon"]).await;
    assert!(!out.status.success());
    h.assert_no_panic();
}

async fn wait_all(h: &Herald, ids: &[String], want: &str) -> Vec<Value> {
    let mut views = Vec::new();
    for id in ids {
        views.push(h.wait_delivery(id, want, Duration::from_secs(20)).await);
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_an_outage_delivers_the_window_with_a_fresh_budget() {
    let rx = Receiver::start_with(Mode::Status(500)).await;
    let h = Herald::start(
        Config::default()
            .sub(
                Sub::new("acme", &rx.url("/acme"))
                    .attempts(2)
                    .intervals("50ms", "100ms"),
            )
            .sub(Sub::new("other", &rx.url("/other")).events(&["none"])),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let receipt = h
            .ingest(&json!({"event_type": "e", "payload": {"i": i}}))
            .await;
        ids.extend(receipt_ids(&receipt).into_iter().map(|(_, id)| id));
    }
    // The outage: every delivery dies after its 2 attempts.
    wait_all(&h, &ids, "dead").await;

    // A dry run counts and changes nothing.
    let since = "2000-01-01T00:00:00Z";
    let (status, dry) = h
        .post(
            "/v1/subscribers/acme/replay",
            &json!({"since": since, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        dry,
        json!({"subscriber": "acme", "matched": 3, "replayed": 0})
    );
    assert_eq!(h.delivery_status(&ids[0]).await, "dead");
    // Another window, another type, another status: nothing matches.
    let (_, empty) = h
        .post(
            "/v1/subscribers/acme/replay",
            &json!({"since": since, "until": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(empty["matched"], 0, "{empty}");
    let (_, empty) = h
        .post(
            "/v1/subscribers/acme/replay",
            &json!({"since": since, "event_types": ["x"]}),
        )
        .await;
    assert_eq!(empty["matched"], 0, "{empty}");
    let (_, empty) = h
        .post(
            "/v1/subscribers/acme/replay",
            &json!({"since": since, "status": ["delivered"]}),
        )
        .await;
    assert_eq!(empty["matched"], 0, "{empty}");

    // Still failing: a replay gives a fresh budget of 2 attempts (attempts 3 and 4), not 0.
    let (status, res) = h
        .post("/v1/subscribers/acme/replay", &json!({"since": since}))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["replayed"], 3, "{res}");
    for view in wait_all(&h, &ids, "dead").await {
        // The status may read dead before the 4th attempt only if the budget were not fresh.
        assert_eq!(view["attempts"].as_array().unwrap().len(), 4, "{view}");
    }

    // The receiver heals; the CLI replays the last hour.
    rx.set(Mode::Status(200));
    let out = h
        .cli(&["-o", "json", "replay", "acme", "--since", "1h"])
        .await;
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer,
        json!({"subscriber": "acme", "matched": 3, "replayed": 3})
    );
    for view in wait_all(&h, &ids, "delivered").await {
        let attempts = view["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 5, "history kept: {view}");
        assert_eq!(attempts[4]["status_code"], 200);
    }
    // Same webhook-id on every attempt, before and after the replays.
    let succeeded = rx.succeeded();
    for id in &ids {
        assert!(
            succeeded.contains(id),
            "{id} not delivered under its own id"
        );
        assert_eq!(rx.count_of(id), 5);
    }
    let metrics = h.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "herald_replayed_total", &["subscriber=\"acme\""]),
        Some(6.0),
        "{metrics}"
    );

    // Errors: unknown subscriber 404, bad bodies 400.
    let (status, body) = h
        .post("/v1/subscribers/nobody/replay", &json!({"since": since}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_subscriber"))
    );
    for bad in [
        json!({}),
        json!({"since": "yesterday"}),
        json!({"since": since, "status": ["pending"]}),
        json!({"since": since, "surprise": 1}),
    ] {
        let (status, body) = h.post("/v1/subscribers/acme/replay", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_queue_shows_its_oldest_pending_age() {
    let rx = Receiver::start().await;
    let h = Herald::start(Config::default().sub(Sub::new("acme", &rx.url("/acme")))).await;
    assert_eq!(h.subscriber("acme").await["oldest_pending_seconds"], 0.0);
    let (status, _) = h.post_empty("/v1/subscribers/acme/pause").await;
    assert_eq!(status, 200);
    let receipt = h.ingest(&json!({"event_type": "e", "payload": {}})).await;
    let (_, id) = receipt_ids(&receipt).pop().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let age = h.subscriber("acme").await["oldest_pending_seconds"]
        .as_f64()
        .unwrap();
    assert!(age >= 1.4, "age {age}");
    let metrics = h.metrics().await;
    let gauge = metric_sum(
        &metrics,
        "herald_oldest_pending_seconds",
        &["subscriber=\"acme\""],
    )
    .unwrap();
    assert!(gauge >= 1.4, "{metrics}");
    // Resumed, the delivery goes out and the age falls back to 0.
    h.post_empty("/v1/subscribers/acme/resume").await;
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    wait_for(Duration::from_secs(5), "age back to 0", || async {
        (h.subscriber("acme").await["oldest_pending_seconds"] == 0.0).then_some(())
    })
    .await;
}

async fn ingest_with_traceparent(h: &Herald, traceparent: Option<&str>) -> String {
    let mut req = h
        .http
        .post(h.url("/v1/events"))
        .header("content-type", "application/json");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let res = req
        .body(json!({"event_type": "e", "payload": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let receipt: Value = res.json().await.unwrap();
    receipt_ids(&receipt).pop().unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_continues_the_ingest_trace_with_its_own_span() {
    let rx = Receiver::start_with(Mode::Status(500)).await;
    let h = Herald::start(
        Config::default().sub(
            Sub::new("acme", &rx.url("/acme"))
                .attempts(3)
                .intervals("50ms", "100ms"),
        ),
    )
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traced = ingest_with_traceparent(&h, Some(&format!("00-{trace}-{parent}-01"))).await;
    let untraced = ingest_with_traceparent(&h, None).await;
    let invalid = ingest_with_traceparent(&h, Some("00-nonsense-01")).await;
    for id in [&traced, &untraced, &invalid] {
        h.wait_delivery(id, "dead", Duration::from_secs(20)).await;
    }
    let mut spans = Vec::new();
    for r in rx.requests() {
        let tp = r.header("traceparent").map(str::to_owned);
        if r.webhook_id() == traced {
            let tp = tp.expect("a traced event's attempt carries a traceparent");
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(parts.len(), 4, "{tp}");
            assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"), "{tp}");
            assert_ne!(parts[2], parent, "an attempt has its own span id");
            spans.push(parts[2].to_owned());
        } else {
            assert_eq!(
                tp,
                None,
                "no trace context was given for {}",
                r.webhook_id()
            );
        }
    }
    assert_eq!(spans.len(), 3);
    spans.sort();
    spans.dedup();
    assert_eq!(spans.len(), 3, "a fresh span id per attempt");
}
