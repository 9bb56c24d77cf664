//! One reusable test receiver: an axum server on `127.0.0.1:0` that records every request
//! (body, headers, arrival time), counts them, tracks how many it is serving right now and the
//! most it ever served at once, and answers the way the test chooses — switchable at runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use parking_lot::{Mutex, RwLock};

/// A per-request decision: status and how long to wait before answering.
pub(crate) type Script = Arc<dyn Fn(&Recorded) -> (u16, Duration) + Send + Sync>;

/// How the receiver answers.
#[derive(Clone)]
pub(crate) enum Mode {
    /// `status` after `delay`.
    Answer { status: u16, delay: Duration },
    /// Reads the request and never answers (the connection stays open).
    BlackHole,
    /// Decides per request.
    Script(Script),
}

impl Mode {
    /// `status` at once.
    pub(crate) fn status(status: u16) -> Self {
        Self::Answer {
            status,
            delay: Duration::ZERO,
        }
    }

    /// `204` after `delay`.
    pub(crate) fn ok_after(delay: Duration) -> Self {
        Self::Answer { status: 204, delay }
    }

    /// `status` after `delay`.
    pub(crate) fn answer(status: u16, delay: Duration) -> Self {
        Self::Answer { status, delay }
    }

    /// Decides per request.
    pub(crate) fn script(f: impl Fn(&Recorded) -> (u16, Duration) + Send + Sync + 'static) -> Self {
        Self::Script(Arc::new(f))
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// When the handler was entered (body already read).
    pub(crate) at: Instant,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Recorded {
    /// The `webhook-id` header.
    pub(crate) fn webhook_id(&self) -> String {
        self.header("webhook-id")
    }

    /// The `webhook-attempt` header.
    pub(crate) fn attempt(&self) -> u32 {
        self.header("webhook-attempt").parse().unwrap_or(0)
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

struct Inner {
    mode: RwLock<Mode>,
    requests: Mutex<Vec<Recorded>>,
    count: AtomicUsize,
    current: AtomicUsize,
    max: AtomicUsize,
}

/// Decrements the current-concurrency counter when the handler ends, also when hyper drops it
/// because the client went away.
struct Serving(Arc<Inner>);

impl Serving {
    fn enter(inner: &Arc<Inner>) -> Self {
        let now = inner.current.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(inner))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running receiver. The server task lives on the test's runtime and ends with it.
pub(crate) struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    pub(crate) async fn start(mode: Mode) -> Self {
        let inner = Arc::new(Inner {
            mode: RwLock::new(mode),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            current: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, inner }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.inner.mode.write() = mode;
    }

    /// Requests received so far.
    pub(crate) fn count(&self) -> usize {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// Requests being served right now.
    pub(crate) fn current(&self) -> usize {
        self.inner.current.load(Ordering::SeqCst)
    }

    /// The most requests served at once since start (or the last [`Self::reset_max`]).
    pub(crate) fn max_concurrent(&self) -> usize {
        self.inner.max.load(Ordering::SeqCst)
    }

    /// Starts a new max-concurrency observation from the current level.
    pub(crate) fn reset_max(&self) {
        self.inner
            .max
            .store(self.inner.current.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().clone()
    }

    /// Waits until at least `n` requests arrived; panics after `within`.
    pub(crate) async fn wait_for_count(&self, n: usize, within: Duration) {
        crate::harness::eventually(within, &format!("{n} requests"), || self.count() >= n).await;
    }

    /// Waits until exactly `n` requests are being served; panics after `within`.
    pub(crate) async fn wait_for_current(&self, n: usize, within: Duration) {
        crate::harness::eventually(within, &format!("{n} concurrent requests"), || {
            self.current() == n
        })
        .await;
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _serving = Serving::enter(&inner);
    let recorded = Recorded {
        at: Instant::now(),
        headers,
        body,
    };
    let mode = inner.mode.read().clone();
    let decision = match &mode {
        Mode::Answer { status, delay } => Some((*status, *delay)),
        Mode::BlackHole => None,
        Mode::Script(f) => Some(f(&recorded)),
    };
    inner.requests.lock().push(recorded);
    inner.count.fetch_add(1, Ordering::SeqCst);
    let Some((status, delay)) = decision else {
        return std::future::pending().await;
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(status).unwrap()
}
