//! Shared pieces of the end-to-end tests: a recording test receiver (axum, in this process), a
//! handle on a real `herald run` child process, and small polling helpers.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The herald binary under test.
pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// What the panic handler of the Rust standard library prints; must never be in a daemon log.
pub const PANIC_TEXT: &str = "panicked at";

// ---------------------------------------------------------------------------------------------
// Polling

/// Polls `check` every 25 ms until it returns `Some`, or panics naming `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free port on 127.0.0.1: bind port 0, read it, drop the listener.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A small xorshift generator (no dependency needed for test randomness).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self(nanos | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Test receiver

/// How the receiver answers. Changed at runtime with [`Receiver::set`].
#[derive(Debug, Clone)]
pub enum Mode {
    /// Answer at once with this status.
    Status(u16),
    /// Wait, then answer with this status.
    Delay(Duration, u16),
    /// Wait a random time in `[0, max)`, then answer 200.
    RandomDelay(Duration),
    /// Never answer (the sender has to time out).
    BlackHole,
    /// Close the connection without answering.
    Drop,
    /// Answer with this status and a `Retry-After: <secs>` header.
    RetryAfter(u16, u64),
    /// Per request, after `delay`: 500 with `p_500`, otherwise 200.
    Flaky { p_500: f64, delay: Duration },
    /// Per request: 500 with `p_500`, dropped connection with `p_drop`, a slow 500 after `slow`
    /// with `p_slow`, otherwise 200.
    Flap {
        p_500: f64,
        p_drop: f64,
        p_slow: f64,
        slow: Duration,
    },
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The query string, if the request had one.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn webhook_id(&self) -> String {
        self.header("webhook-id").unwrap_or_default().to_owned()
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Requests per webhook-id.
    requests: HashMap<String, usize>,
    /// Webhook-ids that got at least one 2xx answer.
    succeeded: HashSet<String>,
}

struct RecvState {
    mode: Mutex<Mode>,
    log: Mutex<Vec<Received>>,
    /// (index in `log`, status, when answered) of every answered request.
    answers: Mutex<Vec<(usize, u16, Instant)>>,
    counts: Mutex<Counts>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    answered: AtomicUsize,
    rng: Mutex<Rng>,
}

/// An HTTP receiver on 127.0.0.1 that records every request and answers per [`Mode`].
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<RecvState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decrements the in-flight gauge however the handler ends (answered, dropped, cancelled).
struct InFlight(Arc<RecvState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Action {
    Answer(Duration, u16),
    RetryAfter(u16, u64),
    Drop,
    Hole,
}

async fn receive(
    State(state): State<Arc<RecvState>>,
    ConnectInfo(conn): ConnectInfo<ConnKill>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now_in = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now_in, Ordering::SeqCst);
    let _guard = InFlight(Arc::clone(&state));
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let index = {
        let mut log = state.log.lock();
        log.push(Received {
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
            at: Instant::now(),
        });
        log.len() - 1
    };
    *state.counts.lock().requests.entry(id.clone()).or_default() += 1;

    let mode = state.mode.lock().clone();
    let action = match mode {
        Mode::Status(s) => Action::Answer(Duration::ZERO, s),
        Mode::Delay(d, s) => Action::Answer(d, s),
        Mode::RandomDelay(max) => {
            let ms = state.rng.lock().range(0, max.as_millis().max(1) as u64);
            Action::Answer(Duration::from_millis(ms), 200)
        }
        Mode::BlackHole => Action::Hole,
        Mode::Drop => Action::Drop,
        Mode::RetryAfter(status, secs) => Action::RetryAfter(status, secs),
        Mode::Flaky { p_500, delay } => {
            let x = state.rng.lock().unit();
            Action::Answer(delay, if x < p_500 { 500 } else { 200 })
        }
        Mode::Flap {
            p_500,
            p_drop,
            p_slow,
            slow,
        } => {
            let x = state.rng.lock().unit();
            if x < p_500 {
                Action::Answer(Duration::ZERO, 500)
            } else if x < p_500 + p_drop {
                Action::Drop
            } else if x < p_500 + p_drop + p_slow {
                Action::Answer(slow, 500)
            } else {
                Action::Answer(Duration::ZERO, 200)
            }
        }
    };
    match action {
        Action::Hole => std::future::pending::<Response>().await,
        Action::Drop => {
            // The connection fails on its next write: the answer below is never sent.
            conn.0.store(true, Ordering::SeqCst);
            StatusCode::OK.into_response()
        }
        Action::RetryAfter(status, secs) => {
            state.answered.fetch_add(1, Ordering::SeqCst);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (status, [("retry-after", secs.to_string())]).into_response()
        }
        Action::Answer(delay, status) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if (200..300).contains(&status) {
                state.counts.lock().succeeded.insert(id);
            }
            state.answers.lock().push((index, status, Instant::now()));
            state.answered.fetch_add(1, Ordering::SeqCst);
            StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }
}

impl Receiver {
    /// Starts a receiver answering 200 to everything.
    pub async fn start() -> Self {
        Self::start_with(Mode::Status(200)).await
    }

