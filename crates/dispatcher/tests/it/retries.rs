//! Retries fire at their due time, not earlier and not much later.

use std::time::Duration;

use herald_core::DeliveryStatus;

use crate::harness::{serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_fire_at_their_due_time() {
    let _serial = serial().await;
    // Attempts 1 and 2 fail, attempt 3 succeeds.
    let rx = Receiver::start(Mode::script(|req| {
        (if req.attempt() < 3 { 500 } else { 200 }, Duration::ZERO)
    }))
    .await;
    let mut cfg = subscriber("retried", &rx);
    cfg.retry.initial_interval = Duration::from_millis(500);
    cfg.retry.multiplier = 2.0;
    cfg.retry.max_interval = Duration::from_secs(10);
    cfg.retry.randomization = 0.0;
    let h = Harness::start(vec![cfg]).await;

    let ids = h.enqueue("retried", 1).await;
    h.wait_delivered("retried", 1, Duration::from_secs(5)).await;

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.webhook_id() == ids[0].to_string()));
    assert_eq!(
        reqs.iter().map(|r| r.attempt()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let first_gap = reqs[1].at - reqs[0].at;
    let second_gap = reqs[2].at - reqs[1].at;
    println!("retry gaps: {first_gap:?} (due 500 ms), {second_gap:?} (due 1000 ms)");
    assert!(
        first_gap >= Duration::from_millis(400) && first_gap <= Duration::from_millis(600),
        "{first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(900) && second_gap <= Duration::from_millis(1_100),
        "{second_gap:?}"
    );

    let details = h.store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(details.record.status, DeliveryStatus::Delivered);
    assert_eq!(
        details
            .attempts
            .iter()
            .map(|a| a.status_code)
            .collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
