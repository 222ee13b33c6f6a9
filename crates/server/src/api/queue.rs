//! `GET /api/v1/queue`: what is waiting to go out, per tenant, source and destination.
//!
//! Every configured (source, destination) pair has an entry, idle ones included: an empty
//! queue is a zero, never a missing row.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use intake_core::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

use super::problem::Problem;
use super::{query, Scope, ScopeQuery};
use crate::state::AppState;

/// The queue's route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/queue", get(queue))
}

/// One (tenant, source, destination) queue.
#[derive(Debug, Clone, Serialize)]
struct QueueEntry {
    tenant: String,
    source: String,
    destination: String,
    pending: u64,
    in_flight: u64,
    dead: u64,
    oldest_pending_at: Option<Timestamp>,
    oldest_pending_seconds: u64,
}

async fn queue(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
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
    for st in app.store.queue_stats().await? {
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
        .filter(|e| q.source.as_ref().is_none_or(|s| *s == e.source))
        .collect();
    Ok(Json(json!({ "as_of": now, "data": data })))
}
