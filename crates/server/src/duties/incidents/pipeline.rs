//! The monitor's part of incidents, decided after each evaluation in the notification
//! pipeline (level-triggered, like the alert notifications, and committed in the same
//! transaction): from the alert book and the incidents as stored, what to write.
//!
//! * **Alerts join.** A firing alert that names a tenant of an open incident is recorded in
//!   its timeline (at the time it started firing), and its source and channel join the
//!   incident's scope when the incident lists some; when it leaves the book, its resolution is
//!   recorded.
//! * **Critical alerts declare.** A critical alert of one of the rules that name a tenant's
//!   stopped traffic (`intake_core::incident::AUTO_DECLARE_RULES`), whose rule's policy says
//!   `auto_declare`, not silenced, about a tenant no open incident covers, declares one
//!   (one per tenant, whatever the number of alerts), unless that very alert (same rule,
//!   labels and start) is already in an incident, open or resolved in the last week: a person
//!   who resolved it while the alert fires is not contradicted.
//! * **Tenants are told without a person** when the policy says `auto_notify_tenants`: at once,
//!   or after the hold if an alert of the incident still fires then. If every alert resolved
//!   within the hold and no person wrote to the incident, it resolves by itself and tenants
//!   are never bothered; on-call is told either way.
//!
//! Pure: the inputs are what the pipeline read; the output is a list of writes. A write whose
//! incident changed meanwhile is left out by the store and decided again next time.

use std::collections::{BTreeMap, BTreeSet};

use intake_core::config::Severity;
use intake_core::incident::{IncidentSeverity, IncidentState, AUTO_DECLARE_RULES};
use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, AlertState};
use intake_notify::IncidentStatus;
use intake_store::{Incident, IncidentWrite, NewIncidentEntry, NewNotification, Silence};
use serde_json::json;

use super::lifecycle;
use super::notices::{human_duration, human_time, Notices};
use super::{AutoDeclared, TrackedAlert, Tracking};
use crate::duties::notify::decide::{alert_labels, silenced_by};

/// A firing alert that names a tenant, as the pipeline reads the book.
#[derive(Debug, Clone)]
struct Firing {
    key: String,
    rule: String,
    labels: BTreeMap<String, String>,
    tenant: String,
    severity: Severity,
    active_since: Timestamp,
    firing_since: Timestamp,
    value: f64,
    reason: String,
}

impl Firing {
    fn tracked(&self) -> TrackedAlert {
        TrackedAlert {
            rule: self.rule.clone(),
            labels: self.labels.clone(),
            active_since: self.active_since,
            firing_since: self.firing_since,
            resolved_at: None,
        }
    }
}

/// What one evaluation writes for incidents. `new_id` makes the id of an incident declared
/// now.
pub(crate) fn decide(
    book: &[ActiveAlert],
    silences: &[Silence],
    incidents: &[Incident],
    notices: &Notices<'_>,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<IncidentWrite> {
    let firing = firing(book);
    let mut writes = Vec::new();
    let mut covered = BTreeSet::new();
    for incident in incidents.iter().filter(|i| i.is_open()) {
        covered.extend(incident.tenants.iter().cloned());
        if let Some(w) = follow(incident, &firing, notices) {
            writes.push(w);
        }
    }
    // An alert already in an incident, open or recently resolved, declares nothing more.
    let known: BTreeSet<(String, Timestamp)> = incidents
        .iter()
        .flat_map(|i| Tracking::of(i).alerts.into_iter())
        .map(|(k, a)| (k, a.active_since))
        .collect();
    let mut triggers: BTreeMap<String, Vec<(&Firing, AutoDeclared)>> = BTreeMap::new();
    for f in &firing {
        if covered.contains(&f.tenant)
            || known.contains(&(f.key.clone(), f.active_since))
            || f.severity != Severity::Critical
            || !AUTO_DECLARE_RULES.contains(&f.rule.as_str())
            || silenced_by(&f.rule, &f.labels, silences, notices.now).is_some()
        {
            continue;
        }
        let config = notices.config;
        let policy = config.incidents.policy(
            &config.rules,
            &f.rule,
            &f.tenant,
            f.labels.get("source").map(String::as_str),
        );
        if policy.declare {
            triggers.entry(f.tenant.clone()).or_default().push((
                f,
                AutoDeclared {
                    rule: f.rule.clone(),
                    notify_tenants: policy.notify_tenants,
                    hold_until: notices.now.plus(policy.hold),
                },
            ));
        }
    }
    for (tenant, list) in triggers {
        let all: Vec<&Firing> = firing.iter().filter(|f| f.tenant == tenant).collect();
        writes.push(declare(&tenant, &list, &all, notices, new_id()));
    }
    writes
}

