//! `max_in_flight` is a hard cap that is also reached.

use std::time::{Duration, Instant};

use crate::harness::{serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_in_flight_and_reaches_it() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(200))).await;
    let mut cfg = subscriber("capped", &rx);
    cfg.max_in_flight = 8;
    let h = Harness::start(vec![cfg]).await;

    let started = Instant::now();
    h.enqueue("capped", 100).await;
    h.wait_delivered("capped", 100, Duration::from_secs(20))
        .await;
    let elapsed = started.elapsed();

    println!(
        "100 deliveries, 200 ms each, max_in_flight 8: {elapsed:?}, max concurrency seen {}",
        rx.max_concurrent()
    );
    assert_eq!(
        rx.max_concurrent(),
        8,
        "cap must be reached and never exceeded"
    );
    assert_eq!(rx.count(), 100, "each delivered exactly once");
    let mut bodies: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 100, "every payload arrived, byte for byte");
    // 13 rounds of 200 ms at full concurrency; much slower means the cap was not used.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let stats = h.dispatcher.stats_of("capped").await.unwrap();
    assert_eq!((stats.in_flight, stats.effective_limit), (0, 8));
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
