//! Event lookup (SPEC §10): `GET /v1/events/{id}` and `GET /v1/events?since=&until=&event_type=&limit=&cursor=`.
//!
//! The payload is answered exactly as stored: the stored bytes are emitted as raw JSON
//! ([`RawValue`]), never parsed into a tree and written again.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use herald_core::{EventId, EventQuery, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::openapi::ErrorDoc;
use crate::paging::{self, non_empty};
use crate::views::EventView;
use crate::ApiState;

/// A page of events.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EventPageView {
    events: Vec<EventView>,
    next_cursor: Option<String>,
}

/// `GET /v1/events/{id}`: 404 when unknown or purged.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    summary = "One event: its payload exactly as stored and its deliveries",
    params(("id" = String, Path, description = "event id")),
    responses(
        (status = 200, description = "the event", body = EventView),
        (status = 404, description = "unknown or purged (`not_found`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn get_event(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let unknown = || ApiError::not_found("not_found", format!("no event with id {id:?}"));
    let event_id: EventId = id.parse().map_err(|_| unknown())?;
    let event = state
        .inner
        .store
        .get_event(event_id)
        .await?
        .ok_or_else(unknown)?;
    Ok(Json(EventView::new(&event, true)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventParams {
    /// Events accepted at or after this time (RFC 3339).
    since: Option<String>,
    /// Events accepted before this time (RFC 3339).
    until: Option<String>,
    /// Only this event type.
    event_type: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// An RFC 3339 time as stored milliseconds; `field` names the parameter in the error.
pub(crate) fn parse_time(field: &str, raw: &str) -> Result<UnixMillis, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        ApiError::bad_request(format!(
            "{field} must be an RFC 3339 time such as 2026-01-31T22:00:00Z, not {raw:?}"
        ))
    })?;
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(millis)
        .map(UnixMillis)
        .map_err(|_| ApiError::bad_request(format!("{field} is before 1970")))
}

/// `GET /v1/events?since=&until=&event_type=&limit=&cursor=`: events in id (acceptance) order.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    summary = "A page of events in acceptance order, filtered (without their deliveries)",
    params(EventParams),
    responses(
        (status = 200, description = "a page", body = EventPageView),
        (status = 400, description = "bad query (`bad_request`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn list_events(
    State(state): State<ApiState>,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<EventPageView>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = non_empty(&p.since)
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until = non_empty(&p.until)
        .map(|s| parse_time("until", s))
        .transpose()?;
    let limit = paging::limit(&p.limit)?;
    let cursor = paging::cursor::<EventId>(&p.cursor)?;
    let page = state
        .inner
        .store
        .list_events(&EventQuery {
            since,
            until,
            event_type: non_empty(&p.event_type).map(str::to_owned),
            limit,
            cursor,
        })
        .await?;
    let events = page
        .events
        .iter()
        .map(|e| EventView::new(e, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(EventPageView {
        events,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(
            parse_time("since", "2021-02-25T15:02:10.123Z").ok(),
            Some(UnixMillis(1_614_265_330_123))
        );
        assert!(parse_time("since", "yesterday").is_err());
        assert!(parse_time("since", "1969-12-31T00:00:00Z").is_err());
    }
}
