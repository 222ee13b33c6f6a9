//! `inbound_drop`: flows significantly below their seasonal baseline, as a warning worth
//! reading.
//!
//! At clock-aligned window ends every flow with a seasonal baseline whose window expects
//! enough events is tested (negative binomial lower tail, its variance widened by the flow's
//! half-hour bursts, see [`crate::burst`]); the p-values of the tick are adjusted by
//! Benjamini–Hochberg, and a flow must be significant, and far enough below, in `persistence`
//! windows in a row.
//!
//! A drop shared by many tenants at once is one thing, not many: a public holiday, a pattern
//! every tenant shares, or an SOR's own outage. When at least `group_min_tenants` tenants are
//! significantly down in the same window, their drops become **one grouped warning** — its
//! labels name no tenant, so one silence of `rule=inbound_drop` mutes it, and the reason names
//! the tenants and says what the canaries say ([`CanaryHealth`]): with the canaries passing,
//! the pipeline is not the cause; with canaries failing, `canary_failed` already pages. The
//! group stays open while any tenant is still down, so a holiday that moves across time zones
//! is one warning. A single tenant's drop stays a warning of its own. Tenants whose calendar
//! says today is quiet (`[[monitor.calendars]]`) are not judged.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::baseline::{alpha_of, expected_between, BaselineConfig, BaselineKind};
use crate::history::{hour_of, FlowHistory, Minute};
use crate::keys::FlowKey;
use crate::params::InboundDrop;
use crate::stats::{bh_adjust, fmt_prob, minutes_of, NegBinomial};

/// What the canaries say, handed to the monitor before an evaluation
/// ([`crate::Monitor::observe_canaries`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryHealth {
    /// Whether canaries are watched at all (not in a backtest).
    pub watched: bool,
    /// The sources whose canaries are failing now.
    pub failing: BTreeSet<String>,
}

impl CanaryHealth {
    /// Every source's canaries pass.
    pub fn healthy() -> Self {
        CanaryHealth {
            watched: true,
            failing: BTreeSet::new(),
        }
    }

    /// What the canaries say about the drop of `sources`, for a reason.
    fn describe(&self, sources: &BTreeSet<&str>) -> String {
        if !self.watched {
            return "canaries not watched here".into();
        }
        let failing: Vec<&str> = sources
            .iter()
            .copied()
            .filter(|s| self.failing.contains(*s))
            .collect();
        if failing.is_empty() {
            "canaries healthy: most likely a holiday or a pattern these tenants share (or their \
             system of record's own outage), not intake's pipeline"
                .into()
        } else {
            format!(
                "canaries failing on {} of their sources ({}): a pipeline fault, paged as \
                 canary_failed",
                failing.len(),
                failing.join(", ")
            )
        }
    }
}

/// One flow's test in a window.
#[derive(Debug, Clone)]
pub(crate) struct WindowTest {
    pub key: FlowKey,
    pub p: f64,
    pub x: u64,
    pub expected: f64,
    pub sd: f64,
    pub kind: BaselineKind,
    pub params: InboundDrop,
}

/// Whether `now_min` ends a window of `p`.
pub(crate) fn window_end(now_min: Minute, p: &InboundDrop) -> bool {
    now_min.rem_euclid(minutes_of(p.window)) == 0
}

