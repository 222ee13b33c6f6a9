//! Text shared by the renderers: rule titles, label lists, status words and durations, so that
//! Slack, e-mail, PagerDuty and Alertmanager say the same thing in the same words.

use std::time::Duration;

use intake_core::Timestamp;

use crate::notice::{
    AlertItem, AlertStatus, IncidentStatus, Labels, Notice, NoticeKind, SilenceStatus,
};

/// Labels the dashboard filters on, in the order people read them.
pub(crate) const FILTER_LABELS: [&str; 4] = ["tenant", "source", "channel", "destination"];

/// The order labels are shown in: the rule first, then tenant → source → channel →
/// destination (from the widest scope to the narrowest), then any others alphabetically.
const PREFERRED: [&str; 5] = ["rule", "tenant", "source", "channel", "destination"];

/// Labels in reading order.
pub(crate) fn ordered(labels: &Labels) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = PREFERRED
        .iter()
        .filter_map(|k| labels.get_key_value(*k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    out.extend(
        labels
            .iter()
            .filter(|(k, _)| !PREFERRED.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    out
}

/// `tenant=maelys, source=maelys-kustomer` ("all" when there are none).
pub(crate) fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "all".into();
    }
    ordered(labels)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The labels of `item` that its group does not already say (what tells members apart).
pub(crate) fn own_labels(item: &AlertItem, group: &Labels) -> Labels {
    item.labels
        .iter()
        .filter(|(k, v)| group.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A person's name for a built-in rule; the id itself for any other.
pub(crate) fn rule_title(rule: &str) -> &str {
    match rule {
        "inbound_stopped" => "Inbound flow stopped",
        "inbound_drop" => "Inbound flow dropped",
        "rejections_spike" => "Rejected webhooks rising",
        "queue_stalled" => "Queue stalled",
        "queue_backlog" => "Queue backlog growing",
        "processing_drop" => "Processing fell behind intake",
        "delivery_errors" => "Delivery errors above baseline",
        "dead_letters" => "Events dead-lettered",
        "canary_failed" => "Canary did not arrive",
        "source_gap" => "Events missing compared with the source",
        "notifier_failing" => "Notifications failing",
        "watchdog" => "Watchdog",
        other => other,
    }
}

/// The status word a notice starts with: `FIRING`, `RESOLVED`, …
pub(crate) fn status_word(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Alert(AlertStatus::Firing) => "FIRING",
        NoticeKind::Alert(AlertStatus::Repeat) => "STILL FIRING",
        NoticeKind::Alert(AlertStatus::Resolved) => "RESOLVED",
        NoticeKind::Silence(SilenceStatus::Created) => "SILENCE CREATED",
        NoticeKind::Silence(SilenceStatus::Expired) => "SILENCE EXPIRED",
        NoticeKind::Watchdog(_) => "WATCHDOG",
        NoticeKind::Incident(IncidentStatus::Declared) => "INCIDENT",
        NoticeKind::Incident(IncidentStatus::Updated) => "INCIDENT UPDATE",
        NoticeKind::Incident(IncidentStatus::Resolved) => "INCIDENT RESOLVED",
    }
}

/// `[FIRING] Inbound flow stopped: tenant=maelys (5 alerts)`.
pub(crate) fn alert_summary(
    kind: NoticeKind,
    rule: &str,
    group: &Labels,
    items: &[AlertItem],
) -> String {
    let word = status_word(kind);
    let title = rule_title(rule);
    match items {
        [one] => format!("[{word}] {title}: {}", labels_text(&one.labels)),
        many => format!(
            "[{word}] {title}: {} ({} alerts)",
            labels_text(group),
            many.len()
        ),
    }
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
        out.push_str(&format!("Incident: {} - {}\n", i.id, i.title));
        if !i.tenants.is_empty() {
            out.push_str(&format!("Tenants:  {}\n", i.tenants.join(", ")));
        }
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

    #[test]
    fn labels_read_from_wide_to_narrow() {
        let l: Labels = [("channel", "chat"), ("zone", "x"), ("tenant", "m")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels_text(&l), "tenant=m, channel=chat, zone=x");
        assert_eq!(labels_text(&Labels::new()), "all");
    }
}
