//! Memory and disk footprint of the sled queue (`herald-queue`).
//!
//! 1. Enqueues a backlog (default 1,000,000 events of 500 bytes, one subscriber) and prints peak
//!    RSS (`VmHWM`), current RSS and the size on disk.
//! 2. Reopens the store (recovery scan of the whole backlog) and prints how long it took.
//! 3. Drains it (claim + delivered), purges, and prints the same figures again.
//! 4. Churns: enqueue + deliver + purge repeatedly, printing the size on disk per round, to show
//!    whether the file stays bounded.
//!
//! Run: `cargo run --release --example queue_footprint -- [events] [churn_rounds] [churn_events]`
//! (defaults 1000000 10 100000). Set `HERALD_FOOTPRINT_DIR` to place the store elsewhere than
//! the system temp directory, `HERALD_FOOTPRINT_CACHE_MB` to try another sled cache size.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_core::{
    AttemptRecord, ClaimRequest, DeliveryStore, NewEvent, Outcome, SubscriberId, UnixMillis,
};
use herald_queue::{SledOptions, SledStore};

/// Measured with the allocator the `herald` binary ships with (see `src/main.rs`).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(label: &str, store: &SledStore, rt: &tokio::runtime::Runtime) {
    println!(
        "{label:<34} peak RSS {:>7.1} MiB | RSS {:>7.1} MiB | size_on_disk {:>8.1} MiB | files {:>8.1} MiB",
        status_kb("VmHWM:") as f64 / 1024.0,
        status_kb("VmRSS:") as f64 / 1024.0,
        mib(rt.block_on(store.size_on_disk()).ok().flatten().unwrap_or(0)),
        mib(dir_bytes(store.path())),
    );
}

fn payload(len: usize) -> Bytes {
    let mut v = br#"{"processId":"8263a268-5388-492a-bca2-28e1ff4a69f0","pad":""#.to_vec();
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

fn enqueue(
    store: &SledStore,
    rt: &tokio::runtime::Runtime,
    sub: &SubscriberId,
    n: u64,
    body: &Bytes,
) {
    let now = UnixMillis::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(1000);
        let events = (0..batch)
            .map(|_| NewEvent {
                event_type: "PROCESS_STATE_FINISHED".into(),
                payload: body.clone(),
                subscribers: vec![sub.clone()],
                idempotency_key: None,
                received_at: now,
                ordering_key: None,
                ordered_for: Vec::new(),
                traceparent: None,
            })
            .collect();
        // Durable when it returns (group commit).
        rt.block_on(store.enqueue(events)).expect("enqueue");
        left -= batch;
    }
}

fn drain(store: &SledStore, rt: &tokio::runtime::Runtime, sub: &SubscriberId) -> u64 {
    let far = UnixMillis(u64::MAX / 4);
    let mut done = 0;
    loop {
        let claimed = rt
            .block_on(store.claim(ClaimRequest {
                subscriber: sub,
                now: far,
                lease_until: far.plus(Duration::from_secs(30)),
                max: 1000,
                cap: u32::MAX,
            }))
            .expect("claim");
        if claimed.is_empty() {
            return done;
        }
        for c in claimed {
            let attempt = AttemptRecord {
                attempt: c.attempt,
                at: UnixMillis::now(),
                status_code: Some(204),
                error: None,
                duration_ms: 2,
            };
            rt.block_on(store.finish_attempt(c.id, c.lease, attempt, Outcome::Delivered))
                .expect("finish");
            done += 1;
        }
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let events = args.next().unwrap_or(1_000_000);
    let rounds = args.next().unwrap_or(10);
    let churn = args.next().unwrap_or(100_000);

    let base = std::env::var_os("HERALD_FOOTPRINT_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let mut options = SledOptions::default();
    if let Some(mb) = std::env::var("HERALD_FOOTPRINT_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        options.cache_capacity_bytes = mb * 1024 * 1024;
    }
    println!(
        "store in {} | sled cache {} MiB | {events} events of 500 bytes",
        dir.path().display(),
        options.cache_capacity_bytes / (1024 * 1024)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sub = SubscriberId::new("acme").expect("id");
    let body = payload(500);

    let store = SledStore::open(dir.path(), options.clone()).expect("open");
    report("empty", &store, &rt);
    let t = Instant::now();
    enqueue(&store, &rt, &sub, events, &body);
    let took = t.elapsed();
    println!(
        "enqueued {events} in {took:.1?} ({:.0}/s, batches of 1000, each synced)",
        events as f64 / took.as_secs_f64()
    );
    report("backlog", &store, &rt);
    drop(store);

    let t = Instant::now();
    let store = SledStore::open(dir.path(), options.clone()).expect("reopen");
    println!("reopened in {:.1?}: {:?}", t.elapsed(), store.open_report());
    report("backlog after reopen", &store, &rt);

    let t = Instant::now();
    let drained = drain(&store, &rt, &sub);
    let took = t.elapsed();
    println!(
        "drained {drained} in {took:.1?} ({:.0}/s)",
        drained as f64 / took.as_secs_f64()
    );
    report("drained", &store, &rt);
    let t = Instant::now();
    let stats = rt
        .block_on(store.purge(UnixMillis::now().plus(Duration::from_secs(86_400))))
        .expect("purge");
    rt.block_on(store.sync()).expect("sync");
    println!("purged in {:.1?}: {stats:?}", t.elapsed());
    report("drained + purged", &store, &rt);

    println!("churn: {rounds} rounds of enqueue {churn} + deliver + purge");
    for round in 1..=rounds {
        enqueue(&store, &rt, &sub, churn, &body);
        drain(&store, &rt, &sub);
        rt.block_on(store.purge(UnixMillis::now().plus(Duration::from_secs(86_400))))
            .expect("purge");
        rt.block_on(store.sync()).expect("sync");
        report(&format!("churn round {round}"), &store, &rt);
    }
}
