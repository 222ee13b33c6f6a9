//! The notification decision, as a pure function: from what was last notified, the alert
//! book, the silences and the routing, what to send now and what is notified afterwards.
//!
//! No IO and no `await` here (see the parent module for the rules it implements): the
//! pipeline reads its inputs from the store, calls `decide`, and commits the result in one
//! transaction. That is what lets the rules be tested with a table of cases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use intake_core::config::{NotifierConfig, RuleOverride, Severity};
use intake_core::drill::{drill_of, DrillScope, DRILL_LABEL};
use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, AlertState};
use intake_notify::{
    AlertItem, AlertStatus, LinkBuilder, Notice, Notifier, SilenceInfo, SilenceStatus,
};
use intake_store::Silence;
use serde::{Deserialize, Serialize};

/// Rules no silence can mute: the watchdog proves alerting is alive, and a failed canary is
/// the one proof that the whole path works end to end.
pub const UNSILENCEABLE: [&str; 2] = ["watchdog", "canary_failed"];

/// The rule raised when a notifier keeps failing.
pub const NOTIFIER_FAILING: &str = "notifier_failing";

/// The pseudo-notifier id under which watchdog ping failures count.
pub const WATCHDOG_NOTIFIER: &str = "watchdog";

/// What was notified for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// The rule.
    pub rule: String,
    /// The group's labels (`tenant`, or `notifier`).
    pub labels: BTreeMap<String, String>,
    /// The severity last notified.
    pub severity: Severity,
    /// The members last notified as firing, by their labels' key.
    pub members: BTreeMap<String, Member>,
    /// The status last sent.
    pub last_status: AlertStatus,
    /// When it was sent.
    pub last_sent_at: Timestamp,
    /// Where it went (a resolution goes to the same notifiers).
    pub notifiers: Vec<String>,
}

/// One alert of a group, as last notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// All its labels.
    pub labels: BTreeMap<String, String>,
    /// When its condition started.
    pub started_at: Timestamp,
    /// Its value.
    pub value: f64,
    /// Its reason.
    pub reason: String,
}

/// A `notifier_failing` alert: the pipeline raises and resolves these itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifierAlert {
    /// Since when the notifier is failing.
    pub since: Timestamp,
    /// The numbers: how many wait, since when, after how many attempts, the last error.
    pub reason: String,
    /// Failed attempts of the oldest waiting notification.
    pub value: f64,
    /// The severity in force.
    pub severity: Severity,
}

/// The pipeline's stored state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotifyState {
    /// By group key.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupState>,
    /// Failing notifiers, by id.
    #[serde(default)]
    pub notifier_alerts: BTreeMap<String, NotifierAlert>,
}

/// Where notices go: the built notifiers, the `[[rules]]` overrides, the links every notice
/// carries and `monitor.repeat_interval`.
pub(crate) struct Routing<'a> {
    pub notifiers: &'a [(NotifierConfig, Arc<dyn Notifier>)],
    pub rules: &'a [RuleOverride],
    pub links: &'a LinkBuilder,
    pub repeat: Duration,
}

/// What one evaluation decided.
#[derive(Debug)]
pub(crate) struct Decision {
    /// What is notified afterwards: the groups as notified now, and the `notifier_failing`
    /// alerts as given.
    pub state: NotifyState,
    /// The notices to queue, in order, each with the notifiers it goes to (possibly none).
    pub notices: Vec<(Notice, Vec<String>)>,
    /// The silences whose end these notices announce.
    pub announced_expiries: Vec<String>,
}

/// An alert that may be notified: from the book, or a `notifier_failing` alert.
#[derive(Debug, Clone)]
struct Candidate {
    rule: String,
    labels: BTreeMap<String, String>,
    severity: Severity,
    started_at: Timestamp,
    value: f64,
    reason: String,
}

/// A group that fires now: its rule, its labels and its unmuted members.
type Desired = (String, BTreeMap<String, String>, Vec<Candidate>);

/// (rule, member key) of every alert still in the book or failing, silenced or not.
type Present = BTreeSet<(String, String)>;

