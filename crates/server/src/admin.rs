//! The admin API under `/api/v1`: bearer-token authentication, RFC 7807 errors, and the event
//! log with its deliveries and attempts.
//!
//! Tokens are either the operator's (`admin.token`, sees everything) or a tenant's
//! (`tenants[].api_token`, sees only that tenant). A tenant token asking for another tenant's
//! event gets 404, not 403, so it cannot learn which ids exist.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use intake_core::delivery::DeliveryState;
use intake_core::signature::constant_time_eq;
use intake_core::{EventId, Timestamp};
use intake_store::EventFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::problem::Problem;
use crate::runtime::AppState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The operator: everything.
    Operator,
    /// One tenant: its own data only.
    Tenant(String),
}

impl Scope {
    /// The tenant a listing is restricted to: the token's own for a tenant token (asking for
    /// another is 404), whatever was asked for the operator.
    pub(crate) fn tenant_filter(&self, asked: Option<String>) -> Result<Option<String>, Problem> {
        match (self, asked) {
            (Scope::Tenant(own), Some(asked)) if *own != asked => Err(Problem::not_found(
                "no-such-tenant",
                format!("no tenant `{asked}` is visible to this token"),
            )),
            (Scope::Tenant(own), _) => Ok(Some(own.clone())),
            (Scope::Operator, asked) => Ok(asked),
        }
    }

    fn sees(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
        }
    }
}

pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let api = Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/rejections", get(list_rejections))
        .route("/flows", get(crate::flows::flows))
        .route("/queue", get(crate::flows::queue))
        .route("/alerts", get(crate::alerts::alerts))
        .route("/rules", get(crate::alerts::rules))
        .route(
            "/silences",
            get(crate::silences::list).post(crate::silences::create),
        )
        .route(
            "/silences/{id}",
            axum::routing::delete(crate::silences::expire),
        )
        .route("/notifiers", get(crate::alerts::notifiers))
        .route("/cluster", get(cluster_view))
        .fallback(api_not_found)
        .layer(middleware::from_fn_with_state(state, authenticate));
    Router::new().nest("/api/v1", api)
}

async fn api_not_found(req: Request) -> Problem {
    Problem::not_found(
        "no-such-route",
        format!("no admin API route {} {}", req.method(), req.uri().path()),
    )
}

async fn authenticate(State(app): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = presented else {
        return Problem::unauthorized(
            "missing-token",
            "send `Authorization: Bearer <token>` (admin.token, or a tenant's api_token)",
        )
        .into_response();
    };
    let mut scope = None;
    if let Some(op) = &app.config.admin.token {
        if constant_time_eq(op.as_bytes(), token.as_bytes()) {
            scope = Some(Scope::Operator);
        }
    }
    for t in &app.config.tenants {
        if let Some(tt) = &t.api_token {
            if constant_time_eq(tt.as_bytes(), token.as_bytes()) {
                scope = Some(Scope::Tenant(t.id.clone()));
            }
        }
    }
    match scope {
        Some(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        None => Problem::unauthorized(
            "bad-token",
            "the bearer token is not admin.token nor any tenant's api_token",
        )
        .into_response(),
    }
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

/// The `limit` of a listing: 100 by default, 1 to 1000.
pub(crate) fn page_size(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        _ => Err(Problem::bad_request(
            "invalid-parameter",
            "`limit` must be between 1 and 1000",
        )),
    }
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
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-parameter", e.body_text()))?;
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

/// `GET /api/v1/rejections` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionQuery {
    tenant: Option<String>,
    limit: Option<usize>,
}

/// Requests refused for an unparseable body, newest first, with the reason and the body as
/// received (text when it is UTF-8), so a sender's bad deploy can be diagnosed.
async fn list_rejections(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    query: Result<Query<RejectionQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-parameter", e.body_text()))?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = page_size(q.limit)?;
    let rows = app.store.list_rejections(tenant, limit).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut v = json!({
                "at": r.at, "tenant": r.tenant, "source": r.source,
                "outcome": r.outcome, "reason": r.reason,
            });
            if let (Some(body), Value::Object(map)) = (&r.body, &mut v) {
                map.insert(
                    "body".into(),
                    Value::String(String::from_utf8_lossy(body).into_owned()),
                );
            }
            v
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `GET /api/v1/cluster`: the nodes sharing the store, their last heartbeats, and who holds
/// each singleton duty. Operator only: it says nothing about any tenant.
async fn cluster_view(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Value>, Problem> {
    if scope != Scope::Operator {
        return Err(Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "operator-only",
            "Forbidden",
            "the cluster view needs the operator token (admin.token)",
        ));
    }
    let view = app.store.cluster().await?;
    let now = app.clock.now();
    let timeout = app.config.cluster.node_timeout.0;
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            let duties: Vec<&str> = view
                .duties
                .iter()
                .filter(|d| d.holder == n.id && d.expires_at > now)
                .map(|d| d.duty.as_str())
                .collect();
            json!({
                "id": n.id,
                "address": n.address,
                "started_at": n.started_at,
                "last_heartbeat": n.last_heartbeat,
                "alive": n.id == app.store.node_id() || n.last_heartbeat.plus(timeout) >= now,
                "this_node": n.id == app.store.node_id(),
                "duties": duties,
            })
        })
        .collect();
    let duties: Vec<Value> = view
        .duties
        .iter()
        .map(|d| {
            json!({
                "duty": d.duty,
                "holder": d.holder,
                "acquired_at": d.acquired_at,
                "expires_at": d.expires_at,
                "expired": d.expires_at <= now,
            })
        })
        .collect();
    Ok(Json(json!({
        "node": app.store.node_id(),
        "nodes": nodes,
        "duties": duties,
    })))
}
