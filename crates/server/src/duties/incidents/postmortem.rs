//! The postmortem draft: Markdown written from an incident's record, timeline and response
//! times, the reports of its recovery jobs and the audit of its impact window. Pure.
//!
//! Its shape is the story's own postmortem: a summary, the impact (who, how long, how many
//! events, by channel), the response times (detect, notify, mitigate, resolve), the timeline,
//! the recovery, then what only people can write — the root cause, what went well and what
//! did not, and the action items.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use intake_core::config::Config;
use intake_core::Timestamp;
use intake_store::{AuditCounts, Incident, RecoveryJob, RecoveryKind, Resolution};
use serde_json::Value;

use super::notices::{human_duration, human_time};
use super::view::{by_channel, seconds, IncidentDetail, TimelineItem};

/// The sources an incident's audit covers: its sources, or every source of its tenants.
pub fn audited_sources(incident: &Incident, config: &Config) -> Vec<String> {
    if !incident.sources.is_empty() {
        return incident.sources.clone();
    }
    config
        .sources
        .iter()
        .filter(|s| incident.tenants.contains(&s.tenant))
        .map(|s| s.id.clone())
        .collect()
}

/// The draft.
pub fn draft(
    d: &IncidentDetail,
    recoveries: &[RecoveryJob],
    audits: &[(String, AuditCounts)],
) -> String {
    let mut out = String::new();
    summary(&mut out, d);
    impact(&mut out, d, recoveries, audits);
    response(&mut out, d);
    timeline(&mut out, d);
    recovery(&mut out, recoveries);
    for_people(&mut out);
    out
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

fn window(d: &IncidentDetail) -> String {
    let i = &d.incident;
    let end = match i.resolved_at {
        Some(r) => human_time(r),
        None => "ongoing".into(),
    };
    format!(
        "{} → {end} ({})",
        human_time(i.impact_start),
        human_duration(std::time::Duration::from_secs(i.impact_seconds))
    )
}

fn summary(out: &mut String, d: &IncidentDetail) {
    let i = &d.incident;
    let _ = writeln!(out, "# Postmortem (draft): {}\n", i.title);
    let _ = writeln!(
        out,
        "> Drafted by intake from incident `{}`. The facts below come from its timeline, its \
         notices, its recovery jobs and the audit of its impact window; the sections marked \
         *to write* are for the people who ran it.\n",
        i.id
    );
    if let Some(drill) = &i.drill {
        let _ = writeln!(
            out,
            "> **A fire drill** (`{drill}`), not an outage: its fault was injected on purpose. \
             The impact window starts when the drill's fault began, so the response times below \
             are the drill's real detection and notification times.\n"
        );
    }
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let rows = [
        ("Incident", format!("`{}`", i.id)),
        ("Status", i.status.to_string()),
        ("Severity", i.severity.to_string()),
        ("Tenants affected", list_or(&i.tenants, "none")),
        (
            "Sources",
            list_or(&i.sources, "all of the tenants' sources"),
        ),
        ("Channels", list_or(&i.channels, "all")),
        ("Impact window", window(d)),
        (
            "Declared",
            format!("{} by {}", human_time(i.declared_at), i.declared_by),
        ),
        (
            "Lead",
            i.commander.clone().unwrap_or_else(|| "not named".into()),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    let _ = writeln!(
        out,
        "\n*To write:* what happened, in two or three sentences a tenant could read.\n"
    );
}

/// Per channel: events received in the impact window (the audit), missing events a backfill
/// found and ingested, deliveries a replay or requeue made again.
#[derive(Default)]
struct ChannelRow {
    received: u64,
    found: u64,
    backfilled: u64,
    redelivered: u64,
}

fn impact(
    out: &mut String,
    d: &IncidentDetail,
    recoveries: &[RecoveryJob],
    audits: &[(String, AuditCounts)],
) {
    let _ = writeln!(out, "## Impact\n");
    let _ = writeln!(
        out,
        "Tenants affected: {}, for {}.\n",
        list_or(&d.incident.tenants, "none"),
        window(d)
    );
    let mut rows: BTreeMap<String, ChannelRow> = BTreeMap::new();
    for (_, a) in audits {
        for (channel, n) in &a.stored_by_channel {
            rows.entry(channel.clone()).or_default().received += n;
        }
    }
    let mut conversations: BTreeMap<String, u64> = BTreeMap::new();
    for job in recoveries.iter().filter(|j| !j.dry_run) {
        let todo = &job.report["todo"];
        let counts: BTreeMap<String, u64> =
            serde_json::from_value(todo["by_channel"].clone()).unwrap_or_default();
        let complete = job.report["done"].as_u64() == todo["total"].as_u64();
        for (channel, n) in counts {
            let row = rows.entry(channel).or_default();
            match job.kind {
                RecoveryKind::Backfill => {
                    row.found += n;
                    if complete {
                        row.backfilled += n;
                    }
                }
                RecoveryKind::Replay | RecoveryKind::Requeue if complete => row.redelivered += n,
                _ => {}
            }
        }
        if job.kind == RecoveryKind::Backfill {
            let made: BTreeMap<String, u64> =
                serde_json::from_value(todo["new_conversations_by_channel"].clone())
                    .unwrap_or_default();
            for (c, n) in made {
                *conversations.entry(c).or_default() += n;
            }
        }
    }
    let _ = writeln!(out, "Events missed and recovered, by channel:\n");
    let _ = writeln!(
        out,
        "| channel | received during the impact | missing, found by backfill | backfilled | delivered again (replay, requeue) |\n|---|---:|---:|---:|---:|"
    );
    if rows.is_empty() {
        let _ = writeln!(out, "| (none recorded) | 0 | 0 | 0 | 0 |");
    }
    for (channel, r) in &rows {
        let _ = writeln!(
            out,
            "| {channel} | {} | {} | {} | {} |",
            r.received, r.found, r.backfilled, r.redelivered
        );
    }
    if !conversations.is_empty() {
        let list: Vec<String> = conversations
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        let _ = writeln!(
            out,
            "\nConversations whose creation was recovered: {}.",
            list.join(", ")
        );
    }
    audit_lines(out, audits);
}

fn audit_lines(out: &mut String, audits: &[(String, AuditCounts)]) {
    if audits.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nAudit of the impact window, per source:\n");
    for (source, a) in audits {
        let origins: Vec<String> = a
            .stored_by_origin
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "- `{source}` ({} → {}, {} counters{}): {} events stored ({}); {} duplicates, {} rejected",
            human_time(a.window.from),
            human_time(a.window.to),
            match a.window.resolution {
                Resolution::Minute => "minute",
                Resolution::Hour => "hourly",
            },
            if a.window.counters_kept { "" } else { ", some no longer kept" },
            a.stored,
            list_or(&origins, "none"),
            a.requests.duplicate,
            a.requests.rejected_signature + a.requests.rejected_invalid + a.requests.too_large,
        );
        for dst in &a.destinations {
            let _ = writeln!(
                out,
                "  - to `{}`: {} delivered, {} pending, {} dead, {} never queued",
                dst.destination, dst.delivered, dst.pending, dst.dead, dst.missing
            );
        }
    }
}

fn response(out: &mut String, d: &IncidentDetail) {
    let t = &d.times;
    let when = |x: Option<Timestamp>| x.map(human_time).unwrap_or_else(|| "—".into());
    let _ = writeln!(out, "\n## Response times\n");
    let _ = writeln!(
        out,
        "| step | when | after the impact began |\n|---|---|---|"
    );
    let declared_after = t
        .declared_at
        .zip(t.impact_start)
        .map(|(d, s)| d.since(s).as_secs());
    let rows = [
        ("Impact began", when(t.impact_start), "—".to_string()),
        (
            "Detected (first alert)",
            when(t.detected_at),
            seconds(t.time_to_detect),
        ),
        ("Declared", when(t.declared_at), seconds(declared_after)),
        (
            "First tenant notice delivered",
            when(t.first_tenant_notice_at),
            match t.declared_to_first_tenant_notice {
                Some(s) => format!(
                    "{} ({} after the declaration)",
                    seconds(t.time_to_notify),
                    seconds(Some(s))
                ),
                None => seconds(t.time_to_notify),
            },
        ),
        (
            "Mitigated",
            when(t.mitigated_at),
            seconds(t.time_to_mitigate),
        ),
        ("Resolved", when(t.resolved_at), seconds(t.time_to_resolve)),
    ];
    for (step, at, after) in rows {
        let _ = writeln!(out, "| {step} | {at} | {after} |");
    }
}

fn timeline(out: &mut String, d: &IncidentDetail) {
    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(out, "| time (UTC) | what |\n|---|---|");
    let _ = writeln!(
        out,
        "| {} | Impact began |",
        human_time(d.incident.impact_start)
    );
    let mut notices: Vec<&TimelineItem> = Vec::new();
    let flush = |out: &mut String, group: &mut Vec<&TimelineItem>| {
        if let Some(first) = group.first() {
            let _ = writeln!(out, "| {} | {} |", human_time(first.at), notice_line(group));
        }
        group.clear();
    };
    for item in &d.timeline {
        if item.kind == "notice" {
            let same = notices
                .first()
                .is_some_and(|n| n.at == item.at && n.detail["step"] == item.detail["step"]);
            if !same {
                flush(out, &mut notices);
            }
            notices.push(item);
            continue;
        }
        flush(out, &mut notices);
        let who = item
            .author
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {}{who} |",
            human_time(item.at),
            cell(&step_text(item))
        );
    }
    flush(out, &mut notices);
}

/// A timeline item in words: a person's step says which step it was.
fn step_text(item: &TimelineItem) -> String {
    let status = item.detail["status"].as_str().unwrap_or("");
    match (item.kind.as_str(), item.author.is_some()) {
        ("declared", true) => format!("Declared: {}", item.text),
        ("update", _) if !status.is_empty() => format!("Update ({status}): {}", item.text),
        ("update", _) => format!("Update: {}", item.text),
        ("resolved", true) => format!("Resolved: {}", item.text),
        _ => item.text.clone(),
    }
}

/// One line for the notices of one step made at one instant: to whom, and what came of each.
fn notice_line(group: &[&TimelineItem]) -> String {
    let step = group[0].detail["step"].as_str().unwrap_or("?");
    let each: Vec<String> = group
        .iter()
        .map(|n| {
            let to = n.detail["recipient"].as_str().unwrap_or("?");
            let outcome = match (
                n.detail["state"].as_str(),
                n.detail["delivered_at"].as_str(),
            ) {
                (Some("sent"), Some(at)) => Timestamp::parse_rfc3339(at)
                    .map(|t| format!("delivered {}", human_time(t)))
                    .unwrap_or_else(|_| "delivered".into()),
                (Some("dead"), _) => "NOT delivered".into(),
                _ => "not delivered yet".into(),
            };
            format!("{to}: {outcome}")
        })
        .collect();
    cell(&format!("Notice `{step}` sent to {}", each.join("; ")))
}

/// Text that fits in one table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn recovery(out: &mut String, recoveries: &[RecoveryJob]) {
    let _ = writeln!(out, "\n## Recovery\n");
    if recoveries.is_empty() {
        let _ = writeln!(
            out,
            "No recovery job covers the impact window. If events were lost, start with a dry run: `intake recover backfill --source S --from T --to T --dry-run`."
        );
        return;
    }
    for job in recoveries {
        let r = &job.report;
        let window = |k: &str| -> String {
            match &job.params[k] {
                Value::String(s) => Timestamp::parse_rfc3339(s)
                    .map(human_time)
                    .unwrap_or_else(|_| s.clone()),
                other => other.to_string(),
            }
        };
        let sor = match &r["sor"] {
            Value::Object(s) => format!(
                "; {} requests to the system of record ({} throttled)",
                s.get("requests").and_then(Value::as_u64).unwrap_or(0),
                s.get("throttled").and_then(Value::as_u64).unwrap_or(0)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "- `{}`: {}{} of `{}`, {} → {}, {}: {} to do ({}), {} done{sor}.",
            job.id,
            job.kind,
            if job.dry_run { " (dry run)" } else { "" },
            job.source,
            window("from"),
            window("to"),
            job.state,
            r["todo"]["total"].as_u64().unwrap_or(0),
            by_channel(&r["todo"]["by_channel"]),
            r["done"].as_u64().unwrap_or(0),
        );
    }
}

fn for_people(out: &mut String) {
    let _ = writeln!(
        out,
        "\n## Root cause\n\n*To write:* what broke, and why nothing stopped it sooner.\n"
    );
    let _ = writeln!(out, "## What went well, what went poorly\n\n*To write.*\n");
    let _ = writeln!(
        out,
        "## Action items\n\n| action | owner | due | tracking |\n|---|---|---|---|\n| *to write* | | | |"
    );
}
