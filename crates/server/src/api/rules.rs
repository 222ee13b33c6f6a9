//! `GET /api/v1/rules`: every built-in rule, whether it is evaluated, its defaults and the
//! `[[rules]]` overrides in force (a tenant token sees the rule-wide ones and its own).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use intake_core::config::{Severity, RULE_IDS};
use intake_monitor::RuleBook;
use serde_json::{json, Value};

use super::problem::Problem;
use super::Scope;
use crate::state::AppState;

/// The rules' route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/rules", get(rules))
}

/// Rules evaluated today; the others are wired by their own features.
const EVALUATED: [&str; 10] = [
    "notifier_failing",
    "watchdog",
    "inbound_stopped",
    "inbound_drop",
    "rejections_spike",
    "queue_stalled",
    "queue_backlog",
    "processing_drop",
    "delivery_errors",
    "dead_letters",
];

async fn rules(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Value>, Problem> {
    let defaults: BTreeMap<&str, Value> = RuleBook::defaults().into_iter().collect();
    let data: Vec<Value> = RULE_IDS
        .iter()
        .map(|id| {
            let overrides: Vec<Value> = app
                .config
                .rules
                .iter()
                .filter(|o| o.rule == *id)
                .filter(|o| match &scope {
                    Scope::Operator => true,
                    Scope::Tenant(t) => o.tenant.as_ref().is_none_or(|ot| ot == t),
                })
                .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
                .collect();
            json!({
                "rule": id,
                "evaluated": EVALUATED.contains(id),
                "default_severity": default_severity(id),
                "defaults": defaults.get(id).cloned().unwrap_or(Value::Null),
                "overrides": overrides,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// The contract's default severities: the catastrophic rules page, the statistical inform.
fn default_severity(rule: &str) -> Severity {
    match rule {
        "inbound_stopped" | "queue_stalled" | "canary_failed" | "source_gap" | "dead_letters"
        | "notifier_failing" => Severity::Critical,
        _ => Severity::Warning,
    }
}
