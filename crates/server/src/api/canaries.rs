//! `GET /api/v1/canaries`: per source, the canaries intake sends through its own front door —
//! the last one sent and where it stands, the last success and how long each stage took, and
//! the current failure (`canary_failed`) with the stage where the last canary stopped.
//!
//! It only reads: the canary book the canary duty keeps and the alert book the monitor keeps.
//! Every configured source has an entry, even before its first canary.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use intake_core::Timestamp;
use intake_monitor::AlertState;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{query, Resource, Scope, ScopeQuery};
use crate::duties::book as alerts;
use crate::duties::canary::book::{self, CanaryRun, Latency, Stage};
use crate::duties::canary::decide::CANARY_FAILED;
use crate::state::AppState;

/// The canaries' route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(canaries))
}

/// How long each stage of a canary took, in seconds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct StageSeconds {
    /// From the start of the POST to its 200.
    pub(crate) ack: f64,
    /// From acceptance to the first delivery attempt.
    pub(crate) queue: f64,
    /// From the first attempt to the 2xx, retries included.
    pub(crate) delivery: f64,
    /// From the send to the delivery.
    pub(crate) total: f64,
}

impl From<Latency> for StageSeconds {
    fn from(l: Latency) -> Self {
        let s = |ms: u64| ms as f64 / 1000.0;
        StageSeconds {
            ack: s(l.ack_ms),
            queue: s(l.queue_ms),
            delivery: s(l.delivery_ms),
            total: s(l.total_ms),
        }
    }
}

/// A source's current canary failure.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CanaryFailure {
    /// `canary_failed`'s state: `firing`, or `pending` while its `for` runs.
    pub(crate) state: String,
    /// Where the last canary that got an answer stopped.
    pub(crate) stage: Option<Stage>,
    /// Since when no canary has got through (when the alert's condition started).
    pub(crate) since: Timestamp,
    /// The alert's reason, with the numbers and the stage.
    pub(crate) reason: String,
}

/// One source's canaries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CanaryEntry {
    /// The tenant.
    pub(crate) tenant: String,
    /// The source.
    pub(crate) source: String,
    /// How often its canary is sent, in seconds.
    pub(crate) interval_seconds: u64,
    /// How long it may go without a successful canary, in seconds.
    pub(crate) deadline_seconds: u64,
    /// When the last canary was sent.
    pub(crate) last_sent_at: Option<Timestamp>,
    /// When the last successful canary reached the handler.
    pub(crate) last_success_at: Option<Timestamp>,
    /// How long ago that was, in seconds.
    pub(crate) last_success_age_seconds: Option<u64>,
    /// How long each stage of the last successful canary took.
    pub(crate) last_success_latency: Option<StageSeconds>,
    /// The last canary sent, and where it stands.
    pub(crate) last: Option<CanaryRun>,
    /// The current failure (`canary_failed` pending or firing), if any.
    pub(crate) failure: Option<CanaryFailure>,
}

/// The canaries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Canaries {
    /// When they were read.
    pub(crate) as_of: Timestamp,
    /// One entry per configured source.
    pub(crate) data: Vec<CanaryEntry>,
}

/// `GET /api/v1/canaries`.
#[utoipa::path(
    get,
    path = "/canaries",
    operation_id = "list_canaries",
    tag = "canaries",
    summary = "Canaries",
    description = "Per source: the canary interval and deadline, the last canary sent and the \
        stage it stands at, the last success with its stage latencies, and the current \
        `canary_failed` with the stage where the last canary stopped.",
    params(ScopeQuery),
    responses(
        (status = 200, description = "The canaries.", body = Canaries),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn canaries(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Canaries>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    Ok(Json(read(&app, tenant, q.source).await?))
}

/// The canaries of every configured source (of `tenant` and `source` when given), as the API
/// answers them.
pub(crate) async fn read(
    app: &AppState,
    tenant: Option<String>,
    source: Option<String>,
) -> Result<Canaries, Problem> {
    let now = app.clock.now();
    let canaries = book::load(&*app.store).await?;
    let alert_book = alerts::alert_book(&*app.store).await?;
    let data = app
        .config
        .sources
        .iter()
        .filter(|s| tenant.as_ref().is_none_or(|t| *t == s.tenant))
        .filter(|s| source.as_ref().is_none_or(|id| *id == s.id))
        .map(|s| {
            let timing = app.config.canary.timing(&s.id);
            let c = canaries.get(&s.id);
            let last = c.and_then(|c| c.last.clone());
            let stopped = c.and_then(|c| c.stopped_at()).map(|r| r.stage);
            let last_success_at = c.and_then(|c| c.last_success_at);
            let failure = alert_book
                .iter()
                .find(|a| {
                    a.key.rule == CANARY_FAILED
                        && a.key.labels.source == s.id
                        && a.state != AlertState::Resolved
                })
                .map(|a| CanaryFailure {
                    state: a.state.to_string(),
                    stage: stopped,
                    since: a.active_since,
                    reason: a.reason.clone(),
                });
            CanaryEntry {
                tenant: s.tenant.clone(),
                source: s.id.clone(),
                interval_seconds: timing.interval.as_secs(),
                deadline_seconds: timing.deadline.as_secs(),
                last_sent_at: last.as_ref().map(|r| r.sent_at),
                last_success_at,
                last_success_age_seconds: last_success_at.map(|t| now.since(t).as_secs()),
                last_success_latency: c
                    .and_then(|c| c.last_success_latency)
                    .map(StageSeconds::from),
                last,
                failure,
            }
        })
        .collect();
    Ok(Canaries { as_of: now, data })
}
