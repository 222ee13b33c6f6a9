//! A drill's pure decisions, each a function of what was observed and the instant, tested
//! with tables: what a drill has seen so far (its report, [`merge`]), whether it passed, failed
//! or keeps running ([`verdict`]), and what a person reads about it ([`summary`]).
//!
//! Which alerts count for a scenario is decided in `intake_core::drill` (the notification
//! pipeline marks drill alerts with the same function).

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::drill::Scenario;
use intake_core::Timestamp;
use intake_store::{Drill, DrillState, DrillUpdate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An expected alert of the drill, seen firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DrillAlert {
    /// Its rule.
    pub rule: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When it fired.
    pub at: Timestamp,
}

/// A notification of one of the drill's expected alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DrillNotice {
    /// The notifier it went to.
    pub notifier: String,
    /// The notice's key (its group).
    pub key: String,
    /// When it was queued (`routed`) or sent (`notification`).
    pub at: Timestamp,
}

/// What was missing when a drill failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillMissing {
    /// No expected alert fired.
    NoAlert,
    /// An expected alert fired but no notification was queued for it: no notifier takes it
    /// (routing, severities), or a silence mutes it.
    NotRouted,
    /// A notification was queued but never sent.
    NotDelivered,
}

impl DrillMissing {
    /// What it means, for people.
    pub fn describe(self, scenario: Scenario) -> String {
        match self {
            DrillMissing::NoAlert => format!(
                "no alert: none of {} fired for the drill's target",
                scenario.expected_rules().join(", ")
            ),
            DrillMissing::NotRouted => "alert but routed to no notifier: it fired, and no notification was queued for it (check [[rules]] notifiers, the notifiers' severities, and silences)".into(),
            DrillMissing::NotDelivered => "notification not delivered: it was queued but no notifier accepted it (check the notifiers' outbox: GET /api/v1/notifiers)".into(),
        }
    }
}

/// What a drill observed and concluded: the JSON document kept as the drill's `report`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DrillReport {
    /// The alerts whose firing and notification make it pass.
    #[serde(default)]
    pub expected: Vec<String>,
    /// The first expected alert seen firing.
    #[serde(default)]
    pub alert: Option<DrillAlert>,
    /// The first notification of it queued.
    #[serde(default)]
    pub routed: Option<DrillNotice>,
    /// The first notification of it sent.
    #[serde(default)]
    pub notification: Option<DrillNotice>,
    /// What was missing, when it failed.
    #[serde(default)]
    pub missing: Option<DrillMissing>,
    /// Who cancelled it, when cancelled.
    #[serde(default)]
    pub cancelled_by: Option<String>,
    /// Its outcome in one sentence.
    #[serde(default)]
    pub summary: String,
}

impl DrillReport {
    /// The report a new drill starts with.
    pub fn start(scenario: Scenario, target: &str, expires_at: Timestamp) -> Self {
        DrillReport {
            expected: scenario
                .expected_rules()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            summary: format!(
                "running: {}, until {expires_at} at the latest",
                scenario.describe(target)
            ),
            ..DrillReport::default()
        }
    }

    /// The stored report of a drill (a default one if it cannot be read).
    pub fn of(drill: &Drill) -> Self {
        serde_json::from_value(drill.report.clone()).unwrap_or_default()
    }

    /// As JSON, for the store.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What one look at the store found (each the earliest of its kind).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// An expected alert firing.
    pub alert: Option<DrillAlert>,
    /// A notification of it queued to a notifier that counts.
    pub routed: Option<DrillNotice>,
    /// One of those sent.
    pub sent: Option<DrillNotice>,
}

/// The report with what was just observed: each observation keeps the earliest seen, so a
/// drill's times do not move when an alert resolves or a notification is pruned.
pub fn merge(mut report: DrillReport, seen: Observed) -> DrillReport {
    fn earliest<T: Clone>(kept: &mut Option<T>, new: Option<T>, at: impl Fn(&T) -> Timestamp) {
        if let Some(n) = new {
            if kept.as_ref().is_none_or(|k| at(&n) < at(k)) {
                *kept = Some(n);
            }
        }
    }
    earliest(&mut report.alert, seen.alert, |a| a.at);
    earliest(&mut report.routed, seen.routed, |n| n.at);
    earliest(&mut report.notification, seen.sent, |n| n.at);
    report
}

/// Where a running drill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its alert fired and was notified: it passed (and heals now).
    Passed,
    /// Its bound passed first: it failed, with what was missing (and heals now).
    Failed(DrillMissing),
    /// Neither yet.
    Running,
}

