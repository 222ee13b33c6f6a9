//! Baselines: what a flow is expected to carry at a given hour, and how much it varies.
//!
//! The preferred baseline is *seasonal*: the median of the same hour of the week over the last
//! `weeks` weeks (a holiday or an outage in one of those weeks moves a median little). While a
//! series has fewer than `min_weeks` such weeks, the baseline falls back to the median of the
//! same hour of the day over the last `days` days, and with fewer than `min_days` of those there
//! is no baseline at all: the statistical rules give no verdict and only the gap rule of
//! `inbound_stopped` watches the series. Which one was used is written into every reason.
//!
//! How much a series varies is two dispersions of its hourly intensity, the total and the
//! hour-to-hour part, estimated net of its count noise ([`count_noise`]: the flow's own
//! index of dispersion of half-hour counts, so minute-scale bursts are not read as changes
//! of the hourly rate).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{FlowHistory, Hour, Minute};
use crate::shape::{QUARTERS, QUARTER_MINUTES};
use crate::stats::median;

/// How baselines are built; the same for every series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// Weeks of history the seasonal baseline looks at.
    pub weeks: u32,
    /// Weeks needed before the seasonal baseline is used.
    pub min_weeks: u32,
    /// Days of history the daily fallback looks at.
    pub days: u32,
    /// Days needed before the daily fallback is used.
    pub min_days: u32,
    /// Prior dispersion the estimate shrinks towards.
    pub alpha_prior: f64,
    /// Strength of that prior, in units of squared expected hourly counts.
    pub alpha_prior_weight: f64,
    /// The dispersion never goes below this, however regular a series looked.
    pub alpha_floor: f64,
    /// Nor above this.
    pub alpha_cap: f64,
    /// The least dispersion assumed while a series only has the daily fallback, which cannot
    /// see weekly seasonality (a Saturday judged against the weekdays before it).
    pub daily_alpha: f64,
    /// The hour-to-hour dispersion never goes below this.
    pub hour_alpha_floor: f64,
    /// Prior probability that a day is a *quiet day* — a holiday, a company event — whose
    /// traffic is a fraction of the baseline; nothing tells the monitor the calendar.
    pub quiet_day_share: f64,
    /// Mean level of such a day relative to the baseline (its multiplier is Gamma with shape
    /// 2, so it covers days from nearly empty to half traffic).
    pub quiet_day_level: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            weeks: 4,
            min_weeks: 2,
            days: 7,
            min_days: 3,
            alpha_prior: 0.1,
            alpha_prior_weight: 2_000.0,
            alpha_floor: 0.02,
            alpha_cap: 2.0,
            daily_alpha: 0.25,
            hour_alpha_floor: 0.01,
            quiet_day_share: 0.03,
            quiet_day_level: 0.3,
        }
    }
}

impl BaselineConfig {
    /// Hours of history a flow series must keep for these baselines.
    pub fn hour_capacity(&self) -> usize {
        (self.weeks.max(1) as usize * 168 + 2).max(self.days as usize * 24 + 2)
    }
}

/// Which baseline an expectation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaselineKind {
    /// Same hour of the week over this many weeks.
    Seasonal {
        /// Weeks used.
        weeks: u32,
    },
    /// Same hour of the day over this many days (not enough weeks yet).
    Daily {
        /// Days used.
        days: u32,
    },
}

