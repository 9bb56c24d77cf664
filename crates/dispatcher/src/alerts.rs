//! Operator alerts (SPEC §10): Herald's own events, sent to the `[alerts] subscriber` through
//! the normal pipeline (stored durably, signed and retried like any event).
//!
//! Every payload also carries `"type"`: the event type, since the wire carries the payload alone.
//!
//! | event type | when | payload |
//! |---|---|---|
//! | `herald.subscriber.paused` | an operator, or a `410 Gone`, pauses a subscriber | `{subscriber, reason, at}` |
//! | `herald.subscriber.resumed` | an operator resumes it | `{subscriber, reason, at}` |
//! | `herald.subscriber.throttled` | its effective limit is first cut below `max_in_flight` | `{subscriber, effective_limit, max_in_flight, error_rate, at}` |
//! | `herald.subscriber.recovered` | the limit is back at `max_in_flight` | same as throttled |
//! | `herald.delivery.dead` | a delivery is dead-lettered | `{delivery_id, event_id, subscriber, event_type, attempts, last_error, at}` |
//!
//! - **No loops**: nothing about the alert subscriber itself is sent (its own dead alerts, its
//!   own throttling), so a broken alert endpoint cannot feed itself.
//! - **Rate limit**: per subscriber, at most one throttled/recovered pair per throttle window
//!   ([`ThrottleGate`]): a `throttled` is sent only when none was sent within the last window
//!   and no `recovered` is owed; a `recovered` only answers a `throttled` that was sent. A
//!   subscriber flapping faster than its window shows as one pair per window.
//! - Alerts are addressed to the alert subscriber explicitly (whatever its `events` filter)
//!   and are enqueued on a task of their own: the attempt or API call that caused one never
//!   waits for it. The node that makes a change sends its alert (once per cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_core::{ClaimedDelivery, NewEvent, SubscriberId, UnixMillis};
use parking_lot::RwLock;
use serde_json::json;

use crate::Shared;

/// `herald.subscriber.paused`.
pub const SUBSCRIBER_PAUSED: &str = "herald.subscriber.paused";
/// `herald.subscriber.resumed`.
pub const SUBSCRIBER_RESUMED: &str = "herald.subscriber.resumed";
/// `herald.subscriber.throttled`.
pub const SUBSCRIBER_THROTTLED: &str = "herald.subscriber.throttled";
/// `herald.subscriber.recovered`.
pub const SUBSCRIBER_RECOVERED: &str = "herald.subscriber.recovered";
/// `herald.delivery.dead`.
pub const DELIVERY_DEAD: &str = "herald.delivery.dead";

/// Where alerts go (none until [`crate::Dispatcher::set_alert_subscriber`]).
#[derive(Debug, Default)]
pub(crate) struct Alerts {
    target: RwLock<Option<SubscriberId>>,
}

/// A change of a subscriber's effective limit that may deserve an alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LimitChange {
    /// First cut below `max_in_flight`.
    Throttled { limit: u32, max: u32 },
    /// Back at `max_in_flight`.
    Recovered { max: u32 },
}

/// Per-subscriber rate limit of throttled/recovered alerts (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ThrottleGate {
    last_throttled: Option<Instant>,
    recovered_owed: bool,
}

impl ThrottleGate {
    /// Whether to send the alert of `change` at `now`, with the subscriber's throttle `window`.
    pub(crate) fn admit(&mut self, change: LimitChange, window: Duration, now: Instant) -> bool {
        match change {
            LimitChange::Throttled { .. } => {
                let quiet = self
                    .last_throttled
                    .is_none_or(|at| now.saturating_duration_since(at) >= window);
                if quiet && !self.recovered_owed {
                    self.last_throttled = Some(now);
                    self.recovered_owed = true;
                    true
                } else {
                    false
                }
            }
            LimitChange::Recovered { .. } => std::mem::take(&mut self.recovered_owed),
        }
    }
}

impl Alerts {
    pub(crate) fn set_target(&self, target: Option<SubscriberId>) {
        *self.target.write() = target;
    }

    /// The alert subscriber, unless alerts are off or `about` is that subscriber (no loops).
    fn target_for(&self, about: &SubscriberId) -> Option<SubscriberId> {
        self.target.read().as_ref().filter(|t| *t != about).cloned()
    }

