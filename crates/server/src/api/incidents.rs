//! Incidents: `POST /api/v1/incidents` (declare), `GET /api/v1/incidents` (list),
//! `GET /api/v1/incidents/{id}` (with its timeline and response times),
//! `POST /api/v1/incidents/{id}/updates`, `POST /api/v1/incidents/{id}/resolve` and
//! `GET /api/v1/incidents/{id}/postmortem` (a Markdown draft).
//!
//! The requests are checked, written and notified by [`crate::duties::incidents`]; this door
//! only translates. Declaring, updating, resolving and the postmortem need the operator's
//! token (403 `incident-operator-only`); a tenant token reads its own tenant's incidents,
//! only its slice of them, and another tenant's incident is 404.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{
    BadRequest, Conflict, Forbidden, NotFound, Problem, Unauthorized, Unavailable,
};
use super::{page_size, query, Resource, Scope};
use crate::duties::incidents::lifecycle::{
    author_of, DeclareRequest, ResolveRequest, UpdateRequest,
};
use crate::duties::incidents::{Desk, IncidentDetail, IncidentError, IncidentView, Refusal};
use crate::state::AppState;

/// The incidents' routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(list, declare))
        .route(routes!(show))
        .route(routes!(update))
        .route(routes!(resolve))
        .route(routes!(postmortem))
}

/// A list of incidents.
#[derive(Debug, Serialize, ToSchema)]
pub struct Incidents {
    /// Newest declared first.
    pub data: Vec<IncidentView>,
}

impl From<IncidentError> for Problem {
    fn from(e: IncidentError) -> Self {
        match e {
            IncidentError::Store(e) => e.into(),
            IncidentError::Refused(r) => refusal(r),
        }
    }
}

fn refusal(r: Refusal) -> Problem {
    let (status, title) = match r.status {
        403 => (StatusCode::FORBIDDEN, "Forbidden"),
        404 => (StatusCode::NOT_FOUND, "Not found"),
        409 => (StatusCode::CONFLICT, "Conflict"),
        _ => (StatusCode::BAD_REQUEST, "Bad request"),
    };
    Problem::new(status, r.slug, title, r.detail)
}

/// The desk of a write: with on-call's notifiers (to know which take incident notices) and
/// the sender's wake-up.
fn desk(app: &AppState) -> Desk {
    Desk::new(
        app.config.clone(),
        app.clock.clone(),
        app.store.clone(),
        app.notices.clone(),
    )
}

/// The desk of a read.
fn reader(app: &AppState) -> Desk {
    Desk::reader(app.config.clone(), app.clock.clone(), app.store.clone())
}

/// Writes and the postmortem are the operator's.
fn operator(scope: &Scope, what: &str) -> Result<(), Problem> {
    match scope {
        Scope::Operator => Ok(()),
        Scope::Tenant(_) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "incident-operator-only",
            "Forbidden",
            format!("{what} needs the operator's token; a tenant token reads its incidents only"),
        )),
    }
}

fn tenant_of(scope: &Scope) -> Option<&str> {
    match scope {
        Scope::Operator => None,
        Scope::Tenant(t) => Some(t),
    }
}

fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, Problem> {
    let text = if bytes.is_empty() { &b"{}"[..] } else { bytes };
    serde_json::from_slice(text)
        .map_err(|e| Problem::bad_request("invalid-body", format!("the body is not {what}: {e}")))
}

