//! The monitor: per-series history, the rules, and the alert book, advanced one evaluation
//! at a time on whatever clock the caller has.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alert::{AlertBook, AlertKey, Finding, Labels, Transition};
use crate::band::{expected_hours, ExpectedHour};
use crate::baseline::{
    expected_between, hour_baseline, BaselineConfig, BaselineKind, HourBaseline,
};
use crate::calendar::QuietDays;
use crate::completion::{self, CompletionSnapshot};
use crate::drop::{self, CanaryHealth, DropGroup};
use crate::gap::{self, GapReport};
use crate::history::{
    hour_of, minute_of_millis, FlowHistory, Hour, Minute, QueueHistory, QueueMinute, QueueSnapshot,
    RequestHistory, RequestMinute,
};
use crate::params::{
    CompletionErrors, CompletionStalled, DeadLetters, DeliveryErrors, InboundDrop, InboundStopped,
    ProcessingDrop, QueueBacklog, QueueStalled, RejectionsSpike, RuleBook, RuleParams, SourceGap,
    EXTERNAL_RULES,
};
use crate::stats::{fmt_secs, minutes_of};
use crate::stopped::{held, stopped};

pub use crate::keys::{FlowKey, QueueKey, SourceKey};

/// Settings shared by every series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// How baselines are built.
    pub baseline: BaselineConfig,
    /// Minutes of per-minute history kept per flow (6 h): the longest window any flow rule
    /// looks at, including `inbound_stopped`'s stretch before a silence.
    pub minute_capacity: usize,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            baseline: BaselineConfig::default(),
            minute_capacity: 360,
        }
    }
}

/// What the flows API shows for one flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowStatus {
    /// The flow.
    #[serde(flatten)]
    pub key: FlowKey,
    /// Events over the last 60 complete minutes.
    pub last_hour: u64,
    /// What the baseline expected over them, if there is a baseline.
    pub expected_last_hour: Option<f64>,
    /// Which baseline.
    pub baseline: Option<BaselineKind>,
    /// The series' dispersion estimate.
    pub dispersion: Option<f64>,
    /// The start of the newest minute with an event.
    pub last_event_at: Option<Timestamp>,
}

/// One flow's expectations over recent hours ([`Monitor::flow_bands`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowBand {
    /// The flow.
    #[serde(flatten)]
    pub key: FlowKey,
    /// The series' dispersion (`alpha` of its negative binomial count model), when estimated.
    pub dispersion: Option<f64>,
    /// The hours that have a baseline, oldest first (hours without one are left out).
    pub hours: Vec<ExpectedHour>,
}

/// One flow's expectation of the hour in progress and the hour before it
/// ([`Monitor::flow_hours`]): what changes only when an hour begins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowHours<'a> {
    /// The flow.
    pub key: &'a FlowKey,
    /// The start of the hour in progress.
    pub hour: Timestamp,
    /// Which baseline the hour in progress has (none: no expectation yet).
    pub baseline: Option<BaselineKind>,
    /// The hour before's expectation, then the hour in progress's; an hour without a baseline
    /// is `None`.
    pub hours: [Option<ExpectedHour>; 2],
}

/// The detectors and their state. Feed it counts with the `record_*` methods and call
/// [`Monitor::evaluate`] once per interval.
#[derive(Debug, Clone)]
pub struct Monitor {
    settings: MonitorSettings,
    rules: RuleBook,
    flows: HashMap<FlowKey, FlowHistory>,
    sources: HashMap<SourceKey, RequestHistory>,
    queues: HashMap<QueueKey, QueueHistory>,
    /// The open gaps reconciliation found, per source (`source_gap`).
    gaps: BTreeMap<SourceKey, GapReport>,
    /// What each queue on receipts holds (`completion_stalled`); a queue here is judged by
    /// its confirmations, not its 2xx (`processing_drop`).
    completions: HashMap<QueueKey, CompletionSnapshot>,
    alerts: AlertBook,
    /// Planned quiet days (`[[monitor.calendars]]`).
    quiet_days: QuietDays,
    /// What the canaries say, for `inbound_drop`'s grouped warning.
    canaries: CanaryHealth,
    /// `inbound_drop`'s grouped warning.
    drop_group: DropGroup,
}

