//! `GET /api/v1/rejections`: requests refused for an unparseable body.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{page_size, query, Resource, Scope};
use crate::state::AppState;

/// The rejections' route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(list_rejections))
}

/// `GET /api/v1/rejections` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RejectionQuery {
    /// Only this tenant (a tenant token: its own; another one is 404).
    tenant: Option<String>,
    /// At most this many, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One request refused for an unparseable body.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionView {
    /// When.
    at: Timestamp,
    /// The tenant of the source it was sent to.
    tenant: String,
    /// The source.
    source: String,
    /// `rejected_invalid`.
    outcome: String,
    /// Why, for people.
    reason: String,
    /// The body as received (up to 64 KiB; invalid UTF-8 replaced), when it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// The rejections, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejections {
    /// The rejections.
    data: Vec<RejectionView>,
}

/// Requests refused for an unparseable body, newest first, with the reason and the body as
/// received (text when it is UTF-8), so a sender's bad deploy can be diagnosed.
#[utoipa::path(
    get,
    path = "/rejections",
    operation_id = "list_rejections",
    tag = "rejections",
    summary = "List rejected requests",
    description = "Requests refused for an unparseable body, newest first. Requests with a bad \
        signature are counted but never stored.",
    params(RejectionQuery),
    responses(
        (status = 200, description = "The rejections.", body = Rejections),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn list_rejections(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<RejectionQuery>, QueryRejection>,
) -> Result<Json<Rejections>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = page_size(q.limit)?;
    let rows = app.store.list_rejections(tenant, limit).await?;
    let data = rows
        .into_iter()
        .map(|r| RejectionView {
            body: r
                .body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            at: r.at,
            tenant: r.tenant,
            source: r.source,
            outcome: r.outcome,
            reason: r.reason,
        })
        .collect();
    Ok(Json(Rejections { data }))
}
