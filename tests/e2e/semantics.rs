//! SPEC §4 outcomes: 3xx and dropped connections are failures, `Retry-After` is honoured, `410`
//! pauses the subscriber (deliveries wait), `sha256-v1` signing, SIGINT like SIGTERM.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::{receipt_ids, wait_for, Config, Herald, Mode, Receiver, Sub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_dropped_connections_fail_retry_after_is_honoured() {
    let rx = Receiver::start_with(Mode::Status(307)).await;
    let h = Herald::start(
        Config::default().sub(
            Sub::new("s", &rx.url("/s"))
                .attempts(2)
                .intervals("50ms", "50ms"),
        ),
    )
    .await;
    let id = receipt_ids(&h.ingest(&json!({"event_type": "X", "payload": {}})).await)[0]
        .1
        .clone();
    let view = h.wait_delivery(&id, "dead", Duration::from_secs(10)).await;
    assert_eq!(view["attempts"][0]["status_code"], 307, "{view}");
    assert_eq!(rx.count_of(&id), 2, "a 3xx must not count as delivered");

    rx.set(Mode::Drop);
    let id = receipt_ids(&h.ingest(&json!({"event_type": "X", "payload": {}})).await)[0]
        .1
        .clone();
    let view = h.wait_delivery(&id, "dead", Duration::from_secs(10)).await;
    let first = &view["attempts"][0];
    assert_eq!(first["status_code"], serde_json::Value::Null, "{view}");
    assert!(
        first["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{view}"
    );

    // 503 with Retry-After: 2 — the retry waits at least that long, not the 50 ms interval.
    rx.set(Mode::RetryAfter(503, 2));
    let id = receipt_ids(&h.ingest(&json!({"event_type": "X", "payload": {}})).await)[0]
        .1
        .clone();
    let reqs = wait_for(Duration::from_secs(10), "two attempts", || async {
        let reqs: Vec<_> = rx
            .requests()
            .into_iter()
            .filter(|r| r.webhook_id() == id)
            .collect();
        (reqs.len() == 2).then_some(reqs)
    })
    .await;
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After ignored: retried after {gap:?}"
    );
    assert_eq!(reqs[1].header("webhook-attempt"), Some("2"));
    assert_eq!(reqs[0].webhook_id(), reqs[1].webhook_id());
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_the_subscriber_until_resumed() {
    gone_pauses_the_subscriber_until_resumed_on(Config::default()).await;
}

/// The same on PostgreSQL (the engine is a parameter of the harness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_the_subscriber_until_resumed_on_postgres() {
    let db = crate::harness::TestDb::create().await;
    gone_pauses_the_subscriber_until_resumed_on(Config::default().postgres(&db.url, None)).await;
}