fn flow_labels(k: &FlowKey) -> Labels {
    Labels {
        tenant: k.tenant.clone(),
        source: k.source.clone(),
        channel: k.channel.clone(),
        destination: String::new(),
    }
}

fn queue_labels(k: &QueueKey) -> Labels {
    Labels {
        tenant: k.tenant.clone(),
        source: k.source.clone(),
        channel: String::new(),
        destination: k.destination.clone(),
    }
}

fn finding<P: RuleParams>(labels: Labels, p: &P, value: f64, reason: String) -> Finding {
    Finding {
        key: AlertKey {
            rule: P::RULE.to_string(),
            labels,
        },
        params: *p.common(),
        value,
        reason,
    }
}

impl Monitor {
    /// A monitor with no series yet.
    pub fn new(rules: RuleBook, settings: MonitorSettings) -> Self {
        Monitor {
            settings,
            rules,
            flows: HashMap::new(),
            sources: HashMap::new(),
            queues: HashMap::new(),
            gaps: BTreeMap::new(),
            completions: HashMap::new(),
            alerts: AlertBook::new(),
            quiet_days: QuietDays::default(),
            canaries: CanaryHealth::default(),
            drop_group: DropGroup::default(),
        }
    }

    /// Sets the planned quiet days (`[[monitor.calendars]]`).
    pub fn set_quiet_days(&mut self, quiet_days: QuietDays) {
        self.quiet_days = quiet_days;
    }

    /// Records what the canaries say now, before an evaluation: `inbound_drop`'s grouped
    /// warning says whether intake's own pipeline is healthy.
    pub fn observe_canaries(&mut self, health: CanaryHealth) {
        self.canaries = health;
    }

    /// The settings.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Replaces the rules (after a configuration reload); history and alerts are kept.
    pub fn set_rules(&mut self, rules: RuleBook) {
        self.rules = rules;
    }

    /// The alert book: pending and firing alerts.
    pub fn alerts(&self) -> &AlertBook {
        &self.alerts
    }

    /// Replaces the alert book, e.g. with one persisted before a restart.
    pub fn restore_alerts(&mut self, book: AlertBook) {
        self.alerts = book;
    }

    fn flow_mut(&mut self, key: &FlowKey, minute: Minute) -> &mut FlowHistory {
        let cap_m = self.settings.minute_capacity;
        let cap_h = self.settings.baseline.hour_capacity();
        self.flows
            .entry(key.clone())
            .or_insert_with(|| FlowHistory::new(minute, cap_m, cap_h))
    }

    /// Declares a flow that exists from `since` even if it never carried an event, so that
    /// its silence counts as zeros (a configured source is watched from the start).
    pub fn add_flow(&mut self, key: &FlowKey, since: Timestamp) {
        self.flow_mut(key, minute_of_millis(since.as_millis()));
    }

    /// Records the events accepted in the minute starting at `minute` (set semantics:
    /// recording a minute again replaces its count while it is among the last
    /// `minute_capacity` minutes). Feed minutes as they complete, oldest first.
    pub fn record_flow(&mut self, key: &FlowKey, minute: Timestamp, count: u32) {
        let m = minute_of_millis(minute.as_millis());
        self.flow_mut(key, m).record(m, count);
    }

    /// Records a whole hour, for bootstrapping from downsampled history older than the
    /// minute ring. Feed hours oldest first and before any minute of the series.
    pub fn record_flow_hour(&mut self, key: &FlowKey, hour: Timestamp, count: u32) {
        let h = hour_of(minute_of_millis(hour.as_millis()));
        self.flow_mut(key, h * 60).record_hour(h, count);
    }

    /// Records a source's requests of one minute (set semantics).
    pub fn record_requests(&mut self, key: &SourceKey, minute: Timestamp, v: RequestMinute) {
        self.sources
            .entry(key.clone())
            .or_default()
            .record(minute_of_millis(minute.as_millis()), v);
    }

    /// Records a queue's delivery counters of one minute (set semantics).
    pub fn record_queue(&mut self, key: &QueueKey, minute: Timestamp, v: QueueMinute) {
        self.queues
            .entry(key.clone())
            .or_default()
            .record(minute_of_millis(minute.as_millis()), v);
    }

