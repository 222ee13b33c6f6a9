//! What one notification says: [`Notice`], and the builders that make one for an alert (or a
//! group of alerts), a silence, the watchdog heartbeat or an incident, with links built from
//! `server.public_url`.
//!
//! A notice is plain data (serde, no IO) so that the lead's durable outbox can store it as JSON
//! and hand the same value to every notifier, now or after a restart.
//!
//! The words a notice is written with (rule titles, status words, labels in reading order) are
//! in `words`, which the renderers share; this module imports no renderer.

pub(crate) mod words;

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::config::Severity;
use intake_core::incident::{IncidentSeverity, IncidentState};
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

/// Labels of an alert: `tenant`, `source`, `channel`, `destination`, … (never `rule` or
/// `severity`, which are fields of their own). Sorted, so that keys built from them are stable.
pub type Labels = BTreeMap<String, String>;

/// What a notice is about and which step of its life it announces. Serialized as two fields,
/// e.g. `"kind": "alert", "status": "firing"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "status", rename_all = "snake_case")]
pub enum NoticeKind {
    /// An alert (or a group of alerts of one rule and one group key).
    Alert(AlertStatus),
    /// A silence was created or expired.
    Silence(SilenceStatus),
    /// The always-firing watchdog: proof that alerting itself is alive.
    Watchdog(WatchdogStatus),
    /// An incident was declared, updated or resolved.
    Incident(IncidentStatus),
    /// A fire drill's own notice (see [`Notice::drill_probe`]).
    Drill(DrillStatus),
}

/// The step of an alert's life a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Started firing (or a new member joined a firing group).
    Firing,
    /// Still firing: the reminder sent at the repeat interval.
    Repeat,
    /// Every alert of the notice is resolved.
    Resolved,
}

/// The step of a silence's life a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceStatus {
    /// A silence was created.
    Created,
    /// A silence ended (reached its `ends_at` or was expired by hand).
    Expired,
}

/// The watchdog has one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchdogStatus {
    /// Alerting is alive.
    Heartbeat,
}

/// The step of an incident's life a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// An incident was declared.
    Declared,
    /// An incident was updated.
    Updated,
    /// An incident was resolved.
    Resolved,
}

/// The fire drill notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    /// A `notifier-down` drill's test notice to the notifier it makes fail: held back (and
    /// retried) while the drill runs, so that the notifier's outbox fails as a real outage
    /// would, and delivered once the drill heals.
    Probe,
}

/// Where a person goes next: the dashboard page and the admin API query that shows the
/// affected traffic. Absent when `server.public_url` is not configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// The dashboard page of this alert, silence or incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
    /// `GET /api/v1/events?…` for the tenant, source and channel concerned, over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<String>,
}

/// One alert inside a notice. A notice about one alert has one; a grouped notice (five
/// channels of one tenant going quiet) has one per alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertItem {
    /// All labels of this alert (the notice's group labels included).
    pub labels: Labels,
    /// The number the rule compared with its threshold (events in the window, seconds of the
    /// oldest pending delivery, error ratio, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why, for a person, with the numbers: "0 chat events in the last 30 min; the baseline for
    /// this hour of the week is 41 (p = 2e-18)".
    pub reason: String,
    /// When the condition started (the alert's `started_at`).
    pub started_at: Timestamp,
    /// When it resolved; `None` while firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// Links for this alert alone.
    #[serde(default)]
    pub links: Links,
}

impl AlertItem {
    /// A firing alert with these labels, reason and start.
    pub fn new(labels: Labels, reason: impl Into<String>, started_at: Timestamp) -> Self {
        AlertItem {
            labels,
            value: None,
            reason: reason.into(),
            started_at,
            resolved_at: None,
            links: Links::default(),
        }
    }

    /// Sets the value behind the alert.
    pub fn value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    /// Marks the alert resolved at `at`.
    pub fn resolved_at(mut self, at: Timestamp) -> Self {
        self.resolved_at = Some(at);
        self
    }

    /// Whether this alert is resolved.
    pub fn is_resolved(&self) -> bool {
        self.resolved_at.is_some()
    }
}

