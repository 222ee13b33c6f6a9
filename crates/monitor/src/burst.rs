//! Minute-scale bursts: how a flow's events clump within minutes and half hours.
//!
//! Hourly counts hide how events arrive inside the hour. Real webhook traffic is bursty at the
//! minute scale: a macro fires fifty webhooks in one minute, mail is fetched in batches every
//! few minutes, a system of record flushes its queue at once. A flow that averages 4 events a
//! minute can then have several empty minutes in a row many times a week, which a Poisson
//! model calls impossible. This module learns, per flow, how often its minutes are empty
//! compared with what its rate would give if events arrived one by one, and how much its
//! half-hour counts vary within an hour.
//!
//! **Empty minutes.** For every completed hour that carried at least [`MIN_EVENTS`] events,
//! the empty minutes are counted and compared with what each candidate model predicts at that
//! hour's own mean rate `λ` (so the hour's and the day's multipliers play no part): a
//! gamma-Poisson minute count with burst dispersion `b` (`1/shape`; `P(0) = (1 + λb)^(-1/b)`)
//! and a compound Poisson process whose clumps have an effective size `c`
//! (`P(0) = exp(-λ/c)`). Each model's one parameter is the value whose predicted empty
//! minutes match the observed ones. The first fits gamma-distributed minute rates exactly,
//! the second batches of events that arrive together; at a silence, the model that finds the
//! silence *less* remarkable is used, so neither kind of burst is mistaken for an outage.
//! Rate changes within an hour (a morning ramp) add empty minutes too, which makes both
//! estimates err towards bursts, i.e. towards fewer pages.
//!
//! **Half hours.** The two halves of such an hour have the same hourly and daily multiplier,
//! so `E[(x₁ − x₂)²] = Var(x₁) + Var(x₂)`: the ratio `Σ(x₁ − x₂)² / Σ(x₁ + x₂)` is the index
//! of dispersion of a half-hour count beyond Poisson (1 for events that arrive one by one),
//! which `inbound_drop` uses to widen its window's variance.
//!
//! Both are exponentially weighted (a half-life of about two weeks) and start from a weak
//! prior of moderate burstiness, so a new flow is not judged as if it were Poisson.

use serde::{Deserialize, Serialize};

/// Hours with fewer events than this say too little about empty minutes and are not used.
pub const MIN_EVENTS: u32 = 10;

/// Candidate burst dispersions `b` (the inverse of the gamma shape), most bursty first; the
/// last is Poisson.
const DISPERSIONS: [f64; 9] = [4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.0];

/// Candidate effective clump sizes `c`, smallest (Poisson) first.
const CLUMPS: [f64; 9] = [1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0];

/// Per hour observed, the weight of what was observed before is multiplied by this: a
/// half-life of about 14 days.
const DECAY_PER_HOUR: f64 = 0.997_94;

/// The prior: as if this many busy hours had been seen…
const PRIOR_HOURS: f64 = 2.0;
/// …at this rate per minute…
const PRIOR_RATE: f64 = 1.5;
/// …with minute counts of this burst dispersion (gamma shape 2).
const PRIOR_DISPERSION: f64 = 0.5;
/// The half-hour prior: this many events at an index of dispersion of 1.
const PRIOR_HALF_EVENTS: f64 = 200.0;

/// Gaps between minutes with events are kept in bins of 1 to `GAP_BINS` minutes; longer ones
/// share one more bin.
const GAP_BINS: usize = 30;

/// A flow is periodic when at least this share of its gaps (weighted) falls within
/// [`PERIOD_WIDTH`] neighbouring bins of at least 2 minutes, or their double or triple…
const PERIOD_SHARE: f64 = 0.9;
/// …bins this wide (a fetch every 5 minutes, give or take one, fills 4, 5 and 6)…
const PERIOD_WIDTH: usize = 3;
/// …once this many gaps (weighted) were seen.
const PERIOD_MIN_GAPS: f64 = 200.0;

/// What a flow's minutes said about its bursts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstStats {
    /// Empty minutes seen in the hours observed (weighted).
    zeros: f64,
    /// Empty minutes each candidate dispersion predicts for those hours.
    by_dispersion: [f64; 9],
    /// Empty minutes each candidate clump size predicts for those hours.
    by_clump: [f64; 9],
    /// `Σ(x₁ − x₂)²` and `Σ(x₁ + x₂)` over the halves of those hours.
    half_sq: f64,
    half_sum: f64,
    /// The last hour observed.
    last_hour: Option<i64>,
    /// Hours observed (weighted), prior excluded.
    hours: f64,
}

