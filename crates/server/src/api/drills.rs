//! Fire drills: `POST /api/v1/drills` (start), `GET /api/v1/drills` (list, newest first),
//! `GET /api/v1/drills/{id}` (get, with its report and timings) and
//! `POST /api/v1/drills/{id}/cancel` (stop it now; it heals at once).
//!
//! The request is checked by the drill duty's [`params::check`]; the drill is stored running
//! (its row is its fault, which every node applies) and the `drills` duty, on whichever node
//! holds it, watches it, decides and heals it — the caller may go away. Drills are operator
//! actions: a tenant token may only read the drills of its own sources (others are 404).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use intake_core::drill::{Scenario, TargetKind};
use intake_core::Timestamp;
use intake_store::{Drill, DrillFilter, DrillState, DrillTrigger};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{
    BadRequest, Conflict, Forbidden, NotFound, Problem, Unauthorized, Unavailable,
};
use super::{page_size, query, Resource, Scope};
use crate::duties::drill::decide::{self, DrillReport};
use crate::duties::drill::params::{self, DrillRequest, Origin, Refusal};
use crate::duties::drill::{self, DRILLS_TOTAL};
use crate::state::AppState;

/// The drills' routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(list, create))
        .route(routes!(show))
        .route(routes!(cancel))
}

/// One drill, with its report and the timings people ask for.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillView {
    /// `drl_…`
    pub id: String,
    /// The fault it injects.
    pub scenario: Scenario,
    /// What its target is.
    pub target_kind: TargetKind,
    /// The source, destination or notifier it injects the fault into.
    pub target: String,
    /// The tenant of its source (source scenarios).
    pub tenant: Option<String>,
    /// `manual` or `scheduled`.
    pub trigger: DrillTrigger,
    /// The `[[drills]]` schedule it belongs to, if scheduled (`queue-stall:<source>`).
    pub schedule: Option<String>,
    /// `running`, `passed`, `failed` or `cancelled`.
    pub state: DrillState,
    /// Who started it.
    pub created_by: String,
    /// When its fault started.
    pub started_at: Timestamp,
    /// When its fault ends at the latest.
    pub expires_at: Timestamp,
    /// When its expected alert fired.
    pub detected_at: Option<Timestamp>,
    /// When that alert's notification was sent.
    pub notified_at: Option<Timestamp>,
    /// When its fault was removed.
    pub healed_at: Option<Timestamp>,
    /// Whether its fault is removed (it has ended).
    pub healed: bool,
    /// Seconds from the fault to the alert firing.
    pub time_to_detect_seconds: Option<f64>,
    /// Seconds from the fault to the notification being sent.
    pub time_to_notify_seconds: Option<f64>,
    /// What it observed and concluded.
    pub report: DrillReport,
}

impl DrillView {
    pub(crate) fn of(d: Drill) -> Self {
        let secs = |t: Option<Timestamp>| t.map(|t| t.since(d.started_at).as_secs_f64());
        DrillView {
            report: DrillReport::of(&d),
            target_kind: d.scenario.target_kind(),
            healed: d.state.is_final(),
            time_to_detect_seconds: secs(d.detected_at),
            time_to_notify_seconds: secs(d.notified_at),
            id: d.id,
            scenario: d.scenario,
            target: d.target,
            tenant: d.tenant,
            trigger: d.trigger,
            schedule: d.schedule,
            state: d.state,
            created_by: d.created_by,
            started_at: d.started_at,
            expires_at: d.expires_at,
            detected_at: d.detected_at,
            notified_at: d.notified_at,
            healed_at: d.healed_at,
        }
    }
}

/// A list of drills.
#[derive(Debug, Serialize, ToSchema)]
pub struct Drills {
    /// Newest first.
    pub data: Vec<DrillView>,
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        match r.status {
            404 => Problem::not_found(r.slug, r.detail),
            409 => Problem::new(StatusCode::CONFLICT, r.slug, "Conflict", r.detail),
            _ => Problem::bad_request(r.slug, r.detail),
        }
    }
}