/// A silence, as announced when it is created or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceInfo {
    /// The silence's id.
    pub id: String,
    /// Label matchers (`rule`, `tenant`, `source`, …), each an exact value.
    pub matchers: Labels,
    /// When it started muting.
    pub starts_at: Timestamp,
    /// When it stops muting (always set: silences expire).
    pub ends_at: Timestamp,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// An incident, as announced to on-call and to affected tenants.
///
/// A notice to a tenant's contact names that tenant only: its `tenants`, `sources` and
/// `channels` are the tenant's own, and `text` is the tenant template rendered for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentInfo {
    /// The incident's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The text of this declaration, update or resolution.
    pub message: String,
    /// The tenants affected (for a tenant's contact: that tenant alone).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Its status after this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IncidentState>,
    /// How bad it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<IncidentSeverity>,
    /// The sources affected (none: every source of the tenants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The channels affected (none: every channel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// When the impact began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_start: Option<Timestamp>,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// When the next update is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update_at: Option<Timestamp>,
    /// Who leads the response (on-call notices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commander: Option<String>,
    /// For a tenant's contact: the whole notice in plain words, from the tenant template, to
    /// be forwarded as it is. E-mail sends this as the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For a drill incident (one a fire drill's alert declared), the drill's id: its notices
    /// are marked like the drill's alert notices (see [`Notice::drill`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<String>,
}

/// One notification: what happened, to whom, how bad, since when, why, and where to look.
///
/// Every notifier renders the same notice; the webhook notifier sends it as JSON with
/// `"version": 1` (see `docs/notifiers.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// What this is about, and its status (`"kind"` and `"status"` in JSON).
    #[serde(flatten)]
    pub kind: NoticeKind,
    /// The stable deduplication key: the same for the firing, repeat and resolved notices of
    /// one alert group, different between groups. PagerDuty's `dedup_key` is built from it.
    pub key: String,
    /// The rule (`inbound_stopped`, …), for alerts and the watchdog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How loud it is.
    pub severity: Severity,
    /// One line for a person: `[FIRING] Inbound flow stopped: tenant=maelys (5 alerts)`.
    pub summary: String,
    /// Why, with the numbers (for one alert, its reason; for a group, a count).
    pub reason: String,
    /// The labels every alert of the notice shares (the group key), e.g. `{"tenant": "maelys"}`.
    #[serde(default)]
    pub labels: Labels,
    /// The alerts of this notice (one, or several of one group). Empty for other kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertItem>,
    /// When the earliest alert of the notice started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// When this notice was made (from the injected clock).
    pub at: Timestamp,
    /// When the sender will repeat this notice at the latest if nothing changes (the repeat
    /// interval, or the watchdog interval). Alertmanager uses it to keep firing alerts alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_at: Option<Timestamp>,
    /// Links for the whole notice.
    #[serde(default)]
    pub links: Links,
    /// The silence, for silence notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<SilenceInfo>,
    /// The incident, for incident notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentInfo>,
    /// The fire drill that caused it (`drl_…`), when it is one's: the summary starts with
    /// `[DRILL]`, the group labels and each alert's labels carry `drill`, and PagerDuty gets
    /// severity `info`, so that nobody is paged for real. Resolutions of a drill's alerts are
    /// marked too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<String>,
}

/// The label and notice field that name the drill a notice is about.
pub const DRILL_LABEL: &str = "drill";

/// What the summary of a drill's notice starts with.
pub const DRILL_MARK: &str = "[DRILL]";

/// How far before an alert's start the events link looks, so that the last traffic before an
/// outage is on the page too.
pub const EVENTS_LOOKBACK: Duration = Duration::from_secs(15 * 60);

/// Builds links from `server.public_url`. Without a public URL every link is `None` (and the
/// notices still say everything else).
#[derive(Debug, Clone, Default)]
pub struct LinkBuilder {
    base: Option<String>,
}

/// A public URL that is not an `http(s)://` URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("public_url `{0}` is not an http:// or https:// URL")]
pub struct InvalidPublicUrl(pub String);

