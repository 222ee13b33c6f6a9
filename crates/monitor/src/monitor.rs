//! The monitor: per-series history, the rules, and the alert book, advanced one evaluation
//! at a time on whatever clock the caller has.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alert::{AlertBook, AlertKey, Finding, Labels, Transition};
use crate::band::{expected_hours, ExpectedHour};
use crate::baseline::{
    alpha_of, dispersion_of, expected_between, hour_baseline, profile_between, BaselineConfig,
    BaselineKind, HourBaseline,
};
use crate::gap::{self, GapReport};
use crate::history::{
    hour_of, minute_of_millis, FlowHistory, Minute, QueueHistory, QueueMinute, QueueSnapshot,
    RequestHistory, RequestMinute,
};
use crate::params::{
    DeadLetters, DeliveryErrors, InboundDrop, InboundStopped, ProcessingDrop, QueueBacklog,
    QueueStalled, RejectionsSpike, RuleBook, RuleParams, SourceGap, EXTERNAL_RULES,
};
use crate::stats::{bh_adjust, fmt_prob, NegBinomial};
use statrs::function::gamma::ln_gamma;

/// One inbound flow: (tenant, source, channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
    /// Channel (`email`, `chat`, …).
    pub channel: String,
}

/// One source: (tenant, source).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceKey {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
}

/// One queue: (tenant, source, destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueKey {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
    /// Destination id.
    pub destination: String,
}

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
    alerts: AlertBook,
}

fn minutes_of(d: Duration) -> i64 {
    (d.as_secs() / 60).max(1) as i64
}