/// The verdict at `now` of a drill whose fault ends at `expires_at`, from its report: passed
/// as soon as an expected alert fired and its notification was sent, both by the bound;
/// failed at the bound, saying what was missing; running until then. (A drill judged late —
/// its duty was down — is judged by the times it saw, never by what came after its bound.)
pub fn verdict(report: &DrillReport, now: Timestamp, expires_at: Timestamp) -> Verdict {
    let alert = report.alert.as_ref().filter(|a| a.at <= expires_at);
    let sent = report.notification.as_ref().filter(|n| n.at <= expires_at);
    match (alert, sent) {
        (Some(_), Some(_)) => Verdict::Passed,
        _ if now < expires_at => Verdict::Running,
        (None, _) => Verdict::Failed(DrillMissing::NoAlert),
        (Some(_), None) if report.routed.is_none() => Verdict::Failed(DrillMissing::NotRouted),
        (Some(_), None) => Verdict::Failed(DrillMissing::NotDelivered),
    }
}

/// `2m05s`: a duration for people.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The drill's outcome in one sentence.
pub fn summary(drill: &Drill, report: &DrillReport, state: DrillState) -> String {
    let what = drill.scenario.describe(&drill.target);
    let detect = report.alert.as_ref().map(|a| {
        format!(
            "{} fired {} after the fault",
            a.rule,
            human(a.at.since(drill.started_at))
        )
    });
    let notify = report.notification.as_ref().map(|n| {
        format!(
            "notified through `{}` {} after the fault",
            n.notifier,
            human(n.at.since(drill.started_at))
        )
    });
    let seen: Vec<String> = [detect, notify].into_iter().flatten().collect();
    let seen = if seen.is_empty() {
        String::new()
    } else {
        format!("; {}", seen.join(", "))
    };
    match state {
        DrillState::Running => format!("running: {what}{seen}"),
        DrillState::Passed => format!("passed: {what}{seen}; healed"),
        DrillState::Failed => {
            let missing = report
                .missing
                .map(|m| m.describe(drill.scenario))
                .unwrap_or_default();
            format!("failed: {missing}{seen}; healed")
        }
        DrillState::Cancelled => format!(
            "cancelled by {}: {what}{seen}; healed",
            report.cancelled_by.as_deref().unwrap_or("someone")
        ),
    }
}

/// The write that ends a running drill at `now` in `state` (healed at once: its fault is
/// removed with this write; a drill found past its expiry healed at the expiry, when every
/// node stopped applying it).
pub fn ending(
    drill: &Drill,
    mut report: DrillReport,
    state: DrillState,
    now: Timestamp,
) -> DrillUpdate {
    report.summary = summary(drill, &report, state);
    DrillUpdate {
        id: drill.id.clone(),
        state,
        detected_at: report.alert.as_ref().map(|a| a.at),
        notified_at: report.notification.as_ref().map(|n| n.at),
        healed_at: Some(now.min(drill.expires_at)),
        report: report.to_json(),
    }
}

/// The write that records what a running drill observed so far (it keeps running).
pub fn progress(drill: &Drill, mut report: DrillReport) -> DrillUpdate {
    report.summary = summary(drill, &report, DrillState::Running);
    DrillUpdate {
        id: drill.id.clone(),
        state: DrillState::Running,
        detected_at: report.alert.as_ref().map(|a| a.at),
        notified_at: report.notification.as_ref().map(|n| n.at),
        healed_at: None,
        report: report.to_json(),
    }
}

