//! Event ingest: `POST /v1/events` and `POST /v1/events/batch`.
//!
//! The payload is kept as the exact bytes the producer sent (a `RawValue` slice of the request
//! body, no re-serialisation), stored once, and answered with `202` only after the store's
//! durability barrier (`sync`, group-committed with every concurrent request) has completed.

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{EnqueueReceipt, NewEvent, SubscriberId, UnixMillis};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{ApiError, ErrorBody};
use crate::ingest_span::IngestTrace;
use crate::openapi::{BatchDoc, ErrorDoc, ReceiptDoc};
use crate::ApiState;

/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Longest accepted `event_type` and `idempotency_key`, in bytes.
const MAX_NAME_LEN: usize = 256;
/// Room for the envelope around a payload of `max_payload_bytes`.
const ENVELOPE_SLACK: usize = 64 * 1024;
/// Deepest nesting of arrays and objects accepted in a payload. Herald itself copes with any
/// depth (the payload is never parsed into a tree), but receivers' parsers do not: serde_json
/// stops at 128 levels, others at a few hundred. A payload they cannot parse would be retried
/// until it is dead, so it is refused at the door instead.
pub const MAX_PAYLOAD_DEPTH: usize = 100;

/// One event to ingest.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventIn<'a> {
    /// The event type (1 to 256 bytes), e.g. `PROCESS_STATE_FINISHED`.
    event_type: String,
    /// Any JSON; stored and delivered byte for byte.
    #[serde(borrow)]
    #[schema(value_type = Object)]
    payload: &'a RawValue,
    /// Deliver to this subscriber only (default: every subscriber of the event type).
    #[serde(default)]
    subscriber: Option<String>,
    /// The same key again (within retention) returns the first receipt and creates nothing.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// SPEC §9; any JSON value is read so that a wrong type is a `bad_request` naming the field.
    #[serde(default)]
    ordering_key: Option<serde_json::Value>,
}

/// Up to 1000 events.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchIn<'a> {
    /// Each one an event as for `POST /v1/events`.
    #[serde(borrow)]
    #[schema(value_type = Vec<EventIn>)]
    events: Vec<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum BatchItem<'a> {
    Accepted(&'a EnqueueReceipt),
    Failed(ErrorBody<'a>),
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    // Only a size overrun is 413; a body that breaks off (the client closed early, a malformed
    // chunk) is the client's bad request.
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::payload_too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// Parses and validates one event; resolves its subscribers. `body` is the buffer `raw` points
/// into, so the payload is a zero-copy slice of it.
fn prepare(
    state: &ApiState,
    body: &Bytes,
    raw: &[u8],
    now: UnixMillis,
    traceparent: Option<&str>,
) -> Result<NewEvent, ApiError> {
    let event: EventIn<'_> = serde_json::from_slice(raw)
        .map_err(|e| ApiError::invalid_json(format!("invalid event: {e}")))?;
    if event.event_type.is_empty() || event.event_type.len() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "event_type must be 1 to {MAX_NAME_LEN} bytes"
        )));
    }
    if event.event_type.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "event_type must not contain control characters",
        ));
    }
    if let Some(key) = &event.idempotency_key {
        if key.is_empty() || key.len() > MAX_NAME_LEN {
            return Err(ApiError::bad_request(format!(
                "idempotency_key must be 1 to {MAX_NAME_LEN} bytes"
            )));
        }
    }
    let ordering_key = match event.ordering_key {
        None => None,
        Some(serde_json::Value::String(key)) if !key.is_empty() && key.len() <= MAX_NAME_LEN => {
            Some(key)
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "ordering_key must be a string of 1 to {MAX_NAME_LEN} bytes"
            )))
        }
    };
    let payload = event.payload.get().as_bytes();
    if payload.len() > state.inner.max_payload_bytes {
        return Err(ApiError::payload_too_large(state.inner.max_payload_bytes));
    }
    if nests_deeper_than(payload, MAX_PAYLOAD_DEPTH) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "payload_too_deep",
            format!("the payload nests arrays and objects deeper than {MAX_PAYLOAD_DEPTH} levels"),
        ));
    }
    let subscribers: Vec<SubscriberId> = state
        .inner
        .dispatcher
        .route(&event.event_type, event.subscriber.as_deref())?;
    Ok(NewEvent {
        event_type: event.event_type,
        payload: body.slice_ref(payload),
        subscribers,
        idempotency_key: event.idempotency_key,
        received_at: now,
        // Which subscribers order by it is the dispatcher's to say (their `ordering`).
        ordering_key,
        ordered_for: Vec::new(),
        traceparent: traceparent.map(str::to_owned),
    })
}

/// Whether the (valid) JSON text `json` nests arrays and objects more than `max` levels deep.
/// One pass over the bytes; brackets inside strings do not count.
fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Stores events through the dispatcher, which returns once they are durable and wakes their
/// subscribers' pumps.
async fn commit(state: &ApiState, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, ApiError> {
    let receipts = state.inner.dispatcher.ingest(events).await?;
    let fresh = receipts.iter().filter(|r| !r.duplicate).count() as u64;
    metrics::counter!("herald_events_ingested_total").increment(fresh);
    Ok(receipts)
}

fn check_accepting(state: &ApiState) -> Result<(), ApiError> {
    if state.inner.accepting.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(ApiError::shutting_down())
    }
}

