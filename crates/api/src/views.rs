//! JSON shapes of the admin API. Built from core/dispatcher types; nothing secret is reachable
//! from here (subscriber views carry id, url, events and live figures only).

use herald_core::{
    AttemptRecord, DeliveryDetails, DeliveryRecord, DisplayUrl, EventDetails, NodeInfo, UnixMillis,
};
use herald_dispatcher::SubscriberStats;
use serde::Serialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

/// RFC 3339 (UTC, milliseconds) of a stored timestamp.
pub(crate) fn rfc3339(t: UnixMillis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.0.to_string())
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AttemptView {
    pub(crate) attempt: u32,
    pub(crate) at: String,
    pub(crate) status_code: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: u64,
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
    pub(crate) id: String,
    pub(crate) event_id: String,
    pub(crate) subscriber: String,
    pub(crate) event_type: String,
    /// `pending`, `in_flight`, `delivered` or `dead`.
    #[schema(value_type = String)]
    pub(crate) status: &'static str,
    pub(crate) attempt_count: u32,
    pub(crate) next_attempt_at: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) last_error: Option<String>,
    /// The event's ordering key when this delivery is ordered by it (SPEC §9).
    pub(crate) ordering_key: Option<String>,
    pub(crate) attempts: Vec<AttemptView>,
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
            ordering_key: record.ordering_key.clone(),
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
    pub(crate) id: String,
    /// The endpoint without user info or query string.
    #[schema(value_type = String)]
    pub(crate) url: DisplayUrl,
    pub(crate) events: Vec<String>,
    pub(crate) max_in_flight: u32,
    pub(crate) effective_limit: u32,
    pub(crate) in_flight: u32,
    pub(crate) error_rate: f64,
    pub(crate) paused: bool,
    pub(crate) paused_reason: Option<String>,
    /// Pending plus in flight: deliveries not yet finished.
    pub(crate) queued: u64,
    pub(crate) pending: u64,
    pub(crate) delivered: u64,
    pub(crate) dead: u64,
    /// Age in seconds of the oldest delivery due and not yet sent (0 when none).
    pub(crate) oldest_pending_seconds: f64,
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

/// One delivery of an [`EventView`].
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EventDeliveryView {
    pub(crate) id: String,
    pub(crate) subscriber: String,
    /// `pending`, `in_flight`, `delivered` or `dead`.
    #[schema(value_type = String)]
    pub(crate) status: &'static str,
}

/// An event as stored (SPEC §10): `GET /v1/events/{id}`, list items, the console's event page.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EventView {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) received_at: String,
    pub(crate) ordering_key: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    /// The payload exactly as ingested (raw JSON, byte for byte).
    #[schema(value_type = Object)]
    pub(crate) payload: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deliveries: Option<Vec<EventDeliveryView>>,
}

impl EventView {
    /// The view of a stored event; `with_deliveries` false for list items (the engines may
    /// leave them empty when listing).
    pub(crate) fn new(e: &EventDetails, with_deliveries: bool) -> Result<Self, ApiError> {
        // The stored bytes were validated JSON at ingest; a record that is not is corrupt.
        let text = std::str::from_utf8(&e.payload)
            .map_err(|err| ApiError::internal("stored payload is not UTF-8", &err))?;
        let payload = RawValue::from_string(text.to_owned())
            .map_err(|err| ApiError::internal("stored payload is not JSON", &err))?;
        Ok(Self {
            id: e.id.to_string(),
            event_type: e.event_type.clone(),
            received_at: rfc3339(e.received_at),
            ordering_key: e.ordering_key.clone(),
            idempotency_key: e.idempotency_key.clone(),
            payload,
            deliveries: with_deliveries.then(|| {
                e.deliveries
                    .iter()
                    .map(|d| EventDeliveryView {
                        id: d.id.to_string(),
                        subscriber: d.subscriber.to_string(),
                        status: d.status.as_str(),
                    })
                    .collect()
            }),
        })
    }
}

/// One node in `GET /v1/cluster`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NodeView {
    id: String,
    started_at: String,
    last_seen: String,
    in_flight: u64,
}

impl From<&NodeInfo> for NodeView {
    fn from(n: &NodeInfo) -> Self {
        Self {
            id: n.id.clone(),
            started_at: rfc3339(n.started_at),
            last_seen: rfc3339(n.last_seen),
            in_flight: n.in_flight,
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
