//! Issue 11, item 0: a `202` means the event is fsync'd (SPEC §3), checked at the system-call
//! level; so does the `200` of a pause (a restart keeps it). The daemon runs under `strace -f -y`; the test sends one event with a unique marker
//! and fails unless an `fsync`/`fdatasync` of a file in the store directory *completes* after
//! the `pwrite64` that carried the event and before the `202` was written to the socket.
//!
//! A `SIGKILL` test cannot see this (the page cache survives a process kill); only the traced
//! order of the system calls can.
//!
//! Needs `strace` (Debian package `strace`) and ptrace permission. Without them the test says
//! so and passes, unless `CI` is set: then it fails, so CI cannot skip it silently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Config, Receiver, Sub, HERALD};

/// The system calls traced: the store's writes and syncs, and the API's socket writes.
const TRACED: &str = "trace=pwrite64,sync_file_range,fsync,fdatasync,writev,write,sendto";

/// Kills the traced daemon and strace if the test ends early.
struct Traced {
    strace: Child,
}

impl Traced {
    /// The pid of the daemon: strace's only child.
    fn daemon_pid(&self) -> Option<u32> {
        let pid = self.strace.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// SIGTERM to the daemon (strace then exits with it), waiting at most 20 s.
    fn stop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.strace.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the traced daemon did not stop within 20 s");
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Ok(None) = self.strace.try_wait() {
            if let Some(pid) = self.daemon_pid() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = self.strace.kill();
            let _ = self.strace.wait();
        }
    }
}

/// Whether strace can trace here; `Err` says why not.
fn strace_usable() -> Result<(), String> {
    match Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "strace cannot trace here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!(
            "strace is not installed (Debian package `strace`): {e}"
        )),
    }
}

/// One traced system call, in the order strace saw it.
#[derive(Debug, PartialEq)]
enum Call {
    /// A `pwrite64` to a file in the store whose data contains the marker.
    MarkedWrite,
    /// An `fsync`/`fdatasync` of a file in the store that returned 0.
    SyncDone,
    /// The status line of a response with this status, written to a socket.
    Answer(u16),
}

/// Reads the trace: the calls that matter, in order. `store` is the store directory's path as
/// strace prints it (`-y` names each descriptor's file).
fn parse_trace(trace: &str, store: &str, marker: &str) -> Vec<(Call, String)> {
    let in_store = |line: &str| line.contains(&format!("<{store}/"));
    // A sync that strace saw start (`<unfinished ...>`) and end later, by thread id.
    let mut open_syncs: HashMap<String, bool> = HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let tid = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let is_sync = line.contains(" fsync(") || line.contains(" fdatasync(");
        if is_sync && line.ends_with("<unfinished ...>") {
            open_syncs.insert(tid, in_store(line));
        } else if is_sync {
            if in_store(line) && line.ends_with("= 0") {
                calls.push((Call::SyncDone, line.to_owned()));
            }
        } else if line.contains("<... fsync resumed>") || line.contains("<... fdatasync resumed>") {
            if open_syncs.remove(&tid) == Some(true) && line.ends_with("= 0") {
                calls.push((Call::SyncDone, line.to_owned()));
            }
        } else if line.contains(" pwrite64(") && in_store(line) && line.contains(marker) {
            calls.push((Call::MarkedWrite, line.to_owned()));
        } else if let Some(at) = line.find("HTTP/1.1 ") {
            let status = line[at + 9..].get(..3).and_then(|s| s.parse().ok());
            calls.push((Call::Answer(status.unwrap_or(0)), line.to_owned()));
        }
    }
    calls
}

fn short(line: &str) -> &str {
    &line[..line.len().min(160)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_202_is_answered_only_after_an_fsync_of_the_store() {
    // scripts/test installs strace; without it this test fails, it never skips.
    if let Err(why) = strace_usable() {
        panic!("{why}: install it (apt-get install strace) or run scripts/test");
    }
    let rx = Receiver::start().await;
    let config = Config::default()
        .sled_only()
        .sub(Sub::new("s", &rx.url("/s")));
    let dir = tempfile::tempdir().unwrap();
    let config_path = config.write(dir.path());
    let store: PathBuf = dir.path().join(&config.storage);
    let trace_path = dir.path().join("trace");
    let log = std::fs::File::create(dir.path().join("herald.log")).unwrap();
    let strace = Command::new("strace")
        .args(["-f", "-tt", "-y", "-s", "1000000", "-e", TRACED, "-o"])
        .arg(&trace_path)
        .arg(HERALD)
        .arg("run")
        .arg("-c")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .env_remove("HERALD_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut traced = Traced { strace };
    let base = format!("http://127.0.0.1:{}", config.port);
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            traced.strace.try_wait().unwrap().is_none(),
            "the traced daemon exited"
        );
        assert!(
            Instant::now() < until,
            "the traced daemon never got healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let marker = format!("durability-marker-{}", std::process::id());
    let res = http
        .post(format!("{base}/v1/events"))
        .json(&json!({"event_type": "T", "payload": {"marker": marker}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // Pausing claims durability too ("a restart keeps the pause").
    let reason = format!("pause-marker-{}", std::process::id());
    let res = http
        .post(format!("{base}/v1/subscribers/s/pause"))
        .json(&json!({ "reason": reason }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    traced.stop();

    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let store = canonical(&store);
    synced_before_answer(&trace, &store, &marker, 202, "the event");
    synced_before_answer(&trace, &store, &reason, 200, "the pause");
}

/// Fails unless, after the last write of `marker` into the store that precedes the first
/// `status` answer following a write of it, an fsync of the store completed before that answer.
fn synced_before_answer(trace: &str, store: &str, marker: &str, status: u16, what: &str) {
    let calls = parse_trace(trace, store, marker);
    let first_write = calls
        .iter()
        .position(|(c, _)| *c == Call::MarkedWrite)
        .unwrap_or_else(|| panic!("no pwrite64 of {what} into {store} in the trace"));
    let answer = first_write
        + calls[first_write..]
            .iter()
            .position(|(c, _)| *c == Call::Answer(status))
            .unwrap_or_else(|| panic!("no {status} answer after {what} was written to the store: answered before it reached the file"));
    let written = calls[..answer]
        .iter()
        .rposition(|(c, _)| *c == Call::MarkedWrite)
        .unwrap_or(first_write);
    let synced = calls[written..answer]
        .iter()
        .any(|(c, _)| *c == Call::SyncDone);
    assert!(
        synced,
        "the {status} for {what} was written before any fsync/fdatasync of the store completed \
         after its write:\n  write: {}\n  {status}:   {}\n(sync calls in the whole trace: {})",
        short(&calls[written].1),
        short(&calls[answer].1),
        calls.iter().filter(|(c, _)| *c == Call::SyncDone).count()
    );
}

/// The path as strace's `-y` prints it (symlinks resolved).
fn canonical(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