/// The firing alerts of the book that name a tenant.
fn firing(book: &[ActiveAlert]) -> Vec<Firing> {
    book.iter()
        .filter(|a| a.state == AlertState::Firing && !a.key.labels.tenant.is_empty())
        .map(|a| {
            let labels = alert_labels(a);
            Firing {
                key: intake_notify::group_key(&a.key.rule, &labels),
                rule: a.key.rule.clone(),
                tenant: a.key.labels.tenant.clone(),
                labels,
                severity: a.severity,
                active_since: a.active_since,
                firing_since: a.firing_since.unwrap_or(a.active_since),
                value: a.value,
                reason: a.reason.clone(),
            }
        })
        .collect()
}

/// An open incident's alerts joining and resolving, and its hold ending.
fn follow(incident: &Incident, firing: &[Firing], notices: &Notices<'_>) -> Option<IncidentWrite> {
    let now = notices.now;
    let mut tracking = Tracking::of(incident);
    let mut next = incident.clone();
    let mut entries = Vec::new();
    for f in firing
        .iter()
        .filter(|f| incident.tenants.contains(&f.tenant))
    {
        let known = tracking
            .alerts
            .get(&f.key)
            .is_some_and(|a| a.resolved_at.is_none() && a.active_since == f.active_since);
        if !known {
            tracking.alerts.insert(f.key.clone(), f.tracked());
            entries.push(firing_entry(f));
            widen_scope(&mut next, f);
        }
    }
    for (key, a) in tracking.alerts.iter_mut() {
        let still = firing
            .iter()
            .any(|f| f.key == *key && f.active_since == a.active_since);
        if a.resolved_at.is_none() && !still {
            a.resolved_at = Some(now);
            entries.push(resolved_entry(a, now));
        }
    }
    let out = end_of_hold(&mut next, &mut tracking, &mut entries, notices);
    if entries.is_empty() && out.is_empty() {
        return None;
    }
    if next.status != IncidentState::Resolved {
        next.tracking = tracking.to_json();
    }
    next.updated_at = now;
    Some(IncidentWrite {
        incident: next,
        expected_version: Some(incident.version),
        entries,
        notices: out,
    })
}

