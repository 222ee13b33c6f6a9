//! `inbound_stopped`: is the silence since a flow's last event an outage?
//!
//! Three kinds of evidence, all the flow's own (see `docs/detectors.md`):
//!
//! * **The statistical verdict** ([`stopped_against_baseline`]): the posterior predictive
//!   probability of no event over the silence, from the seasonal baseline, the day and the
//!   hour seen before the silence, and the flow's minute-scale bursts ([`crate::burst`]):
//!   events that arrive in clumps leave longer silences, so the silence's expected events
//!   count for fewer independent arrivals.
//! * **The flow's own gaps** ([`gap_gate`]): before the statistical verdict pages, the
//!   silence must also be longer, in expected events at the rate the flow had just before
//!   it, than the longest gaps the flow had at these hours over the last two weeks (the
//!   second-longest day's, so that one outage or holiday in that history does not raise the
//!   bar). Whatever makes a flow's silences long — bursts, polling, an SOR that flushes its
//!   queue — it has shown it before.
//! * **Gap rules** for flows the statistics judge slowly or not at all: without a baseline
//!   ([`stopped_by_gaps`]), and for low-volume flows with one ([`baselined_gap`]).
//!
//! The reason of every page says which evidence decided.

use statrs::function::gamma::ln_gamma;

use crate::baseline::{
    count_noise, dispersion_of, expected_between, hour_baseline, profile_between, BaselineConfig,
    BaselineKind, HourBaseline,
};
use crate::burst::BurstStats;
use crate::calendar::QuietDay;
use crate::exposure::{exposure, silence_exposure};
use crate::history::{hour_of, FlowHistory, Minute};
use crate::params::InboundStopped;
use crate::stats::{fmt_prob, fmt_secs, minutes_of, NegBinomial};

/// The squared relative error of an hour's baseline as an estimate of that hour's mean: the
/// baseline is the median of `n` comparable hours, each of which had its own hour multiplier
/// (variance `a_h`) and its own count noise (`noise/m`, `noise` the flow's index of
/// dispersion from [`count_noise`], 1 for events one by one), so it misses the hour's true
/// level by a relative variance of about `(a_h + noise/m)/n`, times the median's
/// inefficiency (1 for the
/// median of 1 or 2 values, π/2 for more, the large-sample value, which errs high). The
/// day-level part of those hours' variation is common to the hours of a day and is learnt
/// by the day multiplier; this hour-specific part is not, and the hour-to-hour dispersion
/// `a_h`, being estimated in-sample against the same medians, does not contain it either.
fn baseline_error(b: Option<HourBaseline>, a_h: f64, noise: f64) -> f64 {
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
    inefficiency * (a_h + noise / b.expected.max(1.0)) / n
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
///    exposure before the silence's hour (`prior_window`, for a slow flow its working day,
///    see `exposure::silence_exposure`; each minute weighted by its hour's
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
pub(crate) fn stopped(
    f: &mut FlowHistory,
    now_min: Minute,
    p: &InboundStopped,
    cfg: &BaselineConfig,
    quiet_day: Option<QuietDay<'_>>,
) -> Option<(f64, String)> {
    let last = f.last_event()?;
    let start = last + 1;
    let run = now_min - start;
    if run <= 0 {
        return None;
    }
    match expected_between(f, start, now_min, cfg) {
        Some((_, kind)) => {
            let silence = Silence {
                start,
                now_min,
                kind,
                quiet_day,
            };
            stopped_against_baseline(f, &silence, p, cfg)
        }
        None => stopped_by_gaps(f, last, now_min, p),
    }
}

/// Holds a finding of [`stopped`] until an event arrives. The verdict on a silence can clear
/// while the flow is still silent: a silence that runs from an office's afternoon into its
/// evening reaches hours where long gaps are ordinary, and the flow's own gaps there no longer
/// say it is remarkable. The alert would resolve, and page again later in the same silence.
/// A stopped flow is back only when its events are, so once `verdict` has found the silence,
/// the finding stays, with the reason that paged, until the flow's last event changes.
pub(crate) fn held(
    f: &mut FlowHistory,
    verdict: Option<(f64, String)>,
    now_min: Minute,
) -> Option<(f64, String)> {
    let last = f.last_event();
    if let Some((value, reason)) = verdict {
        f.stopped_on = last.map(|l| (l, reason.clone()));
        return Some((value, reason));
    }
    match (&f.stopped_on, last) {
        (Some((on, reason)), Some(l)) if *on == l => {
            let run = now_min - l - 1;
            Some((
                run as f64,
                format!("0 events in {run} min, none since this silence was found: {reason}"),
            ))
        }
        _ => {
            f.stopped_on = None;
            None
        }
    }
}

/// The silence being judged: from `start` (the minute after the last event) to `now_min`.
struct Silence<'a> {
    start: Minute,
    now_min: Minute,
    /// The baseline's kind (seasonal, or the daily fallback).
    kind: BaselineKind,
    /// The calendar that says today is a planned quiet day for this flow's tenant, if any.
    quiet_day: Option<QuietDay<'a>>,
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
    /// The flow's index of dispersion of half-hour counts: counts enter the updates divided
    /// by it.
    d: f64,
    /// The silence's length in minutes.
    run: f64,
    /// The flow's minute-scale bursts.
    burst: BurstStats,
    /// Whether today is a planned quiet day (a calendar says so).
    quiet_day: bool,
}

