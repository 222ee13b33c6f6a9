//! `GET /api/v1/alerts` and `GET /api/v1/rules`: what the monitor says now, what it said
//! recently, and by which rules.
//!
//! Alerts are read from the store (the alert book the monitor duty keeps there, and the log of
//! transitions), so every node answers the same whichever node evaluates.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use intake_core::config::{Severity, RULE_IDS};
use intake_monitor::{ActiveAlert, AlertState, RuleBook};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::Scope;
use crate::monitoring::ALERTS_STATE;
use crate::problem::Problem;
use crate::runtime::AppState;

/// Rules evaluated by the monitor today; the others are wired by their own features.
const EVALUATED: [&str; 8] = [
    "inbound_stopped",
    "inbound_drop",
    "rejections_spike",
    "queue_stalled",
    "queue_backlog",
    "processing_drop",
    "delivery_errors",
    "dead_letters",
];

/// `GET /api/v1/alerts` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    tenant: Option<String>,
    limit: Option<usize>,
}

/// The alert book as stored by the monitor duty (empty before its first evaluation).
pub(crate) async fn alert_book(app: &AppState) -> Result<Vec<ActiveAlert>, Problem> {
    match app.store.get_state(ALERTS_STATE).await? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| Problem::internal(format!("the stored alert book is unreadable: {e}"))),
    }
}

fn alert_json(a: &ActiveAlert, public_url: Option<&str>) -> Value {
    let l = &a.key.labels;
    let mut events = format!("/api/v1/events?tenant={}&source={}", l.tenant, l.source);
    if !l.channel.is_empty() {
        events.push_str(&format!("&channel={}", l.channel));
    }
    let base = public_url.unwrap_or("").trim_end_matches('/');
    json!({
        "rule": a.key.rule,
        "labels": {
            "tenant": l.tenant, "source": l.source, "channel": l.channel,
            "destination": l.destination,
        },
        "state": a.state,
        "severity": a.severity,
        "active_since": a.active_since,
        "firing_since": a.firing_since,
        "value": a.value,
        "reason": a.reason,
        "links": { "events": format!("{base}{events}") },
    })
}

pub(crate) async fn alerts(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-parameter", e.body_text()))?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = crate::admin::page_size(q.limit)?;
    let book = alert_book(&app).await?;
    let public_url = app.config.server.public_url.as_deref();
    let visible = |a: &&ActiveAlert| tenant.as_ref().is_none_or(|t| *t == a.key.labels.tenant);
    let firing: Vec<Value> = book
        .iter()
        .filter(visible)
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| alert_json(a, public_url))
        .collect();
    let pending: Vec<Value> = book
        .iter()
        .filter(visible)
        .filter(|a| a.state == AlertState::Pending)
        .map(|a| alert_json(a, public_url))
        .collect();
    let recent = app.store.list_alert_transitions(tenant, limit).await?;
    Ok(Json(json!({
        "as_of": app.clock.now(),
        "firing": firing,
        "pending": pending,
        "recent": recent,
    })))
}

pub(crate) async fn rules(
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