impl Default for BurstStats {
    fn default() -> Self {
        Self::new()
    }
}

/// `P(no event in a minute)` under a gamma-Poisson count of mean `rate` and dispersion `b`.
fn p0_gamma(rate: f64, b: f64) -> f64 {
    if b <= 0.0 {
        (-rate).exp()
    } else {
        (-(rate * b).ln_1p() / b).exp()
    }
}

impl BurstStats {
    /// The prior alone.
    pub fn new() -> Self {
        let prior_p0 = p0_gamma(PRIOR_RATE, PRIOR_DISPERSION);
        let minutes = 60.0 * PRIOR_HOURS;
        BurstStats {
            zeros: minutes * prior_p0,
            by_dispersion: DISPERSIONS.map(|b| minutes * p0_gamma(PRIOR_RATE, b)),
            by_clump: CLUMPS.map(|c| minutes * (-PRIOR_RATE / c).exp()),
            half_sq: PRIOR_HALF_EVENTS,
            half_sum: PRIOR_HALF_EVENTS,
            last_hour: None,
            hours: 0.0,
        }
    }

    /// Takes in the 60 minute counts of hour `hour` (oldest first). Hours with fewer than
    /// [`MIN_EVENTS`] events are skipped.
    pub fn observe_hour(&mut self, hour: i64, minutes: &[u32; 60]) {
        let Some((n, decay)) = busy_hour(&mut self.last_hour, hour, minutes) else {
            return;
        };
        let rate = n as f64 / 60.0;
        let empty = minutes.iter().filter(|&&x| x == 0).count() as f64;
        self.zeros = self.zeros * decay + empty;
        for (v, b) in self.by_dispersion.iter_mut().zip(DISPERSIONS) {
            *v = *v * decay + 60.0 * p0_gamma(rate, b);
        }
        for (v, c) in self.by_clump.iter_mut().zip(CLUMPS) {
            *v = *v * decay + 60.0 * (-rate / c).exp();
        }
        let x1: u64 = minutes[..30].iter().map(|&x| u64::from(x)).sum();
        let d = x1 as f64 - (n - x1) as f64;
        self.half_sq = self.half_sq * decay + d * d;
        self.half_sum = self.half_sum * decay + n as f64;
        self.hours = self.hours * decay + 1.0;
    }

    /// Busy hours observed (weighted by age), the prior not counted.
    pub fn hours(&self) -> f64 {
        self.hours
    }

    /// The burst dispersion `b` (the inverse of the gamma shape of minute counts) whose
    /// predicted empty minutes match the observed ones; 0 is Poisson.
    pub fn dispersion(&self) -> f64 {
        // Predictions fall as `b` falls (index order); interpolate linearly in `b`.
        fit(&self.by_dispersion, &DISPERSIONS, self.zeros)
    }

    /// The effective clump size `c` whose predicted empty minutes match the observed ones.
    pub fn clump(&self) -> f64 {
        // Predictions rise with `c`; reversed, they fall like the dispersions'.
        let mut pred = self.by_clump;
        pred.reverse();
        let mut values = CLUMPS;
        values.reverse();
        fit(&pred, &values, self.zeros)
    }

    /// The hazard of a silence at `rate` events per minute: `-ln P(no event in a minute)`,
    /// the smaller of the two burst models'. At most `rate` (Poisson).
    pub fn hazard(&self, rate: f64) -> f64 {
        if rate <= 0.0 {
            return 0.0;
        }
        let b = self.dispersion();
        let gamma = if b <= 0.0 {
            rate
        } else {
            (rate * b).ln_1p() / b
        };
        let clump = rate / self.clump().max(1.0);
        gamma.min(clump).min(rate)
    }

    /// `hazard(rate) / rate`: by how much bursts shrink the evidence of a silence at `rate`
    /// (1 for events that arrive one by one).
    pub fn factor(&self, rate: f64) -> f64 {
        if rate <= 0.0 {
            1.0
        } else {
            (self.hazard(rate) / rate).clamp(1e-3, 1.0)
        }
    }

