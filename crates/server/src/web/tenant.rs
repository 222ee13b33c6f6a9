//! `/tenants/{id}`: one tenant — its flows drawn large against the baseline band (uPlot), its
//! queue, its deliveries by outcome over the last day, and its recent events, searchable by
//! id, type, state and origin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use intake_core::delivery::DeliveryState;
use intake_core::event::Origin;
use intake_core::Timestamp;
use intake_store::{CounterQuery, EventFilter, EventSummary, Resolution};
use serde::Deserialize;
use serde_json::json;

use super::alerts::{rows_html, AlertRow};
use super::page::{
    ago, duration, html, options, query, render, segment, when, Chrome, Opt, PageError, PageResult,
    Viewer,
};
use crate::api::alerts as api_alerts;
use crate::api::flows::{self, Flows};
use crate::api::problem::Problem;
use crate::api::queue;
use crate::state::AppState;

/// How many events a search shows.
const EVENTS: usize = 50;

/// The event search.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct EventSearch {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    source: String,
}

/// One channel's chart: the data uPlot draws (`app.js`).
pub(crate) struct Chart {
    pub title: String,
    pub data: String,
    pub summary: String,
}

pub(crate) struct QueueLine {
    pub source: String,
    pub destination: String,
    pub pending: u64,
    pub in_flight: u64,
    pub dead: u64,
    pub oldest: String,
}

pub(crate) struct OutcomeLine {
    pub destination: String,
    pub created: i64,
    pub delivered: i64,
    pub failed: i64,
    pub dead: i64,
}

pub(crate) struct EventLine {
    pub id: String,
    pub href: String,
    pub received: String,
    pub source: String,
    pub event_type: String,
    pub channel: String,
    pub origin: String,
    pub states: String,
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    chrome: Chrome,
    tenant: String,
    name: String,
    live: String,
    search: EventSearch,
    state_opts: Vec<Opt>,
    origin_opts: Vec<Opt>,
    source_opts: Vec<Opt>,
    events: Vec<EventLine>,
    search_error: Option<String>,
}

#[derive(Template)]
#[template(path = "tenant_live.html")]
struct TenantLive {
    refresh: String,
    alerts: usize,
    alerts_html: String,
    charts: Vec<Chart>,
    queue: Vec<QueueLine>,
    outcomes: Vec<OutcomeLine>,
    as_of: String,
}

/// The tenant `id` if the viewer sees it (404 otherwise, as the API answers).
fn visible(app: &AppState, viewer: &Viewer, id: &str) -> Result<String, PageError> {
    let not_found = || {
        Problem::not_found(
            "no-such-tenant",
            format!("no tenant `{id}` is visible to this session"),
        )
    };
    viewer.scope.tenant_filter(Some(id.to_string()))?;
    app.config
        .tenants
        .iter()
        .find(|t| t.id == id)
        .map(|t| t.name.clone().unwrap_or_else(|| t.id.clone()))
        .ok_or_else(|| not_found().into())
}

/// `GET /tenants/{id}`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    q: Result<Query<EventSearch>, QueryRejection>,
) -> PageResult {
    let name = visible(&app, &viewer, &id)?;
    let search = query(q)?;
    // An id goes straight to its event (the event page checks it is visible).
    let wanted = search.id.trim();
    if !wanted.is_empty() {
        return Ok(Redirect::to(&format!("/events/{}", segment(wanted))).into_response());
    }
    let live = live(&app, &id).await?;
    let (events, search_error) = match events(&app, &id, &search).await {
        Ok(events) => (events, None),
        Err(PageError(p)) if p.status == 400 => (Vec::new(), Some(p.detail)),
        Err(e) => return Err(e),
    };
    let now = app.clock.now();
    Ok(render(&TenantPage {
        chrome: Chrome::new(&viewer, &format!("/tenants/{id}"), format!("Tenant {name}")),
        state_opts: options(
            ["pending", "in_flight", "retrying", "delivered", "dead"].map(String::from),
            &search.state,
        ),
        origin_opts: options(
            ["webhook", "backfill", "replay", "canary"].map(String::from),
            &search.origin,
        ),
        source_opts: options(
            app.config
                .sources
                .iter()
                .filter(|s| s.tenant == id)
                .map(|s| s.id.clone()),
            &search.source,
        ),
        events: events.iter().map(|e| event_line(e, now)).collect(),
        tenant: id,
        name,
        live: html(&live)?,
        search,
        search_error,
    }))
}

/// `GET /_/tenants/{id}`: the live part, polled.
pub(crate) async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    visible(&app, &viewer, &id)?;
    Ok(render(&live(&app, &id).await?))
}

