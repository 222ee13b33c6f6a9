//! Rule parameters: typed per rule, with defaults, resolved per tenant and source from the
//! `[[rules]]` overrides of the configuration.
//!
//! Resolution is most-specific-wins, field by field: the built-in defaults, then overrides
//! that name only the rule, then those scoped to the tenant, then those scoped to the source,
//! then those scoped to both. An override that sets only `severity` keeps the threshold a less
//! specific override chose. Among overrides of the same specificity, later ones win.

use std::time::Duration;

use intake_core::config::{RuleOverride, RuleThreshold, Severity};
use serde::Serialize;

/// What every rule has.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Common {
    /// How long the condition must hold before the alert fires (0 fires at once).
    #[serde(rename = "for", with = "secs")]
    pub for_: Duration,
    /// Severity of the alert.
    pub severity: Severity,
    /// Consecutive evaluations with the condition false before a firing alert resolves.
    pub resolve_after: u32,
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// A rule's typed parameters.
pub trait RuleParams: Clone + Default {
    /// The rule id.
    const RULE: &'static str;
    /// What the `threshold` of an override means for this rule, for error messages.
    const THRESHOLD: &'static str;
    /// The common part.
    fn common(&self) -> &Common;
    /// The common part, to override.
    fn common_mut(&mut self) -> &mut Common;
    /// Applies an override's `threshold`; an error says what was expected.
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String>;
}

fn number(t: &RuleThreshold, what: &str, ok: impl Fn(f64) -> bool) -> Result<f64, String> {
    match t {
        RuleThreshold::Number(n) if ok(*n) => Ok(*n),
        RuleThreshold::Number(n) => Err(format!("{n} is not a valid {what}")),
        RuleThreshold::Duration(_) => Err(format!("expected a number ({what}), not a duration")),
    }
}

fn duration(t: &RuleThreshold, what: &str) -> Result<Duration, String> {
    match t {
        RuleThreshold::Duration(d) if !d.0.is_zero() => Ok(d.0),
        RuleThreshold::Duration(_) => Err(format!("{what} must be longer than 0s")),
        RuleThreshold::Number(_) => Err(format!(
            "expected a duration ({what}), such as \"5m\", not a number"
        )),
    }
}

macro_rules! common_impl {
    () => {
        fn common(&self) -> &Common {
            &self.common
        }
        fn common_mut(&mut self) -> &mut Common {
            &mut self.common
        }
    };
}

fn common(for_secs: u64, severity: Severity, resolve_after: u32) -> Common {
    Common {
        for_: Duration::from_secs(for_secs),
        severity,
        resolve_after,
    }
}