/// When an automatic declaration's hold has ended: tells the tenants not told yet if an alert
/// still fires; resolves the incident if none does and no person wrote to it.
fn end_of_hold(
    incident: &mut Incident,
    tracking: &mut Tracking,
    entries: &mut Vec<NewIncidentEntry>,
    notices: &Notices<'_>,
) -> Vec<NewNotification> {
    let now = notices.now;
    let Some(auto) = tracking.auto.clone() else {
        return Vec::new();
    };
    let untold: Vec<String> = incident
        .tenants
        .iter()
        .filter(|t| !tracking.told.contains(*t))
        .cloned()
        .collect();
    if !auto.notify_tenants || untold.is_empty() || now < auto.hold_until {
        return Vec::new();
    }
    let any_firing = tracking.alerts.values().any(|a| a.resolved_at.is_none());
    if any_firing {
        let message = declared_message(&auto.rule);
        let mut out = Vec::new();
        for t in &untold {
            out.extend(notices.tenant(incident, t, IncidentStatus::Declared, true, message));
            tracking.told.insert(t.clone());
        }
        entries.push(NewIncidentEntry {
            at: now,
            kind: "tenants_told".into(),
            author: None,
            text: format!(
                "The hold ended with an alert still firing: tenants told ({}).",
                untold.join(", ")
            ),
            detail: json!({ "tenants": untold }),
        });
        return out;
    }
    if tracking.touched {
        return Vec::new();
    }
    let message =
        "Every alert resolved within the hold: resolved by itself, and tenants were not told.";
    let (resolved, out) = lifecycle::resolved(incident, tracking, message, notices);
    *incident = resolved;
    entries.push(NewIncidentEntry {
        at: now,
        kind: "resolved".into(),
        author: None,
        text: message.into(),
        detail: json!({ "automatic": true }),
    });
    out
}

/// A new incident declared by the critical alerts `triggers` of `tenant`; `all` are every
/// firing alert of the tenant, all recorded in it.
fn declare(
    tenant: &str,
    triggers: &[(&Firing, AutoDeclared)],
    all: &[&Firing],
    notices: &Notices<'_>,
    id: String,
) -> IncidentWrite {
    let now = notices.now;
    let first = triggers
        .iter()
        .min_by_key(|(f, _)| (f.firing_since, f.rule.clone()))
        .map(|(f, _)| *f)
        .unwrap_or(all[0]);
    let notify_tenants = triggers.iter().any(|(_, p)| p.notify_tenants);
    let hold_until = triggers
        .iter()
        .filter(|(_, p)| p.notify_tenants)
        .map(|(_, p)| p.hold_until)
        .min()
        .unwrap_or(now);
    let mut sources = BTreeSet::new();
    let mut channels = BTreeSet::new();
    for f in all {
        sources.extend(f.labels.get("source").cloned());
        channels.extend(f.labels.get("channel").cloned());
    }
    let auto = AutoDeclared {
        rule: first.rule.clone(),
        notify_tenants,
        hold_until,
    };
    let mut tracking = Tracking {
        alerts: all.iter().map(|f| (f.key.clone(), f.tracked())).collect(),
        auto: Some(auto.clone()),
        ..Tracking::default()
    };
    let mut incident = Incident {
        id,
        title: title(&first.rule).to_string(),
        severity: IncidentSeverity::Critical,
        status: IncidentState::Investigating,
        tenants: vec![tenant.to_string()],
        sources: sources.into_iter().collect(),
        channels: channels.into_iter().collect(),
        commander: None,
        impact_start: triggers
            .iter()
            .map(|(f, _)| f.active_since)
            .min()
            .unwrap_or(now),
        declared_at: now,
        declared_by: format!("rule:{}", first.rule),
        updated_at: now,
        resolved_at: None,
        next_update_at: Some(now.plus(notices.config.incidents.update_every.0)),
        tracking: serde_json::Value::Null,
        version: 1,
    };
    let message = declared_message(&first.rule);
    let mut entries: Vec<NewIncidentEntry> = all.iter().map(|f| firing_entry(f)).collect();
    entries.push(NewIncidentEntry {
        at: now,
        kind: "declared".into(),
        author: None,
        text: format!(
            "Declared by the critical alert {} ({}): {}",
            first.rule,
            labels_text(&first.labels),
            first.reason
        ),
        detail: json!({
            "rule": first.rule,
            "tenants": [tenant],
            "notify_tenants": notify_tenants,
            "hold_until": hold_until,
            "message": message,
        }),
    });
    let mut out = notices.oncall(&incident, IncidentStatus::Declared, message);
    if notify_tenants && hold_until <= now {
        out.extend(notices.tenant(&incident, tenant, IncidentStatus::Declared, true, message));
        tracking.told.insert(tenant.to_string());
    } else {
        entries.push(held_entry(&auto, now));
    }
    incident.tracking = tracking.to_json();
    IncidentWrite {
        incident,
        expected_version: None,
        entries,
        notices: out,
    }
}

