//! End-to-end load test: a receiver on loopback, the real `herald` binary as a child process
//! (or several, on one PostgreSQL database), and a load generator posting to its HTTP ingest
//! API. Prints one table per scenario, or with `--compare` a table of medians per engine.
//!
//! ```text
//! cargo build --release && cargo run --release --example loadtest
//! cargo run --release --example loadtest -- --subscribers 100 --receiver-latency-ms 20
//! cargo run --release --example loadtest -- --engine postgres --nodes 2
//! cargo run --release --example loadtest -- --compare --rounds 3
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
//! 5. peak RSS of the Herald process(es) (VmHWM, summed over the nodes) and the store's size
//!    (sled: its directory; PostgreSQL: `pg_database_size`).
//!
//! Engines:
//! - `--engine sled` (default): one daemon on a store in a temp dir.
//! - `--engine postgres`: a throwaway database `herald_load_<pid>_<n>` is created on the server
//!   of `--database-url` (default `$HERALD_DATABASE_URL`, else the local
//!   `postgres://postgres@127.0.0.1:5432/postgres`; the role must be allowed to CREATE
//!   DATABASE), the schema is made with `herald migrate`, `--nodes` daemons are started on it
//!   (each with its own port and `[cluster] node_id`), ingest requests go round-robin over the
//!   nodes, and the database is dropped at the end. Only host:port/database is ever printed.
//! - `--otlp-rounds N` (sled): instead of the phases, the live phase N times without and with
//!   span export (`[telemetry]`, SPEC §10), alternating, each on a fresh Herald, store and
//!   receiver; prints each run (with Herald's CPU time per event, from `/proc`) and the medians.
//!   With export, Herald posts its spans to an OTLP/HTTP sink in this process that keeps the
//!   bodies and counts their spans after the run (after Herald's shutdown flush):
//!   `cargo run --release --example loadtest -- --events 20000 --otlp-rounds 3`.
//! - `--compare`: sled, then postgres with 1, 2 and 3 nodes, `--rounds` times each,
//!   the order reversed every other round, each run on a fresh store; prints the medians and
//!   the team's targets (met or not). A run interrupted by Ctrl-C may leave a `herald_load_*`
//!   database behind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// The database server used when neither `--database-url` nor `HERALD_DATABASE_URL` is set.
const LOCAL_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The storage engine of the Herald under test.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum EngineKind {
    /// Embedded sled store (one node).
    Sled,
    /// PostgreSQL (one or more nodes on one database).
    Postgres,
}

// No `Debug`: `database_url` may hold a password.
#[derive(Parser, Clone)]
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
    /// Storage engine of the Herald under test.
    #[arg(long, value_enum, default_value_t = EngineKind::Sled)]
    engine: EngineKind,
    /// PostgreSQL server for `--engine postgres` and `--compare`, as a postgres:// URL of a role
    /// that may CREATE DATABASE; each run creates a throwaway database on it and drops it.
    /// Default: $HERALD_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    database_url: Option<String>,
    /// Herald nodes on the one database (postgres only); ingest is spread over them
    /// round-robin.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// `[storage] pool_size` of each PostgreSQL node (default: Herald's, 16).
    #[arg(long)]
    pool_size: Option<usize>,
    /// Compare the engines in one run: sled, then postgres with 1, 2 and 3 nodes,
    /// `--rounds` times each (the order reversed every other round); prints the medians.
    #[arg(long, conflicts_with_all = ["soak_seconds", "engine", "nodes"])]
    compare: bool,
    /// Rounds of `--compare`.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Instead of the phases (sled): the live phase this many times without and with span
    /// export, alternating, then the medians.
    #[arg(long, default_value_t = 0, conflicts_with_all = ["compare", "soak_seconds"])]
    otlp_rounds: usize,
    /// Where the daemons export their spans (`[telemetry] otlp_endpoint`); set by
    /// `--otlp-rounds` for its runs with export.
    #[arg(skip)]
    otlp_sink: Option<SocketAddr>,
}

/// One configuration under test: an engine and how many daemons run on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Setup {
    engine: EngineKind,
    nodes: usize,
}

