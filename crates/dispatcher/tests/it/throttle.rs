//! Error-rate throttling: a total outage cuts the effective limit down to 1 (and the cut is
//! enforced, not only reported); once the endpoint heals the limit climbs back to
//! `max_in_flight`. Prints the outage-and-recovery series as a table.

use std::time::{Duration, Instant};

use herald_core::{RetryPolicy, ThrottleConfig};

use crate::harness::{enqueue, serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

const MAX: u32 = 8;
const HEALTHY_UNTIL: Duration = Duration::from_secs(1);
const OUTAGE_UNTIL: Duration = Duration::from_secs(5);
const RECOVERY_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct Row {
    t: Duration,
    phase: &'static str,
    limit: u32,
    in_flight: u32,
    error_rate: f64,
    serving: usize,
    received: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_engages_on_outage_and_recovers() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(20))).await;
    let mut cfg = subscriber("flaky", &rx);
    cfg.max_in_flight = MAX;
    cfg.throttle = ThrottleConfig {
        error_rate: 0.5,
        window: Duration::from_secs(2),
        min_requests: 5,
    };
    cfg.retry = RetryPolicy {
        max_attempts: 10_000,
        initial_interval: Duration::from_millis(50),
        multiplier: 2.0,
        max_interval: Duration::from_millis(200),
        randomization: 0.0,
        max_age: None,
    };
    let h = Harness::start(vec![cfg]).await;

    // Steady load: 10 events every 100 ms (100/s); at 20 ms per answer, 8 in flight carry
    // 400/s and 1 in flight 50/s, so the queue grows during the outage and work keeps flowing
    // while the limit recovers.
    let producer = {
        let (store, dispatcher) = (h.store.clone(), h.dispatcher.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                enqueue(&store, &dispatcher, "flaky", 10).await;
            }
        })
    };

    let start = Instant::now();
    let mut rows = Vec::new();
    let mut phase = "healthy";
    let mut at_one_since: Option<Instant> = None;
    let mut max_reset = false;
    let mut outage_max_concurrency = None;
    let mut recovered_at = None;
    loop {
        let t = start.elapsed();
        if phase == "healthy" && t >= HEALTHY_UNTIL {
            phase = "outage";
            rx.set_mode(Mode::answer(500, Duration::from_millis(20)));
        } else if phase == "outage" && t >= OUTAGE_UNTIL {
            phase = "healed";
            outage_max_concurrency = max_reset.then(|| rx.max_concurrent());
            rx.set_mode(Mode::ok_after(Duration::from_millis(20)));
        }
        let s = h.dispatcher.stats_of("flaky").await.unwrap();
        rows.push(Row {
            t,
            phase,
            limit: s.effective_limit,
            in_flight: s.in_flight,
            error_rate: s.error_rate,
            serving: rx.current(),
            received: rx.count(),
        });
        assert!(s.effective_limit <= MAX && s.effective_limit >= 1, "{s:?}");
        if phase == "outage" && s.effective_limit == 1 {
            let since = *at_one_since.get_or_insert_with(Instant::now);
            // Once the stragglers of the higher limit are gone, watch that 1 means 1.
            if !max_reset && since.elapsed() >= Duration::from_millis(300) {
                rx.reset_max();
                max_reset = true;
            }
        }
        if phase == "healed" && s.effective_limit == MAX && recovered_at.is_none() {
            recovered_at = Some(t);
        }
        if recovered_at.is_some_and(|r| t >= r + Duration::from_millis(500)) {
            break;
        }
        assert!(
            t < RECOVERY_DEADLINE,
            "no recovery to {MAX} within {RECOVERY_DEADLINE:?}:\n{}",
            table(&rows)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.abort();
    println!("{}", table(&rows));

    let healthy: Vec<&Row> = rows.iter().filter(|r| r.phase == "healthy").collect();
    let outage: Vec<&Row> = rows.iter().filter(|r| r.phase == "outage").collect();
    let healed: Vec<&Row> = rows.iter().filter(|r| r.phase == "healed").collect();
    assert!(
        healthy.iter().all(|r| r.limit == MAX),
        "healthy: full limit"
    );
    assert!(
        outage.windows(2).all(|w| w[1].limit <= w[0].limit),
        "limit only falls during a total outage"
    );
    let first_cut = outage.iter().find(|r| r.limit < MAX).expect("never cut");
    assert!(
        first_cut.t < HEALTHY_UNTIL + Duration::from_millis(1_000),
        "first cut too late: {:?}",
        first_cut.t
    );
    assert!(
        at_one_since.is_some(),
        "limit never reached 1 in the outage"
    );
    assert_eq!(
        outage_max_concurrency,
        Some(1),
        "at limit 1 the receiver must see one request at a time"
    );
    assert!(
        healed.iter().any(|r| r.limit > 1 && r.limit < MAX),
        "recovery is step by step"
    );
    let recovered_at = recovered_at.unwrap();
    println!("outage {HEALTHY_UNTIL:?}..{OUTAGE_UNTIL:?}; back at {MAX} at {recovered_at:?}");

    // Nothing is lost: the whole backlog (retries included) is delivered.
    let _ = producer.await;
    let c = h.counts("flaky");
    let produced = c.pending + c.in_flight + c.delivered + c.dead;
    h.wait_delivered("flaky", produced, Duration::from_secs(15))
        .await;
    assert_eq!(h.counts("flaky").dead, 0);
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| t (s) | phase   | effective_limit | in_flight | error_rate | receiver serving | received |\n\
         |------:|---------|----------------:|----------:|-----------:|-----------------:|---------:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {:5.1} | {:<7} | {:>15} | {:>9} | {:>10.2} | {:>16} | {:>8} |\n",
            r.t.as_secs_f64(),
            r.phase,
            r.limit,
            r.in_flight,
            r.error_rate,
            r.serving,
            r.received
        ));
    }
    out
}
