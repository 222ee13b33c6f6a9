//! `GET /api/v1/notifiers`: the configured notifiers and their outboxes.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use intake_core::config::{NotifierKind, Severity};
use intake_core::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{NotFound, Problem, Unauthorized, Unavailable};
use super::{Resource, Scope};
use crate::duties::incidents::contacts;
use crate::duties::notify::{load_state, WATCHDOG_NOTIFIER};
use crate::state::AppState;

/// The notifiers' route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(notifiers))
}

/// One configured notifier and its outbox; never its URL or key.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifierView {
    /// The `[[notifiers]]` id.
    id: String,
    /// Its kind.
    kind: NotifierKind,
    /// The severities it takes (all when empty).
    severities: Vec<Severity>,
    /// Notifications not yet sent.
    undelivered: u64,
    /// When the oldest of them was made.
    oldest_undelivered: Option<Timestamp>,
    /// Failed attempts of the oldest waiting one.
    failed_attempts: u32,
    /// The last error.
    last_error: Option<String>,
    /// When it last sent one.
    last_sent_at: Option<Timestamp>,
    /// Whether `notifier_failing` fires for it.
    failing: bool,
}

/// The watchdog heartbeat's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchdogHealth {
    /// Whether `monitor.watchdog_url` is set.
    configured: bool,
    /// Whether its pings fail.
    failing: bool,
}

/// A tenant's contact as an outbox destination (`contact:<tenant>:<index>`): incident notices
/// go to it like to a notifier.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactHealth {
    /// `contact:<tenant>:<index>`.
    id: String,
    /// The tenant.
    tenant: String,
    /// Who it is: the e-mail address, or the webhook's scheme and host.
    recipient: String,
    /// Notices not yet sent.
    undelivered: u64,
    /// When the oldest of them was made.
    oldest_undelivered: Option<Timestamp>,
    /// Failed attempts of the oldest waiting one.
    failed_attempts: u32,
    /// The last error.
    last_error: Option<String>,
    /// When it last took one.
    last_sent_at: Option<Timestamp>,
    /// Whether `notifier_failing` fires for it.
    failing: bool,
}

/// The configured notifiers, and the tenants' contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notifiers {
    /// The notifiers.
    data: Vec<NotifierView>,
    /// The watchdog.
    watchdog: WatchdogHealth,
    /// Every tenant's contacts, with their outboxes.
    contacts: Vec<ContactHealth>,
}

/// `GET /api/v1/notifiers`: each configured notifier (kind, severities; never its URL or
/// key), its outbox and whether `notifier_failing` fires for it. Operator tokens only.
#[utoipa::path(
    get,
    path = "/notifiers",
    operation_id = "list_notifiers",
    tag = "notifiers",
    summary = "Notifiers",
    description = "Each configured notifier with its outbox, the watchdog, and every tenant's \
        contacts (the destinations of incident notices) with theirs. Operator token only (a \
        tenant token gets 404).",
    responses(
        (status = 200, description = "The notifiers.", body = Notifiers),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn notifiers(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Notifiers>, Problem> {
    if scope != Scope::Operator {
        return Err(Problem::not_found(
            "no-such-route",
            "notifiers are the operator's; use the operator token",
        ));
    }
    let health = app.store.notifier_health().await?;
    let notify = load_state(&*app.store).await?;
    let data = app
        .config
        .notifiers
        .iter()
        .map(|n| {
            let h = health.iter().find(|h| h.notifier == n.id);
            NotifierView {
                id: n.id.clone(),
                kind: n.kind,
                severities: n.severities.clone(),
                undelivered: h.map_or(0, |h| h.undelivered),
                oldest_undelivered: h.and_then(|h| h.oldest_undelivered),
                failed_attempts: h.map_or(0, |h| h.failed_attempts),
                last_error: h.and_then(|h| h.last_error.clone()),
                last_sent_at: h.and_then(|h| h.last_sent_at),
                failing: notify.notifier_alerts.contains_key(&n.id),
            }
        })
        .collect();
    let contacts = app
        .config
        .tenants
        .iter()
        .flat_map(|t| {
            contacts::of_tenant(&app.config, &t.id)
                .into_iter()
                .map(|c| (t.id.clone(), c))
        })
        .map(|(tenant, (id, contact))| {
            let h = health.iter().find(|h| h.notifier == id);
            ContactHealth {
                failing: notify.notifier_alerts.contains_key(&id),
                id,
                tenant,
                recipient: contacts::describe(contact),
                undelivered: h.map_or(0, |h| h.undelivered),
                oldest_undelivered: h.and_then(|h| h.oldest_undelivered),
                failed_attempts: h.map_or(0, |h| h.failed_attempts),
                last_error: h.and_then(|h| h.last_error.clone()),
                last_sent_at: h.and_then(|h| h.last_sent_at),
            }
        })
        .collect();
    Ok(Json(Notifiers {
        data,
        contacts,
        watchdog: WatchdogHealth {
            configured: app.config.monitor.watchdog_url.is_some(),
            failing: notify.notifier_alerts.contains_key(WATCHDOG_NOTIFIER),
        },
    }))
}
