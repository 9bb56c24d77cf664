//! Cluster mode: the rate limit and the error-rate throttle held for the whole cluster.
//!
//! When the store is shared by several nodes ([`ClusterState`]), a subscriber's limits are the
//! cluster's, not each node's:
//!
//! - **rate limit**: before each attempt the pump spends a token taken from the subscriber's
//!   cluster-wide bucket ([`ClusterState::take_rate_tokens`]). Tokens are taken in small chunks
//!   (up to a tenth of a second's worth) and kept locally until spent, so a busy node asks the
//!   database about ten times a second, not once per request. A token taken is gone from the
//!   bucket, so the cluster never sends more than the bucket gives.
//! - **error-rate throttle**: attempts count their outcomes locally; every [`SYNC_EVERY`] one
//!   task per dispatcher sends each subscriber's counts with
//!   [`ClusterState::record_outcomes`] (one call per subscriber per step, not per delivery)
//!   and applies the returned limit as the subscriber's effective limit, which is the claim's
//!   `cap` (the store enforces it across nodes from the unexpired leases). Every node reads
//!   the same row, so every node reports the same `effective_limit`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{ClusterState, RateLimitConfig, UnixMillis};

use crate::alerts::{Alerts, LimitChange};
use crate::subscriber::Subscriber;
use crate::Shared;

/// How often each subscriber's outcomes are sent to the cluster's throttle and its limit read.
pub(crate) const SYNC_EVERY: Duration = Duration::from_millis(500);

/// Tokens asked for in one call: a tenth of a second's worth, at least one.
pub(crate) fn token_chunk(limit: RateLimitConfig) -> u32 {
    (limit.per_second.get() / 10).max(1)
}

/// How long to wait after an empty bucket: the time a chunk takes to refill, 5 ms to 1 s.
fn refill_wait(limit: RateLimitConfig) -> Duration {
    let ms = u64::from(token_chunk(limit)) * 1000 / u64::from(limit.per_second.get());
    Duration::from_millis(ms.clamp(5, 1000))
}

/// Waits for one rate-limit token from the cluster's bucket. Returns false when the
/// subscriber stops first.
pub(crate) async fn take_token(
    sub: &Subscriber,
    cluster: &dyn ClusterState,
    limit: RateLimitConfig,
) -> bool {
    loop {
        // Spend a token kept from an earlier chunk.
        let spent = sub
            .rate_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if spent {
            return true;
        }
        let wait = match cluster
            .take_rate_tokens(&sub.id, limit, token_chunk(limit), UnixMillis::now())
            .await
        {
            Ok(0) => refill_wait(limit),
            Ok(n) => {
                sub.rate_tokens.fetch_add(n - 1, Ordering::AcqRel);
                return true;
            }
            Err(e) => {
                tracing::warn!(subscriber = %sub.id, error = %e, "taking rate-limit tokens failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = sub.stop.cancelled() => return false,
        }
    }
}

/// Sends every subscriber's outcome counts to the cluster's throttle and applies the answers,
/// every [`SYNC_EVERY`], until the dispatcher stops.
pub(crate) async fn sync_throttles(shared: Arc<Shared>, cluster: Arc<dyn ClusterState>) {
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.hard_stop.cancelled() => return,
        }
        let subs: Vec<Arc<Subscriber>> = shared.subscribers.read().values().cloned().collect();
        for sub in subs {
            if let Some(change) = sync_one(&sub, cluster.as_ref()).await {
                Alerts::limit_changed(&shared, &sub.id, change, sub.error_rate());
            }
        }
        if shared.stop.is_cancelled() && shared.tasks.is_empty() {
            return;
        }
    }
}

/// One subscriber's step: send its counts, apply the cluster's limit. Counts that could not
/// be sent are kept for the next step. Returns the change worth an operator alert, if any.
pub(crate) async fn sync_one(sub: &Subscriber, cluster: &dyn ClusterState) -> Option<LimitChange> {
    let (ok, failed) = std::mem::take(&mut *sub.unsent_outcomes.lock());
    let settings = sub.settings();
    let config = &settings.config;
    match cluster
        .record_outcomes(
            &sub.id,
            &config.throttle,
            config.max_in_flight,
            ok,
            failed,
            UnixMillis::now(),
        )
        .await
    {
        Ok(state) => sub.set_cluster_limit(state),
        Err(e) => {
            let mut unsent = sub.unsent_outcomes.lock();
            unsent.0 = unsent.0.saturating_add(ok);
            unsent.1 = unsent.1.saturating_add(failed);
            tracing::debug!(subscriber = %sub.id, error = %e, "cannot reach the cluster's throttle; outcomes kept for the next step");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limit(per_second: u32) -> RateLimitConfig {
        RateLimitConfig {
            per_second: NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
        }
    }

    #[test]
    fn chunks_are_a_tenth_of_a_second_at_least_one() {
        assert_eq!(token_chunk(limit(1)), 1);
        assert_eq!(token_chunk(limit(25)), 2);
        assert_eq!(token_chunk(limit(1000)), 100);
        assert_eq!(refill_wait(limit(1)), Duration::from_secs(1));
        assert_eq!(refill_wait(limit(100)), Duration::from_millis(100));
    }
}
