//! `/`: the page on-call opens first. Open incidents on top, each linking to its page; then
//! firing alerts; then every tenant × source × channel with its last day drawn against the
//! band the monitor expects, its current rate and a status; the queue of every destination;
//! the canaries of every source.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::Extension;
use intake_core::Timestamp;

use super::alerts::{rows_html, AlertRow};
use super::incidents::{open_lines, IncidentLine};
use super::page::{
    ago, duration, html, render, segment, when, Chrome, PageError, PageResult, Viewer,
};
use super::spark;
use crate::api::alerts::{self as api_alerts, AlertStateView, AlertView};
use crate::api::canaries::{self, CanaryEntry};
use crate::api::flows::{self, ChannelFlow, SourceFlow};
use crate::api::queue::{self, QueueEntry};
use crate::state::AppState;

/// A status: its class (colour and shape) and the word shown with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub class: &'static str,
    pub label: String,
}

impl Status {
    fn new(class: &'static str, label: impl Into<String>) -> Self {
        Status {
            class,
            label: label.into(),
        }
    }
}

/// The status of something the `alerts` concern: the loudest unsilenced firing alert, then a
/// silenced one, then a pending one; with none, `ok` — or `learning` while the monitor has no
/// baseline to judge it by.
pub(crate) fn status(alerts: &[&AlertView], has_baseline: bool) -> Status {
    let firing = |a: &&&AlertView| matches!(a.state, AlertStateView::Firing);
    let loud = alerts
        .iter()
        .filter(firing)
        .filter(|a| a.silenced_by.is_none())
        .min_by_key(|a| a.severity.as_str() != "critical");
    if let Some(a) = loud {
        return match a.severity.as_str() {
            "critical" => Status::new("critical", format!("critical: {}", a.rule)),
            "warning" => Status::new("warning", format!("warning: {}", a.rule)),
            _ => Status::new("info", a.rule.clone()),
        };
    }
    if let Some(a) = alerts.iter().find(firing) {
        return Status::new("silenced", format!("silenced: {}", a.rule));
    }
    if let Some(a) = alerts.first() {
        return Status::new("pending", format!("pending: {}", a.rule));
    }
    if has_baseline {
        Status::new("ok", "ok")
    } else {
        Status::new("learning", "ok, learning")
    }
}

/// The alerts of a flow: its tenant and source, its channel or none, and no destination.
fn flow_alerts<'a>(
    all: &'a [&'a AlertView],
    tenant: &str,
    source: &str,
    channel: &str,
) -> Vec<&'a AlertView> {
    let l = |a: &AlertView, k: &str| a.labels.get(k).cloned().unwrap_or_default();
    all.iter()
        .copied()
        .filter(|a| l(a, "tenant") == tenant && l(a, "source") == source)
        .filter(|a| l(a, "destination").is_empty())
        .filter(|a| {
            let c = l(a, "channel");
            c.is_empty() || c == channel
        })
        .filter(|a| a.rule != "canary_failed")
        .collect()
}

/// One row of the flows table.
pub(crate) struct FlowRow {
    pub tenant: String,
    pub tenant_href: String,
    pub source: String,
    pub kind: String,
    pub channel: String,
    pub spark: String,
    pub last_hour: i64,
    pub last_24h: i64,
    pub expected: String,
    pub status: Status,
    pub last_event: String,
}