impl LinkBuilder {
    /// Links under `public_url` (e.g. `https://intake.example.com` or `…/intake/`).
    pub fn new(public_url: Option<&str>) -> Result<Self, InvalidPublicUrl> {
        let Some(raw) = public_url else {
            return Ok(LinkBuilder { base: None });
        };
        let parsed = url::Url::parse(raw).map_err(|_| InvalidPublicUrl(raw.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(InvalidPublicUrl(raw.to_string()));
        }
        // Query and fragment of a public URL have no meaning for links built under it.
        let mut base = parsed;
        base.set_query(None);
        base.set_fragment(None);
        Ok(LinkBuilder {
            base: Some(base.as_str().trim_end_matches('/').to_string()),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Option<String> {
        let base = self.base.as_ref()?;
        let mut u = url::Url::parse(&format!("{base}{path}")).ok()?;
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        Some(u.into())
    }

    /// The dashboard page listing alerts of `rule` matching `labels`:
    /// `{public_url}/alerts?rule=…&tenant=…&source=…&channel=…&destination=…`.
    pub fn alert_dashboard(&self, rule: &str, labels: &Labels) -> Option<String> {
        let mut q = vec![("rule", rule)];
        q.extend(
            words::ordered(labels)
                .into_iter()
                .filter(|(k, _)| words::FILTER_LABELS.contains(k)),
        );
        self.url("/alerts", &q)
    }

    /// The admin API query for the events of the tenant/source/channel in `labels` from
    /// [`EVENTS_LOOKBACK`] before `from` up to `to` (open-ended while firing):
    /// `{public_url}/api/v1/events?tenant=…&source=…&channel=…&from=…[&to=…]`.
    pub fn events(
        &self,
        labels: &Labels,
        from: Timestamp,
        to: Option<Timestamp>,
    ) -> Option<String> {
        let from = from.minus(EVENTS_LOOKBACK).to_rfc3339();
        let to = to.map(Timestamp::to_rfc3339);
        // The events API filters by tenant, source and channel only (a destination is not an
        // event attribute), so only those labels go into the query.
        let mut q: Vec<(&str, &str)> = words::ordered(labels)
            .into_iter()
            .filter(|(k, _)| matches!(*k, "tenant" | "source" | "channel"))
            .collect();
        q.push(("from", &from));
        if let Some(to) = &to {
            q.push(("to", to));
        }
        self.url("/api/v1/events", &q)
    }

    /// The dashboard page of a silence: `{public_url}/silences/{id}`.
    pub fn silence(&self, id: &str) -> Option<String> {
        self.url(&format!("/silences/{}", path_segment(id)), &[])
    }

    /// The dashboard page of an incident: `{public_url}/incidents/{id}`.
    pub fn incident(&self, id: &str) -> Option<String> {
        self.url(&format!("/incidents/{}", path_segment(id)), &[])
    }

    /// The dashboard page of a fire drill: `{public_url}/drills/{id}`.
    pub fn drill(&self, id: &str) -> Option<String> {
        self.url(&format!("/drills/{}", path_segment(id)), &[])
    }

    /// The dashboard's home page.
    pub fn home(&self) -> Option<String> {
        self.url("/", &[])
    }
}

fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The deduplication key of an alert group: the rule and the group labels, in the Prometheus
/// notation, e.g. `inbound_stopped{source="maelys-kustomer",tenant="maelys"}`. It does not
/// depend on status, severity, members or time, so firing, repeat and resolved notices of one
/// group share it.
pub fn group_key(rule: &str, group_labels: &Labels) -> String {
    let inner: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{rule}{{{}}}", inner.join(","))
}

impl Notice {
    /// A notice about one alert or a group of alerts of `rule` sharing `group_labels`.
    ///
    /// `items` carry each alert's full labels, reason, value and times; their links are filled
    /// in here. The key is [`group_key`]`(rule, group_labels)`, so the lead chooses the
    /// grouping (e.g. `{"tenant": "maelys"}` to send one notice for all quiet channels of a
    /// tenant) and the key follows. `since` is the earliest start.
    pub fn alert(
        status: AlertStatus,
        rule: &str,
        severity: Severity,
        group_labels: Labels,
        mut items: Vec<AlertItem>,
        at: Timestamp,
        links: &LinkBuilder,
    ) -> Notice {
        // A stable member order makes the notice (and the tests) deterministic whatever order
        // the evaluator produced them in.
        items.sort_by(|a, b| a.labels.cmp(&b.labels));
        for item in &mut items {
            item.links = Links {
                dashboard: links.alert_dashboard(rule, &item.labels),
                events: links.events(&item.labels, item.started_at, item.resolved_at),
            };
        }
        let since = items.iter().map(|i| i.started_at).min();
        let until = if status == AlertStatus::Resolved {
            items.iter().filter_map(|i| i.resolved_at).max()
        } else {
            None
        };
        let kind = NoticeKind::Alert(status);
        let reason = match items.as_slice() {
            [one] => one.reason.clone(),
            many => {
                let resolved = many.iter().filter(|i| i.is_resolved()).count();
                let firing = many.len() - resolved;
                match (firing, resolved) {
                    (f, 0) => format!("{f} alerts firing"),
                    (0, r) => format!("{r} alerts resolved"),
                    (f, r) => format!("{f} alerts firing, {r} resolved"),
                }
            }
        };
        let drill = group_labels.get(DRILL_LABEL).cloned();
        let mut summary = words::alert_summary(kind, rule, &group_labels, &items);
        if drill.is_some() {
            summary = format!("{DRILL_MARK} {summary}");
        }
        Notice {
            kind,
            key: group_key(rule, &group_labels),
            rule: Some(rule.to_string()),
            severity,
            summary,
            reason,
            links: Links {
                dashboard: links.alert_dashboard(rule, &group_labels),
                events: since.and_then(|s| links.events(&group_labels, s, until)),
            },
            labels: group_labels,
            alerts: items,
            since,
            at,
            repeat_at: None,
            silence: None,
            incident: None,
            drill,
        }
    }

    /// A notice that a silence was created or expired. Announced to on-call so that nobody
    /// mutes alerts unseen.
    pub fn silence(
        status: SilenceStatus,
        silence: SilenceInfo,
        at: Timestamp,
        links: &LinkBuilder,
    ) -> Notice {
        let kind = NoticeKind::Silence(status);
        let who = words::labels_text(&silence.matchers);
        let summary = match status {
            SilenceStatus::Created => format!(
                "[SILENCE CREATED] {who} muted until {} by {}",
                silence.ends_at, silence.created_by
            ),
            SilenceStatus::Expired => format!("[SILENCE EXPIRED] {who} is no longer muted"),
        };
        Notice {
            kind,
            key: format!("silence:{}", silence.id),
            rule: silence.matchers.get("rule").cloned(),
            severity: Severity::Info,
            summary,
            reason: silence.comment.clone(),
            labels: silence.matchers.clone(),
            alerts: Vec::new(),
            since: Some(silence.starts_at),
            at,
            repeat_at: None,
            links: Links {
                dashboard: links.silence(&silence.id),
                events: None,
            },
            silence: Some(silence),
            incident: None,
            drill: None,
        }
    }

    /// The watchdog heartbeat: always firing, sent every interval; `next` is when the next one
    /// is due (the dead-man's switch should alarm some time after that).
    pub fn watchdog(at: Timestamp, next: Timestamp, links: &LinkBuilder) -> Notice {
        Notice {
            kind: NoticeKind::Watchdog(WatchdogStatus::Heartbeat),
            key: group_key("watchdog", &Labels::new()),
            rule: Some("watchdog".into()),
            severity: Severity::Info,
            summary: "[WATCHDOG] intake alerting is alive".into(),
            reason: format!(
                "This alert always fires. If it stops arriving (next one due by {next}), \
                 intake's monitor or its notifications are down."
            ),
            labels: Labels::new(),
            alerts: Vec::new(),
            since: None,
            at,
            repeat_at: Some(next),
            links: Links {
                dashboard: links.home(),
                events: None,
            },
            silence: None,
            incident: None,
            drill: None,
        }
    }

    /// A notice about an incident.
    pub fn incident(
        status: IncidentStatus,
        incident: IncidentInfo,
        severity: Severity,
        at: Timestamp,
        links: &LinkBuilder,
    ) -> Notice {
        let word = match status {
            IncidentStatus::Declared => "INCIDENT",
            IncidentStatus::Updated => "INCIDENT UPDATE",
            IncidentStatus::Resolved => "INCIDENT RESOLVED",
        };
        let mut labels = Labels::new();
        if let [tenant] = incident.tenants.as_slice() {
            labels.insert("tenant".into(), tenant.clone());
        }
        // A drill incident's notices are marked as its alerts' are: `[DRILL]` first (once:
        // its title carries the mark already), the `drill` label and field.
        let drill = incident.drill.clone();
        let summary = match &drill {
            Some(d) => {
                labels.insert(DRILL_LABEL.into(), d.clone());
                let title = incident
                    .title
                    .strip_prefix(DRILL_MARK)
                    .unwrap_or(&incident.title);
                format!("{DRILL_MARK} [{word}] {}", title.trim_start())
            }
            None => format!("[{word}] {}", incident.title),
        };
        Notice {
            kind: NoticeKind::Incident(status),
            key: format!("incident:{}", incident.id),
            rule: None,
            severity,
            summary,
            reason: incident.message.clone(),
            labels,
            alerts: Vec::new(),
            since: incident.impact_start,
            at,
            repeat_at: None,
            links: Links {
                dashboard: links.incident(&incident.id),
                events: None,
            },
            silence: None,
            incident: Some(incident),
            drill,
        }
    }

    /// A `notifier-down` drill's test notice to the notifier `notifier` it makes fail, sent
    /// when the drill starts: the drill makes its sends fail, so the notifier's outbox fails
    /// as in a real outage and `notifier_failing` can fire; it is delivered once the drill
    /// heals (a failing notifier delays, it does not drop).
    pub fn drill_probe(
        drill: &str,
        notifier: &str,
        at: Timestamp,
        until: Timestamp,
        links: &LinkBuilder,
    ) -> Notice {
        let mut labels = Labels::new();
        labels.insert("notifier".into(), notifier.to_string());
        labels.insert(DRILL_LABEL.into(), drill.to_string());
        Notice {
            kind: NoticeKind::Drill(DrillStatus::Probe),
            key: format!("drill:{drill}"),
            rule: None,
            severity: Severity::Info,
            summary: format!(
                "{DRILL_MARK} notifier-down drill {drill}: a test notice held back while notifier `{notifier}` is made to fail"
            ),
            reason: format!(
                "Fire drill {drill} makes every send through notifier `{notifier}` fail until {until} at the latest, \
                 to check that notifier_failing is raised and notified through another notifier. \
                 This notice waited in the outbox meanwhile: nothing to do."
            ),
            labels,
            alerts: Vec::new(),
            since: Some(at),
            at,
            repeat_at: None,
            links: Links {
                dashboard: links.drill(drill),
                events: None,
            },
            silence: None,
            incident: None,
            drill: Some(drill.to_string()),
        }
    }

    /// A notice about an incident for one tenant's contact: `incident` must already be that
    /// tenant's view (its tenant alone, its sources and channels, its `text`). It carries no
    /// links: they lead to the operator's dashboard, which is not the tenant's.
    pub fn incident_for_tenant(
        status: IncidentStatus,
        incident: IncidentInfo,
        severity: Severity,
        at: Timestamp,
    ) -> Notice {
        let mut notice = Notice::incident(status, incident, severity, at, &LinkBuilder::default());
        notice.links = Links::default();
        notice
    }

    /// The plain-language text of a tenant's incident notice, when this is one.
    pub fn tenant_text(&self) -> Option<&str> {
        self.incident.as_ref().and_then(|i| i.text.as_deref())
    }

    /// Sets when the sender will repeat this notice at the latest (see [`Notice::repeat_at`]).
    pub fn repeat_at(mut self, at: Timestamp) -> Self {
        self.repeat_at = Some(at);
        self
    }

    /// Whether this notice announces an end: a resolved alert or incident, an expired silence.
    pub fn is_resolution(&self) -> bool {
        matches!(
            self.kind,
            NoticeKind::Alert(AlertStatus::Resolved)
                | NoticeKind::Silence(SilenceStatus::Expired)
                | NoticeKind::Incident(IncidentStatus::Resolved)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn group_key_is_stable_across_status_members_and_severity() {
        let links = LinkBuilder::new(None).unwrap();
        let group = labels(&[("tenant", "maelys")]);
        let chat = AlertItem::new(
            labels(&[("tenant", "maelys"), ("channel", "chat")]),
            "0 chat",
            t("2026-11-28T10:00:00Z"),
        );
        let email = AlertItem::new(
            labels(&[("tenant", "maelys"), ("channel", "email")]),
            "0 email",
            t("2026-11-28T10:05:00Z"),
        );
        let firing = Notice::alert(
            AlertStatus::Firing,
            "inbound_stopped",
            Severity::Critical,
            group.clone(),
            vec![email.clone(), chat.clone()],
            t("2026-11-28T10:06:00Z"),
            &links,
        );
        let resolved = Notice::alert(
            AlertStatus::Resolved,
            "inbound_stopped",
            Severity::Warning,
            group.clone(),
            vec![chat.resolved_at(t("2026-11-28T11:00:00Z"))],
            t("2026-11-28T11:00:00Z"),
            &links,
        );
        assert_eq!(firing.key, resolved.key);
        assert_eq!(firing.key, r#"inbound_stopped{tenant="maelys"}"#);
        let other = Notice::alert(
            AlertStatus::Firing,
            "inbound_stopped",
            Severity::Critical,
            labels(&[("tenant", "other")]),
            vec![],
            t("2026-11-28T10:06:00Z"),
            &links,
        );
        assert_ne!(firing.key, other.key);
        // Members are sorted, the earliest start is `since`.
        assert_eq!(firing.alerts[0].labels["channel"], "chat");
        assert_eq!(firing.since, Some(t("2026-11-28T10:00:00Z")));
        assert_eq!(firing.reason, "2 alerts firing");
        assert_eq!(resolved.reason, "0 chat");
    }

    #[test]
    fn a_drill_incident_s_notices_are_marked_once_and_a_real_one_s_not_at_all() {
        let links = LinkBuilder::new(None).unwrap();
        let info = |title: &str, drill: Option<&str>| IncidentInfo {
            id: "inc_1".into(),
            title: title.into(),
            tenants: vec!["maelys".into()],
            drill: drill.map(str::to_string),
            ..IncidentInfo::default()
        };
        let at = t("2026-11-28T10:00:00Z");
        let drill = Notice::incident(
            IncidentStatus::Declared,
            info("[DRILL] Webhook processing stalled", Some("drl_1")),
            Severity::Critical,
            at,
            &links,
        );
        assert_eq!(
            drill.summary,
            "[DRILL] [INCIDENT] Webhook processing stalled"
        );
        assert_eq!(drill.drill.as_deref(), Some("drl_1"));
        assert_eq!(drill.labels["drill"], "drl_1");
        let json = serde_json::to_value(&drill).unwrap();
        assert_eq!(json["drill"], "drl_1");
        assert_eq!(json["incident"]["drill"], "drl_1");
        let tenant = Notice::incident_for_tenant(
            IncidentStatus::Resolved,
            info("[DRILL] Webhook processing stalled", Some("drl_1")),
            Severity::Critical,
            at,
        );
        assert_eq!(tenant.drill.as_deref(), Some("drl_1"));
        let real = Notice::incident(
            IncidentStatus::Declared,
            info("Webhook processing stalled", None),
            Severity::Critical,
            at,
            &links,
        );
        assert_eq!(real.summary, "[INCIDENT] Webhook processing stalled");
        assert!(real.drill.is_none() && !real.labels.contains_key("drill"));
        assert!(!serde_json::to_string(&real).unwrap().contains("drill"));
    }

    #[test]
    fn group_key_quotes_values() {
        let k = group_key("r", &labels(&[("a", "x\"y"), ("b", "z")]));
        assert_eq!(k, r#"r{a="x\"y",b="z"}"#);
    }

    #[test]
    fn links_are_built_under_the_public_url() {
        let links = LinkBuilder::new(Some("https://intake.example.com/base/")).unwrap();
        let l = labels(&[
            ("tenant", "maelys"),
            ("source", "maelys-kustomer"),
            ("channel", "chat"),
            ("destination", "handler"),
        ]);
        assert_eq!(
            links.alert_dashboard("inbound_stopped", &l).unwrap(),
            "https://intake.example.com/base/alerts?rule=inbound_stopped&tenant=maelys&source=maelys-kustomer&channel=chat&destination=handler"
        );
        assert_eq!(
            links
                .events(&l, t("2026-11-28T10:00:00Z"), Some(t("2026-11-28T11:00:00Z")))
                .unwrap(),
            "https://intake.example.com/base/api/v1/events?tenant=maelys&source=maelys-kustomer&channel=chat&from=2026-11-28T09%3A45%3A00.000Z&to=2026-11-28T11%3A00%3A00.000Z"
        );
        assert_eq!(
            links.silence("sil 1").unwrap(),
            "https://intake.example.com/base/silences/sil+1"
        );
        assert_eq!(
            links.drill("drl_1").unwrap(),
            "https://intake.example.com/base/drills/drl_1"
        );
        let probe = Notice::drill_probe(
            "drl_1",
            "oncall",
            t("2026-11-28T10:00:00Z"),
            t("2026-11-28T10:10:00Z"),
            &links,
        );
        assert_eq!(
            probe.links.dashboard.as_deref(),
            Some("https://intake.example.com/base/drills/drl_1")
        );
        let none = LinkBuilder::new(None).unwrap();
        assert_eq!(none.alert_dashboard("r", &l), None);
        assert!(LinkBuilder::new(Some("ftp://x")).is_err());
        assert!(LinkBuilder::new(Some("not a url")).is_err());
    }

    #[test]
    fn notice_round_trips_through_json_with_kind_and_status() {
        let links = LinkBuilder::new(Some("http://127.0.0.1:8080")).unwrap();
        let n = Notice::alert(
            AlertStatus::Repeat,
            "queue_stalled",
            Severity::Critical,
            labels(&[("tenant", "maelys")]),
            vec![AlertItem::new(
                labels(&[("tenant", "maelys"), ("destination", "handler")]),
                "oldest pending delivery is 7m old (threshold 5m)",
                t("2026-11-28T10:00:00Z"),
            )
            .value(420.0)],
            t("2026-11-28T10:07:00Z"),
            &links,
        )
        .repeat_at(t("2026-11-28T14:07:00Z"));
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["kind"], "alert");
        assert_eq!(v["status"], "repeat");
        let back: Notice = serde_json::from_value(v).unwrap();
        assert_eq!(back, n);

        let w = Notice::watchdog(t("2026-11-28T10:00:00Z"), t("2026-11-28T10:01:00Z"), &links);
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["kind"], "watchdog");
        assert_eq!(v["status"], "heartbeat");
        assert_eq!(serde_json::from_value::<Notice>(v).unwrap(), w);
    }

    #[test]
    fn silence_notice_names_matchers_author_and_expiry() {
        let links = LinkBuilder::new(Some("http://h")).unwrap();
        let n = Notice::silence(
            SilenceStatus::Created,
            SilenceInfo {
                id: "sil_1".into(),
                matchers: labels(&[("rule", "inbound_drop"), ("tenant", "maelys")]),
                starts_at: t("2026-11-28T10:00:00Z"),
                ends_at: t("2026-11-28T12:00:00Z"),
                created_by: "alice".into(),
                comment: "migration".into(),
            },
            t("2026-11-28T10:00:00Z"),
            &links,
        );
        assert_eq!(
            n.summary,
            "[SILENCE CREATED] rule=inbound_drop, tenant=maelys muted until 2026-11-28T12:00:00.000Z by alice"
        );
        assert_eq!(n.rule.as_deref(), Some("inbound_drop"));
        assert_eq!(
            n.links.dashboard.as_deref(),
            Some("http://h/silences/sil_1")
        );
        assert!(!n.is_resolution());
    }
}