    pub async fn start_with(mode: Mode) -> Self {
        let state = Arc::new(RecvState {
            mode: Mutex::new(mode),
            log: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            rng: Mutex::new(Rng::seeded()),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                KillListener(listener),
                app.into_make_service_with_connect_info::<ConnKill>(),
            )
            .await;
        });
        Self { addr, state, task }
    }

    /// The URL of `path` on this receiver, e.g. `url("/a")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.log.lock().clone()
    }

    /// Requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.state
            .log
            .lock()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn request_count(&self) -> usize {
        self.state.log.lock().len()
    }

    /// How many requests carried this webhook-id.
    pub fn count_of(&self, id: &str) -> usize {
        self.state
            .counts
            .lock()
            .requests
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Snapshot of requests per webhook-id.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.state.counts.lock().requests.clone()
    }

    /// Webhook-ids answered with a 2xx at least once.
    pub fn succeeded(&self) -> HashSet<String> {
        self.state.counts.lock().succeeded.clone()
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request answered with a status after a delay ([`Mode::Status`], [`Mode::Delay`],
    /// [`Mode::RandomDelay`], [`Mode::Flaky`], [`Mode::Flap`]): the request, the status, when
    /// the answer went out.
    pub fn answers(&self) -> Vec<(Received, u16, Instant)> {
        let log = self.state.log.lock();
        self.state
            .answers
            .lock()
            .iter()
            .map(|(i, status, at)| (log[*i].clone(), *status, *at))
            .collect()
    }

    /// Requests answered (after their delay), whatever the status.
    pub fn answered(&self) -> usize {
        self.state.answered.load(Ordering::SeqCst)
    }
}

/// A TCP listener whose connections can be cut from inside a handler.
struct KillListener(TcpListener);

impl Listener for KillListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    let _ = inner.set_nodelay(true);
                    let io = KillableIo {
                        inner,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The kill switch of one connection, handed to handlers as connect info.
#[derive(Clone)]
struct ConnKill(Arc<AtomicBool>);

impl Connected<IncomingStream<'_, KillListener>> for ConnKill {
    fn connect_info(stream: IncomingStream<'_, KillListener>) -> Self {
        Self(Arc::clone(&stream.io().killed))
    }
}

/// A TCP stream that fails every read and write once killed, so the server drops it.
struct KillableIo {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "cut by the test receiver")
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// One `subscribers/<name>.toml`, with fast test defaults.
#[derive(Debug, Clone)]
pub struct Sub {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub timeout: String,
    pub max_in_flight: u32,
    pub max_attempts: u32,
    pub initial_interval: String,
    pub max_interval: String,
    /// Top-level keys, verbatim (e.g. `headers = {...}`).
    pub top: String,
    /// Appended verbatim (e.g. `[auth]` or `[signing]` tables).
    pub extra: String,
}

impl Sub {
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            events: vec!["*".to_owned()],
            timeout: "2s".to_owned(),
            max_in_flight: 10,
            max_attempts: 5,
            initial_interval: "100ms".to_owned(),
            max_interval: "1s".to_owned(),
            top: String::new(),
            extra: String::new(),
        }
    }
    pub fn events(mut self, events: &[&str]) -> Self {
        self.events = events.iter().map(|e| (*e).to_owned()).collect();
        self
    }
    pub fn timeout(mut self, t: &str) -> Self {
        t.clone_into(&mut self.timeout);
        self
    }
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }
    pub fn attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    pub fn intervals(mut self, initial: &str, max: &str) -> Self {
        initial.clone_into(&mut self.initial_interval);
        max.clone_into(&mut self.max_interval);
        self
    }
    pub fn top(mut self, toml: &str) -> Self {
        self.top.push_str(toml);
        self.top.push('\n');
        self
    }
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
    pub fn render(&self) -> String {
        let events: Vec<String> = self.events.iter().map(|e| format!("{e:?}")).collect();
        format!(
            "url = {url:?}\nevents = [{events}]\ntimeout = {timeout:?}\nmax_in_flight = {mif}\n{top}\n\
             [retry]\nmax_attempts = {ma}\ninitial_interval = {ii:?}\nmultiplier = 2.0\n\
             max_interval = {mi:?}\nrandomization = 0.0\n\n{extra}",
            url = self.url,
            events = events.join(", "),
            timeout = self.timeout,
            mif = self.max_in_flight,
            top = self.top,
            ma = self.max_attempts,
            ii = self.initial_interval,
            mi = self.max_interval,
            extra = self.extra,
        )
    }
}