/// The lower-tail test of flow `f`'s window ending at `now_min`, if the flow can be tested:
/// a whole window held, a seasonal baseline (the daily fallback cannot see weekly
/// seasonality: a Saturday would look like a drop from the weekdays before it) that expects
/// at least `min_expected` events.
pub(crate) fn test(
    key: &FlowKey,
    f: &mut FlowHistory,
    now_min: Minute,
    cfg: &BaselineConfig,
    params: &InboundDrop,
) -> Option<WindowTest> {
    let w = minutes_of(params.window);
    let from = now_min - w;
    if from < f.first_minute() {
        return None;
    }
    let (x, held) = f.sum_minutes(from, now_min);
    if held < w {
        return None;
    }
    let (expected, kind) = expected_between(f, from, now_min, cfg)?;
    if !matches!(kind, BaselineKind::Seasonal { .. }) || expected < params.min_expected {
        return None;
    }
    // Bursts widen a window's count beyond what hourly dispersion says: variance
    // D·m + alpha·m², with D the flow's half-hour index of dispersion.
    let d = f.burst().half_hour_dispersion();
    let alpha = alpha_of(f, hour_of(now_min - 1), cfg) + (d - 1.0) / expected.max(1.0);
    let nb = NegBinomial {
        mean: expected,
        alpha,
    };
    Some(WindowTest {
        key: key.clone(),
        p: nb.cdf(x),
        x,
        expected,
        sd: nb.sd(),
        kind,
        params: params.clone(),
    })
}

/// One flow significantly down in a window: observed / expected and the reason.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Significant {
    pub ratio: f64,
    pub reason: String,
    pub x: u64,
    pub expected: f64,
}

/// Benjamini–Hochberg across the window's tests: the flows significantly and far enough down.
pub(crate) fn significant(tests: &[WindowTest]) -> BTreeMap<FlowKey, Significant> {
    let p_values: Vec<f64> = tests.iter().map(|c| c.p).collect();
    let q_values = bh_adjust(&p_values);
    let n = tests.len();
    let mut out = BTreeMap::new();
    for (c, q) in tests.iter().zip(q_values) {
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
            out.insert(
                c.key.clone(),
                Significant {
                    ratio,
                    reason,
                    x: c.x,
                    expected: c.expected,
                },
            );
        }
    }
    out
}

/// The grouped warning's state, kept by the monitor between windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DropGroup {
    /// Consecutive windows in which at least `group_min_tenants` tenants were down.
    pub streak: u32,
    /// Whether the group is open: it reached `persistence` windows, and not `group_hold` has
    /// passed since a tenant was last down.
    pub open: bool,
    /// Consecutive windows without any tenant down.
    pub quiet: u32,
    /// Its finding (value, reason), carried between windows.
    pub finding: Option<(f64, String)>,
}

