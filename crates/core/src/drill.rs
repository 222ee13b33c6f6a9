//! Fire drills: the faults intake can inject into itself on purpose, for a bounded time, to
//! prove that the alert path works — that the expected alert fires *and* reaches a person.
//!
//! This module is the vocabulary every part shares, and the two pure decisions the issue
//! asks to keep in one place:
//!
//! * the [`Scenario`]s, each with the kind of thing it targets ([`TargetKind`]), the alerts
//!   it is expected to raise ([`Scenario::expected_rules`]: one of them firing and notified
//!   makes the drill pass) and the alerts it may cause on its way
//!   ([`Scenario::caused_rules`]: those are the ones marked as drills, so nobody is paged for
//!   real);
//! * [`DrillScope::causes`]: whether an alert of a rule, with these labels, that became
//!   active at that instant, was caused by a drill. The notification pipeline marks such
//!   alerts, and the drill duty looks for them, with the same function.
//!
//! Pure: no IO, no clock.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The label (and notice field) that marks an alert or a notification as caused by a drill;
/// its value is the drill's id.
pub const DRILL_LABEL: &str = "drill";

/// How long a drill's fault lasts when nobody says (`--for`, `[[drills]] for`).
pub const DEFAULT_FOR: Duration = Duration::from_secs(5 * 60);

/// The longest a drill's fault may last: a drill is a bounded test, not an outage.
pub const MAX_FOR: Duration = Duration::from_secs(24 * 3600);

/// The rule raised when a scheduled drill failed.
pub const DRILL_FAILED: &str = "drill_failed";

/// A fire drill's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One source's webhooks are still accepted (atomically, as always) but its deliveries
    /// are not dispatched: work lined up and never processed, the story's effect.
    QueueStall,
    /// Every delivery attempt to one destination fails (recorded as a failed attempt naming
    /// the drill; retried on the destination's schedule). The handler is not called.
    HandlerDown,
    /// One source's webhooks are refused at the ingest door (503, canaries included), so the
    /// system of record retries them later.
    FlowStop,
    /// Every send through one notifier fails (retried, so nothing is lost).
    NotifierDown,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] = [
        Scenario::QueueStall,
        Scenario::HandlerDown,
        Scenario::FlowStop,
        Scenario::NotifierDown,
    ];

    /// The name on the command line, in the API and in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::QueueStall => "queue-stall",
            Scenario::HandlerDown => "handler-down",
            Scenario::FlowStop => "flow-stop",
            Scenario::NotifierDown => "notifier-down",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Every name, for error messages: `queue-stall, handler-down, flow-stop, notifier-down`.
    pub fn names() -> String {
        Scenario::ALL.map(Scenario::as_str).join(", ")
    }

    /// What it targets.
    pub fn target_kind(self) -> TargetKind {
        match self {
            Scenario::QueueStall | Scenario::FlowStop => TargetKind::Source,
            Scenario::HandlerDown => TargetKind::Destination,
            Scenario::NotifierDown => TargetKind::Notifier,
        }
    }

    /// The alerts whose firing and notification make the drill pass (any one of them).
    ///
    /// * `queue-stall`: `canary_failed` (the source's canary stays pending past its deadline,
    ///   2 minutes by default) or `queue_stalled` (its oldest pending delivery is older than
    ///   the rule's threshold, 5 minutes by default);
    /// * `handler-down`: `canary_failed` of a source routed to the destination, or
    ///   `delivery_errors` of the destination;
    /// * `flow-stop`: `canary_failed` (refused at ingest) or `inbound_stopped`;
    /// * `notifier-down`: `notifier_failing` of the notifier, notified through another one.
    pub fn expected_rules(self) -> &'static [&'static str] {
        match self {
            Scenario::QueueStall => &["canary_failed", "queue_stalled"],
            Scenario::HandlerDown => &["canary_failed", "delivery_errors"],
            Scenario::FlowStop => &["canary_failed", "inbound_stopped"],
            Scenario::NotifierDown => &["notifier_failing"],
        }
    }

    /// The alerts the fault may cause in its scope: the expected ones and their side effects
    /// (a stalled queue also grows a backlog). Alerts of these rules in the drill's scope that
    /// start while it runs are marked as the drill's; alerts of other rules never are, so a
    /// real problem of another kind is still paged during a drill.
    pub fn caused_rules(self) -> &'static [&'static str] {
        match self {
            Scenario::QueueStall => &[
                "canary_failed",
                "queue_stalled",
                "queue_backlog",
                "processing_drop",
            ],
            Scenario::HandlerDown => &[
                "canary_failed",
                "delivery_errors",
                "queue_stalled",
                "queue_backlog",
                "processing_drop",
                "dead_letters",
            ],
            Scenario::FlowStop => &["canary_failed", "inbound_stopped", "inbound_drop"],
            Scenario::NotifierDown => &["notifier_failing"],
        }
    }

    /// What the fault does, for people: `deliveries of source `s` are not dispatched`.
    pub fn describe(self, target: &str) -> String {
        match self {
            Scenario::QueueStall => {
                format!(
                    "deliveries of source `{target}` are held: accepted, queued, not dispatched"
                )
            }
            Scenario::HandlerDown => {
                format!("every delivery attempt to destination `{target}` fails")
            }
            Scenario::FlowStop => format!("webhooks to source `{target}` are refused with 503"),
            Scenario::NotifierDown => format!("every send through notifier `{target}` fails"),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a scenario's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A `[[sources]]` id.
    Source,
    /// A `[[destinations]]` id.
    Destination,
    /// A `[[notifiers]]` id.
    Notifier,
}

impl TargetKind {
    /// The key naming it (`source`, `destination`, `notifier`): in requests, in `[[drills]]`,
    /// and the alert label it is matched against.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Source => "source",
            TargetKind::Destination => "destination",
            TargetKind::Notifier => "notifier",
        }
    }
}