/// Gathers the [`SilenceEvidence`] of a silence from `start` to `now_min`.
fn silence_evidence(
    f: &mut FlowHistory,
    silence: &Silence<'_>,
    p: &InboundStopped,
    cfg: &BaselineConfig,
) -> SilenceEvidence {
    let Silence {
        start,
        now_min,
        kind,
        ..
    } = *silence;
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
    // On a planned quiet day only the day itself says what its level is: the evening
    // before was an ordinary one.
    let floor = silence.quiet_day.map_or(Minute::MIN, |q| q.since);
    let (c, e, minutes) = silence_exposure(f, start, floor, p, cfg);
    let n = (minutes as f64 / 60.0).max(1.0);
    // Each hour's multiplier relative to its baseline varies by the hour-to-hour
    // dispersion plus the baseline's own error (see `baseline_error`): the first for
    // the hour in which the silence began, the later hours' errors averaging out over
    // the hours they span, the exposure's hours by their average volume.
    let noise = count_noise(f);
    let v_start = a_h + baseline_error(hour_baseline(f, hour_of(start), cfg), a_h, noise);
    let later_hours = ((now_min - hour_start - 60) as f64 / 60.0).ceil().max(1.0);
    let v_later =
        a_h + baseline_error(hour_baseline(f, hour_of(now_min - 1), cfg), a_h, noise) / later_hours;
    let v_exposure = a_h
        + baseline_error(
            hour_baseline(f, hour_of(start) - 1, cfg).map(|b| HourBaseline {
                expected: e / n,
                ..b
            }),
            a_h,
            noise,
        );
    let kappa = 1.0 / (1.0 + e * v_exposure / n);
    // Bursty counts carry less information than events that arrive one by one: a batch of
    // forty in one minute is one arrival, not forty. The counts enter the updates divided
    // by the flow's index of dispersion (a quasi-likelihood), which keeps the rate they
    // indicate and widens its uncertainty.
    let d = f.burst.half_hour_dispersion().min(MAX_DISPERSION);
    let (kc, ke) = (kappa * c / d, kappa * e / d);
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
        d,
        run: (now_min - start) as f64,
        burst: f.burst.clone(),
        quiet_day: silence.quiet_day.is_some(),
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
    /// The events each component expects over the silence at its *day's* level (the
    /// exposure's, not this hour's minutes): what the minimum of expected arrivals counts.
    day_means: [f64; 3],
}

