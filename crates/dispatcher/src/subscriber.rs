//! The runtime state of one subscriber: its current settings, flow-control counters and
//! metric handles. Each subscriber has its own locks; nothing here is shared across subscribers.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_core::{SubscriberConfig, SubscriberId, ThrottleState};
use herald_delivery::{Endpoint, HttpClient};
use metrics::{Counter, Histogram};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alerts::{LimitChange, ThrottleGate};
use crate::throttle::SharedThrottle;
use crate::DispatchError;

/// What a subscriber's pump and attempts read, swapped whole on reload.
pub(crate) struct Settings {
    pub(crate) config: SubscriberConfig,
    pub(crate) endpoint: Endpoint,
    /// A new limiter per reload: governor quotas cannot change in place.
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("config", &self.config)
            .field("rate_limited", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub(crate) fn build(
        config: SubscriberConfig,
        client: &HttpClient,
    ) -> Result<Arc<Self>, DispatchError> {
        let endpoint =
            Endpoint::new(&config, client).map_err(|source| DispatchError::Endpoint {
                subscriber: config.id.clone(),
                source,
            })?;
        let limiter = config
            .rate_limit
            .map(|rl| RateLimiter::direct(Quota::per_second(rl.per_second).allow_burst(rl.burst)));
        Ok(Arc::new(Self {
            config,
            endpoint,
            limiter,
        }))
    }
}

/// Per-subscriber counters and histogram, registered once (labels are the subscriber id and a
/// fixed set of outcomes, so cardinality is bounded by the subscriber count).
#[derive(Debug)]
pub(crate) struct SubscriberMetrics {
    pub(crate) delivered: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead: Counter,
    pub(crate) gone: Counter,
    /// Attempt tasks that panicked (their deliveries were released).
    pub(crate) panics: Counter,
    pub(crate) attempt_seconds: Histogram,
}

impl SubscriberMetrics {
    fn new(id: &SubscriberId) -> Self {
        let outcome = |o: &'static str| metrics::counter!("herald_deliveries_total", "subscriber" => id.to_string(), "outcome" => o);
        Self {
            delivered: outcome("delivered"),
            retried: outcome("retry"),
            dead: outcome("dead"),
            gone: outcome("gone"),
            panics: metrics::counter!("herald_attempt_panics_total", "subscriber" => id.to_string()),
            attempt_seconds: metrics::histogram!(
                "herald_attempt_duration_seconds",
                "subscriber" => id.to_string()
            ),
        }
    }
}

/// One subscriber, as the dispatcher runs it.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) id: SubscriberId,
    settings: RwLock<Arc<Settings>>,
    /// The throttle and its published effective limit.
    throttle: SharedThrottle,
    in_flight: AtomicU32,
    paused: RwLock<Option<String>>,
    /// Wakes the pump: new work, freed capacity, resume, reload.
    pub(crate) wake: Notify,
    /// Cancelled when the subscriber is removed or the dispatcher stops.
    pub(crate) stop: CancellationToken,
    /// Serializes re-reads of the stored pause (see the dispatcher's listener).
    pub(crate) pause_refresh: tokio::sync::Mutex<()>,
    pub(crate) metrics: SubscriberMetrics,
    /// Rate limit of throttled/recovered alerts.
    throttle_gate: Mutex<ThrottleGate>,
    /// Cluster mode: the throttle and the rate limit are the cluster's (see `crate::cluster`).
    pub(crate) clustered: bool,
    /// Cluster mode: outcomes not yet sent to the cluster's throttle (successes, failures).
    pub(crate) unsent_outcomes: Mutex<(u32, u32)>,
    /// Cluster mode: the cluster's failure share, as `f64` bits.
    pub(crate) cluster_error_rate: AtomicU64,
    /// Cluster mode: rate-limit tokens taken from the cluster's bucket and not yet spent.
    pub(crate) rate_tokens: AtomicU32,
}

