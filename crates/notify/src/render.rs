//! Text shared by the renderers: durations, values, alert lines and the plain-text body, so
//! that Slack, e-mail, PagerDuty and Alertmanager say the same thing in the same words. The
//! words a notice itself is built with (rule titles, status words, label lists) live with the
//! notice, in `crate::notice::words`, and are re-exported here for the renderers: this module
//! reads notices, the notice module never reads it.

use std::time::Duration;

use intake_core::Timestamp;

use crate::notice::{AlertItem, IncidentInfo, Labels, Notice};

pub(crate) use crate::notice::words::{labels_text, rule_title, status_word};

/// The labels of `item` that its group does not already say (what tells members apart).
pub(crate) fn own_labels(item: &AlertItem, group: &Labels) -> Labels {
    item.labels
        .iter()
        .filter(|(k, v)| group.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `1h 12m`, `42m`, `35s`, `2d 3h`: the two largest units, for people.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A value for people: whole numbers without decimals, others with up to 3 significant
/// decimals.
pub(crate) fn value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// "since 2026-11-28T10:00:00.000Z (for 42m)" or, when resolved, "from … to … (1h 12m)".
pub(crate) fn item_when(item: &AlertItem, now: Timestamp) -> String {
    match item.resolved_at {
        Some(end) => format!(
            "from {} to {} (lasted {})",
            item.started_at,
            end,
            duration(end.since(item.started_at))
        ),
        None => format!(
            "since {} (for {})",
            item.started_at,
            duration(now.since(item.started_at))
        ),
    }
}

/// The plain-text body shared by e-mail and (as a description) PagerDuty: what, who, how bad,
/// since when, why with numbers, each alert of a group, and the links.
pub(crate) fn plain_text(n: &Notice) -> String {
    // A tenant's incident notice is the tenant template, written to be forwarded as it is:
    // nothing of on-call's vocabulary (keys, rules, labels) is added to it.
    if let Some(text) = n.tenant_text() {
        return format!("{}\n", text.trim_end());
    }
    let mut out = String::new();
    out.push_str(&n.summary);
    out.push_str("\n\n");
    if let Some(rule) = &n.rule {
        out.push_str(&format!("Rule:     {rule} ({})\n", rule_title(rule)));
    }
    out.push_str(&format!("Severity: {}\n", severity(n)));
    if !n.labels.is_empty() {
        out.push_str(&format!("Who:      {}\n", labels_text(&n.labels)));
    }
    if let Some(since) = n.since {
        out.push_str(&format!(
            "Since:    {since} ({} before this notice)\n",
            duration(n.at.since(since))
        ));
    }
    out.push_str(&format!("Why:      {}\n", n.reason));
    if let Some(s) = &n.silence {
        out.push_str(&format!(
            "Silence:  {} matching {}\n          from {} to {}\n          by {}: {}\n",
            s.id,
            labels_text(&s.matchers),
            s.starts_at,
            s.ends_at,
            s.created_by,
            s.comment
        ));
    }
    if let Some(i) = &n.incident {
        out.push_str(&incident_facts(i));
    }
    if n.alerts.len() > 1 || n.alerts.iter().any(|a| a.value.is_some()) {
        out.push_str(&format!("\nAlerts ({}):\n", n.alerts.len()));
        for a in &n.alerts {
            out.push_str(&format!("  - {}\n", item_line(a, &n.labels, n.at)));
        }
    }
    if n.links.dashboard.is_some() || n.links.events.is_some() {
        out.push('\n');
    }
    if let Some(d) = &n.links.dashboard {
        out.push_str(&format!("Dashboard: {d}\n"));
    }
    if let Some(e) = &n.links.events {
        out.push_str(&format!("Events:    {e}\n"));
    }
    out.push_str(&format!("\nKey: {}\nSent by intake at {}\n", n.key, n.at));
    out
}

/// An incident's facts for on-call, one per line: id and title, status, tenants, sources,
/// channels, impact start, commander.
pub(crate) fn incident_facts(i: &IncidentInfo) -> String {
    let mut out = format!("Incident: {} - {}\n", i.id, i.title);
    if let Some(s) = i.status {
        let severity = i.severity.map(|v| format!(" ({v})")).unwrap_or_default();
        out.push_str(&format!("Status:   {s}{severity}\n"));
    }
    for (label, list) in [
        ("Tenants: ", &i.tenants),
        ("Sources: ", &i.sources),
        ("Channels:", &i.channels),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("{label} {}\n", list.join(", ")));
        }
    }
    if let Some(t) = i.impact_start {
        out.push_str(&format!("Impact:   since {t}\n"));
    }
    if let Some(c) = &i.commander {
        out.push_str(&format!("Lead:     {c}\n"));
    }
    out
}

/// One alert of a group on one line: `channel=chat: <reason> [value 0] since … (for 42m)` and
/// `RESOLVED` in front when it is.
pub(crate) fn item_line(a: &AlertItem, group: &Labels, now: Timestamp) -> String {
    let own = own_labels(a, group);
    let who = if own.is_empty() {
        labels_text(&a.labels)
    } else {
        labels_text(&own)
    };
    let state = if a.is_resolved() { "RESOLVED " } else { "" };
    let value = a
        .value
        .map(|v| format!(" [value {}]", value(v)))
        .unwrap_or_default();
    format!("{state}{who}: {}{value}, {}", a.reason, item_when(a, now))
}

/// The severity in lower case, as configured.
pub(crate) fn severity(n: &Notice) -> &'static str {
    n.severity.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(Duration::from_secs(35)), "35s");
        assert_eq!(duration(Duration::from_secs(42 * 60 + 5)), "42m");
        assert_eq!(duration(Duration::from_secs(3600)), "1h");
        assert_eq!(duration(Duration::from_secs(4320)), "1h 12m");
        assert_eq!(
            duration(Duration::from_secs(2 * 86_400 + 3 * 3600 + 60)),
            "2d 3h"
        );
        assert_eq!(duration(Duration::from_secs(86_400 + 59)), "1d");
    }

    #[test]
    fn values_drop_needless_decimals() {
        assert_eq!(value(0.0), "0");
        assert_eq!(value(420.0), "420");
        assert_eq!(value(0.125), "0.125");
        assert_eq!(value(0.5), "0.5");
        assert_eq!(value(1.0 / 3.0), "0.333");
    }
}
