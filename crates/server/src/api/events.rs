//! `GET /api/v1/events` and `GET /api/v1/events/{id}`: the event log with its deliveries and
//! attempts.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use base64::Engine;
use intake_core::delivery::DeliveryState;
use intake_core::{EventId, Timestamp};
use intake_store::{EventDetail, EventFilter, EventSummary};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{page_size, query, Resource, Scope};
use crate::duties::retention;
use crate::state::AppState;

/// The event log's routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(list_events))
        .route(routes!(get_event))
}

/// `GET /api/v1/events` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this tenant (a tenant token: its own; another one is 404).
    tenant: Option<String>,
    /// Only this source.
    source: Option<String>,
    /// Only events with a delivery in this state.
    #[param(value_type = Option<DeliveryState>)]
    state: Option<String>,
    /// Only this event type, e.g. `kustomer.message.create`.
    event_type: Option<String>,
    /// Only this normalized channel, e.g. `email`.
    channel: Option<String>,
    /// Received at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Received before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// An event id: the page after it (`next_before` of the previous page).
    before: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of the event log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// The events.
    data: Vec<EventSummary>,
    /// The `before` of the next page; `null` on the last one.
    next_before: Option<EventId>,
}

/// One event with its headers, body, deliveries and attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub(crate) detail: EventDetail,
    /// The raw body as text, when it is UTF-8 (webhooks are JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<String>,
    /// The raw body in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base64: Option<String>,
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<Timestamp>, Problem> {
    v.as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .map_err(|e| Problem::bad_request("invalid-parameter", format!("`{name}`: {e}")))
        })
        .transpose()
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "list_events",
    tag = "events",
    summary = "List events",
    description = "Events, newest first, with their deliveries.",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events.", body = EventPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn list_events(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<EventPage>, Problem> {
    let q = query(q)?;
    let state = q
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                Problem::bad_request(
                    "invalid-parameter",
                    format!("`state`: `{s}` is not one of pending, in_flight, delivered, retrying, dead"),
                )
            })
        })
        .transpose()?;
    let before = q
        .before
        .as_deref()
        .map(|s| {
            s.parse::<EventId>()
                .map_err(|e| Problem::bad_request("invalid-parameter", format!("`before`: {e}")))
        })
        .transpose()?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = page_size(q.limit)?;
    let filter = EventFilter {
        tenant,
        source: q.source,
        state,
        event_type: q.event_type,
        channel: q.channel,
        from: time_param("from", &q.from)?,
        to: time_param("to", &q.to)?,
        before,
        limit,
        ..EventFilter::default()
    };
    let events = app.store.list_events(filter).await?;
    let next_before = if events.len() == limit {
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(Json(EventPage {
        data: events,
        next_before,
    }))
}

/// `GET /api/v1/events/{id}`.
#[utoipa::path(
    get,
    path = "/events/{id}",
    operation_id = "get_event",
    tag = "events",
    summary = "Get one event",
    description = "One event with its kept headers, its raw body (`body`, or `body_base64` when \
        it is not UTF-8), its deliveries and every attempt.",
    params(("id" = String, Path, description = "The event id (`evt_…`).")),
    responses(
        (status = 200, description = "The event.", body = EventView),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn get_event(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, Problem> {
    Ok(Json(event_view(&app, &scope, &id).await?))
}

/// Event `id` with its body, deliveries and attempts, if `scope` sees it (404 otherwise, as
/// if it did not exist): what `GET /api/v1/events/{id}` and the dashboard's event page show.
pub(crate) async fn event_view(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<EventView, Problem> {
    let not_found = || Problem::not_found("no-such-event", format!("no event `{id}`"));
    let Ok(event_id) = id.parse::<EventId>() else {
        return Err(not_found());
    };
    let Some(detail) = app.store.get_event(&event_id).await? else {
        // An id from before the retention mark: the event was most likely deleted once its
        // work was done. The store no longer knows whether it existed, or whose it was, so
        // the answer says what retention did rather than claiming this id was among it.
        let mark = retention::mark(&*app.store).await?;
        if retention::expired(&event_id, mark.as_ref()) {
            return Err(Problem::not_found(
                "expired-by-retention",
                format!(
                    "no event `{id}`: its id is from before {}, and storage.retention has removed the events received before then whose deliveries were done",
                    mark.map(|m| m.expired_before).unwrap_or_default()
                ),
            ));
        }
        return Err(not_found());
    };
    if !scope.sees(&detail.summary.tenant) {
        return Err(not_found());
    }
    // The body is returned as text when it is UTF-8 (webhooks are JSON), else as base64.
    let (body, body_base64) = match std::str::from_utf8(&detail.body) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&detail.body)),
        ),
    };
    Ok(EventView {
        detail,
        body,
        body_base64,
    })
}