/// Drills are operator actions: a tenant token may read, not start or stop them.
fn operator_only(scope: &Scope, what: &str) -> Result<(), Problem> {
    match scope {
        Scope::Operator => Ok(()),
        Scope::Tenant(_) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "operator-only",
            "Forbidden",
            format!("{what} a fire drill needs the operator's token: a drill changes how every tenant's traffic is handled"),
        )),
    }
}

#[utoipa::path(
    post,
    path = "/drills",
    operation_id = "create_drill",
    tag = "drills",
    summary = "Start a fire drill",
    description = "Injects a named fault for a bounded time (`for`, default 5m) — `queue-stall` \
        (a source's deliveries are not dispatched), `handler-down` (attempts to a destination \
        fail), `flow-stop` (a source's webhooks are refused with 503), `notifier-down` (a \
        notifier's sends fail) — and watches for the expected alert and its notification. The \
        server heals it as soon as it passed, at its bound, or when cancelled, whether or not \
        the caller is still there. Operator token only; one drill at a time per target, and \
        none while its expected alert is already active (409).",
    request_body = DrillRequest,
    responses(
        (status = 201, description = "The drill, `running`; `Location` names it.", body = DrillView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn create(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> Result<Response, Problem> {
    operator_only(&scope, "starting")?;
    let req: DrillRequest = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(
            "invalid-body",
            format!("the body is not a drill request: {e}"),
        )
    })?;
    let drill = start_drill(&app, &scope, &req).await?;
    let location = format!("/api/v1/drills/{}", drill.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(DrillView::of(drill)),
    )
        .into_response())
}

/// Starts the drill `req` asks for, by `scope`'s rights (the operator's only): checked
/// against the configuration, the running drills and the active alerts, stored running, and
/// this node's drill duty woken. The API's `POST /drills` and the dashboard's form call it.
pub(crate) async fn start_drill(
    app: &AppState,
    scope: &Scope,
    req: &DrillRequest,
) -> Result<Drill, Problem> {
    operator_only(scope, "starting")?;
    let now = app.clock.now();
    let running = app
        .store
        .list_drills(DrillFilter {
            states: vec![DrillState::Running],
            ..DrillFilter::default()
        })
        .await?;
    let origin = Origin {
        trigger: DrillTrigger::Manual,
        schedule: None,
        by: "operator",
    };
    let active = drill::active_alerts(&*app.store).await?;
    let drill = params::check(req, &app.config, &running, &active, origin, now)?;
    drill::start(&*app.store, &app.config, &app.faults, drill.clone()).await?;
    app.drills.notify_one();
    Ok(drill)
}

/// `GET /api/v1/drills` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DrillQuery {
    /// Only drills in this state: running, passed, failed, cancelled.
    state: Option<String>,
    /// At most this many (1–1000, default 100).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/drills",
    operation_id = "list_drills",
    tag = "drills",
    summary = "List fire drills",
    description = "The drills visible to the token, newest first, with their reports and \
        timings. A tenant token sees the drills of its own sources only.",
    params(DrillQuery),
    responses(
        (status = 200, description = "The drills.", body = Drills),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn list(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<DrillQuery>, QueryRejection>,
) -> Result<Json<Drills>, Problem> {
    let q = query(q)?;
    let states = match q.state.as_deref() {
        None => Vec::new(),
        Some(s) => vec![DrillState::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid-parameter",
                format!("`state`: `{s}` is not one of running, passed, failed, cancelled"),
            )
        })?],
    };
    let drills = list_drills(&app, &scope, states, page_size(q.limit)?).await?;
    Ok(Json(Drills {
        data: drills.into_iter().map(DrillView::of).collect(),
    }))
}