fn flow_rows(sources: &[SourceFlow], alerts: &[&AlertView], now: Timestamp) -> Vec<FlowRow> {
    let mut rows = Vec::new();
    for s in sources {
        let base = |channel: &str, c: Option<&ChannelFlow>| {
            let here = flow_alerts(alerts, &s.tenant, &s.source, channel);
            let has_baseline = c.is_some_and(|c| c.expected_last_hour.is_some());
            let label = format!(
                "{} {} {channel}: events per quarter hour over 24 h",
                s.tenant, s.source
            );
            FlowRow {
                tenant: s.tenant.clone(),
                tenant_href: format!("/tenants/{}", segment(&s.tenant)),
                source: s.source.clone(),
                kind: s.kind.to_string(),
                channel: if channel.is_empty() {
                    "—".into()
                } else {
                    channel.to_string()
                },
                spark: c
                    .map(|c| spark::sparkline(&c.per_quarter, &c.expected_per_quarter, &label))
                    .unwrap_or_else(|| spark::sparkline(&[0; 96], &[], &label)),
                last_hour: c.map_or(0, |c| c.last_hour),
                last_24h: c.map_or(0, |c| c.last_24h),
                expected: c
                    .and_then(|c| c.expected_last_hour)
                    .map(|e| format!("{e:.0}/h"))
                    .unwrap_or_else(|| "no baseline yet".into()),
                status: status(&here, has_baseline),
                last_event: c
                    .and_then(|c| c.last_event_minute)
                    .or(s.last_event_minute)
                    .map(|t| format!("{} ago", ago(now, t)))
                    .unwrap_or_else(|| "none in 24 h".into()),
            }
        };
        if s.channels.is_empty() {
            rows.push(base("", None));
        }
        for c in &s.channels {
            rows.push(base(&c.channel, Some(c)));
        }
    }
    rows
}

/// One destination's queue, over every source routed to it.
pub(crate) struct QueueRow {
    pub destination: String,
    pub pending: u64,
    pub in_flight: u64,
    pub dead: u64,
    pub oldest: String,
    pub status: Status,
}

pub(crate) fn queue_rows(entries: &[QueueEntry], alerts: &[&AlertView]) -> Vec<QueueRow> {
    let mut by_dest: BTreeMap<&str, QueueRow> = BTreeMap::new();
    let mut oldest: BTreeMap<&str, u64> = BTreeMap::new();
    for e in entries {
        let row = by_dest.entry(&e.destination).or_insert_with(|| QueueRow {
            destination: e.destination.clone(),
            pending: 0,
            in_flight: 0,
            dead: 0,
            oldest: String::new(),
            status: Status::new("ok", "ok"),
        });
        row.pending += e.pending;
        row.in_flight += e.in_flight;
        row.dead += e.dead;
        let o = oldest.entry(&e.destination).or_default();
        *o = (*o).max(e.oldest_pending_seconds);
    }
    for (d, row) in by_dest.iter_mut() {
        let here: Vec<&AlertView> = alerts
            .iter()
            .copied()
            .filter(|a| a.labels.get("destination").is_some_and(|x| x == d))
            .collect();
        row.status = status(&here, true);
        row.oldest = match oldest.get(d) {
            Some(s) if row.pending > 0 => duration(*s),
            _ => "—".into(),
        };
    }
    by_dest.into_values().collect()
}

/// One source's canary.
pub(crate) struct CanaryRow {
    pub tenant: String,
    pub source: String,
    pub last_success: String,
    pub total: String,
    pub stages: String,
    pub status: Status,
}

