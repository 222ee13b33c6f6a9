//! `kind = "pagerduty"`: PagerDuty Events API v2.
//!
//! Alerts become alert events: `trigger` while any alert of the notice fires (the first one
//! opens an incident, repeats update it), `resolve` when the notice is resolved — both with the
//! same `dedup_key`, derived from the notice's key, so PagerDuty closes the incident it opened.
//! Silences, incidents, the watchdog and drill probes are not things to page for: they go to
//! the Change Events endpoint, where they appear on the service's timeline without paging
//! anyone. A fire drill's alerts are alert events at severity `info`, marked `[DRILL]`.

use intake_core::config::{NotifierConfig, Severity};
use intake_core::SharedClock;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::notice::{AlertStatus, NoticeKind};
use crate::render;
use crate::{http, BuildError, Notice, Notifier, NotifyContext, NotifyError};

/// PagerDuty's Events API.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty limits `dedup_key` to this many characters.
const DEDUP_KEY_MAX: usize = 255;
/// PagerDuty limits `payload.summary` to this many characters.
const SUMMARY_MAX: usize = 1024;

/// Sends alert events (trigger/resolve) and change events to PagerDuty.
pub struct PagerDutyNotifier {
    id: String,
    routing_key: String,
    events_url: reqwest::Url,
    change_url: reqwest::Url,
    http: reqwest::Client,
    clock: SharedClock,
}

impl PagerDutyNotifier {
    /// Builds from `[[notifiers]]` with `routing_key` and, optionally, `url`: the Events API
    /// URL (default `https://events.pagerduty.com/v2/enqueue`) or just its origin. The change
    /// events URL is derived from it (`…/v2/change/enqueue`).
    pub fn new(config: &NotifierConfig, ctx: &NotifyContext) -> Result<Self, BuildError> {
        let routing_key = config
            .routing_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                BuildError::new(
                    &config.id,
                    "`routing_key` is required (the integration key of an Events API v2 integration)",
                )
            })?;
        let raw = config.url.as_deref().unwrap_or(DEFAULT_EVENTS_URL);
        let given = crate::http_url(&config.id, "url", Some(raw))?;
        let origin = given.as_str().trim_end_matches('/');
        let base = origin.strip_suffix("/v2/enqueue").unwrap_or(origin);
        let parse = |path: &str| {
            reqwest::Url::parse(&format!("{base}{path}"))
                .map_err(|e| BuildError::new(&config.id, format!("`url` is not usable ({e})")))
        };
        Ok(PagerDutyNotifier {
            id: config.id.clone(),
            routing_key,
            events_url: parse("/v2/enqueue")?,
            change_url: parse("/v2/change/enqueue")?,
            http: ctx.http.clone(),
            clock: ctx.clock.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for PagerDutyNotifier {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let (url, body) = match notice.kind {
            NoticeKind::Alert(_) => (&self.events_url, alert_event(&self.routing_key, notice)),
            _ => (&self.change_url, change_event(&self.routing_key, notice)),
        };
        http::post_json(&self.http, url, &body, self.clock.now()).await
    }
}

/// The `dedup_key` of a notice: its key when it fits, otherwise `intake:` and the SHA-256 of
/// the key (stable all the same).
pub(crate) fn dedup_key(notice: &Notice) -> String {
    if notice.key.len() <= DEDUP_KEY_MAX {
        notice.key.clone()
    } else {
        format!(
            "intake:{}",
            hex::encode(Sha256::digest(notice.key.as_bytes()))
        )
    }
}

fn severity(s: Severity) -> &'static str {
    // PagerDuty's Events API uses the same words for these three.
    s.as_str()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).collect()
    }
}

fn links(n: &Notice) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(d) = &n.links.dashboard {
        out.push(json!({"href": d, "text": "intake dashboard"}));
    }
    if let Some(e) = &n.links.events {
        out.push(json!({"href": e, "text": "Events API query"}));
    }
    out
}

fn custom_details(n: &Notice) -> Value {
    let mut d = Map::new();
    d.insert("reason".into(), json!(n.reason));
    d.insert("labels".into(), json!(n.labels));
    if let Some(since) = n.since {
        d.insert("since".into(), json!(since));
    }
    if !n.alerts.is_empty() {
        d.insert(
            "alerts".into(),
            Value::Array(
                n.alerts
                    .iter()
                    .map(|a| render::item_line(a, &n.labels, n.at))
                    .map(Value::String)
                    .collect(),
            ),
        );
    }
    if let Some(s) = &n.silence {
        d.insert("silence".into(), json!(s));
    }
    if let Some(i) = &n.incident {
        d.insert("incident".into(), json!(i));
    }
    if let Some(drill) = &n.drill {
        d.insert("drill".into(), json!(drill));
    }
    Value::Object(d)
}

/// `payload.source`: "the unique location of the affected system" — the narrowest of source,
/// tenant, destination the notice names, else intake itself.
fn affected(n: &Notice) -> String {
    for k in ["source", "destination", "tenant"] {
        if let Some(v) = n.labels.get(k) {
            return v.clone();
        }
    }
    "intake".into()
}

/// The Events API v2 body for an alert notice.
pub(crate) fn alert_event(routing_key: &str, n: &Notice) -> Value {
    let action = if n.kind == NoticeKind::Alert(AlertStatus::Resolved) {
        "resolve"
    } else {
        "trigger"
    };
    if action == "resolve" {
        // A resolve needs nothing but the key; PagerDuty ignores a payload on it.
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(n),
        });
    }
    // A drill's alert is a test of the path, not a reason to wake anyone: it is triggered
    // (and resolved) like any alert, at severity `info`, with `[DRILL]` in its summary and
    // `drill` in its details, so that a service whose urgency follows severity (or an event
    // rule on `custom_details.drill`) does not page for it.
    let level = if n.drill.is_some() {
        Severity::Info
    } else {
        n.severity
    };
    let mut payload = json!({
        "summary": truncate(&n.summary, SUMMARY_MAX),
        "severity": severity(level),
        "source": affected(n),
        "timestamp": n.since.unwrap_or(n.at),
        "component": "intake",
        "custom_details": custom_details(n),
    });
    if let Some(rule) = &n.rule {
        payload["class"] = json!(rule);
    }
    if let Some(tenant) = n.labels.get("tenant") {
        payload["group"] = json!(tenant);
    }
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(n),
        "client": "intake",
        "payload": payload,
        "links": links(n),
    });
    if let Some(d) = &n.links.dashboard {
        body["client_url"] = json!(d);
    }
    body
}

/// The Change Events body for a silence, incident or watchdog notice.
pub(crate) fn change_event(routing_key: &str, n: &Notice) -> Value {
    json!({
        "routing_key": routing_key,
        "payload": {
            "summary": truncate(&n.summary, SUMMARY_MAX),
            "timestamp": n.at,
            "source": "intake",
            "custom_details": custom_details(n),
        },
        "links": links(n),
    })
}