/// Rules judged over a window of the past (15 to 30 minutes by default): a drill's failures
/// stay in their window after it healed, so an alert of theirs may become active well after
/// the heal, and is still the drill's.
pub const WINDOWED_RULES: [&str; 4] = [
    "inbound_drop",
    "delivery_errors",
    "processing_drop",
    "queue_backlog",
];

/// How long after a drill healed an alert of a [`WINDOWED_RULES`] rule that becomes active is
/// still the drill's: the longest of their default windows.
pub const WINDOW_GRACE: Duration = Duration::from_secs(30 * 60);

/// When scheduled drills run: `daily`, `weekly`, or a duration such as `"72h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule(pub Duration);

/// The shortest period a schedule may have: a drill is a test, not a load.
pub const MIN_PERIOD: Duration = Duration::from_secs(3600);

impl Schedule {
    /// Parses `daily`, `weekly` or a duration (`"72h"`); the message says what was expected.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let period = match s {
            "daily" => Duration::from_secs(86_400),
            "weekly" => Duration::from_secs(7 * 86_400),
            other => humantime::parse_duration(other).map_err(|e| {
                format!(
                    "`{other}` is not a schedule ({e}): write \"daily\", \"weekly\" or a duration such as \"72h\""
                )
            })?,
        };
        if period < MIN_PERIOD {
            return Err(format!(
                "`{s}` is too often: a schedule runs at most every {}",
                humantime::format_duration(MIN_PERIOD)
            ));
        }
        Ok(Schedule(period))
    }
}

/// Where a drill's fault applies and since when: what marks an alert as the drill's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillScope {
    /// The drill's id (`drl_…`).
    pub id: String,
    /// Its scenario.
    pub scenario: Scenario,
    /// The source, destination or notifier it targets.
    pub target: String,
    /// For `handler-down`, the sources routed to the destination: their canaries cross it, so
    /// their `canary_failed` is the drill's too. Empty otherwise.
    pub routed_sources: Vec<String>,
    /// When the fault started.
    pub from: Timestamp,
    /// When its fault ended: its heal, or its bound while it runs (`None`: no end).
    pub until: Option<Timestamp>,
    /// How long after `until` an alert that becomes active is still the drill's: one
    /// evaluation (an alert raised by the first evaluation after the heal was decided on the
    /// drill's data). Rules judged over a window of the past get [`WINDOW_GRACE`] at least.
    pub grace: Duration,
}

