//! `GET /api/v1/notifiers`: the configured notifiers and their outboxes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::problem::Problem;
use super::Scope;
use crate::duties::notify::{load_state, WATCHDOG_NOTIFIER};
use crate::state::AppState;

/// The notifiers' route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/notifiers", get(notifiers))
}

/// `GET /api/v1/notifiers`: each configured notifier (kind, severities; never its URL or
/// key), its outbox and whether `notifier_failing` fires for it. Operator tokens only.
async fn notifiers(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Value>, Problem> {
    if scope != Scope::Operator {
        return Err(Problem::not_found(
            "no-such-route",
            "notifiers are the operator's; use the operator token",
        ));
    }
    let health = app.store.notifier_health().await?;
    let notify = load_state(&*app.store).await?;
    let data: Vec<Value> = app
        .config
        .notifiers
        .iter()
        .map(|n| {
            let h = health.iter().find(|h| h.notifier == n.id);
            json!({
                "id": n.id,
                "kind": n.kind,
                "severities": n.severities,
                "undelivered": h.map_or(0, |h| h.undelivered),
                "oldest_undelivered": h.and_then(|h| h.oldest_undelivered),
                "failed_attempts": h.map_or(0, |h| h.failed_attempts),
                "last_error": h.and_then(|h| h.last_error.clone()),
                "last_sent_at": h.and_then(|h| h.last_sent_at),
                "failing": notify.notifier_alerts.contains_key(&n.id),
            })
        })
        .collect();
    Ok(Json(json!({
        "data": data,
        "watchdog": {
            "configured": app.config.monitor.watchdog_url.is_some(),
            "failing": notify.notifier_alerts.contains_key(WATCHDOG_NOTIFIER),
        },
    })))
}
