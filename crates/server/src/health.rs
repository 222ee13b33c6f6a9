//! `/healthz` (the process answers) and `/readyz` (the store can commit and every destination
//! has a running dispatcher). `/metrics` is its own door, the `metrics` module.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::problem::Problem;
use crate::state::AppState;

/// The health routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if let Err(e) = app.store.check_writable().await {
        return Problem::unavailable(format!("not ready: {e}")).into_response();
    }
    let stopped: Vec<&str> = app
        .destinations
        .values()
        .filter(|d| !d.running.load(Ordering::Relaxed))
        .map(|d| d.config.id.as_str())
        .collect();
    if !stopped.is_empty() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "workers-stopped",
            "Workers stopped",
            format!("no delivery worker is running for: {}", stopped.join(", ")),
        )
        .into_response();
    }
    Json(json!({ "status": "ready" })).into_response()
}