/// Decides one evaluation: compares what fires now (the firing alerts of `book` and the
/// `notifier_failing` alerts of `previous`, minus what `silences` mute at `now`) with what
/// `previous` says was notified, and returns the notices that make up the difference, the
/// announcements of silences that ended, and the new state.
///
/// An alert a fire drill of `drills` caused carries the label `drill` (its id), from its
/// first notice to its resolution: it forms a group of its own (rule, tenant or notifier,
/// and drill), so a drill's notices never mix with real ones, and they say `[DRILL]`.
pub(crate) fn decide(
    previous: NotifyState,
    book: &[ActiveAlert],
    silences: &[Silence],
    drills: &[DrillScope],
    routing: &Routing<'_>,
    now: Timestamp,
) -> Decision {
    let NotifyState {
        mut groups,
        notifier_alerts,
    } = previous;
    let candidates = candidates(book, &notifier_alerts, drills);
    let present = present(book, &candidates, drills);
    let mut desired = desired_groups(candidates, silences, now);

    let mut notices = Vec::new();
    let mut next_groups = BTreeMap::new();
    let keys: BTreeSet<String> = desired.keys().chain(groups.keys()).cloned().collect();
    for key in keys {
        match (groups.remove(&key), desired.remove(&key)) {
            (prev, Some(firing)) => {
                let group = routing.firing(&key, prev, firing, &present, now, &mut notices);
                next_groups.insert(key, group);
            }
            (Some(prev), None) => notices.extend(routing.resolved(&prev, &present, now)),
            (None, None) => {}
        }
    }

    // Silences that ended by time are announced once.
    let mut announced_expiries = Vec::new();
    for s in silences
        .iter()
        .filter(|s| s.ends_at <= now && !s.expiry_announced)
    {
        let notice = Notice::silence(SilenceStatus::Expired, silence_info(s), now, routing.links);
        let route = routing.announcement_route(&notice);
        notices.push((notice, route));
        announced_expiries.push(s.id.clone());
    }
    Decision {
        state: NotifyState {
            groups: next_groups,
            notifier_alerts,
        },
        notices,
        announced_expiries,
    }
}

/// `labels`, with the `drill` label when a drill of `drills` caused an alert of `rule` that
/// started at `started_at`.
fn marked(
    rule: &str,
    mut labels: BTreeMap<String, String>,
    started_at: Timestamp,
    drills: &[DrillScope],
) -> BTreeMap<String, String> {
    if let Some(d) = drill_of(drills, rule, &labels, started_at) {
        labels.insert(DRILL_LABEL.to_string(), d.id.clone());
    }
    labels
}

/// What fires now: the book's firing alerts and the failing notifiers.
fn candidates(
    book: &[ActiveAlert],
    notifier_alerts: &BTreeMap<String, NotifierAlert>,
    drills: &[DrillScope],
) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = book
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| Candidate {
            rule: a.key.rule.clone(),
            labels: marked(&a.key.rule, alert_labels(a), a.active_since, drills),
            severity: a.severity,
            started_at: a.active_since,
            value: a.value,
            reason: a.reason.clone(),
        })
        .collect();
    for (notifier, alert) in notifier_alerts {
        let labels = BTreeMap::from([("notifier".to_string(), notifier.clone())]);
        candidates.push(Candidate {
            rule: NOTIFIER_FAILING.into(),
            labels: marked(NOTIFIER_FAILING, labels, alert.since, drills),
            severity: alert.severity,
            started_at: alert.since,
            value: alert.value,
            reason: alert.reason.clone(),
        });
    }
    candidates
}

/// Members still in the book (firing or pending again), silenced or not: a member that leaves
/// a group without being in here has resolved.
fn present(book: &[ActiveAlert], candidates: &[Candidate], drills: &[DrillScope]) -> Present {
    let mut present: Present = candidates
        .iter()
        .map(|c| (c.rule.clone(), member_key(&c.labels)))
        .collect();
    for a in book {
        let labels = marked(&a.key.rule, alert_labels(a), a.active_since, drills);
        present.insert((a.key.rule.clone(), member_key(&labels)));
    }
    present
}

/// The candidates no silence mutes, by group key.
fn desired_groups(
    candidates: Vec<Candidate>,
    silences: &[Silence],
    now: Timestamp,
) -> BTreeMap<String, Desired> {
    let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
    for c in candidates {
        if let Some(s) = silenced_by(&c.rule, &c.labels, silences, now) {
            tracing::debug!(rule = %c.rule, silence = %s.id, "alert silenced; not notified");
            continue;
        }
        let g = group_labels(&c.rule, &c.labels);
        let key = intake_notify::group_key(&c.rule, &g);
        desired
            .entry(key)
            .or_insert_with(|| (c.rule.clone(), g, Vec::new()))
            .2
            .push(c);
    }
    desired
}