    /// Records a queue's gauges as observed at `at` (normally just before evaluating).
    pub fn observe_queue(&mut self, key: &QueueKey, at: Timestamp, s: QueueSnapshot) {
        self.queues
            .entry(key.clone())
            .or_default()
            .observe(minute_of_millis(at.as_millis()), s);
    }

    /// Records what a queue on receipts holds now (normally just before evaluating), replacing
    /// what was recorded for it before.
    pub fn observe_completion(&mut self, key: &QueueKey, s: CompletionSnapshot) {
        self.completions.insert(key.clone(), s);
    }

    /// Forgets the queues on receipts `keep` refuses (their destination went back to `ack`, or
    /// was removed). Their alerts resolve at the next evaluation.
    pub fn retain_completions(&mut self, keep: impl Fn(&QueueKey) -> bool) {
        self.completions.retain(|k, _| keep(k));
    }

    /// Forgets a flow (its source was removed from the configuration). Its alerts resolve at
    /// the next evaluation.
    pub fn remove_flow(&mut self, key: &FlowKey) {
        self.flows.remove(key);
    }

    /// Forgets a queue.
    pub fn remove_queue(&mut self, key: &QueueKey) {
        self.queues.remove(key);
    }

    /// Records a source's open gaps as reconciliation last found them (replacing what was
    /// recorded for it before); an empty report means none.
    pub fn observe_gaps(&mut self, key: &SourceKey, report: GapReport) {
        self.gaps.insert(key.clone(), report);
    }

    /// Forgets the gaps of the sources `keep` refuses (no longer reconciled). Their alerts
    /// resolve at the next evaluation.
    pub fn retain_gaps(&mut self, keep: impl Fn(&SourceKey) -> bool) {
        self.gaps.retain(|k, _| keep(k));
    }

    /// Number of flow, source and queue series held.
    pub fn series_count(&self) -> (usize, usize, usize) {
        (self.flows.len(), self.sources.len(), self.queues.len())
    }

