//! Storage trouble: a store already locked by a running Herald, a store path that cannot be
//! created. Both end with a clear message and a non-zero exit, never a panic.

use std::time::Duration;

use crate::harness::{spawn_run, wait_for, Config, Herald, Receiver, Sub, PANIC_TEXT};

async fn exit_of(mut child: std::process::Child, deadline: Duration) -> std::process::ExitStatus {
    let status = wait_for(deadline, "herald to exit", || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    let _ = child.kill();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_herald_on_a_locked_store_exits_with_a_clear_message() {
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .sled_only()
            .sub(Sub::new("a", &rx.url("/a"))),
    )
    .await;
    let store = h.dir.path().join("data");

    let dir = tempfile::tempdir().unwrap();
    let mut second = Config::default()
        .sled_only()
        .sub(Sub::new("a", &rx.url("/a")));
    second.storage = store.display().to_string();
    let path = second.write(dir.path());
    let log = dir.path().join("second.log");
    let status = exit_of(spawn_run(&path, &log, &[]), Duration::from_secs(20)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "the second herald ran:\n{text}");
    assert!(!text.contains(PANIC_TEXT), "{text}");
    assert!(
        text.contains(&store.display().to_string()) && text.to_lowercase().contains("lock"),
        "the message should name the store and the lock:\n{text}"
    );
    // The first one is unharmed.
    let (status, _) = h.get("/healthz").await;
    assert_eq!(status, 200);
    h.ingest(&serde_json::json!({"event_type": "X", "payload": {}}))
        .await;
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_store_path_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    // A directory under a regular file cannot be created, not even by root.
    std::fs::write(dir.path().join("afile"), "not a directory").unwrap();
    let mut config = Config::default()
        .sled_only()
        .sub(Sub::new("a", "http://127.0.0.1:9/a"));
    config.storage = "afile/store".to_owned();
    let path = config.write(dir.path());
    let log = dir.path().join("herald.log");
    let status = exit_of(spawn_run(&path, &log, &[]), Duration::from_secs(20)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "herald ran on an impossible store:\n{text}"
    );
    assert!(!text.contains(PANIC_TEXT), "{text}");
    assert!(
        text.contains("afile/store"),
        "the message should name the path:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_deliveries_are_purged_after_the_retention() {
    // Retention 2 s: the purge runs every second (a quarter of it, at least 1 s). Delivered
    // deliveries, their events and their index records must all go; nothing else may.
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .sled_only()
            .retention("2s")
            .sub(Sub::new("a", &rx.url("/a"))),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let receipt = h
            .ingest(&serde_json::json!({"event_type": "X", "payload": {"n": n}}))
            .await;
        ids.extend(
            crate::harness::receipt_ids(&receipt)
                .into_iter()
                .map(|(_, id)| id),
        );
    }
    assert_eq!(ids.len(), 40);
    wait_for(
        Duration::from_secs(20),
        "every delivery delivered",
        || async { (h.subscriber("a").await["delivered"] == 40).then_some(()) },
    )
    .await;
    wait_for(
        Duration::from_secs(20),
        "the purge to remove them",
        || async { (h.subscriber("a").await["delivered"] == 0).then_some(()) },
    )
    .await;
    for id in &ids {
        let (status, body) = h.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(status, 404, "{id} still stored: {body}");
    }
    // A delivery still pending is kept, however old: pause, send, wait past the retention.
    let (status, _) = h.post_empty("/v1/subscribers/a/pause").await;
    assert_eq!(status, 200);
    let receipt = h
        .ingest(&serde_json::json!({"event_type": "X", "payload": {"late": true}}))
        .await;
    let (_, late) = crate::harness::receipt_ids(&receipt).remove(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.delivery_status(&late).await, "pending");
    h.assert_no_panic();
}
