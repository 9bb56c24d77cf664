//! One attempt of one delivery: send, decide the outcome, record it, feed the throttle.
//!
//! Whatever happens, the attempt task ends with its delivery recorded or given back (never left
//! in flight while the process lives):
//!
//! - the outcome is recorded by [`record_or_release`]: the store call is retried after 50, 200
//!   and 1000 ms, and if it still fails the delivery is released, due now;
//! - a panic anywhere in the attempt (an auth provider, the store, …) is caught at the task's
//!   edge ([`run`]): it is counted in `herald_attempt_panics_total{subscriber}`, logged at
//!   error level with the subscriber and delivery id, and the delivery is released, due
//!   [`PANIC_RELEASE_DELAY`] later (so a delivery that panics every time costs one panic a
//!   second, not a hot loop); the dispatcher keeps running.
//!
//! Each attempt sends a `traceparent` ([`attempt_context`]); with a span sink (`[telemetry]`)
//! its `attempt` span, whose span id is the one in that header, is handed to the sink once the
//! outcome is decided. Without a sink nothing of a span is built.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use herald_core::{
    AttemptOutcome, AttemptRecord, AttemptSpan, ClaimedDelivery, Outcome, StoreError, Traceparent,
    UnixMillis,
};
use herald_delivery::{retry, AttemptRequest, AttemptResult, Verdict};
use tracing::Instrument;

use crate::alerts::Alerts;
use crate::subscriber::{InFlightGuard, Settings, Subscriber};
use crate::Shared;

/// The reason recorded when a subscriber answers `410 Gone`.
pub const GONE_REASON: &str = "endpoint answered 410 Gone (retired); resume to deliver again";

/// Pauses before each new try of a failed store write (recording an outcome, releasing).
const STORE_RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(1000),
];

/// After [`STORE_RETRY_BACKOFF`], a release that keeps failing is tried this often until it
/// works or shutdown's grace runs out: a lease lives in memory only, so giving up would strand
/// the delivery until a restart.
const RELEASE_RETRY_EVERY: Duration = Duration::from_secs(5);

/// A delivery whose attempt panicked is due again this much later.
const PANIC_RELEASE_DELAY: Duration = Duration::from_secs(1);

/// Runs one attempt as its own task. A panic inside it is caught here, so that its delivery is
/// released instead of staying in flight until a restart.
pub(crate) async fn run(
    sub: Arc<Subscriber>,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    delivery: ClaimedDelivery,
    slot: InFlightGuard,
) {
    let attempt = attempt(&sub, &settings, &shared, &delivery);
    if let Err(panic) = AssertUnwindSafe(attempt).catch_unwind().await {
        sub.metrics.panics.increment(1);
        tracing::error!(
            subscriber = %sub.id,
            delivery_id = %delivery.id,
            attempt = delivery.attempt,
            panic = panic_message(&*panic),
            "attempt task panicked; releasing its delivery"
        );
        let due = UnixMillis::now().plus(PANIC_RELEASE_DELAY);
        release_with_retries(&shared, &delivery, due).await;
    }
    drop(slot);
}

async fn attempt(
    sub: &Subscriber,
    settings: &Settings,
    shared: &Arc<Shared>,
    delivery: &ClaimedDelivery,
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
        let sink = shared.spans.as_deref();
        let parent = delivery.traceparent.as_deref().and_then(Traceparent::parse);
        let context = attempt_context(parent, sink.is_some());
        let request = AttemptRequest {
            delivery_id: delivery.id,
            attempt: delivery.attempt,
            payload: delivery.payload.clone(),
            traceparent: context.map(|c| c.to_string()),
        };
        let started = sink.map(|_| SystemTime::now());
        let result = tokio::select! {
            r = settings.endpoint.attempt(request) => r,
            () = shared.hard_stop.cancelled() => {
                // Shutdown grace ran out: give the lease back, the next start sends it again.
                release(shared, delivery).await;
                return;
            }
        };
        let ended = sink.map(|_| SystemTime::now());
        let duration_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
        let span = tracing::Span::current();
        if let Some(code) = result.status_code {
            span.record("status", code);
        }
        span.record("duration_ms", duration_ms);
        sub.metrics
            .attempt_seconds
            .record(result.duration.as_secs_f64());

        let outcome = decide(sub, settings, shared, delivery, &result, duration_ms).await;
        if let (Some(sink), Some(context), Some(start), Some(end)) = (sink, context, started, ended)
        {
            sink.attempt(&AttemptSpan {
                context,
                parent_span_id: parent.map(|p| p.span_id),
                start,
                end,
                subscriber: &sub.id,
                delivery_id: delivery.id,
                event_id: delivery.event_id,
                attempt: delivery.attempt,
                status_code: result.status_code,
                outcome: match outcome {
                    Outcome::Delivered => AttemptOutcome::Delivered,
                    Outcome::RetryAt(_) => AttemptOutcome::Retry,
                    Outcome::Dead => AttemptOutcome::Dead,
                },
                error: result.error.as_deref(),
            });
        }
        let success = matches!(result.verdict, Verdict::Success);
        let dead = outcome == Outcome::Dead;
        let record = AttemptRecord {
            attempt: delivery.attempt,
            at: result.started_at,
            status_code: result.status_code,
            error: result.error.clone(),
            duration_ms,
        };
        if record_or_release(shared, delivery, record, outcome).await && dead {
            Alerts::dead(shared, delivery, result.error.as_deref());
        }
        if let Some(change) = sub.record_outcome(success) {
            Alerts::limit_changed(shared, &sub.id, change, sub.error_rate());
        }
    }
    .instrument(span)
    .await;
}

