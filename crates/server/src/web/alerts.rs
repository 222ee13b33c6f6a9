//! `/alerts`: every firing, pending and recent alert with its reason. This is the page the
//! notifications link to: `LinkBuilder::alert_dashboard` writes
//! `{public_url}/alerts?rule=…&tenant=…&source=…&channel=…&destination=…`, and those
//! parameters filter this page to the alert (or group) the notice was about, firing or since
//! resolved.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Extension;
use intake_core::Timestamp;
use intake_store::AlertTransitionRecord;
use serde::Deserialize;

use super::page::{
    ago, html, labels_text, query, query_string, render, when, Chrome, PageError, PageResult,
    Viewer,
};
use crate::api::alerts::{self as api_alerts, AlertStateView, AlertView, WatchdogView};
use crate::duties::notify::UNSILENCEABLE;
use crate::state::AppState;

/// How many recent transitions the page reads before filtering them.
const RECENT: usize = 500;

/// The labels an alert link filters on (all optional, exact values).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AlertFilter {
    #[serde(default)]
    rule: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    destination: String,
}

impl AlertFilter {
    fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            ("rule", &self.rule),
            ("tenant", &self.tenant),
            ("source", &self.source),
            ("channel", &self.channel),
            ("destination", &self.destination),
        ]
    }

    fn is_empty(&self) -> bool {
        self.pairs().iter().all(|(_, v)| v.is_empty())
    }

    /// Whether an alert with this rule and these labels is one the filter asks for.
    fn matches(&self, rule: &str, label: impl Fn(&str) -> String) -> bool {
        self.pairs().iter().all(|(k, want)| {
            want.is_empty()
                || if *k == "rule" {
                    rule == *want
                } else {
                    label(k) == *want
                }
        })
    }
}

/// An alert as a row of the dashboard.
pub(crate) struct AlertRow {
    /// `critical`, `warning`, `info` or `pending` (the status class).
    pub class: String,
    /// What the badge says: `critical`, `warning`, `pending`, …
    pub badge: String,
    pub rule: String,
    pub scope: String,
    pub reason: String,
    /// `12m` (since it fires, or since its condition holds while pending).
    pub since: String,
    /// The silence muting it, if any.
    pub silenced_by: Option<String>,
    /// This alert alone on the alerts page.
    pub href: String,
    /// A silence form filled in for it (none for the rules that cannot be silenced).
    pub silence_href: Option<String>,
}

impl AlertRow {
    pub(crate) fn of(a: &AlertView, now: Timestamp) -> Self {
        let label = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
        let pending = matches!(a.state, AlertStateView::Pending);
        let pairs = [
            ("rule", a.rule.as_str()),
            ("tenant", &label("tenant")),
            ("source", &label("source")),
            ("channel", &label("channel")),
            ("destination", &label("destination")),
        ]
        .map(|(k, v)| (k, v.to_string()));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let silence_href = (!UNSILENCEABLE.contains(&a.rule.as_str())).then(|| {
            format!(
                "/silences{}",
                query_string(&[
                    ("rule", &a.rule),
                    ("tenant", &label("tenant")),
                    ("source", &label("source")),
                ])
            )
        });
        AlertRow {
            class: if pending {
                "pending".into()
            } else {
                a.severity.as_str().into()
            },
            badge: if pending {
                "pending".into()
            } else {
                a.severity.as_str().into()
            },
            rule: a.rule.clone(),
            scope: labels_text(&a.labels),
            reason: a.reason.clone(),
            since: ago(now, a.firing_since.unwrap_or(a.active_since)),
            silenced_by: a.silenced_by.clone(),
            href: format!("/alerts{}", query_string(&refs)),
            silence_href,
        }
    }
}

/// A recorded transition as a row.
pub(crate) struct TransitionRow {
    pub at: String,
    pub class: String,
    pub state: String,
    pub rule: String,
    pub scope: String,
    pub value: String,
    pub reason: String,
}

