//! The console's pages and actions. Actions answer `303 See Other` to the page they changed
//! (post/redirect/get), with a `done` code the page turns into a fixed sentence.

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use herald_core::{DeliveryId, DeliveryStatus};
use serde::Deserialize;

use super::auth::{csrf_refused, Visitor};
use super::{data, pages, Console};
use crate::error::ApiError;

/// Deliveries and dead letters shown on a subscriber page.
const PAGE: usize = 25;

/// An API failure as a console page with the same status.
fn failure(e: ApiError) -> Response {
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible",
        _ => "Error",
    };
    (e.status, pages::message(title, title, &e.message, None)).into_response()
}

/// Samples the delivered counts for the sparklines (at most every few seconds).
fn sample(console: &Console, rows: &[data::SubscriberRow]) {
    console.live.offer(
        Instant::now(),
        rows.iter().map(|r| (r.view.id.clone(), r.view.delivered)),
    );
}

/// `GET /console`.
pub(crate) async fn overview(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    let rows = data::subscribers(&console.api);
    sample(&console, &rows);
    pages::overview(&rows, &console.live, &visitor).into_response()
}

/// `GET /console/live`: the overview's rows alone, for the script's refresh.
pub(crate) async fn live_rows(State(console): State<Console>) -> Response {
    let rows = data::subscribers(&console.api);
    sample(&console, &rows);
    pages::overview_rows(&rows, &console.live).into_response()
}

#[derive(Deserialize)]
pub(crate) struct PageParams {
    done: Option<String>,
    n: Option<u64>,
    cursor: Option<String>,
}

/// The sentence for an action's `done` code (never echoes the request).
fn done_text(p: &PageParams) -> Option<String> {
    Some(match p.done.as_deref()? {
        "paused" => "Paused: no new delivery starts until it is resumed.".to_owned(),
        "resumed" => "Resumed.".to_owned(),
        "redriven" => format!(
            "{} dead deliveries are pending again.",
            p.n.unwrap_or_default()
        ),
        "retried" => "Pending again: it will be attempted shortly.".to_owned(),
        _ => return None,
    })
}

/// `GET /console/subscribers/{id}`.
pub(crate) async fn subscriber(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Response {
    let cursor = params.cursor.as_deref().and_then(|c| c.parse().ok());
    let page = || -> Result<_, ApiError> {
        let row = data::subscriber(&console.api, &id)?;
        let recent = data::deliveries(&console.api, &id, None, PAGE, cursor)?;
        let dead = data::deliveries(&console.api, &id, Some(DeliveryStatus::Dead), PAGE, None)?;
        Ok((row, recent, dead))
    };
    match page() {
        Ok((row, recent, dead)) => pages::subscriber(
            &row,
            &recent,
            &dead,
            &visitor,
            done_text(&params).as_deref(),
        )
        .into_response(),
        Err(e) => failure(e),
    }
}

/// `GET /console/deliveries/{id}`.
pub(crate) async fn delivery(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Response {
    match data::delivery(&console.api, &id) {
        Ok(Some(d)) => pages::delivery(&d, &visitor, done_text(&params).as_deref()).into_response(),
        Ok(None) => failure(ApiError::not_found(
            "not_found",
            format!("No delivery with id {id:?}."),
        )),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct SearchParams {
    #[serde(default)]
    q: String,
}

/// `GET /console/search?q=`: to the page of the delivery found, or a clear "not found".
pub(crate) async fn search(
    State(console): State<Console>,
    Query(params): Query<SearchParams>,
) -> Response {
    let q = params.q.trim();
    if let Ok(id) = q.parse::<DeliveryId>() {
        match data::delivery(&console.api, &id.to_string()) {
            Ok(Some(_)) => {
                return Redirect::to(&format!("/console/deliveries/{id}")).into_response()
            }
            Ok(None) => {}
            Err(e) => return failure(e),
        }
    }
    (
        StatusCode::NOT_FOUND,
        pages::message(
            "Not found",
            "Nothing found",
            &format!("No delivery with id {q:?} is stored (finished ones are kept for the retention period)."),
            None,
        ),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct PauseForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

fn to_subscriber(id: &str, done: &str) -> Response {
    Redirect::to(&format!("/console/subscribers/{id}?done={done}")).into_response()
}

/// `POST /console/subscribers/{id}/pause` with `Reason`.
pub(crate) async fn pause(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<PauseForm>,
) -> Response {
    if !visitor.check(&form.csrf) {
        return csrf_refused();
    }
    let reason = match form.reason.trim() {
        "" => "paused by an operator (console)",
        r => r,
    };
    match data::pause(&console.api, &id, reason) {
        Ok(()) => to_subscriber(&id, "paused"),
        Err(e) => failure(e),
    }
}

/// `POST /console/subscribers/{id}/resume`.
pub(crate) async fn resume(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !visitor.check(&form.csrf) {
        return csrf_refused();
    }
    match data::resume(&console.api, &id) {
        Ok(()) => to_subscriber(&id, "resumed"),
        Err(e) => failure(e),
    }
}

/// `POST /console/subscribers/{id}/redrive`.
pub(crate) async fn redrive(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !visitor.check(&form.csrf) {
        return csrf_refused();
    }
    if !data::is_configured(&console.api, &id) {
        return failure(ApiError::not_found(
            "unknown_subscriber",
            format!("No subscriber with id {id:?} is configured."),
        ));
    }
    match data::redrive(&console.api, &id).await {
        Ok(n) => to_subscriber(&id, &format!("redriven&n={n}")),
        Err(e) => failure(e),
    }
}

/// `POST /console/deliveries/{id}/retry`.
pub(crate) async fn retry(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !visitor.check(&form.csrf) {
        return csrf_refused();
    }
    match data::retry(&console.api, &id).await {
        Ok(_) => Redirect::to(&format!("/console/deliveries/{id}?done=retried")).into_response(),
        Err(e) => failure(e),
    }
}

/// Any other console path.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::message(
            "Not found",
            "Not found",
            "There is no such console page.",
            None,
        ),
    )
        .into_response()
}