/// `inbound_stopped`: a flow went silent where silence is implausible.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundStopped {
    /// Common parameters.
    pub common: Common,
    /// Threshold: fire when P(no event over the silence | baseline) is below this (1e-6).
    pub p_zero: f64,
    /// The exposure of the conjugate update: the stretch before the silence whose events,
    /// against their baseline, give the flow's current rate (3 h).
    #[serde(with = "secs")]
    pub prior_window: Duration,
    /// A slow flow's exposure, one that expects fewer than this many events (60), reaches
    /// further back through the flow's working day, until it expects this many…
    pub slow_exposure_expected: f64,
    /// …over hours whose baseline is at least this share of the day's busiest hour's
    /// (1/3: the flow's night ends the working day, so the exposure never reaches back
    /// across a night into another day)…
    pub working_share: f64,
    /// …and never spans more than this (12 h).
    #[serde(with = "secs")]
    pub longest_exposure: Duration,
    /// The statistical verdict also needs the silence to cover at least this many events
    /// expected by the baseline (15): below that a silence is too short to be told from
    /// the hour-to-hour noise the model underestimates (a 90/h channel gets there in
    /// 10 minutes).
    pub min_expected: f64,
    /// While only the daily fallback baseline exists (weeks 1–2), the threshold is
    /// multiplied by this (0.01, i.e. 1e-8 by default): that baseline cannot see the weekly
    /// pattern, so its verdicts are held to a stricter standard, said in the reason.
    pub daily_factor: f64,
    /// Gap rule (series without a baseline): fire when the silence is this many times the
    /// longest gap seen so far (3.0)…
    pub gap_factor: f64,
    /// …once at least this many gaps were seen (20)…
    pub min_gaps: u32,
    /// …and never for a silence shorter than this (1 h)…
    #[serde(with = "secs")]
    pub min_gap: Duration,
    /// …nor before the series has this much history (2 days). One day is not enough: a
    /// series that starts in the middle of a night has only seen part of that night, so its
    /// longest gap is too short and the next night looks like an outage; two days always
    /// contain one complete night.
    #[serde(with = "secs")]
    pub min_history: Duration,
    /// Gap rule for series *with* a seasonal baseline, which the statistical verdict judges
    /// slowly when they are low-volume: fire when the silence is `gap_factor` times the longest
    /// gap between events seen over the last `gap_days` days (14) at the same hours of the
    /// day as the silence…
    pub gap_days: u32,
    /// …never for a silence shorter than this (4 h)…
    #[serde(with = "secs")]
    pub baseline_min_gap: Duration,
    /// …and only when the baseline expected at least this many events over the silence (30:
    /// on a quiet day at 30 % of the baseline, P(0) is then about 1e-4)…
    pub gap_min_expected: f64,
    /// …and the statistical verdict's P(0) is below this (1e-4), i.e. the hours before the
    /// silence do not make a quiet day likely: a gap rule alone cannot tell a holiday's long
    /// silences from an outage.
    pub gap_p_zero: f64,
    /// Before the statistical verdict pages, the silence, in expected events at the flow's
    /// rate over the hour before it, must be at least this many times the flow's longest gap
    /// at the same hours of the day over the last `gap_days` days, measured the same way
    /// (second-longest day; 1.5): the flow's own record of its silences.
    pub gate_factor: f64,
    /// Regular arrivals (a mailbox polled every few minutes, whose period the monitor learns
    /// from the flow's gaps), which the statistical verdict judges slowly because it reads
    /// such minutes as rare clumps: when that verdict is not remarkable enough, page once
    /// the silence spans at least this many periods (3.0)…
    pub regular_factor: f64,
    /// …and enough that the flow's fetches coming back empty that many times in a row (at
    /// its own share of empty fetches) is less likely than this (1e-5: a poller fetched every
    /// 4 minutes has about 1,300 busy fetches a week)…
    pub regular_miss: f64,
    /// …the silence expects at least this many events (20; the fewer of what the rate of the
    /// hour before it and the statistical verdict expect)…
    pub regular_min_expected: f64,
    /// …at least this many a fetch (3: fewer leave one fetch in twenty empty), the gate
    /// agrees…
    pub regular_min_per_fetch: f64,
    /// …and the statistical verdict's P(0) is below this (1e-2): the hours before the silence
    /// do not make a quiet spell likely.
    pub regular_p_zero: f64,
}

impl Default for InboundStopped {
    fn default() -> Self {
        InboundStopped {
            common: common(0, Severity::Critical, 3),
            p_zero: 1e-6,
            min_expected: 15.0,
            daily_factor: 0.01,
            prior_window: Duration::from_secs(3 * 3600),
            slow_exposure_expected: 60.0,
            working_share: 1.0 / 3.0,
            longest_exposure: Duration::from_secs(12 * 3600),
            gap_factor: 3.0,
            min_gaps: 20,
            min_gap: Duration::from_secs(3600),
            min_history: Duration::from_secs(2 * 24 * 3600),
            gap_days: 14,
            baseline_min_gap: Duration::from_secs(4 * 3600),
            gap_min_expected: 30.0,
            gap_p_zero: 1e-4,
            gate_factor: 1.5,
            regular_factor: 3.0,
            regular_miss: 1e-5,
            regular_min_expected: 20.0,
            regular_min_per_fetch: 3.0,
            regular_p_zero: 1e-2,
        }
    }
}

impl RuleParams for InboundStopped {
    const RULE: &'static str = "inbound_stopped";
    const THRESHOLD: &'static str = "probability of zero, e.g. 1e-6";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.p_zero = number(t, "probability between 0 and 0.5", |p| p > 0.0 && p < 0.5)?;
        Ok(())
    }
}

