//! Whether a flow's level carries over the hour boundary, learnt from the flow's own hours.
//!
//! `inbound_stopped` judges a silence that began early in an hour by what it knows of that
//! hour's level before the silence: a few minutes, and a prior. The prior is the level the
//! flow ran at over the hours before (the day multiplier), with a fresh hour-to-hour
//! multiplier, because traffic *can* change level at an hour boundary — and in the synthetic
//! generator's first traffic it does, every hour, independently. Real traffic mostly does not
//! jump at :00: a busy spell or a quiet afternoon runs across the boundary, and the half hour
//! before :00 says more about the half hour after it than the three hours before do.
//!
//! Which of the two a flow does is not assumed; it is measured. For every hour whose first half
//! has completed (with at least [`MIN_HALF_EXPECTED`] events expected in it and in the half
//! hour before it), two predictions of the first half's count `X` are compared with what came:
//!
//! * **carried**: the half hour before :00, `T` events where its baseline expected `B_t`,
//!   scaled to the first half's baseline `B_f`: `P_c = T·B_f/B_t`;
//!   The same from the whole hour before :00 (`P_h`, 60 minutes: less count noise, older);
//! * **day level**: the three hours before :00, `C` events where `E` were expected:
//!   `P_d = C·B_f/E`.
//!
//! Each squared error, less its count noise (`d·X` for `X`, `d·T·(B_f/B_t)²` for `P_c`,
//! `d·C·(B_f/E)²` for `P_d`, `d` the flow's half-hour index of dispersion), summed over the
//! hours and divided by `Σ P_d²`, is that predictor's relative error variance: how far the
//! hour's level strays from it. The level is *carried* only when the carried prediction's
//! variance is below [`CARRY_RATIO`] times the day level's, over at least [`MIN_HOURS`]
//! hours. Where hour levels are drawn afresh every hour the carried prediction is 1.3 to 1.8
//! times *worse* (it has one hour's jump, not a third of one, and more count noise); where
//! the log level is AR(1) across hours with a correlation of 0.75–0.95 it is 0.6 to 0.9 times
//! the day level's (test `the_level_carries_where_hours_persist_and_only_there`): the three
//! hours before already follow a persistent level, with less count noise, so the gain is a
//! sharper mean more than a smaller variance. The choice cannot make the verdict
//! overconfident: the carried variance is the prior variance of the hour's level around the
//! carried level, measured on the flow's own hours, not modelled.
//!
//! Exponentially weighted with the burst statistics' half-life (about 14 days).

use serde::{Deserialize, Serialize};

/// Each half hour compared must expect at least this many events.
pub const MIN_HALF_EXPECTED: f64 = 5.0;

/// Weighted hours needed before the level can be carried.
pub const MIN_HOURS: f64 = 48.0;

/// The carried prediction must have at most this share of the day level's error variance.
pub const CARRY_RATIO: f64 = 0.95;

/// The smallest relative variance either prediction is taken to have.
const VARIANCE_FLOOR: f64 = 0.005;

/// Per hour observed, the weight of what came before is multiplied by this (about 14 days).
const DECAY_PER_HOUR: f64 = 0.997_94;

/// One hour's comparison, in counts and baseline expectations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarryObservation {
    /// Events in the hour's first half (`X`) and its baseline (`B_f`).
    pub first: f64,
    pub first_expected: f64,
    /// Events in the half hour before :00 (`T`) and its baseline (`B_t`).
    pub tail: f64,
    pub tail_expected: f64,
    /// Events in the hour before :00 and its baseline: the same prediction from 60 minutes.
    pub hour_tail: f64,
    pub hour_tail_expected: f64,
    /// Events in the three hours before :00 (`C`) and their baseline (`E`).
    pub before: f64,
    pub before_expected: f64,
    /// The flow's half-hour index of dispersion (1 for events one by one).
    pub noise: f64,
}