async fn live(app: &AppState, tenant: &str) -> Result<TenantLive, PageError> {
    let alerts = api_alerts::read(app, Some(tenant.to_string()), 1).await?;
    let now = alerts.as_of;
    let mut rows: Vec<AlertRow> = alerts.firing.iter().map(|a| AlertRow::of(a, now)).collect();
    rows.extend(alerts.pending.iter().map(|a| AlertRow::of(a, now)));
    let flows = flows::read(app, Some(tenant.to_string()), None).await?;
    let queue = queue::read(app, Some(tenant.to_string()), None).await?;
    Ok(TenantLive {
        refresh: format!("/_/tenants/{}", segment(tenant)),
        alerts: rows.len(),
        alerts_html: rows_html(rows)?,
        charts: charts(&flows),
        queue: queue
            .data
            .iter()
            .map(|e| QueueLine {
                source: e.source.clone(),
                destination: e.destination.clone(),
                pending: e.pending,
                in_flight: e.in_flight,
                dead: e.dead,
                oldest: if e.pending > 0 {
                    duration(e.oldest_pending_seconds)
                } else {
                    "—".into()
                },
            })
            .collect(),
        outcomes: outcomes(app, tenant, now).await?,
        as_of: when(now),
    })
}

/// One chart per channel: a day of quarter hours, with the expected band.
fn charts(flows: &Flows) -> Vec<Chart> {
    let from = flows.quarters_from.as_millis() / 1000;
    let mut out = Vec::new();
    for s in &flows.data {
        for c in &s.channels {
            let x: Vec<i64> = (0..c.per_quarter.len() as i64)
                .map(|i| from + i * 900)
                .collect();
            let pick = |f: fn(&crate::api::flows::ExpectedQuarter) -> f64| -> Vec<Option<f64>> {
                (0..c.per_quarter.len())
                    .map(|i| {
                        c.expected_per_quarter
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|e| f(&e))
                    })
                    .collect()
            };
            let data = json!({
                "x": x,
                "count": c.per_quarter,
                "expected": pick(|e| e.expected),
                "low": pick(|e| e.low),
                "high": pick(|e| e.high),
            });
            out.push(Chart {
                title: format!("{} · {}", s.source, c.channel),
                data: data.to_string(),
                summary: format!(
                    "{} in the last hour (expected {}), {} in 24 h",
                    c.last_hour,
                    c.expected_last_hour
                        .map(|e| format!("{e:.0}"))
                        .unwrap_or_else(|| "— no baseline yet".into()),
                    c.last_24h
                ),
            });
        }
    }
    out
}

/// Deliveries by outcome over the last 24 hours, per destination, from the counters the
/// delivery path writes in its own transactions.
async fn outcomes(
    app: &AppState,
    tenant: &str,
    now: Timestamp,
) -> Result<Vec<OutcomeLine>, PageError> {
    const METRICS: [&str; 4] = [
        "deliveries.created",
        "deliveries.delivered",
        "deliveries.failed",
        "deliveries.dead",
    ];
    let rows = app
        .store
        .read_counters(CounterQuery {
            from: Resolution::Minute
                .bucket(now)
                .minus(Duration::from_secs(24 * 3600 - 60)),
            to: now.plus(Duration::from_secs(60)),
            resolution: Resolution::Minute,
            metrics: METRICS.iter().map(|m| m.to_string()).collect(),
            tenant: Some(tenant.to_string()),
            source: None,
        })
        .await?;
    let mut by: BTreeMap<String, OutcomeLine> = BTreeMap::new();
    for r in rows {
        let line = by
            .entry(r.destination.clone())
            .or_insert_with(|| OutcomeLine {
                destination: r.destination.clone(),
                created: 0,
                delivered: 0,
                failed: 0,
                dead: 0,
            });
        match r.metric.as_str() {
            "deliveries.created" => line.created += r.count,
            "deliveries.delivered" => line.delivered += r.count,
            "deliveries.failed" => line.failed += r.count,
            "deliveries.dead" => line.dead += r.count,
            _ => {}
        }
    }
    Ok(by
        .into_values()
        .filter(|l| !l.destination.is_empty())
        .collect())
}

/// The tenant's recent events matching the search.
async fn events(
    app: &AppState,
    tenant: &str,
    s: &EventSearch,
) -> Result<Vec<EventSummary>, PageError> {
    let bad = |what: &str, v: &str, allowed: &str| {
        PageError(Problem::bad_request(
            "invalid-parameter",
            format!("{what} `{v}` is not one of {allowed}"),
        ))
    };
    let state = match s.state.trim() {
        "" => None,
        v => Some(
            DeliveryState::parse(v)
                .ok_or_else(|| bad("state", v, "pending, in_flight, delivered, retrying, dead"))?,
        ),
    };
    let origin = match s.origin.trim() {
        "" => None,
        v => Some(
            Origin::parse(v)
                .ok_or_else(|| bad("origin", v, "webhook, backfill, canary, replay"))?,
        ),
    };
    let nonempty = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    Ok(app
        .store
        .list_events(EventFilter {
            tenant: Some(tenant.to_string()),
            source: nonempty(&s.source),
            state,
            event_type: nonempty(&s.event_type),
            origin,
            limit: EVENTS,
            ..EventFilter::default()
        })
        .await?)
}

fn event_line(e: &EventSummary, now: Timestamp) -> EventLine {
    let id = e.id.to_string();
    EventLine {
        href: format!("/events/{}", segment(&id)),
        id,
        received: format!("{} ago", ago(now, e.received_at)),
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        channel: e.channel.clone(),
        origin: e.origin.as_str().to_string(),
        states: e
            .deliveries
            .iter()
            .map(|d| format!("{} {}", d.destination, d.state.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