/// `inbound_drop`: a flow fell significantly below its seasonal baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundDrop {
    /// Common parameters.
    pub common: Common,
    /// Threshold: the false-discovery rate of Benjamini–Hochberg across the tick (0.01).
    pub fdr: f64,
    /// Length of one test window; windows are aligned to the clock (30 min).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Consecutive significant windows needed (2).
    pub persistence: u32,
    /// Windows expected to carry fewer events are not tested (10).
    pub min_expected: f64,
    /// Only a drop of at least this fraction counts, however significant (0.3).
    pub min_drop: f64,
    /// When at least this many tenants are significantly down in the same window, their
    /// drops are one grouped warning (a holiday, a pattern every tenant shares, an SOR's
    /// own outage), not one per tenant (3).
    pub group_min_tenants: u32,
    /// The grouped warning stays open until this long has passed with no tenant down (3 h):
    /// a holiday crossing time zones has hours when no region's business day carries enough
    /// traffic to be tested, and is still one warning.
    #[serde(with = "secs")]
    pub group_hold: Duration,
}

impl Default for InboundDrop {
    fn default() -> Self {
        InboundDrop {
            common: common(0, Severity::Warning, 2),
            fdr: 0.01,
            window: Duration::from_secs(30 * 60),
            persistence: 2,
            min_expected: 10.0,
            min_drop: 0.3,
            group_min_tenants: 3,
            group_hold: Duration::from_secs(3 * 3600),
        }
    }
}

impl RuleParams for InboundDrop {
    const RULE: &'static str = "inbound_drop";
    const THRESHOLD: &'static str = "false-discovery rate, e.g. 0.01";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.fdr = number(t, "false-discovery rate between 0 and 0.5", |p| {
            p > 0.0 && p <= 0.5
        })?;
        Ok(())
    }
}

/// `rejections_spike`: signature or parse rejections rising.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectionsSpike {
    /// Common parameters.
    pub common: Common,
    /// Threshold: fraction of requests rejected over the window (0.1).
    pub ratio: f64,
    /// Window (15 min).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Fewer rejections than this never fire (10).
    pub min_rejections: u64,
    /// Rejections must also be this many times the previous day's rate (3.0).
    pub factor: f64,
}

impl Default for RejectionsSpike {
    fn default() -> Self {
        RejectionsSpike {
            common: common(300, Severity::Warning, 3),
            ratio: 0.1,
            window: Duration::from_secs(15 * 60),
            min_rejections: 10,
            factor: 3.0,
        }
    }
}

impl RuleParams for RejectionsSpike {
    const RULE: &'static str = "rejections_spike";
    const THRESHOLD: &'static str = "rejected fraction of requests, e.g. 0.1";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.ratio = number(t, "fraction between 0 and 1", |p| p > 0.0 && p <= 1.0)?;
        Ok(())
    }
}

/// `queue_stalled`: the oldest pending delivery is too old.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStalled {
    /// Common parameters.
    pub common: Common,
    /// Threshold: age of the oldest undelivered delivery (5 min).
    #[serde(with = "secs")]
    pub max_age: Duration,
}

impl Default for QueueStalled {
    fn default() -> Self {
        QueueStalled {
            common: common(0, Severity::Critical, 3),
            max_age: Duration::from_secs(300),
        }
    }
}

impl RuleParams for QueueStalled {
    const RULE: &'static str = "queue_stalled";
    const THRESHOLD: &'static str = "age of the oldest pending delivery, e.g. \"5m\"";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.max_age = duration(t, "age of the oldest pending delivery")?;
        Ok(())
    }
}

/// `queue_backlog`: many pending, and still rising.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueBacklog {
    /// Common parameters.
    pub common: Common,
    /// Threshold: pending deliveries (1000).
    pub min_pending: u64,
    /// Rising means more pending than this long ago (15 min).
    #[serde(with = "secs")]
    pub window: Duration,
}

