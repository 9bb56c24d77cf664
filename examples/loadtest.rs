//! End-to-end load test: a receiver on loopback, the real `herald` binary as a child process,
//! and a load generator posting to its HTTP ingest API. Prints one row per scenario.
//!
//! ```text
//! cargo build --release && cargo run --release --example loadtest
//! cargo run --release --example loadtest -- --subscribers 100 --receiver-latency-ms 20
//! ```
//!
//! Phases of a scenario (Herald, the receiver and the load generator share the machine):
//! 1. **live**: `--events` single events, `--concurrency` at a time, through `POST /v1/events`
//!    while Herald delivers them; reports ingest events/s, end-to-end deliveries/s and the
//!    latency from sending the ingest request (so including the durable commit behind the 202)
//!    to the delivery reaching the receiver;
//! 2. **batch ingest**: with every subscriber paused, `--backlog` events through
//!    `POST /v1/events/batch` (1000 per request, 4 requests at a time): events/s;
//! 3. **drain**: resume, time until that backlog has reached the receiver: deliveries/s;
//! 4. **latency at 20 % load**: events at a fifth of the live delivery rate for a few
//!    seconds: latency p50/p99/max;
//! 5. peak RSS of the Herald process (VmHWM) and the store's size on disk.
//!
//! The cost of span export (`[telemetry]`, SPEC §10) on the end-to-end path:
//!
//! ```text
//! cargo run --release --example loadtest -- --events 20000 --otlp-rounds 3
//! ```
//!
//! runs only the live phase, `--otlp-rounds` times without and with span export, alternating
//! (a fresh Herald, store and receiver each time), and prints each run (with Herald's CPU time
//! per event, from `/proc`) and the medians. With export, Herald posts its spans to an
//! OTLP/HTTP sink in this process that keeps the bodies and counts their spans after the run
//! (after Herald's shutdown flush), so each run also reports how many spans arrived. `--otlp`
//! runs the normal phases with export on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The herald binary (default: next to this example, i.e. target/<profile>/herald).
    #[arg(long)]
    herald_bin: Option<PathBuf>,
    /// Subscribers (each receives every event).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Delay of the receiver before it answers 204.
    #[arg(long, default_value_t = 0)]
    receiver_latency_ms: u64,
    /// Payload size in bytes (approximate, JSON).
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Single events in the live phase.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent single-event producers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events in the batch-ingest and drain phases.
    #[arg(long, default_value_t = 20_000)]
    backlog: usize,
    /// max_in_flight of each subscriber.
    #[arg(long, default_value_t = 500)]
    max_in_flight: u32,
    /// Soak mode: instead of the phases, send `--soak-rate` events/s for this long and sample
    /// Herald's RSS, open file descriptors and store size.
    #[arg(long, default_value_t = 0)]
    soak_seconds: u64,
    /// Events per second in soak mode.
    #[arg(long, default_value_t = 2000)]
    soak_rate: u64,
    /// `[storage] retention` of the Herald under test.
    #[arg(long, default_value = "1d")]
    retention: String,
    /// Export spans (`[telemetry]`) to an OTLP/HTTP sink in this process.
    #[arg(long)]
    otlp: bool,
    /// Instead of the phases: the live phase this many times without and with span export,
    /// alternating, then the medians.
    #[arg(long, default_value_t = 0)]
    otlp_rounds: usize,
}

/// What the receiver saw: arrival time per webhook-id (first arrival) and the total count.
#[derive(Default)]
struct Seen {
    first: Mutex<HashMap<String, Instant>>,
    total: AtomicU64,
}

