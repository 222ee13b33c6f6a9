//! What the API shows of an incident: the record, its timeline merged from what records it
//! (its own entries, the outbox rows of its notices, the recovery jobs of its scope), the
//! response times read from that timeline, and a tenant's slice of all of it. Pure.

use std::collections::BTreeMap;

use intake_core::config::Config;
use intake_core::incident::{IncidentSeverity, IncidentState};
use intake_core::Timestamp;
use intake_notify::Notice;
use intake_store::{Incident, IncidentEntry, NotificationState, OutboxItem, RecoveryJob};
use serde::Serialize;
use serde_json::{json, Value};

use super::contacts::{self, CONTACT_PREFIX};
use super::notices::human_duration;

/// An incident as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    /// `inc_…`
    pub id: String,
    /// What is wrong.
    pub title: String,
    /// critical, major or minor.
    pub severity: IncidentSeverity,
    /// investigating, identified, monitoring or resolved.
    pub status: IncidentState,
    /// The tenants affected (a tenant token sees only its own).
    pub tenants: Vec<String>,
    /// The sources affected (none: all the tenants' sources).
    pub sources: Vec<String>,
    /// The channels affected (none: all).
    pub channels: Vec<String>,
    /// Who leads the response.
    pub commander: Option<String>,
    /// When the impact began.
    pub impact_start: Timestamp,
    /// When it was declared.
    pub declared_at: Timestamp,
    /// Who declared it: `operator`, `tenant:<id>`, or `rule:<rule>` when an alert did.
    pub declared_by: String,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// When tenants were promised the next update.
    pub next_update_at: Option<Timestamp>,
    /// How long the impact has lasted (until the resolution, or until now), in seconds.
    pub impact_seconds: u64,
    /// For a drill incident (a fire drill's alert declared it), the drill's id (`drl_…`);
    /// `null` for a real one.
    pub drill: Option<String>,
}

/// One thing that happened, in an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = IncidentTimelineItem)]
pub struct TimelineItem {
    /// When.
    pub at: Timestamp,
    /// `declared`, `update`, `resolved`, `alert_firing`, `alert_resolved`, `notice`,
    /// `tenants_told`, `tenant_notice_held`, `recovery_started`, `recovery_finished`.
    pub kind: String,
    /// Who wrote it, for a person's entries.
    pub author: Option<String>,
    /// What happened.
    pub text: String,
    /// The numbers behind it.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// The response, measured from the timeline. Each duration is from the impact start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = IncidentTimes)]
pub struct Times {
    /// When the impact began.
    pub impact_start: Option<Timestamp>,
    /// When the first alert of its scope fired.
    pub detected_at: Option<Timestamp>,
    /// When it was declared.
    pub declared_at: Option<Timestamp>,
    /// When a tenant's contact first accepted a notice of it.
    pub first_tenant_notice_at: Option<Timestamp>,
    /// When the impact stopped: the status first became `monitoring`, else its alerts had all
    /// resolved, else it was resolved.
    pub mitigated_at: Option<Timestamp>,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// Impact start to detection, in seconds.
    pub time_to_detect: Option<u64>,
    /// Impact start to the first tenant notice, in seconds.
    pub time_to_notify: Option<u64>,
    /// Declaration to the first tenant notice, in seconds: how long tenants waited once the
    /// vendor knew.
    pub declared_to_first_tenant_notice: Option<u64>,
    /// Impact start to mitigation, in seconds.
    pub time_to_mitigate: Option<u64>,
    /// Impact start to resolution, in seconds.
    pub time_to_resolve: Option<u64>,
}

/// An incident with its timeline and response times.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    /// The record.
    #[serde(flatten)]
    pub incident: IncidentView,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineItem>,
    /// The response times.
    pub times: Times,
}

/// The list view of `i` at `now`.
pub fn summary(i: &Incident, now: Timestamp) -> IncidentView {
    IncidentView {
        id: i.id.clone(),
        title: i.title.clone(),
        severity: i.severity,
        status: i.status,
        tenants: i.tenants.clone(),
        sources: i.sources.clone(),
        channels: i.channels.clone(),
        commander: i.commander.clone(),
        impact_start: i.impact_start,
        declared_at: i.declared_at,
        declared_by: i.declared_by.clone(),
        updated_at: i.updated_at,
        resolved_at: i.resolved_at,
        next_update_at: i.next_update_at,
        impact_seconds: i.resolved_at.unwrap_or(now).since(i.impact_start).as_secs(),
        drill: i.drill.clone(),
    }
}

