//! `GET /api/v1/alerts`: what the monitor says now and what it said recently.
//!
//! Alerts are read from the store (the alert book the monitor duty keeps there, and the log of
//! transitions), so every node answers the same whichever node evaluates.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use intake_core::config::Severity;
use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, AlertState};
use intake_store::{AlertTransitionRecord, Silence, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{page_size, query, Resource, Scope};
use crate::duties::book;
use crate::duties::notify::decide::{alert_labels, silenced_by};
use crate::duties::notify::{load_state, NOTIFIER_FAILING, WATCHDOG_NOTIFIER};
use crate::state::AppState;

/// The alerts' route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(alerts))
}

/// `GET /api/v1/alerts` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this tenant's alerts (a tenant token: its own; another one is 404).
    tenant: Option<String>,
    /// At most this many `recent` transitions, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Where an alert of the book stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStateView {
    /// The condition holds; waiting for its `for`.
    Pending,
    /// Firing.
    Firing,
    /// The condition stopped holding.
    Resolved,
}

impl From<AlertState> for AlertStateView {
    fn from(s: AlertState) -> Self {
        match s {
            AlertState::Pending => AlertStateView::Pending,
            AlertState::Firing => AlertStateView::Firing,
            AlertState::Resolved => AlertStateView::Resolved,
        }
    }
}

/// An alert that is pending or firing.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// The rule id.
    pub(crate) rule: String,
    /// `tenant`, `source`, `channel`, `destination` (empty: not applicable); `notifier` for
    /// `notifier_failing`.
    pub(crate) labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub(crate) state: AlertStateView,
    /// How loud it is.
    pub(crate) severity: Severity,
    /// Since when the condition holds.
    pub(crate) active_since: Timestamp,
    /// Since when it fires.
    pub(crate) firing_since: Option<Timestamp>,
    /// The number behind it.
    pub(crate) value: f64,
    /// Why, with the numbers.
    pub(crate) reason: String,
    /// Where to look: `events`, a link to the events of its scope.
    pub(crate) links: BTreeMap<String, String>,
    /// The silence muting its notifications, if any: a silenced alert stays visible.
    pub(crate) silenced_by: Option<String>,
}

/// Whether the watchdog heartbeat is wired.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum WatchdogView {
    /// `monitor.watchdog_url` is set: the heartbeat always fires.
    Firing {
        /// How often it is pinged.
        pinged_every_secs: u64,
        /// Whether its pings fail.
        failing: bool,
    },
    /// No `monitor.watchdog_url`.
    Unwired {
        /// What to do about it.
        hint: String,
    },
}

/// What the monitor says now and said recently.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alerts {
    /// When it was read.
    pub(crate) as_of: Timestamp,
    /// Firing alerts (`notifier_failing` ones for the operator token only).
    pub(crate) firing: Vec<AlertView>,
    /// Pending alerts.
    pub(crate) pending: Vec<AlertView>,
    /// Transitions, newest first.
    pub(crate) recent: Vec<AlertTransitionRecord>,
    /// The watchdog heartbeat.
    pub(crate) watchdog: WatchdogView,
}

/// The alert book as stored by the monitor duty; an unreadable one is a 500 saying so.
pub(crate) async fn alert_book(app: &AppState) -> Result<Vec<ActiveAlert>, Problem> {
    book::alert_book(&*app.store).await.map_err(|e| match e {
        StoreError::Corrupt(detail) => Problem::internal(detail),
        other => Problem::from(other),
    })
}

fn alert_view(
    a: &ActiveAlert,
    public_url: Option<&str>,
    silences: &[Silence],
    now: Timestamp,
) -> AlertView {
    let l = &a.key.labels;
    // The labels the alert has (a grouped `inbound_drop` warning names no tenant).
    let query: Vec<String> = [
        ("tenant", &l.tenant),
        ("source", &l.source),
        ("channel", &l.channel),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={v}"))
    .collect();
    let mut events = "/api/v1/events".to_string();
    if !query.is_empty() {
        events.push('?');
        events.push_str(&query.join("&"));
    }
    let base = public_url.unwrap_or("").trim_end_matches('/');
    let labels = [
        ("tenant", &l.tenant),
        ("source", &l.source),
        ("channel", &l.channel),
        ("destination", &l.destination),
    ];
    AlertView {
        rule: a.key.rule.clone(),
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        state: a.state.into(),
        severity: a.severity,
        active_since: a.active_since,
        firing_since: a.firing_since,
        value: a.value,
        reason: a.reason.clone(),
        links: BTreeMap::from([("events".to_string(), format!("{base}{events}"))]),
        silenced_by: silenced_by(&a.key.rule, &alert_labels(a), silences, now)
            .map(|s| s.id.clone()),
    }
}

/// `GET /api/v1/alerts`.
#[utoipa::path(
    get,
    path = "/alerts",
    operation_id = "get_alerts",
    tag = "alerts",
    summary = "Alerts",
    description = "The alert book (firing and pending, read from the store: every node answers \
        the same), the recent transitions and the watchdog. A tenant token sees its own \
        tenant's alerts only.",
    params(AlertQuery),
    responses(
        (status = 200, description = "The alerts.", body = Alerts),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn alerts(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<Alerts>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = page_size(q.limit)?;
    Ok(Json(read(&app, tenant, limit).await?))
}

/// The alerts of `tenant` (every tenant's, and `notifier_failing`, when `None`) with at most
/// `limit` recent transitions, as the API answers them.
pub(crate) async fn read(
    app: &AppState,
    tenant: Option<String>,
    limit: usize,
) -> Result<Alerts, Problem> {
    let book = alert_book(app).await?;
    let now = app.clock.now();
    let silences = app.store.list_silences(now).await?;
    let public_url = app.config.server.public_url.as_deref();
    let visible = |a: &&ActiveAlert| tenant.as_ref().is_none_or(|t| *t == a.key.labels.tenant);
    let in_state = |state: AlertState| {
        book.iter()
            .filter(visible)
            .filter(|a| a.state == state)
            .map(|a| alert_view(a, public_url, &silences, now))
            .collect::<Vec<_>>()
    };
    let mut firing = in_state(AlertState::Firing);
    let pending = in_state(AlertState::Pending);
    // `notifier_failing` concerns the operator's notifiers: operator tokens see it.
    let notify = load_state(&*app.store).await?;
    if tenant.is_none() {
        for (id, a) in &notify.notifier_alerts {
            let labels = BTreeMap::from([("notifier".to_string(), id.clone())]);
            let silenced = silenced_by(NOTIFIER_FAILING, &labels, &silences, now);
            firing.push(AlertView {
                rule: NOTIFIER_FAILING.to_string(),
                silenced_by: silenced.map(|s| s.id.clone()),
                labels,
                state: AlertStateView::Firing,
                severity: a.severity,
                active_since: a.since,
                firing_since: Some(a.since),
                value: a.value,
                reason: a.reason.clone(),
                links: BTreeMap::new(),
            });
        }
    }
    let watchdog = match &app.config.monitor.watchdog_url {
        Some(_) => WatchdogView::Firing {
            pinged_every_secs: app.config.monitor.watchdog_every().as_secs(),
            failing: notify.notifier_alerts.contains_key(WATCHDOG_NOTIFIER),
        },
        None => WatchdogView::Unwired {
            hint: "set monitor.watchdog_url to a dead-man's switch (see docs/alerting.md)".into(),
        },
    };
    let recent = app.store.list_alert_transitions(tenant, limit).await?;
    Ok(Alerts {
        as_of: app.clock.now(),
        firing,
        pending,
        recent,
        watchdog,
    })
}
