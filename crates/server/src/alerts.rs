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
use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, AlertState, RuleBook};
use intake_store::Silence;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::Scope;
use crate::monitoring::ALERTS_STATE;
use crate::notifications::{
    alert_labels, load_state, silenced_by, NOTIFIER_FAILING, WATCHDOG_NOTIFIER,
};
use crate::problem::Problem;
use crate::runtime::AppState;

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

fn alert_json(
    a: &ActiveAlert,
    public_url: Option<&str>,
    silences: &[Silence],
    now: Timestamp,
) -> Value {
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
        "silenced_by": silenced_by(&a.key.rule, &alert_labels(a), silences, now).map(|s| s.id.clone()),
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
    let now = app.clock.now();
    let silences = app.store.list_silences(now).await?;
    let public_url = app.config.server.public_url.as_deref();
    let visible = |a: &&ActiveAlert| tenant.as_ref().is_none_or(|t| *t == a.key.labels.tenant);
    let mut firing: Vec<Value> = book
        .iter()
        .filter(visible)
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| alert_json(a, public_url, &silences, now))
        .collect();
    let pending: Vec<Value> = book
        .iter()
        .filter(visible)
        .filter(|a| a.state == AlertState::Pending)
        .map(|a| alert_json(a, public_url, &silences, now))
        .collect();
    // `notifier_failing` concerns the operator's notifiers: operator tokens see it.
    let notify = load_state(&app).await?;
    if tenant.is_none() {
        for (id, a) in &notify.notifier_alerts {
            let labels = BTreeMap::from([("notifier".to_string(), id.clone())]);
            firing.push(json!({
                "rule": NOTIFIER_FAILING,
                "labels": labels,
                "state": "firing",
                "severity": a.severity,
                "active_since": a.since,
                "firing_since": a.since,
                "value": a.value,
                "reason": a.reason,
                "links": {},
                "silenced_by": silenced_by(NOTIFIER_FAILING, &labels, &silences, now).map(|s| s.id.clone()),
            }));
        }
    }
    let watchdog = match &app.config.monitor.watchdog_url {
        Some(_) => json!({
            "state": "firing",
            "pinged_every_secs": app.config.monitor.watchdog_every().as_secs(),
            "failing": notify.notifier_alerts.contains_key(WATCHDOG_NOTIFIER),
        }),
        None => json!({
            "state": "unwired",
            "hint": "set monitor.watchdog_url to a dead-man's switch (see docs/alerting.md)",
        }),
    };
    let recent = app.store.list_alert_transitions(tenant, limit).await?;
    Ok(Json(json!({
        "as_of": app.clock.now(),
        "firing": firing,
        "pending": pending,
        "recent": recent,
        "watchdog": watchdog,
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

/// `GET /api/v1/notifiers`: each configured notifier (kind, severities; never its URL or
/// key), its outbox and whether `notifier_failing` fires for it. Operator tokens only.
pub(crate) async fn notifiers(
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
    let notify = load_state(&app).await?;
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

/// The contract's default severities: the catastrophic rules page, the statistical inform.
fn default_severity(rule: &str) -> Severity {
    match rule {
        "inbound_stopped" | "queue_stalled" | "canary_failed" | "source_gap" | "dead_letters"
        | "notifier_failing" => Severity::Critical,
        _ => Severity::Warning,
    }
}
