//! Crash test: a child process (this test binary, re-executed) enqueues from concurrent
//! producers and records every delivery whose `sync` returned; the parent `SIGKILL`s it at a
//! random moment, reopens the store and checks that every acknowledged delivery is there with
//! its exact payload. Repeated on the same directory, so recovery of recovery is exercised too.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_core::{
    AttemptRecord, ClaimRequest, DeliveryId, DeliveryStatus, DeliveryStore, EventId, ListQuery,
    Outcome, QueueCounts, UnixMillis,
};
use herald_queue::{SledOptions, SledStore};

use super::support::{event, sub};

const CHILD_ENV: &str = "HERALD_QUEUE_CRASH_CHILD";
const ROUNDS: usize = 15;
const PRODUCERS: u64 = 8;

/// The payload producer `p` sends as its `n`th event: varied length, fully determined by (p, n).
fn payload(p: u64, n: u64) -> Vec<u8> {
    let pad = ((p * 7919 + n * 104_729) % 900) as usize;
    format!(
        "{{\"producer\":{p},\"n\":{n},\"pad\":\"{}\"}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

struct Ack {
    kept: DeliveryId,
    event: EventId,
    p: u64,
    n: u64,
}

fn parse_acks(text: &str) -> Vec<Ack> {
    // A kill can cut the last line short: only newline-terminated lines count.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "bad ack line {line:?}");
            assert_eq!(f[0], "ACK");
            Ack {
                kept: f[1].parse().unwrap(),
                event: f[2].parse().unwrap(),
                p: f[3].parse().unwrap(),
                n: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// The child's workload. Runs only when re-executed by the parent.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // a normal test run: nothing to do here
    };
    let (dir, acks, round) = {
        let mut parts = spec.splitn(3, '|');
        (
            PathBuf::from(parts.next().unwrap()),
            PathBuf::from(parts.next().unwrap()),
            parts.next().unwrap().parse::<u64>().unwrap(),
        )
    };
    let store = Arc::new(
        SledStore::open(
            &dir,
            SledOptions {
                cache_capacity_bytes: 16 << 20,
                flush_every_ms: Some(50),
            },
        )
        .unwrap(),
    );
    let log = Arc::new(parking_lot::Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&acks)
            .unwrap(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (kept, churn) = (sub("kept"), sub("churn"));
        // A consumer that keeps the "churn" subscriber's deliveries moving through every state.
        let consumer = {
            let store = Arc::clone(&store);
            let churn = churn.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    let now = UnixMillis::now();
                    let claimed = store
                        .claim(ClaimRequest {
                            subscriber: &churn,
                            now,
                            lease_until: now.plus(Duration::from_secs(60)),
                            max: 32,
                            cap: u32::MAX,
                        })
                        .await
                        .unwrap();
                    for c in claimed {
                        i += 1;
                        let outcome = match i % 4 {
                            0 => Outcome::RetryAt(now),
                            1 => Outcome::Dead,
                            _ => Outcome::Delivered,
                        };
                        let a = AttemptRecord {
                            attempt: c.attempt,
                            at: now,
                            status_code: Some(200),
                            error: None,
                            duration_ms: 0,
                        };
                        store
                            .finish_attempt(c.id, c.lease, a, outcome)
                            .await
                            .unwrap();
                    }
                    if i % 64 == 0 {
                        store.redrive(&churn, now).await.unwrap();
                    }
                    store
                        .purge(now.minus(Duration::from_millis(20)))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let store = Arc::clone(&store);
            let log = Arc::clone(&log);
            let (kept, churn) = (kept.clone(), churn.clone());
            producers.push(tokio::spawn(async move {
                let p = round * 100 + p;
                for n in 0.. {
                    let mut e = event(&[&kept, &churn], UnixMillis::now().0, &payload(p, n));
                    if n % 3 == 0 {
                        e.idempotency_key = Some(format!("{p}-{n}"));
                    }
                    let r = store.enqueue(vec![e]).await.unwrap().remove(0);
                    store.sync().await.unwrap();
                    let line = format!("ACK {} {} {p} {n}\n", r.deliveries[0].id, r.event_id);
                    log.lock().write_all(line.as_bytes()).unwrap();
                }
            }));
        }
        for p in producers {
            p.await.unwrap();
        }
        consumer.abort();
    });
}

fn check_store(dir: &Path, acked: &[Ack]) -> u64 {
    let store =
        super::support::Store::new(SledStore::open(dir, super::support::options()).unwrap());
    let report = store.open_report();
    assert_eq!(report.corrupt_records, 0, "{report:?}");
    let kept = sub("kept");
    for ack in acked {
        let d = store
            .get(ack.kept)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged delivery {} lost", ack.kept));
        // "kept" deliveries are never consumed: they are pending (in flight ones were recovered).
        assert_eq!(d.record.status, DeliveryStatus::Pending);
        assert_eq!(d.record.event_id, ack.event);
        let body = store.event_payload(ack.event).unwrap().unwrap();
        assert_eq!(
            &body[..],
            &payload(ack.p, ack.n)[..],
            "payload of {}",
            ack.event
        );
    }
    // Counts rebuilt at open agree with a full listing, and nothing is in flight.
    let mut by_sub: std::collections::HashMap<String, QueueCounts> = Default::default();
    let mut cursor = None;
    loop {
        let page = store
            .list(&ListQuery {
                limit: 1000,
                cursor,
                ..ListQuery::default()
            })
            .unwrap();
        for d in page.deliveries.iter().map(|d| &d.record) {
            let c = by_sub.entry(d.subscriber.to_string()).or_default();
            match d.status {
                DeliveryStatus::Pending => c.pending += 1,
                DeliveryStatus::InFlight => c.in_flight += 1,
                DeliveryStatus::Delivered => c.delivered += 1,
                DeliveryStatus::Dead => c.dead += 1,
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for (id, counts) in store.all_counts() {
        assert_eq!(counts.in_flight, 0);
        assert_eq!(
            by_sub.get(id.as_str()).copied().unwrap_or_default(),
            counts,
            "{id}"
        );
    }
    store.counts(&kept).pending
}

#[test]
fn acknowledged_enqueues_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("queue");
    let exe = std::env::current_exe().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    let mut acked = Vec::new();
    for round in 0..ROUNDS as u64 {
        let ack_file = dir.path().join(format!("acks-{round}"));
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}|{}|{round}", data.display(), ack_file.display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rand() % 450));
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited by itself with {status} (round {round})");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let text = std::fs::read_to_string(&ack_file).unwrap_or_default();
        let round_acks = parse_acks(&text);
        eprintln!("round {round}: {} acknowledged", round_acks.len());
        acked.extend(round_acks);
        let pending_kept = check_store(&data, &acked);
        assert!(pending_kept >= acked.len() as u64);
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged only {} events: the test proved little",
        acked.len()
    );
    eprintln!(
        "{} acknowledged deliveries checked in {:?}",
        acked.len(),
        started.elapsed()
    );
}