struct Receiver {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

/// Answers one webhook: 204 (after the configured delay), noting the first arrival of its
/// `webhook-id`. The body is not read beyond what hyper needs to keep the connection.
async fn receive(
    request: hyper::Request<hyper::body::Incoming>,
    seen: Arc<Seen>,
    delay: Duration,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let now = Instant::now();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(id) = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    {
        let mut first = seen.first.lock();
        if !first.contains_key(id) {
            first.insert(id.to_owned(), now);
        }
    }
    seen.total.fetch_add(1, Ordering::Relaxed);
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// The receiver: hyper's HTTP/1.1 server on loopback, one task per connection, no framework
/// on top (it shares the two cores with Herald, like the reference's nginx did).
async fn start_receiver(delay: Duration, expected: usize) -> Result<Receiver, BoxError> {
    let seen = Arc::new(Seen {
        first: Mutex::new(HashMap::with_capacity(expected)),
        total: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let seen = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    receive(request, Arc::clone(&seen), delay)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Receiver { addr, seen })
}

struct Herald {
    child: Child,
    base: String,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Herald {
    /// SIGTERM (so the last spans are posted), then waits up to 30 s for the exit.
    async fn stop(mut self) -> Result<(), BoxError> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                return Err("herald did not stop within 30 s of SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// An OTLP/HTTP trace sink on loopback: takes `POST /v1/traces`, keeps the bodies and answers
/// 200 with an empty body. The spans are counted later ([`SpanSink::take_spans`]), so that
/// decoding does not compete with Herald for the CPU during a run.
struct SpanSink {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl SpanSink {
    /// The spans in the bodies received since the last call.
    fn take_spans(&self) -> u64 {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message as _;
        let bodies = std::mem::take(&mut *self.bodies.lock());
        bodies
            .iter()
            .map(|body| {
                ExportTraceServiceRequest::decode(body.as_ref())
                    .map(|r| {
                        r.resource_spans
                            .iter()
                            .flat_map(|r| &r.scope_spans)
                            .map(|s| s.spans.len() as u64)
                            .sum::<u64>()
                    })
                    .unwrap_or(0)
            })
            .sum()
    }
}

async fn sink_spans(
    request: hyper::Request<hyper::body::Incoming>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    if let Ok(body) = request.into_body().collect().await {
        bodies.lock().push(body.to_bytes());
    }
    Ok(hyper::Response::new(Full::new(Bytes::new())))
}

async fn start_span_sink() -> Result<SpanSink, BoxError> {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shared = Arc::clone(&bodies);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bodies = Arc::clone(&shared);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |r| sink_spans(r, Arc::clone(&bodies)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(SpanSink { addr, bodies })
}

/// CPU time (user + system) the process `pid` has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks_per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The fields after the command name (which may hold spaces): state is field 3,
            // utime field 14, stime field 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime = fields.get(11)?.parse::<f64>().ok()?;
            let stime = fields.get(12)?.parse::<f64>().ok()?;
            Some((utime + stime) / ticks_per_second)
        })
        .unwrap_or(f64::NAN)
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts Herald delivering to `receiver`; with `otlp`, exporting its spans there.
async fn start_herald(
    args: &Args,
    receiver: SocketAddr,
    otlp: Option<SocketAddr>,
) -> Result<Herald, BoxError> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let store = dir.path().join("store");
    std::fs::create_dir_all(dir.path().join("subscribers"))?;
    let telemetry = otlp
        .map(|a| format!("[telemetry]\notlp_endpoint = \"http://{a}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.path().join("herald.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_payload_bytes = 1048576\n\
             [storage]\npath = \"{}\"\nretention = \"{}\"\n\
             [security]\nallow_http = true\nallow_private_networks = true\n\
             [shutdown]\ngrace = \"5s\"\n{telemetry}",
            store.display(),
            args.retention
        ),
    )?;
    for i in 0..args.subscribers {
        std::fs::write(
            dir.path().join(format!("subscribers/s{i:03}.toml")),
            format!(
                "url = \"http://{receiver}/hook\"\nevents = [\"LOAD\"]\ntimeout = \"10s\"\n\
                 max_in_flight = {}\n[retry]\nmax_attempts = 50\ninitial_interval = \"100ms\"\n\
                 max_interval = \"1s\"\n",
                args.max_in_flight
            ),
        )?;
    }
    let bin = match &args.herald_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("herald"))
            .ok_or("cannot locate the herald binary; pass --herald-bin")?,
    };
    let log = std::fs::File::create(dir.path().join("herald.log"))?;
    let child = Command::new(&bin)
        .args(["run", "-c"])
        .arg(dir.path().join("herald.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let herald = Herald {
        child,
        base: format!("http://127.0.0.1:{port}"),
        store,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{}/healthz", herald.base))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err("herald did not become healthy within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(herald)
}

fn payload(size: usize, seq: usize) -> String {
    let filler = "x".repeat(size.saturating_sub(80));
    format!(r#"{{"processId":"{seq:08}","state":"PROCESS_STATE_FINISHED","pad":"{filler}"}}"#)
}

/// The load generator's client for the ingest API: hyper's pooled client without the layers of
/// a general-purpose one, so the generator takes as little of the shared two cores as it can
/// (the reference set-up drove its server with ApacheBench).
#[derive(Clone)]
struct Producer {
    client: Client<HttpConnector, Full<Bytes>>,
    events: hyper::Uri,
    batch: hyper::Uri,
}

impl Producer {
    fn new(base: &str) -> Result<Self, BoxError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(connector);
        Ok(Self {
            client,
            events: format!("{base}/v1/events").parse()?,
            batch: format!("{base}/v1/events/batch").parse()?,
        })
    }

    /// POSTs a JSON body; the status and the whole answer.
    async fn post(&self, uri: &hyper::Uri, body: String) -> Result<(StatusCode, Bytes), BoxError> {
        let request = hyper::Request::post(uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        Ok((status, answer))
    }
}

/// The part of an ingest answer the load test reads.
#[derive(serde::Deserialize)]
struct Accepted {
    deliveries: Vec<AcceptedDelivery>,
}

#[derive(serde::Deserialize)]
struct AcceptedDelivery {
    id: String,
}

/// Posts one event; returns the delivery ids and the instant the request was sent.
async fn post_one(producer: &Producer, body: String) -> Result<(Vec<String>, Instant), BoxError> {
    let sent = Instant::now();
    let (status, answer) = producer.post(&producer.events, body).await?;
    if status != StatusCode::ACCEPTED {
        return Err(format!(
            "ingest answered {status}: {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    let accepted: Accepted = serde_json::from_slice(&answer)?;
    Ok((
        accepted.deliveries.into_iter().map(|d| d.id).collect(),
        sent,
    ))
}

async fn wait_for(seen: &Seen, count: usize, limit: Duration) -> Result<Instant, BoxError> {
    let deadline = Instant::now() + limit;
    loop {
        if seen.first.lock().len() >= count {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {count} deliveries arrived within {limit:?}",
                seen.first.lock().len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Latencies (ms) from sending each ingest request to the first arrival of each of its
/// deliveries: enqueue, durable commit, dispatch and the HTTP request to the receiver.
fn latencies(acks: &[(Vec<String>, Instant)], seen: &Seen) -> Vec<f64> {
    let first = seen.first.lock();
    let mut out: Vec<f64> = acks
        .iter()
        .flat_map(|(ids, sent)| {
            ids.iter().filter_map(|id| {
                first
                    .get(id)
                    .map(|t| t.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
            })
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

async fn live_phase(
    args: &Args,
    herald: &Herald,
    seen: &Arc<Seen>,
) -> Result<(f64, f64, Vec<f64>), BoxError> {
    let producer = Producer::new(&herald.base)?;
    let next = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(Mutex::new(Vec::with_capacity(args.events)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (producer, next, acks) = (producer.clone(), Arc::clone(&next), Arc::clone(&acks));
        let (n, size) = (args.events as u64, args.payload_bytes);
        tasks.push(tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= n {
                    return Ok::<(), BoxError>(());
                }
                let body = format!(
                    r#"{{"event_type":"LOAD","payload":{}}}"#,
                    payload(size, seq as usize)
                );
                let ack = post_one(&producer, body).await?;
                acks.lock().push(ack);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ingested = start.elapsed();
    let expected = args.events * args.subscribers;
    let done = wait_for(seen, expected, Duration::from_secs(300)).await?;
    let elapsed = done.duration_since(start);
    let lat = latencies(&acks.lock(), seen);
    Ok((
        args.events as f64 / ingested.as_secs_f64(),
        expected as f64 / elapsed.as_secs_f64(),
        lat,
    ))
}

async fn set_paused(
    http: &reqwest::Client,
    herald: &Herald,
    n: usize,
    pause: bool,
) -> Result<(), BoxError> {
    let verb = if pause { "pause" } else { "resume" };
    for i in 0..n {
        let res = http
            .post(format!("{}/v1/subscribers/s{i:03}/{verb}", herald.base))
            .send()
            .await?;
        if !res.status().is_success() {
            return Err(format!("{verb} s{i:03}: {}", res.status()).into());
        }
    }
    Ok(())
}

async fn batch_and_drain(
    args: &Args,
    herald: &Herald,
    seen: &Arc<Seen>,
) -> Result<(f64, f64), BoxError> {
    let http = reqwest::Client::new();
    set_paused(&http, herald, args.subscribers, true).await?;
    let before = seen.first.lock().len();
    let batches: Vec<String> = (0..args.backlog)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| {
            let events: Vec<String> = chunk
                .iter()
                .map(|&i| {
                    format!(
                        r#"{{"event_type":"LOAD","payload":{}}}"#,
                        payload(args.payload_bytes, 1_000_000 + i)
                    )
                })
                .collect();
            format!(r#"{{"events":[{}]}}"#, events.join(","))
        })
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    let producer = Producer::new(&herald.base)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (producer, queue) = (producer.clone(), Arc::clone(&queue));
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().pop() else {
                    return Ok::<(), BoxError>(());
                };
                let (status, _) = producer.post(&producer.batch, body).await?;
                if status != StatusCode::ACCEPTED {
                    return Err(format!("batch answered {status}").into());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ingest_rate = args.backlog as f64 / start.elapsed().as_secs_f64();
    let resumed = Instant::now();
    set_paused(&http, herald, args.subscribers, false).await?;
    let expected = before + args.backlog * args.subscribers;
    let done = wait_for(seen, expected, Duration::from_secs(300)).await?;
    let drain_rate =
        (args.backlog * args.subscribers) as f64 / done.duration_since(resumed).as_secs_f64();
    Ok((ingest_rate, drain_rate))
}

async fn paced_phase(
    args: &Args,
    herald: &Herald,
    seen: &Arc<Seen>,
    rate: f64,
) -> Result<Vec<f64>, BoxError> {
    let producer = Producer::new(&herald.base)?;
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let count = (rate * 3.0).clamp(50.0, 20_000.0) as usize;
    let before = seen.first.lock().len();
    let acks = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tick.tick().await;
        let (producer, acks) = (producer.clone(), Arc::clone(&acks));
        let body = format!(
            r#"{{"event_type":"LOAD","payload":{}}}"#,
            payload(args.payload_bytes, 2_000_000 + i)
        );
        tasks.push(tokio::spawn(async move {
            let ack = post_one(&producer, body).await?;
            acks.lock().push(ack);
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    wait_for(
        seen,
        before + count * args.subscribers,
        Duration::from_secs(120),
    )
    .await?;
    let lat = latencies(&acks.lock(), seen);
    Ok(lat)
}

fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn dir_size_mb(path: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(path) as f64 / (1024.0 * 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Steady load for `--soak-seconds`; prints RSS, open fds and store size ten times.
async fn soak(args: &Args, herald: &Herald, seen: &Arc<Seen>) -> Result<(), BoxError> {
    let producer = Producer::new(&herald.base)?;
    let pid = herald.child.id();
    let total = Duration::from_secs(args.soak_seconds);
    let sample_every = total / 10;
    let period = Duration::from_secs_f64(1.0 / args.soak_rate.max(1) as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut next_sample = start;
    let mut sent = 0usize;
    let inflight = Arc::new(tokio::sync::Semaphore::new(256));
    println!("| t (s) | events sent | delivered | RSS (MB) | open fds | store (MB) |");
    println!("|--:|--:|--:|--:|--:|--:|");
    while start.elapsed() < total {
        tick.tick().await;
        if Instant::now() >= next_sample {
            println!(
                "| {:.0} | {sent} | {} | {:.0} | {} | {:.0} |",
                start.elapsed().as_secs_f64(),
                seen.first.lock().len(),
                status_mb(pid, "VmRSS:"),
                open_fds(pid),
                dir_size_mb(&herald.store)
            );
            next_sample += sample_every;
        }
        let permit = Arc::clone(&inflight).acquire_owned().await?;
        let producer = producer.clone();
        let body = format!(
            r#"{{"event_type":"LOAD","payload":{}}}"#,
            payload(args.payload_bytes, sent)
        );
        sent += 1;
        tokio::spawn(async move {
            let _ = post_one(&producer, body).await;
            drop(permit);
        });
    }
    wait_for(seen, sent * args.subscribers, Duration::from_secs(120)).await?;
    println!(
        "| {:.0} (drained) | {sent} | {} | {:.0} | {} | {:.0} |",
        start.elapsed().as_secs_f64(),
        seen.first.lock().len(),
        status_mb(pid, "VmRSS:"),
        open_fds(pid),
        dir_size_mb(&herald.store)
    );
    println!("peak RSS (VmHWM): {:.0} MB", peak_rss_mb(pid));
    Ok(())
}

/// One live phase: ingest events/s, deliveries/s, latency p50 and p99 (ms), Herald's CPU
/// time per event (µs), spans exported.
type LiveRun = (f64, f64, f64, f64, f64, Option<u64>);

/// The live phase on a fresh Herald and receiver, with or without span export.
async fn live_run(args: &Args, sink: Option<&SpanSink>) -> Result<LiveRun, BoxError> {
    let receiver = start_receiver(
        Duration::from_millis(args.receiver_latency_ms),
        args.events * args.subscribers,
    )
    .await?;
    let herald = start_herald(args, receiver.addr, sink.map(|s| s.addr)).await?;
    let cpu_before = cpu_seconds(herald.child.id());
    let (ingest, delivery, lat) = live_phase(args, &herald, &receiver.seen).await?;
    let cpu = cpu_seconds(herald.child.id()) - cpu_before;
    // The last spans are posted at shutdown.
    herald.stop().await?;
    let spans = sink.map(SpanSink::take_spans);
    Ok((
        ingest,
        delivery,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        cpu * 1e6 / args.events as f64,
        spans,
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

/// `--otlp-rounds`: the live phase without and with span export, alternating.
async fn compare_otlp(args: &Args) -> Result<(), BoxError> {
    let sink = start_span_sink().await?;
    eprintln!(
        "span export cost: {} subscriber(s), {} live events at concurrency {}, {} rounds",
        args.subscribers, args.events, args.concurrency, args.otlp_rounds
    );
    println!("| run | export | ingest (events/s) | deliveries/s | latency p50 / p99 (ms) | Herald CPU per event (µs) | spans exported |");
    println!("|--:|---|--:|--:|--:|--:|--:|");
    let mut runs: [Vec<LiveRun>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.otlp_rounds {
        for (i, with) in [false, true].into_iter().enumerate() {
            let run = live_run(args, with.then_some(&sink)).await?;
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.1} / {:.1} | {:.0} | {} |",
                round + 1,
                if with { "on" } else { "off" },
                run.0,
                run.1,
                run.2,
                run.3,
                run.4,
                run.5.map_or("-".to_owned(), |n| n.to_string())
            );
            runs[i].push(run);
        }
    }
    println!();
    println!("| export | ingest (events/s) | deliveries/s | latency p50 / p99 (ms) | Herald CPU per event (µs) |");
    println!("|---|--:|--:|--:|--:|");
    for (i, name) in ["off", "on"].into_iter().enumerate() {
        let r = &runs[i];
        println!(
            "| {name} (median of {}) | {:.0} | {:.0} | {:.1} / {:.1} | {:.0} |",
            r.len(),
            median(r.iter().map(|r| r.0).collect()),
            median(r.iter().map(|r| r.1).collect()),
            median(r.iter().map(|r| r.2).collect()),
            median(r.iter().map(|r| r.3).collect()),
            median(r.iter().map(|r| r.4).collect()),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.otlp_rounds > 0 {
        return compare_otlp(&args).await;
    }
    // Room for every delivery the phases send, so the receiver's map never rehashes mid-run.
    let expected = (args.events + args.backlog + 20_000) * args.subscribers;
    let receiver =
        start_receiver(Duration::from_millis(args.receiver_latency_ms), expected).await?;
    let sink = if args.otlp {
        Some(start_span_sink().await?)
    } else {
        None
    };
    let herald = start_herald(&args, receiver.addr, sink.as_ref().map(|s| s.addr)).await?;
    if args.soak_seconds > 0 {
        soak(&args, &herald, &receiver.seen).await?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(herald.child.id().to_string())
            .status();
        return Ok(());
    }
    eprintln!(
        "scenario: {} subscriber(s), receiver latency {} ms, payload ~{} B, {} live events at concurrency {}, backlog {}",
        args.subscribers, args.receiver_latency_ms, args.payload_bytes, args.events, args.concurrency, args.backlog
    );

    let (ingest_single, live_rate, live_lat) = live_phase(&args, &herald, &receiver.seen).await?;
    eprintln!("live: ingest {ingest_single:.0} ev/s, delivery {live_rate:.0}/s");
    let (batch_rate, drain_rate) = batch_and_drain(&args, &herald, &receiver.seen).await?;
    eprintln!("batch ingest {batch_rate:.0} ev/s, drain {drain_rate:.0}/s");
    let paced_rate = (live_rate / args.subscribers as f64) * 0.2;
    let lat = paced_phase(&args, &herald, &receiver.seen, paced_rate).await?;
    let rss = peak_rss_mb(herald.child.id());
    let store = dir_size_mb(&herald.store);

    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| ingest, single events (concurrency {}) | {ingest_single:.0} events/s |",
        args.concurrency
    );
    println!("| end-to-end deliveries while ingesting | {live_rate:.0} deliveries/s |");
    println!(
        "| latency ingest request→receiver while ingesting flat out, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        percentile(&live_lat, 0.5),
        percentile(&live_lat, 0.99),
        live_lat.last().copied().unwrap_or(f64::NAN)
    );
    println!("| ingest, batch endpoint (1000/request, 4 concurrent) | {batch_rate:.0} events/s |");
    println!(
        "| drain of a {} backlog | {drain_rate:.0} deliveries/s |",
        args.backlog * args.subscribers
    );
    println!(
        "| latency ingest request→receiver at 20 % load ({paced_rate:.0} events/s), p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!("| Herald peak RSS (VmHWM) | {rss:.0} MB |");
    println!("| store size on disk at the end | {store:.0} MB |");
    println!(
        "| receiver requests / distinct deliveries | {} / {} |",
        receiver.seen.total.load(Ordering::Relaxed),
        receiver.seen.first.lock().len()
    );
    if let Some(sink) = &sink {
        println!(
            "| spans received by the OTLP sink by then | {} |",
            sink.take_spans()
        );
    }
    // Graceful stop: SIGTERM via the kill command keeps this example free of unsafe code.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(herald.child.id().to_string())
        .status();
    Ok(())
}
