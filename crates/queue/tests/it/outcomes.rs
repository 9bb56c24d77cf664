//! Item 5 of issue 11: state changes nobody waits for (attempt outcomes, releases, pauses) ride
//! the group commit, so one recorded more than 50 ms before a `SIGKILL` survives it. A child
//! process (this test binary, re-executed) opens the store with the daemon's options, records
//! outcomes, says so on a marker file and idles; the parent kills it 60 ms later and checks the
//! reopened store. A retry scheduled just before the kill keeps its backoff: after the restart it
//! is not due at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryId, DeliveryStatus, DeliveryStore,
    Outcome, SubscriberId, UnixMillis,
};
use herald_queue::{SledOptions, SledStore};

use super::support::{block_on, event, sub};

const CHILD_ENV: &str = "HERALD_QUEUE_OUTCOME_CHILD";
/// The time between the last outcome and the kill.
const BEFORE_KILL: Duration = Duration::from_millis(60);
/// The backoff of the retried delivery.
const BACKOFF: Duration = Duration::from_secs(4);
const ROUNDS: u64 = 3;

fn attempt(at: UnixMillis, status: u16) -> AttemptRecord {
    AttemptRecord {
        attempt: 1,
        at,
        status_code: Some(status),
        error: (status >= 300).then(|| format!("HTTP {status}")),
        duration_ms: 1,
    }
}

fn claim(store: &SledStore, s: &SubscriberId, now: UnixMillis) -> Vec<ClaimedDelivery> {
    block_on(store.claim(ClaimRequest {
        subscriber: s,
        now,
        lease_until: now.plus(Duration::from_secs(60)),
        max: 10,
        cap: 500,
    }))
    .unwrap()
}

/// The child's workload: runs only when re-executed by the parent.
#[test]
fn outcome_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // a normal test run: nothing to do here
    };
    let (dir, marker) = spec.split_once('|').unwrap();
    // The daemon's options: sled's own flush every 500 ms.
    let store = SledStore::open(dir, SledOptions::default()).unwrap();
    let s = sub("s");
    let now = UnixMillis::now();
    let receipts =
        block_on(store.enqueue((0..4).map(|_| event(&[&s], now.0, b"{}")).collect())).unwrap();
    let ids: Vec<DeliveryId> = receipts.iter().map(|r| r.deliveries[0].id).collect();
    let claimed = claim(&store, &s, now);
    assert_eq!(claimed.len(), 4);
    let lease = |id: DeliveryId| claimed.iter().find(|c| c.id == id).unwrap().lease;
    let now = UnixMillis::now();
    let retry_at = now.plus(BACKOFF);
    let finish = |id, status, outcome| {
        block_on(store.finish_attempt(id, lease(id), attempt(now, status), outcome)).unwrap();
    };
    finish(ids[0], 200, Outcome::Delivered);
    finish(ids[1], 410, Outcome::Dead);
    finish(ids[2], 503, Outcome::RetryAt(retry_at));
    block_on(store.release(ids[3], lease(ids[3]), retry_at)).unwrap();
    block_on(store.set_paused(&sub("p"), Some("held"))).unwrap();
    // Recorded: tell the parent, then idle until killed (no further flush is caused by us).
    let line: Vec<String> = ids.iter().map(ToString::to_string).collect();
    std::fs::write(marker, format!("{} {}\n", line.join(" "), retry_at.0)).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn run_child(exe: &Path, dir: &Path, marker: &Path) -> (Vec<DeliveryId>, UnixMillis) {
    let mut child = Command::new(exe)
        .args([
            "outcomes::outcome_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{}", dir.display(), marker.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(marker) {
            if text.ends_with('\n') {
                break text;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited by itself with {status}");
        }
        assert!(Instant::now() < until, "the child recorded nothing");
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(BEFORE_KILL);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut fields: Vec<&str> = text.split_whitespace().collect();
    let retry_at = UnixMillis(fields.pop().unwrap().parse().unwrap());
    let ids = fields.iter().map(|f| f.parse().unwrap()).collect();
    (ids, retry_at)
}

#[test]
fn outcomes_recorded_60ms_before_sigkill_survive_it() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..ROUNDS {
        // A fresh store per round: nothing of an earlier round can be flushed by this one.
        let dir: PathBuf = tmp.path().join(format!("queue-{round}"));
        let marker = tmp.path().join(format!("recorded-{round}"));
        let (ids, retry_at) = run_child(&exe, &dir, &marker);

        let store = SledStore::open(&dir, super::support::options()).unwrap();
        let status = |id: DeliveryId| block_on(store.get(id)).unwrap().unwrap().record;
        let lost = |what: &str| {
            format!("round {round}: the {what} recorded {BEFORE_KILL:?} before SIGKILL was lost")
        };
        let d = status(ids[0]);
        assert_eq!(d.status, DeliveryStatus::Delivered, "{}", lost("delivery"));
        let d = status(ids[1]);
        assert_eq!(d.status, DeliveryStatus::Dead, "{}", lost("dead-letter"));
        for (i, what) in [(2, "retry"), (3, "release")] {
            let d = status(ids[i]);
            assert_eq!(d.status, DeliveryStatus::Pending);
            assert_eq!(d.next_attempt_at, Some(retry_at), "{}", lost(what));
        }
        assert_eq!(block_on(store.counts(&sub("s"))).unwrap().pending, 2);
        // The retry keeps its backoff: nothing is due now, both are due at `retry_at`.
        let now = UnixMillis::now();
        assert!(now < retry_at, "the test took longer than the backoff");
        let s: SubscriberId = sub("s");
        assert!(claim(&store, &s, now).is_empty());
        assert_eq!(block_on(store.next_due(&s)).unwrap(), Some(retry_at));
        assert_eq!(
            block_on(store.paused()).unwrap(),
            vec![(sub("p"), "held".to_owned())],
            "{}",
            lost("pause")
        );
    }
}