/// `v` as `tenant` sees it: its tenant alone, its sources alone.
pub fn summary_for_tenant(mut v: IncidentView, tenant: &str, config: &Config) -> IncidentView {
    v.tenants = vec![tenant.to_string()];
    v.sources
        .retain(|s| config.source(s).is_some_and(|c| c.tenant == tenant));
    v
}

/// The incident with its merged timeline and its response times.
pub fn detail(
    incident: &Incident,
    entries: &[IncidentEntry],
    notices: &[OutboxItem],
    recoveries: &[RecoveryJob],
    config: &Config,
    now: Timestamp,
) -> IncidentDetail {
    let mut timeline: Vec<TimelineItem> = entries.iter().map(entry_item).collect();
    timeline.extend(notices.iter().map(|n| notice_item(n, config)));
    for job in recoveries {
        timeline.extend(recovery_items(job));
    }
    // Stable: same instant keeps the order of the records (entries, notices, recoveries).
    timeline.sort_by_key(|t| t.at);
    let times = times(incident, &timeline);
    IncidentDetail {
        incident: summary(incident, now),
        timeline,
        times,
    }
}

/// `d` as `tenant` sees it: its own slice of the record; of the timeline, the steps people
/// wrote (their words were checked to name no other tenant), its own alerts, notices to its
/// own contacts and its own recovery jobs.
pub fn for_tenant(d: IncidentDetail, tenant: &str, config: &Config) -> IncidentDetail {
    let own_source = |s: &str| config.source(s).is_some_and(|c| c.tenant == tenant);
    let timeline = d
        .timeline
        .into_iter()
        .filter_map(|mut t| {
            let keep = match t.kind.as_str() {
                "alert_firing" | "alert_resolved" => t.detail["labels"]["tenant"] == tenant,
                "notice" => t.detail["tenant"] == tenant,
                "recovery_started" | "recovery_finished" => {
                    t.detail["source"].as_str().is_some_and(own_source)
                }
                _ => true,
            };
            if !keep {
                return None;
            }
            if matches!(
                t.kind.as_str(),
                "declared" | "update" | "resolved" | "tenants_told" | "tenant_notice_held"
            ) {
                // The numbers behind a step may list every tenant.
                t.detail = json!({});
            }
            Some(t)
        })
        .collect();
    IncidentDetail {
        incident: summary_for_tenant(d.incident, tenant, config),
        timeline,
        times: d.times,
    }
}

fn entry_item(e: &IncidentEntry) -> TimelineItem {
    TimelineItem {
        at: e.at,
        kind: e.kind.clone(),
        author: e.author.clone(),
        text: e.text.clone(),
        detail: e.detail.clone(),
    }
}

/// One notice: to whom, which step, whether it arrived.
fn notice_item(n: &OutboxItem, config: &Config) -> TimelineItem {
    let step = serde_json::from_str::<Notice>(&n.notice)
        .ok()
        .map(|notice| match notice.kind {
            intake_notify::NoticeKind::Incident(s) => format!("{s:?}").to_lowercase(),
            _ => "other".into(),
        })
        .unwrap_or_else(|| "unreadable".into());
    let recipient = recipient(&n.notifier, config);
    let outcome = match (n.state, n.finished_at) {
        (NotificationState::Sent, Some(at)) => format!("delivered at {at}"),
        (NotificationState::Dead, _) => format!(
            "not delivered: {}",
            n.last_error.as_deref().unwrap_or("given up")
        ),
        _ if n.attempts > 0 => format!(
            "not delivered yet after {} attempt(s): {}",
            n.attempts,
            n.last_error.as_deref().unwrap_or("retrying")
        ),
        _ => "waiting to be sent".into(),
    };
    TimelineItem {
        at: n.created_at,
        kind: "notice".into(),
        author: None,
        text: format!("Notice `{step}` to {recipient}: {outcome}"),
        detail: json!({
            "step": step,
            "notifier": n.notifier,
            "tenant": n.tenant,
            "recipient": recipient,
            "state": n.state,
            "attempts": n.attempts,
            "delivered_at": (n.state == NotificationState::Sent).then_some(n.finished_at).flatten(),
            "last_error": n.last_error,
        }),
    }
}

/// Who a notifier id is, for people: on-call's notifier, or a tenant's contact.
fn recipient(notifier: &str, config: &Config) -> String {
    let Some(rest) = notifier.strip_prefix(CONTACT_PREFIX) else {
        return format!("on-call ({notifier})");
    };
    let found = rest.rsplit_once(':').and_then(|(tenant, i)| {
        let i: usize = i.parse().ok()?;
        let contact = config.tenant(tenant)?.contacts.get(i)?;
        Some(format!(
            "{tenant}'s contact ({})",
            contacts::describe(contact)
        ))
    });
    found.unwrap_or_else(|| format!("contact {rest} (no longer configured)"))
}

