//! `[[drills]]` schedules, decided as pure functions tested with tables: which scheduled
//! drills are due ([`due`]), and `drill_failed` from the last verdict of each schedule
//! ([`failed_findings`]).

use std::collections::{BTreeMap, HashMap};

use intake_core::config::{Config, DrillConfig};
use intake_core::drill::{Scenario, Schedule, TargetKind, DRILL_FAILED};
use intake_core::Timestamp;
use intake_monitor::{AlertKey, DrillFailed, Finding, Labels, RuleBook};
use intake_store::{Drill, DrillState};

use super::decide::{DrillMissing, DrillReport};

/// The scheduled drills due at `now`, and the next instant one falls due (when the duty
/// should look again).
///
/// A schedule's first drill runs as soon as the duty sees it (so a new schedule proves itself
/// at once); each next one a period after the previous one started. A schedule whose target
/// has a drill running (its own, or one started by hand) waits for it to end.
pub fn due<'a>(
    schedules: &'a [DrillConfig],
    last: &HashMap<String, Drill>,
    running: &[Drill],
    now: Timestamp,
) -> (Vec<&'a DrillConfig>, Option<Timestamp>) {
    let mut due = Vec::new();
    let mut next: Option<Timestamp> = None;
    for s in schedules {
        let (Some(scenario), Some(target), Ok(schedule)) = (
            Scenario::parse(&s.scenario),
            s.target(),
            Schedule::parse(&s.schedule),
        ) else {
            continue;
        };
        let kind = scenario.target_kind();
        let busy = running
            .iter()
            .any(|d| d.scenario.target_kind() == kind && d.target == target);
        if busy {
            continue;
        }
        let at = last
            .get(&s.key())
            .map_or(now, |d| d.started_at.plus(schedule.0));
        if at <= now {
            due.push(s);
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    (due, next)
}

/// `drill_failed` for every configured schedule whose last judged drill (passed or failed)
/// failed; it resolves when the next drill of the schedule passes. Labelled by the drill's
/// target: tenant and source, or destination; a notifier has no label of its own, so the
/// failed `notifier-down` schedules share one alert that names each.
pub fn failed_findings(
    config: &Config,
    rules: &RuleBook,
    last_judged: &HashMap<String, Drill>,
) -> Vec<Finding> {
    let mut found: BTreeMap<(String, String, String), Finding> = BTreeMap::new();
    for s in &config.drills {
        let Some(d) = last_judged.get(&s.key()) else {
            continue;
        };
        if d.state != DrillState::Failed {
            continue;
        }
        let (tenant, source, destination) = match d.scenario.target_kind() {
            TargetKind::Source => (
                config
                    .source(&d.target)
                    .map(|c| c.tenant.clone())
                    .unwrap_or_default(),
                d.target.clone(),
                String::new(),
            ),
            TargetKind::Destination => (String::new(), String::new(), d.target.clone()),
            TargetKind::Notifier => (String::new(), String::new(), String::new()),
        };
        let missing = DrillReport::of(d)
            .missing
            .unwrap_or(DrillMissing::NoAlert)
            .describe(d.scenario);
        let reason = format!(
            "the scheduled {} drill {} on {} `{}` ({}) failed at {}: {missing}",
            d.scenario,
            d.id,
            d.scenario.target_kind().as_str(),
            d.target,
            s.schedule,
            d.healed_at.unwrap_or(d.expires_at),
        );
        let params: DrillFailed = rules.resolve(&tenant, &source);
        let key = (tenant.clone(), source.clone(), destination.clone());
        match found.get_mut(&key) {
            Some(f) => {
                f.reason = format!("{}; {reason}", f.reason);
                f.value += 1.0;
            }
            None => {
                found.insert(
                    key,
                    Finding {
                        key: AlertKey {
                            rule: DRILL_FAILED.into(),
                            labels: Labels {
                                tenant,
                                source,
                                channel: String::new(),
                                destination,
                            },
                        },
                        params: params.common,
                        value: 1.0,
                        reason,
                    },
                );
            }
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use intake_core::config::Severity;
    use intake_store::DrillTrigger;

    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const HOUR: u64 = 3600;

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[tenants]]
id = "t"
[[destinations]]
id = "d"
url = "http://127.0.0.1:9/h"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[sources]]
id = "s"
tenant = "t"
kind = "kustomer"
secrets = ["x"]
destinations = ["d"]
[[notifiers]]
id = "n1"
kind = "webhook"
url = "http://127.0.0.1:9/n1"
[[notifiers]]
id = "n2"
kind = "webhook"
url = "http://127.0.0.1:9/n2"
[[drills]]
scenario = "queue-stall"
source = "s"
schedule = "daily"
[[drills]]
scenario = "handler-down"
destination = "d"
schedule = "2h"
[[drills]]
scenario = "notifier-down"
notifier = "n1"
schedule = "weekly"
[[drills]]
scenario = "notifier-down"
notifier = "n2"
schedule = "weekly"
[[rules]]
rule = "drill_failed"
tenant = "t"
severity = "warning"
"#,
        )
        .unwrap()
    }

    fn drill(scenario: Scenario, target: &str, state: DrillState, started: u64) -> Drill {
        let missing = (state == DrillState::Failed).then_some(DrillMissing::NotRouted);
        Drill {
            id: format!("drl_{target}_{started}"),
            scenario,
            target: target.into(),
            tenant: None,
            trigger: DrillTrigger::Scheduled,
            schedule: Some(format!("{scenario}:{target}")),
            state,
            created_by: "schedule".into(),
            started_at: at(started),
            expires_at: at(started + 300),
            detected_at: None,
            notified_at: None,
            healed_at: Some(at(started + 300)),
            report: DrillReport {
                missing,
                ..DrillReport::default()
            }
            .to_json(),
        }
    }

    fn keys(due: &[&DrillConfig]) -> Vec<String> {
        due.iter().map(|d| d.key()).collect()
    }

    #[test]
    fn schedules_fall_due_a_period_after_their_last_start_and_wait_for_a_running_target() {
        let c = config();
        let last = |pairs: &[(Scenario, &str, u64)]| -> HashMap<String, Drill> {
            pairs
                .iter()
                .map(|(s, t, started)| {
                    (
                        format!("{s}:{t}"),
                        drill(*s, t, DrillState::Passed, *started),
                    )
                })
                .collect()
        };
        let all = [
            (Scenario::QueueStall, "s", 0),
            (Scenario::HandlerDown, "d", 0),
            (Scenario::NotifierDown, "n1", 0),
            (Scenario::NotifierDown, "n2", 0),
        ];
        // (case, last drills, running, now, due, next)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            HashMap<String, Drill>,
            Vec<Drill>,
            u64,
            Vec<&str>,
            Option<u64>,
        )> = vec![
            (
                "never run: all at once",
                HashMap::new(),
                vec![],
                0,
                vec![
                    "queue-stall:s",
                    "handler-down:d",
                    "notifier-down:n1",
                    "notifier-down:n2",
                ],
                None,
            ),
            (
                "all just ran",
                last(&all),
                vec![],
                60,
                vec![],
                Some(2 * HOUR),
            ),
            (
                "two hours on",
                last(&all),
                vec![],
                2 * HOUR,
                vec!["handler-down:d"],
                Some(24 * HOUR),
            ),
            (
                "a day on",
                last(&all),
                vec![],
                24 * HOUR,
                vec!["queue-stall:s", "handler-down:d"],
                Some(7 * 24 * HOUR),
            ),
            (
                "a drill by hand runs on the source: the schedule waits",
                last(&all),
                vec![drill(
                    Scenario::FlowStop,
                    "s",
                    DrillState::Running,
                    24 * HOUR - 10,
                )],
                24 * HOUR,
                vec!["handler-down:d"],
                Some(7 * 24 * HOUR),
            ),
        ];
        for (name, last, running, now, want, next) in cases {
            let (due, n) = due(&c.drills, &last, &running, at(now));
            assert_eq!(keys(&due), want, "{name}");
            assert_eq!(n, next.map(at), "{name}");
        }
    }

    #[test]
    fn drill_failed_follows_the_last_verdict_of_each_schedule() {
        let c = config();
        let rules = RuleBook::new(&c.rules).unwrap();
        let judged = |list: Vec<Drill>| -> HashMap<String, Drill> {
            list.into_iter()
                .map(|d| (d.schedule.clone().unwrap_or_default(), d))
                .collect()
        };
        assert!(failed_findings(&c, &rules, &HashMap::new()).is_empty());
        let passed = judged(vec![drill(
            Scenario::QueueStall,
            "s",
            DrillState::Passed,
            0,
        )]);
        assert!(failed_findings(&c, &rules, &passed).is_empty());

        let failed = judged(vec![
            drill(Scenario::QueueStall, "s", DrillState::Failed, 0),
            drill(Scenario::HandlerDown, "d", DrillState::Failed, 0),
            drill(Scenario::NotifierDown, "n1", DrillState::Failed, 0),
            drill(Scenario::NotifierDown, "n2", DrillState::Failed, 0),
        ]);
        let found = failed_findings(&c, &rules, &failed);
        assert_eq!(found.len(), 3, "{found:#?}");
        let by_labels = |tenant: &str, source: &str, destination: &str| {
            found
                .iter()
                .find(|f| {
                    f.key.labels.tenant == tenant
                        && f.key.labels.source == source
                        && f.key.labels.destination == destination
                })
                .unwrap_or_else(|| panic!("{tenant}/{source}/{destination}: {found:#?}"))
        };
        let s = by_labels("t", "s", "");
        assert_eq!(s.key.rule, "drill_failed");
        assert_eq!(
            s.params.severity,
            Severity::Warning,
            "the tenant's override"
        );
        assert!(
            s.reason.starts_with(
                "the scheduled queue-stall drill drl_s_0 on source `s` (daily) failed at"
            ) && s.reason.contains("routed to no notifier"),
            "{}",
            s.reason
        );
        let d = by_labels("", "", "d");
        assert_eq!(d.params.severity, Severity::Critical);
        let n = by_labels("", "", "");
        assert_eq!(n.value, 2.0);
        assert!(
            n.reason.contains("`n1`") && n.reason.contains("`n2`"),
            "{}",
            n.reason
        );
        // A schedule no longer configured raises nothing.
        let gone = judged(vec![drill(Scenario::FlowStop, "s", DrillState::Failed, 0)]);
        assert!(failed_findings(&c, &rules, &gone).is_empty());
    }
}