/// `7m 12s`, `2h 5m`, `45s`.
pub(crate) fn fmt_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
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
            alerts: AlertBook::new(),
        }
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
        struct Candidate<'a> {
            key: &'a FlowKey,
            p: f64,
            x: u64,
            expected: f64,
            sd: f64,
            kind: BaselineKind,
            params: InboundDrop,
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut tested: Vec<&FlowKey> = Vec::new();
        for (key, f) in self.flows.iter_mut() {
            f.advance_to(now_min - 1);
            let stop: InboundStopped = self.rules.resolve(&key.tenant, &key.source);
            if let Some((value, reason)) = stopped(f, now_min, &stop, cfg) {
                findings.push(finding(flow_labels(key), &stop, value, reason));
            }
            let drop: InboundDrop = self.rules.resolve(&key.tenant, &key.source);
            let w = minutes_of(drop.window);
            if now_min.rem_euclid(w) != 0 {
                if f.drop_streak >= drop.persistence {
                    if let Some((v, r)) = &f.drop_finding {
                        findings.push(finding(flow_labels(key), &drop, *v, r.clone()));
                    }
                }
                continue;
            }
            tested.push(key);
            let from = now_min - w;
            if from < f.first_minute() {
                continue;
            }
            let (x, held) = f.sum_minutes(from, now_min);
            if held < w {
                continue;
            }
            let Some((expected, kind)) = expected_between(f, from, now_min, cfg) else {
                continue;
            };
            // The daily fallback cannot see weekly seasonality: a Saturday would look like a
            // drop from the weekdays before it. The statistical rule waits for weeks.
            if !matches!(kind, BaselineKind::Seasonal { .. }) || expected < drop.min_expected {
                continue;
            }
            let alpha = alpha_of(f, hour_of(now_min - 1), cfg);
            let nb = NegBinomial {
                mean: expected,
                alpha,
            };
            candidates.push(Candidate {
                key,
                p: nb.cdf(x),
                x,
                expected,
                sd: nb.sd(),
                kind,
                params: drop,
            });
        }
        let p_values: Vec<f64> = candidates.iter().map(|c| c.p).collect();
        let q_values = bh_adjust(&p_values);
        let n = candidates.len();
        let mut significant: HashMap<&FlowKey, (f64, String, InboundDrop)> = HashMap::new();
        for (c, q) in candidates.iter().zip(q_values) {
            let ratio = c.x as f64 / c.expected;
            if q <= c.params.fdr && ratio <= 1.0 - c.params.min_drop {
                let w = minutes_of(c.params.window);
                let reason = format!(
                    "{} events in the last {w} min; expected {:.0} ± {:.0} ({}); {:.0}% below; \
                     p = {}, BH-adjusted {} across {n} series",
                    c.x,
                    c.expected,
                    c.sd,
                    c.kind,
                    (1.0 - ratio) * 100.0,
                    fmt_prob(c.p),
                    fmt_prob(q),
                );
                significant.insert(c.key, (ratio, reason, c.params.clone()));
            }
        }
        let tested: Vec<FlowKey> = tested.into_iter().cloned().collect();
        let significant: HashMap<FlowKey, (f64, String, InboundDrop)> = significant
            .into_iter()
            .map(|(k, v)| (k.clone(), v))
            .collect();
        for key in tested {
            let Some(f) = self.flows.get_mut(&key) else {
                continue;
            };
            match significant.get(&key) {
                Some((ratio, reason, params)) => {
                    f.drop_streak += 1;
                    let reason = format!(
                        "{reason}; {} window{} in a row",
                        f.drop_streak,
                        if f.drop_streak == 1 { "" } else { "s" }
                    );
                    f.drop_finding = Some((*ratio, reason.clone()));
                    if f.drop_streak >= params.persistence {
                        findings.push(finding(flow_labels(&key), params, *ratio, reason));
                    }
                }
                None => {
                    f.drop_streak = 0;
                    f.drop_finding = None;
                }
            }
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
            let done = u64::from(sum.delivered) + u64::from(sum.dead);
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

/// The events and the baseline expectation over the minutes `[from, to)`: the *exposure* of
/// the conjugate update of `inbound_stopped`. Minutes still in the minute ring count exactly;
/// older ones count by their hour (a share of the hour's count and of its baseline), so the
/// exposure does not shrink as a long silence pushes it out of the ring. Hours without a
/// baseline count for nothing: they say nothing about the rate relative to the baseline.
fn exposure(f: &FlowHistory, from: Minute, to: Minute, cfg: &BaselineConfig) -> (f64, f64, i64) {
    let oldest = f.minutes.oldest().unwrap_or(to);
    let (mut events, mut expected, mut minutes) = (0.0, 0.0, 0);
    let mut m = from.max(f.first_minute());
    while m < to {
        let h = m.div_euclid(60);
        let end = ((h + 1) * 60).min(to);
        if let Some(b) = hour_baseline(f, h, cfg) {
            if m >= oldest {
                let (n, k) = f.sum_minutes(m, end);
                events += n as f64;
                expected += profile_between(f, m, end, cfg);
                minutes += k;
            } else if let Some(n) = f.full_hour(h) {
                let share = (end - m) as f64 / 60.0;
                events += f64::from(n) * share;
                expected += b.expected * share;
                minutes += end - m;
            }
        }
        m = end;
    }
    (events, expected, minutes)
}

/// The squared relative error of an hour's baseline as an estimate of that hour's mean: the
/// baseline is the median of `n` comparable hours, each of which had its own hour multiplier
/// (variance `a_h`) and its own Poisson noise (`1/m`), so it misses the hour's true level by a
/// relative variance of about `(a_h + 1/m)/n`, times the median's inefficiency (1 for the
/// median of 1 or 2 values, π/2 for more, the large-sample value, which errs high). The
/// day-level part of those hours' variation is common to the hours of a day and is learnt
/// by the day multiplier; this hour-specific part is not, and the hour-to-hour dispersion
/// `a_h`, being estimated in-sample against the same medians, does not contain it either.
fn baseline_error(b: Option<HourBaseline>, a_h: f64) -> f64 {
    let Some(b) = b else { return 0.0 };
    let n = match b.kind {
        BaselineKind::Seasonal { weeks } => weeks,
        BaselineKind::Daily { days } => days,
    }
    .max(1) as f64;
    let inefficiency = if n <= 2.0 {
        1.0
    } else {
        std::f64::consts::FRAC_PI_2
    };
    inefficiency * (a_h + 1.0 / b.expected.max(1.0)) / n
}

/// The gap rule for a series that has a seasonal baseline: the silence against the longest
/// gap between events seen at the same hours of the day over the last `gap_days` days. The
/// statistical verdict judges a low-volume flow slowly (a quiet spell stays plausible for
/// hours when each hour carries a handful of events); this rule asks only whether the flow has
/// ever been this silent at these hours recently. It fires when the silence is at least
/// `gap_factor` times that longest gap and at least `baseline_min_gap`, and the baseline
/// expected at least `gap_min_expected` events over it. Comparable hours are every day's, so
/// weekends and nights of the last two weeks count (which makes the limit longer, not shorter);
/// hours whose gaps are unknown (bootstrapped as whole hours) give no verdict.
fn baselined_gap(
    f: &FlowHistory,
    now_min: Minute,
    p: &InboundStopped,
    cfg: &BaselineConfig,
    kind: BaselineKind,
    ln_p0: f64,
) -> Option<(f64, String)> {
    if !matches!(kind, BaselineKind::Seasonal { .. })
        || p.gap_days == 0
        || ln_p0 >= p.gap_p_zero.ln()
    {
        return None;
    }
    let last = f.last_event()?;
    let silence = now_min - last;
    if silence < minutes_of(p.baseline_min_gap) {
        return None;
    }
    let expected = profile_between(f, last + 1, now_min, cfg);
    if expected < p.gap_min_expected {
        return None;
    }
    let (first_h, last_h) = (hour_of(last), hour_of(now_min - 1));
    let first_h = first_h.max(last_h - 23);
    let mut longest = 0i64;
    for h in first_h..=last_h {
        for d in 1..=i64::from(p.gap_days) {
            longest = longest.max(i64::from(f.gap_at(h - 24 * d)?));
        }
    }
    let limit = ((p.gap_factor * longest as f64).ceil() as i64).max(minutes_of(p.baseline_min_gap));
    if silence < limit {
        return None;
    }
    let run = now_min - last - 1;
    Some((
        run as f64,
        format!(
            "0 events in {run} min; expected {expected:.0} over them ({kind}); the longest gap \
             between events at these hours of the day over the last {} days was {longest} min, \
             and this silence is over {}x that and over {}; P(0) = {} (below {} for the gap \
             rule)",
            p.gap_days,
            p.gap_factor,
            fmt_secs(minutes_of(p.baseline_min_gap) as u64 * 60),
            fmt_prob(ln_p0.exp()),
            fmt_prob(p.gap_p_zero),
        ),
    ))
}

/// `ln P(0)` of a negative binomial with mean `mean * w` and squared coefficient of variation
/// `v` of its Gamma intensity: `-(1/v) ln(1 + mean·w·v)`.
fn nb_ln_p0(mean: f64, v: f64, w: f64) -> f64 {
    if w <= 0.0 || mean <= 0.0 {
        0.0
    } else if v <= 1e-12 {
        -mean * w
    } else {
        -(1.0 + mean * w * v).ln() / v
    }
}

/// `inbound_stopped` on one flow: the silence since the last event, judged against the
/// baseline (statistically) or, without a baseline, against the gaps seen so far.
///
/// The statistical verdict is a conjugate update of the flow's rate relative to its baseline,
/// with two levels of variation, because traffic has both: a day that is busy or quiet as a
/// whole (which the hours before a silence reveal), and hour-to-hour noise (which they cannot
/// predict). The series' total dispersion `alpha` and its hour-to-hour part `a_h` come from
/// [`dispersion_of`].
///
/// 1. The day multiplier `D` starts as `Gamma(a, a)` (mean 1) with `a = 1/alpha`. Over the
///    exposure before the silence's hour (`prior_window`, each minute weighted by its hour's
///    baseline, so a busy morning or a quiet night counts for what it is) the flow carried `c`
///    events where the baseline expected `E`. Because each of those `n` hours had its own
///    hour multiplier, they measure `D` no better than `n` independent hours can: the update
///    counts them with the weight `κ = 1 / (1 + E·a_h/n)`, giving `D ~ Gamma(a + κc, a + κE)`.
/// 2. The hour in which the silence began was seen up to the last event (`c₁` events where
///    `D` times the baseline expected `E₁`): its own multiplier is
///    `H₁ ~ Gamma(1/a_h + c₁, 1/a_h + E₁·E[D])`. Later hours get a fresh `H ~ Gamma(1/a_h,
///    1/a_h)`.
/// 3. Over the silence the baseline expects `W₁` in its first hour and `W₂` after. For each
///    part the multiplier `D·H` is matched to a Gamma of the same mean `μ` and squared
///    coefficient of variation `v`, and the posterior predictive probability of no event is
///    negative binomial, `(1 + μWv)^(-1/v)`; P(0) is the product of the two parts.
///
/// A flow that was carrying its usual traffic until it stopped therefore has a sharp posterior
/// and is called within minutes; one that was already quiet (a holiday, a lull) has a low
/// posterior rate and its silence is unremarkable; a flow whose hours are noisy needs a longer
/// silence, however well its day was seen.
fn stopped(
    f: &mut FlowHistory,
    now_min: Minute,
    p: &InboundStopped,
    cfg: &BaselineConfig,
) -> Option<(f64, String)> {
    let last = f.last_event()?;
    let start = last + 1;
    let run = now_min - start;
    if run <= 0 {
        return None;
    }
    match expected_between(f, start, now_min, cfg) {
        Some((_, kind)) => stopped_against_baseline(f, start, now_min, p, cfg, kind),
        None => stopped_by_gaps(f, last, now_min, p),
    }
}

/// What the verdict on a silence that began at minute `start` is computed from (the symbols
/// of [`stopped`]'s steps 1 to 3).
struct SilenceEvidence {
    /// The baseline's kind (seasonal, or the daily fallback).
    kind: BaselineKind,
    /// The events the baseline expects over the whole silence (`W₁ + W₂`).
    expected: f64,
    /// The series' total dispersion, at least `daily_alpha` with the daily fallback.
    alpha: f64,
    /// The hour-to-hour part of the dispersion.
    a_h: f64,
    /// The events and the expectation of the exposure before the silence's hour (`c`, `E`).
    c: f64,
    e: f64,
    /// The minutes the exposure counted.
    minutes: i64,
    /// The exposure weighted by `κ` (`κc`, `κE`).
    kc: f64,
    ke: f64,
    /// The events and the expectation in the silence's hour before the silence (`c₁`, `E₁`).
    c1: f64,
    e1: f64,
    /// The baseline's expectation over the silence in its first hour and after (`W₁`, `W₂`).
    w1: f64,
    w2: f64,
    /// The hour multiplier's variance in the silence's first hour and in the later hours.
    v_start: f64,
    v_later: f64,
}

/// Gathers the [`SilenceEvidence`] of a silence from `start` to `now_min`.
fn silence_evidence(
    f: &mut FlowHistory,
    start: Minute,
    now_min: Minute,
    p: &InboundStopped,
    cfg: &BaselineConfig,
    kind: BaselineKind,
) -> SilenceEvidence {
    let expected = profile_between(f, start, now_min, cfg);
    let (mut alpha, alpha_hour) = dispersion_of(f, hour_of(now_min - 1), cfg);
    // The daily fallback cannot see the weekend coming, so its expectations are held
    // loosely: a day-level prior dispersion of at least `daily_alpha` lets the
    // exposure, not the weekday baseline, say what rate a Saturday has.
    if matches!(kind, BaselineKind::Daily { .. }) {
        alpha = alpha.max(cfg.daily_alpha);
    }
    let a_h = alpha_hour.min(alpha).max(1e-6);
    let hour_start = hour_of(start) * 60;
    let lo = start - minutes_of(p.prior_window);
    let (c, e, minutes) = exposure(f, lo, hour_start.max(lo), cfg);
    let n = (minutes as f64 / 60.0).max(1.0);
    // Each hour's multiplier relative to its baseline varies by the hour-to-hour
    // dispersion plus the baseline's own error (see `baseline_error`): the first for
    // the hour in which the silence began, the later hours' errors averaging out over
    // the hours they span, the exposure's hours by their average volume.
    let v_start = a_h + baseline_error(hour_baseline(f, hour_of(start), cfg), a_h);
    let later_hours = ((now_min - hour_start - 60) as f64 / 60.0).ceil().max(1.0);
    let v_later =
        a_h + baseline_error(hour_baseline(f, hour_of(now_min - 1), cfg), a_h) / later_hours;
    let v_exposure = a_h
        + baseline_error(
            hour_baseline(f, hour_of(start) - 1, cfg).map(|b| HourBaseline {
                expected: e / n,
                ..b
            }),
            a_h,
        );
    let kappa = 1.0 / (1.0 + e * v_exposure / n);
    let (kc, ke) = (kappa * c, kappa * e);
    let (c1, e1, _) = exposure(f, hour_start, start, cfg);
    let first_end = (hour_start + 60).min(now_min);
    let w1 = profile_between(f, start, first_end, cfg);
    let w2 = (expected - w1).max(0.0);
    SilenceEvidence {
        kind,
        expected,
        alpha,
        a_h,
        c,
        e,
        minutes,
        kc,
        ke,
        c1,
        e1,
        w1,
        w2,
        v_start,
        v_later,
    }
}

/// NB marginal likelihood of `c` events where `e` were expected, under a Gamma (shape, rate)
/// multiplier, without the terms common to every component.
fn ln_nb(shape: f64, rate: f64, c: f64, e: f64) -> f64 {
    ln_gamma(shape + c) - ln_gamma(shape) + shape * (rate / (rate + e)).ln() - c * (rate + e).ln()
}

/// The components of the day multiplier's posterior: for each, the log of its unnormalized
/// weight, its `ln P(0)` over the silence and the events it expects over it. Index 0 is an
/// ordinary day, 1 a quiet day the exposure already saw, 2 a quiet spell that began at the
/// start of the silence's hour.
struct Mixture {
    ln_terms: [f64; 3],
    ln_p0s: [f64; 3],
    means: [f64; 3],
}

/// Weighs the components of the day multiplier's prior by how well each explains the
/// exposure and the minutes of this hour before the silence.
fn mixture(ev: &SilenceEvidence, cfg: &BaselineConfig) -> Mixture {
    // The day multiplier's prior is a mixture: an ordinary day, Gamma(a, a), or with
    // probability `quiet_day_share` a quiet day, Gamma(2, 2/level). Each component is
    // updated by the exposure and weighted by how well it explains it (its negative
    // binomial marginal likelihood; the terms common to both cancel).
    // With the daily fallback the weekend is a quiet day the baseline cannot see: two
    // days in seven on top of the holidays.
    let mut share = cfg.quiet_day_share.clamp(0.0, 0.5);
    if matches!(ev.kind, BaselineKind::Daily { .. }) {
        share = (share + 2.0 / 7.0).min(0.5);
    }
    // A quiet day begins at one of the day's 24 hour boundaries (a holiday at local
    // midnight, a Saturday after a Friday): the chance that one began at the start of
    // this hour, after the exposure, is a 24th of the share.
    let onset = share / 24.0;
    let level = cfg.quiet_day_level.clamp(1e-3, 1.0);
    let quiet_shape = 2.0;
    let quiet_rate = quiet_shape / level;
    let a = 1.0 / ev.alpha;
    let mut m = Mixture {
        ln_terms: [f64::NEG_INFINITY; 3],
        ln_p0s: [0.0; 3],
        means: [0.0; 3],
    };
    let day_components = [
        (1.0 - share - onset, a, a),
        (share, quiet_shape, quiet_rate),
    ];
    let mut ordinary_exposure = 0.0;
    for (i, &(prior, shape, rate)) in day_components.iter().enumerate() {
        if prior <= 0.0 {
            continue;
        }
        let ln_exposure = ln_nb(shape, rate, ev.kc, ev.ke);
        if i == 0 {
            ordinary_exposure = ln_exposure;
        }
        day_component(ev, &mut m, i, prior, shape, rate, ln_exposure);
    }
    if onset > 0.0 {
        spell_component(ev, &mut m, onset, level, ordinary_exposure);
    }
    m
}

/// Component `i` of the day multiplier D (prior weight `prior`, Gamma(`shape`, `rate`)),
/// updated by the exposure (its likelihood `ln_exposure`), then by the hour's count so far
/// under D·H₁.
fn day_component(
    ev: &SilenceEvidence,
    m: &mut Mixture,
    i: usize,
    prior: f64,
    shape: f64,
    rate: f64,
    ln_exposure: f64,
) {
    let d_shape = shape + ev.kc;
    let d_mean = d_shape / (rate + ev.ke);
    // The hour's count so far under D·H₁, matched to a Gamma.
    let v_hour = (1.0 + 1.0 / d_shape) * (1.0 + ev.v_start) - 1.0;
    let ln_hour = ln_nb(1.0 / v_hour, 1.0 / (v_hour * d_mean), ev.c1, ev.e1);
    m.ln_terms[i] = prior.ln() + ln_exposure + ln_hour;
    let h_shape = 1.0 / ev.v_start + ev.c1;
    let h_mean = h_shape / (1.0 / ev.v_start + ev.e1 * d_mean);
    let v1 = (1.0 + 1.0 / d_shape) * (1.0 + 1.0 / h_shape) - 1.0;
    let v2 = (1.0 + 1.0 / d_shape) * (1.0 + ev.v_later) - 1.0;
    m.ln_p0s[i] = nb_ln_p0(d_mean * h_mean, v1, ev.w1) + nb_ln_p0(d_mean, v2, ev.w2);
    m.means[i] = d_mean * h_mean * ev.w1 + d_mean * ev.w2;
}

/// The third component: a quiet spell of level Q that began at the start of this hour (prior
/// weight `onset`), after an exposure that was ordinary (`ordinary_exposure`).
fn spell_component(
    ev: &SilenceEvidence,
    m: &mut Mixture,
    onset: f64,
    level: f64,
    ordinary_exposure: f64,
) {
    // The spell's level Q is seen only through this hour. Its prior is narrower
    // than the quiet day's, Gamma(8, 8/level) (±35 %): a spell that begins at an
    // hour boundary is a quiet day's traffic, not nearly none, or a flow that
    // stops exactly on the hour could never be told from one.
    let (spell_shape, spell_rate) = (8.0, 8.0 / level);
    let ln_hour = ln_nb(spell_shape, spell_rate, ev.c1, ev.e1);
    m.ln_terms[2] = onset.ln() + ordinary_exposure + ln_hour;
    let q_shape = spell_shape + ev.c1;
    let q_mean = q_shape / (spell_rate + ev.e1);
    let v1 = 1.0 / q_shape;
    let v2 = (1.0 + 1.0 / q_shape) * (1.0 + ev.v_later) - 1.0;
    m.ln_p0s[2] = nb_ln_p0(q_mean, v1, ev.w1) + nb_ln_p0(q_mean, v2, ev.w2);
    m.means[2] = q_mean * (ev.w1 + ev.w2);
}

/// The statistical verdict on a silence from `start` to `now_min` of a flow with a baseline
/// of `kind` (steps 1 to 3 of [`stopped`]); the gap rule when it is not remarkable enough.
fn stopped_against_baseline(
    f: &mut FlowHistory,
    start: Minute,
    now_min: Minute,
    p: &InboundStopped,
    cfg: &BaselineConfig,
    kind: BaselineKind,
) -> Option<(f64, String)> {
    let run = now_min - start;
    let ev = silence_evidence(f, start, now_min, p, cfg, kind);
    let m = mixture(&ev, cfg);
    let top = m.ln_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights = m.ln_terms.map(|t| (t - top).exp());
    let total_w: f64 = weights.iter().sum();
    let weights = weights.map(|w| w / total_w);
    let quiet = weights[1];
    let spell = weights[2];
    // ln Σ wᵢ P0ᵢ, in log space so that tiny probabilities stay exact.
    let parts: Vec<f64> = (0..3)
        .filter(|&i| weights[i] > 0.0)
        .map(|i| weights[i].ln() + m.ln_p0s[i])
        .collect();
    let hi = parts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln_p0 = hi + parts.iter().map(|x| (x - hi).exp()).sum::<f64>().ln();
    let post_mean: f64 = (0..3).map(|i| weights[i] * m.means[i]).sum();
    let daily = matches!(kind, BaselineKind::Daily { .. });
    let threshold = if daily {
        p.p_zero * p.daily_factor.clamp(1e-6, 1.0)
    } else {
        p.p_zero
    };
    let expected = ev.expected;
    if ln_p0 >= threshold.ln() || expected < p.min_expected {
        return baselined_gap(f, now_min, p, cfg, kind, ln_p0);
    }
    let SilenceEvidence {
        alpha,
        a_h,
        c,
        e,
        minutes,
        c1,
        e1,
        ..
    } = ev;
    let sd = NegBinomial {
        mean: expected,
        alpha,
    }
    .sd();
    let hours = (minutes as f64 / 60.0).round();
    Some((
        run as f64,
        format!(
            "0 events in {run} min; expected {expected:.0} ± {sd:.0} at this hour ({kind}); \
             {c:.0} events in the {hours:.0} h before, {e:.0} expected, and {c1:.0} in \
             this hour before the silence, {e1:.0} expected, so about {post_mean:.0} now \
             (dispersion {alpha:.2}, hour-to-hour {a_h:.2}, P(quiet day) = {}, \
             P(quiet since this hour) = {}); P(0) = {} (threshold {}{})",
            fmt_prob(quiet),
            fmt_prob(spell),
            fmt_prob(ln_p0.exp()),
            fmt_prob(threshold),
            if daily {
                ", stricter with the daily fallback"
            } else {
                ""
            }
        ),
    ))
}

/// The verdict on a silence since minute `last` of a flow without a baseline yet: judged by
/// the longest of the gaps seen so far.
fn stopped_by_gaps(
    f: &FlowHistory,
    last: Minute,
    now_min: Minute,
    p: &InboundStopped,
) -> Option<(f64, String)> {
    let run = now_min - (last + 1);
    let history = now_min - f.first_minute();
    if f.gap_count < p.min_gaps || history < minutes_of(p.min_history) {
        return None;
    }
    let silence = now_min - last;
    let limit = ((p.gap_factor * f.longest_gap as f64).ceil() as i64).max(minutes_of(p.min_gap));
    if silence < limit {
        return None;
    }
    let days = history as f64 / 1440.0;
    Some((
        run as f64,
        format!(
            "0 events in {run} min; no baseline yet ({days:.1} days of history), so judged \
             by gaps: {}x the longest of the {} gaps seen so far ({} min)",
            p.gap_factor, f.gap_count, f.longest_gap
        ),
    ))
}
