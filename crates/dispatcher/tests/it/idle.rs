//! Idle cost: 10,000 configured subscribers with nothing queued use (almost) no CPU.
//!
//! The measurement runs in a child process (this test binary re-run with a filter), so the
//! process CPU time it reads belongs to that scenario alone and not to tests running beside it.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{serial_blocking, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

const CHILD_ENV: &str = "HERALD_DISPATCHER_IT_IDLE_CHILD";
const SUBSCRIBERS: usize = 10_000;
const IDLE: Duration = Duration::from_secs(2);
const MAX_CPU_SHARE: f64 = 0.05;

#[test]
fn idle_subscribers_cost_no_cpu() {
    let _serial = serial_blocking();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["idle::child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("idle cpu"),
        "the child did not measure: {stdout}"
    );
}

/// The child's scenario; a no-op unless started by [`idle_subscribers_cost_no_cpu`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rx = Receiver::start(Mode::status(204)).await;
    let configs = (0..SUBSCRIBERS)
        .map(|i| subscriber(&format!("idle-{i:05}"), &rx))
        .collect();
    let started = Instant::now();
    let h = Harness::start(configs).await;
    let start_up = started.elapsed();
    assert_eq!(h.dispatcher.stats().await.unwrap().len(), SUBSCRIBERS);
    // Let every pump make its first (empty) claim and park.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu_before = process_cpu();
    let wall = Instant::now();
    tokio::time::sleep(IDLE).await;
    let cpu = process_cpu() - cpu_before;
    let wall = wall.elapsed();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "{SUBSCRIBERS} subscribers: start-up {start_up:?}; idle cpu {cpu:?} over {wall:?} = {:.2} %",
        share * 100.0
    );
    assert_eq!(rx.count(), 0);
    assert!(share < MAX_CPU_SHARE, "idle CPU share {share:.3}");
    h.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// User + system CPU time of this process (all threads), from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name may contain spaces; fields after it are space-separated.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux architecture Herald targets.
    Duration::from_millis(ticks * 10)
}