impl DrillScope {
    /// Whether an alert of `rule` with `labels` whose condition started at `started_at` was
    /// caused by this drill: a rule the scenario causes, in the drill's scope (the labels name
    /// its target), started while it ran. An alert that was already active before the drill
    /// started is not the drill's: a real problem stays real.
    pub fn causes(
        &self,
        rule: &str,
        labels: &BTreeMap<String, String>,
        started_at: Timestamp,
    ) -> bool {
        self.scenario.caused_rules().contains(&rule)
            && self.in_scope(rule, labels)
            && self.during(rule, started_at)
    }

    /// Whether an alert counts as this drill's detection: a rule it expects, in its scope,
    /// started while it ran.
    pub fn expects(
        &self,
        rule: &str,
        labels: &BTreeMap<String, String>,
        started_at: Timestamp,
    ) -> bool {
        self.scenario.expected_rules().contains(&rule)
            && self.in_scope(rule, labels)
            && self.during(rule, started_at)
    }

    /// Whether an alert of `rule` with `labels`, whenever it started, is one this drill
    /// would count as its detection: a drill cannot prove an alert that is already active.
    pub fn covers(&self, rule: &str, labels: &BTreeMap<String, String>) -> bool {
        self.scenario.expected_rules().contains(&rule) && self.in_scope(rule, labels)
    }

    fn during(&self, rule: &str, t: Timestamp) -> bool {
        let grace = if WINDOWED_RULES.contains(&rule) {
            self.grace.max(WINDOW_GRACE)
        } else {
            self.grace
        };
        t >= self.from && self.until.is_none_or(|u| t <= u.plus(grace))
    }

    fn in_scope(&self, rule: &str, labels: &BTreeMap<String, String>) -> bool {
        let label = |k: &str| labels.get(k).map(String::as_str);
        match self.scenario {
            Scenario::QueueStall | Scenario::FlowStop => label("source") == Some(&self.target),
            Scenario::HandlerDown if rule == "canary_failed" => {
                label("source").is_some_and(|s| self.routed_sources.iter().any(|r| r == s))
            }
            Scenario::HandlerDown => label("destination") == Some(&self.target),
            Scenario::NotifierDown => label("notifier") == Some(&self.target),
        }
    }
}

