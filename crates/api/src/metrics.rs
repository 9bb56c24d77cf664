//! `GET /metrics`: Prometheus text.
//!
//! Counters and histograms are recorded where things happen (ingest, attempts). Gauges that
//! describe state (`herald_queue_depth`, `herald_in_flight`, `herald_effective_limit`) are set
//! from the dispatcher's live figures and the store's incremental counts at scrape time, so the
//! hot path never touches them and no scrape scans storage.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use herald_core::QueueCounts;
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

fn set_subscriber_gauges(
    id: &str,
    in_flight: f64,
    effective_limit: f64,
    max_in_flight: f64,
    error_rate: f64,
    oldest_pending_seconds: f64,
    paused: f64,
) {
    let sub = id.to_owned();
    metrics::gauge!("herald_in_flight", "subscriber" => sub.clone()).set(in_flight);
    metrics::gauge!("herald_effective_limit", "subscriber" => sub.clone()).set(effective_limit);
    metrics::gauge!("herald_max_in_flight", "subscriber" => sub.clone()).set(max_in_flight);
    metrics::gauge!("herald_error_rate", "subscriber" => sub.clone()).set(error_rate);
    metrics::gauge!("herald_oldest_pending_seconds", "subscriber" => sub.clone())
        .set(oldest_pending_seconds);
    metrics::gauge!("herald_paused", "subscriber" => sub).set(paused);
}

fn set_queue_depth(id: &str, c: &QueueCounts) {
    for (st, n) in [
        ("pending", c.pending),
        ("in_flight", c.in_flight),
        ("delivered", c.delivered),
        ("dead", c.dead),
    ] {
        metrics::gauge!("herald_queue_depth", "subscriber" => id.to_owned(), "state" => st)
            .set(n as f64);
    }
}

pub(crate) async fn render(State(state): State<ApiState>) -> Response {
    let Some(handle) = state.inner.metrics.as_ref() else {
        return ApiError::not_found("metrics_disabled", "no metrics recorder is installed")
            .into_response();
    };
    // Every configured subscriber gets its queue depth, zeros included (the store only lists
    // subscribers that still have deliveries, so one whose last delivery was purged would keep
    // its last value). A subscriber reported before but no longer configured (removed by a
    // reload) reads 0 everywhere: the exporter cannot drop a series. Gauges keep their last
    // values when the store cannot be read right now.
    let stats = state.inner.dispatcher.stats().await;
    let all_counts = state.inner.store.all_counts().await;
    if let (Ok(stats), Ok(all_counts)) = (stats, all_counts) {
        // Keys blocked on a failing head (SPEC §9): every configured subscriber gets a value
        // (0 when the store lists none for it), so a gauge falls back to 0 once its keys move on.
        if let Ok(blocked) = state.inner.store.blocked_keys().await {
            for s in &stats {
                let n = blocked
                    .iter()
                    .find(|(id, _)| *id == s.id)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("herald_ordering_blocked_keys", "subscriber" => s.id.to_string())
                    .set(n as f64);
            }
        }
        update_state_gauges(&state, stats, all_counts);
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

/// Sets the per-subscriber gauges from one consistent read of the dispatcher and the store.
fn update_state_gauges(
    state: &ApiState,
    stats: Vec<herald_dispatcher::SubscriberStats>,
    all_counts: Vec<(herald_core::SubscriberId, QueueCounts)>,
) {
    let mut depth: BTreeMap<String, QueueCounts> = BTreeMap::new();
    for s in stats {
        let id = s.id.to_string();
        set_subscriber_gauges(
            &id,
            f64::from(s.in_flight),
            f64::from(s.effective_limit),
            f64::from(s.max_in_flight),
            s.error_rate,
            s.oldest_pending.as_secs_f64(),
            if s.paused_reason.is_some() { 1.0 } else { 0.0 },
        );
        depth.insert(id, QueueCounts::default());
    }
    for (sub, c) in all_counts {
        if let Some(counts) = depth.get_mut(sub.as_str()) {
            *counts = c;
        }
    }
    for (id, c) in &depth {
        set_queue_depth(id, c);
    }
    {
        let mut reported = state
            .inner
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in reported.iter().filter(|id| !depth.contains_key(*id)) {
            set_subscriber_gauges(gone, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            set_queue_depth(gone, &QueueCounts::default());
        }
        reported.extend(depth.into_keys());
    }
}
