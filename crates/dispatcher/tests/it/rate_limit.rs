//! `rate_limit` caps requests per second.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use herald_core::RateLimitConfig;

use crate::harness::{serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

const PER_SECOND: u32 = 20;
const BURST: u32 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_caps_requests_per_second() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::status(204)).await;
    let mut cfg = subscriber("limited", &rx);
    cfg.max_in_flight = 100;
    cfg.rate_limit = Some(RateLimitConfig {
        per_second: NonZeroU32::new(PER_SECOND).unwrap(),
        burst: NonZeroU32::new(BURST).unwrap(),
    });
    let h = Harness::start(vec![cfg]).await;

    let started = Instant::now();
    h.enqueue("limited", 60).await;
    h.wait_delivered("limited", 60, Duration::from_secs(10))
        .await;
    let elapsed = started.elapsed();

    let arrivals: Vec<Instant> = rx.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 60);
    // The most arrivals in any one-second window starting at an arrival.
    let busiest = arrivals
        .iter()
        .map(|&from| {
            arrivals
                .iter()
                .filter(|&&t| t >= from && t < from + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    println!(
        "60 deliveries at {PER_SECOND}/s (burst {BURST}): {elapsed:?}; busiest second {busiest}"
    );
    // 59 intervals of 50 ms after the first request.
    assert!(elapsed >= Duration::from_millis(2_500), "{elapsed:?}");
    // GCRA allows per_second + burst in a window that starts just as a cell is freed; one more
    // for network jitter bunching two arrivals.
    let allowed = usize::try_from(PER_SECOND + BURST).unwrap() + 1;
    assert!(busiest <= allowed, "{busiest} arrivals in one second");
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
