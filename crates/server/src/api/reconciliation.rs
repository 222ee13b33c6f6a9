//! `GET /api/v1/reconciliation`: each reconciled source's last check and open gaps, as the
//! `reconcile` duty recorded them (a tenant token sees its own sources only).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{query, Resource, Scope, ScopeQuery};
use crate::duties::reconcile::view::{self, Reconciliation};
use crate::state::AppState;

/// The reconciliation's route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(reconciliation))
}

/// `GET /api/v1/reconciliation`.
#[utoipa::path(
    get,
    path = "/reconciliation",
    operation_id = "get_reconciliation",
    tag = "reconciliation",
    summary = "Reconciliation with the systems of record",
    description = "The `[reconcile]` settings, and for each source with API credentials: the \
        last window compared with its system of record (events listed, missing by channel, \
        requests), why the last tick skipped it or failed, and its open gaps — the events \
        still missing, and the backfill job started for each (`source_gap` fires while a \
        source has one).",
    params(ScopeQuery),
    responses(
        (status = 200, description = "The reconciliation.", body = Reconciliation),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn reconciliation(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Reconciliation>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let found = view::read(&app.config, &*app.store, |s| {
        tenant.as_ref().is_none_or(|t| *t == s.tenant)
            && q.source.as_ref().is_none_or(|id| *id == s.id)
    })
    .await?;
    Ok(Json(found))
}