/// What a group that was notified before (`prev`) and fires now with `current` needs: a
/// firing update when a member joined or resolved, a repeat when `repeat` has passed since
/// the last notice, else nothing. Also returns the members that resolved.
fn change(
    prev: &GroupState,
    current: &BTreeMap<String, Member>,
    present: &Present,
    repeat: Duration,
    now: Timestamp,
) -> (Option<AlertStatus>, Vec<Member>) {
    let joined = current.keys().any(|k| !prev.members.contains_key(k));
    let resolved: Vec<Member> = prev
        .members
        .iter()
        .filter(|(k, _)| {
            !current.contains_key(*k) && !present.contains(&(prev.rule.clone(), (*k).clone()))
        })
        .map(|(_, m)| m.clone())
        .collect();
    let status = if joined || !resolved.is_empty() {
        Some(AlertStatus::Firing)
    } else if now >= prev.last_sent_at.plus(repeat) {
        Some(AlertStatus::Repeat)
    } else {
        None
    };
    (status, resolved)
}

impl Routing<'_> {
    /// A group that fires now: notifies it if it changed or is due a repeat, and returns what
    /// is notified for it afterwards.
    fn firing(
        &self,
        key: &str,
        prev: Option<GroupState>,
        (rule, labels, members): Desired,
        present: &Present,
        now: Timestamp,
        notices: &mut Vec<(Notice, Vec<String>)>,
    ) -> GroupState {
        let severity = members
            .iter()
            .map(|m| m.severity)
            .max_by_key(|s| rank(*s))
            .unwrap_or(Severity::Warning);
        let current: BTreeMap<String, Member> = members
            .iter()
            .map(|c| {
                let member = Member {
                    labels: c.labels.clone(),
                    started_at: c.started_at,
                    value: c.value,
                    reason: c.reason.clone(),
                };
                (member_key(&c.labels), member)
            })
            .collect();
        let (status, resolved) = match &prev {
            None => (Some(AlertStatus::Firing), Vec::new()),
            Some(p) => change(p, &current, present, self.repeat, now),
        };
        let mut group = GroupState {
            rule: rule.clone(),
            labels: labels.clone(),
            severity,
            members: current,
            last_status: prev.as_ref().map_or(AlertStatus::Firing, |p| p.last_status),
            last_sent_at: prev.as_ref().map_or(now, |p| p.last_sent_at),
            notifiers: prev.map(|p| p.notifiers).unwrap_or_default(),
        };
        let Some(status) = status else {
            return group;
        };
        let mut items: Vec<AlertItem> = group.members.values().map(item).collect();
        items.extend(resolved.iter().map(|m| item(m).resolved_at(now)));
        let notice = Notice::alert(status, &rule, severity, labels, items, now, self.links)
            .repeat_at(now.plus(self.repeat));
        let route = self.route(&rule, &members, severity, &notice);
        if route.is_empty() {
            tracing::error!(rule = %rule, group = %key, "no notifier accepts this alert; configure [[notifiers]]");
        }
        group.last_status = status;
        group.last_sent_at = now;
        // A later resolution goes to everyone who heard of the group.
        let mut all: BTreeSet<String> = group.notifiers.iter().cloned().collect();
        all.extend(route.iter().cloned());
        group.notifiers = all.into_iter().collect();
        notices.push((notice, route));
        group
    }

    /// A group of which nothing fires unmuted any more. Members that left the book resolved
    /// (announced where the firing went); members still in it are muted by a silence.
    fn resolved(
        &self,
        prev: &GroupState,
        present: &Present,
        now: Timestamp,
    ) -> Option<(Notice, Vec<String>)> {
        let resolved: Vec<Member> = prev
            .members
            .iter()
            .filter(|(k, _)| !present.contains(&(prev.rule.clone(), (*k).clone())))
            .map(|(_, m)| m.clone())
            .collect();
        if resolved.is_empty() {
            return None;
        }
        let items = resolved.iter().map(|m| item(m).resolved_at(now)).collect();
        let notice = Notice::alert(
            AlertStatus::Resolved,
            &prev.rule,
            prev.severity,
            prev.labels.clone(),
            items,
            now,
            self.links,
        );
        let route: Vec<String> = prev
            .notifiers
            .iter()
            .filter(|id| self.accepts(id, &notice))
            .cloned()
            .collect();
        Some((notice, route))
    }

    fn accepts(&self, id: &str, notice: &Notice) -> bool {
        self.notifiers
            .iter()
            .any(|(c, n)| c.id == id && n.accepts(notice))
    }

    /// Silence announcements go to every notifier that takes them, whatever its severities:
    /// nobody mutes alerts unseen.
    pub(crate) fn announcement_route(&self, notice: &Notice) -> Vec<String> {
        announcement_route(self.notifiers, notice)
    }

    /// Where a group's notice goes (see the parent module's documentation).
    fn route(
        &self,
        rule: &str,
        members: &[Candidate],
        severity: Severity,
        notice: &Notice,
    ) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        let mut by_severity = false;
        for m in members {
            let tenant = m.labels.get("tenant");
            let source = m.labels.get("source");
            let explicit = self
                .rules
                .iter()
                .filter(|o| o.rule == rule && !o.notifiers.is_empty())
                .filter(|o| o.tenant.as_ref().is_none_or(|t| Some(t) == tenant))
                .filter(|o| o.source.as_ref().is_none_or(|s| Some(s) == source))
                .max_by_key(|o| (o.source.is_some(), o.tenant.is_some()));
            match explicit {
                Some(o) => out.extend(o.notifiers.iter().cloned()),
                None => by_severity = true,
            }
        }
        if by_severity {
            out.extend(
                self.notifiers
                    .iter()
                    .filter(|(c, _)| c.severities.is_empty() || c.severities.contains(&severity))
                    .map(|(c, _)| c.id.clone()),
            );
        }
        // `notifier_failing` of a notifier never goes to that notifier.
        let failing: Vec<&String> = if rule == NOTIFIER_FAILING {
            members
                .iter()
                .filter_map(|m| m.labels.get("notifier"))
                .collect()
        } else {
            Vec::new()
        };
        out.into_iter()
            .filter(|id| !failing.contains(&id))
            .filter(|id| self.accepts(id, notice))
            .collect()
    }
}

