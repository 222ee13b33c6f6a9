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
//! `#[utoipa::path(...)]` on each handler (method, path relative to `/api/v1`, params, request
//! body, responses — the problem responses by their [`ToResponse`] names below —, `security(("bearer"
//! = []))`, a tag), a `routes()` returning a [`Resource`], and one line in [`resources`]. Its
//! heading in `docs/api.md` (`` ## `METHOD /api/v1/…` ``) is checked by
//! `crates/intake/tests/it/openapi.rs`.

use std::sync::{Arc, LazyLock};

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::problem::Problem;
use super::{
    alerts, cluster, events, flows, notifiers, queue, rejections, rules, silences, tokens,
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
}

/// The routes of one resource, each registered together with its `#[utoipa::path]`
/// documentation. It deliberately has no way to add a plain axum route: every admin route is
/// in the document.
pub(crate) struct Resource(OpenApiRouter<Arc<AppState>>);

impl Resource {
    /// No routes yet.
    pub(crate) fn new() -> Self {
        Resource(OpenApiRouter::default())
    }

    /// Adds the handlers of one path, given as `routes!(handler, …)`; each handler's method and
    /// path come from its `#[utoipa::path]`.
    pub(crate) fn route(self, handlers: UtoipaMethodRouter<Arc<AppState>>) -> Self {
        Resource(self.0.routes(handlers))
    }

    fn merge(self, other: Resource) -> Self {
        Resource(self.0.merge(other.0))
    }
}

/// The admin API under `/api/v1`: the document's own route, open to anyone, and every resource
/// of [`resources`], to which `protect` adds what the document does not describe (the bearer
/// authentication layer and the 404 fallback, for the router; nothing, for the document).
pub(crate) fn assemble(
    protect: impl FnOnce(OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>>,
) -> OpenApiRouter<Arc<AppState>> {
    let api = protect(resources().0).routes(routes!(openapi_json));
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
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unavailable),
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

/// A problem response: an RFC 7807 body, `application/problem+json`.
fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// Declares a reusable problem response (`components.responses.<Name>`), named in the
/// handlers' `responses(...)` as `(status = …, response = Name)`.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => $description:literal;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), problem_response($description).build().into())
            }
        }
    )*};
}

problem_responses! {
    /// 400.
    BadRequest => "The request is malformed: `invalid-parameter` (a query parameter is unknown \
        or malformed; `detail` names it), `invalid-body`, or a refusal particular to the \
        route (its `type` says which; see docs/api.md).";
    /// 401.
    Unauthorized => "`missing-token` or `bad-token`: no bearer token, or one that is not \
        valid (unknown, revoked, expired).";
    /// 403.
    Forbidden => "The token may not do this (e.g. a tenant token where the operator's is \
        needed).";
    /// 404.
    NotFound => "No such thing, or not visible to this token (a tenant token asking for \
        another tenant's data gets 404, as if it did not exist).";
    /// 409.
    Conflict => "The request conflicts with the current state (e.g. `silence-already-ended`).";
}

/// 503: the store cannot answer; `Retry-After` says when to try again.
pub(crate) struct Unavailable;

impl<'s> ToResponse<'s> for Unavailable {
    fn response() -> (&'s str, RefOr<Response>) {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0));
        let retry_after = HeaderBuilder::new()
            .schema(seconds)
            .description(Some("Seconds to wait before retrying."))
            .build();
        let response = problem_response(
            "`store-unavailable`: the store cannot answer (for a minted `itk_…` token, it could \
             not be checked). Retry after `Retry-After` seconds.",
        )
        .header("Retry-After", retry_after)
        .build();
        ("Unavailable", response.into())
    }
}
