//! Shutdown drains in-flight attempts within the grace period, and gives back the leases of
//! those still running when it ends.

use std::time::{Duration, Instant};

use crate::harness::{serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_within_grace() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(300))).await;
    let h = Harness::start(vec![subscriber("slow", &rx)]).await;
    h.enqueue("slow", 10).await;
    rx.wait_for_current(10, Duration::from_secs(5)).await;

    let report = h.dispatcher.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    let c = h.counts("slow");
    assert_eq!((c.delivered, c.pending, c.in_flight), (10, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_after_grace_releases_unfinished_attempts() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::BlackHole).await;
    let mut cfg = subscriber("stuck", &rx);
    cfg.timeout = Duration::from_secs(30);
    let h = Harness::start(vec![cfg]).await;
    h.enqueue("stuck", 15).await;
    rx.wait_for_current(10, Duration::from_secs(5)).await;
    assert_eq!(h.counts("stuck").in_flight, 10);

    let started = Instant::now();
    let report = h.dispatcher.shutdown(Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert!(!report.drained);
    assert!(took < Duration::from_secs(2), "{took:?}");
    let c = h.counts("stuck");
    assert_eq!(
        (c.pending, c.in_flight, c.delivered, c.dead),
        (15, 0, 0, 0),
        "released to pending: not lost, not stuck in flight"
    );
    let page = h
        .store
        .list(&herald_core::ListQuery {
            subscriber: Some(crate::harness::sid("stuck")),
            status: None,
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap();
    assert!(page.deliveries.iter().all(|d| d.record.attempts == 0
        && d.attempts.is_empty()
        && d.record.status == herald_core::DeliveryStatus::Pending));
}