/// `POST /v1/events`.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    summary = "Ingest one event (202 once durable)",
    params(("traceparent" = Option<String>, Header, description = "W3C trace context: the event's attempts continue this trace (with span export, as children of the ingest span)")),
    request_body = EventIn,
    responses(
        (status = 202, description = "stored durably", body = ReceiptDoc),
        (status = 400, description = "invalid event (`invalid_json`, `bad_request`, `payload_too_deep`)", body = ErrorDoc),
        (status = 404, description = "unknown `subscriber` (`unknown_subscriber`)", body = ErrorDoc),
        (status = 413, description = "payload too large (`payload_too_large`)", body = ErrorDoc),
        (status = 507, description = "storage full (`storage_full`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn ingest_one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut trace = IngestTrace::start(&state, &headers);
    let answer = one(&state, &headers, body, &mut trace).await;
    trace.finish("/v1/events", &answer);
    answer
}

async fn one(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
    trace: &mut IngestTrace<'_>,
) -> Result<Response, ApiError> {
    check_accepting(state)?;
    let body = read_body(
        headers,
        body,
        state.inner.max_payload_bytes + ENVELOPE_SLACK,
    )
    .await?;
    trace.events = 1;
    let traceparent = trace.stored();
    let event = prepare(
        state,
        &body,
        &body,
        UnixMillis::now(),
        traceparent.as_deref(),
    )?;
    let mut receipts = commit(state, vec![event]).await?;
    trace.accepted = receipts.len();
    let receipt = receipts
        .pop()
        .ok_or_else(|| ApiError::internal("storage returned no receipt", &"empty receipt list"))?;
    Ok((StatusCode::ACCEPTED, Json(receipt)).into_response())
}

/// `POST /v1/events/batch`: each item succeeds or fails on its own; results keep the order.
#[utoipa::path(post, path = "/v1/events/batch", tag = "events",
    summary = "Ingest up to 1000 events; one result each, in order",
    params(("traceparent" = Option<String>, Header, description = "W3C trace context: every event's attempts continue this trace (with span export, as children of the ingest span)")),
    request_body = BatchIn,
    responses(
        (status = 202, description = "per event: a receipt or an error", body = BatchDoc),
        (status = 400, description = "invalid batch", body = ErrorDoc),
        (status = 413, description = "body too large (`payload_too_large`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn ingest_batch(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut trace = IngestTrace::start(&state, &headers);
    let answer = batch(&state, &headers, body, &mut trace).await;
    trace.finish("/v1/events/batch", &answer);
    answer
}

async fn batch(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
    trace: &mut IngestTrace<'_>,
) -> Result<Response, ApiError> {
    check_accepting(state)?;
    let limit = state.inner.batch_body_limit();
    let body = read_body(headers, body, limit).await?;
    let batch: BatchIn<'_> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_json(format!("invalid batch: {e}")))?;
    trace.events = batch.events.len();
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH_EVENTS} events, this one has {}",
            batch.events.len()
        )));
    }
    let now = UnixMillis::now();
    let traceparent = trace.stored();
    let mut events = Vec::with_capacity(batch.events.len());
    let slots: Vec<Option<ApiError>> = batch
        .events
        .iter()
        .map(|raw| {
            match prepare(
                state,
                &body,
                raw.get().as_bytes(),
                now,
                traceparent.as_deref(),
            ) {
                Ok(event) => {
                    events.push(event);
                    None
                }
                Err(e) => Some(e),
            }
        })
        .collect();
    let receipts = if events.is_empty() {
        Vec::new()
    } else {
        commit(state, events).await?
    };
    trace.accepted = receipts.len();
    let mut receipts = receipts.iter();
    let results = slots
        .iter()
        .map(|slot| match slot {
            Some(e) => Ok(BatchItem::Failed(ErrorBody {
                error: e.code,
                message: &e.message,
            })),
            None => receipts.next().map(BatchItem::Accepted).ok_or_else(|| {
                ApiError::internal(
                    "storage returned too few receipts",
                    &"receipt count mismatch",
                )
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let body = serde_json::json!({ "results": results });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_depth_counts_arrays_and_objects_but_not_strings() {
        assert!(!nests_deeper_than(b"1", 0));
        assert!(nests_deeper_than(b"[]", 0));
        assert!(!nests_deeper_than(nested(100).as_bytes(), 100));
        assert!(nests_deeper_than(nested(101).as_bytes(), 100));
        assert!(nests_deeper_than(br#"{"a":[{"b":{}}]}"#, 3));
        assert!(!nests_deeper_than(br#"{"a":[{"b":{}}]}"#, 4));
        // Brackets and escaped quotes inside strings are text.
        let text = format!(
            r#"{{"s":"{}\"{}\\","t":[1]}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(!nests_deeper_than(text.as_bytes(), 2));
        assert!(nests_deeper_than(text.as_bytes(), 1));
        // Siblings do not add up.
        let wide = format!("[{}]", vec!["[[1]]"; 1000].join(","));
        assert!(!nests_deeper_than(wide.as_bytes(), 3));
    }
}
