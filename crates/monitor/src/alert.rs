//! The alert state machine, one per (rule, labels): pending → firing → resolved.
//!
//! A condition that becomes true opens a *pending* alert; once it has held for the rule's
//! `for`, the alert is *firing* (with `for = 0` it fires at once and no pending transition is
//! emitted). A firing alert resolves only after the condition was false for `resolve_after`
//! consecutive evaluations: this hysteresis keeps a flapping condition from paging on every
//! flap. A pending alert whose condition goes false resolves at once (nobody was paged).
//!
//! The book is plain data (`serde`), so the server can persist it and restart where it was.

use std::collections::BTreeMap;
use std::fmt;

use intake_core::config::Severity;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::params::Common;

/// The labels that identify a series. Empty strings stand for "not applicable", as in the
/// store's counters (`channel` is empty on queue alerts, `destination` on flow alerts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Labels {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
    /// Channel (flow alerts).
    #[serde(default)]
    pub channel: String,
    /// Destination id (queue alerts).
    #[serde(default)]
    pub destination: String,
}

/// What identifies one alert.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    /// Rule id.
    pub rule: String,
    /// Labels of the series.
    pub labels: Labels,
}

/// The state an alert moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds; waiting for its `for`.
    Pending,
    /// The alert is firing.
    Firing,
    /// The condition stopped holding.
    Resolved,
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        })
    }
}

/// A condition found true by a rule, with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The alert it concerns.
    pub key: AlertKey,
    /// The rule's parameters for this series.
    pub params: Common,
    /// The measured value (per rule: a probability, an age in seconds, a ratio, a count).
    pub value: f64,
    /// The numbers behind it, for people.
    pub reason: String,
}

/// One alert that is pending or firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Rule and labels.
    pub key: AlertKey,
    /// Pending or firing.
    pub state: AlertState,
    /// Severity.
    pub severity: Severity,
    /// When the condition was first found true.
    pub active_since: Timestamp,
    /// When it started firing.
    pub firing_since: Option<Timestamp>,
    /// The latest value.
    pub value: f64,
    /// The latest reason (while the condition holds) or the last one it held with.
    pub reason: String,
    /// Consecutive evaluations with the condition false.
    pub false_streak: u32,
    /// The `for` and `resolve_after` in force.
    pub for_secs: u64,
    /// Evaluations needed to resolve.
    pub resolve_after: u32,
}

/// A change of an alert's state, as the monitor emits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Rule id.
    pub rule: String,
    /// Labels.
    pub labels: Labels,
    /// Severity.
    pub severity: Severity,
    /// The state entered.
    pub state: AlertState,
    /// When.
    pub at: Timestamp,
    /// The value at that moment.
    pub value: f64,
    /// The reason at that moment.
    pub reason: String,
}

/// Every pending and firing alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertBook {
    alerts: BTreeMap<AlertKey, ActiveAlert>,
}

impl AlertBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a book from [`AlertBook::snapshot`].
    pub fn restore(alerts: Vec<ActiveAlert>) -> Self {
        AlertBook {
            alerts: alerts.into_iter().map(|a| (a.key.clone(), a)).collect(),
        }
    }

    /// The pending and firing alerts, for persistence and for the API.
    pub fn snapshot(&self) -> Vec<ActiveAlert> {
        self.alerts.values().cloned().collect()
    }

    /// The alert of `key`, if pending or firing.
    pub fn get(&self, key: &AlertKey) -> Option<&ActiveAlert> {
        self.alerts.get(key)
    }

    /// Pending and firing alerts.
    pub fn iter(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.alerts.values()
    }

    /// Applies one evaluation: `findings` are the conditions found true at `now`; every
    /// other alert of the book had its condition false. Returns the transitions, in key
    /// order.
    pub fn apply(&mut self, findings: Vec<Finding>, now: Timestamp) -> Vec<Transition> {
        self.apply_rules(findings, now, |_| true)
    }

    /// Applies one evaluation of the rules `evaluated` says yes to: `findings` are their
    /// conditions found true at `now`, and every other alert *of those rules* had its
    /// condition false. Alerts of other rules are left as they are: rules evaluated on their
    /// own schedule (`canary_failed`) share the book with the others.
    pub fn apply_rules(
        &mut self,
        findings: Vec<Finding>,
        now: Timestamp,
        evaluated: impl Fn(&str) -> bool,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut found: BTreeMap<AlertKey, Finding> =
            findings.into_iter().map(|f| (f.key.clone(), f)).collect();
        // Alerts whose condition is now false.
        let mut gone = Vec::new();
        for (key, a) in self.alerts.iter_mut() {
            if found.contains_key(key) || !evaluated(&key.rule) {
                continue;
            }
            a.false_streak += 1;
            let resolve = match a.state {
                AlertState::Pending => true,
                _ => a.false_streak >= a.resolve_after.max(1),
            };
            if resolve {
                out.push(Transition {
                    rule: key.rule.clone(),
                    labels: key.labels.clone(),
                    severity: a.severity,
                    state: AlertState::Resolved,
                    at: now,
                    value: a.value,
                    reason: format!("condition cleared; was: {}", a.reason),
                });
                gone.push(key.clone());
            }
        }
        for key in gone {
            self.alerts.remove(&key);
        }
        // Conditions that hold.
        for (key, f) in std::mem::take(&mut found) {
            let for_secs = f.params.for_.as_secs();
            let a = self
                .alerts
                .entry(key.clone())
                .or_insert_with(|| ActiveAlert {
                    key: key.clone(),
                    state: AlertState::Resolved,
                    severity: f.params.severity,
                    active_since: now,
                    firing_since: None,
                    value: f.value,
                    reason: f.reason.clone(),
                    false_streak: 0,
                    for_secs,
                    resolve_after: f.params.resolve_after,
                });
            a.false_streak = 0;
            a.value = f.value;
            a.reason = f.reason;
            a.severity = f.params.severity;
            a.for_secs = for_secs;
            a.resolve_after = f.params.resolve_after;
            let held = now.since(a.active_since).as_secs();
            let next = if held >= for_secs {
                AlertState::Firing
            } else {
                AlertState::Pending
            };
            if next != a.state && a.state != AlertState::Firing {
                if next == AlertState::Firing {
                    a.firing_since = Some(now);
                }
                a.state = next;
                out.push(Transition {
                    rule: key.rule.clone(),
                    labels: key.labels.clone(),
                    severity: a.severity,
                    state: next,
                    at: now,
                    value: a.value,
                    reason: a.reason.clone(),
                });
            }
        }
        out
    }
}

