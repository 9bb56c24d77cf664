//! The pump: one task per subscriber that turns its ready queue into attempts.
//!
//! The stages a delivery passes, in order:
//!
//! 1. **pause gate**: a paused subscriber claims nothing;
//! 2. **concurrency**: claim only while `in_flight < effective_limit` (the throttle's current
//!    limit, never above `max_in_flight`), and, while requests are in flight, only once a step
//!    of slots is free (see [`claim_step`]); waiting deliveries stay in the persistent queue;
//! 3. **claim** due deliveries from the store, within the effective limit as the claim's `cap`
//!    (the store counts the subscriber's unexpired leases, on every node); each claim is a
//!    lease with a token the attempt presents with its outcome;
//! 4. **rate limit**: wait for the subscriber's governor limiter, if any, or in cluster mode for
//!    a token of the cluster-wide bucket (one claim at a time then, so nothing sits leased
//!    while it waits);
//! 5. **attempt** (see [`crate::attempt`]): HTTP with the per-attempt timeout, then the outcome,
//!    the retry schedule and the throttle feedback.
//!
//! An idle pump waits on its `Notify` (new work, freed capacity, resume, reload) or on a timer
//! set to the earliest scheduled retry: no polling, no CPU.

use std::sync::Arc;
use std::time::Duration;

use herald_core::{ClaimRequest, UnixMillis};

use crate::attempt;
use crate::cluster;
use crate::subscriber::Subscriber;
use crate::Shared;

/// Most deliveries claimed in one store call.
const CLAIM_BATCH: u32 = 128;

/// Most free slots a busy pump waits for before claiming again.
const MAX_CLAIM_STEP: u32 = 16;

/// How much room a pump with requests in flight waits for before it claims: an eighth of the
/// limit, 1 to [`MAX_CLAIM_STEP`]. At saturation each answer frees one slot; claiming one
/// delivery per answer cost a store call and a pump pass each, so a busy pump claims in steps
/// instead (a subscriber at 500 in flight runs between 485 and 500). Small limits, and the
/// throttle's probing at 1, are unaffected.
fn claim_step(limit: u32) -> u32 {
    (limit / 8).clamp(1, MAX_CLAIM_STEP)
}

/// A lease outlasts the attempt's longest possible duration (timeout, token fetch, 401 resend)
/// by this much, so a slow attempt is never handed out twice. It also bounds how long the
/// deliveries of a node killed with leases out wait before another node sends them (SPEC §8),
/// so it is kept to what the recording of an outcome needs, with room to spare.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// Pause before trying again after a storage error.
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Pause when deliveries are due but the claim leased none (the cap is held by leases this
/// pump does not know of: other nodes', or expired ones still counted elsewhere).
const CAP_HELD_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn run(sub: Arc<Subscriber>, shared: Arc<Shared>) {
    tracing::debug!(subscriber = %sub.id, "pump started");
    // Whether the last claim came back empty although something was due.
    let mut empty_while_due = false;
    loop {
        if sub.stop.is_cancelled() {
            break;
        }
        if sub.is_paused() {
            if wait(&sub, None).await.is_break() {
                break;
            }
            continue;
        }
        let limit = sub.effective_limit();
        let in_flight = sub.in_flight();
        if in_flight >= limit || (in_flight > 0 && limit - in_flight < claim_step(limit)) {
            if wait(&sub, None).await.is_break() {
                break;
            }
            continue;
        }
        let settings = sub.settings();
        let rate_limited = settings.limiter.is_some() || settings.config.rate_limit.is_some();
        let room = if rate_limited {
            1
        } else {
            (limit - in_flight).min(CLAIM_BATCH)
        };
        let now = UnixMillis::now();
        let lease_until = now.plus(
            settings
                .endpoint
                .max_attempt_duration()
                .saturating_add(LEASE_MARGIN),
        );
        let request = ClaimRequest {
            subscriber: &sub.id,
            now,
            lease_until,
            max: room as usize,
            cap: limit,
        };
        let claimed = match shared.store.claim(request).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(subscriber = %sub.id, error = %e, "claim failed");
                if wait(&sub, Some(STORE_ERROR_BACKOFF)).await.is_break() {
                    break;
                }
                continue;
            }
        };
        if claimed.is_empty() {
            let sleep = match shared.store.next_due(&sub.id).await {
                Ok(Some(due)) if due > now => Some(due.since(now)),
                // Became due between claim and peek: claim again at once, but only once in a
                // row (if the cap is held elsewhere, the claim keeps coming back empty).
                Ok(Some(_)) if !empty_while_due => {
                    empty_while_due = true;
                    continue;
                }
                Ok(Some(_)) => Some(CAP_HELD_BACKOFF),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(subscriber = %sub.id, error = %e, "reading next due time failed");
                    Some(STORE_ERROR_BACKOFF)
                }
            };
            if wait(&sub, sleep).await.is_break() {
                break;
            }
            continue;
        }
        empty_while_due = false;
        for delivery in claimed {
            if let (Some(cluster), Some(limit)) = (&shared.cluster, settings.config.rate_limit) {
                // Cluster mode: a token from the cluster-wide bucket.
                if !cluster::take_token(&sub, cluster.as_ref(), limit).await {
                    attempt::release(&shared, &delivery).await;
                    continue;
                }
            } else if let Some(limiter) = &settings.limiter {
                tokio::select! {
                    () = limiter.until_ready() => {}
                    () = sub.stop.cancelled() => {
                        attempt::release(&shared, &delivery).await;
                        continue;
                    }
                }
            }
            let slot = sub.start_attempt();
            shared.tasks.spawn(attempt::run(
                Arc::clone(&sub),
                Arc::clone(&settings),
                Arc::clone(&shared),
                delivery,
                slot,
            ));
        }
    }
    tracing::debug!(subscriber = %sub.id, "pump stopped");
}

/// Waits for a wake-up, an optional timeout, or the stop signal.
async fn wait(sub: &Subscriber, timeout: Option<Duration>) -> std::ops::ControlFlow<()> {
    use std::ops::ControlFlow::{Break, Continue};
    match timeout {
        Some(t) => tokio::select! {
            () = sub.wake.notified() => Continue(()),
            () = tokio::time::sleep(t) => Continue(()),
            () = sub.stop.cancelled() => Break(()),
        },
        None => tokio::select! {
            () = sub.wake.notified() => Continue(()),
            () = sub.stop.cancelled() => Break(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::claim_step;

    #[test]
    fn busy_pumps_claim_in_steps_of_an_eighth_of_the_limit_up_to_16() {
        assert_eq!(claim_step(1), 1);
        assert_eq!(claim_step(8), 1);
        assert_eq!(claim_step(50), 6);
        assert_eq!(claim_step(128), 16);
        assert_eq!(claim_step(500), 16);
    }
}
