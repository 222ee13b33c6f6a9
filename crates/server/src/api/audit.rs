//! `GET /api/v1/audit?source=S&from=T&to=T`: the conservation audit of one source's window,
//! read and judged by [`crate::duties::audit`]. A tenant token audits only its own tenant's
//! sources; another's is 404, as if it did not exist.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{query, Resource, Scope};
use crate::duties::audit::{self, AuditParams, AuditReport};
use crate::state::AppState;

/// The audit's route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(get_audit))
}

#[utoipa::path(
    get,
    path = "/audit",
    operation_id = "get_audit",
    tag = "audit",
    summary = "Audit a source's window",
    description = "The conservation report of one source over a window of receipt times: \
        requests received = accepted + duplicates + rejected (by reason); accepted events as \
        counted = events stored (by origin); per routed destination, delivered + pending + dead \
        = events, each (event, destination) once by the best state of its deliveries; and the \
        events with no delivery to a routed destination. The window is widened to whole minutes \
        (whole hours once minute counters are compacted away) and `window` says which. \
        `checks` name what does not add up; `adds_up` is true when all hold. The system of \
        record is not asked here: `sor_api` says whether a dry-run backfill can ask it.",
    params(AuditParams),
    responses(
        (status = 200, description = "The audit.", body = AuditReport),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn get_audit(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditReport>, Problem> {
    let q = query(q)?;
    let now = app.clock.now();
    let req = audit::check(&q, &app.config, |t| scope.sees(t), now)?;
    Ok(Json(audit::audit(&*app.store, &req, now).await?))
}