impl Serialize for AlertBook {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.alerts.values())
    }
}

impl<'de> Deserialize<'de> for AlertBook {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<ActiveAlert>::deserialize(d).map(AlertBook::restore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn finding(for_secs: u64) -> Finding {
        Finding {
            key: AlertKey {
                rule: "queue_backlog".into(),
                labels: Labels {
                    tenant: "t".into(),
                    source: "s".into(),
                    channel: String::new(),
                    destination: "d".into(),
                },
            },
            params: Common {
                for_: Duration::from_secs(for_secs),
                severity: Severity::Warning,
                resolve_after: 2,
            },
            value: 1.0,
            reason: "r".into(),
        }
    }

    fn states(t: &[Transition]) -> Vec<AlertState> {
        t.iter().map(|t| t.state).collect()
    }

    #[test]
    fn pending_then_firing_then_resolved_with_hysteresis() {
        let mut book = AlertBook::new();
        let t = |m: i64| Timestamp(m * 60_000);
        assert_eq!(
            states(&book.apply(vec![finding(120)], t(0))),
            [AlertState::Pending]
        );
        assert!(book.apply(vec![finding(120)], t(1)).is_empty());
        assert_eq!(
            states(&book.apply(vec![finding(120)], t(2))),
            [AlertState::Firing]
        );
        // One false evaluation is not enough to resolve; a true one resets the streak.
        assert!(book.apply(vec![], t(3)).is_empty());
        assert!(book.apply(vec![finding(120)], t(4)).is_empty());
        assert!(book.apply(vec![], t(5)).is_empty());
        assert_eq!(states(&book.apply(vec![], t(6))), [AlertState::Resolved]);
        assert!(book.snapshot().is_empty());
    }

    #[test]
    fn pending_that_clears_resolves_at_once_and_for_zero_fires_at_once() {
        let mut book = AlertBook::new();
        book.apply(vec![finding(300)], Timestamp(0));
        assert_eq!(
            states(&book.apply(vec![], Timestamp(60_000))),
            [AlertState::Resolved]
        );
        assert_eq!(
            states(&book.apply(vec![finding(0)], Timestamp(120_000))),
            [AlertState::Firing]
        );
    }

    #[test]
    fn an_evaluation_of_some_rules_leaves_the_others_alone() {
        let mut book = AlertBook::new();
        let mut canary = finding(0);
        canary.key.rule = "canary_failed".into();
        canary.params.resolve_after = 1;
        let t = |m: i64| Timestamp(m * 60_000);
        book.apply(vec![finding(0), canary.clone()], t(0));
        // The flow rules' evaluation without the canary: the canary alert is not theirs.
        let not_canary = |r: &str| r != "canary_failed";
        assert!(book
            .apply_rules(vec![finding(0)], t(1), not_canary)
            .is_empty());
        assert_eq!(book.snapshot().len(), 2);
        // The canary's own evaluation without a finding resolves it, and only it.
        let only_canary = |r: &str| r == "canary_failed";
        let out = book.apply_rules(vec![], t(2), only_canary);
        assert_eq!(states(&out), [AlertState::Resolved]);
        assert_eq!(out[0].rule, "canary_failed");
        assert_eq!(book.snapshot().len(), 1);
    }

    #[test]
    fn book_round_trips_through_json() {
        let mut book = AlertBook::new();
        book.apply(vec![finding(0)], Timestamp(0));
        let json = serde_json::to_string(&book).unwrap();
        let back: AlertBook = serde_json::from_str(&json).unwrap();
        assert_eq!(back, book);
    }
}
