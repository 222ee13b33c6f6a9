//! Notices and configurations shared by the tests.

use std::sync::Arc;

use intake_core::config::{NotifierConfig, NotifierKind, Severity};
use intake_core::{ManualClock, Timestamp};
use intake_notify::{AlertItem, AlertStatus, Labels, LinkBuilder, Notice, NotifyContext};

pub const PUBLIC_URL: &str = "http://intake.test:8080";
pub const CHANNELS: [&str; 5] = ["chat", "email", "sms", "voice", "whatsapp"];

pub fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A context whose clock reads 2026-11-28T10:20:00Z.
pub fn ctx() -> NotifyContext {
    let clock = ManualClock::new(t("2026-11-28T10:20:00Z"));
    NotifyContext::new(Arc::new(clock))
}

pub fn config(kind: NotifierKind, url: Option<String>) -> NotifierConfig {
    NotifierConfig {
        id: "n1".into(),
        kind,
        url,
        to: Vec::new(),
        from: None,
        smtp_url: None,
        ca_file: None,
        tls: None,
        routing_key: None,
        severities: Vec::new(),
    }
}

pub fn links() -> LinkBuilder {
    LinkBuilder::new(Some(PUBLIC_URL)).unwrap()
}

/// Five channels of tenant maelys gone quiet, one minute apart from 10:00, notified at 10:20.
pub fn five_quiet_channels(status: AlertStatus) -> Notice {
    let items = CHANNELS
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            let item = AlertItem::new(
                labels(&[
                    ("tenant", "maelys"),
                    ("source", "maelys-kustomer"),
                    ("channel", ch),
                ]),
                format!("0 {ch} events in 20m; baseline expects 30 (P(0) = 1e-13)"),
                t(&format!("2026-11-28T10:0{i}:00Z")),
            )
            .value(0.0);
            if status == AlertStatus::Resolved {
                item.resolved_at(t("2026-11-28T11:00:00Z"))
            } else {
                item
            }
        })
        .collect();
    let at = if status == AlertStatus::Resolved {
        t("2026-11-28T11:00:00Z")
    } else {
        t("2026-11-28T10:20:00Z")
    };
    Notice::alert(
        status,
        "inbound_stopped",
        Severity::Critical,
        labels(&[("tenant", "maelys"), ("source", "maelys-kustomer")]),
        items,
        at,
        &links(),
    )
}

/// One stalled destination queue.
pub fn queue_stalled(status: AlertStatus) -> Notice {
    let mut item = AlertItem::new(
        labels(&[("tenant", "maelys"), ("destination", "handler")]),
        "oldest pending delivery is 7m old (threshold 5m); 212 pending",
        t("2026-11-28T10:13:00Z"),
    )
    .value(420.0);
    let at = if status == AlertStatus::Resolved {
        item = item.resolved_at(t("2026-11-28T10:40:00Z"));
        t("2026-11-28T10:40:00Z")
    } else {
        t("2026-11-28T10:20:00Z")
    };
    Notice::alert(
        status,
        "queue_stalled",
        Severity::Critical,
        labels(&[("tenant", "maelys"), ("destination", "handler")]),
        vec![item],
        at,
        &links(),
    )
}