    /// The index of dispersion of a half-hour count beyond Poisson (at least 1).
    pub fn half_hour_dispersion(&self) -> f64 {
        (self.half_sq / self.half_sum.max(1.0)).max(1.0)
    }
}

/// A polled flow's fetch period, read from its gaps ([`GapLengths::period`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// The shortest and longest gap, in minutes, between two fetches that brought events.
    pub shortest: i64,
    pub longest: i64,
    /// The share of fetches that came back empty (the gaps of two or three periods): at a
    /// geometric rate, the chance that the next fetch brings nothing.
    pub empty: f64,
}

/// The lengths of the gaps between consecutive minutes with events inside a flow's busy
/// hours (the same hours as [`BurstStats`], weighted the same way), from which a polled
/// flow's fetch period is read. Kept apart from [`BurstStats`], which every silence's
/// verdict copies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapLengths {
    /// Index `g - 1` for a gap of `g` minutes, the last for longer ones.
    gaps: [f64; GAP_BINS + 1],
    /// The last hour observed.
    last_hour: Option<i64>,
}

impl GapLengths {
    /// Takes in the 60 minute counts of hour `hour` (oldest first). Hours with fewer than
    /// [`MIN_EVENTS`] events are skipped.
    pub fn observe_hour(&mut self, hour: i64, minutes: &[u32; 60]) {
        let Some((_, decay)) = busy_hour(&mut self.last_hour, hour, minutes) else {
            return;
        };
        for g in self.gaps.iter_mut() {
            *g *= decay;
        }
        let mut previous: Option<usize> = None;
        for (i, &x) in minutes.iter().enumerate() {
            if x == 0 {
                continue;
            }
            if let Some(p) = previous {
                self.gaps[(i - p).min(GAP_BINS + 1) - 1] += 1.0;
            }
            previous = Some(i);
        }
    }

    /// The flow's fetch period, when its events arrive at regular intervals (a mailbox
    /// polled every few minutes). The candidate is the range of gap lengths [`PERIOD_WIDTH`]
    /// minutes wide, from 2 minutes on, that holds the most gaps; it is the period when it
    /// holds at least half of them and, with its double and triple (the gaps of fetches that
    /// came back empty), at least [`PERIOD_SHARE`]. `None` for events that arrive one by one,
    /// in gamma-Poisson minutes or in batches, whose gaps spread geometrically from one
    /// minute on, and before [`PERIOD_MIN_GAPS`] gaps were seen.
    pub fn period(&self) -> Option<Period> {
        let total: f64 = self.gaps.iter().sum();
        if total < PERIOD_MIN_GAPS {
            return None;
        }
        let window = |lo: usize| -> f64 { self.gaps[lo..lo + PERIOD_WIDTH].iter().sum() };
        // The fullest window (the first of equals), not the first that would do: a fetch
        // every 5 ± 1 minutes fills 4–6, and 3–5 holds two thirds of it too.
        let lo = (1..GAP_BINS + 1 - PERIOD_WIDTH)
            .rev()
            .max_by(|&a, &b| window(a).total_cmp(&window(b)))?;
        let (base, held) = (window(lo), self.held_by_multiples(lo));
        (base >= 0.5 * total && held >= PERIOD_SHARE * total).then(|| Period {
            shortest: lo as i64 + 1,
            longest: (lo + PERIOD_WIDTH) as i64,
            empty: (held - base) / held,
        })
    }

    /// The gaps whose length falls within the window of bins `lo..lo + PERIOD_WIDTH` or its
    /// double or triple (lengths `m·(lo + 1)` to `m·(lo + PERIOD_WIDTH)`), each counted once.
    fn held_by_multiples(&self, lo: usize) -> f64 {
        (0..GAP_BINS)
            .filter(|&i| {
                let g = i + 1;
                (1..=3).any(|m| (m * (lo + 1)..=m * (lo + PERIOD_WIDTH)).contains(&g))
            })
            .map(|i| self.gaps[i])
            .sum()
    }
}

