//! `POST /v1/subscribers/{id}/replay` (SPEC §10): the subscriber's finished deliveries whose
//! events were accepted in a time window become pending again (same id, history kept, fresh
//! retry budget).
//!
//! The engines work in bounded chunks that yield between them (sled on blocking threads,
//! Postgres in short transactions), so a replay of a million deliveries does not hold up
//! other API calls.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use herald_core::{DeliveryStatus, ReplayRequest, SubscriberId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::events::parse_time;
use crate::openapi::ErrorDoc;
use crate::ApiState;

/// The request body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayIn {
    /// Events accepted at or after this time (RFC 3339).
    since: String,
    /// …and before this one (RFC 3339; default: now).
    until: Option<String>,
    /// `["dead"]` (default), `["delivered"]` or both.
    status: Option<Vec<String>>,
    /// Only these event types (default: all).
    event_types: Option<Vec<String>>,
    /// Count only; change nothing.
    dry_run: Option<bool>,
}

/// The answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ReplayOut {
    subscriber: String,
    matched: u64,
    replayed: u64,
}

fn statuses(raw: Option<Vec<String>>) -> Result<Vec<DeliveryStatus>, ApiError> {
    let Some(raw) = raw else {
        return Ok(vec![DeliveryStatus::Dead]);
    };
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "status must name at least one of \"delivered\", \"dead\"",
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for s in raw {
        match s.as_str() {
            "delivered" => out.push(DeliveryStatus::Delivered),
            "dead" => out.push(DeliveryStatus::Dead),
            other => {
                return Err(ApiError::bad_request(format!(
                    "status {other:?} cannot be replayed; use \"delivered\" or \"dead\""
                )))
            }
        }
    }
    out.sort_by_key(|s| s.as_str());
    out.dedup();
    Ok(out)
}

/// Parses and checks a replay body into a request for `subscriber`, at `now`.
pub(crate) fn request(
    subscriber: SubscriberId,
    body: &[u8],
    now: UnixMillis,
) -> Result<ReplayRequest, ApiError> {
    let input: ReplayIn = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_json(format!("invalid replay request: {e}")))?;
    let since = parse_time("since", &input.since)?;
    let until = input
        .until
        .as_deref()
        .map(|u| parse_time("until", u))
        .transpose()?;
    if until.is_some_and(|u| u <= since) {
        return Err(ApiError::bad_request("until must be later than since"));
    }
    Ok(ReplayRequest {
        subscriber,
        since,
        until,
        statuses: statuses(input.status)?,
        event_types: input.event_types.unwrap_or_default(),
        dry_run: input.dry_run.unwrap_or(false),
        now,
    })
}

/// `POST /v1/subscribers/{id}/replay`.
#[utoipa::path(post, path = "/v1/subscribers/{id}/replay", tag = "deliveries",
    summary = "Finished deliveries of a time window pending again (same id, history kept, fresh retry budget)",
    params(("id" = String, Path, description = "subscriber id")),
    request_body = ReplayIn,
    responses(
        (status = 200, description = "matched and replayed (0 on a dry run)", body = ReplayOut),
        (status = 400, description = "bad body (`invalid_json`, `bad_request`)", body = ErrorDoc),
        (status = 404, description = "no such subscriber (`unknown_subscriber`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn replay(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReplayOut>, ApiError> {
    let unknown = || {
        ApiError::not_found(
            "unknown_subscriber",
            format!("no subscriber with id {id:?} is configured"),
        )
    };
    if !state.inner.dispatcher.contains(&id) {
        return Err(unknown());
    }
    let sub = SubscriberId::new(&id).map_err(|_| unknown())?;
    let request = request(sub, &body, UnixMillis::now())?;
    let result = state.inner.dispatcher.replay(&request).await?;
    Ok(Json(ReplayOut {
        subscriber: id,
        matched: result.matched,
        replayed: result.replayed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> SubscriberId {
        SubscriberId::new("acme").unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn defaults_to_dead_and_a_real_run() {
        let r = request(sub(), br#"{"since":"2026-01-01T00:00:00Z"}"#, UnixMillis(9));
        let r = r.map_err(|e| e.message).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(r.statuses, vec![DeliveryStatus::Dead]);
        assert!(!r.dry_run);
        assert_eq!(r.until, None);
        assert_eq!(r.now, UnixMillis(9));
    }

    #[test]
    fn refuses_bad_bodies() {
        for body in [
            &br#"{}"#[..],
            br#"{"since":"yesterday"}"#,
            br#"{"since":"2026-01-01T00:00:00Z","status":["pending"]}"#,
            br#"{"since":"2026-01-01T00:00:00Z","status":[]}"#,
            br#"{"since":"2026-01-02T00:00:00Z","until":"2026-01-01T00:00:00Z"}"#,
            br#"{"since":"2026-01-01T00:00:00Z","nope":1}"#,
            b"not json",
        ] {
            let e = request(sub(), body, UnixMillis(0)).err();
            assert_eq!(
                e.map(|e| e.status.as_u16()),
                Some(400),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
