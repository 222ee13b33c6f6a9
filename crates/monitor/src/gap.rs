//! `source_gap`: the one rule whose input is not a counter. The server's `reconcile` duty
//! compares each source's system of record (through its API) with what intake received and
//! keeps the *open gaps* it found — windows with events intake never got — until every missing
//! event has arrived. The monitor is handed those gaps before each evaluation
//! ([`crate::Monitor::observe_gaps`]) and decides here, as for every rule: a finding while the
//! source has at least `threshold` missing events, with the numbers behind it; none once the
//! gaps have closed, which resolves the alert through the same book and hysteresis as the
//! others.

use std::collections::BTreeMap;

use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::params::SourceGap;

/// One source's open gaps, as the reconcile duty last recorded them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapReport {
    /// The system of record as people name it (`Kustomer`), for the reason.
    pub vendor: String,
    /// The open gaps, oldest first.
    pub gaps: Vec<OpenGap>,
}

/// A window in which the system of record has events intake has not received (yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenGap {
    /// The window's start (exclusive).
    pub from: Timestamp,
    /// The window's end (inclusive).
    pub to: Timestamp,
    /// The events still missing.
    pub missing: u64,
    /// Of which, by channel.
    pub by_channel: BTreeMap<String, u64>,
    /// The first missing ones (object ids, or dedupe keys).
    pub first: Vec<String>,
    /// The backfill job started for this gap, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
    /// That job's state when the gap was last looked at (`running`, `failed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_state: Option<String>,
}

/// How many missing items a reason quotes at most.
const QUOTED: usize = 5;

/// The alert's value and reason for one source's gaps, or `None` when it must not fire:
/// fewer than the rule's threshold of events are missing.
pub fn decide(report: &GapReport, p: &SourceGap) -> Option<(f64, String)> {
    let missing: u64 = report.gaps.iter().map(|g| g.missing).sum();
    if missing == 0 || missing < p.min_missing {
        return None;
    }
    Some((missing as f64, reason(report, missing)))
}

/// "12 events missing compared with Kustomer's API in 10:00–10:10 UTC: 7 email, 5 chat;
/// first: …; auto-backfill started rec_… (running)".
fn reason(report: &GapReport, missing: u64) -> String {
    let open: Vec<&OpenGap> = report.gaps.iter().filter(|g| g.missing > 0).collect();
    let mut by_channel: BTreeMap<&str, u64> = BTreeMap::new();
    for g in &open {
        for (c, n) in &g.by_channel {
            *by_channel.entry(c.as_str()).or_default() += n;
        }
    }
    let mut channels: Vec<(&str, u64)> = by_channel.into_iter().collect();
    // Largest first; ties by name, so the text is stable.
    channels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let channels: Vec<String> = channels.iter().map(|(c, n)| format!("{n} {c}")).collect();
    let from = open.iter().map(|g| g.from).min().unwrap_or_default();
    let to = open.iter().map(|g| g.to).max().unwrap_or_default();
    let windows = match open.len() {
        1 => String::new(),
        n => format!(" ({n} windows)"),
    };
    let vendor = if report.vendor.is_empty() {
        "the source"
    } else {
        report.vendor.as_str()
    };
    let noun = if missing == 1 { "event" } else { "events" };
    let mut text = format!(
        "{missing} {noun} missing compared with {vendor}'s API in {}{windows}",
        span(from, to)
    );
    if !channels.is_empty() {
        text.push_str(&format!(": {}", channels.join(", ")));
    }
    let first: Vec<&str> = open
        .iter()
        .flat_map(|g| g.first.iter().map(String::as_str))
        .take(QUOTED)
        .collect();
    if !first.is_empty() {
        let more = if missing as usize > first.len() {
            ", …"
        } else {
            ""
        };
        text.push_str(&format!("; first: {}{more}", first.join(", ")));
    }
    let jobs: Vec<String> = open
        .iter()
        .filter_map(|g| {
            g.backfill.as_ref().map(|id| match &g.backfill_state {
                Some(state) => format!("{id} ({state})"),
                None => id.clone(),
            })
        })
        .collect();
    if !jobs.is_empty() {
        text.push_str(&format!("; auto-backfill started {}", jobs.join(", ")));
    }
    text
}