    /// The state of every flow at `now`, for the flows API and `intake status`.
    pub fn flow_status(&self, now: Timestamp) -> Vec<FlowStatus> {
        let now_min = minute_of_millis(now.as_millis());
        let cfg = &self.settings.baseline;
        let mut out: Vec<FlowStatus> = self
            .flows
            .iter()
            .map(|(k, f)| {
                let (last_hour, _) = f.sum_minutes(now_min - 60, now_min);
                let exp = expected_between(f, now_min - 60, now_min, cfg);
                FlowStatus {
                    key: k.clone(),
                    last_hour,
                    expected_last_hour: exp.map(|e| e.0),
                    baseline: exp.map(|e| e.1),
                    dispersion: f.alpha.map(|a| a.1),
                    last_event_at: f.last_event().map(|m| Timestamp(m * 60_000)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Every flow's expectations over the `hours` hours up to the one `now` falls in, for
    /// people to draw counts against ([`crate::band`]).
    pub fn flow_bands(&self, now: Timestamp, hours: i64) -> Vec<FlowBand> {
        let now_hour = hour_of(minute_of_millis(now.as_millis()));
        let mut out: Vec<FlowBand> = self
            .flows
            .iter()
            .map(|(k, f)| FlowBand {
                key: k.clone(),
                dispersion: f.alpha.map(|a| a.1),
                hours: expected_hours(f, now_hour, hours, &self.settings.baseline),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Every flow's expectation of the hour `now` falls in and the hour before, unsorted,
    /// without copying keys: what a caller that stores expectations compares with what it
    /// stored. Unlike [`Monitor::flow_status`], whose baseline is the one of the last
    /// *complete* minute's hour (which changes one minute after the hour does), the baseline
    /// here is the hour in progress's, so nothing in it changes between two hour starts.
    pub fn flow_hours(&self, now: Timestamp) -> impl Iterator<Item = FlowHours<'_>> + '_ {
        let now_hour = hour_of(minute_of_millis(now.as_millis()));
        let cfg = &self.settings.baseline;
        self.flows.iter().map(move |(key, f)| {
            let before = hour_baseline(f, now_hour - 1, cfg);
            let current = hour_baseline(f, now_hour, cfg);
            let expected = |h: Hour, b: Option<HourBaseline>| {
                b.map(|b| ExpectedHour {
                    at: Timestamp(h * 3_600_000),
                    expected: b.expected,
                })
            };
            FlowHours {
                key,
                hour: Timestamp(now_hour * 3_600_000),
                baseline: current.map(|b| b.kind),
                hours: [expected(now_hour - 1, before), expected(now_hour, current)],
            }
        })
    }

    /// Evaluates every rule on every series at `now` and returns the alert transitions.
    ///
    /// Only complete minutes count: the minute `now` falls in is ignored, so evaluate a few
    /// seconds after a minute boundary, once that minute's counters are committed.
    pub fn evaluate(&mut self, now: Timestamp) -> Vec<Transition> {
        let now_min = minute_of_millis(now.as_millis());
        let mut findings = Vec::new();
        self.evaluate_flows(now_min, &mut findings);
        self.evaluate_sources(now_min, &mut findings);
        self.evaluate_queues(now, now_min, &mut findings);
        self.evaluate_completions(now, now_min, &mut findings);
        self.evaluate_gaps(&mut findings);
        self.alerts
            .apply_rules(findings, now, |rule| !EXTERNAL_RULES.contains(&rule))
    }

    /// Applies an evaluation of `rule`, one of the [`EXTERNAL_RULES`] that the caller decides
    /// on its own schedule: `findings` are its conditions found true at `now`; its other
    /// alerts had their condition false. The book's other alerts are left as they are.
    pub fn apply_external(
        &mut self,
        rule: &str,
        findings: Vec<Finding>,
        now: Timestamp,
    ) -> Vec<Transition> {
        let findings = findings
            .into_iter()
            .filter(|f| f.key.rule == rule)
            .collect();
        self.alerts.apply_rules(findings, now, |r| r == rule)
    }

    /// `completion_stalled` and `completion_errors`: a finding for each queue on receipts whose
    /// handler leaves too much of its work unconfirmed, or reports it failing.
    fn evaluate_completions(&self, now: Timestamp, now_min: Minute, findings: &mut Vec<Finding>) {
        for (key, snap) in &self.completions {
            let (t, s) = (&key.tenant, &key.source);
            let q = self.queues.get(key);
            let p: CompletionStalled = self.rules.resolve(t, s);
            let w = minutes_of(snap.deadline).min(120);
            let recent = q
                .map(|q| q.sum_minutes(now_min - w, now_min))
                .unwrap_or_default();
            let confirmed = u64::from(recent.completed) + u64::from(recent.completion_failed);
            if let Some((value, reason)) = completion::stalled(snap, confirmed, now, &p) {
                findings.push(finding(queue_labels(key), &p, value, reason));
            }
            let p: CompletionErrors = self.rules.resolve(t, s);
            let Some(q) = q else { continue };
            let w = minutes_of(p.window);
            let window = q.sum_minutes(now_min - w, now_min);
            let first_hour = hour_of(now_min - w);
            let day = q.sum_hours(first_hour - 24, first_hour);
            if let Some((value, reason)) = completion::errors(window, day, &p) {
                findings.push(finding(queue_labels(key), &p, value, reason));
            }
        }
    }

    /// `source_gap`: a finding for each source whose open gaps miss enough events.
    fn evaluate_gaps(&self, findings: &mut Vec<Finding>) {
        for (key, report) in &self.gaps {
            let p: SourceGap = self.rules.resolve(&key.tenant, &key.source);
            if let Some((value, reason)) = gap::decide(report, &p) {
                let labels = Labels {
                    tenant: key.tenant.clone(),
                    source: key.source.clone(),
                    channel: String::new(),
                    destination: String::new(),
                };
                findings.push(finding(labels, &p, value, reason));
            }
        }
    }

    fn evaluate_flows(&mut self, now_min: Minute, findings: &mut Vec<Finding>) {
        let cfg = &self.settings.baseline;
        let group_params: InboundDrop = self.rules.resolve("", "");
        let aligned = drop::window_end(now_min, &group_params);
        let mut tests = Vec::new();
        let mut tested_tenants: BTreeSet<&str> = BTreeSet::new();
        for (key, f) in self.flows.iter_mut() {
            f.advance_to(now_min - 1);
            f.settle_bursts(now_min);
            let quiet = self.quiet_days.quiet(&key.tenant, now_min - 1);
            let stop: InboundStopped = self.rules.resolve(&key.tenant, &key.source);
            let verdict = stopped(f, now_min, &stop, cfg, quiet);
            if let Some((value, reason)) = held(f, verdict, now_min) {
                findings.push(finding(flow_labels(key), &stop, value, reason));
            }
            let params: InboundDrop = self.rules.resolve(&key.tenant, &key.source);
            if !drop::window_end(now_min, &params) {
                if f.drop_streak >= params.persistence {
                    if let Some((v, r)) = &f.drop_finding {
                        findings.push(finding(flow_labels(key), &params, *v, r.clone()));
                    }
                }
                continue;
            }
            if quiet.is_some() {
                // A planned quiet day: nothing to judge.
                f.drop_streak = 0;
                f.drop_finding = None;
                continue;
            }
            match drop::test(key, f, now_min, cfg, &params) {
                Some(t) => {
                    tested_tenants.insert(&key.tenant);
                    tests.push(t);
                }
                None => {
                    f.drop_streak = 0;
                    f.drop_finding = None;
                }
            }
        }
        let tested_tenants = tested_tenants.len();
        if aligned {
            let down = drop::significant(&tests);
            let grouped = drop::group(
                &mut self.drop_group,
                &down,
                tested_tenants,
                &group_params,
                &self.canaries,
            );
            for t in &tests {
                let Some(f) = self.flows.get_mut(&t.key) else {
                    continue;
                };
                match down.get(&t.key) {
                    Some(s) if !grouped => {
                        f.drop_streak += 1;
                        let reason = format!(
                            "{}; {} window{} in a row",
                            s.reason,
                            f.drop_streak,
                            if f.drop_streak == 1 { "" } else { "s" }
                        );
                        f.drop_finding = Some((s.ratio, reason.clone()));
                        if f.drop_streak >= t.params.persistence {
                            findings.push(finding(flow_labels(&t.key), &t.params, s.ratio, reason));
                        }
                    }
                    _ => {
                        f.drop_streak = 0;
                        f.drop_finding = None;
                    }
                }
            }
        }
        if let Some((v, r)) = &self.drop_group.finding {
            let labels = Labels {
                tenant: String::new(),
                source: String::new(),
                channel: String::new(),
                destination: String::new(),
            };
            findings.push(finding(labels, &group_params, *v, r.clone()));
        }
    }

    fn evaluate_sources(&mut self, now_min: Minute, findings: &mut Vec<Finding>) {
        for (key, s) in self.sources.iter_mut() {
            s.minutes.advance_to(now_min - 1);
            s.hours.advance_to(hour_of(now_min - 1));
            let p: RejectionsSpike = self.rules.resolve(&key.tenant, &key.source);
            let w = minutes_of(p.window);
            let now = s.sum_minutes(now_min - w, now_min);
            let total = u64::from(now.accepted) + u64::from(now.rejected);
            let rejected = u64::from(now.rejected);
            if rejected < p.min_rejections || total == 0 {
                continue;
            }
            let ratio = rejected as f64 / total as f64;
            let first_hour = hour_of(now_min - w);
            let (day, held) = s.sum_hours(first_hour - 24, first_hour);
            let base = if held > 0 {
                f64::from(day.rejected) / (held * 60) as f64 * w as f64
            } else {
                0.0
            };
            if ratio >= p.ratio && rejected as f64 >= p.factor * base {
                let reason = format!(
                    "{rejected} of {total} requests rejected in the last {w} min ({:.0}%, \
                     threshold {:.0}%); {base:.1} expected from the previous day's rate",
                    ratio * 100.0,
                    p.ratio * 100.0
                );
                let labels = Labels {
                    tenant: key.tenant.clone(),
                    source: key.source.clone(),
                    channel: String::new(),
                    destination: String::new(),
                };
                findings.push(finding(labels, &p, rejected as f64, reason));
            }
        }
    }

    fn evaluate_queues(&mut self, now: Timestamp, now_min: Minute, findings: &mut Vec<Finding>) {
        for (key, q) in self.queues.iter_mut() {
            q.minutes.advance_to(now_min - 1);
            q.hours.advance_to(hour_of(now_min - 1));
            let (t, s) = (&key.tenant, &key.source);
            let snap = q.snapshot.unwrap_or_default();

            let p: QueueStalled = self.rules.resolve(t, s);
            if let Some(since) = snap.oldest_pending_since {
                let age = now.since(since);
                if age > p.max_age {
                    let recent = q.sum_minutes(now_min - 15, now_min);
                    let reason = format!(
                        "oldest undelivered delivery waiting {} (threshold {}); {} pending, {} in \
                         flight; {} delivered and {} failed attempts in the last 15 min",
                        fmt_secs(age.as_secs()),
                        fmt_secs(p.max_age.as_secs()),
                        snap.pending,
                        snap.in_flight,
                        recent.delivered,
                        recent.failed
                    );
                    findings.push(finding(queue_labels(key), &p, age.as_secs_f64(), reason));
                }
            }

            let p: QueueBacklog = self.rules.resolve(t, s);
            if snap.pending >= p.min_pending {
                let w = minutes_of(p.window);
                let before = (now_min - w - 5..=now_min - w)
                    .rev()
                    .find_map(|m| q.pending.get(m).flatten());
                if let Some(before) = before {
                    if snap.pending > before {
                        let reason = format!(
                            "{} pending, up from {before} {w} min ago (threshold {})",
                            snap.pending, p.min_pending
                        );
                        findings.push(finding(queue_labels(key), &p, snap.pending as f64, reason));
                    }
                }
            }

            let p: ProcessingDrop = self.rules.resolve(t, s);
            let w = minutes_of(p.window);
            let sum = q.sum_minutes(now_min - w, now_min);
            // On receipts, a delivery is done when its handler confirms it, not at its 2xx.
            let done = if self.completions.contains_key(key) {
                u64::from(sum.completed) + u64::from(sum.completion_failed) + u64::from(sum.dead)
            } else {
                u64::from(sum.delivered) + u64::from(sum.dead)
            };
            let created = u64::from(sum.created);
            if created >= p.min_created {
                let ratio = done as f64 / created as f64;
                if ratio < p.ratio {
                    let reason = format!(
                        "{done} deliveries done for {created} created in the last {w} min \
                         ({:.0}%, threshold {:.0}%); {} pending",
                        ratio * 100.0,
                        p.ratio * 100.0,
                        snap.pending
                    );
                    findings.push(finding(queue_labels(key), &p, ratio, reason));
                }
            }

            let p: DeliveryErrors = self.rules.resolve(t, s);
            let w = minutes_of(p.window);
            let sum = q.sum_minutes(now_min - w, now_min);
            let errors = u64::from(sum.failed) + u64::from(sum.dead);
            let attempts = errors + u64::from(sum.delivered);
            if attempts >= p.min_attempts {
                let ratio = errors as f64 / attempts as f64;
                let first_hour = hour_of(now_min - w);
                let day = q.sum_hours(first_hour - 24, first_hour);
                let day_errors = u64::from(day.failed) + u64::from(day.dead);
                let day_attempts = day_errors + u64::from(day.delivered);
                let base = if day_attempts >= p.min_attempts {
                    day_errors as f64 / day_attempts as f64
                } else {
                    0.0
                };
                if ratio >= base + p.increase {
                    let reason = format!(
                        "{errors} of {attempts} attempts failed in the last {w} min ({:.0}%); \
                         previous day {:.1}% of {day_attempts}; threshold +{:.0} points",
                        ratio * 100.0,
                        base * 100.0,
                        p.increase * 100.0
                    );
                    findings.push(finding(queue_labels(key), &p, ratio, reason));
                }
            }

            let p: DeadLetters = self.rules.resolve(t, s);
            let w = minutes_of(p.window);
            let dead = u64::from(q.sum_minutes(now_min - w, now_min).dead);
            if dead >= p.min_dead {
                let reason = format!(
                    "{dead} deliveries exhausted their retries in the last {w} min; {} dead in total",
                    snap.dead
                );
                findings.push(finding(queue_labels(key), &p, dead as f64, reason));
            }
        }
    }
}
