//! `kind = "alertmanager"`: `POST {url}/api/v2/alerts`, so that users who run a Prometheus
//! Alertmanager route, group, inhibit and silence intake's alerts with the rest of theirs.
//!
//! Each alert of a notice becomes one Alertmanager alert (Alertmanager does its own grouping):
//! labels `alertname` (the rule), `severity` and the alert's labels (a fire drill's carry
//! `drill="<id>"`); annotations `summary`,
//! `description` (the reason with numbers), `value` and the links; `startsAt`; `endsAt` — the
//! resolution time once resolved, otherwise a time in the future that keeps the alert active
//! until the next repeat is due (twice the repeat interval, so one lost repeat does not resolve
//! it); `generatorURL` (the dashboard page).

use std::time::Duration;

use intake_core::config::NotifierConfig;
use intake_core::{SharedClock, Timestamp};
use serde_json::{json, Map, Value};

use crate::notice::{AlertItem, NoticeKind};
use crate::render;
use crate::{http, http_url, BuildError, Notice, Notifier, NotifyContext, NotifyError};

/// How long a firing alert stays active in Alertmanager when the notice does not say when it
/// will be repeated.
pub const DEFAULT_FIRING_VALIDITY: Duration = Duration::from_secs(3600);

/// Posts alerts to an Alertmanager.
pub struct AlertmanagerNotifier {
    id: String,
    url: reqwest::Url,
    http: reqwest::Client,
    clock: SharedClock,
}

impl AlertmanagerNotifier {
    /// Builds from `[[notifiers]]` with `url`: the Alertmanager's base URL
    /// (`http://alertmanager:9093`; a URL already ending in `/api/v2/alerts` works too).
    pub fn new(config: &NotifierConfig, ctx: &NotifyContext) -> Result<Self, BuildError> {
        let given = http_url(&config.id, "url", config.url.as_deref())?;
        let trimmed = given.as_str().trim_end_matches('/');
        let base = trimmed.strip_suffix("/api/v2/alerts").unwrap_or(trimmed);
        let url = reqwest::Url::parse(&format!("{base}/api/v2/alerts"))
            .map_err(|e| BuildError::new(&config.id, format!("`url` is not usable ({e})")))?;
        Ok(AlertmanagerNotifier {
            id: config.id.clone(),
            url,
            http: ctx.http.clone(),
            clock: ctx.clock.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for AlertmanagerNotifier {
    fn id(&self) -> &str {
        &self.id
    }

    fn accepts(&self, notice: &Notice) -> bool {
        matches!(notice.kind, NoticeKind::Alert(_) | NoticeKind::Watchdog(_))
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        if !self.accepts(notice) {
            return Ok(());
        }
        http::post_json(&self.http, &self.url, &alerts(notice), self.clock.now()).await
    }
}

/// When a still-firing alert should end in Alertmanager if no repeat refreshes it.
fn firing_until(n: &Notice) -> Timestamp {
    match n.repeat_at {
        Some(next) if next > n.at => next.plus(next.since(n.at)),
        _ => n.at.plus(DEFAULT_FIRING_VALIDITY),
    }
}

/// The `POST /api/v2/alerts` body for a notice.
pub(crate) fn alerts(n: &Notice) -> Value {
    let rule = n.rule.clone().unwrap_or_else(|| "intake".into());
    let resolved = n.is_resolution();
    if let NoticeKind::Watchdog(_) = n.kind {
        let mut labels = Map::new();
        labels.insert("alertname".into(), json!(rule));
        labels.insert("severity".into(), json!(render::severity(n)));
        let mut a = json!({
            "labels": labels,
            "annotations": {"summary": n.summary, "description": n.reason},
            "startsAt": n.at,
            "endsAt": firing_until(n),
        });
        if let Some(d) = &n.links.dashboard {
            a["generatorURL"] = json!(d);
        }
        return json!([a]);
    }
    Value::Array(
        n.alerts
            .iter()
            .map(|item| alert(n, &rule, item, resolved))
            .collect(),
    )
}

fn alert(n: &Notice, rule: &str, item: &AlertItem, resolved: bool) -> Value {
    let mut labels = Map::new();
    for (k, v) in &item.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert("alertname".into(), json!(rule));
    labels.insert("severity".into(), json!(render::severity(n)));

    let mut annotations = Map::new();
    // A drill's alert carries the label `drill="<id>"` (among its labels), so that a route
    // can send drills to a receiver that pages nobody.
    let mark = if n.drill.is_some() { "[DRILL] " } else { "" };
    annotations.insert(
        "summary".into(),
        json!(format!(
            "{mark}{}: {}",
            render::rule_title(rule),
            render::labels_text(&item.labels)
        )),
    );
    annotations.insert("description".into(), json!(item.reason));
    if let Some(v) = item.value {
        annotations.insert("value".into(), json!(render::value(v)));
    }
    if let Some(d) = &item.links.dashboard {
        annotations.insert("dashboard".into(), json!(d));
    }
    if let Some(e) = &item.links.events {
        annotations.insert("events".into(), json!(e));
    }

    let ends_at = match item.resolved_at {
        Some(t) => t,
        // A resolved notice whose member lacks its time ends now.
        None if resolved => n.at,
        None => firing_until(n),
    };
    let mut a = json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": item.started_at,
        "endsAt": ends_at,
    });
    if let Some(d) = &item.links.dashboard {
        a["generatorURL"] = json!(d);
    }
    a
}