/// Weighs the components of the day multiplier's prior by how well each explains the
/// exposure and the minutes of this hour before the silence.
fn mixture(ev: &SilenceEvidence, cfg: &BaselineConfig) -> Mixture {
    // The day multiplier's prior is a mixture: an ordinary day, Gamma(a, a), or with
    // probability `quiet_day_share` a quiet day, Gamma(2, 2/level). Each component is
    // updated by the exposure and weighted by how well it explains it (its negative
    // binomial marginal likelihood; the terms common to both cancel).
    // With the daily fallback the weekend is a quiet day the baseline cannot see: two
    // days in seven on top of the holidays. On a day a calendar says is quiet, it is one.
    let mut share = cfg.quiet_day_share.clamp(0.0, 0.5);
    if matches!(ev.kind, BaselineKind::Daily { .. }) {
        share = (share + 2.0 / 7.0).min(0.5);
    }
    if ev.quiet_day {
        share = 1.0;
    }
    // A quiet day begins at one of the day's 24 hour boundaries (a holiday at local
    // midnight, a Saturday after a Friday): the chance that one began at the start of
    // this hour, after the exposure, is a 24th of the share.
    let onset = if ev.quiet_day { 0.0 } else { share / 24.0 };
    let level = cfg.quiet_day_level.clamp(1e-3, 1.0);
    let quiet_shape = 2.0;
    let quiet_rate = quiet_shape / level;
    let a = 1.0 / ev.alpha;
    let mut m = Mixture {
        ln_terms: [f64::NEG_INFINITY; 3],
        ln_p0s: [0.0; 3],
        means: [0.0; 3],
        day_means: [0.0; 3],
    };
    let day_components = [
        (1.0 - share - onset, a, a),
        (share, quiet_shape, quiet_rate),
    ];
    let mut ordinary_exposure = ln_nb(a, a, ev.kc, ev.ke);
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

/// `ln P(0)` over the silence of a component whose multiplier has mean `mean` in the first
/// hour (`mean_later` after) and squared coefficients of variation `v1`, `v2`, with the
/// silence's expected events shrunk by the flow's bursts at that rate: clumped arrivals
/// leave longer silences than events that arrive one by one.
fn component_ln_p0(ev: &SilenceEvidence, mean: f64, v1: f64, mean_later: f64, v2: f64) -> f64 {
    let events = mean * ev.w1 + mean_later * ev.w2;
    let factor = ev.burst.factor(events / ev.run.max(1.0));
    nb_ln_p0(mean, v1, ev.w1 * factor) + nb_ln_p0(mean_later, v2, ev.w2 * factor)
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
    // The hour's level D·H₁, matched to a Gamma, is what the hour's count so far measures:
    // it is updated as one (the count cannot tell the day's part from the hour's).
    let v_hour = (1.0 + 1.0 / d_shape) * (1.0 + ev.v_start) - 1.0;
    let (c1, e1) = (ev.c1 / ev.d, ev.e1 / ev.d);
    let ln_hour = ln_nb(1.0 / v_hour, 1.0 / (v_hour * d_mean), c1, e1);
    m.ln_terms[i] = prior.ln() + ln_exposure + ln_hour;
    let p_shape = 1.0 / v_hour + c1;
    let p_mean = p_shape / (1.0 / (v_hour * d_mean) + e1);
    let v1 = 1.0 / p_shape;
    let v2 = (1.0 + 1.0 / d_shape) * (1.0 + ev.v_later) - 1.0;
    m.ln_p0s[i] = component_ln_p0(ev, p_mean, v1, d_mean, v2);
    m.means[i] = p_mean * ev.w1 + d_mean * ev.w2;
    m.day_means[i] = d_mean * (ev.w1 + ev.w2);
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
    let (c1, e1) = (ev.c1 / ev.d, ev.e1 / ev.d);
    let ln_hour = ln_nb(spell_shape, spell_rate, c1, e1);
    m.ln_terms[2] = onset.ln() + ordinary_exposure + ln_hour;
    let q_shape = spell_shape + c1;
    let q_mean = q_shape / (spell_rate + e1);
    let v1 = 1.0 / q_shape;
    let v2 = (1.0 + 1.0 / q_shape) * (1.0 + ev.v_later) - 1.0;
    m.ln_p0s[2] = component_ln_p0(ev, q_mean, v1, q_mean, v2);
    m.means[2] = q_mean * (ev.w1 + ev.w2);
    m.day_means[2] = q_mean * (ev.w1 + ev.w2);
}

/// The statistical verdict: the mixture's weights, `ln P(0)` and the events it expects over
/// the silence.
struct Verdict {
    quiet: f64,
    spell: f64,
    ln_p0: f64,
    post_mean: f64,
    /// The events expected over the silence at the level the flow ran at over the hours
    /// before it (the day multiplier's posterior mean, mixed like `post_mean`).
    day_mean: f64,
}

fn verdict(ev: &SilenceEvidence, cfg: &BaselineConfig) -> Verdict {
    let m = mixture(ev, cfg);
    let top = m.ln_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights = m.ln_terms.map(|t| (t - top).exp());
    let total_w: f64 = weights.iter().sum();
    let weights = weights.map(|w| w / total_w);
    // ln Σ wᵢ P0ᵢ, in log space so that tiny probabilities stay exact.
    let parts: Vec<f64> = (0..3)
        .filter(|&i| weights[i] > 0.0)
        .map(|i| weights[i].ln() + m.ln_p0s[i])
        .collect();
    let hi = parts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln_p0 = hi + parts.iter().map(|x| (x - hi).exp()).sum::<f64>().ln();
    Verdict {
        quiet: weights[1],
        spell: weights[2],
        ln_p0,
        post_mean: (0..3).map(|i| weights[i] * m.means[i]).sum(),
        day_mean: (0..3).map(|i| weights[i] * m.day_means[i]).sum(),
    }
}

/// The independent arrivals that the minimum of expected arrivals counts over a silence:
/// the events the flow would have carried over it at the level it ran at over the hours
/// before it (`Verdict::day_mean`), each component's day multiplier times the baseline,
/// shrunk by its minute-scale bursts at that rate (clumped events leave longer silences).
///
/// The day's level, not the baseline's: a flow running 30 % above its baseline all day has
/// 30 % more arrivals in its silence, one running at a holiday's quarter a quarter, and the
/// floor should say so in both directions. Not this hour's level: the floor guards against
/// the hour-to-hour noise the model may underestimate, so it does not lean on the minutes
/// of the hour the silence began in.
fn arrivals_at_day_level(v: &Verdict, ev: &SilenceEvidence) -> f64 {
    arrivals(v.day_mean, ev.run, &ev.burst)
}

/// `events` expected over `run` minutes, counted as independent arrivals under `burst`.
fn arrivals(events: f64, run: f64, burst: &BurstStats) -> f64 {
    events * burst.factor(events / run.max(1.0))
}

/// The flow's own gaps against a silence: see [`gap_gate`].
struct Gate {
    /// The silence in expected events at the rate of the hour before it.
    silence: f64,
    /// The longest gap in expected events at these hours on the second-longest day of the
    /// last `gap_days`, and how many days were known; `None` when fewer than
    /// [`GATE_MIN_DAYS`] were.
    longest: Option<(f64, usize)>,
    /// The factor the silence must exceed it by.
    factor: f64,
}

/// The largest index of dispersion the counts are divided by.
const MAX_DISPERSION: f64 = 50.0;

/// Days of gap history the gate needs before it judges; with fewer it stays open (and the
/// reason says so): right after a restart the history is rebuilt from hourly counts, whose
/// gaps are not known.
const GATE_MIN_DAYS: usize = 3;

impl Gate {
    fn open(&self) -> bool {
        match self.longest {
            Some((q, _)) => self.silence >= self.factor * q,
            None => true,
        }
    }

    /// Minutes of the silence that the gate has been open for (0 when it is shut).
    fn open_for(&self, run: f64) -> f64 {
        match self.longest {
            Some((q, _)) if self.silence > 0.0 => run * (1.0 - self.factor * q / self.silence),
            Some(_) => 0.0,
            None => run,
        }
        .max(0.0)
    }

    fn describe(&self) -> String {
        match self.longest {
            Some((q, days)) => format!(
                "this silence is {:.1} expected events at the rate of the hour before it; the \
                 flow's longest gap at these hours was {q:.1} on the second-longest of {days} \
                 days (must be exceeded {}x)",
                self.silence, self.factor
            ),
            None => format!(
                "this silence is {:.1} expected events at the rate of the hour before it; fewer \
                 than {GATE_MIN_DAYS} days of this flow's gaps are known yet, so they were not \
                 compared",
                self.silence
            ),
        }
    }
}

/// The flow's own record of its silences: the silence, in expected events at the flow's rate
/// over the hour before it, against the longest gaps (measured the same way, see
/// `FlowHistory::gap_events`) at the hours of the day it spans, over the last `gap_days`
/// days. The second-longest day is the bar, so a single day with an outage or a holiday in
/// that history does not raise it. Gaps are a flow's whole behaviour, bursts, polling and
/// flushes included, whatever the model understands of them.
fn gap_gate(f: &FlowHistory, start: Minute, now_min: Minute, p: &InboundStopped) -> Gate {
    let run = (now_min - start) as f64;
    let (before, held) = f.sum_minutes(start - 60, start);
    let rate = if held > 0 {
        before as f64 / held as f64
    } else {
        0.0
    };
    let (first_h, last_h) = (hour_of(start), hour_of(now_min - 1));
    let first_h = first_h.max(last_h - 23);
    let mut days: Vec<f64> = Vec::with_capacity(p.gap_days as usize);
    for d in 1..=i64::from(p.gap_days) {
        let day: Option<f64> = (first_h..=last_h)
            .map(|h| f.gap_events_at(h - 24 * d))
            .try_fold(0.0f64, |acc, g| g.map(|g| acc.max(g)));
        if let Some(g) = day {
            days.push(g);
        }
    }
    days.sort_by(|a, b| b.total_cmp(a));
    let longest = (days.len() >= GATE_MIN_DAYS).then(|| (days[1], days.len()));
    Gate {
        silence: run * rate,
        longest,
        factor: p.gate_factor,
    }
}

/// The verdict on a silence of a flow whose events arrive at regular intervals, taken when
/// the statistical verdict is not remarkable enough. A mailbox polled every few minutes
/// leaves minutes that are mostly empty with the fetched mail between: the burst model reads
/// those as rare clumps and allows silences of an hour, while the flow itself rarely misses
/// several fetches in a row. The flow's period and its share of empty fetches are learnt
/// from its own gaps ([`crate::burst::GapLengths::period`]). The silence pages when
///
/// * it expects at least `regular_min_expected` events (the fewer of what the rate of the
///   hour before it and the statistical verdict expect), `regular_min_per_fetch` a fetch;
/// * it spans enough periods (the period's longest value) that as many empty fetches in a
///   row are less likely than `regular_miss`, and at least `regular_factor`;
/// * the flow's own gaps at these hours agree (the gate, as for the statistical verdict,
///   but with at least its minimum of known days: this rule has no other evidence);
/// * and the statistical verdict's P(0) is below `regular_p_zero`, so that a quiet spell
///   that the hours before the silence make likely does not page.
fn regular_arrivals(
    f: &FlowHistory,
    silence: &Silence<'_>,
    p: &InboundStopped,
    v: &Verdict,
) -> Option<(f64, String)> {
    if v.ln_p0 >= p.regular_p_zero.ln() {
        return None;
    }
    let period = f.gap_lengths.period()?;
    let run = silence.now_min - silence.start;
    let gate = gap_gate(f, silence.start, silence.now_min, p);
    // The events the silence should have carried: the fewer of what the rate of the hour
    // before it and the statistical verdict (the baseline at the day's level) expect, so
    // that an evening's falling rate does not count as a busy hour's fetches.
    let expected = gate.silence.min(v.post_mean);
    // Unlike the statistical verdict, this rule stands on the flow's record alone: without
    // enough known days of it (a new flow, a restart) it does not judge.
    if expected < p.regular_min_expected || gate.longest.is_none() || !gate.open() {
        return None;
    }
    // Only a busy poller: at a few events a fetch, empty fetches are common and the silence
    // is the statistical verdict's to judge. A fetch comes back empty as often as the flow's
    // record says, or as often as its mail at this rate leaves one empty, whichever is more.
    let per_fetch = expected / run.max(1) as f64 * period.longest as f64;
    if per_fetch < p.regular_min_per_fetch {
        return None;
    }
    let empty = period.empty.max((-per_fetch).exp());
    let fetches = missed_fetches(empty, p);
    if (run as f64) < fetches * period.longest as f64 {
        return None;
    }
    let calendar = silence
        .quiet_day
        .map(|q| format!(" (a planned quiet day (calendar `{}`))", q.name))
        .unwrap_or_default();
    Some((
        run as f64,
        format!(
            "0 events in {run} min{calendar}; this flow's events arrive every {}–{} min \
             (most gaps; nine in ten with their doubles and triples), and {:.0} % of its \
             fetches bring nothing, so this silence of over {fetches:.0} periods has a chance \
             below {} of being fetches that came back empty; {expected:.1} events expected \
             over it (at least {:.0}); {}; \
             P(0) = {} by the statistical verdict (below {} for this rule, {} alone); decided \
             by this flow's regular arrivals",
            period.shortest,
            period.longest,
            100.0 * empty,
            fmt_prob(p.regular_miss),
            p.regular_min_expected,
            gate.describe(),
            fmt_prob(v.ln_p0.exp()),
            fmt_prob(p.regular_p_zero),
            fmt_prob(p.p_zero),
        ),
    ))
}

/// How many periods a polled flow's silence must span before the regular-arrivals rule
/// judges it: enough that fetches coming back empty that many times in a row (each with
/// probability `empty`, the flow's own share) is below `regular_miss`, and at least
/// `regular_factor`.
fn missed_fetches(empty: f64, p: &InboundStopped) -> f64 {
    let needed = if empty > 0.0 && empty < 1.0 {
        (p.regular_miss.ln() / empty.ln()).ceil()
    } else if empty >= 1.0 {
        f64::INFINITY
    } else {
        0.0
    };
    needed.max(p.regular_factor)
}

/// The statistical verdict on a silence of a flow with a baseline (steps 1 to 3 of
/// [`stopped`]), which pages only when the flow's own gaps agree ([`gap_gate`]); the gap rule
/// when it is not remarkable enough.
fn stopped_against_baseline(
    f: &mut FlowHistory,
    silence: &Silence<'_>,
    p: &InboundStopped,
    cfg: &BaselineConfig,
) -> Option<(f64, String)> {
    let Silence {
        start,
        now_min,
        kind,
        quiet_day,
    } = *silence;
    let run = now_min - start;
    let ev = silence_evidence(f, silence, p, cfg);
    let v = verdict(&ev, cfg);
    let daily = matches!(kind, BaselineKind::Daily { .. });
    let threshold = if daily {
        p.p_zero * p.daily_factor.clamp(1e-6, 1.0)
    } else {
        p.p_zero
    };
    let expected = ev.expected;
    let arrivals = arrivals_at_day_level(&v, &ev);
    if v.ln_p0 >= threshold.ln() || arrivals < p.min_expected {
        return regular_arrivals(f, silence, p, &v)
            .or_else(|| baselined_gap(f, now_min, p, cfg, kind, v.ln_p0));
    }
    let gate = gap_gate(f, start, now_min, p);
    if !gate.open() {
        return baselined_gap(f, now_min, p, cfg, kind, v.ln_p0);
    }
    // Which evidence decided: the one that came true last (each is roughly linear in the
    // silence's length, so the minutes it has held are estimated from its margin).
    let runf = run as f64;
    let statistical_for = runf * (1.0 - threshold.ln() / v.ln_p0).max(0.0);
    let minimum_for = runf * (1.0 - p.min_expected / arrivals).max(0.0);
    let gate_for = gate.open_for(runf);
    let decided = if gate_for <= statistical_for.min(minimum_for) && gate.longest.is_some() {
        "this flow's own gaps".to_string()
    } else if minimum_for < statistical_for {
        format!("the minimum of {:.0} expected arrivals", p.min_expected)
    } else {
        "the statistical verdict".to_string()
    };
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
    let working_day = if minutes > minutes_of(p.prior_window) {
        " (this slow flow's working day so far)"
    } else {
        ""
    };
    let shape = match ev.burst.dispersion() {
        b if b <= 0.01 => "none (events one by one)".to_string(),
        b => format!("{:.1}", 1.0 / b),
    };
    let calendar = quiet_day
        .map(|q| format!("; a planned quiet day (calendar `{}`)", q.name))
        .unwrap_or_default();
    Some((
        run as f64,
        format!(
            "0 events in {run} min; expected {expected:.0} ± {sd:.0} at this hour ({kind}{calendar}); \
             {c:.0} events in the {hours:.0} h before{working_day}, {e:.0} expected, and {c1:.0} in \
             this hour before the silence, {e1:.0} expected, so about {post_mean:.0} now \
             (dispersion {alpha:.2}, hour-to-hour {a_h:.2}, P(quiet day) = {}, \
             P(quiet since this hour) = {}); bursts: minute-scale shape {shape}, clumps of \
             {clump:.1}, so {arrivals:.1} independent arrivals expected at the level of the \
             hours before, and counts weigh \
             1/{d:.1} (half-hour dispersion); P(0) = {} \
             (threshold {}{}); {}; decided by {decided}",
            fmt_prob(v.quiet),
            fmt_prob(v.spell),
            fmt_prob(v.ln_p0.exp()),
            fmt_prob(threshold),
            if daily {
                ", stricter with the daily fallback"
            } else {
                ""
            },
            gate.describe(),
            post_mean = v.post_mean,
            clump = ev.burst.clump(),
            d = ev.d,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 90/h flow ten minutes into a silence that began on the hour: three hours of
    /// exposure in which the baseline expected 270 events and the flow carried `ratio` times
    /// that, no event of this hour seen, minutes of burst shape 2 (the prior).
    fn evidence(ratio: f64) -> SilenceEvidence {
        let (e, kappa) = (270.0, 0.2);
        let c = ratio * e;
        SilenceEvidence {
            kind: BaselineKind::Seasonal { weeks: 4 },
            expected: 15.0,
            alpha: 0.1,
            a_h: 0.05,
            c,
            e,
            minutes: 180,
            kc: kappa * c,
            ke: kappa * e,
            c1: 0.0,
            e1: 0.0,
            w1: 15.0,
            w2: 0.0,
            v_start: 0.07,
            v_later: 0.07,
            d: 1.0,
            run: 10.0,
            burst: BurstStats::new(),
            quiet_day: false,
        }
    }

    /// The minimum of expected arrivals counts them at the level the flow ran at over the
    /// hours before the silence: more on a busy day, fewer on a quiet one, and on an
    /// ordinary day what the baseline expects.
    #[test]
    fn the_minimum_of_arrivals_counts_at_the_days_level() {
        let cfg = BaselineConfig::default();
        let burst = BurstStats::new();
        // (the day's level relative to the baseline, the level the arrivals should count at:
        // the day multiplier's posterior mean, (a + κc)/(a + κE) with a = 1/alpha = 10 and
        // κE = 54; for the quarter day the ordinary component, 0.37, weighs 1/3 and the
        // quiet day's, (2 + κc)/(2/0.3 + κE) = 0.26, 2/3 by their marginal likelihoods)
        let table = [(1.0, 1.0), (1.5, 1.42), (0.6, 0.66), (0.25, 0.29)];
        for (ratio, level) in table {
            let ev = evidence(ratio);
            let v = verdict(&ev, &cfg);
            let got = arrivals_at_day_level(&v, &ev);
            let want = arrivals(level * ev.expected, ev.run, &burst);
            assert!(
                (got - want).abs() < 0.05 * want,
                "day at {ratio}: {got:.2} arrivals, want {want:.2}"
            );
        }
        // Shape-2 minutes at 1.5 a minute: the baseline's 15 expected events are 11.2
        // arrivals; on a day at 1.5 times the baseline the same ten minutes carried 21
        // events, 14.5 arrivals (bursts shrink a busier minute's evidence a little more).
        let baseline = arrivals(15.0, 10.0, &burst);
        assert!((baseline - 11.2).abs() < 0.1, "{baseline}");
        let busy = evidence(1.5);
        let got = arrivals_at_day_level(&verdict(&busy, &cfg), &busy);
        assert!((got - 14.5).abs() < 0.2, "{got}");
    }

    /// Arrivals under bursts: one by one they are the events; clumped, fewer; polled every
    /// few minutes, far fewer.
    #[test]
    fn arrivals_shrink_with_bursts() {
        let mut poisson = BurstStats::new();
        let mut polled = BurstStats::new();
        for h in 0..2000 {
            poisson.observe_hour(h, &[2; 60]);
            let mut minutes = [0u32; 60];
            for m in minutes.iter_mut().step_by(5) {
                *m = 10;
            }
            polled.observe_hour(h, &minutes);
        }
        // (bursts, events, minutes, arrivals at most, arrivals at least)
        let table = [
            (&poisson, 20.0, 10.0, 20.0, 19.0),
            (&BurstStats::new(), 20.0, 10.0, 14.0, 13.5),
            (&polled, 20.0, 10.0, 4.0, 0.5),
            (&BurstStats::new(), 0.0, 10.0, 0.0, 0.0),
        ];
        for (burst, events, run, hi, lo) in table {
            let got = arrivals(events, run, burst);
            assert!((lo..=hi).contains(&got), "{events} in {run}: {got}");
        }
    }
}
