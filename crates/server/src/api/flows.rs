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
use intake_monitor::FlowBand;
use intake_store::{CounterQuery, Resolution};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::{query, Resource, Scope, ScopeQuery};
use crate::duties::book::{self, FlowExpectation};
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

/// The metrics that count a handler's work on receipts: its 2xx (counted only for
/// destinations on receipts, where it means *received*), and its confirmations.
const WORK: [&str; 3] = [
    "deliveries.delivered",
    "deliveries.completed",
    "deliveries.completion_failed",
];

/// What the handlers on receipts did with one source's events in the last hour: measured,
/// not inferred from their 2xx.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct WorkFlow {
    /// Deliveries answered 2xx (received by the handler).
    pub(crate) received: i64,
    /// Confirmed done.
    pub(crate) completed: i64,
    /// Confirmed failed (the handler's business logic failed).
    pub(crate) completion_failed: i64,
}

/// One channel of one source.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub(crate) struct ChannelFlow {
    /// The normalized channel.
    pub(crate) channel: String,
    /// Events received in the last hour.
    pub(crate) last_hour: i64,
    /// Events received in the last 24 hours.
    pub(crate) last_24h: i64,
    /// The start of the last minute that had an event, within the last 24 hours.
    pub(crate) last_event_minute: Option<Timestamp>,
    /// Events per minute over the last 60 minutes, oldest first.
    pub(crate) per_minute: Vec<i64>,
    /// Events per complete quarter hour over the last 24 hours, oldest first (96 values; the
    /// quarter in progress is not among them). The first starts at `quarters_from`.
    pub(crate) per_quarter: Vec<i64>,
    /// What the monitor's baselines expect over the same 60 minutes as `last_hour` (as of
    /// the hour of its last evaluation), and from which baseline (absent while history is too
    /// short for a verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub(crate) expected_last_hour: Option<f64>,
    /// The baseline the monitor compared with (see docs/detectors.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = Option<Object>)]
    pub(crate) baseline: Option<Value>,
    /// What the monitor's baseline expected of each of those quarter hours, with the band
    /// ordinary traffic stays in (the mean ± two standard deviations of its count model):
    /// one entry per quarter of `per_quarter`, `null` where the hour has no baseline yet.
    pub(crate) expected_per_quarter: Vec<Option<ExpectedQuarter>>,
}

/// What the baseline expected of one quarter hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub(crate) struct ExpectedQuarter {
    /// The expected count (a quarter of its hour's baseline).
    pub(crate) expected: f64,
    /// The band's lower edge.
    pub(crate) low: f64,
    /// The band's upper edge.
    pub(crate) high: f64,
}

/// One configured source's inbound flow.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SourceFlow {
    /// The tenant.
    pub(crate) tenant: String,
    /// The source.
    pub(crate) source: String,
    /// The source's kind (`kustomer`, `zendesk`, …).
    #[schema(value_type = String)]
    pub(crate) kind: &'static str,
    /// Events received in the last hour (webhook and backfill).
    pub(crate) last_hour: i64,
    /// Events received in the last 24 hours.
    pub(crate) last_24h: i64,
    /// Requests refused in the last hour (bad signature, unparseable, too large).
    pub(crate) rejected_last_hour: i64,
    /// The start of the last minute that had an event, within the last 24 hours.
    pub(crate) last_event_minute: Option<Timestamp>,
    /// Per normalized channel.
    pub(crate) channels: Vec<ChannelFlow>,
    /// For a source routed to destinations on receipts (`completion = "receipt"`): what their
    /// handlers received and confirmed in the last hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub(crate) work_last_hour: Option<WorkFlow>,
}

/// Every configured source's inbound flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct Flows {
    /// When the counts were read.
    pub(crate) as_of: Timestamp,
    /// The start of the first quarter hour of every `per_quarter`.
    pub(crate) quarters_from: Timestamp,
    /// One entry per configured source, silent ones included.
    pub(crate) data: Vec<SourceFlow>,
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
    Ok(Json(read(&app, tenant, q.source).await?))
}