impl Default for QueueBacklog {
    fn default() -> Self {
        QueueBacklog {
            common: common(600, Severity::Warning, 3),
            min_pending: 1000,
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl RuleParams for QueueBacklog {
    const RULE: &'static str = "queue_backlog";
    const THRESHOLD: &'static str = "pending deliveries, e.g. 1000";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.min_pending = number(t, "count of at least 1", |n| n >= 1.0)? as u64;
        Ok(())
    }
}

/// `processing_drop`: deliveries done fall well below deliveries created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessingDrop {
    /// Common parameters.
    pub common: Common,
    /// Threshold: done / created over the window below this (0.5).
    pub ratio: f64,
    /// Window (30 min).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Windows with fewer created deliveries are not judged (50).
    pub min_created: u64,
}

impl Default for ProcessingDrop {
    fn default() -> Self {
        ProcessingDrop {
            common: common(600, Severity::Warning, 3),
            ratio: 0.5,
            window: Duration::from_secs(30 * 60),
            min_created: 50,
        }
    }
}

impl RuleParams for ProcessingDrop {
    const RULE: &'static str = "processing_drop";
    const THRESHOLD: &'static str = "done/created ratio, e.g. 0.5";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.ratio = number(t, "ratio between 0 and 1", |p| p > 0.0 && p <= 1.0)?;
        Ok(())
    }
}

/// `delivery_errors`: error ratio well above its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryErrors {
    /// Common parameters.
    pub common: Common,
    /// Threshold: how far the error ratio must exceed the previous day's (0.2, absolute).
    pub increase: f64,
    /// Window (15 min).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Windows with fewer attempts are not judged (20).
    pub min_attempts: u64,
}

impl Default for DeliveryErrors {
    fn default() -> Self {
        DeliveryErrors {
            common: common(300, Severity::Warning, 3),
            increase: 0.2,
            window: Duration::from_secs(15 * 60),
            min_attempts: 20,
        }
    }
}

impl RuleParams for DeliveryErrors {
    const RULE: &'static str = "delivery_errors";
    const THRESHOLD: &'static str = "increase of the error ratio, e.g. 0.2";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.increase = number(t, "ratio increase between 0 and 1", |p| p > 0.0 && p <= 1.0)?;
        Ok(())
    }
}

/// `completion_stalled`: handlers on receipts answered 2xx and did not confirm their work
/// within their destination's `completion_deadline`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionStalled {
    /// Common parameters.
    pub common: Common,
    /// Threshold: the share of the flow overdue — overdue / (overdue + confirmed within the
    /// last deadline) — at or above which it fires (0.05). A handler that acknowledges and
    /// drops everything is at 1.0.
    pub share: f64,
    /// Fewer overdue deliveries than this never fire (1).
    pub min_overdue: u64,
}

impl Default for CompletionStalled {
    fn default() -> Self {
        CompletionStalled {
            common: common(0, Severity::Critical, 2),
            share: 0.05,
            min_overdue: 1,
        }
    }
}

impl RuleParams for CompletionStalled {
    const RULE: &'static str = "completion_stalled";
    const THRESHOLD: &'static str = "overdue share of the flow, e.g. 0.05";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.share = number(t, "share between 0 and 1", |p| p > 0.0 && p <= 1.0)?;
        Ok(())
    }
}

/// `completion_errors`: handlers on receipts report their business logic failing more than
/// they did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionErrors {
    /// Common parameters.
    pub common: Common,
    /// Threshold: how far the failed share of confirmations must exceed the previous day's
    /// (0.2, absolute).
    pub increase: f64,
    /// Window (15 min).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Windows with fewer confirmations are not judged (20).
    pub min_confirmations: u64,
}

impl Default for CompletionErrors {
    fn default() -> Self {
        CompletionErrors {
            common: common(300, Severity::Warning, 3),
            increase: 0.2,
            window: Duration::from_secs(15 * 60),
            min_confirmations: 20,
        }
    }
}

impl RuleParams for CompletionErrors {
    const RULE: &'static str = "completion_errors";
    const THRESHOLD: &'static str = "increase of the failed share of confirmations, e.g. 0.2";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.increase = number(t, "ratio increase between 0 and 1", |p| p > 0.0 && p <= 1.0)?;
        Ok(())
    }
}

