//! Reload: a lowered `max_in_flight` applies to new requests; a removed subscriber's deliveries
//! stay in the store (reported as orphaned) and flow again once it is configured again.

use std::time::Duration;

use crate::harness::{serial, sid, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_new_limits_and_keeps_removed_subscribers_deliveries() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(200))).await;
    let other_rx = Receiver::start(Mode::status(204)).await;
    let mut keep = subscriber("keep", &rx);
    keep.max_in_flight = 8;
    let old = subscriber("old", &other_rx);
    let h = Harness::start(vec![keep.clone(), old.clone()]).await;

    // "old" is paused, so its deliveries sit in the store when it is removed.
    h.dispatcher
        .pause("old", "held for the test")
        .await
        .unwrap();
    h.enqueue("old", 5).await;
    h.enqueue("keep", 40).await;
    rx.wait_for_current(8, Duration::from_secs(5)).await;

    keep.max_in_flight = 2;
    let report = h.dispatcher.reload(vec![keep.clone()]).await.unwrap();
    assert_eq!(report.subscribers, 1);
    assert!(report.added.is_empty());
    assert_eq!(report.removed, vec![sid("old")]);
    assert_eq!(report.orphaned, vec![(sid("old"), 5)]);
    assert!(!h.dispatcher.contains("old"));
    assert!(h.dispatcher.stats_of("old").await.is_err());
    h.dispatcher.notify(&sid("old")); // a no-op for an unknown subscriber
    let stats = h.dispatcher.stats_of("keep").await.unwrap();
    assert_eq!((stats.max_in_flight, stats.effective_limit), (2, 2));

    // The 8 already in flight finish as they started; after them, at most 2 at a time.
    crate::harness::eventually(Duration::from_secs(2), "old requests drained", || {
        rx.current() <= 2
    })
    .await;
    rx.reset_max();
    h.wait_delivered("keep", 40, Duration::from_secs(10)).await;
    assert_eq!(rx.max_concurrent(), 2, "new limit used and never exceeded");

    let c = h.counts("old");
    assert_eq!(
        (c.pending, c.in_flight),
        (5, 0),
        "removed subscriber's deliveries are kept"
    );
    assert_eq!(other_rx.count(), 0);

    // Configured again (its persisted pause comes back with it), resumed: delivered.
    let report = h.dispatcher.reload(vec![keep, old]).await.unwrap();
    assert_eq!(report.added, vec![sid("old")]);
    assert!(report.orphaned.is_empty());
    assert_eq!(
        h.dispatcher
            .stats_of("old")
            .await
            .unwrap()
            .paused_reason
            .as_deref(),
        Some("held for the test")
    );
    h.dispatcher.resume("old").await.unwrap();
    h.wait_delivered("old", 5, Duration::from_secs(5)).await;
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
