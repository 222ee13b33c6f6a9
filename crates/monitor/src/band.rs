//! The expected band of a flow, hour by hour, for people to look at: the dashboard draws each
//! flow's last 24 hours against it, so "is this normal?" is answered by the same baseline the
//! rules use, not by a second opinion.
//!
//! Pure: the monitor hands its histories in ([`crate::Monitor::flow_bands`], which answers a
//! [`crate::FlowBand`] per flow); nothing here reads a clock or a store.

use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::baseline::{hour_baseline, BaselineConfig};
use crate::history::{FlowHistory, Hour};
use crate::stats::NegBinomial;

/// What the baseline expected of one hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedHour {
    /// The start of the hour.
    pub at: Timestamp,
    /// The expected count of the whole hour (the median of the comparable hours).
    pub expected: f64,
}

/// The expectations of the `hours` hours ending with the one `now_hour` is in, for one series.
pub(crate) fn expected_hours(
    f: &FlowHistory,
    now_hour: Hour,
    hours: i64,
    cfg: &BaselineConfig,
) -> Vec<ExpectedHour> {
    (now_hour - hours + 1..=now_hour)
        .filter_map(|h| {
            hour_baseline(f, h, cfg).map(|b| ExpectedHour {
                at: Timestamp(h * 3_600_000),
                expected: b.expected,
            })
        })
        .collect()
}

/// The band a count of mean `expected` normally falls in: two standard deviations of the
/// negative binomial model with dispersion `alpha` on each side, never below zero. About 95 %
/// of ordinary windows fall inside it; it is drawn for people, the rules decide with their own
/// tails.
pub fn band(expected: f64, alpha: f64) -> (f64, f64) {
    let sd = NegBinomial {
        mean: expected.max(0.0),
        alpha: alpha.max(0.0),
    }
    .sd();
    ((expected - 2.0 * sd).max(0.0), expected + 2.0 * sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_widens_with_dispersion_and_stops_at_zero() {
        let cases = [
            // expected, alpha, low, high
            (100.0, 0.0, 80.0, 120.0),
            (
                100.0,
                0.01,
                100.0 - 2.0 * 200f64.sqrt(),
                100.0 + 2.0 * 200f64.sqrt(),
            ),
            (1.0, 0.0, 0.0, 3.0),
            (0.0, 0.5, 0.0, 0.0),
        ];
        for (expected, alpha, low, high) in cases {
            let (l, h) = band(expected, alpha);
            assert!(
                (l - low).abs() < 1e-9,
                "{expected} {alpha}: low {l} != {low}"
            );
            assert!(
                (h - high).abs() < 1e-9,
                "{expected} {alpha}: high {h} != {high}"
            );
        }
    }

    #[test]
    fn hours_without_a_baseline_are_left_out() {
        let cfg = BaselineConfig::default();
        // Three days of 60 events an hour, then the band is asked for the fourth day.
        let mut f = FlowHistory::new(0, 360, cfg.hour_capacity());
        for h in 0..72 {
            f.record_hour(h, 60);
        }
        let got = expected_hours(&f, 80, 24, &cfg);
        // Hours 57..=80: a daily baseline needs min_days (3) earlier days of the same hour,
        // which hours 72..=80 have (and 57..=71 do not: only two earlier days each).
        assert_eq!(got.len(), 9);
        assert_eq!(got[0].at, Timestamp(72 * 3_600_000));
        assert!(got.iter().all(|e| e.expected == 60.0));
    }
}
