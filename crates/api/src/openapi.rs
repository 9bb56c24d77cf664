//! `GET /openapi.json`: the OpenAPI 3.1 document of every `/v1` route, generated from the
//! handlers' `#[utoipa::path]` annotations and the answer types' `ToSchema` derives.
//!
//! [`v1_routes`] is the one list of `/v1` routes: the router serves exactly these and the
//! document describes exactly these (utoipa-axum registers a handler's route and its path item
//! in one step), so neither can drift from the other. The document is served behind the API
//! token, like `/v1` (it lists the operations an authorised client may call).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{admin, events, ingest, replay, ApiState};

/// Every error answer (`{"error", "message"}`).
pub(crate) type ErrorDoc = crate::error::ErrorBody<'static>;

/// The receipt of an ingested event (`202`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReceiptDoc {
    /// The event's id.
    event_id: String,
    /// One delivery per subscriber.
    deliveries: Vec<ReceiptDeliveryDoc>,
}

/// One delivery of a receipt.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReceiptDeliveryDoc {
    /// The delivery id (`webhook-id` on the wire).
    id: String,
    /// Who it goes to.
    subscriber: String,
}

/// The answer of `POST /v1/events/batch`: per event, in order, a receipt or an error body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct BatchDoc {
    /// `ReceiptDoc` or `ErrorBody` per event.
    results: Vec<serde_json::Value>,
}

/// A page of deliveries.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DeliveryPageDoc {
    deliveries: Vec<crate::views::DeliveryView>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// The answer of a redrive.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct RedriveDoc {
    subscriber: String,
    /// Dead deliveries moved back to pending.
    redriven: u64,
}

/// The answer of a reload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReloadDoc {
    /// Subscribers now configured.
    subscribers: usize,
    added: Vec<String>,
    removed: Vec<String>,
    /// `{"subscriber", "queued"}` for removed subscribers that still have work.
    orphaned: Vec<serde_json::Value>,
}

/// The answer of `GET /v1/cluster`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ClusterDoc {
    nodes: Vec<crate::views::NodeView>,
}

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "api_token",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "A durable webhook sender: ingest, admin and operations API. When `[server] api_token` is set, every route needs `Authorization: Bearer <token>`.",
    ),
    modifiers(&BearerToken),
    tags(
        (name = "events", description = "ingest and lookup"),
        (name = "subscribers", description = "live figures and flow control"),
        (name = "deliveries", description = "deliveries, dead letters, replay"),
        (name = "operations", description = "configuration"),
    )
)]
struct ApiDoc;

/// Every `/v1` route, with its handler and its OpenAPI path item. One `routes!` per path.
pub(crate) fn v1_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ingest::ingest_one, events::list_events))
        .routes(routes!(ingest::ingest_batch))
        .routes(routes!(events::get_event))
        .routes(routes!(admin::list_subscribers))
        .routes(routes!(admin::get_subscriber))
        .routes(routes!(admin::pause))
        .routes(routes!(admin::resume))
        .routes(routes!(admin::redrive))
        .routes(routes!(replay::replay))
        .routes(routes!(admin::list_deliveries))
        .routes(routes!(admin::get_delivery))
        .routes(routes!(admin::retry_delivery))
        .routes(routes!(admin::reload))
        .routes(routes!(admin::cluster))
}