pub(crate) fn canary_rows(entries: &[CanaryEntry]) -> Vec<CanaryRow> {
    entries
        .iter()
        .map(|c| {
            let status = match (&c.failure, c.last_success_at) {
                (Some(f), _) if f.state == "firing" => Status::new(
                    "critical",
                    format!(
                        "failing at {}",
                        f.stage.map(|s| s.as_str()).unwrap_or("sending")
                    ),
                ),
                (Some(_), _) => Status::new("pending", "late"),
                (None, None) => Status::new("learning", "no canary yet"),
                (None, Some(_)) => Status::new("ok", "ok"),
            };
            CanaryRow {
                tenant: c.tenant.clone(),
                source: c.source.clone(),
                last_success: c
                    .last_success_age_seconds
                    .map(|s| format!("{} ago", duration(s)))
                    .unwrap_or_else(|| "never".into()),
                total: c
                    .last_success_latency
                    .as_ref()
                    .map(|l| format!("{:.2} s", l.total))
                    .unwrap_or_else(|| "—".into()),
                stages: c
                    .last_success_latency
                    .as_ref()
                    .map(|l| {
                        format!(
                            "ack {:.2} s · queue {:.2} s · delivery {:.2} s",
                            l.ack, l.queue, l.delivery
                        )
                    })
                    .unwrap_or_default(),
                status,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    live: String,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
struct OverviewLive {
    incidents: Vec<IncidentLine>,
    firing: usize,
    pending: usize,
    alerts_html: String,
    flows: Vec<FlowRow>,
    queues: Vec<QueueRow>,
    canaries: Vec<CanaryRow>,
    as_of: String,
}

/// `GET /`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let live = live(&app, &viewer).await?;
    Ok(render(&OverviewPage {
        chrome: Chrome::new(&viewer, "/", "Overview"),
        live: html(&live)?,
    }))
}

/// `GET /_/overview`: the live part, polled.
pub(crate) async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    Ok(render(&live(&app, &viewer).await?))
}

async fn live(app: &AppState, viewer: &Viewer) -> Result<OverviewLive, PageError> {
    let tenant = viewer.tenant();
    let alerts = api_alerts::read(app, tenant.clone(), 1).await?;
    let flows = flows::read(app, tenant.clone(), None).await?;
    let queue = queue::read(app, tenant.clone(), None).await?;
    let canaries = canaries::read(app, tenant, None).await?;
    let incidents = open_lines(app, viewer).await?;
    let now = alerts.as_of;
    let active: Vec<&AlertView> = alerts.firing.iter().chain(alerts.pending.iter()).collect();
    let mut top: Vec<AlertRow> = alerts.firing.iter().map(|a| AlertRow::of(a, now)).collect();
    top.extend(alerts.pending.iter().map(|a| AlertRow::of(a, now)));
    Ok(OverviewLive {
        incidents,
        firing: alerts.firing.len(),
        pending: alerts.pending.len(),
        alerts_html: rows_html(top)?,
        flows: flow_rows(&flows.data, &active, now),
        queues: queue_rows(&queue.data, &active),
        canaries: canary_rows(&canaries.data),
        as_of: when(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::Severity;

    fn alert(rule: &str, state: AlertStateView, severity: Severity, silenced: bool) -> AlertView {
        AlertView {
            rule: rule.into(),
            labels: BTreeMap::new(),
            state,
            severity,
            active_since: Timestamp(0),
            firing_since: None,
            value: 0.0,
            reason: String::new(),
            links: BTreeMap::new(),
            silenced_by: silenced.then(|| "sil_1".to_string()),
        }
    }

    #[test]
    fn the_loudest_unsilenced_alert_decides_the_status() {
        use AlertStateView::{Firing, Pending};
        let crit = alert("inbound_stopped", Firing, Severity::Critical, false);
        let warn = alert("inbound_drop", Firing, Severity::Warning, false);
        let muted = alert("inbound_stopped", Firing, Severity::Critical, true);
        let pend = alert("inbound_drop", Pending, Severity::Warning, false);
        let cases: Vec<(Vec<&AlertView>, bool, &str, &str)> = vec![
            (
                vec![&warn, &crit],
                true,
                "critical",
                "critical: inbound_stopped",
            ),
            (
                vec![&warn, &muted],
                true,
                "warning",
                "warning: inbound_drop",
            ),
            (
                vec![&muted, &pend],
                true,
                "silenced",
                "silenced: inbound_stopped",
            ),
            (vec![&pend], true, "pending", "pending: inbound_drop"),
            (vec![], true, "ok", "ok"),
            (vec![], false, "learning", "ok, learning"),
        ];
        for (alerts, baseline, class, label) in cases {
            let s = status(&alerts, baseline);
            assert_eq!((s.class, s.label.as_str()), (class, label));
        }
    }
}
