//! `GET /api/v1/rules`: every built-in rule, whether it is evaluated, its defaults and the
//! `[[rules]]` overrides in force (a tenant token sees the rule-wide ones and its own).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use intake_core::config::{Severity, RULE_IDS};
use intake_monitor::RuleBook;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{Problem, Unauthorized, Unavailable};
use super::{Resource, Scope};
use crate::state::AppState;

/// The rules' route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(rules))
}

/// One built-in rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    /// The rule id.
    #[schema(value_type = String)]
    rule: &'static str,
    /// Whether the monitor evaluates it today (false for rules of features not landed yet).
    evaluated: bool,
    /// Its severity unless overridden.
    default_severity: Severity,
    /// The rule's parameters (durations in seconds); `null` for the rules whose feature has
    /// not landed (`evaluated: false`).
    #[schema(value_type = Option<Object>)]
    defaults: Value,
    /// The configuration's `[[rules]]` for it (a tenant token sees the global ones and its own).
    #[schema(value_type = Vec<Object>)]
    overrides: Vec<Value>,
}

/// Every built-in rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rules {
    /// The rules.
    data: Vec<RuleView>,
}

/// Rules evaluated today; the others are wired by their own features. `source_gap` is
/// evaluated while reconciliation is enabled (`reconcile.enabled`).
const EVALUATED: [&str; 15] = [
    "canary_failed",
    "drill_failed",
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
    "source_gap",
    "completion_stalled",
    "completion_errors",
];

/// `GET /api/v1/rules`.
#[utoipa::path(
    get,
    path = "/rules",
    operation_id = "list_rules",
    tag = "rules",
    summary = "Rules",
    description = "Every built-in rule: whether it is evaluated, its default severity and \
        parameters, and the `[[rules]]` overrides in force.",
    responses(
        (status = 200, description = "The rules.", body = Rules),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn rules(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Rules>, Problem> {
    let defaults: BTreeMap<&str, Value> = RuleBook::defaults().into_iter().collect();
    let data: Vec<RuleView> = RULE_IDS
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
            RuleView {
                rule: id,
                evaluated: EVALUATED.contains(id)
                    && (*id != "source_gap" || app.config.reconcile.enabled),
                default_severity: default_severity(id),
                defaults: defaults.get(id).cloned().unwrap_or(Value::Null),
                overrides,
            }
        })
        .collect();
    Ok(Json(Rules { data }))
}

/// The contract's default severities: the catastrophic rules page, the statistical inform.
fn default_severity(rule: &str) -> Severity {
    match rule {
        "inbound_stopped" | "queue_stalled" | "canary_failed" | "source_gap" | "dead_letters"
        | "notifier_failing" | "drill_failed" | "completion_stalled" => Severity::Critical,
        _ => Severity::Warning,
    }
}
