//! A black-holed subscriber holding all its 500 slots does not slow down another one.

use std::time::{Duration, Instant};

use crate::harness::{serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_subscriber_does_not_delay_others() {
    let _serial = serial().await;
    let hole = Receiver::start(Mode::BlackHole).await;
    let good = Receiver::start(Mode::status(204)).await;
    let mut a = subscriber("black-hole", &hole);
    a.max_in_flight = 500;
    a.timeout = Duration::from_secs(30);
    let mut b = subscriber("healthy", &good);
    b.max_in_flight = 50;
    let h = Harness::start(vec![a, b]).await;

    // Baseline: B alone.
    let started = Instant::now();
    h.enqueue("healthy", 200).await;
    h.wait_delivered("healthy", 200, Duration::from_secs(10))
        .await;
    let alone = started.elapsed();

    // A fills every one of its slots and the rest of its backlog waits in the queue.
    h.enqueue("black-hole", 600).await;
    hole.wait_for_current(500, Duration::from_secs(10)).await;
    let a_counts = h.counts("black-hole");
    assert_eq!((a_counts.in_flight, a_counts.pending), (500, 100));

    let started = Instant::now();
    h.enqueue("healthy", 200).await;
    h.wait_delivered("healthy", 400, Duration::from_secs(10))
        .await;
    let beside_hole = started.elapsed();
    println!("200 deliveries to B: alone {alone:?}, beside a black-holed A with 500 in flight {beside_hole:?}");
    assert!(
        beside_hole < Duration::from_secs(2),
        "B was delayed by A: {beside_hole:?} (alone {alone:?})"
    );
    assert_eq!(good.count(), 400);
    assert_eq!(hole.max_concurrent(), 500, "A never exceeds its own cap");
    assert_eq!(h.counts("black-hole").in_flight, 500);

    let report = h.dispatcher.shutdown(Duration::from_millis(200)).await;
    assert!(!report.drained);
    let a_counts = h.counts("black-hole");
    assert_eq!((a_counts.in_flight, a_counts.pending), (0, 600));
}