/// `10:00–10:10 UTC`, with seconds when they are not zero, and the dates when the window
/// does not lie within one day.
pub fn span(from: Timestamp, to: Timestamp) -> String {
    let (fd, ft) = parts(from);
    let (td, tt) = parts(to);
    if fd == td {
        format!("{ft}–{tt} UTC")
    } else {
        format!("{fd} {ft}–{td} {tt} UTC")
    }
}

/// The date and the time of day (`HH:MM`, or `HH:MM:SS`) of an instant, in UTC.
fn parts(t: Timestamp) -> (String, String) {
    // `2026-11-28T10:00:00.000Z`
    let text = t.to_rfc3339();
    let date = text.get(0..10).unwrap_or(&text).to_string();
    let hm = text.get(11..16).unwrap_or("");
    let time = match text.get(17..19) {
        Some(s) if s != "00" => format!("{hm}:{s}"),
        _ => hm.to_string(),
    };
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn gap(from: &str, to: &str, channels: &[(&str, u64)], first: &[&str]) -> OpenGap {
        OpenGap {
            from: t(from),
            to: t(to),
            missing: channels.iter().map(|c| c.1).sum(),
            by_channel: channels.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            first: first.iter().map(|s| s.to_string()).collect(),
            backfill: None,
            backfill_state: None,
        }
    }

    fn kustomer(gaps: Vec<OpenGap>) -> GapReport {
        GapReport {
            vendor: "Kustomer".into(),
            gaps,
        }
    }

    #[test]
    fn the_rule_fires_while_events_are_missing_and_says_which() {
        let one = gap(
            "2026-11-28T10:00:00Z",
            "2026-11-28T10:10:00Z",
            &[("chat", 5), ("email", 7)],
            &["c1", "c2", "m3"],
        );
        let mut started = one.clone();
        started.backfill = Some("rec_01".into());
        started.backfill_state = Some("running".into());
        let later = gap(
            "2026-11-28T10:10:00Z",
            "2026-11-28T10:20:00Z",
            &[("email", 1)],
            &["c9"],
        );
        let midnight = gap(
            "2026-11-28T23:55:30Z",
            "2026-11-29T00:05:30Z",
            &[("sms", 1)],
            &["s1"],
        );
        let closed = gap("2026-11-28T09:50:00Z", "2026-11-28T10:00:00Z", &[], &[]);
        let p = SourceGap::default();
        let strict = SourceGap {
            min_missing: 13,
            ..SourceGap::default()
        };
        // (what, the gaps, the rule's parameters, the value and reason wanted)
        type Case<'a> = (&'a str, GapReport, &'a SourceGap, Option<(f64, &'a str)>);
        let cases: Vec<Case> = vec![
            ("no gap", kustomer(vec![]), &p, None),
            ("gaps all closed", kustomer(vec![closed.clone()]), &p, None),
            (
                "one gap",
                kustomer(vec![one.clone()]),
                &p,
                Some((
                    12.0,
                    "12 events missing compared with Kustomer's API in 10:00–10:10 UTC: \
                     7 email, 5 chat; first: c1, c2, m3, …",
                )),
            ),
            (
                "below the threshold",
                kustomer(vec![one.clone()]),
                &strict,
                None,
            ),
            (
                "with the auto-backfill it started",
                kustomer(vec![started]),
                &p,
                Some((
                    12.0,
                    "12 events missing compared with Kustomer's API in 10:00–10:10 UTC: \
                     7 email, 5 chat; first: c1, c2, m3, …; auto-backfill started rec_01 (running)",
                )),
            ),
            (
                "two windows, a closed one left out",
                kustomer(vec![closed, one, later]),
                &strict,
                Some((
                    13.0,
                    "13 events missing compared with Kustomer's API in 10:00–10:20 UTC \
                     (2 windows): 8 email, 5 chat; first: c1, c2, m3, c9, …",
                )),
            ),
            (
                "across midnight, one event, every item quoted",
                GapReport {
                    vendor: String::new(),
                    gaps: vec![midnight],
                },
                &p,
                Some((
                    1.0,
                    "1 event missing compared with the source's API in \
                     2026-11-28 23:55:30–2026-11-29 00:05:30 UTC: 1 sms; first: s1",
                )),
            ),
        ];
        for (what, report, params, want) in cases {
            let got = decide(&report, params);
            let got = got.as_ref().map(|(v, r)| (*v, r.as_str()));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_alert_fires_while_gaps_are_open_and_resolves_when_they_close() {
        use crate::{AlertState, Monitor, MonitorSettings, RuleBook, SourceKey};
        use intake_core::config::{RuleOverride, RuleThreshold, Severity};

        let key = SourceKey {
            tenant: "maelys".into(),
            source: "maelys-kustomer".into(),
        };
        let open = kustomer(vec![gap(
            "2026-11-28T10:00:00Z",
            "2026-11-28T10:10:00Z",
            &[("email", 2)],
            &["c1", "c2"],
        )]);
        let smaller = kustomer(vec![gap(
            "2026-11-28T10:00:00Z",
            "2026-11-28T10:10:00Z",
            &[("email", 1)],
            &["c2"],
        )]);
        let closed = kustomer(vec![]);
        // (what the reconcile duty reports, or `None` for a source no longer reconciled;
        // the transitions the evaluation emits)
        type Step<'a> = (Option<&'a GapReport>, &'a [AlertState]);
        let steps: &[Step] = &[
            (Some(&closed), &[]),
            (Some(&open), &[AlertState::Firing]),
            // Still open, fewer missing: no new transition.
            (Some(&smaller), &[]),
            // Closed: resolved at once (a closed gap is a fact, not a flap).
            (Some(&closed), &[AlertState::Resolved]),
            (Some(&open), &[AlertState::Firing]),
            // The source is no longer reconciled: its alert resolves too.
            (None, &[AlertState::Resolved]),
        ];
        let mut m = Monitor::new(RuleBook::default(), MonitorSettings::default());
        let mut now = t("2026-11-28T10:30:00Z");
        for (i, (report, want)) in steps.iter().enumerate() {
            match report {
                Some(r) => m.observe_gaps(&key, (*r).clone()),
                None => m.retain_gaps(|_| false),
            }
            let got: Vec<AlertState> = m
                .evaluate(now)
                .into_iter()
                .filter(|t| t.rule == "source_gap")
                .map(|t| {
                    assert_eq!(t.labels.tenant, "maelys");
                    assert_eq!(t.labels.source, "maelys-kustomer");
                    assert_eq!(t.severity, Severity::Critical);
                    t.state
                })
                .collect();
            assert_eq!(got, *want, "step {i}");
            now = now.plus(std::time::Duration::from_secs(60));
        }

        // An override scoped to the source raises the threshold and lowers the severity.
        let book = RuleBook::new(&[RuleOverride {
            rule: "source_gap".into(),
            tenant: None,
            source: Some("maelys-kustomer".into()),
            threshold: Some(RuleThreshold::Number(3.0)),
            for_: None,
            severity: Some(Severity::Warning),
            notifiers: vec![],
            ..Default::default()
        }])
        .unwrap();
        let mut m = Monitor::new(book, MonitorSettings::default());
        m.observe_gaps(&key, open.clone());
        assert!(m.evaluate(now).is_empty());
        let mut three = open;
        three.gaps[0].missing = 3;
        m.observe_gaps(&key, three);
        let t = m.evaluate(now.plus(std::time::Duration::from_secs(60)));
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].state, t[0].severity),
            (AlertState::Firing, Severity::Warning)
        );
        assert_eq!(t[0].value, 3.0);
    }
}
