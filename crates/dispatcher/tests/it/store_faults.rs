//! Issue 11 items 2 and 3: a failed or panicking store write never leaves a delivery in flight
//! while the process lives. The store is the real sled store behind a fault injector
//! ([`FaultyStore`]); the HTTP side is a real receiver.

use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_core::DeliveryStatus;

use crate::faulty_store::Rig;
use crate::harness::{enqueue, eventually, subscriber};
use crate::receiver::{Mode, Receiver};

/// Waits until `subscriber` has `n` delivered and nothing pending or in flight.
async fn wait_delivered(rig: &Rig, subscriber: &str, n: u64, within: Duration) {
    eventually(within, &format!("{n} delivered to {subscriber}"), || {
        let c = rig.counts(subscriber);
        c.delivered == n && c.pending == 0 && c.in_flight == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_finish_attempt_is_tried_again() {
    let rx = Receiver::start(Mode::status(204)).await;
    let rig = Rig::start(vec![subscriber("flaky-store", &rx)]);
    rig.faults.fail_finish.store(2, Ordering::SeqCst);

    let ids = enqueue(&rig.store, &rig.dispatcher, "flaky-store", 1).await;
    wait_delivered(&rig, "flaky-store", 1, Duration::from_secs(5)).await;

    assert_eq!(
        rx.count(),
        1,
        "recorded by a retry of the store call, not resent"
    );
    assert_eq!(rig.faults.finish_calls.load(Ordering::SeqCst), 3);
    let details = rig.store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(details.attempts.len(), 1);
    assert_eq!(details.attempts[0].status_code, Some(204));
    rig.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_attempt_that_keeps_failing_releases_the_delivery() {
    let rx = Receiver::start(Mode::status(204)).await;
    let rig = Rig::start(vec![subscriber("broken-store", &rx)]);
    // Every try of the first attempt's record fails (1 + 3 retries), and the first release too.
    rig.faults.fail_finish.store(4, Ordering::SeqCst);
    rig.faults.fail_release.store(1, Ordering::SeqCst);

    let ids = enqueue(&rig.store, &rig.dispatcher, "broken-store", 1).await;
    // 50 + 200 + 1000 ms of retries, a 50 ms release retry, then a second attempt.
    wait_delivered(&rig, "broken-store", 1, Duration::from_secs(10)).await;

    assert_eq!(rx.count(), 2, "released and attempted again");
    assert_eq!(rig.faults.finish_calls.load(Ordering::SeqCst), 5);
    assert_eq!(rig.faults.release_calls.load(Ordering::SeqCst), 2);
    let details = rig.store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(details.record.status, DeliveryStatus::Delivered);
    assert_eq!(
        details.attempts.len(),
        1,
        "the unrecorded first attempt is not in the history"
    );
    rig.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_attempt_releases_its_delivery_and_is_counted() {
    let rx = Receiver::start(Mode::status(204)).await;
    let rig = Rig::start(vec![subscriber("panicky", &rx)]);
    // The store is called inside the attempt task: a panic there is a panic of the task.
    rig.faults.panic_finish.store(1, Ordering::SeqCst);
    assert_eq!(rig.counter("herald_attempt_panics_total", "panicky"), 0);

    let ids = enqueue(&rig.store, &rig.dispatcher, "panicky", 1).await;
    wait_delivered(&rig, "panicky", 1, Duration::from_secs(5)).await;

    assert_eq!(
        rx.count(),
        2,
        "released after the panic and attempted again"
    );
    assert_eq!(rig.counter("herald_attempt_panics_total", "panicky"), 1);
    assert_eq!(
        rig.store.get(ids[0]).await.unwrap().unwrap().record.status,
        DeliveryStatus::Delivered
    );

    // The dispatcher keeps running: later deliveries go out as usual.
    enqueue(&rig.store, &rig.dispatcher, "panicky", 3).await;
    wait_delivered(&rig, "panicky", 4, Duration::from_secs(5)).await;
    assert_eq!(rig.counter("herald_attempt_panics_total", "panicky"), 1);
    rig.dispatcher.shutdown(Duration::from_secs(1)).await;
}
