//! The statistics behind the detectors: robust location and scale, the negative binomial
//! count model, and Benjamini–Hochberg false-discovery control.
//!
//! Counts of webhooks are over-dispersed: the hour-to-hour intensity of a tenant varies more
//! than a Poisson process would allow (a morning with a marketing mail, a quiet afternoon). We
//! model the intensity as the baseline times a Gamma multiplier of mean 1 and variance `alpha`,
//! which makes the count over any window negative binomial with mean `m` and variance
//! `m + alpha * m^2`. `alpha` is scale-free, so one estimate per series serves every window.

/// The median of `values` (which it sorts). `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The median absolute deviation from `center`, scaled by 1.4826 so that it estimates the
/// standard deviation of normal data. `None` when empty.
pub fn mad(values: &[f64], center: f64) -> Option<f64> {
    let mut dev: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    median(&mut dev).map(|m| 1.4826 * m)
}

/// The negative binomial count model with mean `mean` and dispersion `alpha`
/// (variance `mean + alpha * mean^2`; `alpha = 0` is Poisson).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NegBinomial {
    /// Expected count.
    pub mean: f64,
    /// Dispersion: the squared coefficient of variation of the underlying intensity.
    pub alpha: f64,
}

impl NegBinomial {
    /// The standard deviation of the count.
    pub fn sd(&self) -> f64 {
        (self.mean + self.alpha * self.mean * self.mean)
            .max(0.0)
            .sqrt()
    }

    /// `P(X = 0)`, computed in log space so that tiny probabilities stay exact.
    pub fn ln_p_zero(&self) -> f64 {
        if self.mean <= 0.0 {
            return 0.0;
        }
        if self.alpha <= 1e-12 {
            return -self.mean;
        }
        let size = 1.0 / self.alpha;
        -size * (1.0 + self.alpha * self.mean).ln()
    }

    /// The lower tail `P(X <= x)`.
    pub fn cdf(&self, x: u64) -> f64 {
        if self.mean <= 0.0 {
            return 1.0;
        }
        let alpha = self.alpha.max(1e-9);
        let size = 1.0 / alpha;
        let p = size / (size + self.mean);
        // P(X <= x) = I_p(size, x + 1), the regularized incomplete beta function.
        statrs::function::beta::checked_beta_reg(size, x as f64 + 1.0, p)
            .map(|v| v.clamp(0.0, 1.0))
            .unwrap_or(1.0)
    }
}

/// The probability of no event in a window whose baseline expectation is `window_expected`,
/// given `prior_count` events observed over an earlier stretch whose baseline expectation was
/// `prior_expected`, under a Gamma intensity multiplier of dispersion `alpha`.
///
/// This is the negative binomial predictive distribution after a conjugate update: the
/// multiplier starts as Gamma(k, k) with `k = 1 / alpha` (mean 1), and `c` events where the
/// baseline expected `E` make it Gamma(k + c, k + E). A channel that was flowing normally just
/// before going silent therefore gets a sharp verdict quickly, while one that was already quiet
/// (a holiday, a lull) needs a longer silence. Returns the natural logarithm.
pub fn ln_p_zero_after(
    alpha: f64,
    prior_count: f64,
    prior_expected: f64,
    window_expected: f64,
) -> f64 {
    if window_expected <= 0.0 {
        return 0.0;
    }
    let k = 1.0 / alpha.max(1e-9);
    let shape = k + prior_count.max(0.0);
    let rate = k + prior_expected.max(0.0);
    shape * (rate / (rate + window_expected)).ln()
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the order given.
///
/// A hypothesis is rejected at false-discovery rate `q` when its adjusted value is at most
/// `q`; this is equivalent to the step-up procedure and lets each series keep its own `q`.
pub fn bh_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; m];
    let mut running = 1.0f64;
    for rank in (0..m).rev() {
        let i = order[rank];
        let v = (p_values[i] * m as f64 / (rank as f64 + 1.0)).min(1.0);
        running = running.min(v);
        adjusted[i] = running;
    }
    adjusted
}

/// Whole minutes of a duration, at least 1.
pub(crate) fn minutes_of(d: std::time::Duration) -> i64 {
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

/// Formats a probability for a reason: `3e-9`, `0.0012`.
pub fn fmt_prob(p: f64) -> String {
    if p == 0.0 {
        "< 1e-300".to_string()
    } else if p < 1e-3 {
        let e = p.log10().floor();
        let mant = p / 10f64.powf(e);
        format!("{mant:.0}e{e}")
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert!((mad(&v, 3.0).unwrap() - 1.4826).abs() < 1e-9);
    }

    #[test]
    fn negative_binomial_matches_poisson_when_alpha_is_tiny() {
        let nb = NegBinomial {
            mean: 5.0,
            alpha: 1e-8,
        };
        // Poisson(5): P(X <= 2) = e^-5 (1 + 5 + 12.5)
        let want = (-5.0f64).exp() * 18.5;
        assert!((nb.cdf(2) - want).abs() < 1e-6, "{}", nb.cdf(2));
        assert!((nb.ln_p_zero() + 5.0).abs() < 1e-6);
    }

    #[test]
    fn negative_binomial_is_wider_than_poisson() {
        let nb = NegBinomial {
            mean: 50.0,
            alpha: 0.1,
        };
        assert!((nb.sd() - (50.0f64 + 250.0).sqrt()).abs() < 1e-9);
        // P(X <= 30) is far larger than under Poisson(50) (about 0.0015).
        assert!(nb.cdf(30) > 0.05, "{}", nb.cdf(30));
        // P(0) = (1 + alpha m)^(-1/alpha) = 6^-10
        assert!((nb.ln_p_zero() - (-10.0 * 6f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn posterior_update_sharpens_or_softens_the_zero_probability() {
        let prior_only = ln_p_zero_after(0.1, 0.0, 0.0, 20.0);
        let after_normal_flow = ln_p_zero_after(0.1, 90.0, 90.0, 20.0);
        let after_a_lull = ln_p_zero_after(0.1, 10.0, 90.0, 20.0);
        assert!(after_normal_flow < prior_only);
        assert!(after_a_lull > after_normal_flow);
        assert_eq!(ln_p_zero_after(0.1, 5.0, 5.0, 0.0), 0.0);
    }

    #[test]
    fn bh_adjusts_step_up() {
        let q = bh_adjust(&[0.01, 0.04, 0.03, 0.5]);
        // Sorted: 0.01*4/1=0.04, 0.03*4/2=0.06, 0.04*4/3=0.0533 → monotone: 0.04, 0.0533, 0.0533
        assert!((q[0] - 0.04).abs() < 1e-12);
        assert!((q[2] - 0.16 / 3.0).abs() < 1e-12);
        assert!((q[1] - 0.16 / 3.0).abs() < 1e-12);
        assert!((q[3] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn probabilities_format_for_people() {
        assert_eq!(fmt_prob(3.2e-9), "3e-9");
        assert_eq!(fmt_prob(0.0123), "0.012");
    }
}
