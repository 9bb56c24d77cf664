//! The operator console: server-rendered HTML at `/console` (SPEC §11).
//!
//! Pages are [maud] templates (checked at compile time) rendered from the same view structs the
//! JSON API answers with ([`crate::views`]), so the console can never show a field the API hides.
//! The only assets are one CSS and one JS file, embedded in the binary (`assets/`): no CDN, no
//! build step, works offline. Every page works without JavaScript (plain forms, POST, redirect);
//! the script only adds live refresh of the overview and confirmation dialogs.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/console` | overview: every subscriber, live figures, sparkline |
//! | GET | `/console/live` | the overview's table body (polled by the script) |
//! | GET | `/console/subscribers/{id}` | config summary, deliveries, dead letters, actions |
//! | GET | `/console/deliveries/{id}` | attempt timeline, payload |
//! | GET | `/console/events/{id}` | an event's deliveries and payload |
//! | GET | `/console/search?q=` | redirects to the delivery or event found, or says none was |
//! | POST | `/console/subscribers/{id}/pause`, `/resume`, `/redrive` | actions |
//! | POST | `/console/subscribers/{id}/replay` | dry run and its count; with `confirm=1`, replay |
//! | POST | `/console/deliveries/{id}/retry` | a dead delivery back to pending |
//! | GET/POST | `/console/signin`, POST `/console/signout` | the session (with `api_token`) |
//!
//! Security (see `auth.rs`): with an API token configured, a sign-in form exchanges the token
//! for a random session id kept server-side and sent as an `HttpOnly; SameSite=Strict` cookie.
//! Every state-changing request must come from the same origin (`Origin`, else
//! `Sec-Fetch-Site`) **and** carry the session's CSRF token. Every answer carries
//! `Content-Security-Policy: default-src 'self'` (so no inline script or style anywhere).
//!
//! Cost: nothing runs unless a console page is requested. The sparkline's samples are taken
//! while answering the overview's own polls (at most one every [`live::SAMPLE_EVERY`]), from
//! the figures that answer reads anyway.

mod auth;
mod data;
mod handlers;
mod live;
mod pages;
mod time;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::ApiState;

/// The console's shared state: the API state plus sessions and sparkline samples.
#[derive(Clone)]
pub(crate) struct Console {
    api: ApiState,
    sessions: Arc<auth::Sessions>,
    live: Arc<live::Sampler>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// The stylesheet and the script, embedded.
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes, to be nested at `/console`.
pub(crate) fn router(api: ApiState) -> Router<ApiState> {
    let console = Console {
        sessions: Arc::new(auth::Sessions::new(api.inner.api_token.clone())),
        live: Arc::new(live::Sampler::default()),
        api,
    };
    let protected = Router::new()
        .route("/", get(handlers::overview))
        .route("/live", get(handlers::live_rows))
        .route("/search", get(handlers::search))
        .route("/subscribers/{id}", get(handlers::subscriber))
        .route("/subscribers/{id}/pause", post(handlers::pause))
        .route("/subscribers/{id}/resume", post(handlers::resume))
        .route("/subscribers/{id}/redrive", post(handlers::redrive))
        .route("/subscribers/{id}/replay", post(handlers::replay))
        .route("/events/{id}", get(handlers::event))
        .route("/deliveries/{id}", get(handlers::delivery))
        .route("/deliveries/{id}/retry", post(handlers::retry))
        .route("/signout", post(auth::sign_out))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/signin", get(auth::sign_in_form).post(auth::sign_in))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .merge(protected)
        .fallback(handlers::not_found)
        .layer(middleware::from_fn(auth::same_origin_writes))
        .layer(middleware::map_response(security_headers))
        .with_state(console)
}

async fn css() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl axum::response::IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

/// Headers on every console answer: the CSP of SPEC §11 (no inline script or style, no
/// framing, forms post only here), no MIME sniffing, no referrer leaving the origin, no caching
/// of pages that show live data.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