/// Why the tenant was not told at the declaration.
fn held_entry(auto: &AutoDeclared, now: Timestamp) -> NewIncidentEntry {
    let text = if auto.notify_tenants {
        format!(
            "Tenants are told at {} (a {} hold) if an alert still fires then.",
            human_time(auto.hold_until),
            human_duration(auto.hold_until.since(now))
        )
    } else {
        format!(
            "auto_notify_tenants is off for {}: tenants are told at the first update a person writes (intake incident update).",
            auto.rule
        )
    };
    NewIncidentEntry {
        at: now,
        kind: "tenant_notice_held".into(),
        author: None,
        text,
        detail: json!({ "hold_until": auto.hold_until, "notify_tenants": auto.notify_tenants }),
    }
}

fn firing_entry(f: &Firing) -> NewIncidentEntry {
    NewIncidentEntry {
        at: f.firing_since,
        kind: "alert_firing".into(),
        author: None,
        text: format!(
            "Alert {} fired ({}): {}",
            f.rule,
            labels_text(&f.labels),
            f.reason
        ),
        detail: json!({
            "rule": f.rule,
            "labels": f.labels,
            "severity": f.severity,
            "value": f.value,
            "active_since": f.active_since,
        }),
    }
}

fn resolved_entry(a: &TrackedAlert, now: Timestamp) -> NewIncidentEntry {
    NewIncidentEntry {
        at: now,
        kind: "alert_resolved".into(),
        author: None,
        text: format!(
            "Alert {} resolved ({}) after {}",
            a.rule,
            labels_text(&a.labels),
            human_duration(now.since(a.firing_since))
        ),
        detail: json!({ "rule": a.rule, "labels": a.labels, "firing_since": a.firing_since }),
    }
}

/// A joining alert's source and channel join the incident's lists when it has any (an empty
/// list means every source, or every channel, already).
fn widen_scope(incident: &mut Incident, f: &Firing) {
    for (list, label) in [
        (&mut incident.sources, "source"),
        (&mut incident.channels, "channel"),
    ] {
        if let Some(v) = f.labels.get(label) {
            if !list.is_empty() && !list.contains(v) {
                list.push(v.clone());
                list.sort();
            }
        }
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    ["tenant", "source", "channel", "destination"]
        .iter()
        .filter_map(|k| labels.get(*k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The title of an incident a rule's alert declared: what tenants read in the subject.
pub fn title(rule: &str) -> &'static str {
    match rule {
        "inbound_stopped" => "Incoming webhooks stopped",
        "canary_failed" => "Webhooks not getting through",
        "queue_stalled" => "Webhook processing stalled",
        "source_gap" => "Events missing from what we received",
        "dead_letters" => "Webhooks could not be delivered",
        _ => "Webhook processing problem",
    }
}

/// What an incident a rule's alert declared tells tenants first, in plain words.
pub fn declared_message(rule: &str) -> &'static str {
    match rule {
        "inbound_stopped" => "We have stopped receiving webhooks from your systems where we normally receive them. We are finding out why.",
        "canary_failed" => "The test webhooks we send through our whole system are not getting through, so yours may be delayed. We are finding out why.",
        "queue_stalled" => "Webhooks from your systems are received and stored safely, but their processing has stalled, so they are delayed. We are working on it.",
        "source_gap" => "Some events recorded in your systems never reached us. We are finding out why, and we will recover them.",
        "dead_letters" => "Some webhooks from your systems could not be processed after repeated attempts. They are kept, and we are working on delivering them.",
        _ => "We have detected a problem with the webhooks we receive for you and are working on it.",
    }
}

#[cfg(test)]
mod tests;