/// `dead_letters`: deliveries exhausted their retries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetters {
    /// Common parameters.
    pub common: Common,
    /// Threshold: new dead deliveries within the window (1).
    pub min_dead: u64,
    /// Window (15 min); the alert resolves once a window passes without new dead letters.
    #[serde(with = "secs")]
    pub window: Duration,
}

impl Default for DeadLetters {
    fn default() -> Self {
        DeadLetters {
            common: common(0, Severity::Critical, 1),
            min_dead: 1,
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl RuleParams for DeadLetters {
    const RULE: &'static str = "dead_letters";
    const THRESHOLD: &'static str = "new dead deliveries, e.g. 1";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.min_dead = number(t, "count of at least 1", |n| n >= 1.0)? as u64;
        Ok(())
    }
}

/// `source_gap`: reconciliation with the system of record's API found events intake never
/// received. Its input is not a counter but what the server's `reconcile` duty found (the
/// `gap` module decides it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceGap {
    /// Common parameters.
    pub common: Common,
    /// Threshold: events missing across the source's open gaps (1). The alert resolves as
    /// soon as the gaps close (they close when every missing event has arrived).
    pub min_missing: u64,
}

impl Default for SourceGap {
    fn default() -> Self {
        SourceGap {
            common: common(0, Severity::Critical, 1),
            min_missing: 1,
        }
    }
}

impl RuleParams for SourceGap {
    const RULE: &'static str = "source_gap";
    const THRESHOLD: &'static str = "missing events, e.g. 1";
    common_impl!();
    fn set_threshold(&mut self, t: &RuleThreshold) -> Result<(), String> {
        self.min_missing = number(t, "count of at least 1", |n| n >= 1.0)? as u64;
        Ok(())
    }
}

/// `canary_failed`: a source had no successful canary within its deadline. The server's
/// canary duty and monitor decide it (this crate only holds its parameters): the deadline is
/// `[canary] deadline` (or the source's own), not a `[[rules]]` threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryFailed {
    /// Common parameters: fires at once, resolves at the first evaluation after a success.
    pub common: Common,
}

impl Default for CanaryFailed {
    fn default() -> Self {
        CanaryFailed {
            common: common(0, Severity::Critical, 1),
        }
    }
}

impl RuleParams for CanaryFailed {
    const RULE: &'static str = "canary_failed";
    const THRESHOLD: &'static str = "none: the deadline is [canary] deadline";
    common_impl!();
    fn set_threshold(&mut self, _: &RuleThreshold) -> Result<(), String> {
        Err(
            "canary_failed has no threshold: set `[canary] deadline`, or \
             `[canary.sources.<id>] deadline` for one source"
                .into(),
        )
    }
}

/// `drill_failed`: the last drill of a `[[drills]]` schedule failed (its alert did not fire,
/// was routed to no notifier, or was not delivered). The server's drill results decide it; it
/// resolves when the next drill of the schedule passes. No threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillFailed {
    /// Common parameters: fires at once, resolves at the first evaluation after a pass.
    pub common: Common,
}

impl Default for DrillFailed {
    fn default() -> Self {
        DrillFailed {
            common: common(0, Severity::Critical, 1),
        }
    }
}

impl RuleParams for DrillFailed {
    const RULE: &'static str = "drill_failed";
    const THRESHOLD: &'static str = "none: a scheduled drill passes or fails";
    common_impl!();
    fn set_threshold(&mut self, _: &RuleThreshold) -> Result<(), String> {
        Err(
            "drill_failed has no threshold: it fires when the last drill of a [[drills]] \
             schedule failed"
                .into(),
        )
    }
}

/// An override that does not fit its rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rules[{index}] ({rule}): threshold: {message}")]
pub struct ParamError {
    /// Position in `[[rules]]`.
    pub index: usize,
    /// The rule id.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

/// The rules' parameters: defaults plus the configuration's overrides.
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    overrides: Vec<RuleOverride>,
}

/// The ids of the rules this crate evaluates.
pub const EVALUATED_RULES: [&str; 11] = [
    "inbound_stopped",
    "inbound_drop",
    "rejections_spike",
    "queue_stalled",
    "queue_backlog",
    "processing_drop",
    "delivery_errors",
    "dead_letters",
    "source_gap",
    "completion_stalled",
    "completion_errors",
];