/// Decides one window for the group: whether the flows significantly down now form (or keep)
/// the grouped warning. Returns true when they are absorbed into it (no per-flow warnings).
pub(crate) fn group(
    state: &mut DropGroup,
    down: &BTreeMap<FlowKey, Significant>,
    tested_tenants: usize,
    params: &InboundDrop,
    canaries: &CanaryHealth,
) -> bool {
    let tenants: BTreeSet<&str> = down.keys().map(|k| k.tenant.as_str()).collect();
    let many = tenants.len() >= params.group_min_tenants.max(2) as usize;
    if many {
        state.streak += 1;
    } else {
        state.streak = 0;
    }
    if tenants.is_empty() {
        state.quiet += 1;
    } else {
        state.quiet = 0;
    }
    // The group opens after `persistence` windows with many tenants down, and stays open
    // until `group_hold` passes with no tenant down: a holiday crossing time zones, with
    // hours when no region's business day has enough traffic to test, is one warning.
    let hold = (minutes_of(params.group_hold) / minutes_of(params.window)).max(1) as u32;
    state.open = (state.open && state.quiet < hold) || state.streak >= params.persistence;
    if !(state.open || many) {
        state.finding = None;
        return false;
    }
    if down.is_empty() {
        // Open with nobody down right now: the warning stands as it was last said.
        return true;
    }
    let (x, e): (u64, f64) = down
        .values()
        .fold((0, 0.0), |(x, e), s| (x + s.x, e + s.expected));
    let ratio = if e > 0.0 { x as f64 / e } else { 1.0 };
    let sources: BTreeSet<&str> = down.keys().map(|k| k.source.as_str()).collect();
    let mut per_tenant: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for (k, s) in down {
        let t = per_tenant.entry(k.tenant.as_str()).or_default();
        t.0 += s.x;
        t.1 += s.expected;
    }
    let list: Vec<String> = per_tenant
        .iter()
        .map(|(t, (x, e))| format!("{t} {:.0}%", (1.0 - *x as f64 / e.max(1e-9)) * 100.0))
        .collect();
    let reason = format!(
        "inbound down {:.0} % across {} of {} tenants ({} flows, {x} events where {e:.0} were \
         expected in the last {} min), {}; {} window{} in a row; tenants: {}",
        (1.0 - ratio) * 100.0,
        tenants.len(),
        tested_tenants.max(tenants.len()),
        down.len(),
        minutes_of(params.window),
        canaries.describe(&sources),
        state.streak.max(1),
        if state.streak == 1 { "" } else { "s" },
        list.join(", "),
    );
    state.finding = state.open.then_some((ratio, reason));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(tenants: &[&str]) -> BTreeMap<FlowKey, Significant> {
        tenants
            .iter()
            .map(|t| {
                (
                    FlowKey {
                        tenant: t.to_string(),
                        source: format!("{t}-src"),
                        channel: "email".into(),
                    },
                    Significant {
                        ratio: 0.4,
                        reason: String::new(),
                        x: 40,
                        expected: 100.0,
                    },
                )
            })
            .collect()
    }

    /// Each step: the tenants down in the window, whether they are absorbed into the group,
    /// whether the group's warning is out.
    #[test]
    fn many_tenants_down_at_once_are_one_warning_that_lasts_while_any_is_down() {
        let p = InboundDrop::default();
        let healthy = CanaryHealth::healthy();
        // `group_hold` (3 h) is 6 windows of 30 min.
        let steps: [(&[&str], bool, bool); 15] = [
            (&["a"], false, false),
            (&["a", "b", "c"], true, false),
            (&["a", "b", "c", "d"], true, true),
            (&["d"], true, true),
            (&["b", "d"], true, true),
            (&[], true, true),
            (&[], true, true),
            (&["e"], true, true),
            (&[], true, true),
            (&[], true, true),
            (&[], true, true),
            (&[], true, true),
            (&[], true, true),
            (&[], false, false),
            (&["a", "b"], false, false),
        ];
        let mut g = DropGroup::default();
        for (i, (tenants, absorbed, out)) in steps.into_iter().enumerate() {
            let got = group(&mut g, &down(tenants), 20, &p, &healthy);
            assert_eq!(got, absorbed, "step {i}: absorbed");
            assert_eq!(g.finding.is_some(), out, "step {i}: warning {g:?}");
        }
    }

    #[test]
    fn the_reason_counts_tenants_and_says_what_the_canaries_say() {
        let p = InboundDrop::default();
        let mut g = DropGroup {
            streak: 1,
            ..Default::default()
        };
        let d = down(&["a", "b", "c"]);
        group(&mut g, &d, 20, &p, &CanaryHealth::healthy());
        let (ratio, reason) = g.finding.clone().unwrap();
        assert!((ratio - 0.4).abs() < 1e-9);
        assert!(
            reason.starts_with("inbound down 60 % across 3 of 20 tenants"),
            "{reason}"
        );
        assert!(reason.contains("canaries healthy"), "{reason}");
        let failing = CanaryHealth {
            watched: true,
            failing: ["b-src".to_string()].into(),
        };
        let mut g = DropGroup {
            streak: 1,
            ..Default::default()
        };
        group(&mut g, &d, 20, &p, &failing);
        let reason = g.finding.unwrap().1;
        assert!(
            reason.contains("canaries failing on 1 of their sources (b-src)"),
            "{reason}"
        );
        let mut g = DropGroup {
            streak: 1,
            ..Default::default()
        };
        group(&mut g, &d, 20, &p, &CanaryHealth::default());
        assert!(g.finding.unwrap().1.contains("canaries not watched"));
    }
}
