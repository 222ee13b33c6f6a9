//! The words a notice is written with: rule titles, status words and label lists in reading
//! order. The notice builders use them for a notice's summary and links; the renderers
//! (`render.rs`, which re-exports them) use the same ones, so that every channel says the same
//! thing in the same words. This module depends only on the notice's own types.

use super::{
    AlertItem, AlertStatus, DrillStatus, IncidentStatus, Labels, NoticeKind, SilenceStatus,
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
        "drill_failed" => "Scheduled fire drill failed",
        "completion_stalled" => "Handler work not confirmed",
        "completion_errors" => "Handler work failing",
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
        NoticeKind::Drill(DrillStatus::Probe) => "DRILL PROBE",
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

#[cfg(test)]
mod tests {
    use super::*;

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
