//! The rest of the test rig: a sled store on a temporary directory, the real HTTP client, a
//! dispatcher over them, subscriber configs, enqueueing exactly like the API does, and polling
//! with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use herald_core::{
    DeliveryId, DeliveryStore, NewEvent, QueueCounts, RetryPolicy, SecurityPolicy,
    SubscriberConfig, SubscriberId, UnixMillis,
};
use herald_delivery::HttpClient;
use herald_dispatcher::Dispatcher;
use herald_queue::{SledOptions, SledStore};
use tempfile::TempDir;

use crate::receiver::Receiver;

/// Serialises the tests that measure time, concurrency or CPU: two shared cores are not
/// enough to run them side by side without skewing each other.
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// [`serial`] for tests that are not async.
pub(crate) fn serial_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn sid(id: &str) -> SubscriberId {
    SubscriberId::new(id).unwrap()
}

/// A subscriber of `receiver` with test-friendly defaults: 10 in flight, 10 s timeout, fast
/// retries (100 ms, no jitter), default throttling, no rate limit.
pub(crate) fn subscriber(id: &str, receiver: &Receiver) -> SubscriberConfig {
    SubscriberConfig {
        max_in_flight: 10,
        retry: RetryPolicy {
            max_attempts: 10,
            initial_interval: Duration::from_millis(100),
            multiplier: 2.0,
            max_interval: Duration::from_secs(1),
            randomization: 0.0,
            max_age: None,
        },
        ..SubscriberConfig::new(sid(id), receiver.url().parse().unwrap())
    }
}

pub(crate) fn client() -> HttpClient {
    HttpClient::new(SecurityPolicy {
        allow_http: true,
        allow_private_networks: true,
    })
    .unwrap()
}

/// A store on a temporary directory and a dispatcher over it.
pub(crate) struct Harness {
    pub(crate) store: Arc<dyn DeliveryStore>,
    pub(crate) dispatcher: Dispatcher,
    _dir: TempDir,
}

impl Harness {
    /// Must run inside a tokio runtime (the dispatcher spawns its pumps on it).
    pub(crate) async fn start(subscribers: Vec<SubscriberConfig>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn DeliveryStore> =
            Arc::new(SledStore::open(dir.path(), SledOptions::default()).unwrap());
        let dispatcher = Dispatcher::start(Arc::clone(&store), client(), subscribers)
            .await
            .unwrap();
        Self {
            store,
            dispatcher,
            _dir: dir,
        }
    }

    /// Enqueues `n` events for `subscriber` and notifies it; see [`enqueue`].
    pub(crate) async fn enqueue(&self, subscriber: &str, n: usize) -> Vec<DeliveryId> {
        enqueue(&self.store, &self.dispatcher, subscriber, n).await
    }

    /// The counts, read synchronously (sled answers them without waiting), so they can be
    /// polled from `eventually`'s closure.
    pub(crate) fn counts(&self, subscriber: &str) -> QueueCounts {
        ready(self.store.counts(&sid(subscriber))).unwrap()
    }

    /// Waits until `subscriber` has `n` delivered and nothing pending or in flight.
    pub(crate) async fn wait_delivered(&self, subscriber: &str, n: u64, within: Duration) {
        eventually(within, &format!("{n} delivered to {subscriber}"), || {
            let c = self.counts(subscriber);
            c.delivered == n && c.pending == 0 && c.in_flight == 0
        })
        .await;
    }
}

/// The output of a future that completes without waiting (sled's in-memory reads); panics if
/// it would wait.
pub(crate) fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the store read would wait"),
    }
}

/// Enqueues `n` events (one delivery each) for `subscriber` the way the API does: through the
/// dispatcher, which stores them durably and wakes the pump. Each payload carries its sequence
/// number and enqueue time.
pub(crate) async fn enqueue(
    store: &Arc<dyn DeliveryStore>,
    dispatcher: &Dispatcher,
    subscriber: &str,
    n: usize,
) -> Vec<DeliveryId> {
    let id = sid(subscriber);
    let now = UnixMillis::now();
    let events = (0..n)
        .map(|seq| NewEvent {
            event_type: "test.event".to_owned(),
            payload: Bytes::from(format!(r#"{{"seq":{seq},"enqueued_ms":{}}}"#, now.0)),
            subscribers: vec![id.clone()],
            idempotency_key: None,
            received_at: now,
            ordering_key: None,
            ordered_for: Vec::new(),
            traceparent: None,
        })
        .collect();
    let _ = store;
    let receipts = dispatcher.ingest(events).await.unwrap();
    receipts
        .into_iter()
        .flat_map(|r| r.deliveries.into_iter().map(|d| d.id))
        .collect()
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` after `within`.
pub(crate) async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