/// The drills `scope` may see (a tenant's: those of its own sources), newest first, of
/// `states` (all when empty), at most `limit`.
pub(crate) async fn list_drills(
    app: &AppState,
    scope: &Scope,
    states: Vec<DrillState>,
    limit: usize,
) -> Result<Vec<Drill>, Problem> {
    let tenant = match scope {
        Scope::Operator => None,
        Scope::Tenant(t) => Some(t.clone()),
    };
    Ok(app
        .store
        .list_drills(DrillFilter {
            tenant,
            states,
            schedule: None,
            limit,
        })
        .await?)
}

/// The drill `id` if this token may see it.
pub(crate) async fn visible(app: &AppState, scope: &Scope, id: &str) -> Result<Drill, Problem> {
    let not_found = || Problem::not_found("no-such-drill", format!("no drill `{id}`"));
    let drill = app.store.get_drill(id).await?.ok_or_else(not_found)?;
    let sees = match (scope, &drill.tenant) {
        (Scope::Operator, _) => true,
        (Scope::Tenant(t), Some(own)) => t == own,
        (Scope::Tenant(_), None) => false,
    };
    if sees {
        Ok(drill)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(
    get,
    path = "/drills/{id}",
    operation_id = "get_drill",
    tag = "drills",
    summary = "Get a fire drill",
    description = "The drill with its state, times (started, expires, detected, notified, \
        healed), time to detect and to notify, and its report: the alert it saw, the \
        notification, what was missing when it failed, a summary.",
    params(("id" = String, Path, description = "The drill id (`drl_…`).")),
    responses(
        (status = 200, description = "The drill.", body = DrillView),
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
) -> Result<Json<DrillView>, Problem> {
    Ok(Json(DrillView::of(visible(&app, &scope, &id).await?)))
}

#[utoipa::path(
    post,
    path = "/drills/{id}/cancel",
    operation_id = "cancel_drill",
    tag = "drills",
    summary = "Cancel a fire drill",
    description = "Ends a running drill now, without a verdict: its fault is removed at once \
        (healed). A drill that already ended is 409 `drill-finished`. Operator token only.",
    params(("id" = String, Path, description = "The drill id (`drl_…`).")),
    responses(
        (status = 200, description = "The drill, `cancelled`.", body = DrillView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
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
) -> Result<Json<DrillView>, Problem> {
    Ok(Json(DrillView::of(cancel_drill(&app, &scope, &id).await?)))
}

/// Cancels the running drill `id`, by `scope`'s rights (the operator's only): ended without a
/// verdict and healed at once on this node. A drill that already ended is 409
/// `drill-finished`. The API's `POST /drills/{id}/cancel` and the dashboard's button call it.
pub(crate) async fn cancel_drill(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<Drill, Problem> {
    operator_only(scope, "cancelling")?;
    let drill = visible(app, scope, id).await?;
    let finished = |d: &Drill| {
        Problem::new(
            StatusCode::CONFLICT,
            "drill-finished",
            "Drill already finished",
            format!(
                "drill `{id}` already ended ({}); its fault is removed",
                d.state.as_str()
            ),
        )
    };
    if drill.state.is_final() {
        return Err(finished(&drill));
    }
    let now = app.clock.now();
    let stored = app
        .store
        .update_drill(decide::cancelled(&drill, "operator", now))
        .await?
        .ok_or_else(|| Problem::not_found("no-such-drill", format!("no drill `{id}`")))?;
    drill::apply_now(&*app.store, &app.faults, now).await;
    app.drills.notify_one();
    if stored.state != DrillState::Cancelled {
        // It ended by itself meanwhile (passed or failed): that verdict stands.
        return Err(finished(&stored));
    }
    metrics::counter!(DRILLS_TOTAL, "scenario" => stored.scenario.as_str(), "result" => "cancelled")
        .increment(1);
    tracing::warn!(drill = %stored.id, "fire drill cancelled by the operator; healed");
    Ok(stored)
}