/// The drill among `scopes` that caused an alert of `rule` with `labels` started at
/// `started_at`, if any (the first one listed, when scopes overlap).
pub fn drill_of<'a>(
    scopes: &'a [DrillScope],
    rule: &str,
    labels: &BTreeMap<String, String>,
    started_at: Timestamp,
) -> Option<&'a DrillScope> {
    scopes.iter().find(|s| s.causes(rule, labels, started_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope(scenario: Scenario, target: &str, until: Option<u64>) -> DrillScope {
        DrillScope {
            id: "drl_1".into(),
            scenario,
            target: target.into(),
            routed_sources: vec!["s1".into(), "s2".into()],
            from: at(0),
            until: until.map(at),
            grace: Duration::from_secs(60),
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(Scenario::parse("queue_stall"), None);
        assert_eq!(
            Scenario::names(),
            "queue-stall, handler-down, flow-stop, notifier-down"
        );
    }

    #[test]
    fn which_alerts_a_drill_causes_and_expects() {
        use Scenario::*;
        let s1 = [("tenant", "t"), ("source", "s1")];
        let s3 = [("tenant", "t"), ("source", "s3")];
        let d1 = [("tenant", "t"), ("source", "s1"), ("destination", "d1")];
        let d2 = [("tenant", "t"), ("source", "s1"), ("destination", "d2")];
        let n1 = [("notifier", "n1")];
        // (scenario, target, rule, labels, started at, healed at, causes, expects)
        #[rustfmt::skip]
        #[allow(clippy::type_complexity)]
        let cases: &[(Scenario, &str, &str, &[(&str, &str)], u64, Option<u64>, bool, bool)] = &[
            (QueueStall, "s1", "canary_failed", &s1, 130, None, true, true),
            (QueueStall, "s1", "queue_stalled", &d1, 300, None, true, true),
            (QueueStall, "s1", "queue_backlog", &d1, 300, None, true, false),
            (QueueStall, "s1", "canary_failed", &s3, 130, None, false, false),
            (QueueStall, "s1", "source_gap", &s1, 130, None, false, false),
            (QueueStall, "s1", "inbound_stopped", &s1, 130, None, false, false),
            // Started with the drill: the drill's (one that began before is checked below).
            (QueueStall, "s1", "canary_failed", &s1, 0, None, true, true),
            // Healed at 300: one evaluation of grace (60 s), or a window's for windowed rules.
            (QueueStall, "s1", "canary_failed", &s1, 360, Some(300), true, true),
            (QueueStall, "s1", "canary_failed", &s1, 400, Some(300), false, false),
            (HandlerDown, "d1", "delivery_errors", &d1, 1200, Some(300), true, true),
            (HandlerDown, "d1", "delivery_errors", &d1, 2200, Some(300), false, false),
            (HandlerDown, "d1", "delivery_errors", &d1, 60, None, true, true),
            (HandlerDown, "d1", "delivery_errors", &d2, 60, None, false, false),
            (HandlerDown, "d1", "dead_letters", &d1, 60, None, true, false),
            (HandlerDown, "d1", "canary_failed", &s1, 60, None, true, true),
            (HandlerDown, "d1", "canary_failed", &s3, 60, None, false, false),
            (FlowStop, "s1", "canary_failed", &s1, 60, None, true, true),
            (FlowStop, "s1", "inbound_stopped", &s1, 60, None, true, true),
            (FlowStop, "s1", "inbound_drop", &s1, 60, None, true, false),
            (FlowStop, "s1", "queue_stalled", &d1, 60, None, false, false),
            (NotifierDown, "n1", "notifier_failing", &n1, 60, None, true, true),
            (NotifierDown, "n1", "notifier_failing", &[("notifier", "n2")], 60, None, false, false),
            (NotifierDown, "n1", "canary_failed", &s1, 60, None, false, false),
        ];
        for (scenario, target, rule, l, started, until, causes, expects) in cases {
            let sc = scope(*scenario, target, *until);
            let l = labels(l);
            let t = at(*started);
            let name = format!("{scenario} {target} {rule} {l:?} at {started}");
            assert_eq!(sc.causes(rule, &l, t), *causes, "causes: {name}");
            assert_eq!(sc.expects(rule, &l, t), *expects, "expects: {name}");
            if *started >= 60 && until.is_none() {
                assert_eq!(sc.covers(rule, &l), *expects, "covers: {name}");
            }
        }
        let before = scope(QueueStall, "s1", None);
        assert!(!before.causes(
            "canary_failed",
            &labels(&s1),
            T0.minus(Duration::from_secs(1))
        ));
    }

    #[test]
    fn the_first_matching_drill_is_named() {
        let scopes = vec![
            DrillScope {
                id: "drl_a".into(),
                ..scope(Scenario::FlowStop, "s1", None)
            },
            DrillScope {
                id: "drl_b".into(),
                ..scope(Scenario::QueueStall, "s1", None)
            },
        ];
        let l = labels(&[("source", "s1")]);
        assert_eq!(
            drill_of(&scopes, "canary_failed", &l, at(10)).map(|s| s.id.as_str()),
            Some("drl_a")
        );
        assert_eq!(
            drill_of(&scopes, "queue_stalled", &l, at(10)).map(|s| s.id.as_str()),
            Some("drl_b")
        );
        assert!(drill_of(&scopes, "source_gap", &l, at(10)).is_none());
    }

    #[test]
    fn schedules_are_daily_weekly_or_a_duration_of_an_hour_or_more() {
        assert_eq!(
            Schedule::parse("daily").unwrap().0,
            Duration::from_secs(86_400)
        );
        assert_eq!(
            Schedule::parse("weekly").unwrap().0,
            Duration::from_secs(604_800)
        );
        assert_eq!(
            Schedule::parse("72h").unwrap().0,
            Duration::from_secs(72 * 3600)
        );
        assert!(Schedule::parse("10m").unwrap_err().contains("too often"));
        assert!(Schedule::parse("monthly")
            .unwrap_err()
            .contains("\"daily\", \"weekly\""));
    }
}