/// What a flow's hours said about carrying its level over the hour boundary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CarryStats {
    /// `Σ` squared error of the carried prediction, less its count noise.
    carried: f64,
    /// The same for the prediction carried from the whole hour before :00.
    #[serde(default)]
    carried_hour: f64,
    /// `Σ` squared error of the day-level prediction, less its count noise.
    day: f64,
    /// `Σ P_d²`: the scale both are relative to.
    scale: f64,
    /// Hours observed (weighted).
    hours: f64,
    /// The last hour observed.
    last_hour: Option<i64>,
}

/// The verdict of [`CarryStats::verdict`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarryVerdict {
    /// The carried prediction's relative error variance (from the half hour before :00).
    pub carried: f64,
    /// The same from the hour before :00.
    pub carried_hour: f64,
    /// The day-level prediction's.
    pub day: f64,
    /// Hours it was learnt from (weighted).
    pub hours: f64,
    /// Whether the level carries over the boundary.
    pub carries: bool,
}

impl CarryStats {
    /// Takes in hour `hour`'s comparison. Hours whose half hours expect too little are
    /// skipped (their count noise would drown the level).
    pub fn observe(&mut self, hour: i64, o: &CarryObservation) {
        if o.first_expected < MIN_HALF_EXPECTED
            || o.tail_expected < MIN_HALF_EXPECTED
            || o.before_expected < MIN_HALF_EXPECTED
        {
            return;
        }
        let decay = match self.last_hour {
            Some(h) if hour > h => DECAY_PER_HOUR.powf((hour - h) as f64),
            Some(_) => return,
            None => 1.0,
        };
        self.last_hour = Some(hour);
        let d = o.noise.max(1.0);
        let r_tail = o.first_expected / o.tail_expected;
        let r_day = o.first_expected / o.before_expected;
        let p_carried = o.tail * r_tail;
        let p_day = o.before * r_day;
        let e_carried = (o.first - p_carried).powi(2) - d * o.first - d * o.tail * r_tail * r_tail;
        let r_hour = o.first_expected / o.hour_tail_expected.max(MIN_HALF_EXPECTED);
        let p_hour = o.hour_tail * r_hour;
        let e_hour = (o.first - p_hour).powi(2) - d * o.first - d * o.hour_tail * r_hour * r_hour;
        self.carried_hour = self.carried_hour * decay + e_hour;
        let e_day = (o.first - p_day).powi(2) - d * o.first - d * o.before * r_day * r_day;
        self.carried = self.carried * decay + e_carried;
        self.day = self.day * decay + e_day;
        self.scale = self.scale * decay + p_day * p_day;
        self.hours = self.hours * decay + 1.0;
    }

