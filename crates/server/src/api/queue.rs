//! `GET /api/v1/queue`: what is waiting to go out, per tenant, source and destination.
//!
//! Every configured (source, destination) pair has an entry, idle ones included: an empty
//! queue is a zero, never a missing row.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use intake_core::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{query, Resource, Scope, ScopeQuery};
use crate::state::AppState;

/// The queue's route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(queue))
}

/// One (tenant, source, destination) queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct QueueEntry {
    /// The tenant.
    pub(crate) tenant: String,
    /// The source.
    pub(crate) source: String,
    /// The destination.
    pub(crate) destination: String,
    /// Deliveries not yet final: pending, retrying or in flight.
    pub(crate) pending: u64,
    /// Of those, in flight now.
    pub(crate) in_flight: u64,
    /// Dead deliveries.
    pub(crate) dead: u64,
    /// When the oldest non-final delivery was created.
    pub(crate) oldest_pending_at: Option<Timestamp>,
    /// Its age in seconds (0 when nothing is pending).
    pub(crate) oldest_pending_seconds: u64,
}

/// What is waiting to go out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queue {
    /// When the queue was counted (a count of millions takes seconds, and callers meanwhile
    /// share the last one).
    pub(crate) as_of: Timestamp,
    /// One entry per (tenant, source, destination), configured idle pairs included.
    pub(crate) data: Vec<QueueEntry>,
}

/// `GET /api/v1/queue`.
#[utoipa::path(
    get,
    path = "/queue",
    operation_id = "get_queue",
    tag = "queue",
    summary = "Outbound queue",
    description = "What is waiting to go out, per (tenant, source, destination); an idle \
        configured pair is listed with zeros.",
    params(ScopeQuery),
    responses(
        (status = 200, description = "The queue.", body = Queue),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn queue(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Queue>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    Ok(Json(read(&app, tenant, q.source).await?))
}

/// The queue of every configured (source, destination) pair (of `tenant` and `source` when
/// given), as the API answers it.
pub(crate) async fn read(
    app: &AppState,
    tenant: Option<String>,
    source: Option<String>,
) -> Result<Queue, Problem> {
    let now = app.clock.now();
    let mut entries: BTreeMap<(String, String, String), QueueEntry> = BTreeMap::new();
    // Every configured pair, idle ones included.
    for s in &app.config.sources {
        for d in &s.destinations {
            entries.insert(
                (s.tenant.clone(), s.id.clone(), d.clone()),
                QueueEntry {
                    tenant: s.tenant.clone(),
                    source: s.id.clone(),
                    destination: d.clone(),
                    pending: 0,
                    in_flight: 0,
                    dead: 0,
                    oldest_pending_at: None,
                    oldest_pending_seconds: 0,
                },
            );
        }
    }
    let reading = app.queue.read().await?;
    for st in &reading.stats {
        let e = entries
            .entry((st.tenant.clone(), st.source.clone(), st.destination.clone()))
            .or_insert_with(|| QueueEntry {
                tenant: st.tenant.clone(),
                source: st.source.clone(),
                destination: st.destination.clone(),
                pending: 0,
                in_flight: 0,
                dead: 0,
                oldest_pending_at: None,
                oldest_pending_seconds: 0,
            });
        e.pending = st.pending;
        e.in_flight = st.in_flight;
        e.dead = st.dead;
        e.oldest_pending_at = st.oldest_pending_at;
        e.oldest_pending_seconds = st.oldest_pending_at.map_or(0, |t| now.since(t).as_secs());
    }
    let data: Vec<QueueEntry> = entries
        .into_values()
        .filter(|e| tenant.as_ref().is_none_or(|t| *t == e.tenant))
        .filter(|e| source.as_ref().is_none_or(|s| *s == e.source))
        .collect();
    Ok(Queue {
        as_of: reading.taken_at,
        data,
    })
}