async fn gone_pauses_the_subscriber_until_resumed_on(base: Config) {
    let rx = Receiver::start_with(Mode::Status(410)).await;
    let mut h = Herald::start(
        base.sub(
            Sub::new("g", &rx.url("/g"))
                .attempts(2)
                .intervals("50ms", "50ms"),
        ),
    )
    .await;
    let id = receipt_ids(&h.ingest(&json!({"event_type": "X", "payload": {}})).await)[0]
        .1
        .clone();
    let sub = wait_for(
        Duration::from_secs(10),
        "the subscriber to be paused",
        || async {
            let s = h.subscriber("g").await;
            (s["paused"] == true).then_some(s)
        },
    )
    .await;
    assert!(
        sub["paused_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{sub}"
    );
    assert_ne!(
        h.delivery_status(&id).await,
        "dead",
        "410 must not kill the delivery"
    );
    let second = receipt_ids(&h.ingest(&json!({"event_type": "X", "payload": {}})).await)[0]
        .1
        .clone();
    // The pause survives a restart (it is stored), and nothing is sent while paused.
    h.sigterm();
    assert_eq!(h.wait_exit(Duration::from_secs(10)).await.code(), Some(0));
    h.restart().await;
    assert_eq!(h.subscriber("g").await["paused"], true);
    assert_eq!(rx.count_of(&second), 0);
    rx.set(Mode::Status(200));
    let (status, _) = h.post_empty("/v1/subscribers/g/resume").await;
    assert_eq!(status, 200);
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    h.wait_delivery(&second, "delivered", Duration::from_secs(10))
        .await;
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_v1_signing_and_sigint() {
    let rx = Receiver::start().await;
    let mut h = Herald::start(
        Config::default().sub(
            Sub::new("u", &rx.url("/u"))
                .top("headers = { \"X-Tenant\" = \"acme\" }")
                .extra(
                    "[signing]\nscheme = \"sha256-v1\"\n\
             secret = \"unidy-secret\"\nheader_prefix = \"unidy-webhook\"\n",
                ),
        ),
    )
    .await;
    let id = receipt_ids(
        &h.ingest(&json!({"event_type": "X", "payload": {"a": [1, 2]}}))
            .await,
    )[0]
    .1
    .clone();
    let req = wait_for(Duration::from_secs(10), "the signed request", || async {
        rx.requests().into_iter().next()
    })
    .await;
    let mut hash = Sha256::new();
    hash.update(b"unidy-secret");
    hash.update(&req.body);
    assert_eq!(
        req.header("unidy-webhook-signature"),
        Some(hex::encode(hash.finalize()).as_str())
    );
    assert_eq!(req.header("unidy-webhook-version"), Some("1"));
    assert_eq!(req.header("unidy-webhook-delivery-id"), Some(id.as_str()));
    assert_eq!(req.header("unidy-webhook-delivery-attempt"), Some("1"));
    assert_eq!(req.header("x-tenant"), Some("acme"));
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;

    let status = std::process::Command::new("kill")
        .arg("-INT")
        .arg(h.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(h.wait_exit(Duration::from_secs(10)).await.code(), Some(0));
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempts_never_overlap() {
    let rx = Receiver::start_with(Mode::BlackHole).await;
    let h = Herald::start(
        Config::default().sub(
            Sub::new("t", &rx.url("/t"))
                .timeout("300ms")
                .attempts(3)
                .intervals("10ms", "10ms"),
        ),
    )
    .await;
    let id = receipt_ids(&h.ingest(&json!({"event_type": "X", "payload": {}})).await)[0]
        .1
        .clone();
    let view = h.wait_delivery(&id, "dead", Duration::from_secs(15)).await;
    let reqs: Vec<_> = rx
        .requests()
        .into_iter()
        .filter(|r| r.webhook_id() == id)
        .collect();
    assert_eq!(reqs.len(), 3, "{view}");
    for pair in reqs.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(290),
            "attempt sent again {gap:?} after the previous one, before its 300 ms timeout"
        );
    }
    let attempts = view["attempts"].as_array().unwrap();
    assert!(attempts
        .iter()
        .all(|a| a["status_code"].is_null() && a["error"].is_string()));
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_survive_sigkill_and_work_within_a_batch() {
    idempotency_keys_survive_sigkill_and_work_within_a_batch_on(Config::default()).await;
}

/// The same on PostgreSQL (the engine is a parameter of the harness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_survive_sigkill_and_work_within_a_batch_on_postgres() {
    let db = crate::harness::TestDb::create().await;
    idempotency_keys_survive_sigkill_and_work_within_a_batch_on(
        Config::default().postgres(&db.url, None),
    )
    .await;
}

async fn idempotency_keys_survive_sigkill_and_work_within_a_batch_on(base: Config) {
    let rx = Receiver::start().await;
    let mut h = Herald::start(base.sub(Sub::new("i", &rx.url("/i")))).await;
    let ev = json!({"event_type": "X", "payload": {"v": 1}, "idempotency_key": "survivor"});
    let first = h.ingest(&ev).await;
    h.sigkill();
    h.restart().await;
    let again = h.ingest(&ev).await;
    assert_eq!(first, again, "idempotency key forgotten after SIGKILL");

    // The same key twice in one batch: one event, both items answer it.
    let item = json!({"event_type": "X", "payload": {"v": 2}, "idempotency_key": "twice"});
    let (status, body) = h
        .post("/v1/events/batch", &json!({"events": [item, item]}))
        .await;
    assert_eq!(status, 202, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0], results[1], "{body}");

    wait_for(Duration::from_secs(10), "both events delivered", || async {
        let s = h.subscriber("i").await;
        (s["queued"] == 0 && s["delivered"] == 2).then_some(())
    })
    .await;
    // Distinct ids: a delivery in flight at the SIGKILL may legitimately be sent twice.
    assert_eq!(rx.counts().len(), 2, "duplicate deliveries were created");
    h.assert_no_panic();
}
