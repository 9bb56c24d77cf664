//! JSON shapes of the admin API. Built from core/dispatcher types; nothing secret is reachable
//! from here (subscriber views carry id, url, events and live figures only).

use herald_core::{AttemptRecord, DeliveryDetails, DeliveryRecord, UnixMillis};
use herald_dispatcher::SubscriberStats;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 (UTC, milliseconds) of a stored timestamp.
pub(crate) fn rfc3339(t: UnixMillis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.0.to_string())
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AttemptView {
    attempt: u32,
    at: String,
    status_code: Option<u16>,
    error: Option<String>,
    duration_ms: u64,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            at: rfc3339(a.at),
            status_code: a.status_code,
            error: a.error.clone(),
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryView {
    id: String,
    event_id: String,
    subscriber: String,
    event_type: String,
    /// `pending`, `in_flight`, `delivered` or `dead`.
    #[schema(value_type = String)]
    status: &'static str,
    attempt_count: u32,
    next_attempt_at: Option<String>,
    created_at: String,
    updated_at: String,
    last_error: Option<String>,
    attempts: Vec<AttemptView>,
}

impl DeliveryView {
    pub(crate) fn new(record: &DeliveryRecord, attempts: &[AttemptRecord]) -> Self {
        Self {
            id: record.id.to_string(),
            event_id: record.event_id.to_string(),
            subscriber: record.subscriber.to_string(),
            event_type: record.event_type.clone(),
            status: record.status.as_str(),
            attempt_count: record.attempts,
            next_attempt_at: record.next_attempt_at.map(rfc3339),
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
            last_error: record.last_error.clone(),
            attempts: attempts.iter().map(AttemptView::from).collect(),
        }
    }
}

impl From<&DeliveryDetails> for DeliveryView {
    fn from(d: &DeliveryDetails) -> Self {
        Self::new(&d.record, &d.attempts)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SubscriberView {
    id: String,
    url: String,
    events: Vec<String>,
    max_in_flight: u32,
    effective_limit: u32,
    in_flight: u32,
    error_rate: f64,
    paused: bool,
    paused_reason: Option<String>,
    /// Pending plus in flight: deliveries not yet finished.
    queued: u64,
    pending: u64,
    delivered: u64,
    dead: u64,
    /// Age in seconds of the oldest delivery due and not yet sent (0 when none).
    oldest_pending_seconds: f64,
}

impl From<&SubscriberStats> for SubscriberView {
    fn from(s: &SubscriberStats) -> Self {
        Self {
            id: s.id.to_string(),
            url: s.url.clone(),
            events: s.events.clone(),
            max_in_flight: s.max_in_flight,
            effective_limit: s.effective_limit,
            in_flight: s.in_flight,
            error_rate: (s.error_rate * 1000.0).round() / 1000.0,
            paused: s.paused_reason.is_some(),
            paused_reason: s.paused_reason.clone(),
            queued: s.counts.pending + s.counts.in_flight,
            pending: s.counts.pending,
            delivered: s.counts.delivered,
            dead: s.counts.dead,
            oldest_pending_seconds: (s.oldest_pending.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_in_utc() {
        assert_eq!(rfc3339(UnixMillis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UnixMillis(1_614_265_330_123)),
            "2021-02-25T15:02:10.123Z"
        );
    }
}
