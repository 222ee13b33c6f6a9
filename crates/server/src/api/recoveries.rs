//! Recovery jobs: `POST /api/v1/recoveries` (create), `GET /api/v1/recoveries` (list),
//! `GET /api/v1/recoveries/{id}` (get, with progress and report) and
//! `POST /api/v1/recoveries/{id}/cancel`.
//!
//! The request is checked by the recovery duty's [`params::check`]; the job is stored
//! `queued` and the duty (on whichever node holds it) runs it. A tenant token starts, sees and
//! cancels only its own tenant's jobs; another tenant's job is 404.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use intake_store::{RecoveryFilter, RecoveryJob, RecoveryState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{BadRequest, Conflict, NotFound, Problem, Unauthorized, Unavailable};
use super::{page_size, query, Resource, Scope};
use crate::duties::recovery::params::{self, JobRequest, Refusal};
use crate::duties::recovery::{new_id, new_job};
use crate::duties::retention;
use crate::state::AppState;

/// The recovery jobs' routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(list, create))
        .route(routes!(show))
        .route(routes!(cancel))
}

/// A list of recovery jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recoveries {
    /// Newest first.
    pub data: Vec<RecoveryJob>,
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        if r.not_found {
            Problem::not_found(r.slug, r.detail)
        } else {
            Problem::bad_request(r.slug, r.detail)
        }
    }
}

/// Who a job was created by, for its record.
fn author(scope: &Scope) -> String {
    match scope {
        Scope::Operator => "operator".into(),
        Scope::Tenant(t) => format!("tenant:{t}"),
    }
}

#[utoipa::path(
    post,
    path = "/recoveries",
    operation_id = "create_recovery",
    tag = "recoveries",
    summary = "Start a recovery job",
    description = "Queues a backfill, replay or requeue job for one source and window; the \
        recovery duty runs it. `dry_run` reports what it would do and changes nothing. A tenant \
        token starts jobs of its own tenant's sources only (another's source is 404).",
    request_body = JobRequest,
    responses(
        (status = 201, description = "The job, `queued`; `Location` names it.", body = RecoveryJob),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn create(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: JobRequest = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(
            "invalid-body",
            format!("the body is not a recovery request: {e}"),
        )
    })?;
    let job = create_job(&app, &scope, &req).await?;
    let location = format!("/api/v1/recoveries/{}", job.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// Checks a request with the recovery duty's [`params::check`], stores the job `queued` and
/// wakes the duty: what `POST /api/v1/recoveries` and the dashboard's forms both do.
pub(crate) async fn create_job(
    app: &AppState,
    scope: &Scope,
    req: &JobRequest,
) -> Result<RecoveryJob, Problem> {
    let now = app.clock.now();
    let id = new_id(now);
    let checked = params::check(req, &app.config, |t| scope.sees(t), now, &id)?;
    retention::ensure_job_kept(&*app.store, checked.kind, &checked.params).await?;
    let job = new_job(id, checked, author(scope), now);
    app.store.create_recovery(job.clone()).await?;
    app.recoveries.notify_one();
    tracing::info!(job = %job.id, kind = job.kind.as_str(), source = %job.source, dry_run = job.dry_run, by = %job.created_by, "recovery job queued");
    Ok(job)
}

/// `GET /api/v1/recoveries` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this tenant's jobs (a tenant token sees only its own).
    tenant: Option<String>,
    /// Only this source's jobs.
    source: Option<String>,
    /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
    state: Option<String>,
    /// At most this many (1–1000, default 100).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/recoveries",
    operation_id = "list_recoveries",
    tag = "recoveries",
    summary = "List recovery jobs",
    description = "The jobs visible to the token, newest first, with their progress and report.",
    params(ListQuery),
    responses(
        (status = 200, description = "The jobs.", body = Recoveries),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn list(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Recoveries>, Problem> {
    let q = query(q)?;
    let states = match q.state.as_deref() {
        None => Vec::new(),
        Some(s) => vec![RecoveryState::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid-parameter",
                format!(
                    "`state`: `{s}` is not one of queued, running, succeeded, failed, cancelled"
                ),
            )
        })?],
    };
    let jobs = app
        .store
        .list_recoveries(RecoveryFilter {
            tenant: scope.tenant_filter(q.tenant)?,
            source: q.source,
            states,
            limit: page_size(q.limit)?,
        })
        .await?;
    Ok(Json(Recoveries { data: jobs }))
}

/// The job `id` if this token may see it.
pub(crate) async fn visible(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<RecoveryJob, Problem> {
    let not_found = || Problem::not_found("no-such-recovery", format!("no recovery job `{id}`"));
    let job = app.store.get_recovery(id).await?.ok_or_else(not_found)?;
    if scope.sees(&job.tenant) {
        Ok(job)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(
    get,
    path = "/recoveries/{id}",
    operation_id = "get_recovery",
    tag = "recoveries",
    summary = "Get a recovery job",
    description = "The job with its parameters, progress and report (counts by channel, event \
        type and object; the first items; the system of record's requests).",
    params(("id" = String, Path, description = "The job id (`rec_…`).")),
    responses(
        (status = 200, description = "The job.", body = RecoveryJob),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn show(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<RecoveryJob>, Problem> {
    Ok(Json(visible(&app, &scope, &id).await?))
}

#[utoipa::path(
    post,
    path = "/recoveries/{id}/cancel",
    operation_id = "cancel_recovery",
    tag = "recoveries",
    summary = "Cancel a recovery job",
    description = "A queued job ends at once; a running job stops at its next page (what it did \
        stays done). A job that already ended is 409 `recovery-finished`.",
    params(("id" = String, Path, description = "The job id (`rec_…`).")),
    responses(
        (status = 200, description = "The job, `cancelled` or with `cancel_requested`.", body = RecoveryJob),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn cancel(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<RecoveryJob>, Problem> {
    Ok(Json(cancel_job(&app, &scope, &id).await?))
}

/// Asks job `id` to stop, if `scope` sees it and it has not ended.
pub(crate) async fn cancel_job(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<RecoveryJob, Problem> {
    let job = visible(app, scope, id).await?;
    if job.state.is_final() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "recovery-finished",
            "Recovery job already finished",
            format!(
                "recovery job `{id}` already ended ({}); there is nothing to cancel",
                job.state.as_str()
            ),
        ));
    }
    let now = app.clock.now();
    let job =
        app.store.cancel_recovery(id, now).await?.ok_or_else(|| {
            Problem::not_found("no-such-recovery", format!("no recovery job `{id}`"))
        })?;
    app.recoveries.notify_one();
    tracing::info!(job = %job.id, by = %author(scope), "recovery job cancellation requested");
    Ok(job)
}
