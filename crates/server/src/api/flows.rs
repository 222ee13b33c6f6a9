//! `GET /api/v1/flows`: what is coming in, per tenant, source and channel.
//!
//! Every configured source has a flow entry from the moment it is configured: a silent source is
//! a zero, never a missing row, so "nothing arrived" is visible rather than implied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use intake_core::Timestamp;
use intake_store::{CounterQuery, Resolution};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{query, Resource, Scope, ScopeQuery};
use crate::duties::book::FLOWS_STATE;
use crate::state::AppState;

/// The flows' route.
pub(crate) fn routes() -> Resource {
    Resource::new().route(routes!(flows))
}

/// The metrics that count inbound events, by origin.
const INBOUND: [&str; 2] = ["events.webhook", "events.backfill"];
/// The metrics that count refused requests.
const REJECTED: [&str; 3] = [
    "requests.rejected_signature",
    "requests.rejected_invalid",
    "requests.too_large",
];

/// One channel of one source.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
struct ChannelFlow {
    /// The normalized channel.
    channel: String,
    /// Events received in the last hour.
    last_hour: i64,
    /// Events received in the last 24 hours.
    last_24h: i64,
    /// The start of the last minute that had an event, within the last 24 hours.
    last_event_minute: Option<Timestamp>,
    /// Events per minute over the last 60 minutes, oldest first.
    per_minute: Vec<i64>,
    /// What the monitor expected over its last evaluated hour, and from which baseline
    /// (absent while history is too short for a verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    expected_last_hour: Option<f64>,
    /// The baseline the monitor compared with (see docs/detectors.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = Option<Object>)]
    baseline: Option<Value>,
}

/// One configured source's inbound flow.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct SourceFlow {
    /// The tenant.
    tenant: String,
    /// The source.
    source: String,
    /// The source's kind (`kustomer`, `zendesk`, …).
    #[schema(value_type = String)]
    kind: &'static str,
    /// Events received in the last hour (webhook and backfill).
    last_hour: i64,
    /// Events received in the last 24 hours.
    last_24h: i64,
    /// Requests refused in the last hour (bad signature, unparseable, too large).
    rejected_last_hour: i64,
    /// The start of the last minute that had an event, within the last 24 hours.
    last_event_minute: Option<Timestamp>,
    /// Per normalized channel.
    channels: Vec<ChannelFlow>,
}

/// Every configured source's inbound flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct Flows {
    /// When the counts were read.
    as_of: Timestamp,
    /// One entry per configured source, silent ones included.
    data: Vec<SourceFlow>,
}

/// `GET /api/v1/flows`.
#[utoipa::path(
    get,
    path = "/flows",
    operation_id = "get_flows",
    tag = "flows",
    summary = "Inbound flows",
    description = "What is coming in: one entry per configured source (a silent source is \
        listed with zeros), per channel, with the last 60 minutes per minute.",
    params(ScopeQuery),
    responses(
        (status = 200, description = "The flows.", body = Flows),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn flows(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Flows>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let now = app.clock.now();
    let this_minute = Resolution::Minute.bucket(now);
    let day_ago = this_minute.minus(Duration::from_secs(24 * 3600 - 60));
    let hour_ago = this_minute.minus(Duration::from_secs(59 * 60));
    let rows = app
        .store
        .read_counters(CounterQuery {
            from: day_ago,
            to: now.plus(Duration::from_secs(60)),
            resolution: Resolution::Minute,
            metrics: INBOUND
                .iter()
                .chain(REJECTED.iter())
                .map(|m| m.to_string())
                .collect(),
            tenant: tenant.clone(),
            source: q.source.clone(),
        })
        .await?;

    let mut out: BTreeMap<(String, String), SourceFlow> = BTreeMap::new();
    for s in &app.config.sources {
        if tenant.as_ref().is_some_and(|t| *t != s.tenant)
            || q.source.as_ref().is_some_and(|id| *id != s.id)
        {
            continue;
        }
        out.insert(
            (s.tenant.clone(), s.id.clone()),
            SourceFlow {
                tenant: s.tenant.clone(),
                source: s.id.clone(),
                kind: s.kind.as_str(),
                last_hour: 0,
                last_24h: 0,
                rejected_last_hour: 0,
                last_event_minute: None,
                channels: Vec::new(),
            },
        );
    }
    let mut channels: BTreeMap<(String, String, String), ChannelFlow> = BTreeMap::new();
    for r in rows {
        let Some(flow) = out.get_mut(&(r.tenant.clone(), r.source.clone())) else {
            // A source no longer configured: its history is not a flow to watch.
            continue;
        };
        if REJECTED.contains(&r.metric.as_str()) {
            if r.at >= hour_ago {
                flow.rejected_last_hour += r.count;
            }
            continue;
        }
        let ch = channels
            .entry((r.tenant.clone(), r.source.clone(), r.channel.clone()))
            .or_insert_with(|| ChannelFlow {
                channel: r.channel.clone(),
                per_minute: vec![0; 60],
                ..ChannelFlow::default()
            });
        ch.last_24h += r.count;
        flow.last_24h += r.count;
        if r.at >= hour_ago {
            ch.last_hour += r.count;
            flow.last_hour += r.count;
            let idx = ((r.at.as_millis() - hour_ago.as_millis()) / 60_000).clamp(0, 59) as usize;
            ch.per_minute[idx] += r.count;
        }
        if r.count > 0 {
            ch.last_event_minute = ch.last_event_minute.max(Some(r.at));
            flow.last_event_minute = flow.last_event_minute.max(Some(r.at));
        }
    }
    // The monitor's expectations at its last evaluation, when it has made one.
    if let Ok(Some(json)) = app.store.get_state(FLOWS_STATE).await {
        if let Ok(Value::Array(statuses)) = serde_json::from_str::<Value>(&json) {
            for st in statuses {
                let k = &st["key"];
                let key = (
                    k["tenant"].as_str().unwrap_or("").to_string(),
                    k["source"].as_str().unwrap_or("").to_string(),
                    k["channel"].as_str().unwrap_or("").to_string(),
                );
                if let Some(ch) = channels.get_mut(&key) {
                    ch.expected_last_hour = st["expected_last_hour"].as_f64();
                    ch.baseline = Some(st["baseline"].clone()).filter(|b| !b.is_null());
                }
            }
        }
    }
    for ((t, s, _), ch) in channels {
        if let Some(flow) = out.get_mut(&(t, s)) {
            flow.channels.push(ch);
        }
    }
    Ok(Json(Flows {
        as_of: now,
        data: out.into_values().collect(),
    }))
}