/// The daemon file and the subscriber files of one test.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub api_token: Option<String>,
    pub max_payload_bytes: usize,
    pub grace: String,
    /// `[storage] retention`.
    pub retention: String,
    /// The storage path as written in herald.toml (relative to the config dir).
    pub storage: String,
    pub subs: Vec<Sub>,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
    /// The storage engine (sled by default).
    pub engine: Engine,
    /// Appended to herald.toml verbatim (e.g. an `[alerts]` table).
    pub daemon_extra: String,
    /// The test is about sled itself (its files, fsyncs, a full disk): it stays on sled when
    /// `HERALD_E2E_ENGINE=postgres` runs the suite on PostgreSQL.
    pub sled_only: bool,
}

/// The storage engine a test daemon runs on.
#[derive(Debug, Clone, Default)]
pub enum Engine {
    /// sled in the test's temp dir.
    #[default]
    Sled,
    /// PostgreSQL: `url` is given to the daemon through `HERALD_DATABASE_URL` (so the password
    /// is never in the config file), with an optional `[cluster] node_id`.
    Postgres {
        url: String,
        node_id: Option<String>,
    },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: free_port(),
            api_token: None,
            max_payload_bytes: 1 << 20,
            grace: "5s".to_owned(),
            retention: "1d".to_owned(),
            storage: "data".to_owned(),
            subs: Vec::new(),
            env: Vec::new(),
            engine: Engine::Sled,
            daemon_extra: String::new(),
            sled_only: false,
        }
    }
}

/// Whether `HERALD_E2E_ENGINE=postgres` asks for the whole suite on PostgreSQL: then every
/// daemon a test starts with the default engine gets a fresh database of its own (tests that
/// are about sled's files stay on sled, see [`Config::sled_only`]). Unset or `sled`: sled.
fn suite_on_postgres() -> bool {
    match std::env::var("HERALD_E2E_ENGINE").as_deref() {
        Err(_) | Ok("" | "sled") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("HERALD_E2E_ENGINE={other:?}: use \"sled\" or \"postgres\""),
    }
}