impl Subscriber {
    pub(crate) fn new(
        settings: Arc<Settings>,
        paused: Option<String>,
        stop: CancellationToken,
        clustered: bool,
    ) -> Arc<Self> {
        let id = settings.config.id.clone();
        let max = settings.config.max_in_flight;
        let throttle = SharedThrottle::new(settings.config.throttle.clone(), max, Instant::now());
        Arc::new(Self {
            metrics: SubscriberMetrics::new(&id),
            id,
            throttle,
            settings: RwLock::new(settings),
            in_flight: AtomicU32::new(0),
            paused: RwLock::new(paused),
            wake: Notify::new(),
            stop,
            pause_refresh: tokio::sync::Mutex::new(()),
            throttle_gate: Mutex::new(ThrottleGate::default()),
            clustered,
            unsent_outcomes: Mutex::new((0, 0)),
            cluster_error_rate: AtomicU64::new(0f64.to_bits()),
            rate_tokens: AtomicU32::new(0),
        })
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    /// Swaps in reloaded settings; in-flight attempts keep the settings they started with.
    pub(crate) fn replace_settings(&self, settings: Arc<Settings>) {
        if self.clustered {
            // The cluster's limit, clamped to the new maximum until the cluster's next step.
            let limit = self
                .effective_limit()
                .min(settings.config.max_in_flight)
                .max(1);
            self.throttle.publish(limit);
        } else {
            self.throttle.reconfigure(
                settings.config.throttle.clone(),
                settings.config.max_in_flight,
                Instant::now(),
            );
        }
        *self.settings.write() = settings;
        self.wake.notify_one();
    }

    pub(crate) fn effective_limit(&self) -> u32 {
        self.throttle.limit()
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn error_rate(&self) -> f64 {
        if self.clustered {
            return f64::from_bits(self.cluster_error_rate.load(Ordering::Acquire));
        }
        self.throttle.error_rate(Instant::now())
    }

    /// Sets the effective limit the cluster's throttle answered (cluster mode). Returns the
    /// change worth an operator alert, if any, like [`Self::record_outcome`], judged on the
    /// cluster's own transition: only the node whose update changed the cluster's limit sees
    /// one, so a cluster sends one alert, not one per node.
    pub(crate) fn set_cluster_limit(&self, state: ThrottleState) -> Option<LimitChange> {
        let max = self.settings().config.max_in_flight.max(1);
        let limit = state.limit.clamp(1, max);
        self.cluster_error_rate
            .store(state.error_rate.to_bits(), Ordering::Release);
        if self.throttle.publish(limit) != limit {
            self.wake.notify_one();
        }
        self.limit_changed(state.previous_limit.clamp(1, max), limit, Instant::now())
    }

    /// Feeds one attempt's outcome to the throttle: the local one, or (cluster mode) the
    /// counts sent to the cluster's throttle at its next step. Returns the change worth an
    /// operator alert, if any (first cut below `max_in_flight`, back at it), already
    /// rate-limited.
    pub(crate) fn record_outcome(&self, success: bool) -> Option<LimitChange> {
        if self.clustered {
            let mut unsent = self.unsent_outcomes.lock();
            if success {
                unsent.0 = unsent.0.saturating_add(1);
            } else {
                unsent.1 = unsent.1.saturating_add(1);
            }
            return None;
        }
        let now = Instant::now();
        let (before, limit) = self.throttle.record(success, now);
        self.limit_changed(before, limit, now)
    }

    /// Logs a change of the effective limit and says whether it is worth an alert.
    fn limit_changed(&self, before: u32, limit: u32, now: Instant) -> Option<LimitChange> {
        if before == limit {
            return None;
        }
        tracing::info!(subscriber = %self.id, from = before, to = limit, clustered = self.clustered, "effective concurrency limit changed");
        let settings = self.settings();
        let max = settings.config.max_in_flight;
        let change = if before >= max && limit < max {
            LimitChange::Throttled { limit, max }
        } else if before < max && limit >= max {
            LimitChange::Recovered { max }
        } else {
            return None;
        };
        self.throttle_gate
            .lock()
            .admit(change, settings.config.throttle.window, now)
            .then_some(change)
    }

    /// Takes one in-flight slot; the returned guard gives it back and wakes the pump.
    pub(crate) fn start_attempt(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(Arc::clone(self))
    }

    pub(crate) fn paused_reason(&self) -> Option<String> {
        self.paused.read().clone()
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.read().is_some()
    }

    pub(crate) fn set_paused(&self, reason: Option<String>) {
        *self.paused.write() = reason;
        self.wake.notify_one();
    }
}

/// Holds one in-flight slot of a subscriber until dropped (also on cancellation or panic).
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<Subscriber>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }
}
