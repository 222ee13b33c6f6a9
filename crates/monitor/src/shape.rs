//! How a flow's events fall within the hours of its day, learnt from its own minutes.
//!
//! A baseline is an hour's count, and a silence is minutes: what the silence's minutes should
//! have carried depends on where the hour's events fall. An office that closes at 17:30 carries
//! the whole of its 17:00 hour's events in the first half; a silence from 17:30 on is ordinary,
//! though the hour's baseline spread evenly would expect half of them in it. No rule about
//! neighbouring hours can see a step inside an hour, so each flow learns, per UTC hour of the
//! day, the share of that hour's events in each of its four quarters, from every hour the
//! minute ring held whole (decayed with a half-life of a week). The profile the baselines give
//! (`baseline::profile_between`) is the prior: an hour's quarters are weighed against
//! it as if it were [`PRIOR_EVENTS`] events, so a slow or bursty flow, whose quarters say
//! little, keeps it.

use serde::{Deserialize, Serialize};

/// Quarters of an hour.
pub(crate) const QUARTERS: usize = 4;

/// Minutes of a quarter.
pub(crate) const QUARTER_MINUTES: usize = 60 / QUARTERS;

/// Days after which an observed hour weighs half.
const HALF_LIFE_DAYS: f64 = 7.0;

/// The weight of the baselines' own profile against the flow's quarters, in independent
/// events.
pub(crate) const PRIOR_EVENTS: f64 = 40.0;

/// Per UTC hour of the day, the decayed event counts of its four quarters (empty until the
/// first whole hour is seen).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourShapes {
    quarters: Vec<[f32; QUARTERS]>,
}

impl HourShapes {
    /// Takes in the 60 minute counts of hour `hour` (hours since the epoch).
    pub fn observe_hour(&mut self, hour: i64, minutes: &[u32; 60]) {
        if self.quarters.len() != 24 {
            self.quarters = vec![[0.0; QUARTERS]; 24];
        }
        let decay = 0.5f64.powf(1.0 / HALF_LIFE_DAYS) as f32;
        let slot = &mut self.quarters[hour.rem_euclid(24) as usize];
        for (sum, quarter) in slot.iter_mut().zip(minutes.chunks(QUARTER_MINUTES)) {
            let n: u64 = quarter.iter().map(|&c| u64::from(c)).sum();
            *sum = *sum * decay + n as f32;
        }
    }

    /// The shares of hour `hour`'s events in its quarters: the flow's own counts, divided by
    /// `noise` (the events an arrival holds: a batch of forty in one minute is one arrival,
    /// not forty), weighed against `prior` as [`PRIOR_EVENTS`] events.
    pub fn shares(&self, hour: i64, prior: [f64; QUARTERS], noise: f64) -> [f64; QUARTERS] {
        let Some(seen) = self.quarters.get(hour.rem_euclid(24) as usize) else {
            return prior;
        };
        let noise = noise.max(1.0);
        let total: f64 = seen.iter().map(|&s| f64::from(s) / noise).sum();
        let mut shares = [0.0; QUARTERS];
        for (share, (&s, p)) in shares.iter_mut().zip(seen.iter().zip(prior)) {
            *share = (f64::from(s) / noise + PRIOR_EVENTS * p) / (total + PRIOR_EVENTS);
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour_of(minutes: impl Fn(usize) -> u32) -> [u32; 60] {
        std::array::from_fn(minutes)
    }

    /// An office that closes at 17:30 is learnt within days: the 17:00 hour's second half
    /// carries almost nothing, weighed against a flat prior; an hour never seen keeps the
    /// prior; a flow with too few events, or too bursty, stays near it.
    #[test]
    fn the_quarters_of_an_hour_are_learnt_against_the_prior() {
        let flat = [0.25; QUARTERS];
        let mut busy = HourShapes::default();
        let mut slow = HourShapes::default();
        for day in 0..14 {
            let h = day * 24 + 17;
            busy.observe_hour(h, &hour_of(|m| if m < 30 { 4 } else { 0 }));
            slow.observe_hour(h, &hour_of(|m| u32::from(m < 30 && m % 20 == 0)));
        }
        let s = busy.shares(17, flat, 1.0);
        assert!(s[0] > 0.48 && s[1] > 0.48, "{s:?}");
        assert!(s[2] < 0.02 && s[3] < 0.02, "{s:?}");
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // The same hour of any day reads the same shares.
        assert_eq!(busy.shares(17 + 24 * 100, flat, 1.0), s);
        // Another hour of the day has not been seen: the prior.
        assert_eq!(busy.shares(16, flat, 1.0), flat);
        assert_eq!(HourShapes::default().shares(17, flat, 1.0), flat);
        // Two events an hour over two weeks: about 16 decayed events against 40.
        let s = slow.shares(17, flat, 1.0);
        assert!(s[2] > 0.15 && s[2] < 0.2, "{s:?}");
        // The busy flow's counts, were they bursts of index 50: near the prior.
        let s = busy.shares(17, flat, 50.0);
        assert!(s[2] > 0.12, "{s:?}");
    }
}