#[utoipa::path(
    post,
    path = "/incidents",
    operation_id = "declare_incident",
    tag = "incidents",
    summary = "Declare an incident",
    description = "Stores the incident and, in the same transaction, its notices: to on-call \
        (every notifier that takes incident notices) and to every contact of every affected \
        tenant (each rendered from the tenant template with that tenant's data only). The \
        answer is the incident with its timeline. Refusals are `400` with a reason \
        (`unknown-tenant`, `invalid-time`, `names-a-tenant`, …).",
    request_body = DeclareRequest,
    responses(
        (status = 201, description = "The incident; `Location` names it.", body = IncidentDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn declare(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    operator(&scope, "declaring an incident")?;
    let req: DeclareRequest = body(&bytes, "an incident declaration")?;
    let detail = declare_incident(&app, &scope, &req).await?;
    let location = format!("/api/v1/incidents/{}", detail.incident.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(detail),
    )
        .into_response())
}

/// `GET /api/v1/incidents` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this tenant's incidents (a tenant token sees only its own).
    tenant: Option<String>,
    /// `open` for the open incidents only; `all` (the default) for every one.
    state: Option<String>,
    /// At most this many (1–1000, default 100).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/incidents",
    operation_id = "list_incidents",
    tag = "incidents",
    summary = "List incidents",
    description = "The incidents visible to the token, newest declared first. A tenant token \
        sees its own tenant's incidents, and of each only its own tenant and sources.",
    params(ListQuery),
    responses(
        (status = 200, description = "The incidents.", body = Incidents),
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
) -> Result<Json<Incidents>, Problem> {
    let q = query(q)?;
    let open_only = match q.state.as_deref() {
        None | Some("all") => false,
        Some("open") => true,
        Some(other) => {
            return Err(Problem::bad_request(
                "invalid-parameter",
                format!("`state`: `{other}` is not `open` or `all`"),
            ))
        }
    };
    let data = list_incidents(&app, &scope, q.tenant, open_only, page_size(q.limit)?).await?;
    Ok(Json(Incidents { data }))
}

#[utoipa::path(
    get,
    path = "/incidents/{id}",
    operation_id = "get_incident",
    tag = "incidents",
    summary = "Get an incident",
    description = "The incident with its timeline — its steps, the alerts of its scope firing \
        and resolving, every notice with its recipient and whether it was delivered, the \
        recovery jobs of its window with their reports — and its response times.",
    params(("id" = String, Path, description = "The incident id (`inc_…`).")),
    responses(
        (status = 200, description = "The incident.", body = IncidentDetail),
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
) -> Result<Json<IncidentDetail>, Problem> {
    Ok(Json(incident_detail(&app, &scope, &id).await?))
}

#[utoipa::path(
    post,
    path = "/incidents/{id}/updates",
    operation_id = "update_incident",
    tag = "incidents",
    summary = "Update an incident",
    description = "A new status (`investigating`, `identified`, `monitoring`), lead or severity, \
        and a message (required), told to on-call and to every affected tenant. A resolved \
        incident is `409 incident-resolved`; `status: resolved` is `400 invalid-transition` \
        (resolve it instead).",
    params(("id" = String, Path, description = "The incident id (`inc_…`).")),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "The incident, updated.", body = IncidentDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn update(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<IncidentDetail>, Problem> {
    operator(&scope, "updating an incident")?;
    let req: UpdateRequest = body(&bytes, "an incident update")?;
    Ok(Json(update_incident(&app, &scope, &id, &req).await?))
}

#[utoipa::path(
    post,
    path = "/incidents/{id}/resolve",
    operation_id = "resolve_incident",
    tag = "incidents",
    summary = "Resolve an incident",
    description = "Ends the incident, told to on-call and to every tenant that was told of it. \
        Resolving twice is `409 incident-resolved`.",
    params(("id" = String, Path, description = "The incident id (`inc_…`).")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "The incident, resolved.", body = IncidentDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn resolve(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<IncidentDetail>, Problem> {
    operator(&scope, "resolving an incident")?;
    let req: ResolveRequest = body(&bytes, "an incident resolution")?;
    Ok(Json(resolve_incident(&app, &scope, &id, &req).await?))
}

#[utoipa::path(
    get,
    path = "/incidents/{id}/postmortem",
    operation_id = "get_incident_postmortem",
    tag = "incidents",
    summary = "Draft an incident's postmortem",
    description = "A Markdown draft: summary, impact with the events missed and recovered by \
        channel (from the recovery jobs' reports and the audit of the impact window), response \
        times (detect, notify, mitigate, resolve), timeline, recovery, and the sections left for \
        people (root cause, action items).",
    params(("id" = String, Path, description = "The incident id (`inc_…`).")),
    responses(
        (status = 200, description = "The draft.", content_type = "text/markdown; charset=utf-8", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn postmortem(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let text = postmortem_draft(&app, &scope, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        text,
    )
        .into_response())
}

// What the admin API's handlers and the dashboard's incident pages both call: the scope
// rules and the desk's operations, once.

/// Declares the incident `req` describes, by `scope`'s rights (the operator's only).
pub(crate) async fn declare_incident(
    app: &AppState,
    scope: &Scope,
    req: &DeclareRequest,
) -> Result<IncidentDetail, Problem> {
    operator(scope, "declaring an incident")?;
    let author = author_of(req.author.as_deref());
    Ok(desk(app).declare(req, &author).await?)
}

/// Updates the open incident `id`, by `scope`'s rights (the operator's only).
pub(crate) async fn update_incident(
    app: &AppState,
    scope: &Scope,
    id: &str,
    req: &UpdateRequest,
) -> Result<IncidentDetail, Problem> {
    operator(scope, "updating an incident")?;
    let author = author_of(req.author.as_deref());
    Ok(desk(app).update(id, req, &author).await?)
}

/// Resolves the open incident `id`, by `scope`'s rights (the operator's only).
pub(crate) async fn resolve_incident(
    app: &AppState,
    scope: &Scope,
    id: &str,
    req: &ResolveRequest,
) -> Result<IncidentDetail, Problem> {
    operator(scope, "resolving an incident")?;
    let author = author_of(req.author.as_deref());
    Ok(desk(app).resolve(id, req, &author).await?)
}

/// The incidents `scope` may see (of `tenant` when asked; a tenant token only its own, as
/// its slice), newest declared first.
pub(crate) async fn list_incidents(
    app: &AppState,
    scope: &Scope,
    tenant: Option<String>,
    open_only: bool,
    limit: usize,
) -> Result<Vec<IncidentView>, Problem> {
    let tenant = scope.tenant_filter(tenant)?;
    Ok(reader(app)
        .list(tenant.as_deref(), open_only, limit)
        .await?)
}

/// The incident `id` with its timeline, as `scope` may see it (another tenant's is 404).
pub(crate) async fn incident_detail(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<IncidentDetail, Problem> {
    Ok(reader(app).detail(id, tenant_of(scope)).await?)
}

/// The postmortem draft of incident `id`, in Markdown, by `scope`'s rights (the operator's
/// only).
pub(crate) async fn postmortem_draft(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<String, Problem> {
    operator(scope, "a postmortem draft")?;
    Ok(reader(app).postmortem(id).await?)
}