/// The ids of the rules whose conditions the caller decides on its own schedule and hands
/// to [`Monitor::apply_external`](crate::Monitor::apply_external): their alerts share the
/// book, but [`Monitor::evaluate`](crate::Monitor::evaluate) leaves them alone.
pub const EXTERNAL_RULES: [&str; 2] = ["canary_failed", "drill_failed"];

impl RuleBook {
    /// Checks the overrides (threshold kinds and ranges) and keeps them. Overrides of rules
    /// this crate does not evaluate (`canary_failed`, …) are kept for their own duty.
    pub fn new(overrides: &[RuleOverride]) -> Result<Self, ParamError> {
        for (index, o) in overrides.iter().enumerate() {
            let Some(t) = &o.threshold else { continue };
            let res = match o.rule.as_str() {
                "inbound_stopped" => InboundStopped::default().set_threshold(t),
                "inbound_drop" => InboundDrop::default().set_threshold(t),
                "rejections_spike" => RejectionsSpike::default().set_threshold(t),
                "queue_stalled" => QueueStalled::default().set_threshold(t),
                "queue_backlog" => QueueBacklog::default().set_threshold(t),
                "processing_drop" => ProcessingDrop::default().set_threshold(t),
                "delivery_errors" => DeliveryErrors::default().set_threshold(t),
                "dead_letters" => DeadLetters::default().set_threshold(t),
                "source_gap" => SourceGap::default().set_threshold(t),
                "completion_stalled" => CompletionStalled::default().set_threshold(t),
                "completion_errors" => CompletionErrors::default().set_threshold(t),
                "canary_failed" => CanaryFailed::default().set_threshold(t),
                "drill_failed" => DrillFailed::default().set_threshold(t),
                _ => Ok(()),
            };
            res.map_err(|message| ParamError {
                index,
                rule: o.rule.clone(),
                message,
            })?;
        }
        Ok(RuleBook {
            overrides: overrides.to_vec(),
        })
    }

    /// True when some override names this rule (fast path for the common case of none).
    fn has_overrides(&self, rule: &str) -> bool {
        self.overrides.iter().any(|o| o.rule == rule)
    }

    /// The parameters of rule `P` for a series of `tenant` and `source`.
    pub fn resolve<P: RuleParams>(&self, tenant: &str, source: &str) -> P {
        let mut p = P::default();
        if !self.has_overrides(P::RULE) {
            return p;
        }
        for level in 0..4u8 {
            for o in &self.overrides {
                if o.rule != P::RULE {
                    continue;
                }
                let specificity = u8::from(o.tenant.is_some()) + 2 * u8::from(o.source.is_some());
                if specificity != level {
                    continue;
                }
                if o.tenant.as_deref().is_some_and(|t| t != tenant)
                    || o.source.as_deref().is_some_and(|s| s != source)
                {
                    continue;
                }
                if let Some(t) = &o.threshold {
                    // Checked in `new`; an error here cannot happen and would keep the default.
                    let _ = p.set_threshold(t);
                }
                if let Some(f) = o.for_ {
                    p.common_mut().for_ = f.0;
                }
                if let Some(s) = o.severity {
                    p.common_mut().severity = s;
                }
            }
        }
        p
    }

