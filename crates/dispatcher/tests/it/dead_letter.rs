//! Dead-lettering after `max_attempts`, manual retry of a dead delivery, and `410 Gone`
//! pausing the subscriber instead of killing the delivery.

use std::time::Duration;

use herald_core::DeliveryStatus;
use herald_dispatcher::GONE_REASON;

use crate::harness::{serial, sid, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_after_max_attempts_then_retry_dead_delivers() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::status(500)).await;
    let mut cfg = subscriber("dying", &rx);
    cfg.retry.max_attempts = 3;
    cfg.retry.initial_interval = Duration::from_millis(50);
    let h = Harness::start(vec![cfg]).await;

    let ids = h.enqueue("dying", 1).await;
    crate::harness::eventually(Duration::from_secs(5), "dead-lettered", || {
        h.counts("dying").dead == 1
    })
    .await;
    let details = h.store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(details.record.status, DeliveryStatus::Dead);
    assert_eq!(details.record.attempts, 3);
    assert_eq!(details.attempts.len(), 3);
    assert_eq!(details.record.last_error.as_deref(), Some("HTTP 500"));
    // No fourth attempt sneaks out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 3);
    let c = h.counts("dying");
    assert_eq!((c.pending, c.in_flight, c.dead), (0, 0, 1));

    // The receiver heals; an operator retries the dead delivery.
    rx.set_mode(Mode::status(200));
    h.dispatcher.retry(ids[0]).await.unwrap();
    rx.wait_for_count(4, Duration::from_secs(5)).await;
    h.wait_delivered("dying", 1, Duration::from_secs(5)).await;
    assert_eq!(rx.count(), 4);
    assert_eq!(h.counts("dying").dead, 0);
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_the_subscriber_and_keeps_the_delivery() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::status(410)).await;
    let mut cfg = subscriber("retired", &rx);
    cfg.max_in_flight = 1;
    let h = Harness::start(vec![cfg]).await;

    let ids = h.enqueue("retired", 1).await;
    crate::harness::eventually(Duration::from_secs(5), "paused by 410", || {
        crate::harness::ready(h.dispatcher.stats_of("retired"))
            .unwrap()
            .paused_reason
            .is_some()
    })
    .await;
    let stats = h.dispatcher.stats_of("retired").await.unwrap();
    assert_eq!(stats.paused_reason.as_deref(), Some(GONE_REASON));
    assert_eq!(
        h.store.paused().await.unwrap(),
        vec![(sid("retired"), GONE_REASON.to_owned())],
        "the pause is persisted"
    );
    crate::harness::eventually(Duration::from_secs(2), "attempt recorded", || {
        h.counts("retired").in_flight == 0
    })
    .await;
    let record = h.store.get(ids[0]).await.unwrap().unwrap().record;
    assert_eq!(
        record.status,
        DeliveryStatus::Pending,
        "not dead: {record:?}"
    );
    assert_eq!(record.attempts, 1);

    // More events wait too.
    h.enqueue("retired", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1);
    assert_eq!(h.counts("retired").pending, 5);

    rx.set_mode(Mode::status(200));
    h.dispatcher.resume("retired").await.unwrap();
    h.wait_delivered("retired", 5, Duration::from_secs(5)).await;
    assert_eq!(rx.count(), 6);
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