/// The write that cancels a running drill at `now` (healed at once).
pub fn cancelled(drill: &Drill, by: &str, now: Timestamp) -> DrillUpdate {
    let mut report = DrillReport::of(drill);
    report.cancelled_by = Some(by.to_string());
    ending(drill, report, DrillState::Cancelled, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_store::DrillTrigger;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    fn alert(secs: u64) -> DrillAlert {
        DrillAlert {
            rule: "canary_failed".into(),
            labels: BTreeMap::from([("source".to_string(), "s".to_string())]),
            at: at(secs),
        }
    }

    fn notice(secs: u64) -> DrillNotice {
        DrillNotice {
            notifier: "hook".into(),
            key: "canary_failed{drill=\"drl_1\",tenant=\"t\"}".into(),
            at: at(secs),
        }
    }

    fn drill(scenario: Scenario) -> Drill {
        Drill {
            id: "drl_1".into(),
            scenario,
            target: "s".into(),
            tenant: Some("t".into()),
            trigger: DrillTrigger::Manual,
            schedule: None,
            state: DrillState::Running,
            created_by: "operator".into(),
            started_at: T0,
            expires_at: at(300),
            detected_at: None,
            notified_at: None,
            healed_at: None,
            report: serde_json::json!({}),
        }
    }

    #[test]
    fn the_verdict_from_what_was_seen_and_the_bound() {
        let report = |a: Option<u64>, r: Option<u64>, n: Option<u64>| DrillReport {
            alert: a.map(alert),
            routed: r.map(notice),
            notification: n.map(notice),
            ..DrillReport::default()
        };
        // (case, report, now, verdict)
        let cases = [
            (
                "nothing yet",
                report(None, None, None),
                100,
                Verdict::Running,
            ),
            (
                "alert, not yet notified",
                report(Some(130), Some(130), None),
                200,
                Verdict::Running,
            ),
            (
                "alert and notification",
                report(Some(130), Some(130), Some(131)),
                140,
                Verdict::Passed,
            ),
            (
                "judged late, by the times it saw",
                report(Some(130), Some(130), Some(131)),
                400,
                Verdict::Passed,
            ),
            (
                "sent after the bound",
                report(Some(130), Some(130), Some(310)),
                400,
                Verdict::Failed(DrillMissing::NotDelivered),
            ),
            (
                "fired after the bound",
                report(Some(305), Some(305), Some(306)),
                400,
                Verdict::Failed(DrillMissing::NoAlert),
            ),
            (
                "no alert by the bound",
                report(None, None, None),
                300,
                Verdict::Failed(DrillMissing::NoAlert),
            ),
            (
                "routed nowhere",
                report(Some(130), None, None),
                300,
                Verdict::Failed(DrillMissing::NotRouted),
            ),
            (
                "queued, never sent",
                report(Some(130), Some(130), None),
                301,
                Verdict::Failed(DrillMissing::NotDelivered),
            ),
        ];
        for (name, r, now, want) in cases {
            assert_eq!(verdict(&r, at(now), at(300)), want, "{name}");
        }
    }

    #[test]
    fn observations_keep_the_earliest_of_each_kind() {
        let first = Observed {
            alert: Some(alert(130)),
            routed: Some(notice(131)),
            sent: None,
        };
        let r = merge(DrillReport::default(), first);
        let later = Observed {
            alert: Some(alert(190)),
            routed: Some(notice(125)),
            sent: Some(notice(132)),
        };
        let r = merge(r, later);
        assert_eq!(r.alert, Some(alert(130)));
        assert_eq!(r.routed, Some(notice(125)));
        assert_eq!(r.notification, Some(notice(132)));
        // Nothing new changes nothing.
        assert_eq!(merge(r.clone(), Observed::default()), r);
    }

    #[test]
    fn endings_heal_and_say_what_happened() {
        let d = drill(Scenario::QueueStall);
        let passed = DrillReport {
            alert: Some(alert(125)),
            notification: Some(notice(126)),
            ..DrillReport::start(Scenario::QueueStall, "s", at(300))
        };
        let u = ending(&d, passed, DrillState::Passed, at(127));
        assert_eq!(u.healed_at, Some(at(127)));
        assert_eq!(u.detected_at, Some(at(125)));
        assert_eq!(u.notified_at, Some(at(126)));
        assert_eq!(
            u.report["summary"],
            "passed: deliveries of source `s` are held: accepted, queued, not dispatched; \
             canary_failed fired 2m 5s after the fault, notified through `hook` 2m 6s after \
             the fault; healed"
        );
        assert_eq!(u.report["expected"][1], "queue_stalled");

        // Found after its expiry (the server was down): healed when every node stopped
        // applying it.
        let failed = DrillReport {
            missing: Some(DrillMissing::NoAlert),
            ..DrillReport::default()
        };
        let u = ending(&d, failed, DrillState::Failed, at(900));
        assert_eq!(u.healed_at, Some(at(300)));
        assert!(u.report["summary"]
            .as_str()
            .unwrap()
            .starts_with("failed: no alert: none of canary_failed, queue_stalled fired"));

        let u = cancelled(&d, "operator", at(10));
        assert_eq!(u.state, DrillState::Cancelled);
        assert_eq!(u.healed_at, Some(at(10)));
        assert_eq!(u.report["cancelled_by"], "operator");
        assert!(u.report["summary"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by operator"));

        let r = DrillReport {
            alert: Some(alert(130)),
            ..DrillReport::default()
        };
        let u = progress(&d, r);
        assert_eq!((u.state, u.healed_at), (DrillState::Running, None));
        assert_eq!(u.detected_at, Some(at(130)));
    }

    #[test]
    fn what_was_missing_is_said_plainly() {
        for (m, needle) in [
            (DrillMissing::NoAlert, "no alert"),
            (DrillMissing::NotRouted, "alert but routed to no notifier"),
            (DrillMissing::NotDelivered, "notification not delivered"),
        ] {
            assert!(m.describe(Scenario::FlowStop).starts_with(needle), "{m:?}");
        }
    }
}