    /// Every rule's defaults this crate holds parameters for (the evaluated rules,
    /// `canary_failed` and `drill_failed`) as JSON-ready values, for `GET /api/v1/rules`.
    pub fn defaults() -> Vec<(&'static str, serde_json::Value)> {
        fn v<P: RuleParams + Serialize>() -> (&'static str, serde_json::Value) {
            (
                P::RULE,
                serde_json::to_value(P::default()).unwrap_or(serde_json::Value::Null),
            )
        }
        vec![
            v::<InboundStopped>(),
            v::<InboundDrop>(),
            v::<RejectionsSpike>(),
            v::<QueueStalled>(),
            v::<QueueBacklog>(),
            v::<ProcessingDrop>(),
            v::<DeliveryErrors>(),
            v::<DeadLetters>(),
            v::<SourceGap>(),
            v::<CompletionStalled>(),
            v::<CompletionErrors>(),
            v::<CanaryFailed>(),
            v::<DrillFailed>(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::Dur;

    fn ov(rule: &str, tenant: Option<&str>, source: Option<&str>) -> RuleOverride {
        RuleOverride {
            rule: rule.into(),
            tenant: tenant.map(Into::into),
            source: source.map(Into::into),
            threshold: None,
            for_: None,
            severity: None,
            notifiers: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn most_specific_wins_field_by_field() {
        let mut a = ov("queue_stalled", None, None);
        a.threshold = Some(RuleThreshold::Duration(Dur::secs(600)));
        let mut b = ov("queue_stalled", Some("maelys"), None);
        b.severity = Some(Severity::Warning);
        let mut c = ov("queue_stalled", Some("maelys"), Some("maelys-kustomer"));
        c.threshold = Some(RuleThreshold::Duration(Dur::secs(120)));
        // Listed most specific first: order in the file must not matter across levels.
        let book = RuleBook::new(&[c, b, a]).unwrap();
        let p: QueueStalled = book.resolve("maelys", "maelys-kustomer");
        assert_eq!(p.max_age, Duration::from_secs(120));
        assert_eq!(p.common.severity, Severity::Warning);
        let p: QueueStalled = book.resolve("maelys", "other");
        assert_eq!(p.max_age, Duration::from_secs(600));
        assert_eq!(p.common.severity, Severity::Warning);
        let p: QueueStalled = book.resolve("acme", "acme-zendesk");
        assert_eq!(p.max_age, Duration::from_secs(600));
        assert_eq!(p.common.severity, Severity::Critical);
        let p: InboundStopped = book.resolve("maelys", "maelys-kustomer");
        assert_eq!(p, InboundStopped::default());
    }

    #[test]
    fn canary_failed_takes_severity_and_for_but_no_threshold() {
        let mut o = ov("canary_failed", Some("maelys"), None);
        o.severity = Some(Severity::Warning);
        let book = RuleBook::new(&[o.clone()]).unwrap();
        let p: CanaryFailed = book.resolve("maelys", "maelys-kustomer");
        assert_eq!(p.common.severity, Severity::Warning);
        let p: CanaryFailed = book.resolve("other", "other-kustomer");
        assert_eq!(p, CanaryFailed::default());
        o.threshold = Some(RuleThreshold::Duration(Dur::secs(300)));
        let err = RuleBook::new(&[o]).unwrap_err();
        assert!(err.to_string().contains("[canary] deadline"), "{err}");
    }

    #[test]
    fn wrong_threshold_kind_is_a_precise_error() {
        let mut a = ov("inbound_stopped", None, None);
        a.threshold = Some(RuleThreshold::Duration(Dur::secs(60)));
        let err = RuleBook::new(&[ov("watchdog", None, None), a]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("expected a number"), "{err}");
        let mut b = ov("queue_stalled", None, None);
        b.threshold = Some(RuleThreshold::Number(5.0));
        let err = RuleBook::new(&[b]).unwrap_err();
        assert!(err.to_string().contains("\"5m\""), "{err}");
    }

    #[test]
    fn default_severities_follow_the_product() {
        assert_eq!(
            InboundStopped::default().common.severity,
            Severity::Critical
        );
        assert_eq!(QueueStalled::default().common.severity, Severity::Critical);
        assert_eq!(DeadLetters::default().common.severity, Severity::Critical);
        assert_eq!(SourceGap::default().common.severity, Severity::Critical);
        for s in [
            InboundDrop::default().common.severity,
            RejectionsSpike::default().common.severity,
            QueueBacklog::default().common.severity,
            ProcessingDrop::default().common.severity,
            DeliveryErrors::default().common.severity,
        ] {
            assert_eq!(s, Severity::Warning);
        }
        assert_eq!(CanaryFailed::default().common.severity, Severity::Critical);
        assert_eq!(DrillFailed::default().common.severity, Severity::Critical);
        // The evaluated rules and the external ones (canary_failed, drill_failed).
        assert_eq!(
            RuleBook::defaults().len(),
            EVALUATED_RULES.len() + EXTERNAL_RULES.len()
        );
    }
}
