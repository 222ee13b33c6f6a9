//! `GET /api/v1/alerts`: what the monitor says now and what it said recently.
//!
//! Alerts are read from the store (the alert book the monitor duty keeps there, and the log of
//! transitions), so every node answers the same whichever node evaluates.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, AlertState};
use intake_store::{Silence, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::problem::Problem;
use super::{page_size, query, Scope};
use crate::duties::book;
use crate::duties::notify::decide::{alert_labels, silenced_by};
use crate::duties::notify::{load_state, NOTIFIER_FAILING, WATCHDOG_NOTIFIER};
use crate::state::AppState;

/// The alerts' route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/alerts", get(alerts))
}

/// `GET /api/v1/alerts` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    tenant: Option<String>,
    limit: Option<usize>,
}

/// The alert book as stored by the monitor duty; an unreadable one is a 500 saying so.
pub(crate) async fn alert_book(app: &AppState) -> Result<Vec<ActiveAlert>, Problem> {
    book::alert_book(&*app.store).await.map_err(|e| match e {
        StoreError::Corrupt(detail) => Problem::internal(detail),
        other => Problem::from(other),
    })
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

async fn alerts(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = page_size(q.limit)?;
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
    let notify = load_state(&*app.store).await?;
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
