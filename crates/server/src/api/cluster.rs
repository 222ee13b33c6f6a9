//! `GET /api/v1/cluster`: the nodes sharing the store and the singleton duties' leases.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::problem::Problem;
use super::Scope;
use crate::state::AppState;

/// The cluster view's route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/cluster", get(cluster_view))
}

/// `GET /api/v1/cluster`: the nodes sharing the store, their last heartbeats, and who holds
/// each singleton duty. Operator only: it says nothing about any tenant.
async fn cluster_view(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Value>, Problem> {
    if scope != Scope::Operator {
        return Err(Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "operator-only",
            "Forbidden",
            "the cluster view needs the operator token (admin.token)",
        ));
    }
    let view = app.store.cluster().await?;
    let now = app.clock.now();
    let timeout = app.config.cluster.node_timeout.0;
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            let duties: Vec<&str> = view
                .duties
                .iter()
                .filter(|d| d.holder == n.id && d.expires_at > now)
                .map(|d| d.duty.as_str())
                .collect();
            json!({
                "id": n.id,
                "address": n.address,
                "started_at": n.started_at,
                "last_heartbeat": n.last_heartbeat,
                "alive": n.id == app.store.node_id() || n.last_heartbeat.plus(timeout) >= now,
                "this_node": n.id == app.store.node_id(),
                "duties": duties,
            })
        })
        .collect();
    let duties: Vec<Value> = view
        .duties
        .iter()
        .map(|d| {
            json!({
                "duty": d.duty,
                "holder": d.holder,
                "acquired_at": d.acquired_at,
                "expires_at": d.expires_at,
                "expired": d.expires_at <= now,
            })
        })
        .collect();
    Ok(Json(json!({
        "node": app.store.node_id(),
        "nodes": nodes,
        "duties": duties,
    })))
}
