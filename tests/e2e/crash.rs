//! SPEC §7: SIGKILL at random moments while events pour in and deliveries are in flight, restart
//! on the same store, repeat; every acknowledged delivery reaches the receiver at least once and
//! nothing is left pending or in flight at the end.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::harness::{metric_sum, wait_for, Config, Herald, Mode, Receiver, Rng, Sub};

const ROUNDS: usize = 8;
const BATCHES: usize = 80;
const BATCH_SIZE: usize = 100;

/// How a producer posts: events per batch (alternately `EVEN` and `ODD`, with `pad` bytes of
/// padding), the pause after each acknowledged batch, and how many batches to post at most.
#[derive(Debug, Clone, Copy)]
struct Load {
    batch: usize,
    pad: usize,
    pace: Duration,
    max_batches: usize,
}

/// Posts batches until `load.max_batches` were acknowledged or `stop`; records every
/// acknowledged delivery id and counts acknowledged batches. A batch that is refused or cut
/// (the daemon was killed or is restarting) is not acknowledged and is simply not counted.
async fn produce(
    http: reqwest::Client,
    base: String,
    load: Load,
    acked: Arc<Mutex<HashSet<String>>>,
    batches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) && batches.load(Ordering::SeqCst) < load.max_batches {
        let events: Vec<Value> = (0..load.batch)
            .map(|i| {
                seq += 1;
                let kind = if i % 2 == 0 { "EVEN" } else { "ODD" };
                json!({"event_type": kind, "payload": {"seq": seq, "pad": "x".repeat(load.pad)}})
            })
            .collect();
        let res = http
            .post(format!("{base}/v1/events/batch"))
            .json(&json!({ "events": events }))
            .send()
            .await;
        let body: Option<Value> = match res {
            Ok(r) if r.status().as_u16() == 202 => r.json().await.ok(),
            _ => None,
        };
        let Some(body) = body else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        {
            let mut acked = acked.lock();
            for result in body["results"].as_array().into_iter().flatten() {
                for d in result["deliveries"].as_array().into_iter().flatten() {
                    acked.insert(d["id"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        batches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(load.pace).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    let started = Instant::now();
    let rx = Receiver::start_with(Mode::RandomDelay(Duration::from_millis(15))).await;
    let sub = |name: &str, events: &[&str]| {
        Sub::new(name, &rx.url(&format!("/{name}")))
            .events(events)
            .max_in_flight(32)
            .attempts(1000)
            .intervals("100ms", "500ms")
            .timeout("3s")
    };
    let mut h = Herald::start(
        Config::default()
            .sub(sub("all", &["*"]))
            .sub(sub("even", &["EVEN"])),
    )
    .await;

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let batches = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(produce(
                h.http.clone(),
                h.base.clone(),
                Load {
                    batch: BATCH_SIZE,
                    pad: 64,
                    // Spread the ingest over the kill rounds.
                    pace: Duration::from_millis(100),
                    max_batches: BATCHES,
                },
                Arc::clone(&acked),
                Arc::clone(&batches),
                Arc::clone(&stop),
            ))
        })
        .collect();

    let mut rng = Rng::seeded();
    let mut kills_with_requests_in_flight = 0;
    let mut kills_during_ingest = 0;
    for _ in 0..ROUNDS {
        // A random moment: let it ingest and deliver for a while, then kill it.
        tokio::time::sleep(Duration::from_millis(rng.range(250, 1200))).await;
        if rx.in_flight() > 0 {
            kills_with_requests_in_flight += 1;
        }
        if batches.load(Ordering::SeqCst) < BATCHES {
            kills_during_ingest += 1;
        }
        h.sigkill();
        h.restart().await;
    }
    wait_for(
        Duration::from_secs(30),
        "the producers to finish",
        || async { (batches.load(Ordering::SeqCst) >= BATCHES).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() >= BATCHES * BATCH_SIZE,
        "only {} acknowledged",
        acked.len()
    );

    let missing = wait_for(
        Duration::from_secs(40),
        "every acknowledged delivery",
        || async {
            let counts = rx.counts();
            let missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
            (missing == 0).then_some(missing)
        },
    )
    .await;
    assert_eq!(missing, 0);

    // Nothing pending or in flight once everything arrived.
    wait_for(Duration::from_secs(20), "empty queues", || async {
        let (_, subs) = h.get("/v1/subscribers").await;
        subs.as_array()
            .unwrap()
            .iter()
            .all(|s| s["queued"] == 0 && s["in_flight"] == 0 && s["dead"] == 0)
            .then_some(())
    })
    .await;
    let metrics = h.metrics().await;
    for state in ["pending", "in_flight"] {
        assert_eq!(
            metric_sum(
                &metrics,
                "herald_queue_depth",
                &[&format!("state=\"{state}\"")]
            ),
            Some(0.0),
            "{state}:\n{metrics}"
        );
    }
    assert_eq!(metric_sum(&metrics, "herald_in_flight", &[]), Some(0.0));

    let counts = rx.counts();
    let requests: usize = acked.iter().map(|id| counts[id]).sum();
    let duplicates = requests - acked.len();
    let unacked_seen = counts.keys().filter(|id| !acked.contains(*id)).count();
    println!(
        "crash test: {ROUNDS} SIGKILL rounds ({kills_with_requests_in_flight} with requests in flight, \
         {kills_during_ingest} during ingest), \
         {} deliveries acknowledged, all {} delivered, {duplicates} duplicate requests, \
         {unacked_seen} delivered ids whose 202 was lost to a kill, {:.1}s",
        acked.len(),
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills_with_requests_in_flight > 0,
        "no kill hit a delivery in flight"
    );
    h.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 6: the kill campaign.

/// Events per batch of the campaign's producer, and the pause between its batches: about what
/// 20 in flight at 20 ms can deliver (1000/s), so the subscriber's window stays about full.
const CAMPAIGN_BATCH: usize = 50;
const CAMPAIGN_PACE: Duration = Duration::from_millis(50);
/// The subscriber's `max_in_flight`: at most this many deliveries are in flight at a kill.
const CAMPAIGN_IN_FLIGHT: u32 = 20;

/// What a campaign measured.
#[derive(Debug)]
struct Campaign {
    kills: usize,
    acknowledged: usize,
    lost: usize,
    /// Requests beyond the first, over every delivery id the receiver saw.
    duplicates: usize,
    /// Requests open at the receiver at the moments of the kills, summed.
    in_flight_at_kills: usize,
}

/// `kills` SIGKILLs of the real daemon under load (a producer posting batches, a receiver
/// answering after 20 ms, 20 in flight), restarting it on the same store each time.
async fn kill_campaign(kills: usize) -> Campaign {
    let started = Instant::now();
    let rx = Receiver::start_with(Mode::Delay(Duration::from_millis(20), 200)).await;
    let mut h = Herald::start(
        Config::default().sub(
            Sub::new("s", &rx.url("/s"))
                .max_in_flight(CAMPAIGN_IN_FLIGHT)
                .attempts(1000)
                .intervals("100ms", "1s")
                .timeout("3s"),
        ),
    )
    .await;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce(
        h.http.clone(),
        h.base.clone(),
        Load {
            batch: CAMPAIGN_BATCH,
            pad: 200,
            pace: CAMPAIGN_PACE,
            max_batches: usize::MAX,
        },
        Arc::clone(&acked),
        Arc::new(AtomicUsize::new(0)),
        Arc::clone(&stop),
    ));
    let mut rng = Rng::seeded();
    let mut in_flight_at_kills = 0;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.range(300, 900))).await;
        in_flight_at_kills += rx.in_flight();
        h.sigkill();
        h.restart().await;
    }
    // A little more load after the last restart, then let everything drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    producer.await.unwrap();
    let acked = acked.lock().clone();
    let until = Instant::now() + Duration::from_secs(60);
    let lost = loop {
        let succeeded = rx.succeeded();
        let lost = acked.iter().filter(|id| !succeeded.contains(*id)).count();
        if lost == 0 || Instant::now() > until {
            break lost;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The receiver may still see retries of deliveries whose 202 was lost: wait for quiet.
    wait_for(Duration::from_secs(30), "an empty queue", || async {
        let s = h.subscriber("s").await;
        (s["queued"] == 0 && s["in_flight"] == 0).then_some(())
    })
    .await;
    let counts = rx.counts();
    let requests: usize = counts.values().sum();
    let c = Campaign {
        kills,
        acknowledged: acked.len(),
        lost,
        duplicates: requests - counts.len(),
        in_flight_at_kills,
    };
    println!(
        "kill campaign: {} kills, {} acknowledged, {} lost, {} duplicates, {:.1} duplicates per \
         kill, {:.1} requests in flight per kill at the kill, {:.0}s",
        c.kills,
        c.acknowledged,
        c.lost,
        c.duplicates,
        c.duplicates as f64 / c.kills as f64,
        c.in_flight_at_kills as f64 / c.kills as f64,
        started.elapsed().as_secs_f64()
    );
    h.assert_no_panic();
    c
}

fn check_campaign(c: &Campaign) {
    assert_eq!(c.lost, 0, "acknowledged deliveries lost: {c:?}");
    assert!(c.acknowledged > 100 * c.kills, "too little load: {c:?}");
    // Item 5's target: a kill repeats what was in flight and the outcomes still waiting for
    // their group commit, not the last half second of outcomes. Herald has at most
    // `max_in_flight` (20) deliveries in flight; with the receiver's 20 ms, answers arrive at
    // about one per millisecond, so a group commit whose fsync takes 20–40 ms on a busy disk
    // holds up to as many again. Three times `max_in_flight` per kill allows both; losing the
    // last 500 ms of outcomes (the defect) repeats about 500 per kill.
    assert!(
        c.duplicates <= 3 * CAMPAIGN_IN_FLIGHT as usize * c.kills,
        "more duplicates per kill than three times max_in_flight: {c:?}"
    );
}

/// The campaign's CI size: a few kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_campaign_loses_nothing() {
    check_campaign(&kill_campaign(3).await);
}

/// The full campaign: `HERALD_KILLS` kills (default 100). Run it with
/// `HERALD_KILLS=100 cargo test --release --test e2e kill_campaign_full -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long; run on demand"]
async fn kill_campaign_full() {
    let kills = std::env::var("HERALD_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(100);
    check_campaign(&kill_campaign(kills).await);
}