/// For an hour of minute counts: its events and the factor by which what was observed
/// before it weighs less (the hours since `last_hour`, which becomes `hour`); `None` for an
/// hour with fewer than [`MIN_EVENTS`] events, which is skipped.
fn busy_hour(last_hour: &mut Option<i64>, hour: i64, minutes: &[u32; 60]) -> Option<(u64, f64)> {
    let n: u64 = minutes.iter().map(|&x| u64::from(x)).sum();
    if n < u64::from(MIN_EVENTS) {
        return None;
    }
    let decay = match *last_hour {
        Some(h) if hour > h => DECAY_PER_HOUR.powf((hour - h) as f64),
        _ => 1.0,
    };
    *last_hour = Some(hour.max(last_hour.unwrap_or(hour)));
    Some((n, decay))
}

/// The parameter among `values` (whose predictions `pred` fall with the index) at which the
/// prediction equals `observed`, interpolated linearly between neighbours and clamped to the
/// ends.
fn fit(pred: &[f64; 9], values: &[f64; 9], observed: f64) -> f64 {
    if observed >= pred[0] {
        return values[0];
    }
    for i in 0..pred.len() - 1 {
        let (hi, lo) = (pred[i], pred[i + 1]);
        if observed >= lo {
            let t = if hi > lo {
                (hi - observed) / (hi - lo)
            } else {
                0.0
            };
            return values[i] + t * (values[i + 1] - values[i]);
        }
    }
    values[values.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Gamma, Poisson};

    /// Feeds `hours` hours of minutes drawn by `draw(rng, minute)`.
    fn learn(hours: i64, mut draw: impl FnMut(&mut StdRng, usize) -> u32) -> BurstStats {
        let mut rng = StdRng::seed_from_u64(5);
        let mut s = BurstStats::new();
        for h in 0..hours {
            let mut minutes = [0u32; 60];
            for (i, m) in minutes.iter_mut().enumerate() {
                *m = draw(&mut rng, i);
            }
            s.observe_hour(h, &minutes);
        }
        s
    }

    /// The gap lengths of `hours` hours of minutes drawn by `draw(rng, minute)`.
    fn gaps(hours: i64, mut draw: impl FnMut(&mut StdRng, usize) -> u32) -> GapLengths {
        let mut rng = StdRng::seed_from_u64(5);
        let mut g = GapLengths::default();
        for h in 0..hours {
            let mut minutes = [0u32; 60];
            for (i, m) in minutes.iter_mut().enumerate() {
                *m = draw(&mut rng, i);
            }
            g.observe_hour(h, &minutes);
        }
        g
    }

    fn poisson(rng: &mut StdRng, rate: f64) -> u32 {
        if rate <= 0.0 {
            0
        } else {
            Poisson::new(rate).map_or(0.0, |p| p.sample(rng)) as u32
        }
    }

    #[test]
    fn poisson_minutes_are_learnt_as_poisson() {
        let s = learn(300, |rng, _| poisson(rng, 2.0));
        assert!(s.dispersion() < 0.08, "{}", s.dispersion());
        assert!(s.clump() < 1.1, "{}", s.clump());
        assert!(s.factor(2.0) > 0.9, "{}", s.factor(2.0));
        assert!(
            s.half_hour_dispersion() < 1.2,
            "{}",
            s.half_hour_dispersion()
        );
    }

    #[test]
    fn gamma_poisson_minutes_of_shape_two_are_learnt() {
        let g = Gamma::new(2.0, 0.5).unwrap();
        let s = learn(300, |rng, _| {
            let m: f64 = g.sample(rng);
            poisson(rng, 3.0 * m)
        });
        let b = s.dispersion();
        assert!((0.4..0.65).contains(&b), "{b}");
        // The silence hazard is the true one: P(0) = (1 + 3/2)^-2 per minute.
        let truth = 2.0 * (1.0f64 + 1.5).ln();
        assert!(
            (s.hazard(3.0) - truth).abs() < 0.12 * truth,
            "{}",
            s.hazard(3.0)
        );
        // Half-hour counts vary beyond Poisson: by 1 + λb = 2.5 in expectation.
        let d = s.half_hour_dispersion();
        assert!((2.0..3.0).contains(&d), "{d}");
    }

    #[test]
    fn batches_are_learnt_as_clumps_not_as_silence() {
        // 1 event a minute one by one, plus a batch of 5–50 every 30 minutes on average.
        let s = learn(300, |rng, _| {
            let base = poisson(rng, 1.0);
            let batch = if poisson(rng, 1.0 / 30.0) > 0 {
                5 + (poisson(rng, 22.0)).min(45)
            } else {
                0
            };
            base + batch
        });
        // Empty minutes are those of the 1/min part: P(0) ≈ e^-1.03 at a mean of ~1.9/min.
        let truth = 1.0 + 1.0 / 30.0;
        let h = s.hazard(1.9);
        assert!((h - truth).abs() < 0.15 * truth, "{h} vs {truth}");
        assert!(s.clump() > 1.5, "{}", s.clump());
    }

    #[test]
    fn polling_every_five_minutes_makes_silences_unremarkable() {
        let s = learn(300, |rng, i| if i % 5 == 0 { poisson(rng, 7.5) } else { 0 });
        // Four empty minutes in five: a minute says almost nothing.
        assert!(s.factor(1.5) < 0.2, "{}", s.factor(1.5));
    }

    /// Only regular fetches have a period: a poller every 5 minutes, give or take one, and
    /// one every 9; not events one by one (busy or sparse), gamma-Poisson minutes, batches,
    /// nor a poller seen for too few hours.
    #[test]
    fn a_period_is_found_in_regular_fetches_only() {
        let g = Gamma::new(1.0, 1.0).unwrap();
        let jittered = |hours| {
            let mut next = 0usize;
            gaps(hours, move |rng, i| {
                if i == 0 {
                    next = rng.random_range(0..5);
                }
                if i == next {
                    next = i + 4 + rng.random_range(0..=2usize);
                    poisson(rng, 10.0)
                } else {
                    0
                }
            })
        };
        let quarter_empty = gaps(100, |rng, i| {
            if i % 7 == 2 && rng.random_range(0..4) > 0 {
                poisson(rng, 10.0)
            } else {
                0
            }
        });
        // (traffic, its gap lengths, the period found)
        let table = [
            ("poller every 5 ± 1", jittered(100), Some((4, 6))),
            (
                "poller every 9",
                gaps(
                    100,
                    |rng, i| if i % 9 == 3 { poisson(rng, 12.0) } else { 0 },
                ),
                Some((7, 9)),
            ),
            (
                "poller every 20",
                gaps(
                    300,
                    |rng, i| if i % 20 == 7 { poisson(rng, 30.0) } else { 0 },
                ),
                Some((18, 20)),
            ),
            (
                "poller every 7, one fetch in four empty",
                quarter_empty.clone(),
                Some((5, 7)),
            ),
            ("poller, 3 hours", jittered(3), None),
            (
                "one by one, 2/min",
                gaps(100, |rng, _| poisson(rng, 2.0)),
                None,
            ),
            (
                "one by one, 0.3/min",
                gaps(100, |rng, _| poisson(rng, 0.3)),
                None,
            ),
            (
                "gamma-Poisson shape 1",
                gaps(100, |rng, _| {
                    let m: f64 = g.sample(rng);
                    poisson(rng, 1.5 * m)
                }),
                None,
            ),
            (
                "batches",
                gaps(100, |rng, _| {
                    let batch = poisson(rng, 1.0 / 6.0) * 20;
                    poisson(rng, 0.2) + batch
                }),
                None,
            ),
        ];
        for (what, stats, want) in table {
            let got = stats.period().map(|p| (p.shortest, p.longest));
            assert_eq!(got, want, "{what}");
        }
        // The share of empty fetches is read from the doubles and triples.
        let empty = quarter_empty.period().map_or(0.0, |p| p.empty);
        assert!((0.2..0.3).contains(&empty), "{empty}");
    }

    #[test]
    fn quiet_hours_teach_nothing_and_the_prior_holds() {
        let s = learn(300, |rng, _| poisson(rng, 0.05));
        assert_eq!(s.hours(), 0.0);
        assert_eq!(s, BurstStats::new());
        let b = s.dispersion();
        assert!((b - PRIOR_DISPERSION).abs() < 1e-9, "{b}");
    }

    #[test]
    fn fit_clamps_and_interpolates() {
        let pred = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0];
        let vals = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0];
        assert_eq!(fit(&pred, &vals, 10.0), 8.0);
        assert_eq!(fit(&pred, &vals, 0.5), 0.0);
        assert!((fit(&pred, &vals, 6.5) - 5.5).abs() < 1e-12);
    }
}