/// The notifiers that take a silence announcement (or any notice routed to all).
pub(crate) fn announcement_route(
    notifiers: &[(NotifierConfig, Arc<dyn Notifier>)],
    notice: &Notice,
) -> Vec<String> {
    notifiers
        .iter()
        .filter(|(_, n)| n.accepts(notice))
        .map(|(c, _)| c.id.clone())
        .collect()
}

/// The labels of a monitor alert, without the empty ones.
pub(crate) fn alert_labels(a: &ActiveAlert) -> BTreeMap<String, String> {
    let l = &a.key.labels;
    [
        ("tenant", &l.tenant),
        ("source", &l.source),
        ("channel", &l.channel),
        ("destination", &l.destination),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect()
}

/// The silence muting an alert of `rule` with `labels` at `now`, if any. A silence matches
/// when every one of its matchers equals the alert's label (`rule` included); `watchdog` and
/// `canary_failed` are never muted, whatever a silence says.
pub(crate) fn silenced_by<'a>(
    rule: &str,
    labels: &BTreeMap<String, String>,
    silences: &'a [Silence],
    now: Timestamp,
) -> Option<&'a Silence> {
    if UNSILENCEABLE.contains(&rule) {
        return None;
    }
    silences.iter().find(|s| {
        s.is_active(now)
            && !s.matchers.is_empty()
            && s.matchers.iter().all(|(k, v)| match k.as_str() {
                "rule" => v == rule,
                _ => labels.get(k) == Some(v),
            })
    })
}

/// A silence as notices describe it.
pub(crate) fn silence_info(s: &Silence) -> SilenceInfo {
    SilenceInfo {
        id: s.id.clone(),
        matchers: s.matchers.clone(),
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
    }
}

fn group_labels(rule: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut g = BTreeMap::new();
    if rule == NOTIFIER_FAILING {
        if let Some(n) = labels.get("notifier") {
            g.insert("notifier".to_string(), n.clone());
        }
    } else if let Some(t) = labels.get("tenant") {
        g.insert("tenant".to_string(), t.clone());
    }
    // A drill's alerts are a group of their own: their notices are marked, and a real alert
    // of the same rule and tenant is never folded into a drill's notice.
    if let Some(d) = labels.get(DRILL_LABEL) {
        g.insert(DRILL_LABEL.to_string(), d.clone());
    }
    g
}

fn member_key(labels: &BTreeMap<String, String>) -> String {
    intake_notify::group_key("", labels)
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Critical => 3,
        Severity::Warning => 2,
        Severity::Info => 1,
    }
}

fn item(m: &Member) -> AlertItem {
    AlertItem::new(m.labels.clone(), m.reason.clone(), m.started_at).value(m.value)
}

#[cfg(test)]
mod tests {
    //! The decision as a table: each case is a story of evaluations (what the book holds,
    //! which silences exist, when), run through [`decide`] one after the other from an empty
    //! state. Each step says which notices it expects (status, rule, group, route); the full
    //! notices and the state after each step are `insta` snapshots.

    use super::*;
    use intake_core::config::Config;
    use intake_core::ManualClock;
    use intake_monitor::{AlertKey, Labels};
    use serde_json::{json, Value};