    /// The two predictions' relative error variances and whether the level carries.
    pub fn verdict(&self) -> CarryVerdict {
        let scale = self.scale.max(1e-9);
        let carried = (self.carried / scale).max(VARIANCE_FLOOR);
        let carried_hour = (self.carried_hour / scale).max(VARIANCE_FLOOR);
        let day = (self.day / scale).max(VARIANCE_FLOOR);
        CarryVerdict {
            carried,
            carried_hour,
            day,
            hours: self.hours,
            carries: self.hours >= MIN_HOURS && carried.min(carried_hour) < CARRY_RATIO * day,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Poisson, StandardNormal};

    fn poisson(rng: &mut StdRng, mean: f64) -> f64 {
        Poisson::new(mean.max(1e-9)).map_or(0.0, |p| p.sample(rng))
    }

    /// `hours` hours of a flow at `rate` events a half hour (flat baseline), whose log level
    /// is AR(1) across hours with correlation `rho` and stationary variance `var`, on top of
    /// a day level redrawn every 24 hours.
    fn learn(hours: i64, rate: f64, rho: f64, var: f64) -> CarryStats {
        let mut rng = StdRng::seed_from_u64(13);
        let mut s = CarryStats::default();
        let mut level = 0.0f64;
        let mut day = 1.0f64;
        let mut levels: Vec<f64> = Vec::new();
        for h in 0..hours {
            if h % 24 == 0 {
                let z: f64 = StandardNormal.sample(&mut rng);
                day = (0.15 * z - 0.01).exp();
            }
            let z: f64 = StandardNormal.sample(&mut rng);
            level = rho * level + (1.0 - rho * rho).sqrt() * var.sqrt() * z;
            levels.push(day * (level - var / 2.0).exp());
            let n = levels.len();
            if n < 4 {
                continue;
            }
            let now = levels[n - 1];
            let before: f64 = levels[n - 4..n - 1]
                .iter()
                .map(|l| poisson(&mut rng, 2.0 * rate * l))
                .sum();
            let tail = poisson(&mut rng, rate * levels[n - 2]);
            let hour_tail = tail + poisson(&mut rng, rate * levels[n - 2]);
            let first = poisson(&mut rng, rate * now);
            s.observe(
                h,
                &CarryObservation {
                    first,
                    first_expected: rate,
                    tail,
                    tail_expected: rate,
                    hour_tail,
                    hour_tail_expected: 2.0 * rate,
                    before,
                    before_expected: 6.0 * rate,
                    noise: 1.0,
                },
            );
        }
        s
    }

    /// The level carries where hours persist and not where each hour is drawn afresh, at
    /// the volumes of the detection targets (90/h: 45 a half hour) and above.
    #[test]
    fn the_level_carries_where_hours_persist_and_only_there() {
        let cases = [
            // (rate a half hour, correlation, variance, carries)
            (45.0, 0.0, 0.05, false),
            (45.0, 0.0, 0.15, false),
            (300.0, 0.0, 0.05, false),
            (45.0, 0.9, 0.1, true),
            (300.0, 0.85, 0.05, true),
            (300.0, 0.95, 0.1, true),
            (45.0, 0.75, 0.05, true),
            (45.0, 0.85, 0.05, true),
            (45.0, 0.0, 0.02, false),
            (300.0, 0.0, 0.15, false),
        ];
        for (rate, rho, var, carries) in cases {
            let v = learn(24 * 14, rate, rho, var).verdict();
            assert_eq!(v.carries, carries, "{rate} {rho} {var}: {v:?}");
        }
    }

    #[test]
    fn too_few_hours_or_too_little_volume_carry_nothing() {
        let v = learn(40, 300.0, 0.95, 0.1).verdict();
        assert!(!v.carries, "{v:?}");
        // 4 events a half hour: every hour skipped.
        let s = learn(24 * 14, 4.0, 0.95, 0.1);
        assert_eq!(s, CarryStats::default());
    }

    #[test]
    fn an_hour_seen_twice_or_out_of_order_counts_once() {
        let o = CarryObservation {
            first: 50.0,
            first_expected: 45.0,
            tail: 40.0,
            tail_expected: 45.0,
            hour_tail: 80.0,
            hour_tail_expected: 90.0,
            before: 270.0,
            before_expected: 270.0,
            noise: 1.0,
        };
        let mut s = CarryStats::default();
        s.observe(10, &o);
        let once = s.clone();
        s.observe(10, &o);
        s.observe(9, &o);
        assert_eq!(s, once);
    }

    /// Monitor state stored before the carry statistics existed (no `carry` and
    /// `carry_through` fields) still loads, with nothing learnt: the level is not carried
    /// until the flow has shown again that it carries.
    #[test]
    fn flow_state_stored_before_the_field_existed_loads_empty() {
        let f = crate::history::FlowHistory::new(0, 360, 24 * 30);
        let mut json = serde_json::to_value(&f).expect("serialises");
        let map = json.as_object_mut().expect("an object");
        assert!(map.remove("carry").is_some());
        assert!(map.remove("carry_through").is_some());
        let back: crate::history::FlowHistory = serde_json::from_value(json).expect("loads");
        assert_eq!(back.carry(), &CarryStats::default());
        assert!(!back.carry().verdict().carries);
    }
}
