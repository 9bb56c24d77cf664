//! Herald's HTTP API: event ingest, the admin endpoints and Prometheus metrics, on axum.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/events` | ingest one event (202 once durable) |
//! | POST | `/v1/events/batch` | ingest up to 1000 events, one result each |
//! | GET | `/v1/events/{id}`, `/v1/events?since=&until=&event_type=&limit=&cursor=` | an event as stored, with its deliveries; a page |
//! | POST | `/v1/subscribers/{id}/replay` | finished deliveries of a time window pending again |
//! | GET | `/v1/subscribers`, `/v1/subscribers/{id}` | live figures (no secrets) |
//! | POST | `/v1/subscribers/{id}/pause`, `/resume`, `/redrive` | flow control, dead letters |
//! | GET | `/v1/deliveries/{id}`, `/v1/deliveries?…` | a delivery with attempts; a page |
//! | POST | `/v1/deliveries/{id}/retry` | a dead delivery back to pending |
//! | POST | `/v1/reload` | re-read the subscriber folder |
//! | GET | `/v1/cluster` | the nodes seen in the last 30 s (one without a cluster) |
//! | GET | `/healthz`, `/readyz`, `/metrics` | probes, Prometheus text |
//! | GET/POST | `/console/…` | the operator console (HTML; its own sign-in, see `console`) |
//! | GET | `/openapi.json` | the OpenAPI 3.1 document of every `/v1` route (generated) |
//!
//! When an API token is configured, `/v1/*`, `/metrics` and `/openapi.json` need
//! `Authorization: Bearer <token>`.
//! Every failure is a JSON `{"error", "message"}` ([`ApiError`]).
//!
//! ```no_run
//! # async fn demo(dispatcher: herald_dispatcher::Dispatcher) -> std::io::Result<()> {
//! let state = herald_api::ApiState::new(dispatcher, herald_api::ApiOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, herald_api::router(state.clone())).await
//! # }
//! ```

mod admin;
mod console;
mod error;
mod events;
mod ingest;
mod ingest_span;
mod metrics;
mod openapi;
mod paging;
mod replay;

mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_core::{DeliveryStore, Secret, SpanSink};
use herald_dispatcher::{Dispatcher, ReloadReport};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;
pub use ingest::{MAX_BATCH_EVENTS, MAX_PAYLOAD_DEPTH};
pub use metrics::{install_recorder, run_upkeep};

/// Re-reads the configuration and applies it; `Err` carries a printable reason (no secrets).
pub type ReloadFn = Arc<dyn Fn() -> Result<ReloadReport, String> + Send + Sync>;

/// Settings of the API (from `[server]`).
#[derive(Clone, Default)]
pub struct ApiOptions {
    /// Bearer token required on `/v1/*` and `/metrics`, if set.
    pub api_token: Option<Secret>,
    /// Largest accepted event payload, in bytes (0 = 1 MiB).
    pub max_payload_bytes: usize,
    /// Prometheus handle for `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Reload hook for `POST /v1/reload`.
    pub reload: Option<ReloadFn>,
    /// Where each ingest request's `ingest` span goes (`[telemetry]`, SPEC §10); `None`: no
    /// span is built and events keep the request's own `traceparent`.
    pub spans: Option<Arc<dyn SpanSink>>,
}

impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field("api_token", &self.api_token)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("metrics", &self.metrics.is_some())
            .field("reload", &self.reload.is_some())
            .field("spans", &self.spans)
            .finish()
    }
}

struct Inner {
    dispatcher: Dispatcher,
    store: Arc<dyn DeliveryStore>,
    api_token: Option<Secret>,
    max_payload_bytes: usize,
    metrics: Option<PrometheusHandle>,
    /// Subscribers whose per-subscriber gauges `/metrics` has set (see `metrics::render`).
    reported: std::sync::Mutex<std::collections::BTreeSet<String>>,
    reload: Option<ReloadFn>,
    spans: Option<Arc<dyn SpanSink>>,
    accepting: AtomicBool,
}

impl Inner {
    /// A batch may carry up to 16 maximal payloads (16 MiB with the default limit), and never
    /// less than 4 MiB: with a small `max_payload_bytes`, a full batch of 1000 small events
    /// must still fit, so that one too many is answered 400 (too many events), not 413.
    fn batch_body_limit(&self) -> usize {
        const FLOOR: usize = 4 * 1024 * 1024;
        self.max_payload_bytes.saturating_mul(16).max(FLOOR)
    }
}

/// Shared state of the API handlers. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("api_token", &self.inner.api_token)
            .field("accepting", &self.inner.accepting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State for a running dispatcher.
    pub fn new(dispatcher: Dispatcher, options: ApiOptions) -> Self {
        let store = Arc::clone(dispatcher.store());
        let max_payload_bytes = if options.max_payload_bytes == 0 {
            1 << 20
        } else {
            options.max_payload_bytes
        };
        Self {
            inner: Arc::new(Inner {
                dispatcher,
                store,
                api_token: options.api_token,
                max_payload_bytes,
                metrics: options.metrics,
                reported: std::sync::Mutex::default(),
                reload: options.reload,
                spans: options.spans,
                accepting: AtomicBool::new(true),
            }),
        }
    }

    /// Stops intake: ingest and `/readyz` answer 503 from now on.
    pub fn stop_intake(&self) {
        self.inner.accepting.store(false, Ordering::Release);
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.inner.api_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !given.is_some_and(|g| token_matches(g, token.expose().as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// The complete router.
pub fn router(state: ApiState) -> Router {
    let (v1, document) = openapi::v1_routes().split_for_parts();
    let document: Arc<str> = document
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}"))
        .into();
    let protected = v1
        .route("/metrics", get(metrics::render))
        .route(
            "/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.to_string(),
                    )
                }
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .merge(protected)
        .nest("/console", console::router(state.clone()))
        .fallback(admin::fallback)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert!(!token_matches(b"", b"abc"));
    }
}