    /// Enqueues one alert event for the alert subscriber, on a task of its own.
    fn send(
        shared: &Arc<Shared>,
        about: &SubscriberId,
        event_type: &'static str,
        payload: serde_json::Value,
    ) {
        let Some(target) = shared.alerts.target_for(about) else {
            return;
        };
        // The wire carries no event type (SPEC §4 sends the payload alone), so the payload names
        // its own: a receiver tells `paused` from `resumed` by it.
        let mut payload = payload;
        if let Some(fields) = payload.as_object_mut() {
            fields.insert("type".to_owned(), serde_json::Value::from(event_type));
        }
        let event = NewEvent {
            event_type: event_type.to_owned(),
            payload: Bytes::from(payload.to_string()),
            subscribers: vec![target],
            idempotency_key: None,
            received_at: UnixMillis::now(),
            ordering_key: None,
            ordered_for: Vec::new(),
            traceparent: None,
        };
        let store = Arc::clone(&shared.store);
        shared.tasks.spawn(async move {
            if let Err(e) = store.enqueue(vec![event]).await {
                tracing::error!(error = %e, event_type, "cannot store an operator alert");
            }
        });
    }

    pub(crate) fn paused(shared: &Arc<Shared>, subscriber: &SubscriberId, reason: &str) {
        Self::send(
            shared,
            subscriber,
            SUBSCRIBER_PAUSED,
            json!({"subscriber": subscriber.as_str(), "reason": reason, "at": now_text()}),
        );
    }

    pub(crate) fn resumed(shared: &Arc<Shared>, subscriber: &SubscriberId, reason: &str) {
        Self::send(
            shared,
            subscriber,
            SUBSCRIBER_RESUMED,
            json!({"subscriber": subscriber.as_str(), "reason": reason, "at": now_text()}),
        );
    }

    pub(crate) fn limit_changed(
        shared: &Arc<Shared>,
        subscriber: &SubscriberId,
        change: LimitChange,
        error_rate: f64,
    ) {
        let (event_type, limit, max) = match change {
            LimitChange::Throttled { limit, max } => (SUBSCRIBER_THROTTLED, limit, max),
            LimitChange::Recovered { max } => (SUBSCRIBER_RECOVERED, max, max),
        };
        Self::send(
            shared,
            subscriber,
            event_type,
            json!({
                "subscriber": subscriber.as_str(),
                "effective_limit": limit,
                "max_in_flight": max,
                "error_rate": (error_rate * 1000.0).round() / 1000.0,
                "at": now_text(),
            }),
        );
    }

    pub(crate) fn dead(shared: &Arc<Shared>, delivery: &ClaimedDelivery, last_error: Option<&str>) {
        Self::send(
            shared,
            &delivery.subscriber,
            DELIVERY_DEAD,
            json!({
                "delivery_id": delivery.id.to_string(),
                "event_id": delivery.event_id.to_string(),
                "subscriber": delivery.subscriber.as_str(),
                "event_type": delivery.event_type,
                "attempts": delivery.attempt,
                "last_error": last_error,
                "at": now_text(),
            }),
        );
    }
}

/// Now as RFC 3339 (UTC).
fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pair_per_window() {
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        let throttled = LimitChange::Throttled { limit: 5, max: 10 };
        let recovered = LimitChange::Recovered { max: 10 };
        let mut gate = ThrottleGate::default();
        assert!(!gate.admit(recovered, window, t0), "nothing owed yet");
        assert!(gate.admit(throttled, window, t0));
        assert!(gate.admit(recovered, window, t0 + Duration::from_secs(1)));
        // Flapping within the window: silent, throttled and recovered alike.
        assert!(!gate.admit(throttled, window, t0 + Duration::from_secs(2)));
        assert!(!gate.admit(recovered, window, t0 + Duration::from_secs(3)));
        // A window later: the next pair.
        assert!(gate.admit(throttled, window, t0 + Duration::from_secs(10)));
        assert!(
            !gate.admit(throttled, window, t0 + Duration::from_secs(30)),
            "recovered owed"
        );
        assert!(gate.admit(recovered, window, t0 + Duration::from_secs(31)));
    }
}
