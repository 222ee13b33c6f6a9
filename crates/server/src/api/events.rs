//! `GET /api/v1/events` and `GET /api/v1/events/{id}`: the event log with its deliveries and
//! attempts.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use intake_core::delivery::DeliveryState;
use intake_core::{EventId, Timestamp};
use intake_store::EventFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::problem::Problem;
use super::{page_size, query, Scope};
use crate::state::AppState;

/// The event log's routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
}

/// `GET /api/v1/events` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    tenant: Option<String>,
    source: Option<String>,
    state: Option<String>,
    event_type: Option<String>,
    channel: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<Timestamp>, Problem> {
    v.as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .map_err(|e| Problem::bad_request("invalid-parameter", format!("`{name}`: {e}")))
        })
        .transpose()
}

async fn list_events(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
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
    let next = if events.len() == limit {
        events.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "data": events, "next_before": next })))
}

async fn get_event(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let not_found = || Problem::not_found("no-such-event", format!("no event `{id}`"));
    let Ok(event_id) = id.parse::<EventId>() else {
        return Err(not_found());
    };
    let detail = app
        .store
        .get_event(&event_id)
        .await?
        .ok_or_else(not_found)?;
    if !scope.sees(&detail.summary.tenant) {
        return Err(not_found());
    }
    let mut v = serde_json::to_value(&detail).map_err(|e| Problem::internal(e.to_string()))?;
    if let Value::Object(map) = &mut v {
        // The body is returned as text when it is UTF-8 (webhooks are JSON), else as base64.
        match std::str::from_utf8(&detail.body) {
            Ok(text) => map.insert("body".into(), Value::String(text.to_string())),
            Err(_) => map.insert(
                "body_base64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(&detail.body)),
            ),
        };
    }
    Ok(Json(v))
}