/// The flows of every configured source (of `tenant` and `source` when given), as the API
/// answers them; the dashboard draws the same values.
pub(crate) async fn read(
    app: &AppState,
    tenant: Option<String>,
    source: Option<String>,
) -> Result<Flows, Problem> {
    let now = app.clock.now();
    let this_minute = Resolution::Minute.bucket(now);
    let window = Window {
        day_ago: this_minute.minus(Duration::from_secs(24 * 3600 - 60)),
        hour_ago: this_minute.minus(Duration::from_secs(59 * 60)),
        quarters_from: quarter_of(now).minus(Duration::from_secs(QUARTERS as u64 * QUARTER_SECS)),
        quarters_to: quarter_of(now),
    };
    let rows = app
        .store
        .read_counters(CounterQuery {
            from: window.quarters_from.min(window.day_ago),
            to: now.plus(Duration::from_secs(60)),
            resolution: Resolution::Minute,
            metrics: INBOUND
                .iter()
                .chain(REJECTED.iter())
                .chain(WORK.iter())
                .map(|m| m.to_string())
                .collect(),
            tenant: tenant.clone(),
            source: source.clone(),
        })
        .await?;
    let mut out = configured(app, tenant.as_deref(), source.as_deref());
    let receipts: Vec<&str> = app
        .config
        .destinations
        .iter()
        .filter(|d| d.uses_receipts())
        .map(|d| d.id.as_str())
        .collect();
    let mut channels = count(&mut out, rows, &window, &receipts);
    // The monitor's expectations as of its last evaluation, when it has made one, over the
    // same 60 minutes as the counts beside them.
    if let Ok(expectations) = book::flow_expectation_docs(&*app.store).await {
        attach_expectations(&mut channels, &expectations, window.hour_ago);
    }
    if let Ok(bands) = book::flow_bands(&*app.store).await {
        attach_bands(&mut channels, &bands, window.quarters_from);
    }
    for ((t, s, _), ch) in channels {
        if let Some(flow) = out.get_mut(&(t, s)) {
            flow.channels.push(ch);
        }
    }
    Ok(Flows {
        as_of: now,
        quarters_from: window.quarters_from,
        data: out.into_values().collect(),
    })
}

/// Quarter hours in a day.
const QUARTERS: usize = 96;
const QUARTER_SECS: u64 = 15 * 60;
const QUARTER_MS: i64 = 15 * 60_000;

/// The start of the quarter hour `t` falls in.
fn quarter_of(t: Timestamp) -> Timestamp {
    Timestamp(t.as_millis().div_euclid(QUARTER_MS) * QUARTER_MS)
}

/// The instants a reading is cut at.
struct Window {
    /// The first minute of the last 24 hours.
    day_ago: Timestamp,
    /// The first minute of the last hour.
    hour_ago: Timestamp,
    /// The first of the 96 complete quarter hours.
    quarters_from: Timestamp,
    /// The quarter in progress (excluded).
    quarters_to: Timestamp,
}

type SourceKey = (String, String);
type ChannelKey = (String, String, String);

/// Every configured source in scope, with zeros: a silent source is listed.
fn configured(
    app: &AppState,
    tenant: Option<&str>,
    source: Option<&str>,
) -> BTreeMap<SourceKey, SourceFlow> {
    app.config
        .sources
        .iter()
        .filter(|s| tenant.is_none_or(|t| t == s.tenant) && source.is_none_or(|id| id == s.id))
        .map(|s| {
            (
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
                    work_last_hour: app
                        .config
                        .destinations
                        .iter()
                        .any(|d| d.uses_receipts() && s.destinations.contains(&d.id))
                        .then(WorkFlow::default),
                },
            )
        })
        .collect()
}

