//! `[reconcile]`: the periodic comparison of each source's system of record (through its API)
//! with what intake received, which raises `source_gap`. Only sources with `api` credentials
//! are reconciled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{lenient, Dur};

/// `[reconcile]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Whether the `reconcile` duty runs. Off, `source_gap` cannot fire: no other rule sees a
    /// system of record that silently stopped sending at a low volume.
    #[serde(deserialize_with = "lenient::boolean")]
    pub enabled: bool,
    /// How often a window is checked, and how long each window is.
    pub interval: Dur,
    /// How long before now the checked window ends, so that webhooks that are merely slow are
    /// not taken for missing ones.
    pub lag: Dur,
    /// Whether a gap found starts a backfill job of its window by itself.
    #[serde(deserialize_with = "lenient::boolean")]
    pub auto_backfill: bool,
    /// The share of each source's `api.rate_limit_per_minute` reconciliation may use
    /// (0 < share ≤ 1), so it never starves a recovery of the same API.
    #[serde(deserialize_with = "lenient::fraction")]
    pub budget_share: f64,
    /// How many missing keys a check and a gap list (the rest are counted).
    #[serde(deserialize_with = "lenient::count")]
    pub sample: usize,
}

/// The most items a check may list (`reconcile.sample`).
pub const MAX_RECONCILE_SAMPLE: usize = 1000;

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            enabled: true,
            interval: Dur::secs(10 * 60),
            lag: Dur::secs(15 * 60),
            auto_backfill: false,
            budget_share: 0.2,
            sample: 10,
        }
    }
}

impl ReconcileConfig {
    /// The requests per minute reconciliation allows itself against an API whose budget is
    /// `per_minute`: `budget_share` of it, rounded down, at least one.
    pub fn requests_per_minute(&self, per_minute: u32) -> u32 {
        let share = (f64::from(per_minute) * self.budget_share).floor();
        // `share` is within 0..=per_minute for a valid budget_share; the cast saturates anyway.
        (share as u32).max(1)
    }

    /// The window length: one `interval`.
    pub fn window(&self) -> Duration {
        self.interval.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_share_of_the_api_rounded_down_and_never_zero() {
        let c = |share| ReconcileConfig {
            budget_share: share,
            ..ReconcileConfig::default()
        };
        let cases = [
            (0.2, 1000, 200),
            (0.2, 60, 12),
            (0.2, 99, 19),
            (0.2, 4, 1),
            (0.01, 10, 1),
            (1.0, 100, 100),
            (0.5, 1, 1),
        ];
        for (share, per_minute, want) in cases {
            assert_eq!(
                c(share).requests_per_minute(per_minute),
                want,
                "{share} of {per_minute}"
            );
        }
    }
}
