//! Reload: SIGHUP and `POST /v1/reload` add subscribers; a broken folder is refused and the
//! running configuration stays; a removed subscriber's queued deliveries are kept.

use std::time::Duration;

use serde_json::json;

use crate::harness::{assert_error_body, receipt_ids, wait_for, Config, Herald, Receiver, Sub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_broken_is_refused_removed_keeps_its_queue() {
    let rx = Receiver::start().await;
    let h = Herald::start(Config::default().sub(Sub::new("a", &rx.url("/a")))).await;

    // SIGHUP picks up a new file.
    std::fs::write(
        h.subscribers_dir().join("b.toml"),
        Sub::new("b", &rx.url("/b")).render(),
    )
    .unwrap();
    h.sighup();
    wait_for(
        Duration::from_secs(10),
        "b to be listed after SIGHUP",
        || async {
            let (_, subs) = h.get("/v1/subscribers").await;
            subs.as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == "b")
                .then_some(())
        },
    )
    .await;
    let receipt = h
        .ingest(&json!({"event_type": "X", "payload": {"r": 1}}))
        .await;
    let ids = receipt_ids(&receipt);
    assert_eq!(ids.len(), 2, "{receipt}");
    for (_, id) in &ids {
        h.wait_delivery(id, "delivered", Duration::from_secs(10))
            .await;
    }
    assert_eq!(rx.requests_to("/b").len(), 1);

    // A broken file: 4xx JSON, the running config stays and keeps delivering.
    let broken = h.subscribers_dir().join("broken.toml");
    std::fs::write(
        &broken,
        "url = \"http://127.0.0.1:9/\"\nmax_in_flight = 9999\n",
    )
    .unwrap();
    let (status, body) = h.post_empty("/v1/reload").await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_error_body(&body, "broken reload");
    assert!(
        body["message"].as_str().unwrap().contains("broken.toml"),
        "{body}"
    );
    h.sighup(); // the same through the signal: logged, nothing changes
    wait_for(
        Duration::from_secs(10),
        "the rejected reload in the log",
        || async { h.log_text().contains("reload rejected").then_some(()) },
    )
    .await;
    let (_, subs) = h.get("/v1/subscribers").await;
    let mut names: Vec<&str> = subs
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"]);
    let receipt = h
        .ingest(&json!({"event_type": "X", "payload": {"r": 2}}))
        .await;
    for (_, id) in receipt_ids(&receipt) {
        h.wait_delivery(&id, "delivered", Duration::from_secs(10))
            .await;
    }
    std::fs::remove_file(&broken).unwrap();

    // Removing b while it has queued deliveries: they are kept and reported.
    let (status, _) = h.post_empty("/v1/subscribers/b/pause").await;
    assert_eq!(status, 200);
    let mut held = Vec::new();
    for n in 0..3 {
        let receipt = h
            .ingest(&json!({"event_type": "X", "subscriber": "b", "payload": {"held": n}}))
            .await;
        held.push(receipt_ids(&receipt)[0].1.clone());
    }
    std::fs::remove_file(h.subscribers_dir().join("b.toml")).unwrap();
    let (status, report) = h.post_empty("/v1/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"], json!(["b"]), "{report}");
    assert_eq!(
        report["orphaned"],
        json!([{"subscriber": "b", "queued": 3}]),
        "{report}"
    );
    let (_, page) = h.get("/v1/deliveries?subscriber=b&status=pending").await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 3, "{page}");
    for id in &held {
        assert_eq!(h.delivery_status(id).await, "pending");
    }
    let (status, body) = h
        .post(
            "/v1/events",
            &json!({"event_type": "X", "subscriber": "b", "payload": {}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // Back again: the kept deliveries go out.
    std::fs::write(
        h.subscribers_dir().join("b.toml"),
        Sub::new("b", &rx.url("/b")).render(),
    )
    .unwrap();
    let (status, report) = h.post_empty("/v1/reload").await;
    assert_eq!(status, 200, "{report}");
    h.post_empty("/v1/subscribers/b/resume").await;
    for id in &held {
        h.wait_delivery(id, "delivered", Duration::from_secs(10))
            .await;
        assert_eq!(rx.count_of(id), 1);
    }
    h.assert_no_panic();
}