    const T0: i64 = 1_800_000_000_000;
    const MIN: i64 = 60_000;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[monitor]
repeat_interval = "1h"
[[tenants]]
id = "maelys"
[[tenants]]
id = "other"
[[destinations]]
id = "h"
url = "http://127.0.0.1:9/"
secret = "whsec_dGVzdC1kZXN0aW5hdGlvbi1zZWNyZXQ="
[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["x"]
destinations = ["h"]
[[sources]]
id = "other-kustomer"
tenant = "other"
kind = "kustomer"
secrets = ["x"]
destinations = ["h"]
[[notifiers]]
id = "slack"
kind = "slack"
url = "http://127.0.0.1:9/slack"
[[notifiers]]
id = "pager"
kind = "pagerduty"
routing_key = "0123456789abcdef0123456789abcdef"
url = "http://127.0.0.1:9/pager"
severities = ["critical"]
[[notifiers]]
id = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
severities = ["warning"]
[[notifiers]]
id = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9/am"
[[rules]]
rule = "inbound_drop"
tenant = "other"
notifiers = ["hook"]
"#,
        )
        .unwrap()
    }

    fn alert(rule: &str, state: AlertState, severity: Severity, labels: [&str; 3]) -> ActiveAlert {
        let [tenant, source, channel] = labels.map(str::to_string);
        ActiveAlert {
            key: AlertKey {
                rule: rule.into(),
                labels: Labels {
                    tenant,
                    source,
                    channel,
                    destination: String::new(),
                },
            },
            state,
            severity,
            active_since: Timestamp(T0 - 10 * MIN),
            firing_since: Some(Timestamp(T0 - 5 * MIN)),
            value: 0.0,
            reason: format!("{rule} on {}", labels.join("/")),
            false_streak: 0,
            for_secs: 300,
            resolve_after: 2,
        }
    }

    fn firing(rule: &str, severity: Severity, labels: [&str; 3]) -> ActiveAlert {
        alert(rule, AlertState::Firing, severity, labels)
    }

    fn silence(id: &str, matchers: &[(&str, &str)], ends_at: i64, announced: bool) -> Silence {
        Silence {
            id: id.into(),
            matchers: matchers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: Timestamp(T0 - 60 * MIN),
            ends_at: Timestamp(ends_at),
            created_by: "alice".into(),
            comment: "maintenance".into(),
            created_at: Timestamp(T0 - 60 * MIN),
            expiry_announced: announced,
        }
    }

    fn failing(notifier: &str) -> (String, NotifierAlert) {
        let alert = NotifierAlert {
            since: Timestamp(T0),
            reason: format!("notifier `{notifier}`: 2 notification(s) undelivered"),
            value: 3.0,
            severity: Severity::Critical,
        };
        (notifier.to_string(), alert)
    }

    const STOPPED: &str = "inbound_stopped";
    const DROP: &str = "inbound_drop";
    const MAELYS_CHAT: [&str; 3] = ["maelys", "maelys-kustomer", "chat"];
    const MAELYS_EMAIL: [&str; 3] = ["maelys", "maelys-kustomer", "email"];
    const OTHER_CHAT: [&str; 3] = ["other", "other-kustomer", "chat"];

    /// One evaluation of a story.
    struct Step {
        /// Minutes after T0.
        at: i64,
        book: Vec<ActiveAlert>,
        silences: Vec<Silence>,
        /// Failing notifiers, as the pipeline raised them before deciding.
        failing: Vec<(String, NotifierAlert)>,
        /// The notices expected: "status rule group-key -> route".
        expect: &'static [&'static str],
    }

    fn step(at: i64, book: Vec<ActiveAlert>, expect: &'static [&'static str]) -> Step {
        Step {
            at,
            book,
            silences: Vec::new(),
            failing: Vec::new(),
            expect,
        }
    }

    fn cases() -> Vec<(&'static str, Vec<Step>)> {
        use Severity::{Critical, Warning};
        let stopped = || firing(STOPPED, Critical, MAELYS_CHAT);
        let muted =
            |ends: i64, announced| vec![silence("sil_1", &[("tenant", "maelys")], ends, announced)];
        vec![
            (
                "firing_first_time",
                vec![step(
                    0,
                    vec![stopped()],
                    &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                )],
            ),
            (
                "pending_is_not_notified",
                vec![step(
                    0,
                    vec![alert(STOPPED, AlertState::Pending, Critical, MAELYS_CHAT)],
                    &[],
                )],
            ),
            (
                "repeat_after_repeat_interval_not_before",
                vec![
                    step(
                        0,
                        vec![stopped()],
                        &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                    step(30, vec![stopped()], &[]),
                    step(59, vec![stopped()], &[]),
                    step(
                        60,
                        vec![stopped()],
                        &["repeat inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                ],
            ),
            (
                "resolved_goes_where_the_firing_went",
                vec![
                    step(
                        0,
                        vec![stopped()],
                        &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                    step(
                        5,
                        vec![],
                        &["resolved inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                    step(10, vec![], &[]),
                ],
            ),
            (
                "a_member_resolving_while_others_fire_is_a_firing_update",
                vec![
                    step(
                        0,
                        vec![stopped(), firing(STOPPED, Critical, MAELYS_EMAIL)],
                        &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                    step(
                        5,
                        vec![stopped()],
                        &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                ],
            ),
            (
                "grouped_per_rule_and_tenant",
                vec![step(
                    0,
                    vec![
                        stopped(),
                        firing(STOPPED, Critical, MAELYS_EMAIL),
                        firing(STOPPED, Critical, OTHER_CHAT),
                        firing(DROP, Warning, MAELYS_CHAT),
                    ],
                    &[
                        "firing inbound_drop tenant=maelys -> am,hook,slack",
                        "firing inbound_stopped tenant=maelys -> am,pager,slack",
                        "firing inbound_stopped tenant=other -> am,pager,slack",
                    ],
                )],
            ),
            (
                "routed_by_rules_notifiers_else_by_severities",
                vec![step(
                    0,
                    vec![
                        firing(DROP, Warning, OTHER_CHAT),
                        firing(DROP, Critical, MAELYS_CHAT),
                    ],
                    &[
                        "firing inbound_drop tenant=maelys -> am,pager,slack",
                        "firing inbound_drop tenant=other -> hook",
                    ],
                )],
            ),
            (
                "silenced_stays_quiet_then_notifies_when_the_silence_expires",
                vec![
                    Step {
                        silences: muted(T0 + 30 * MIN, false),
                        ..step(0, vec![stopped()], &[])
                    },
                    Step {
                        silences: muted(T0 + 30 * MIN, false),
                        ..step(
                            30,
                            vec![stopped()],
                            &[
                                "firing inbound_stopped tenant=maelys -> am,pager,slack",
                                "expired silence tenant=maelys -> slack,pager,hook",
                            ],
                        )
                    },
                    Step {
                        silences: muted(T0 + 30 * MIN, true),
                        ..step(35, vec![stopped()], &[])
                    },
                ],
            ),
            (
                "a_silenced_member_neither_resolves_nor_repeats",
                vec![
                    step(
                        0,
                        vec![stopped()],
                        &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                    Step {
                        silences: muted(T0 + 120 * MIN, false),
                        ..step(70, vec![stopped()], &[])
                    },
                    step(
                        130,
                        vec![stopped()],
                        &["firing inbound_stopped tenant=maelys -> am,pager,slack"],
                    ),
                ],
            ),
            (
                "watchdog_and_canary_are_never_muted",
                vec![Step {
                    silences: vec![silence(
                        "sil_2",
                        &[("tenant", "maelys")],
                        T0 + 60 * MIN,
                        false,
                    )],
                    ..step(
                        0,
                        vec![firing("canary_failed", Critical, MAELYS_CHAT)],
                        &["firing canary_failed tenant=maelys -> am,pager,slack"],
                    )
                }],
            ),
            (
                "notifier_failing_goes_to_the_other_notifiers",
                vec![
                    Step {
                        failing: vec![failing("slack")],
                        ..step(
                            0,
                            vec![],
                            &["firing notifier_failing notifier=slack -> am,pager"],
                        )
                    },
                    step(
                        5,
                        vec![],
                        &["resolved notifier_failing notifier=slack -> am,pager"],
                    ),
                ],
            ),
        ]
    }

    /// "status rule group -> route" of a notice.
    fn line(notice: &Notice, route: &[String]) -> String {
        let v = serde_json::to_value(notice).unwrap();
        let group: Vec<String> = notice
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let group = if group.is_empty() {
            "-".to_string()
        } else {
            group.join(",")
        };
        format!(
            "{} {} {group} -> {}",
            v["status"].as_str().unwrap_or("?"),
            notice
                .rule
                .as_deref()
                .unwrap_or(v["kind"].as_str().unwrap_or("?")),
            route.join(","),
        )
    }

    /// What a snapshot shows of a step: every notice (its line, summary, reason and alerts)
    /// and the state afterwards.
    fn shown(at: i64, d: &Decision) -> Value {
        let notices: Vec<Value> = d
            .notices
            .iter()
            .map(|(n, route)| {
                let alerts: Vec<Value> = n
                    .alerts
                    .iter()
                    .map(|a| json!({ "labels": a.labels, "resolved_at": a.resolved_at }))
                    .collect();
                json!({
                    "notice": line(n, route),
                    "key": n.key,
                    "severity": n.severity,
                    "summary": n.summary,
                    "reason": n.reason,
                    "alerts": alerts,
                    "repeat_at": n.repeat_at,
                })
            })
            .collect();
        json!({
            "at_minute": at,
            "notices": notices,
            "announced_expiries": d.announced_expiries,
            "state": d.state,
        })
    }

    /// `inbound_drop`'s grouped warning (many tenants down at once) names no tenant: it is one
    /// group of its own beside the per-tenant ones, routed by severity, muted by a silence of
    /// the rule and not by one of a tenant.
    #[test]
    fn a_grouped_drop_across_tenants_is_one_notice_and_a_rule_silence_mutes_it() {
        let config = config();
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
        let notifiers: Vec<(NotifierConfig, Arc<dyn Notifier>)> = config
            .notifiers
            .iter()
            .map(|n| {
                let ctx = intake_notify::NotifyContext::new(clock.clone());
                (n.clone(), Arc::from(intake_notify::build(n, &ctx).unwrap()))
            })
            .collect();
        let links = LinkBuilder::default();
        let routing = Routing {
            notifiers: &notifiers,
            rules: &config.rules,
            links: &links,
            repeat: config.monitor.repeat_interval.0,
        };
        let grouped = firing(DROP, Severity::Warning, ["", "", ""]);
        let single = firing(DROP, Severity::Warning, MAELYS_CHAT);
        let book = [grouped, single];
        let now = Timestamp(T0);
        let d = decide(NotifyState::default(), &book, &[], &[], &routing, now);
        let got: Vec<String> = d.notices.iter().map(|(n, r)| line(n, r)).collect();
        assert_eq!(
            got,
            [
                "firing inbound_drop tenant=maelys -> am,hook,slack",
                "firing inbound_drop - -> am,hook,slack",
            ]
        );
        let by_tenant = [silence(
            "sil_1",
            &[("tenant", "maelys")],
            T0 + 60 * MIN,
            false,
        )];
        let d = decide(
            NotifyState::default(),
            &book,
            &by_tenant,
            &[],
            &routing,
            now,
        );
        let got: Vec<String> = d.notices.iter().map(|(n, r)| line(n, r)).collect();
        assert_eq!(got, ["firing inbound_drop - -> am,hook,slack"]);
        let by_rule = [silence("sil_2", &[("rule", DROP)], T0 + 60 * MIN, false)];
        let d = decide(NotifyState::default(), &book, &by_rule, &[], &routing, now);
        assert!(d.notices.is_empty(), "{:?}", d.notices);
    }

    #[test]
    fn the_decision_table() {
        let config = config();
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
        let notifiers: Vec<(NotifierConfig, Arc<dyn Notifier>)> = config
            .notifiers
            .iter()
            .map(|n| {
                let ctx = intake_notify::NotifyContext::new(clock.clone());
                (n.clone(), Arc::from(intake_notify::build(n, &ctx).unwrap()))
            })
            .collect();
        let links = LinkBuilder::default();
        let routing = Routing {
            notifiers: &notifiers,
            rules: &config.rules,
            links: &links,
            repeat: config.monitor.repeat_interval.0,
        };
        for (name, steps) in cases() {
            let mut state = NotifyState::default();
            let mut story = Vec::new();
            for (i, s) in steps.into_iter().enumerate() {
                state.notifier_alerts = s.failing.into_iter().collect();
                let now = Timestamp(T0 + s.at * MIN);
                let d = decide(state, &s.book, &s.silences, &[], &routing, now);
                let got: Vec<String> = d.notices.iter().map(|(n, r)| line(n, r)).collect();
                assert_eq!(got, s.expect, "{name}, step {i} (minute {})", s.at);
                story.push(shown(s.at, &d));
                state = d.state;
            }
            insta::assert_json_snapshot!(name, story);
        }
    }

    #[test]
    fn a_drill_s_alerts_are_a_marked_group_of_their_own_until_they_resolve() {
        use intake_core::drill::Scenario;
        let config = config();
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
        let notifiers: Vec<(NotifierConfig, Arc<dyn Notifier>)> = config
            .notifiers
            .iter()
            .map(|n| {
                let ctx = intake_notify::NotifyContext::new(clock.clone());
                (n.clone(), Arc::from(intake_notify::build(n, &ctx).unwrap()))
            })
            .collect();
        let links = LinkBuilder::default();
        let routing = Routing {
            notifiers: &notifiers,
            rules: &config.rules,
            links: &links,
            repeat: config.monitor.repeat_interval.0,
        };
        let mut drill = DrillScope {
            id: "drl_1".into(),
            scenario: Scenario::QueueStall,
            target: "maelys-kustomer".into(),
            routed_sources: Vec::new(),
            from: Timestamp(T0 - 20 * MIN),
            until: None,
            grace: Duration::from_secs(60),
        };
        // The drill's canary alert, a real one of the same rule and tenant, and one of the
        // drill's source that was active before the drill began (a real problem).
        let ours = firing("canary_failed", Severity::Critical, MAELYS_CHAT);
        let real = firing(
            "canary_failed",
            Severity::Critical,
            ["maelys", "maelys-zendesk", "chat"],
        );
        let mut before = firing("queue_stalled", Severity::Critical, MAELYS_CHAT);
        before.active_since = Timestamp(T0 - 30 * MIN);
        let book = vec![ours, real.clone(), before.clone()];
        let d = decide(
            NotifyState::default(),
            &book,
            &[],
            std::slice::from_ref(&drill),
            &routing,
            Timestamp(T0),
        );
        let keys: Vec<(&str, bool)> = d
            .notices
            .iter()
            .map(|(n, _)| (n.key.as_str(), n.drill.is_some()))
            .collect();
        assert_eq!(
            keys,
            [
                (r#"canary_failed{drill="drl_1",tenant="maelys"}"#, true),
                (r#"canary_failed{tenant="maelys"}"#, false),
                (r#"queue_stalled{tenant="maelys"}"#, false),
            ]
        );
        let (marked, route) = &d.notices[0];
        assert!(marked
            .summary
            .starts_with("[DRILL] [FIRING] Canary did not arrive"));
        assert_eq!(marked.alerts[0].labels["drill"], "drl_1");
        assert_eq!(marked.labels["drill"], "drl_1");
        assert!(!route.is_empty(), "routed like the real alert would be");
        assert!(!d.notices[1].0.summary.contains("[DRILL]"));

        // Healed; its alert resolves after: the resolution is the drill's too.
        drill.until = Some(Timestamp(T0));
        let d = decide(
            d.state,
            &[real, before],
            &[],
            std::slice::from_ref(&drill),
            &routing,
            Timestamp(T0 + 3 * MIN),
        );
        assert_eq!(d.notices.len(), 1, "{:#?}", d.notices);
        let (resolved, _) = &d.notices[0];
        assert_eq!(
            resolved.key,
            r#"canary_failed{drill="drl_1",tenant="maelys"}"#
        );
        assert!(resolved.is_resolution());
        assert_eq!(resolved.drill.as_deref(), Some("drl_1"));
        assert!(resolved.summary.starts_with("[DRILL] [RESOLVED]"));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn silences_match_every_matcher_and_never_the_watchdog_or_canary() {
        // Silences from 0 to 1000 ms.
        let window = |id: &str, matchers: &[(&str, &str)]| Silence {
            starts_at: Timestamp(0),
            ..silence(id, matchers, 1000, false)
        };
        let t = Timestamp;
        let l = labels(&[("tenant", "maelys"), ("source", "s1")]);
        let s = [window("sil_1", &[("tenant", "maelys")])];
        assert!(silenced_by("queue_stalled", &l, &s, t(10)).is_some());
        assert!(
            silenced_by("queue_stalled", &l, &s, t(1000)).is_none(),
            "ended"
        );
        assert!(silenced_by("canary_failed", &l, &s, t(10)).is_none());
        assert!(silenced_by("watchdog", &l, &s, t(10)).is_none());
        let other = labels(&[("tenant", "other")]);
        assert!(silenced_by("queue_stalled", &other, &s, t(10)).is_none());
        let by_rule = [window(
            "sil_2",
            &[("rule", "inbound_drop"), ("tenant", "maelys")],
        )];
        assert!(silenced_by("inbound_drop", &l, &by_rule, t(10)).is_some());
        assert!(silenced_by("queue_stalled", &l, &by_rule, t(10)).is_none());
        // A label the alert does not carry never matches.
        let by_channel = [window(
            "sil_3",
            &[("tenant", "maelys"), ("channel", "chat")],
        )];
        assert!(silenced_by("queue_stalled", &l, &by_channel, t(10)).is_none());
    }

    #[test]
    fn groups_are_per_rule_and_tenant_or_notifier() {
        let a = labels(&[("tenant", "maelys"), ("source", "s1"), ("channel", "chat")]);
        assert_eq!(
            group_labels("inbound_stopped", &a),
            labels(&[("tenant", "maelys")])
        );
        let n = labels(&[("notifier", "slack")]);
        assert_eq!(group_labels(NOTIFIER_FAILING, &n), n);
    }
}