impl Setup {
    fn label(self) -> String {
        match (self.engine, self.nodes) {
            (EngineKind::Sled, _) => "sled".to_owned(),
            (EngineKind::Postgres, 1) => "postgres, 1 node".to_owned(),
            (EngineKind::Postgres, n) => format!("postgres, {n} nodes"),
        }
    }
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

/// An error with its sources, e.g. "error connecting to server: Connection refused".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// A PostgreSQL server on which each run creates a database of its own.
#[derive(Clone)]
struct PgServer {
    /// A URL of a role that may CREATE DATABASE (may hold a password: never printed).
    admin: url::Url,
}

impl PgServer {
    fn parse(raw: &str) -> Result<Self, BoxError> {
        let admin = url::Url::parse(raw.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some())
            .ok_or(
                "the database URL is not a postgres://user@host:port/db URL (value not shown)",
            )?;
        Ok(Self { admin })
    }

    /// `host:port/database` of `url`: never the user or the password.
    fn shown(url: &url::Url) -> String {
        format!(
            "{}:{}{}",
            url.host_str().unwrap_or("localhost"),
            url.port().unwrap_or(5432),
            url.path()
        )
    }

    /// `text` without the password, for the driver's messages.
    fn redact(&self, text: &str) -> String {
        match self.admin.password() {
            Some(p) if !p.is_empty() => text.replace(p, "**REDACTED**"),
            _ => text.to_owned(),
        }
    }

    async fn connect(&self, url: &url::Url) -> Result<tokio_postgres::Client, BoxError> {
        let (client, connection) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to PostgreSQL at {}: {}",
                    Self::shown(url),
                    self.redact(&chain(&e))
                )
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates a fresh database `herald_load_<pid>_<n>`; it is dropped with the [`Scratch`].
    async fn create(&self) -> Result<Scratch, BoxError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "herald_load_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.connect(&self.admin)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {}", self.redact(&e.to_string())))?;
        let mut url = self.admin.clone();
        url.set_path(&format!("/{name}"));
        Ok(Scratch {
            server: self.clone(),
            name,
            url,
        })
    }
}

/// A throwaway database; dropped (with its connections ended) when this is dropped.
struct Scratch {
    server: PgServer,
    name: String,
    url: url::Url,
}

impl Scratch {
    async fn size_mb(&self) -> f64 {
        let Ok(client) = self.server.connect(&self.url).await else {
            return f64::NAN;
        };
        client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_or(f64::NAN, |row| {
                row.get::<_, i64>(0) as f64 / (1024.0 * 1024.0)
            })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // A runtime of its own on a thread of its own: Drop may run inside the main runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                server
                    .connect(&server.admin)
                    .await?
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| BoxError::from(server.redact(&e.to_string())))
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop the database {} (drop it by hand)",
                self.name
            );
        }
    }
}

/// Where a daemon keeps its data.
enum Storage<'a> {
    Sled,
    /// A node of the cluster on `url`, with this node id.
    Postgres {
        url: &'a url::Url,
        node_id: String,
    },
}

struct Herald {
    child: Child,
    base: String,
    /// The sled store's directory (none with PostgreSQL).
    store: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Herald {
    /// SIGTERM (via the kill command, so this example stays free of unsafe code), then waits
    /// for the graceful stop; killed if it takes longer than 15 s.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn herald_bin(args: &Args) -> Result<PathBuf, BoxError> {
    match &args.herald_bin {
        Some(b) => Ok(b.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("herald"))
            .ok_or("cannot locate the herald binary; pass --herald-bin")?),
    }
}

/// Writes `herald.toml` and the subscriber files into `dir`; returns the daemon file.
fn write_config(
    args: &Args,
    dir: &Path,
    port: u16,
    receiver: SocketAddr,
    storage: &Storage<'_>,
) -> Result<PathBuf, BoxError> {
    let store = dir.join("store");
    std::fs::create_dir_all(dir.join("subscribers"))?;
    let (engine, cluster) = match storage {
        Storage::Sled => (format!("path = \"{}\"\n", store.display()), String::new()),
        Storage::Postgres { node_id, .. } => (
            format!(
                "engine = \"postgres\"\nurl = \"${{HERALD_DATABASE_URL}}\"\n{}",
                args.pool_size
                    .map(|n| format!("pool_size = {n}\n"))
                    .unwrap_or_default()
            ),
            format!("[cluster]\nnode_id = \"{node_id}\"\n"),
        ),
    };
    let telemetry = args
        .otlp_sink
        .map(|a| format!("[telemetry]\notlp_endpoint = \"http://{a}\"\n"))
        .unwrap_or_default();
    let config = dir.join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_payload_bytes = 1048576\n\
             [storage]\n{engine}retention = \"{}\"\n\
             [security]\nallow_http = true\nallow_private_networks = true\n\
             [shutdown]\ngrace = \"5s\"\n{cluster}{telemetry}",
            args.retention
        ),
    )?;
    for i in 0..args.subscribers {
        std::fs::write(
            dir.join(format!("subscribers/s{i:03}.toml")),
            format!(
                "url = \"http://{receiver}/hook\"\nevents = [\"LOAD\"]\ntimeout = \"10s\"\n\
                 max_in_flight = {}\n[retry]\nmax_attempts = 50\ninitial_interval = \"100ms\"\n\
                 max_interval = \"1s\"\n",
                args.max_in_flight
            ),
        )?;
    }
    Ok(config)
}