impl fmt::Display for BaselineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineKind::Seasonal { weeks } => write!(
                f,
                "seasonal baseline, {weeks} week{}",
                if *weeks == 1 { "" } else { "s" }
            ),
            BaselineKind::Daily { days } => write!(
                f,
                "daily fallback baseline, {days} day{}; not enough weeks for a seasonal one",
                if *days == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The expected count of one hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourBaseline {
    /// Median count of the comparable hours.
    pub expected: f64,
    /// Which comparable hours.
    pub kind: BaselineKind,
}

/// The baseline of hour `h` of a series, if it has enough history.
pub fn hour_baseline(f: &FlowHistory, h: Hour, cfg: &BaselineConfig) -> Option<HourBaseline> {
    let mut vals = [0f64; 32];
    let mut n = 0usize;
    for k in 1..=cfg.weeks.min(32) as i64 {
        if let Some(v) = f.full_hour(h - 168 * k) {
            vals[n] = f64::from(v);
            n += 1;
        }
    }
    if n >= cfg.min_weeks as usize && n > 0 {
        return Some(HourBaseline {
            expected: median(&mut vals[..n])?,
            kind: BaselineKind::Seasonal { weeks: n as u32 },
        });
    }
    n = 0;
    for k in 1..=cfg.days.min(32) as i64 {
        if let Some(v) = f.full_hour(h - 24 * k) {
            vals[n] = f64::from(v);
            n += 1;
        }
    }
    if n >= cfg.min_days as usize && n > 0 {
        return Some(HourBaseline {
            expected: median(&mut vals[..n])?,
            kind: BaselineKind::Daily { days: n as u32 },
        });
    }
    None
}

/// The expected count over the minutes `[from, to)`, from the baselines of the hours they fall
/// in (an hour without a baseline contributes nothing, which errs towards silence). Returns
/// `None` when the hour of `to - 1` has no baseline.
pub fn expected_between(
    f: &FlowHistory,
    from: Minute,
    to: Minute,
    cfg: &BaselineConfig,
) -> Option<(f64, BaselineKind)> {
    if to <= from {
        return None;
    }
    let last = hour_baseline(f, (to - 1).div_euclid(60), cfg)?;
    let mut sum = 0.0;
    let mut m = from;
    while m < to {
        let h = m.div_euclid(60);
        let end = ((h + 1) * 60).min(to);
        let b = if h == (to - 1).div_euclid(60) {
            Some(last)
        } else {
            hour_baseline(f, h, cfg)
        };
        if let Some(b) = b {
            sum += b.expected * (end - m) as f64 / 60.0;
        }
        m = end;
    }
    Some((sum, last.kind))
}

/// The expected count over the minutes `[from, to)` with the baseline read as a *profile*
/// rather than a staircase. Each hour carries its baseline, spread over its minutes by a
/// shape: from the hour's middle the shape bends linearly towards a *quieter* neighbouring
/// hour, never towards a busier one; then each quarter of the hour gets the share of the
/// hour's events the flow's own minutes have shown it to carry ([`crate::shape`]), with
/// that bent shape as the prior.
///
/// * Traffic ramps within an hour (the last minutes of an evening hour carry far less than its
///   first ones), and a silence at the end of such an hour must not be judged against the
///   hour's average: towards a quieter neighbour the rate falls.
/// * Traffic also steps at an hour: an office opens at 09:00 and closes at 17:00. Bent
///   towards a busier neighbour, the minutes just before the opening would be expected to
///   carry several times what they do, and the first minutes after the closing too (run by
///   `scripts/counts-csv.py … step`: 25 false pages in 800 tenant-weeks).
/// * And traffic steps inside an hour: an office that closes at 17:30. No rule about
///   neighbouring hours sees that (`… step30`: 73 false pages); the quarters' shares do.
///
/// Hours without a baseline count for nothing; a missing neighbour keeps the hour flat on that
/// side.
pub fn profile_between(f: &FlowHistory, from: Minute, to: Minute, cfg: &BaselineConfig) -> f64 {
    // How many events a quarter's count holds per independent arrival: the flow's clumps
    // at the minute scale. Not its half-hour dispersion, which a step inside an hour
    // inflates (an office closing at 17:30 reads as 37 there), and which would then hide
    // that very step.
    let noise = f.burst().clump().clamp(1.0, MAX_COUNT_NOISE);
    let mut sum = 0.0;
    let mut m = from;
    while m < to {
        let h = m.div_euclid(60);
        let end = ((h + 1) * 60).min(to);
        if let Some(b) = hour_baseline(f, h, cfg) {
            sum += hour_part(f, h, b.expected, noise, cfg, m - h * 60..end - h * 60);
        }
        m = end;
    }
    sum
}

/// Σ|x| over each quarter's minutes, `x` a minute's middle's offset from the hour's middle in
/// hours: what the bent shape takes from or adds to a quarter, per unit of the difference to
/// the neighbour it bends towards.
const QUARTER_OFFSETS: [f64; QUARTERS] = [5.625, 1.875, 1.875, 5.625];

/// The events expected over `minutes` (0–60) of hour `h`, whose baseline is `here` (see
/// [`profile_between`]): the hour's baseline, spread over its quarters by the shares the
/// flow's minutes have shown (against the bent shape's as the prior), and within each quarter
/// as the bent shape runs. The whole hour carries the baseline, no more, no less.
fn hour_part(
    f: &FlowHistory,
    h: Hour,
    here: f64,
    noise: f64,
    cfg: &BaselineConfig,
    minutes: std::ops::Range<i64>,
) -> f64 {
    if minutes == (0..60) {
        return here;
    }
    let before = hour_baseline(f, h - 1, cfg).map_or(here, |x| x.expected);
    let after = hour_baseline(f, h + 1, cfg).map_or(here, |x| x.expected);
    // The bent shape's quarters, in closed form: it bends only downwards, and never below
    // half the hour's rate, so no quarter is empty.
    let mut quarters = [0.0; QUARTERS];
    for (q, sum) in quarters.iter_mut().enumerate() {
        let towards = if q < QUARTERS / 2 { before } else { after };
        *sum = QUARTER_MINUTES as f64 * here + QUARTER_OFFSETS[q] * (towards - here).min(0.0);
    }
    let total: f64 = quarters.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let prior = quarters.map(|q| q / total);
    let shares = f.shapes.shares(h, prior, noise);
    let scale: [f64; QUARTERS] = std::array::from_fn(|q| here * shares[q] / quarters[q]);
    minutes
        .map(|t| {
            let q = (t as usize / QUARTER_MINUTES).min(QUARTERS - 1);
            minute_rate(here, before, after, t) * scale[q]
        })
        .sum()
}

/// The hourly rate at minute `t` (0–59) of an hour whose baseline is `here`, between hours
/// whose baselines are `before` and `after` (see [`profile_between`]).
fn minute_rate(here: f64, before: f64, after: f64, t: i64) -> f64 {
    // Position of the minute's middle relative to the hour's, in hours.
    let x = (t as f64 + 0.5 - 30.0) / 60.0;
    let neighbour = if x < 0.0 { before } else { after };
    let bent = here + x.abs() * (neighbour - here);
    bent.min(here).max(0.0)
}

/// The negative binomial dispersion of a series, by the method of moments on residuals from
/// robust (median) centres, winsorized, shrunk towards a prior and floored.
///
/// For every hour position of the week (or of the day while weeks are missing), the comparable
/// hours give a median `m`; each hour's residual `r = x - m`, clipped at three model standard
/// deviations so that an outage or a holiday does not blow the estimate up, contributes
/// `r² · n/(n-1) - m` to the numerator and `m²` to the denominator (variance is
/// `m + alpha m²`, and the `n/(n-1)` corrects for the median being fitted to the same hours).
/// The pooled estimate is shrunk towards `alpha_prior` with a weight that grows with the
/// volume of the series, because a low-volume series says little about its dispersion.
pub fn estimate_alpha(f: &FlowHistory, now_hour: Hour, cfg: &BaselineConfig) -> f64 {
    let weeks = (1..=cfg.weeks as i64)
        .filter(|k| f.full_hour(now_hour - 168 * k).is_some())
        .count();
    let (period, reps) = if weeks >= cfg.min_weeks as usize && weeks >= 2 {
        (168i64, cfg.weeks as i64)
    } else {
        (24i64, cfg.days as i64)
    };
    let mut num = 0.0;
    let mut den = 0.0;
    let d = count_noise(f);
    let mut vals = Vec::with_capacity(reps as usize);
    for pos in 1..=period {
        vals.clear();
        for k in 0..reps {
            if let Some(v) = f.full_hour(now_hour - pos - period * k) {
                vals.push(f64::from(v));
            }
        }
        let n = vals.len();
        if n < 3 {
            continue;
        }
        let raw = vals.clone();
        let Some(m) = median(&mut vals) else { continue };
        if m <= 0.0 {
            continue;
        }
        let clip = 3.0 * (d * m + cfg.alpha_prior * m * m).sqrt() + 1.0;
        let corr = n as f64 / (n as f64 - 1.0);
        for x in raw {
            let r = (x - m).clamp(-clip, clip);
            num += r * r * corr - d * m;
            den += m * m;
        }
    }
    let raw = if den > 0.0 {
        (num / den).max(0.0)
    } else {
        cfg.alpha_prior
    };
    let w = den / (den + cfg.alpha_prior_weight);
    (w * raw + (1.0 - w) * cfg.alpha_prior).clamp(cfg.alpha_floor, cfg.alpha_cap)
}

/// The hour-to-hour part of a series' dispersion: how much one hour's intensity differs from
/// the next one's *within the same stretch of a day*, as opposed to the whole day being busy or
/// quiet.
///
/// The total dispersion `alpha` mixes both. They matter differently: a busy day shows in the
/// hours before a silence and can be learnt from them, while the intensity of a fresh hour is
/// uncertain however well the previous hours were seen. With `D` the day's multiplier and
/// `H` the hour's (means 1, variances `a_day` and `a_hour`), the hour's count relative to its
/// median `m` is `x/m ≈ D·H` plus Poisson noise of variance `1/m`. For two adjacent hours the
/// day cancels: `E[(x1/m1 - x2/m2)²] ≈ 2·a_hour·(1 + a_day) + 1/m1 + 1/m2`. Pooled over all
/// adjacent pairs (weighted by their precision, residuals clipped as in [`estimate_alpha`])
/// this overestimates `a_hour` slightly (by `1 + a_day`, by the medians' own error and by the
/// pairs that straddle midnight), which errs towards fewer pages. It is shrunk towards half
/// the total and kept within [`hour_alpha_floor`, total].
///
/// [`hour_alpha_floor`]: BaselineConfig::hour_alpha_floor
pub fn estimate_alpha_hour(
    f: &FlowHistory,
    now_hour: Hour,
    cfg: &BaselineConfig,
    total: f64,
) -> f64 {
    let weeks = (1..=cfg.weeks as i64)
        .filter(|k| f.full_hour(now_hour - 168 * k).is_some())
        .count();
    let (period, reps) = if weeks >= cfg.min_weeks as usize && weeks >= 2 {
        (168i64, cfg.weeks as i64)
    } else {
        (24i64, cfg.days as i64)
    };
    // Medians per hour position, `pos` hours before `now_hour` (1..=period).
    let mut medians = vec![0.0; period as usize + 1];
    let mut vals = Vec::with_capacity(reps as usize);
    for pos in 1..=period {
        vals.clear();
        for k in 0..reps {
            if let Some(v) = f.full_hour(now_hour - pos - period * k) {
                vals.push(f64::from(v));
            }
        }
        if vals.len() >= 3 {
            medians[pos as usize] = median(&mut vals).unwrap_or(0.0);
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    let d = count_noise(f);
    for k in 0..reps {
        for pos in 2..=period {
            let (m1, m2) = (medians[pos as usize], medians[pos as usize - 1]);
            if m1 <= 0.0 || m2 <= 0.0 {
                continue;
            }
            let t1 = now_hour - pos - period * k;
            let (Some(x1), Some(x2)) = (f.full_hour(t1), f.full_hour(t1 + 1)) else {
                continue;
            };
            let noise = d * (1.0 / m1 + 1.0 / m2);
            let clip = 3.0 * (2.0 * cfg.alpha_prior + noise).sqrt();
            let u = (f64::from(x1) / m1 - f64::from(x2) / m2).clamp(-clip, clip);
            let w = 1.0 / (noise * noise);
            num += w * (u * u - noise);
            den += 2.0 * w;
        }
    }
    let prior = total / 2.0;
    let raw = if den > 0.0 {
        (num / den).max(0.0)
    } else {
        prior
    };
    let w = den / (den + cfg.alpha_prior_weight);
    (w * raw + (1.0 - w) * prior).clamp(cfg.hour_alpha_floor.min(total), total)
}

/// The largest index of dispersion of a count beyond its multiplier that is believed.
pub const MAX_COUNT_NOISE: f64 = 50.0;

/// The variance of an hour's count around its intensity, per expected event: the flow's
/// index of dispersion of half-hour counts (`BurstStats::half_hour_dispersion`, 1 for events
/// that arrive one by one). The dispersions above are what is left of an hour's variance
/// once this noise is taken out. Taking out only Poisson noise, as the first version did,
/// counted a bursty flow's minute-scale clumps as hour-to-hour changes of its rate, and its
/// silences were judged as if its rate were more uncertain than it is: 60 events an hour
/// with an hour-to-hour dispersion of 0.04 read 0.047 with gamma-Poisson minutes of shape 2
/// where the same hours one by one read 0.033 (test below). The half-hour comparison is
/// made within an hour, where the hour's and the day's multipliers cancel, so it measures
/// the count noise alone (a ramp within an hour adds a little, which errs towards noise,
/// i.e. a smaller hour-to-hour dispersion: the one direction this correction can err in).
pub fn count_noise(f: &FlowHistory) -> f64 {
    f.burst().half_hour_dispersion().clamp(1.0, MAX_COUNT_NOISE)
}

/// The dispersion of a series, recomputed at most once a day (it moves slowly).
pub fn alpha_of(f: &mut FlowHistory, now_hour: Hour, cfg: &BaselineConfig) -> f64 {
    dispersion_of(f, now_hour, cfg).0
}

/// The total and the hour-to-hour dispersion of a series ([`estimate_alpha`],
/// [`estimate_alpha_hour`]), recomputed at most once a day.
pub fn dispersion_of(f: &mut FlowHistory, now_hour: Hour, cfg: &BaselineConfig) -> (f64, f64) {
    match f.alpha {
        Some((at, a)) if now_hour - at < 24 && now_hour >= at => (a, f.alpha_hour),
        _ => {
            let a = estimate_alpha(f, now_hour, cfg);
            let h = estimate_alpha_hour(f, now_hour, cfg, a);
            f.alpha = Some((now_hour, a));
            f.alpha_hour = h;
            (a, h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(hours: i64, per_hour: u32) -> FlowHistory {
        let cfg = BaselineConfig::default();
        let mut f = FlowHistory::new(0, 360, cfg.hour_capacity());
        for h in 0..hours {
            f.record_hour(h, per_hour);
        }
        f
    }

    #[test]
    fn seasonal_then_daily_then_nothing() {
        let cfg = BaselineConfig::default();
        let f = flat(24 * 2, 60);
        assert_eq!(hour_baseline(&f, 48, &cfg), None);
        let f = flat(24 * 5, 60);
        let b = hour_baseline(&f, 24 * 5, &cfg).unwrap();
        assert_eq!(b.kind, BaselineKind::Daily { days: 5 });
        assert_eq!(b.expected, 60.0);
        let f = flat(24 * 7 * 3, 60);
        let b = hour_baseline(&f, 24 * 7 * 3, &cfg).unwrap();
        assert_eq!(b.kind, BaselineKind::Seasonal { weeks: 3 });
    }

    #[test]
    fn expected_spans_hours() {
        let cfg = BaselineConfig::default();
        let f = flat(24 * 7 * 3, 60);
        let (e, _) = expected_between(&f, 504 * 60 - 30, 504 * 60 + 15, &cfg).unwrap();
        // Hour 503 is within history but its own hour position still has baselines too.
        assert!((e - 45.0).abs() < 1e-9, "{e}");
    }

    /// The rate bends towards a quieter neighbouring hour and never towards a busier one:
    /// an evening ramp falls through its hour, and the minutes before an office opens, or
    /// after it closes, keep their own hour's rate.
    #[test]
    fn a_minutes_rate_bends_only_towards_a_quieter_hour() {
        // (here, before, after, minute, rate)
        let table = [
            // Flat: the hour's own rate everywhere.
            (60.0, 60.0, 60.0, 0, 60.0),
            (60.0, 60.0, 60.0, 59, 60.0),
            // Between two busier hours: the hour's own rate everywhere.
            (60.0, 600.0, 600.0, 0, 60.0),
            (60.0, 600.0, 600.0, 59, 60.0),
            // An evening ramp: the end of the hour falls towards the quieter one after it.
            (60.0, 100.0, 20.0, 59, 60.0 - 29.5 / 60.0 * 40.0),
            // 08:59 before a 09:00 opening: not raised towards the busy 09:00 hour.
            (6.0, 6.0, 600.0, 59, 6.0),
            // 17:00 after a 17:00 closing: not raised towards the busy 16:00 hour.
            (6.0, 600.0, 6.0, 0, 6.0),
            // 16:59 before the closing: falls towards the quiet hour after it.
            (600.0, 600.0, 6.0, 59, 600.0 - 29.5 / 60.0 * 594.0),
        ];
        for (here, before, after, t, want) in table {
            let got = minute_rate(here, before, after, t);
            assert!(
                (got - want).abs() < 1e-9,
                "{here} between {before} and {after}, minute {t}: {got}, want {want}"
            );
        }
    }

    /// The closed form of the bent shape's quarters is the sum of its minutes.
    #[test]
    fn the_quarter_offsets_are_the_bent_shapes_sums() {
        for (q, &offset) in QUARTER_OFFSETS.iter().enumerate() {
            let minutes = q * QUARTER_MINUTES..(q + 1) * QUARTER_MINUTES;
            let sum: f64 = minutes
                .map(|t| ((t as f64 + 0.5 - 30.0) / 60.0).abs())
                .sum();
            assert!((sum - offset).abs() < 1e-9, "quarter {q}: {sum}");
        }
    }

    #[test]
    fn poisson_series_has_small_alpha_and_noisy_one_large() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Gamma, Poisson};
        let cfg = BaselineConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut calm = FlowHistory::new(0, 360, cfg.hour_capacity());
        let mut wild = FlowHistory::new(0, 360, cfg.hour_capacity());
        let g = Gamma::new(1.0 / 0.3, 0.3).unwrap();
        for h in 0..24 * 7 * 4 {
            let p: f64 = Poisson::new(200.0).unwrap().sample(&mut rng);
            calm.record_hour(h, p as u32);
            let mult: f64 = g.sample(&mut rng);
            let w: f64 = Poisson::new(200.0 * mult).unwrap().sample(&mut rng);
            wild.record_hour(h, w as u32);
        }
        let a_calm = estimate_alpha(&calm, 24 * 7 * 4, &cfg);
        let a_wild = estimate_alpha(&wild, 24 * 7 * 4, &cfg);
        assert!(a_calm < 0.03, "{a_calm}");
        assert!(a_wild > 0.15, "{a_wild}");
    }

    /// Four weeks of minutes at 60 an hour with a fresh hourly Gamma multiplier of
    /// dispersion 0.04, each minute's rate multiplied by its own Gamma of shape `shape`
    /// (`None`: events one by one). The hour multipliers come from their own generator, so
    /// the flows of every shape have the same hours.
    fn minutes_fed(shape: Option<f64>) -> FlowHistory {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Gamma, Poisson};
        let cfg = BaselineConfig::default();
        let mut hours = rand::rngs::StdRng::seed_from_u64(21);
        let mut minutes = rand::rngs::StdRng::seed_from_u64(22);
        let hour_gamma = Gamma::new(1.0 / 0.04, 0.04).unwrap();
        let minute_gamma = shape.map(|k| Gamma::new(k, 1.0 / k).unwrap());
        let mut f = FlowHistory::new(0, 360, cfg.hour_capacity());
        let mut mult = 1.0;
        for m in 0..28 * 1440 {
            if m % 60 == 0 {
                mult = hour_gamma.sample(&mut hours);
                f.settle_bursts(m);
            }
            let burst = minute_gamma
                .as_ref()
                .map_or(1.0, |g| g.sample(&mut minutes));
            let n: f64 = Poisson::new(mult * burst).unwrap().sample(&mut minutes);
            f.record(m, n as u32);
        }
        f
    }

    /// Minute-scale bursts are count noise, not changes of the hour's rate: the flow's own
    /// half-hour dispersion takes them out, and the hour-to-hour dispersion of bursty
    /// minutes reads what the same hours read with events one by one. Taking out only
    /// Poisson noise read 0.047 for shape 2 where the same hours one by one read 0.033.
    #[test]
    fn minute_bursts_do_not_read_as_hour_to_hour_dispersion() {
        let cfg = BaselineConfig::default();
        let now = 28 * 24;
        let read = |shape: Option<f64>| {
            let mut f = minutes_fed(shape);
            let (total, hour) = dispersion_of(&mut f, now, &cfg);
            (total, hour, count_noise(&f))
        };
        let (smooth_total, smooth_hour, smooth_noise) = read(None);
        assert!(smooth_noise < 1.15, "{smooth_noise}");
        for shape in [2.0, 1.0] {
            let (total, hour, noise) = read(Some(shape));
            // The half-hour index of dispersion of gamma-Poisson minutes: 1 + rate / shape.
            let truth = 1.0 + 1.0 / shape;
            assert!(
                (noise - truth).abs() < 0.2 * truth,
                "shape {shape}: {noise}"
            );
            assert!(
                (hour - smooth_hour).abs() < 0.01,
                "shape {shape}: hour-to-hour {hour} vs {smooth_hour} one by one"
            );
            assert!(
                (total - smooth_total).abs() < 0.01,
                "shape {shape}: total {total} vs {smooth_total} one by one"
            );
        }
        assert!((0.025..0.055).contains(&smooth_hour), "{smooth_hour}");
    }

    #[test]
    fn hour_to_hour_dispersion_separates_day_level_from_hour_level_noise() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Gamma, Poisson};
        let cfg = BaselineConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut daily = FlowHistory::new(0, 360, cfg.hour_capacity());
        let mut hourly = FlowHistory::new(0, 360, cfg.hour_capacity());
        let g = Gamma::new(1.0 / 0.12, 0.12).unwrap();
        let mut day_mult = 1.0;
        for h in 0..24 * 7 * 4 {
            if h % 24 == 0 {
                day_mult = g.sample(&mut rng);
            }
            let d: f64 = Poisson::new(300.0 * day_mult).unwrap().sample(&mut rng);
            daily.record_hour(h, d as u32);
            let m: f64 = g.sample(&mut rng);
            let x: f64 = Poisson::new(300.0 * m).unwrap().sample(&mut rng);
            hourly.record_hour(h, x as u32);
        }
        let now = 24 * 7 * 4;
        let (a_daily, a_hourly) = (
            estimate_alpha(&daily, now, &cfg),
            estimate_alpha(&hourly, now, &cfg),
        );
        let h_daily = estimate_alpha_hour(&daily, now, &cfg, a_daily);
        let h_hourly = estimate_alpha_hour(&hourly, now, &cfg, a_hourly);
        // Both have a large total dispersion; only the second is hour-to-hour.
        assert!(a_daily > 0.06 && a_hourly > 0.06, "{a_daily} {a_hourly}");
        assert!(h_daily < 0.03, "{h_daily}");
        assert!(h_hourly > 0.07, "{h_hourly}");
    }
}