impl Config {
    pub fn sub(mut self, sub: Sub) -> Self {
        self.subs.push(sub);
        self
    }
    pub fn token(mut self, token: &str) -> Self {
        self.api_token = Some(token.to_owned());
        self
    }
    pub fn max_payload(mut self, n: usize) -> Self {
        self.max_payload_bytes = n;
        self
    }
    pub fn grace(mut self, g: &str) -> Self {
        g.clone_into(&mut self.grace);
        self
    }
    /// Appends `toml` to herald.toml.
    pub fn daemon(mut self, toml: &str) -> Self {
        self.daemon_extra.push_str(toml);
        self.daemon_extra.push('\n');
        self
    }
    /// Sets an environment variable for the daemon.
    pub fn env_var(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn retention(mut self, r: &str) -> Self {
        r.clone_into(&mut self.retention);
        self
    }
    /// Runs on PostgreSQL at `url` (a node of the cluster on that database).
    /// Keeps this daemon on sled whatever `HERALD_E2E_ENGINE` says.
    pub fn sled_only(mut self) -> Self {
        self.sled_only = true;
        self
    }
    pub fn postgres(mut self, url: &str, node_id: Option<&str>) -> Self {
        self.engine = Engine::Postgres {
            url: url.to_owned(),
            node_id: node_id.map(str::to_owned),
        };
        self
    }
    /// The same config for another node: a new port, its own node id.
    pub fn another_node(&self, node_id: &str) -> Self {
        let mut c = self.clone();
        c.port = free_port();
        if let Engine::Postgres { node_id: id, .. } = &mut c.engine {
            *id = Some(node_id.to_owned());
        }
        c
    }

    pub fn render_daemon(&self) -> String {
        let token = self
            .api_token
            .as_ref()
            .map(|t| format!("api_token = {t:?}\n"))
            .unwrap_or_default();
        let (engine, cluster) = match &self.engine {
            Engine::Sled => (String::new(), String::new()),
            Engine::Postgres { node_id, .. } => (
                "engine = \"postgres\"\nurl = \"${HERALD_DATABASE_URL}\"\npool_size = 8\n"
                    .to_owned(),
                node_id
                    .as_ref()
                    .map(|id| format!("\n[cluster]\nnode_id = {id:?}\n"))
                    .unwrap_or_default(),
            ),
        };
        format!(
            "subscribers_dir = \"subscribers\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n{token}\
             max_payload_bytes = {max}\n\n[storage]\n{engine}path = {storage:?}\nretention = {retention:?}\n\n\
             [security]\nallow_http = true\nallow_private_networks = true\n\n\
             [shutdown]\ngrace = {grace:?}\n{cluster}\n{extra}",
            extra = self.daemon_extra,
            port = self.port,
            max = self.max_payload_bytes,
            storage = self.storage,
            retention = self.retention,
            grace = self.grace,
        )
    }

    /// Writes `herald.toml` and `subscribers/*.toml` into `dir`; returns the daemon file's path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let subs = dir.join("subscribers");
        std::fs::create_dir_all(&subs).expect("create subscribers dir");
        for s in &self.subs {
            std::fs::write(subs.join(format!("{}.toml", s.name)), s.render())
                .expect("write subscriber file");
        }
        let path = dir.join("herald.toml");
        std::fs::write(&path, self.render_daemon()).expect("write herald.toml");
        path
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// A `herald run` child process on a temporary config dir and store.
pub struct Herald {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub base: String,
    pub http: reqwest::Client,
    child: Option<Child>,
    /// The database of a daemon moved to PostgreSQL by `HERALD_E2E_ENGINE` (dropped with it).
    _db: Option<TestDb>,
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `herald run -c <config>` with stdout and stderr appended to `log`.
pub fn spawn_run(config_path: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log file");
    let mut cmd = Command::new(HERALD);
    cmd.arg("run")
        .arg("-c")
        .arg(config_path)
        .env("RUST_LOG", "info")
        .env_remove("HERALD_API_TOKEN")
        .env_remove("HERALD_URL")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log handle"))
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn herald")
}

impl Herald {
    /// Writes the config into a new temp dir, starts the daemon and waits until it is healthy.
    pub async fn start(mut config: Config) -> Self {
        let db =
            if !config.sled_only && matches!(config.engine, Engine::Sled) && suite_on_postgres() {
                let db = TestDb::create().await;
                config.engine = Engine::Postgres {
                    url: db.url.clone(),
                    node_id: None,
                };
                Some(db)
            } else {
                None
            };
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = config.write(dir.path());
        let log_path = dir.path().join("herald.log");
        let base = format!("http://127.0.0.1:{}", config.port);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        let mut h = Self {
            dir,
            config,
            config_path,
            log_path,
            base,
            http,
            child: None,
            _db: db,
        };
        h.spawn_and_wait().await;
        h
    }

    /// The environment the daemon runs with: the config's, and the database URL on PostgreSQL
    /// (pass it to `herald check` of the same config).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.config.env.clone();
        if let Engine::Postgres { url, .. } = &self.config.engine {
            env.push(("HERALD_DATABASE_URL".to_owned(), url.clone()));
        }
        env
    }

    async fn spawn_and_wait(&mut self) {
        let env = self.env();
        self.child = Some(spawn_run(&self.config_path, &self.log_path, &env));
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "herald exited during start-up with {status}; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < until,
                "herald did not become healthy; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("herald is running").id()
    }

    pub fn subscribers_dir(&self) -> PathBuf {
        self.dir.path().join("subscribers")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panics if the daemon log shows a panic.
    pub fn assert_no_panic(&self) {
        let log = self.log_text();
        assert!(!log.contains(PANIC_TEXT), "herald panicked; log:\n{log}");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    pub fn sighup(&self) {
        self.signal("HUP");
    }

    pub fn sigstop(&self) {
        self.signal("STOP");
    }

    pub fn sigcont(&self) {
        self.signal("CONT");
    }

    /// SIGKILL and reap.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL herald");
            child.wait().expect("reap herald");
        }
    }

    /// Waits for the daemon to exit, at most `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            let child = self.child.as_mut().expect("herald is running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < until,
                "herald did not exit within {deadline:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the daemon again on the same config, port and store (after it exited or was killed).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.sigkill();
        }
        self.spawn_and_wait().await;
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.api_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// GET with the configured token; the status and the body parsed as JSON (or a string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .authed(self.http.get(self.url(path)))
            .send()
            .await
            .expect("GET");
        into_json(res).await
    }