impl TransitionRow {
    fn of(t: &AlertTransitionRecord) -> Self {
        let labels: BTreeMap<String, String> = [
            ("tenant", &t.tenant),
            ("source", &t.source),
            ("channel", &t.channel),
            ("destination", &t.destination),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        TransitionRow {
            at: when(t.at),
            class: match t.state.as_str() {
                "firing" => t.severity.clone(),
                "resolved" => "ok".into(),
                _ => "pending".into(),
            },
            state: t.state.clone(),
            rule: t.rule.clone(),
            scope: labels_text(&labels),
            value: format!("{}", (t.value * 100.0).round() / 100.0),
            reason: t.reason.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "alert_rows.html")]
struct AlertRows {
    rows: Vec<AlertRow>,
}

/// Alerts as the bars every page shows them with.
pub(crate) fn rows_html(rows: Vec<AlertRow>) -> Result<String, PageError> {
    html(&AlertRows { rows })
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    live: String,
}

#[derive(Template)]
#[template(path = "alerts_live.html")]
struct AlertsLive {
    refresh: String,
    filter_text: String,
    f_rule: String,
    f_tenant: String,
    f_source: String,
    f_channel: String,
    f_destination: String,
    firing: usize,
    firing_html: String,
    pending: usize,
    pending_html: String,
    recent: Vec<TransitionRow>,
    /// Set when a link names an alert that is no longer active.
    not_active: Option<String>,
    watchdog: Option<String>,
    as_of: String,
}

/// `GET /alerts`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    q: Result<Query<AlertFilter>, QueryRejection>,
) -> PageResult {
    let filter = query(q)?;
    let live = live(&app, &viewer, filter).await?;
    Ok(render(&AlertsPage {
        chrome: Chrome::new(&viewer, "/alerts", "Alerts"),
        live: html(&live)?,
    }))
}

/// `GET /_/alerts`: the live part, polled.
pub(crate) async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    q: Result<Query<AlertFilter>, QueryRejection>,
) -> PageResult {
    let filter = query(q)?;
    Ok(render(&live(&app, &viewer, filter).await?))
}

async fn live(app: &AppState, viewer: &Viewer, f: AlertFilter) -> Result<AlertsLive, PageError> {
    let asked = (!f.tenant.is_empty()).then(|| f.tenant.clone());
    let tenant = viewer.scope.tenant_filter(asked)?;
    let alerts = api_alerts::read(app, tenant, RECENT).await?;
    let now = alerts.as_of;
    let pick = |list: &[AlertView]| -> Vec<AlertRow> {
        list.iter()
            .filter(|a| f.matches(&a.rule, |k| a.labels.get(k).cloned().unwrap_or_default()))
            .map(|a| AlertRow::of(a, now))
            .collect()
    };
    let firing = pick(&alerts.firing);
    let pending = pick(&alerts.pending);
    let recent: Vec<&AlertTransitionRecord> = alerts
        .recent
        .iter()
        .filter(|t| {
            f.matches(&t.rule, |k| match k {
                "tenant" => t.tenant.clone(),
                "source" => t.source.clone(),
                "channel" => t.channel.clone(),
                "destination" => t.destination.clone(),
                _ => String::new(),
            })
        })
        .collect();
    let not_active =
        (!f.is_empty() && firing.is_empty() && pending.is_empty()).then(|| match recent.first() {
            Some(t) => format!(
                "Nothing matching is firing now. The last change was `{}` {} ago ({}): {}",
                t.state,
                ago(now, t.at),
                when(t.at),
                t.reason
            ),
            None => "Nothing matching is firing now, and no recent transition matches.".into(),
        });
    let watchdog = match (&viewer.tenant(), &alerts.watchdog) {
        (Some(_), _) => None,
        (None, WatchdogView::Firing { failing: true, .. }) => {
            Some("The watchdog heartbeat is wired, and its pings are failing.".into())
        }
        (None, WatchdogView::Firing { .. }) => None,
        (None, WatchdogView::Unwired { hint }) => {
            Some(format!("The watchdog is not wired: {hint}."))
        }
    };
    let pairs = f.pairs();
    Ok(AlertsLive {
        refresh: format!("/_/alerts{}", query_string(&pairs)),
        filter_text: pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        f_rule: f.rule.clone(),
        f_tenant: f.tenant.clone(),
        f_source: f.source.clone(),
        f_channel: f.channel.clone(),
        f_destination: f.destination.clone(),
        firing: firing.len(),
        firing_html: rows_html(firing)?,
        pending: pending.len(),
        pending_html: rows_html(pending)?,
        recent: recent
            .into_iter()
            .take(100)
            .map(TransitionRow::of)
            .collect(),
        not_active,
        watchdog,
        as_of: when(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_filters_on_exactly_the_labels_it_names() {
        let f = AlertFilter {
            rule: "queue_stalled".into(),
            tenant: "maelys".into(),
            destination: "handler".into(),
            ..AlertFilter::default()
        };
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            }
        };
        type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
        let cases: [Case; 4] = [
            (
                "queue_stalled",
                &[
                    ("tenant", "maelys"),
                    ("destination", "handler"),
                    ("source", "s"),
                ],
                true,
            ),
            (
                "queue_stalled",
                &[("tenant", "other"), ("destination", "handler")],
                false,
            ),
            (
                "dead_letters",
                &[("tenant", "maelys"), ("destination", "handler")],
                false,
            ),
            ("queue_stalled", &[("tenant", "maelys")], false),
        ];
        for (rule, pairs, want) in cases {
            assert_eq!(f.matches(rule, labels(pairs)), want, "{rule} {pairs:?}");
        }
        assert!(AlertFilter::default().matches("anything", |_| String::new()));
        assert!(AlertFilter::default().is_empty());
        assert!(!f.is_empty());
    }
}