/// `herald <args> -c config`, with the database URL in the environment when there is one.
fn herald_command(bin: &Path, verb: &str, config: &Path, storage: &Storage<'_>) -> Command {
    let mut command = Command::new(bin);
    command
        .arg(verb)
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "warn");
    if let Storage::Postgres { url, .. } = storage {
        command.env("HERALD_DATABASE_URL", url.as_str());
    }
    command
}

/// `herald migrate`: creates the schema once, before the nodes start.
fn migrate(args: &Args, receiver: SocketAddr, storage: &Storage<'_>) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let config = write_config(args, dir.path(), free_port()?, receiver, storage)?;
    let bin = herald_bin(args)?;
    let out = herald_command(&bin, "migrate", &config, storage)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "herald migrate failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

async fn start_herald(
    args: &Args,
    receiver: SocketAddr,
    storage: &Storage<'_>,
) -> Result<Herald, BoxError> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = write_config(args, dir.path(), port, receiver, storage)?;
    let bin = herald_bin(args)?;
    let log = std::fs::File::create(dir.path().join("herald.log"))?;
    let child = herald_command(&bin, "run", &config, storage)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let mut herald = Herald {
        child,
        base: format!("http://127.0.0.1:{port}"),
        store: matches!(storage, Storage::Sled).then(|| dir.path().join("store")),
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
        if let Ok(Some(status)) = herald.child.try_wait() {
            let log =
                std::fs::read_to_string(herald._dir.path().join("herald.log")).unwrap_or_default();
            return Err(format!("herald exited at start ({status}): {}", log.trim()).into());
        }
        if Instant::now() > deadline {
            return Err("herald did not become healthy within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(herald)
}

/// The daemons of one run and their store. The nodes are declared (so dropped) before the
/// database.
struct Deployment {
    nodes: Vec<Herald>,
    db: Option<Scratch>,
}

impl Deployment {
    async fn start(
        args: &Args,
        setup: Setup,
        server: Option<&PgServer>,
        receiver: SocketAddr,
    ) -> Result<Self, BoxError> {
        match setup.engine {
            EngineKind::Sled => Ok(Self {
                nodes: vec![start_herald(args, receiver, &Storage::Sled).await?],
                db: None,
            }),
            EngineKind::Postgres => {
                let server = server.ok_or("no PostgreSQL server")?;
                let db = server.create().await?;
                let mut deployment = Self {
                    nodes: Vec::new(),
                    db: None,
                };
                let storage = |i: usize| Storage::Postgres {
                    url: &db.url,
                    node_id: format!("load-{i}"),
                };
                migrate(args, receiver, &storage(0))?;
                for i in 0..setup.nodes {
                    deployment
                        .nodes
                        .push(start_herald(args, receiver, &storage(i)).await?);
                }
                deployment.db = Some(db);
                Ok(deployment)
            }
        }
    }

    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// Peak RSS (VmHWM) summed over the nodes.
    fn peak_rss_mb(&self) -> f64 {
        self.pids().into_iter().map(peak_rss_mb).sum()
    }

    /// The sled store's directory, or the PostgreSQL database's size.
    async fn store_mb(&self) -> f64 {
        match &self.db {
            Some(db) => db.size_mb().await,
            None => self
                .nodes
                .iter()
                .filter_map(|n| n.store.as_deref())
                .map(dir_size_mb)
                .sum(),
        }
    }

    async fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
    }
}

fn payload(size: usize, seq: usize) -> String {
    let filler = "x".repeat(size.saturating_sub(80));
    format!(r#"{{"processId":"{seq:08}","state":"PROCESS_STATE_FINISHED","pad":"{filler}"}}"#)
}

/// The load generator's client for the ingest API: hyper's pooled client without the layers of
/// a general-purpose one, so the generator takes as little of the shared two cores as it can
/// (the reference set-up drove its server with ApacheBench). With several nodes, each request
/// goes to the next node in turn.
#[derive(Clone)]
struct Producer {
    client: Client<HttpConnector, Full<Bytes>>,
    events: Arc<[hyper::Uri]>,
    batch: Arc<[hyper::Uri]>,
    next: Arc<AtomicUsize>,
}

impl Producer {
    fn new(bases: &[String]) -> Result<Self, BoxError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(connector);
        let uris = |path: &str| -> Result<Arc<[hyper::Uri]>, BoxError> {
            bases
                .iter()
                .map(|b| Ok(format!("{b}{path}").parse()?))
                .collect()
        };
        Ok(Self {
            client,
            events: uris("/v1/events")?,
            batch: uris("/v1/events/batch")?,
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next node's URI of `uris` (round-robin).
    fn pick<'a>(&self, uris: &'a [hyper::Uri]) -> &'a hyper::Uri {
        &uris[self.next.fetch_add(1, Ordering::Relaxed) % uris.len()]
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
    let (status, answer) = producer.post(producer.pick(&producer.events), body).await?;
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
    bases: &[String],
    seen: &Arc<Seen>,
) -> Result<(f64, f64, Vec<f64>), BoxError> {
    let producer = Producer::new(bases)?;
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

/// Pauses or resumes every subscriber through the first node, then waits until every node
/// has applied it (a cluster relays the change to the other nodes).
async fn set_paused(
    http: &reqwest::Client,
    bases: &[String],
    n: usize,
    pause: bool,
) -> Result<(), BoxError> {
    let verb = if pause { "pause" } else { "resume" };
    for i in 0..n {
        let res = http
            .post(format!("{}/v1/subscribers/s{i:03}/{verb}", bases[0]))
            .send()
            .await?;
        if !res.status().is_success() {
            return Err(format!("{verb} s{i:03}: {}", res.status()).into());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for base in bases {
        for i in 0..n {
            loop {
                let view: serde_json::Value = http
                    .get(format!("{base}/v1/subscribers/s{i:03}"))
                    .send()
                    .await?
                    .json()
                    .await?;
                if view.get("paused").and_then(serde_json::Value::as_bool) == Some(pause) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{verb} s{i:03} not applied by {base} within 10 s").into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(())
}

async fn batch_and_drain(
    args: &Args,
    bases: &[String],
    seen: &Arc<Seen>,
) -> Result<(f64, f64), BoxError> {
    let http = reqwest::Client::new();
    set_paused(&http, bases, args.subscribers, true).await?;
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
    let producer = Producer::new(bases)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (producer, queue) = (producer.clone(), Arc::clone(&queue));
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().pop() else {
                    return Ok::<(), BoxError>(());
                };
                let (status, _) = producer.post(producer.pick(&producer.batch), body).await?;
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
    set_paused(&http, bases, args.subscribers, false).await?;
    let expected = before + args.backlog * args.subscribers;
    let done = wait_for(seen, expected, Duration::from_secs(300)).await?;
    let drain_rate =
        (args.backlog * args.subscribers) as f64 / done.duration_since(resumed).as_secs_f64();
    Ok((ingest_rate, drain_rate))
}

async fn paced_phase(
    args: &Args,
    bases: &[String],
    seen: &Arc<Seen>,
    rate: f64,
) -> Result<Vec<f64>, BoxError> {
    let producer = Producer::new(bases)?;
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

/// Steady load for `--soak-seconds`; prints RSS and open fds (summed over the nodes) and the
/// store's size ten times.
async fn soak(args: &Args, deployment: &Deployment, seen: &Arc<Seen>) -> Result<(), BoxError> {
    let producer = Producer::new(&deployment.bases())?;
    let pids = deployment.pids();
    let rss = || pids.iter().map(|&p| status_mb(p, "VmRSS:")).sum::<f64>();
    let fds = || pids.iter().map(|&p| open_fds(p)).sum::<usize>();
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
            let store = deployment.store_mb().await;
            let delivered = seen.first.lock().len();
            println!(
                "| {:.0} | {sent} | {delivered} | {:.0} | {} | {store:.0} |",
                start.elapsed().as_secs_f64(),
                rss(),
                fds(),
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
    let store = deployment.store_mb().await;
    let delivered = seen.first.lock().len();
    println!(
        "| {:.0} (drained) | {sent} | {delivered} | {:.0} | {} | {store:.0} |",
        start.elapsed().as_secs_f64(),
        rss(),
        fds(),
    );
    println!("peak RSS (VmHWM): {:.0} MB", deployment.peak_rss_mb());
    Ok(())
}

/// The figures of one run.
#[derive(Debug, Clone)]
struct Metrics {
    live_ingest: f64,
    live_rate: f64,
    live_lat: Latency,
    batch_rate: f64,
    drain_rate: f64,
    paced_rate: f64,
    paced_lat: Latency,
    rss_mb: f64,
    store_mb: f64,
    requests: u64,
    distinct: usize,
}

/// p50 / p99 / max in ms.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(sorted: &[f64]) -> Self {
        Self {
            p50: percentile(sorted, 0.5),
            p99: percentile(sorted, 0.99),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// A receiver, the daemon(s) of `setup` on a fresh store, the phases; everything is stopped
/// (and a database dropped) before it returns.
async fn run_scenario(
    args: &Args,
    setup: Setup,
    server: Option<&PgServer>,
) -> Result<Metrics, BoxError> {
    // Room for every delivery the phases send, so the receiver's map never rehashes mid-run.
    let expected = (args.events + args.backlog + 20_000) * args.subscribers;
    let receiver =
        start_receiver(Duration::from_millis(args.receiver_latency_ms), expected).await?;
    let mut deployment = Deployment::start(args, setup, server, receiver.addr).await?;
    let bases = deployment.bases();
    let seen = &receiver.seen;

    let (live_ingest, live_rate, live_lat) = live_phase(args, &bases, seen).await?;
    eprintln!("  live: ingest {live_ingest:.0} ev/s, delivery {live_rate:.0}/s");
    let (batch_rate, drain_rate) = batch_and_drain(args, &bases, seen).await?;
    eprintln!("  batch ingest {batch_rate:.0} ev/s, drain {drain_rate:.0}/s");
    let paced_rate = (live_rate / args.subscribers as f64) * 0.2;
    let paced_lat = paced_phase(args, &bases, seen, paced_rate).await?;
    let metrics = Metrics {
        live_ingest,
        live_rate,
        live_lat: Latency::of(&live_lat),
        batch_rate,
        drain_rate,
        paced_rate,
        paced_lat: Latency::of(&paced_lat),
        rss_mb: deployment.peak_rss_mb(),
        store_mb: deployment.store_mb().await,
        requests: seen.total.load(Ordering::Relaxed),
        distinct: seen.first.lock().len(),
    };
    deployment.stop().await;
    Ok(metrics)
}

fn print_single(args: &Args, m: &Metrics) {
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| ingest, single events (concurrency {}) | {:.0} events/s |",
        args.concurrency, m.live_ingest
    );
    println!(
        "| end-to-end deliveries while ingesting | {:.0} deliveries/s |",
        m.live_rate
    );
    println!(
        "| latency ingest request→receiver while ingesting flat out, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        m.live_lat.p50, m.live_lat.p99, m.live_lat.max
    );
    println!(
        "| ingest, batch endpoint (1000/request, 4 concurrent) | {:.0} events/s |",
        m.batch_rate
    );
    println!(
        "| drain of a {} backlog | {:.0} deliveries/s |",
        args.backlog * args.subscribers,
        m.drain_rate
    );
    println!(
        "| latency ingest request→receiver at 20 % load ({:.0} events/s), p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        m.paced_rate, m.paced_lat.p50, m.paced_lat.p99, m.paced_lat.max
    );
    println!(
        "| Herald peak RSS (VmHWM, all nodes) | {:.0} MB |",
        m.rss_mb
    );
    println!("| store size on disk at the end | {:.0} MB |", m.store_mb);
    println!(
        "| receiver requests / distinct deliveries | {} / {} |",
        m.requests, m.distinct
    );
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
            // The fields after the command name (which may hold spaces): utime is field 14,
            // stime field 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime = fields.get(11)?.parse::<f64>().ok()?;
            let stime = fields.get(12)?.parse::<f64>().ok()?;
            Some((utime + stime) / ticks_per_second)
        })
        .unwrap_or(f64::NAN)
}

/// One live phase: ingest events/s, deliveries/s, latency p50 and p99 (ms), Herald's CPU
/// time per event (µs), spans exported.
type LiveRun = (f64, f64, f64, f64, f64, Option<u64>);

/// The live phase on a fresh sled Herald and receiver, with or without span export.
async fn live_run(args: &Args, sink: Option<&SpanSink>) -> Result<LiveRun, BoxError> {
    let receiver = start_receiver(
        Duration::from_millis(args.receiver_latency_ms),
        args.events * args.subscribers,
    )
    .await?;
    let mut args = args.clone();
    args.otlp_sink = sink.map(|s| s.addr);
    let setup = Setup {
        engine: EngineKind::Sled,
        nodes: 1,
    };
    let mut deployment = Deployment::start(&args, setup, None, receiver.addr).await?;
    let pid = deployment.pids()[0];
    let cpu_before = cpu_seconds(pid);
    let (ingest, delivery, lat) = live_phase(&args, &deployment.bases(), &receiver.seen).await?;
    let cpu = cpu_seconds(pid) - cpu_before;
    // The last spans are posted at shutdown.
    deployment.stop().await;
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

/// `--otlp-rounds`: the live phase without and with span export, alternating.
async fn compare_otlp(args: &Args) -> Result<(), BoxError> {
    let sink = start_span_sink().await?;
    eprintln!(
        "span export cost: {} subscriber(s), {} live events at concurrency {}, {} rounds, load {}",
        args.subscribers,
        args.events,
        args.concurrency,
        args.otlp_rounds,
        load_average()
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The load average (1, 5, 15 min) as the kernel reports it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `--compare`: every setup `--rounds` times, the order reversed every other round; prints
/// the medians, the ratios and the team's targets.
async fn compare(args: &Args, server: &PgServer) -> Result<(), BoxError> {
    let setups = [
        Setup {
            engine: EngineKind::Sled,
            nodes: 1,
        },
        Setup {
            engine: EngineKind::Postgres,
            nodes: 1,
        },
        Setup {
            engine: EngineKind::Postgres,
            nodes: 2,
        },
        Setup {
            engine: EngineKind::Postgres,
            nodes: 3,
        },
    ];
    let rounds = args.rounds.max(1);
    eprintln!("load average before: {}", load_average());
    let mut results: Vec<Vec<Metrics>> = vec![Vec::new(); setups.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..setups.len()).collect()
        } else {
            (0..setups.len()).rev().collect()
        };
        for i in order {
            eprintln!(
                "round {}/{rounds}: {} (load average {})",
                round + 1,
                setups[i].label(),
                load_average()
            );
            results[i].push(run_scenario(args, setups[i], Some(server)).await?);
        }
    }
    let load_after = load_average();
    eprintln!("load average after: {load_after}");

    let med = |i: usize, f: &dyn Fn(&Metrics) -> f64| median(results[i].iter().map(f).collect());
    let rate = |f: &dyn Fn(&Metrics) -> f64| -> Vec<f64> {
        (0..setups.len()).map(|i| med(i, f)).collect()
    };
    let rows: Vec<(String, Vec<f64>)> = vec![
        (
            format!(
                "ingest, single events (concurrency {}), events/s",
                args.concurrency
            ),
            rate(&|m| m.live_ingest),
        ),
        (
            "end-to-end deliveries while ingesting, /s".to_owned(),
            rate(&|m| m.live_rate),
        ),
        (
            "latency ingest→receiver while ingesting, p50, ms".to_owned(),
            rate(&|m| m.live_lat.p50),
        ),
        (
            "latency ingest→receiver while ingesting, p99, ms".to_owned(),
            rate(&|m| m.live_lat.p99),
        ),
        (
            "ingest, batch endpoint (1000/request, 4 concurrent), events/s".to_owned(),
            rate(&|m| m.batch_rate),
        ),
        (
            format!(
                "drain of a {} backlog, deliveries/s",
                args.backlog * args.subscribers
            ),
            rate(&|m| m.drain_rate),
        ),
        (
            "latency at 20 % of its own live rate, p50, ms".to_owned(),
            rate(&|m| m.paced_lat.p50),
        ),
        (
            "latency at 20 % of its own live rate, p99, ms".to_owned(),
            rate(&|m| m.paced_lat.p99),
        ),
        (
            "Herald peak RSS (all nodes), MB".to_owned(),
            rate(&|m| m.rss_mb),
        ),
    ];
    println!(
        "\nMedians of {rounds} round(s); {} subscriber(s), payload ~{} B, {} live events, backlog {}; \
         PostgreSQL at {} (a fresh database per run); load average before → after: see above → {load_after}\n",
        args.subscribers,
        args.payload_bytes,
        args.events,
        args.backlog,
        PgServer::shown(&server.admin),
    );
    println!(
        "| metric | {} | {} | {} | {} | postgres 1 node / sled | 2 nodes / 1 node | 3 nodes / 1 node |",
        setups[0].label(),
        setups[1].label(),
        setups[2].label(),
        setups[3].label()
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|");
    let fmt = |v: f64| {
        if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    for (name, v) in &rows {
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} % | {:.0} % | {:.0} % |",
            fmt(v[0]),
            fmt(v[1]),
            fmt(v[2]),
            fmt(v[3]),
            100.0 * v[1] / v[0],
            100.0 * v[2] / v[1],
            100.0 * v[3] / v[1]
        );
    }

    let [live_ingest, live, _, _, batch, drain, ..] = &rows[..] else {
        return Ok(());
    };
    let (live_ingest, live, batch, drain) = (&live_ingest.1, &live.1, &batch.1, &drain.1);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\n| team target | measured (medians) | |");
    println!("|---|--:|---|");
    let pct = |a: f64, b: f64| 100.0 * a / b;
    for (name, value, goal) in [
        (
            "postgres live (end-to-end deliveries/s) ≥ 40 % of sled",
            pct(live[1], live[0]),
            40.0,
        ),
        (
            "postgres live (ingest events/s) ≥ 40 % of sled",
            pct(live_ingest[1], live_ingest[0]),
            40.0,
        ),
        (
            "postgres drain ≥ 25 % of sled",
            pct(drain[1], drain[0]),
            25.0,
        ),
    ] {
        println!("| {name} | {value:.0} % | {} |", verdict(value >= goal));
    }
    println!(
        "| postgres batch ingest ≥ 30 000 events/s (1 node / 2 nodes) | {:.0} / {:.0} events/s | {} |",
        batch[1],
        batch[2],
        verdict(batch[1] >= 30_000.0)
    );
    for (name, v) in [
        ("live end-to-end", live),
        ("live ingest", live_ingest),
        ("batch ingest", batch),
        ("drain", drain),
    ] {
        let value = pct(v[2], v[1]);
        println!(
            "| 2 nodes ≥ 90 % of 1 node: {name} | {value:.0} % | {} |",
            verdict(value >= 90.0)
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
    let wants_postgres = args.compare || args.engine == EngineKind::Postgres;
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if args.nodes > 1 && !wants_postgres {
        return Err("--nodes applies to --engine postgres (sled runs one node)".into());
    }
    let server = if wants_postgres {
        let url = args
            .database_url
            .clone()
            .or_else(|| std::env::var("HERALD_DATABASE_URL").ok())
            .unwrap_or_else(|| LOCAL_DATABASE.to_owned());
        Some(PgServer::parse(&url)?)
    } else {
        None
    };
    if args.compare {
        if let Some(server) = &server {
            eprintln!(
                "comparing sled and postgres with 1, 2 and 3 nodes on {} for {} round(s)",
                PgServer::shown(&server.admin),
                args.rounds.max(1)
            );
            return compare(&args, server).await;
        }
    }
    let setup = Setup {
        engine: args.engine,
        nodes: args.nodes,
    };

    if args.soak_seconds > 0 {
        let expected =
            (args.soak_rate as usize * args.soak_seconds as usize + 1000) * args.subscribers;
        let receiver =
            start_receiver(Duration::from_millis(args.receiver_latency_ms), expected).await?;
        let mut deployment =
            Deployment::start(&args, setup, server.as_ref(), receiver.addr).await?;
        soak(&args, &deployment, &receiver.seen).await?;
        deployment.stop().await;
        return Ok(());
    }
    eprintln!(
        "scenario: {}{}, {} subscriber(s), receiver latency {} ms, payload ~{} B, {} live events at concurrency {}, backlog {}",
        setup.label(),
        server
            .as_ref()
            .map(|s| format!(" on {}", PgServer::shown(&s.admin)))
            .unwrap_or_default(),
        args.subscribers, args.receiver_latency_ms, args.payload_bytes, args.events, args.concurrency, args.backlog
    );
    let metrics = run_scenario(&args, setup, server.as_ref()).await?;
    println!("engine: {}", setup.label());
    print_single(&args, &metrics);
    Ok(())
}
