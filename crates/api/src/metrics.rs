//! `GET /metrics`: Prometheus text.
//!
//! Counters and histograms are recorded where things happen (ingest, attempts). Gauges that
//! describe state (`herald_queue_depth`, `herald_in_flight`, `herald_effective_limit`) are set
//! from the dispatcher's live figures and the store's incremental counts at scrape time, so the
//! hot path never touches them and no scrape scans storage.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::ApiError;
use crate::ApiState;

/// Buckets of `herald_attempt_duration_seconds`.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often [`run_upkeep`] folds pending histogram samples into their buckets.
pub(crate) const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder. Call once, before the dispatcher starts (its
/// metric handles bind to the recorder installed at that moment), and keep [`run_upkeep`]
/// running beside it.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("herald_attempt_duration_seconds".to_owned()),
            ATTEMPT_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// Folds the recorder's pending histogram samples into their buckets every 5 seconds,
/// until the future is dropped.
///
/// The exporter keeps every histogram sample (about 8 bytes, one per attempt) in a lock-free
/// list until something drains it; `install_recorder` leaves that to the caller and otherwise
/// only a scrape of `/metrics` would. A daemon nobody scrapes grew by ~1 GB per hour at 36k
/// attempts/s. Spawn this beside the server.
pub async fn run_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

pub(crate) async fn render(State(state): State<ApiState>) -> Response {
    let Some(handle) = state.inner.metrics.as_ref() else {
        return ApiError::not_found("metrics_disabled", "no metrics recorder is installed")
            .into_response();
    };
    // Gauges keep their last values when the store cannot be read right now.
    for s in state.inner.dispatcher.stats().await.unwrap_or_default() {
        let id = s.id.to_string();
        metrics::gauge!("herald_in_flight", "subscriber" => id.clone()).set(f64::from(s.in_flight));
        metrics::gauge!("herald_effective_limit", "subscriber" => id.clone())
            .set(f64::from(s.effective_limit));
        metrics::gauge!("herald_max_in_flight", "subscriber" => id.clone())
            .set(f64::from(s.max_in_flight));
        metrics::gauge!("herald_error_rate", "subscriber" => id.clone()).set(s.error_rate);
        metrics::gauge!("herald_oldest_pending_seconds", "subscriber" => id.clone())
            .set(s.oldest_pending.as_secs_f64());
        metrics::gauge!("herald_paused", "subscriber" => id).set(if s.paused_reason.is_some() {
            1.0
        } else {
            0.0
        });
    }
    for (sub, c) in state.inner.store.all_counts().await.unwrap_or_default() {
        let id = sub.to_string();
        for (st, n) in [
            ("pending", c.pending),
            ("in_flight", c.in_flight),
            ("delivered", c.delivered),
            ("dead", c.dead),
        ] {
            metrics::gauge!("herald_queue_depth", "subscriber" => id.clone(), "state" => st)
                .set(n as f64);
        }
    }
    if let Ok(Some(bytes)) = state.inner.store.size_on_disk().await {
        metrics::gauge!("herald_store_bytes").set(bytes as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