    /// GET, the body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let res = self
            .authed(self.http.get(self.url(path)))
            .send()
            .await
            .expect("GET");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    /// POST a body verbatim (as `application/json`).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let res = self
            .authed(self.http.post(self.url(path)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        into_json(res).await
    }

    /// POST without a body.
    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        let res = self
            .authed(self.http.post(self.url(path)))
            .send()
            .await
            .expect("POST");
        into_json(res).await
    }

    /// Ingests one event; asserts 202 and returns the answer.
    pub async fn ingest(&self, event: &Value) -> Value {
        let (status, body) = self.post("/v1/events", event).await;
        assert_eq!(status, 202, "ingest answered {status}: {body}");
        body
    }

    /// The `/v1/subscribers` item of `id`.
    pub async fn subscriber(&self, id: &str) -> Value {
        let (status, body) = self.get("/v1/subscribers").await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .expect("array")
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("subscriber {id} not listed: {body}"))
    }

    /// A delivery's status string.
    pub async fn delivery_status(&self, id: &str) -> String {
        let (status, body) = self.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the delivery has `want` status; returns its view.
    pub async fn wait_delivery(&self, id: &str, want: &str, deadline: Duration) -> Value {
        wait_for(deadline, &format!("delivery {id} to be {want}"), || async {
            let (_, body) = self.get(&format!("/v1/deliveries/{id}")).await;
            (body["status"] == want).then_some(body)
        })
        .await
    }

    pub async fn metrics(&self) -> String {
        let (status, text) = self.get_text("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Runs a client command of the binary against this daemon (`--url`, `--token`).
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(HERALD);
        cmd.args(args)
            .arg("--url")
            .arg(&self.base)
            .env_remove("HERALD_API_TOKEN")
            .env_remove("HERALD_URL");
        if let Some(t) = &self.config.api_token {
            cmd.arg("--token").arg(t);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run herald client"))
            .await
            .expect("client task")
    }
}

async fn into_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Runs `herald <args>` to completion (no daemon involved), e.g. `check`.
pub async fn run_herald(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(HERALD);
        cmd.args(&args).env_remove("HERALD_API_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run herald")
    })
    .await
    .expect("herald task")
}

/// The sum of every sample of `name` whose label set contains all of `labels` (`k="v"` strings).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if !labels.iter().all(|l| rest.contains(l)) {
            continue;
        }
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Asserts an API error body: `{"error": "<code>", "message": "<sentence>"}`.
pub fn assert_error_body(body: &Value, context: &str) {
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{context}: no \"error\" code in {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{context}: no \"message\" in {body}"
    );
}

/// The delivery ids of a 202 answer, as `(subscriber, id)`.
pub fn receipt_ids(receipt: &Value) -> Vec<(String, String)> {
    receipt["deliveries"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["subscriber"].as_str().unwrap_or_default().to_owned(),
                        d["id"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A fresh database per test, and the server the PostgreSQL tests use
/// (`HERALD_TEST_DATABASE_URL`; unset is a failure, never a skip): herald-postgres's test
/// support, shared with its own tests and the dispatcher's.
pub use herald_postgres::testing::{server_url as test_database_url, TestDb};

/// A PostgreSQL server of the test's own (initdb on a temp dir, a free port), for tests that
/// stop and start it. As root, it runs as the `postgres` user (PostgreSQL refuses root).
pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl OwnPostgres {
    fn as_pg(&self, program: &str) -> Command {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let exe = self.bin.join(program);
        if is_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// initdb and start; panics (with the reason) when PostgreSQL's binaries are missing.
    pub fn start_new() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL installed under /usr/lib/postgresql (scripts/test installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::Builder::new()
            .prefix("herald-e2e-pg")
            .tempdir_in("/tmp")
            .expect("temp dir")
            .keep();
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        let out = pg
            .as_pg("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let out = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    pub fn stop(&self) {
        let _ = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
