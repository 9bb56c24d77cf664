//! Admin endpoints: subscribers, deliveries, dead-letter retry and redrive, reload, health.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{DeliveryId, DeliveryStatus, ListQuery, SubscriberId};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::openapi::{ClusterDoc, DeliveryPageDoc, ErrorDoc, RedriveDoc, ReloadDoc};
use crate::paging;
use crate::views::{DeliveryView, NodeView, SubscriberView};
use crate::ApiState;

fn delivery_id(raw: &str) -> Result<DeliveryId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("not_found", format!("no delivery with id {raw:?}")))
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: accepting events.
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    if state.inner.accepting.load(Ordering::Acquire) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::shutting_down().into_response()
    }
}

/// `GET /v1/subscribers`.
#[utoipa::path(get, path = "/v1/subscribers", tag = "subscribers",
    summary = "Every configured subscriber with its live figures (no secrets)",
    responses(
        (status = 200, description = "the subscribers, by id", body = Vec<SubscriberView>),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn list_subscribers(
    State(state): State<ApiState>,
) -> Result<Json<Vec<SubscriberView>>, ApiError> {
    let stats = state.inner.dispatcher.stats().await?;
    Ok(Json(stats.iter().map(SubscriberView::from).collect()))
}

/// `GET /v1/cluster`: the nodes seen in the last 30 s (without a cluster, this node alone).
#[utoipa::path(get, path = "/v1/cluster", tag = "operations",
    summary = "The nodes seen in the last 30 s (without a cluster, this node alone)",
    responses(
        (status = 200, description = "the nodes, by id", body = ClusterDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn cluster(
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let nodes = state.inner.dispatcher.nodes().await?;
    let nodes: Vec<NodeView> = nodes.iter().map(NodeView::from).collect();
    Ok(Json(json!({ "nodes": nodes })))
}

/// `GET /v1/subscribers/{id}`.
#[utoipa::path(get, path = "/v1/subscribers/{id}", tag = "subscribers",
    summary = "One subscriber with its live figures",
    params(("id" = String, Path, description = "subscriber id")),
    responses(
        (status = 200, description = "the subscriber", body = SubscriberView),
        (status = 404, description = "no such subscriber (`unknown_subscriber`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn get_subscriber(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriberView>, ApiError> {
    let stats = state.inner.dispatcher.stats_of(&id).await?;
    Ok(Json(SubscriberView::from(&stats)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseIn {
    /// Why (shown in the API); default "paused by an operator".
    reason: Option<String>,
}

/// `POST /v1/subscribers/{id}/pause` with an optional `{"reason": "..."}`.
#[utoipa::path(post, path = "/v1/subscribers/{id}/pause", tag = "subscribers",
    summary = "Hold a subscriber's deliveries (persisted; they stay queued)",
    params(("id" = String, Path, description = "subscriber id")),
    request_body(content = Option<PauseIn>, description = "optional reason"),
    responses(
        (status = 200, description = "the paused subscriber", body = SubscriberView),
        (status = 400, description = "invalid body (`invalid_json`)", body = ErrorDoc),
        (status = 404, description = "no such subscriber (`unknown_subscriber`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn pause(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<SubscriberView>, ApiError> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<PauseIn>(&body)
            .map_err(|e| ApiError::invalid_json(format!("invalid pause request: {e}")))?
            .reason
    };
    let reason = reason.unwrap_or_else(|| "paused by an operator".to_owned());
    state.inner.dispatcher.pause(&id, &reason).await?;
    get_subscriber(State(state), Path(id)).await
}

/// `POST /v1/subscribers/{id}/resume`.
#[utoipa::path(post, path = "/v1/subscribers/{id}/resume", tag = "subscribers",
    summary = "Release a paused subscriber",
    params(("id" = String, Path, description = "subscriber id")),
    responses(
        (status = 200, description = "the resumed subscriber", body = SubscriberView),
        (status = 404, description = "no such subscriber (`unknown_subscriber`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn resume(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriberView>, ApiError> {
    state.inner.dispatcher.resume(&id).await?;
    get_subscriber(State(state), Path(id)).await
}

/// `POST /v1/subscribers/{id}/redrive`: every dead delivery of the subscriber back to pending.
#[utoipa::path(post, path = "/v1/subscribers/{id}/redrive", tag = "deliveries",
    summary = "Every dead delivery of a subscriber back to pending",
    params(("id" = String, Path, description = "subscriber id")),
    responses(
        (status = 200, description = "how many were moved", body = RedriveDoc),
        (status = 404, description = "no such subscriber (`unknown_subscriber`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn redrive(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sub = SubscriberId::new(&id).map_err(|_| {
        ApiError::not_found(
            "unknown_subscriber",
            format!("no subscriber with id {id:?} is configured"),
        )
    })?;
    if !state.inner.dispatcher.contains(&id) && state.inner.store.counts(&sub).await?.dead == 0 {
        return Err(ApiError::not_found(
            "unknown_subscriber",
            format!("no subscriber with id {id:?} is configured"),
        ));
    }
    let n = state.inner.dispatcher.redrive(&sub).await?;
    Ok(Json(json!({"subscriber": id, "redriven": n})))
}

/// `GET /v1/deliveries/{id}`.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries",
    summary = "One delivery with its attempts",
    params(("id" = String, Path, description = "delivery id (the `webhook-id`)")),
    responses(
        (status = 200, description = "the delivery", body = DeliveryView),
        (status = 404, description = "no such delivery (`not_found`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn get_delivery(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let id = delivery_id(&id)?;
    let details = state
        .inner
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", format!("no delivery with id {id}")))?;
    Ok(Json(DeliveryView::from(&details)))
}

/// `POST /v1/deliveries/{id}/retry`: a dead delivery back to pending.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    summary = "A dead delivery back to pending, due now",
    params(("id" = String, Path, description = "delivery id")),
    responses(
        (status = 200, description = "the delivery, pending again", body = DeliveryView),
        (status = 404, description = "no such delivery (`not_found`)", body = ErrorDoc),
        (status = 409, description = "the delivery is not dead (`invalid_state`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn retry_delivery(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let id = delivery_id(&id)?;
    let record = state.inner.dispatcher.retry(id).await?;
    let details = state.inner.store.get(id).await?;
    let view = match &details {
        Some(d) => DeliveryView::from(d),
        None => DeliveryView::new(&record, &[]),
    };
    Ok(Json(view))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    subscriber: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/deliveries?subscriber=&status=&limit=&cursor=`.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries",
    summary = "A page of deliveries in id order, filtered",
    params(ListParams),
    responses(
        (status = 200, description = "a page", body = DeliveryPageDoc),
        (status = 400, description = "bad query (`bad_request`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn list_deliveries(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let subscriber = match p.subscriber.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(SubscriberId::new(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    let status = match p.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<DeliveryStatus>().map_err(ApiError::bad_request)?),
        None => None,
    };
    let limit = paging::limit(&p.limit)?;
    let cursor = paging::cursor::<DeliveryId>(&p.cursor)?;
    let page = state
        .inner
        .store
        .list(&ListQuery {
            subscriber,
            status,
            limit,
            cursor,
        })
        .await?;
    let items: Vec<DeliveryView> = page.deliveries.iter().map(DeliveryView::from).collect();
    Ok(Json(json!({
        "deliveries": items,
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

/// `POST /v1/reload`: re-reads the subscriber folder; an invalid config changes nothing.
#[utoipa::path(post, path = "/v1/reload", tag = "operations",
    summary = "Re-read the subscriber folder (an invalid one changes nothing)",
    responses(
        (status = 200, description = "what changed", body = ReloadDoc),
        (status = 422, description = "the new configuration was rejected (`invalid_config`)", body = ErrorDoc),
        (status = 501, description = "started without a config file (`reload_unavailable`)", body = ErrorDoc),
        (status = 401, description = "missing or wrong bearer token", body = ErrorDoc),
        (status = 503, description = "storage unavailable or shutting down", body = ErrorDoc),
    ))]
pub(crate) async fn reload(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(reload) = state.inner.reload.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "reload_unavailable",
            "this Herald instance was started without a config file to reload",
        ));
    };
    let outcome = tokio::task::spawn_blocking(move || reload())
        .await
        .map_err(|e| ApiError::internal("reload task failed", &e))?;
    match outcome {
        Ok(report) => {
            let orphaned: Vec<_> = report
                .orphaned
                .iter()
                .map(|(id, n)| json!({"subscriber": id.as_str(), "queued": n}))
                .collect();
            Ok(Json(json!({
                "subscribers": report.subscribers,
                "added": report.added,
                "removed": report.removed,
                "orphaned": orphaned,
            }))
            .into_response())
        }
        Err(message) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("the new configuration was rejected and the running one kept: {message}"),
        )),
    }
}

/// Any other path.
pub(crate) async fn fallback() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; see the API reference in the README",
    )
}
