//! One attempt of one delivery: send, decide the outcome, record it, feed the throttle.

use std::sync::Arc;

use herald_core::{AttemptRecord, ClaimedDelivery, Outcome, StoreError, UnixMillis};
use herald_delivery::{retry, AttemptRequest, AttemptResult, Verdict};
use tracing::Instrument;

use crate::alerts::Alerts;
use crate::subscriber::{InFlightGuard, Settings, Subscriber};
use crate::Shared;

/// The reason recorded when a subscriber answers `410 Gone`.
pub const GONE_REASON: &str = "endpoint answered 410 Gone (retired); resume to deliver again";

pub(crate) async fn run(
    sub: Arc<Subscriber>,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    delivery: ClaimedDelivery,
    _slot: InFlightGuard,
) {
    // The span is at debug level so that a busy daemon logging at info pays nothing per
    // delivery; the failure events below carry the same fields themselves.
    let span = tracing::debug_span!(
        "attempt",
        subscriber = %sub.id,
        delivery_id = %delivery.id,
        attempt = delivery.attempt,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    async {
        let request = AttemptRequest {
            delivery_id: delivery.id,
            attempt: delivery.attempt,
            payload: delivery.payload.clone(),
            // Same trace as the ingest request, a fresh span per attempt; no header when the
            // event came without one.
            traceparent: delivery
                .traceparent
                .as_deref()
                .and_then(herald_core::Traceparent::parse)
                .map(|tp| tp.child(rand::random())),
        };
        let result = tokio::select! {
            r = settings.endpoint.attempt(request) => r,
            () = shared.hard_stop.cancelled() => {
                // Shutdown grace ran out: give the lease back, the next start sends it again.
                release(&shared, &delivery).await;
                return;
            }
        };
        let duration_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
        let span = tracing::Span::current();
        if let Some(code) = result.status_code {
            span.record("status", code);
        }
        span.record("duration_ms", duration_ms);
        sub.metrics
            .attempt_seconds
            .record(result.duration.as_secs_f64());

        let outcome = decide(&sub, &settings, &shared, &delivery, &result, duration_ms).await;
        let success = matches!(result.verdict, Verdict::Success);
        let dead = outcome == Outcome::Dead;
        let record = AttemptRecord {
            attempt: delivery.attempt,
            at: result.started_at,
            status_code: result.status_code,
            error: result.error.clone(),
            duration_ms,
        };
        match shared
            .store
            .finish_attempt(delivery.id, delivery.lease, record, outcome)
            .await
        {
            Ok(()) => {
                if dead {
                    Alerts::dead(&shared, &delivery, result.error.as_deref());
                }
            }
            Err(StoreError::LeaseLost(_)) => {
                // The lease expired and the delivery was claimed again: the newer lease owns
                // it now, and this outcome is dropped (fencing).
                tracing::warn!(
                    subscriber = %sub.id, delivery_id = %delivery.id,
                    "attempt outcome dropped: the lease was lost (it expired and the delivery was claimed again)"
                );
            }
            Err(e) => {
                // The lease stays until it expires; then the delivery is claimable again
                // (at-least-once).
                tracing::error!(error = %e, "recording the attempt failed");
            }
        }
        if let Some(change) = sub.record_outcome(success) {
            Alerts::limit_changed(&shared, &sub.id, change, sub.error_rate());
        }
    }
    .instrument(span)
    .await;
}

async fn decide(
    sub: &Subscriber,
    settings: &Settings,
    shared: &Arc<Shared>,
    delivery: &ClaimedDelivery,
    result: &AttemptResult,
    duration_ms: u64,
) -> Outcome {
    let error = result.error.as_deref().unwrap_or("");
    let (subscriber, delivery_id, attempt, status) = (
        sub.id.as_str(),
        delivery.id,
        delivery.attempt,
        result.status_code,
    );
    match result.verdict {
        Verdict::Success => {
            sub.metrics.delivered.increment(1);
            tracing::debug!("delivered");
            Outcome::Delivered
        }
        Verdict::Gone => {
            sub.metrics.gone.increment(1);
            tracing::warn!(subscriber, %delivery_id, attempt, status, duration_ms, "subscriber answered 410 Gone: pausing it");
            if let Err(e) = shared.store.set_paused(&sub.id, Some(GONE_REASON)).await {
                tracing::error!(error = %e, "persisting the pause failed");
            }
            sub.set_paused(Some(GONE_REASON.to_owned()));
            Alerts::paused(shared, &sub.id, GONE_REASON);
            // Waits (not dies) until an operator resumes the subscriber.
            Outcome::RetryAt(UnixMillis::now())
        }
        Verdict::Failure => {
            let now = UnixMillis::now();
            // The schedule counts within the delivery's retry budget (a replay starts a fresh
            // one: attempt 1 again, `max_age` from the replay).
            let next = retry::next_attempt_at(
                &settings.config.retry,
                delivery.budget.attempt_in_budget(delivery.attempt),
                delivery.budget.since,
                now,
                result.retry_after,
                &mut rand::rng(),
            );
            match next {
                Some(at) => {
                    sub.metrics.retried.increment(1);
                    tracing::info!(
                        subscriber, %delivery_id, attempt, status, duration_ms, error,
                        retry_in_ms = at.0.saturating_sub(now.0),
                        "attempt failed; retry scheduled"
                    );
                    Outcome::RetryAt(at)
                }
                None => {
                    sub.metrics.dead.increment(1);
                    tracing::warn!(
                        subscriber, %delivery_id, attempt, status, duration_ms, error,
                        "attempt failed; no attempts left: dead-lettered"
                    );
                    Outcome::Dead
                }
            }
        }
    }
}

/// Gives a claimed delivery back, due now.
pub(crate) async fn release(shared: &Shared, delivery: &ClaimedDelivery) {
    match shared
        .store
        .release(delivery.id, delivery.lease, UnixMillis::now())
        .await
    {
        Ok(()) => {}
        Err(StoreError::LeaseLost(_)) => {
            tracing::warn!(delivery_id = %delivery.id, "release dropped: the lease was already lost");
        }
        Err(e) => {
            tracing::error!(delivery_id = %delivery.id, error = %e, "releasing a lease failed; the delivery is claimable again when the lease expires");
        }
    }
}