/// A recovery job's start and end, with its report's numbers.
fn recovery_items(job: &RecoveryJob) -> Vec<TimelineItem> {
    let what = format!(
        "{}{} of {}",
        job.kind,
        if job.dry_run { " (dry run)" } else { "" },
        job.source
    );
    let detail = json!({
        "recovery": job.id,
        "kind": job.kind,
        "dry_run": job.dry_run,
        "source": job.source,
        "state": job.state,
        "params": job.params,
        "report": job.report,
    });
    let mut out = Vec::new();
    if let Some(at) = job.started_at {
        out.push(TimelineItem {
            at,
            kind: "recovery_started".into(),
            author: Some(job.created_by.clone()),
            text: format!("Recovery {} started: {what}", job.id),
            detail: detail.clone(),
        });
    }
    if let Some(at) = job.finished_at {
        let todo = &job.report["todo"];
        let found = todo["total"].as_u64().unwrap_or(0);
        let by_channel = by_channel(&todo["by_channel"]);
        let done = job.report["done"].as_u64().unwrap_or(0);
        out.push(TimelineItem {
            at,
            kind: "recovery_finished".into(),
            author: Some(job.created_by.clone()),
            text: format!(
                "Recovery {} {}: {what}; {found} to do ({by_channel}), {done} done",
                job.id, job.state
            ),
            detail,
        });
    }
    out
}

/// `chat 236, email 813` from a report's `by_channel`.
pub fn by_channel(v: &Value) -> String {
    let map: BTreeMap<String, u64> = serde_json::from_value(v.clone()).unwrap_or_default();
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a recovery job belongs to the incident: a tenant's (and, when the incident lists
/// sources, a listed source's) job whose window overlaps the impact window, created once the
/// impact began.
pub fn recovery_belongs(job: &RecoveryJob, incident: &Incident, end: Timestamp) -> bool {
    let read = |k: &str| {
        job.params[k]
            .as_str()
            .and_then(|s| Timestamp::parse_rfc3339(s).ok())
            .or_else(|| job.params[k].as_i64().map(Timestamp))
    };
    let (Some(from), Some(to)) = (read("from"), read("to")) else {
        return false;
    };
    incident.tenants.contains(&job.tenant)
        && (incident.sources.is_empty() || incident.sources.contains(&job.source))
        && from <= end
        && to >= incident.impact_start
        && job.created_at >= incident.impact_start
}

/// The response times, read from the timeline.
fn times(incident: &Incident, timeline: &[TimelineItem]) -> Times {
    let start = incident.impact_start;
    let detected_at = timeline
        .iter()
        .filter(|t| t.kind == "alert_firing")
        .map(|t| t.at)
        .min();
    let first_tenant_notice_at = timeline
        .iter()
        .filter(|t| t.kind == "notice" && !t.detail["tenant"].is_null())
        .filter_map(|t| t.detail["delivered_at"].as_str())
        .filter_map(|s| Timestamp::parse_rfc3339(s).ok())
        .min();
    let monitoring = timeline
        .iter()
        .filter(|t| t.kind == "update" && t.detail["status"] == "monitoring")
        .map(|t| t.at)
        .min();
    let alerts_resolved = {
        let fired = timeline.iter().filter(|t| t.kind == "alert_firing").count();
        let resolved: Vec<Timestamp> = timeline
            .iter()
            .filter(|t| t.kind == "alert_resolved")
            .map(|t| t.at)
            .collect();
        (fired > 0 && resolved.len() >= fired)
            .then(|| resolved.into_iter().max())
            .flatten()
    };
    let mitigated_at = monitoring.or(alerts_resolved).or(incident.resolved_at);
    let since = |t: Option<Timestamp>| t.map(|t| t.since(start).as_secs());
    Times {
        impact_start: Some(start),
        detected_at,
        declared_at: Some(incident.declared_at),
        first_tenant_notice_at,
        mitigated_at,
        resolved_at: incident.resolved_at,
        time_to_detect: since(detected_at),
        time_to_notify: since(first_tenant_notice_at),
        declared_to_first_tenant_notice: first_tenant_notice_at
            .map(|t| t.since(incident.declared_at).as_secs()),
        time_to_mitigate: since(mitigated_at),
        time_to_resolve: since(incident.resolved_at),
    }
}

/// A duration in seconds as people read it, or "—".
pub fn seconds(s: Option<u64>) -> String {
    s.map(|s| human_duration(std::time::Duration::from_secs(s)))
        .unwrap_or_else(|| "—".into())
}
