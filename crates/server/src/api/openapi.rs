//! The admin API as a documented contract: the OpenAPI 3.1 document, generated from the
//! handlers and served at `GET /api/v1/openapi.json`.
//!
//! **One list for the router and the document.** A resource registers each handler with
//! `utoipa_axum::routes!`, which reads the handler's `#[utoipa::path]` attribute: the method and
//! path it is routed on are the ones documented, and there is no other way to add an admin
//! route — a resource's `routes()` returns a [`Resource`], which only accepts such documented
//! handlers. [`resources`] lists every resource once; the router (`api::routes`) and
//! [`document`] are both built from it by [`assemble`], so a route cannot be served without
//! being documented, nor documented without being served.
//!
//! **Adding a resource** (`recoveries`, `incidents`, …): its file under `api/` with
//! `#[utoipa::path(...)]` on each handler (method, path relative to `/api/v1`, an
//! `operation_id`, params, request body, responses — the problem responses by the names
//! [`problem`](super::problem) gives them, `(status = 404, response = NotFound)` —,
//! `security(("bearer" = []))`, a tag), a `routes()` returning a [`Resource`], and one line in
//! [`resources`]. Its
//! heading in `docs/api.md` (`` ## `METHOD /api/v1/…` ``) is checked by
//! `crates/intake/tests/it/openapi.rs`.

use std::sync::{Arc, LazyLock};

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{
    BadRequest, Conflict, Forbidden, NotFound, Problem, Unauthorized, Unavailable, Unprocessable,
};
use super::Resource;
use super::{
    alerts, audit, canaries, cluster, deliveries, drills, events, flows, incidents, notifiers,
    queue, reconciliation, recoveries, rejections, rules, silences, tokens,
};
use crate::state::AppState;

/// Every admin resource, one line each; the router and the document are both built from this
/// list ([`assemble`]).
fn resources() -> Resource {
    Resource::new()
        .merge(events::routes())
        .merge(rejections::routes())
        .merge(flows::routes())
        .merge(queue::routes())
        .merge(alerts::routes())
        .merge(rules::routes())
        .merge(silences::routes())
        .merge(notifiers::routes())
        .merge(cluster::routes())
        .merge(tokens::routes())
        .merge(recoveries::routes())
        .merge(audit::routes())
        .merge(reconciliation::routes())
        .merge(canaries::routes())
        .merge(drills::routes())
        .merge(incidents::routes())
        .merge(deliveries::routes())
}

/// The admin API under `/api/v1`: the document's own route, open to anyone, and every resource
/// of [`resources`], to which `protect` adds what the document does not describe (the bearer
/// authentication layer and the 404 fallback, for the router; nothing, for the document).
pub(crate) fn assemble(
    protect: impl FnOnce(OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>>,
) -> OpenApiRouter<Arc<AppState>> {
    let api = protect(resources().into_router()).routes(routes!(openapi_json));
    OpenApiRouter::default().nest("/api/v1", api)
}

/// The OpenAPI 3.1 document of the admin API, as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    doc.merge(assemble(|api| api).into_openapi());
    doc
}

/// The document as served: generated once, on first request. It is the same for every node
/// and every token, and holds nothing of the configuration.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document().to_pretty_json().unwrap_or_else(|e| {
        format!("{{\"error\": \"the OpenAPI document cannot be written: {e}\"}}")
    })
});

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi_document",
    tag = "meta",
    summary = "This document",
    description = "The OpenAPI 3.1 document of the admin API, generated from the handlers. It \
        needs no token: it describes the API every intake serves and holds nothing of this \
        server's configuration or data.",
    responses(
        (status = 200, description = "The OpenAPI document.", content_type = "application/json",
         body = Object),
    ),
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// The document's fixed parts: information, the bearer scheme, the shared problem responses,
/// tags. The paths come from the handlers ([`document`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "intake admin API",
        description = "The admin API of intake, an inbound webhook gateway. Every route but this \
            document needs `Authorization: Bearer <token>`: the operator token sees everything, a \
            tenant token only its tenant. Errors are RFC 7807 problem documents \
            (`application/problem+json`) whose `type` (`urn:intake:problem:…`) is stable. \
            docs/api.md explains each route.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    components(
        schemas(Problem),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, Unavailable),
    ),
    tags(
        (name = "events", description = "The event log, with deliveries and attempts."),
        (name = "rejections", description = "Requests refused for an unparseable body."),
        (name = "flows", description = "What is coming in, per source and channel."),
        (name = "queue", description = "What is waiting to go out, per destination."),
        (name = "alerts", description = "What the monitor says now and said recently."),
        (name = "rules", description = "The built-in rules and their overrides."),
        (name = "silences", description = "Scoped, expiring mutes of notifications."),
        (name = "notifiers", description = "The configured notifiers and their outboxes."),
        (name = "cluster", description = "The nodes sharing the store and their duties."),
        (name = "tokens", description = "API tokens made by intake."),
        (name = "recoveries", description = "Backfill, replay and requeue jobs."),
        (name = "audit", description = "Whether a source's window adds up."),
        (name = "reconciliation", description = "Sources compared with their systems of record; open gaps."),
        (name = "canaries", description = "Synthetic webhooks sent through the front door, per source."),
        (name = "drills", description = "Fire drills: faults injected on purpose, to prove the alerts work."),
        (name = "incidents", description = "Outages told to affected tenants, with their timelines and postmortem drafts."),
        (name = "deliveries", description = "Completion receipts: handlers confirming their work."),
        (name = "meta", description = "This document."),
    ),
)]
struct AdminApi;

/// The `bearer` security scheme every authenticated route names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`admin.token` (operator), a tenant's `api_token`, or a token made by \
                         `intake token create` (`itk_…`).",
                    ))
                    .build(),
            ),
        );
    }
}