/// The attempt's trace context (SPEC §10), sent as its `traceparent` and, with span export,
/// the context of its `attempt` span: the event's trace with a fresh span id (flags kept). An
/// event without a `traceparent` gets none, unless spans are exported: then the attempt is the
/// root of a trace of its own, so that the receiver's spans still join an exported one.
fn attempt_context(event: Option<Traceparent>, exporting: bool) -> Option<Traceparent> {
    match event {
        Some(parent) => Some(parent.with_span_id(rand::random())),
        None if exporting => Some(Traceparent::root(rand::random(), rand::random())),
        None => None,
    }
}

/// Records the attempt; a failed store write is tried again after each pause of
/// [`STORE_RETRY_BACKOFF`], and if it never works the delivery is released (due now) so it is
/// attempted again instead of staying in flight until a restart. A lost lease is final: the
/// lease expired and the delivery was claimed again, so the newer lease owns it and this
/// outcome is dropped (fencing), never retried or released. Returns whether it was recorded.
async fn record_or_release(
    shared: &Shared,
    delivery: &ClaimedDelivery,
    record: AttemptRecord,
    outcome: Outcome,
) -> bool {
    let mut pauses = STORE_RETRY_BACKOFF.iter();
    let error = loop {
        match shared
            .store
            .finish_attempt(delivery.id, delivery.lease, record.clone(), outcome)
            .await
        {
            Ok(()) => return true,
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(
                    delivery_id = %delivery.id,
                    "attempt outcome dropped: the lease was lost (it expired and the delivery was claimed again)"
                );
                return false;
            }
            Err(e) if is_permanent(&e) => break e,
            Err(e) => match pauses.next() {
                Some(pause) => {
                    tracing::warn!(delivery_id = %delivery.id, error = %e, retry_in_ms = pause.as_millis() as u64,
                        "recording the attempt failed; trying again");
                    tokio::time::sleep(*pause).await;
                }
                None => break e,
            },
        }
    };
    tracing::error!(delivery_id = %delivery.id, error = %error,
        "recording the attempt failed; releasing the delivery to attempt it again");
    release_with_retries(shared, delivery, UnixMillis::now()).await;
    false
}

/// Gives a claimed delivery back, due at `due`, trying again until it works: after each pause
/// of [`STORE_RETRY_BACKOFF`], then every [`RELEASE_RETRY_EVERY`] until shutdown's grace is
/// over.
async fn release_with_retries(shared: &Shared, delivery: &ClaimedDelivery, due: UnixMillis) {
    let mut pauses = STORE_RETRY_BACKOFF.iter();
    loop {
        let error = match shared.store.release(delivery.id, delivery.lease, due).await {
            Ok(()) => return,
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(delivery_id = %delivery.id, "release dropped: the lease was already lost");
                return;
            }
            Err(e) => e,
        };
        if is_permanent(&error) {
            // Not found, or not leased: nothing of it is in flight any more.
            tracing::error!(delivery_id = %delivery.id, error = %error, "releasing a lease failed");
            return;
        }
        let pause = pauses.next().copied().unwrap_or(RELEASE_RETRY_EVERY);
        tracing::error!(delivery_id = %delivery.id, error = %error, retry_in_ms = pause.as_millis() as u64,
            "releasing a lease failed; trying again");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.hard_stop.cancelled() => {
                tracing::error!(delivery_id = %delivery.id, "shutting down with a lease not released; it is recovered at the next start");
                return;
            }
        }
    }
}

/// Store errors that trying again cannot fix: the delivery is gone, not in flight (or leased
/// under another token), or the store is closed (shutdown).
fn is_permanent(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::NotFound(_)
            | StoreError::InvalidState { .. }
            | StoreError::LeaseLost(_)
            | StoreError::Closed
    )
}

/// The text of a panic's payload (`panic!("…")` carries a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
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

/// Gives a claimed delivery back, due now (one try: the pump's and shutdown's paths; a lease
/// that is not released expires and the delivery becomes claimable again).
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_attempt_context_continues_the_event_trace() {
        let event =
            Traceparent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        for exporting in [false, true] {
            let context = attempt_context(Some(event), exporting).unwrap();
            assert_eq!(context.trace_id, event.trace_id);
            assert_eq!(
                context.flags, event.flags,
                "an unsampled trace stays unsampled"
            );
            assert_ne!(context.span_id, 0);
        }
        // Without span export an event without a traceparent sends none (as before)...
        assert_eq!(attempt_context(None, false), None);
        // ...with it, the attempt starts a sampled trace of its own.
        let root = attempt_context(None, true).unwrap();
        assert!(root.sampled() && root.trace_id != 0 && root.span_id != 0);
    }
}