/// Adds the counter rows to the sources' totals and returns the channels they name.
fn count(
    out: &mut BTreeMap<SourceKey, SourceFlow>,
    rows: Vec<intake_store::CounterRow>,
    w: &Window,
    receipts: &[&str],
) -> BTreeMap<ChannelKey, ChannelFlow> {
    let mut channels: BTreeMap<ChannelKey, ChannelFlow> = BTreeMap::new();
    for r in rows {
        let Some(flow) = out.get_mut(&(r.tenant.clone(), r.source.clone())) else {
            // A source no longer configured: its history is not a flow to watch.
            continue;
        };
        if WORK.contains(&r.metric.as_str()) {
            if let Some(work) = flow.work_last_hour.as_mut() {
                if r.at >= w.hour_ago && receipts.contains(&r.destination.as_str()) {
                    match r.metric.as_str() {
                        "deliveries.delivered" => work.received += r.count,
                        "deliveries.completed" => work.completed += r.count,
                        _ => work.completion_failed += r.count,
                    }
                }
            }
            continue;
        }
        if REJECTED.contains(&r.metric.as_str()) {
            if r.at >= w.hour_ago {
                flow.rejected_last_hour += r.count;
            }
            continue;
        }
        let ch = channels
            .entry((r.tenant.clone(), r.source.clone(), r.channel.clone()))
            .or_insert_with(|| ChannelFlow {
                channel: r.channel.clone(),
                per_minute: vec![0; 60],
                per_quarter: vec![0; QUARTERS],
                ..ChannelFlow::default()
            });
        if r.at >= w.quarters_from && r.at < w.quarters_to {
            let idx = ((r.at.as_millis() - w.quarters_from.as_millis()) / QUARTER_MS) as usize;
            if let Some(q) = ch.per_quarter.get_mut(idx) {
                *q += r.count;
            }
        }
        if r.at < w.day_ago {
            continue;
        }
        ch.last_24h += r.count;
        flow.last_24h += r.count;
        if r.at >= w.hour_ago {
            ch.last_hour += r.count;
            flow.last_hour += r.count;
            let idx = ((r.at.as_millis() - w.hour_ago.as_millis()) / 60_000).clamp(0, 59) as usize;
            ch.per_minute[idx] += r.count;
        }
        if r.count > 0 {
            ch.last_event_minute = ch.last_event_minute.max(Some(r.at));
            flow.last_event_minute = flow.last_event_minute.max(Some(r.at));
        }
    }
    channels
}

/// The monitor's last verdicts (`FlowStatus`, whose key is flattened into it).
fn attach_expectations(
    channels: &mut BTreeMap<ChannelKey, ChannelFlow>,
    expectations: &[FlowExpectation],
    hour_ago: Timestamp,
) {
    let end = hour_ago.plus(Duration::from_secs(3600));
    for e in expectations {
        let key = (
            e.key.tenant.clone(),
            e.key.source.clone(),
            e.key.channel.clone(),
        );
        if let Some(ch) = channels.get_mut(&key) {
            ch.expected_last_hour = e.expected_over(end);
            ch.baseline = e
                .baseline
                .and_then(|b| serde_json::to_value(b).ok())
                .filter(|_| ch.expected_last_hour.is_some());
        }
    }
}

/// Each quarter's expectation, from the stored hourly bands: a quarter of its hour's.
fn attach_bands(
    channels: &mut BTreeMap<ChannelKey, ChannelFlow>,
    bands: &[FlowBand],
    quarters_from: Timestamp,
) {
    for b in bands {
        let key = (
            b.key.tenant.clone(),
            b.key.source.clone(),
            b.key.channel.clone(),
        );
        let Some(ch) = channels.get_mut(&key) else {
            continue;
        };
        ch.expected_per_quarter = quarter_expectations(b, quarters_from);
    }
}

/// The expectation of each of the 96 quarters from `from`, from a flow's hourly band. A
/// quarter's count has a quarter of its hour's mean, and the same dispersion.
pub(crate) fn quarter_expectations(b: &FlowBand, from: Timestamp) -> Vec<Option<ExpectedQuarter>> {
    let alpha = b.dispersion.unwrap_or(0.0);
    (0..QUARTERS as i64)
        .map(|i| {
            let at = from.as_millis() + i * QUARTER_MS;
            let hour = at.div_euclid(3_600_000) * 3_600_000;
            b.hours.iter().find(|h| h.at.as_millis() == hour).map(|h| {
                let expected = h.expected / 4.0;
                let (low, high) = intake_monitor::band::band(expected, alpha);
                ExpectedQuarter {
                    expected,
                    low,
                    high,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_monitor::{ExpectedHour, FlowKey};

    #[test]
    fn a_quarter_expects_a_quarter_of_its_hour() {
        let hour = 3_600_000;
        let band = FlowBand {
            key: FlowKey {
                tenant: "t".into(),
                source: "s".into(),
                channel: "email".into(),
            },
            dispersion: Some(0.0),
            hours: vec![ExpectedHour {
                at: Timestamp(10 * hour),
                expected: 40.0,
            }],
        };
        // From 09:45: the first quarter is in hour 9 (no baseline), the next four in hour 10.
        let q = quarter_expectations(&band, Timestamp(9 * hour + 45 * 60_000));
        assert_eq!(q.len(), 96);
        assert_eq!(q[0], None);
        for e in &q[1..5] {
            let e = e.expect("hour 10 has a baseline");
            assert_eq!(e.expected, 10.0);
            assert!((e.low - (10.0 - 2.0 * 10f64.sqrt())).abs() < 1e-9);
        }
        assert_eq!(q[5], None);
    }
}
