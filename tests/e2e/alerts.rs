//! Operator alerts (SPEC §10): Herald's own events reach the `[alerts] subscriber`, a real
//! receiver, signed and through the normal pipeline; nothing about that subscriber goes to
//! itself; `herald check` refuses an alert subscriber that does not exist.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{run_herald, wait_for, Config, Herald, Mode, Receiver, Sub};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The alert events the ops receiver got so far, as (event type, payload), in arrival order.
fn alerts(ops: &Receiver) -> Vec<(String, Value)> {
    ops.requests()
        .iter()
        .filter(|r| r.header("webhook-signature").is_some())
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            // Each alert names its type in the payload (the wire carries no event type).
            let kind = body["type"]
                .as_str()
                .expect("an alert names its type")
                .to_owned();
            (kind, body)
        })
        .collect()
}

async fn wait_alert(ops: &Receiver, kind: &str, about: &str) -> Value {
    wait_for(
        Duration::from_secs(20),
        &format!("{kind} about {about}"),
        || async {
            alerts(ops)
                .into_iter()
                .find(|(k, body)| k == kind && body["subscriber"] == about)
                .map(|(_, body)| body)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_events_reach_the_alert_subscriber() {
    let ops = Receiver::start().await;
    let acme = Receiver::start_with(Mode::Status(500)).await;
    let h = Herald::start(
        Config::default()
            .daemon("[alerts]\nsubscriber = \"ops\"")
            .sub(
                Sub::new("ops", &ops.url("/ops"))
                    .events(&["nothing"])
                    .extra(&format!(
                        "[signing]\nscheme = \"standard-webhooks\"\nsecret = \"{SECRET}\"\n"
                    )),
            )
            .sub(
                Sub::new("acme", &acme.url("/acme"))
                    .events(&["order.paid"])
                    .max_in_flight(4)
                    .attempts(1)
                    .extra("[throttle]\nwindow = \"1s\"\nmin_requests = 2\nerror_rate = 0.5\n"),
            ),
    )
    .await;

    // An outage at acme: each delivery dies after its single attempt, the limit is cut.
    let mut ids = Vec::new();
    for i in 0..6 {
        let receipt = h
            .ingest(&json!({"event_type": "order.paid", "payload": {"i": i}}))
            .await;
        ids.push(receipt["deliveries"][0]["id"].as_str().unwrap().to_owned());
        // The throttle changes the limit at most once per step (window / 10).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for id in &ids {
        h.wait_delivery(id, "dead", Duration::from_secs(20)).await;
    }
    let dead = wait_for(
        Duration::from_secs(20),
        "a dead alert per delivery",
        || async {
            let dead: Vec<Value> = alerts(&ops)
                .into_iter()
                .filter(|(k, _)| k == "herald.delivery.dead")
                .map(|(_, b)| b)
                .collect();
            (dead.len() >= ids.len()).then_some(dead)
        },
    )
    .await;
    assert_eq!(
        dead.len(),
        ids.len(),
        "one alert per dead delivery: {dead:?}"
    );
    let first = dead
        .iter()
        .find(|d| d["delivery_id"] == ids[0].as_str())
        .expect("an alert for the first delivery");
    assert_eq!(first["subscriber"], "acme");
    assert_eq!(first["event_type"], "order.paid");
    assert_eq!(first["attempts"], 1);
    assert!(
        first["last_error"].as_str().unwrap().contains("500"),
        "{first}"
    );
    assert!(first["event_id"].is_string() && first["at"].is_string());

    let throttled = wait_alert(&ops, "herald.subscriber.throttled", "acme").await;
    assert_eq!(throttled["max_in_flight"], 4);
    assert!(
        throttled["effective_limit"].as_u64().unwrap() < 4,
        "{throttled}"
    );
    assert!(
        throttled["error_rate"].as_f64().unwrap() > 0.5,
        "{throttled}"
    );

    // Pause and resume by an operator.
    let (status, _) = h
        .post(
            "/v1/subscribers/acme/pause",
            &json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(status, 200);
    let paused = wait_alert(&ops, "herald.subscriber.paused", "acme").await;
    assert_eq!(paused["reason"], "maintenance");
    assert_eq!(h.post_empty("/v1/subscribers/acme/resume").await.0, 200);
    wait_alert(&ops, "herald.subscriber.resumed", "acme").await;

    // Healed: successes bring the limit back to max_in_flight.
    acme.set(Mode::Status(200));
    wait_for(Duration::from_secs(20), "recovered alert", || async {
        h.ingest(&json!({"event_type": "order.paid", "payload": {}}))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        alerts(&ops)
            .into_iter()
            .find(|(k, b)| k == "herald.subscriber.recovered" && b["subscriber"] == "acme")
    })
    .await;

    // Rate limit: one throttled/recovered pair for the whole episode.
    let all = alerts(&ops);
    let count = |kind: &str| all.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("herald.subscriber.throttled"), 1, "{all:?}");
    assert_eq!(count("herald.subscriber.recovered"), 1, "{all:?}");

    // No loops: pausing the alert subscriber sends nothing about it to itself.
    h.post_empty("/v1/subscribers/ops/pause").await;
    h.post_empty("/v1/subscribers/ops/resume").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alerts(&ops).iter().all(|(_, b)| b["subscriber"] != "ops"),
        "{:?}",
        alerts(&ops)
    );
    // The alerts are ordinary events, visible in the events API.
    let (_, page) = h.get("/v1/events?event_type=herald.delivery.dead").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        ids.len(),
        "{page}"
    );
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_an_alert_subscriber_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = Config::default()
        .daemon("[alerts]\nsubscriber = \"ops\"")
        .sub(Sub::new("acme", "http://127.0.0.1:9/a"))
        .write(dir.path());
    let out = run_herald(
        vec!["check".into(), "-c".into(), path.display().to_string()],
        vec![],
    )
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("herald.toml"), "{text}");
    assert!(text.contains("alerts.subscriber"), "{text}");
    assert!(text.contains("\"ops\""), "{text}");
}
