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
//! * **Drills are not outages.** An alert a fire drill caused (`intake_core::drill::drill_of`,
//!   the same marking as its notifications: label `drill`) declares a *drill incident*: it
//!   names the drill, its title says `[DRILL]`, its impact starts when the drill's fault
//!   started (so the postmortem measures the drill's real detection), and its tenant notices
//!   are held unless `[incidents] drill_tenant_notices` (then each says it is a drill). A
//!   drill incident and a real one never merge: a drill's alerts join only the drill's own
//!   incident, real alerts only real incidents, so a real outage during a drill declares (or
//!   joins) a real incident. A drill incident no tenant was told of and no person wrote to
//!   resolves by itself once every alert of it resolved (the drill healed).
//!
//! Pure: the inputs are what the pipeline read; the output is a list of writes. A write whose
//! incident changed meanwhile is left out by the store and decided again next time.

use std::collections::{BTreeMap, BTreeSet};

use intake_core::config::Severity;
use intake_core::drill::{drill_of, DrillScope, DRILL_LABEL};
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
    /// The fire drill that caused it: its id and when its fault started.
    drill: Option<(String, Timestamp)>,
}

impl Firing {
    fn drill_id(&self) -> Option<&str> {
        self.drill.as_ref().map(|(id, _)| id.as_str())
    }

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

/// A tenant, and the drill for a drill incident: an open incident covers its tenants for the
/// alerts of its own kind only (real, or of its drill).
type Cover = (String, Option<String>);

/// What one evaluation writes for incidents. `drills` are the scopes of the recent fire drills
/// (what marks an alert as a drill's); `new_id` makes the id of an incident declared now.
pub(crate) fn decide(
    book: &[ActiveAlert],
    silences: &[Silence],
    drills: &[DrillScope],
    incidents: &[Incident],
    notices: &Notices<'_>,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<IncidentWrite> {
    let firing = firing(book, drills);
    let mut writes = Vec::new();
    let mut covered: BTreeSet<Cover> = BTreeSet::new();
    for incident in incidents.iter().filter(|i| i.is_open()) {
        covered.extend(
            incident
                .tenants
                .iter()
                .map(|t| (t.clone(), incident.drill.clone())),
        );
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
    let mut triggers: BTreeMap<Cover, Vec<(&Firing, AutoDeclared)>> = BTreeMap::new();
    for f in &firing {
        let cover = (f.tenant.clone(), f.drill_id().map(str::to_string));
        if covered.contains(&cover)
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
            // A drill's incident tells tenants only when the operator asked for drills to.
            let tenants_hear = f.drill.is_none() || config.incidents.drill_tenant_notices;
            triggers.entry(cover).or_default().push((
                f,
                AutoDeclared {
                    rule: f.rule.clone(),
                    notify_tenants: policy.notify_tenants && tenants_hear,
                    hold_until: notices.now.plus(policy.hold),
                },
            ));
        }
    }
    for ((tenant, drill), list) in triggers {
        let all: Vec<&Firing> = firing
            .iter()
            .filter(|f| f.tenant == tenant && f.drill_id() == drill.as_deref())
            .collect();
        writes.push(declare(&tenant, &list, &all, notices, new_id()));
    }
    writes
}

/// The firing alerts of the book that name a tenant, those a drill of `drills` caused marked
/// with its `drill` label (as their notifications are).
fn firing(book: &[ActiveAlert], drills: &[DrillScope]) -> Vec<Firing> {
    book.iter()
        .filter(|a| a.state == AlertState::Firing && !a.key.labels.tenant.is_empty())
        .map(|a| {
            let mut labels = alert_labels(a);
            let drill = drill_of(drills, &a.key.rule, &labels, a.active_since)
                .map(|d| (d.id.clone(), d.from));
            if let Some((id, _)) = &drill {
                labels.insert(DRILL_LABEL.to_string(), id.clone());
            }
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
                drill,
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
    // A drill's alerts join only that drill's incident; real alerts only real incidents.
    for f in firing
        .iter()
        .filter(|f| incident.tenants.contains(&f.tenant))
        .filter(|f| f.drill_id() == incident.drill.as_deref())
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
    if incident.drill.is_some() && !auto.notify_tenants {
        return drill_settled(incident, tracking, entries, notices);
    }
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
    resolve_by_itself(incident, tracking, entries, notices, message)
}

/// A drill incident whose tenants are not told resolves by itself once every alert of it
/// resolved (the drill healed), unless a person wrote to it: then it is theirs to resolve,
/// as practice of the whole response.
fn drill_settled(
    incident: &mut Incident,
    tracking: &mut Tracking,
    entries: &mut Vec<NewIncidentEntry>,
    notices: &Notices<'_>,
) -> Vec<NewNotification> {
    let any_firing = tracking.alerts.values().any(|a| a.resolved_at.is_none());
    if any_firing || tracking.touched || !tracking.told.is_empty() {
        return Vec::new();
    }
    let message =
        "Every alert of the drill resolved (the drill healed): resolved by itself; tenants were not told of a drill.";
    resolve_by_itself(incident, tracking, entries, notices, message)
}

/// Resolves `incident` without a person, saying `message`.
fn resolve_by_itself(
    incident: &mut Incident,
    tracking: &Tracking,
    entries: &mut Vec<NewIncidentEntry>,
    notices: &Notices<'_>,
    message: &str,
) -> Vec<NewNotification> {
    let (resolved, out) = lifecycle::resolved(incident, tracking, message, notices);
    *incident = resolved;
    entries.push(NewIncidentEntry {
        at: notices.now,
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
    // A drill's incident: marked, and its impact began with the drill's fault, not with the
    // alert's condition, so its response times measure the drill's real detection.
    let drill = first.drill.clone();
    let named = match &drill {
        Some(_) => format!("{DRILL_TITLE_MARK}{}", title(&first.rule)),
        None => title(&first.rule).to_string(),
    };
    let impact_start = match &drill {
        Some((_, from)) => *from,
        None => triggers
            .iter()
            .map(|(f, _)| f.active_since)
            .min()
            .unwrap_or(now),
    };
    let mut tracking = Tracking {
        alerts: all.iter().map(|f| (f.key.clone(), f.tracked())).collect(),
        auto: Some(auto.clone()),
        ..Tracking::default()
    };
    let mut incident = Incident {
        id,
        title: named,
        severity: IncidentSeverity::Critical,
        status: IncidentState::Investigating,
        tenants: vec![tenant.to_string()],
        sources: sources.into_iter().collect(),
        channels: channels.into_iter().collect(),
        commander: None,
        impact_start,
        declared_at: now,
        declared_by: format!("rule:{}", first.rule),
        updated_at: now,
        resolved_at: None,
        next_update_at: Some(now.plus(notices.config.incidents.update_every.0)),
        tracking: serde_json::Value::Null,
        drill: drill.as_ref().map(|(id, _)| id.clone()),
        version: 1,
    };
    let message = declared_message(&first.rule);
    let of_drill = drill
        .as_ref()
        .map(|(id, _)| format!(" of fire drill {id}"))
        .unwrap_or_default();
    let mut entries: Vec<NewIncidentEntry> = all.iter().map(|f| firing_entry(f)).collect();
    entries.push(NewIncidentEntry {
        at: now,
        kind: "declared".into(),
        author: None,
        text: format!(
            "Declared by the critical alert {}{of_drill} ({}): {}",
            first.rule,
            labels_text(&first.labels),
            first.reason
        ),
        detail: json!({
            "rule": first.rule,
            "drill": incident.drill,
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
        entries.push(held_entry(&auto, incident.drill.as_deref(), notices));
    }
    incident.tracking = tracking.to_json();
    IncidentWrite {
        incident,
        expected_version: None,
        entries,
        notices: out,
    }
}

/// Why the tenant was not told at the declaration (`drill`: of a drill incident).
fn held_entry(auto: &AutoDeclared, drill: Option<&str>, notices: &Notices<'_>) -> NewIncidentEntry {
    let now = notices.now;
    let held_for_drill = drill.is_some() && !notices.config.incidents.drill_tenant_notices;
    let text = if held_for_drill {
        format!(
            "A drill incident (fire drill {}): tenants are not told of a drill ([incidents] drill_tenant_notices is off), and it resolves by itself when the drill's alerts resolve unless someone writes to it.",
            drill.unwrap_or_default()
        )
    } else if auto.notify_tenants {
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
        detail: json!({
            "hold_until": auto.hold_until,
            "notify_tenants": auto.notify_tenants,
            "drill": drill,
            "held_for_drill": held_for_drill,
        }),
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
    ["tenant", "source", "channel", "destination", DRILL_LABEL]
        .iter()
        .filter_map(|k| labels.get(*k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a drill incident's title starts with.
pub const DRILL_TITLE_MARK: &str = "[DRILL] ";

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
