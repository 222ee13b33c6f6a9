//! `GET /api/v1/cluster`: the nodes sharing the store and the singleton duties' leases.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use intake_core::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{Forbidden, Problem, Unauthorized, Unavailable};
use super::{Resource, Scope};
use crate::state::AppState;

/// The cluster view's route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(cluster_view))
}

/// A node sharing the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Its id.
    id: String,
    /// Where it listens, for people.
    address: String,
    /// When it started.
    started_at: Timestamp,
    /// Its last heartbeat.
    last_heartbeat: Timestamp,
    /// False once it has sent no heartbeat for `cluster.node_timeout`.
    alive: bool,
    /// Whether it is the node answering.
    this_node: bool,
    /// The unexpired duty leases it holds.
    duties: Vec<String>,
}

/// Who holds a singleton duty.
#[derive(Debug, Serialize, ToSchema)]
pub struct DutyView {
    /// The duty (`lease-reaper`, `monitor`, …).
    duty: String,
    /// The node holding its lease.
    holder: String,
    /// When it took it.
    acquired_at: Timestamp,
    /// When the lease ends unless renewed.
    expires_at: Timestamp,
    /// Whether it has ended.
    expired: bool,
}

/// The nodes sharing the store and the singleton duties' leases.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cluster {
    /// The node answering.
    node: String,
    /// Every node.
    nodes: Vec<NodeView>,
    /// Every duty lease.
    duties: Vec<DutyView>,
}

/// `GET /api/v1/cluster`: the nodes sharing the store, their last heartbeats, and who holds
/// each singleton duty. Operator only: it says nothing about any tenant.
#[utoipa::path(
    get,
    path = "/cluster",
    operation_id = "get_cluster",
    tag = "cluster",
    summary = "Cluster",
    description = "The nodes sharing the store and who holds each singleton duty. Operator \
        token only (a tenant token gets 403).",
    responses(
        (status = 200, description = "The cluster.", body = Cluster),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn cluster_view(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Cluster>, Problem> {
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
    let this = app.store.node_id();
    let nodes = view
        .nodes
        .iter()
        .map(|n| NodeView {
            id: n.id.clone(),
            address: n.address.clone(),
            started_at: n.started_at,
            last_heartbeat: n.last_heartbeat,
            alive: n.id == this || n.last_heartbeat.plus(timeout) >= now,
            this_node: n.id == this,
            duties: view
                .duties
                .iter()
                .filter(|d| d.holder == n.id && d.expires_at > now)
                .map(|d| d.duty.clone())
                .collect(),
        })
        .collect();
    let duties = view
        .duties
        .iter()
        .map(|d| DutyView {
            duty: d.duty.clone(),
            holder: d.holder.clone(),
            acquired_at: d.acquired_at,
            expires_at: d.expires_at,
            expired: d.expires_at <= now,
        })
        .collect();
    Ok(Json(Cluster {
        node: this.to_string(),
        nodes,
        duties,
    }))
}
