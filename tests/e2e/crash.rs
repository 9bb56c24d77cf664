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

/// Posts batches until `BATCHES` were acknowledged or `stop`; records every acknowledged id.
async fn produce(
    http: reqwest::Client,
    base: String,
    acked: Arc<Mutex<HashSet<String>>>,
    batches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) && batches.load(Ordering::SeqCst) < BATCHES {
        let events: Vec<Value> = (0..BATCH_SIZE)
            .map(|i| {
                seq += 1;
                let kind = if i % 2 == 0 { "EVEN" } else { "ODD" };
                json!({"event_type": kind, "payload": {"seq": seq, "pad": "x".repeat(64)}})
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
            // Killed or restarting: nothing acknowledged, try again shortly.
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
        // Spread the ingest over the kill rounds.
        tokio::time::sleep(Duration::from_millis(100)).await;
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
