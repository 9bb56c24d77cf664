//! The console's pages and actions. Actions answer `303 See Other` to the page they changed
//! (post/redirect/get), with a `done` code the page turns into a fixed sentence.

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use herald_core::{DeliveryId, DeliveryStatus, EventId, UnixMillis};
use serde::Deserialize;

use super::auth::{CheckedForm, CsrfForm, Visitor};
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
    let rows = match data::subscribers(&console.api).await {
        Ok(rows) => rows,
        Err(e) => return failure(e),
    };
    sample(&console, &rows);
    pages::overview(&rows, &console.live, &visitor).into_response()
}

/// `GET /console/live`: the overview's rows alone, for the script's refresh.
pub(crate) async fn live_rows(State(console): State<Console>) -> Response {
    match data::subscribers(&console.api).await {
        Ok(rows) => {
            sample(&console, &rows);
            pages::overview_rows(&rows, &console.live).into_response()
        }
        Err(e) => e.status.into_response(),
    }
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
        "replayed" => format!(
            "{} deliveries were replayed: pending again, with a fresh retry budget.",
            p.n.unwrap_or_default()
        ),
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
    let page = async {
        let row = data::subscriber(&console.api, &id).await?;
        let recent = data::deliveries(&console.api, &id, None, PAGE, cursor).await?;
        let dead =
            data::deliveries(&console.api, &id, Some(DeliveryStatus::Dead), PAGE, None).await?;
        Ok::<_, ApiError>((row, recent, dead))
    };
    match page.await {
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
    match data::delivery(&console.api, &id).await {
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

/// `GET /console/events/{id}`.
pub(crate) async fn event(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> Response {
    match data::event(&console.api, &id).await {
        Ok(Some(e)) => pages::event(&e, &visitor).into_response(),
        Ok(None) => failure(ApiError::not_found(
            "not_found",
            format!("No event with id {id:?} is stored."),
        )),
        Err(e) => failure(e),
    }
}

/// `GET /console/search?q=`: to the page of the delivery or event found, or a clear "not
/// found".
pub(crate) async fn search(
    State(console): State<Console>,
    Query(params): Query<SearchParams>,
) -> Response {
    let q = params.q.trim();
    if let Ok(id) = q.parse::<DeliveryId>() {
        match data::delivery(&console.api, &id.to_string()).await {
            Ok(Some(_)) => {
                return Redirect::to(&format!("/console/deliveries/{id}")).into_response()
            }
            Ok(None) => {}
            Err(e) => return failure(e),
        }
    }
    if let Ok(id) = q.parse::<EventId>() {
        match data::event(&console.api, &id.to_string()).await {
            Ok(Some(_)) => return Redirect::to(&format!("/console/events/{id}")).into_response(),
            Ok(None) => {}
            Err(e) => return failure(e),
        }
    }
    (
        StatusCode::NOT_FOUND,
        pages::message(
            "Not found",
            "Nothing found",
            &format!("No delivery or event with id {q:?} is stored (finished ones are kept for the retention period)."),
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

impl CsrfForm for PauseForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form that carries nothing but its CSRF token (resume, redrive, retry).
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
}

impl CsrfForm for ActionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn to_subscriber(id: &str, done: &str) -> Response {
    Redirect::to(&format!("/console/subscribers/{id}?done={done}")).into_response()
}

/// `POST /console/subscribers/{id}/pause` with `Reason`.
pub(crate) async fn pause(
    State(console): State<Console>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<PauseForm>,
) -> Response {
    let reason = match form.reason.trim() {
        "" => "paused by an operator (console)",
        r => r,
    };
    match data::pause(&console.api, &id, reason).await {
        Ok(()) => to_subscriber(&id, "paused"),
        Err(e) => failure(e),
    }
}

/// `POST /console/subscribers/{id}/resume`.
pub(crate) async fn resume(
    State(console): State<Console>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<ActionForm>,
) -> Response {
    match data::resume(&console.api, &id).await {
        Ok(()) => to_subscriber(&id, "resumed"),
        Err(e) => failure(e),
    }
}

/// `POST /console/subscribers/{id}/redrive`.
pub(crate) async fn redrive(
    State(console): State<Console>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<ActionForm>,
) -> Response {
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
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<ActionForm>,
) -> Response {
    match data::retry(&console.api, &id).await {
        Ok(()) => Redirect::to(&format!("/console/deliveries/{id}?done=retried")).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct ReplayForm {
    csrf: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    status: String,
    /// Present only on the confirmation form shown after the dry run.
    #[serde(default)]
    confirm: String,
}

impl CsrfForm for ReplayForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/subscribers/{id}/replay`: without `confirm`, a dry run whose count is shown
/// with a confirmation form (the window made absolute, so it cannot move); with it, the replay.
pub(crate) async fn replay(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<ReplayForm>,
) -> Response {
    if !data::is_configured(&console.api, &id) {
        return failure(ApiError::not_found(
            "unknown_subscriber",
            format!("No subscriber with id {id:?} is configured."),
        ));
    }
    let now = UnixMillis::now();
    let window = (|| {
        let since =
            super::time::parse_instant(&form.since, now).map_err(|e| format!("Since: {e}"))?;
        let until = match form.until.trim() {
            "" => None,
            u => Some(super::time::parse_instant(u, now).map_err(|e| format!("Until: {e}"))?),
        };
        if until.is_some_and(|u| u.0 <= since.0) {
            return Err("Until must be after Since.".to_owned());
        }
        let statuses = super::time::parse_statuses(&form.status)?;
        Ok::<_, String>((since, until, statuses))
    })();
    let (since, until, statuses) = match window {
        Ok(w) => w,
        Err(message) => return failure(ApiError::bad_request(message)),
    };
    let confirmed = form.confirm == "1";
    match data::replay(
        &console.api,
        &id,
        since,
        until,
        statuses.clone(),
        !confirmed,
    )
    .await
    {
        Ok((_, replayed)) if confirmed => to_subscriber(&id, &format!("replayed&n={replayed}")),
        Ok((matched, _)) => pages::replay_confirm(
            &id,
            &visitor,
            matched,
            &pages::Window {
                since,
                until,
                status: form.status.trim(),
            },
        )
        .into_response(),
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
