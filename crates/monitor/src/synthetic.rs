//! `intake backtest --synthetic`: seasonal traffic with injected incidents, run through the
//! detectors, scored for detection delay and false alerts.
//!
//! The generator is meant to be harder than it is kind. Each tenant has a peak rate drawn
//! log-uniformly between 1 and 1000 events an hour, a time zone, a business-hours day with a
//! night floor, a weekend lull of its own, public holidays (a quarter of normal traffic all
//! day), and over-dispersion at two levels, as real traffic has it: every local day's intensity
//! is multiplied by a Gamma variable of mean 1 (a busy or a quiet day), and every hour's by
//! another (a mail campaign, a slow afternoon). A series' total dispersion — the variance of
//! the product, `(1 + a_day)(1 + a_hour) - 1` — is drawn between 0.02 and 0.15, as it was when
//! all of it was hour-to-hour, and a share of 30–70 % of it is day-level. Incidents start on weekdays at business
//! hours, after two weeks of history: a drop to zero (4 h), a 50 % drop (6 h), or a slow decay
//! to zero (linear over 4 h, then 2 h at zero). A tenth of the tenants carry a 90/h channel
//! and another tenth a 10/h channel that drops to zero, for the detection targets.
//!
//! Everything is drawn from one seeded generator: a spec and a seed give the same traffic,
//! the same alerts and the same report.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use intake_core::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, Poisson, StandardNormal};
use serde::Serialize;

use crate::alert::{AlertState, Transition};
use crate::backtest::CSV_HEADER;
use crate::drop::CanaryHealth;
use crate::monitor::{FlowKey, Monitor, MonitorSettings};
use crate::params::RuleBook;

/// What to generate.
#[derive(Debug, Clone, Serialize)]
pub struct SyntheticSpec {
    /// Tenants (one source each).
    pub tenants: usize,
    /// Channels per tenant.
    pub channels: usize,
    /// Weeks of traffic.
    pub weeks: u32,
    /// Seed of everything random.
    pub seed: u64,
    /// Share of ordinary series that get one incident.
    pub incident_share: f64,
    /// Public holidays over the whole span.
    pub holidays: u32,
    /// The first minute (a Monday, 00:00 UTC, by default).
    pub start: Timestamp,
    /// Minute-scale burstiness: `None` for events that arrive one by one (Poisson minutes,
    /// the first generator's traffic); `Some(k)` for gamma-Poisson minute counts of shape
    /// `k` (each minute's rate multiplied by its own Gamma(k, 1/k)), with a quarter of the
    /// flows receiving part of their events in batches of 5–50 in one minute and a quarter
    /// fetched by polling every 2–10 minutes.
    pub burst_shape: Option<f64>,
    /// Holidays that hit only the tenants of one region (one time zone).
    pub regional_holidays: u32,
    /// How a series' hour level moves from one hour to the next: redrawn every hour (the
    /// first generator's traffic), or persistent (an AR(1) level).
    pub hour_level: HourLevel,
}

/// How the hour multiplier of a series moves from one clock hour to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HourLevel {
    /// Every clock hour's multiplier is drawn afresh (Gamma of variance `a_hour`): the minutes
    /// before :00 say nothing of the hour after it beyond the day's level.
    #[default]
    Independent,
    /// The log of the hour multiplier is an AR(1) process stepped at each clock hour, with a
    /// per-series correlation between consecutive hours drawn from 0.75 to 0.95 and the same
    /// stationary variance as the independent multiplier (log-normal of variance `a_hour`,
    /// mean 1): busy and quiet spells that last a few hours and do not end at :00, as real
    /// traffic's do. The day multiplier stays on top.
    Persistent,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            tenants: 100,
            channels: 2,
            weeks: 8,
            seed: 1,
            incident_share: 0.5,
            holidays: 2,
            // 2026-01-05T00:00:00Z, a Monday.
            start: Timestamp(1_767_571_200_000),
            burst_shape: None,
            regional_holidays: 1,
            hour_level: HourLevel::Independent,
        }
    }
}

/// A kind of injected incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Flow drops to zero.
    Zero,
    /// Flow halves.
    Half,
    /// Flow decays linearly to zero.
    Decay,
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IncidentKind::Zero => "drop to zero",
            IncidentKind::Half => "50% drop",
            IncidentKind::Decay => "slow decay",
        })
    }
}

/// One injected incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// Index of the series (tenant * channels + channel).
    pub series: usize,
    /// Kind.
    pub kind: IncidentKind,
    /// First affected minute (minutes since the epoch).
    pub start: i64,
    /// First minute after the incident.
    pub end: i64,
    /// Peak hourly rate of the series.
    pub peak_rate: f64,
}

impl Incident {
    fn factor(&self, m: i64) -> f64 {
        if m < self.start || m >= self.end {
            return 1.0;
        }
        match self.kind {
            IncidentKind::Zero => 0.0,
            IncidentKind::Half => 0.5,
            IncidentKind::Decay => (1.0 - (m - self.start) as f64 / 240.0).max(0.0),
        }
    }
}

/// How a series' events arrive within minutes (with `burst_shape`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Each minute's count is gamma-Poisson (Poisson without `burst_shape`).
    Plain,
    /// A share of the events arrives in batches of 5–50 in one minute.
    Batched {
        /// The share of events in batches.
        share: f64,
    },
    /// Events are fetched every `period` minutes, all at once.
    Polled {
        /// Minutes between two fetches.
        period: i64,
        /// The minute of the period at which fetches happen.
        phase: i64,
    },
}

#[derive(Debug, Clone)]
struct Series {
    key: FlowKey,
    peak: f64,
    tz_hours: i64,
    night: f64,
    weekend: f64,
    /// Day-level dispersion (variance of the day multiplier).
    alpha_day: f64,
    /// Hour-level dispersion (variance of the hour multiplier).
    alpha_hour: f64,
    day_mult: f64,
    mult: f64,
    /// With [`HourLevel::Persistent`]: the correlation of consecutive hours' log levels, and
    /// the current log level (mean 0, variance `ln(1 + alpha_hour)`).
    persistence: f64,
    log_level: f64,
    incident: Option<Incident>,
    arrival: Arrival,
    /// The generator's own expected count since the series' last event: what a silence
    /// really had to overcome, for reading false alerts.
    since_event: f64,
}

/// The traffic of a spec, generated minute by minute.
#[derive(Debug, Clone)]
pub struct Traffic {
    spec: SyntheticSpec,
    series: Vec<Series>,
    holidays: Vec<i64>,
    /// Regional holidays: (local day, time zone of the region's tenants).
    regional: Vec<(i64, i64)>,
    rng: StdRng,
    start_min: i64,
}

/// How a series' events arrive within minutes: with `burst_shape`, half the flows plain,
/// a quarter batched, a quarter polled; the probe channels are plain (their minute counts
/// still gamma-Poisson), so the detection targets measure the burstiness level itself.
fn arrival(spec: &SyntheticSpec, probe: bool, rng: &mut StdRng) -> Arrival {
    let draw: f64 = rng.random_range(0.0..1.0);
    let share = rng.random_range(0.3..0.7);
    let period = rng.random_range(2..=10i64);
    let phase = rng.random_range(0..period);
    if spec.burst_shape.is_none() || probe || draw < 0.5 {
        Arrival::Plain
    } else if draw < 0.75 {
        Arrival::Batched { share }
    } else {
        Arrival::Polled { period, phase }
    }
}

fn poisson(lambda: f64, rng: &mut StdRng) -> u32 {
    if lambda > 0.0 {
        Poisson::new(lambda).map_or(0.0, |p| p.sample(rng)) as u32
    } else {
        0
    }
}

/// The events of one minute of a series whose mean rate is `lambda` a minute, the minute's
/// own rate multiplier being `minute_mult` (1 without `burst_shape`).
fn arrivals(lambda: f64, minute_mult: f64, arrival: Arrival, rel: i64, rng: &mut StdRng) -> u32 {
    match arrival {
        Arrival::Plain => poisson(lambda * minute_mult, rng),
        Arrival::Batched { share } => {
            // Batches of 5–50 (27.5 on average) carry `share` of the events.
            let mut n = poisson((1.0 - share) * lambda * minute_mult, rng);
            for _ in 0..poisson(share * lambda / 27.5, rng) {
                n += rng.random_range(5..=50u32);
            }
            n
        }
        Arrival::Polled { period, phase } => {
            if (rel + phase).rem_euclid(period) == 0 {
                poisson(period as f64 * lambda * minute_mult, rng)
            } else {
                0
            }
        }
    }
}

fn day_shape(local_hour: f64, night: f64) -> f64 {
    let up = ((local_hour - 7.0) / 2.0).clamp(0.0, 1.0);
    let down = ((20.0 - local_hour) / 3.0).clamp(0.0, 1.0);
    night + (1.0 - night) * up.min(down)
}

impl Traffic {
    /// The local time of day (`HH:MM`) of UTC minute `minute` in series `series`' time zone.
    fn local_time(&self, series: usize, minute: i64) -> String {
        let tz = self.series.get(series).map_or(0, |s| s.tz_hours);
        let m = (minute + tz * 60).rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    }

    /// Draws the tenants, incidents and holidays of `spec`.
    pub fn new(spec: &SyntheticSpec) -> Self {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        // Arrival patterns and regional holidays come from a generator of their own, so the
        // rest of the traffic of a seed is the first generator's.
        let mut extra = StdRng::seed_from_u64(spec.seed ^ 0x9e37_79b9_7f4a_7c15);
        let start_min = spec.start.as_millis().div_euclid(60_000);
        let span_days = i64::from(spec.weeks) * 7;
        let probes = (spec.tenants / 10).max(1);
        let mut series = Vec::new();
        for t in 0..spec.tenants {
            let tenant_peak = 10f64.powf(rng.random_range(0.0..3.0));
            let tz_hours = [-8i64, -5, 0, 1, 2, 9][rng.random_range(0..6)];
            let night = rng.random_range(0.03..0.2);
            let weekend = rng.random_range(0.15..0.6);
            for c in 0..spec.channels {
                let probe = c == 0 && t < 2 * probes;
                let peak = if probe {
                    if t < probes {
                        90.0
                    } else {
                        10.0
                    }
                } else if c == 0 {
                    tenant_peak
                } else {
                    (tenant_peak * rng.random_range(0.1..1.0)).max(1.0)
                };
                // Total dispersion as before; part of it persists over the local day.
                let alpha = rng.random_range(0.02..0.15);
                let alpha_day = alpha * rng.random_range(0.3..0.7);
                let alpha_hour = (1.0 + alpha) / (1.0 + alpha_day) - 1.0;
                let index = series.len();
                let incident = if probe || rng.random_bool(spec.incident_share.clamp(0.0, 1.0)) {
                    let kind = if probe {
                        IncidentKind::Zero
                    } else {
                        [IncidentKind::Zero, IncidentKind::Half, IncidentKind::Decay]
                            [rng.random_range(0..3)]
                    };
                    // A weekday, after two weeks of history, 10:00–15:00 local.
                    let weeks = i64::from(spec.weeks.max(3));
                    let week = rng.random_range(2..weeks);
                    let day = rng.random_range(0..5i64);
                    let minute_of_day = rng.random_range(600..900i64) - tz_hours * 60;
                    let start = start_min + (week * 7 + day) * 1440 + minute_of_day;
                    let len = match kind {
                        IncidentKind::Zero => 240,
                        IncidentKind::Half | IncidentKind::Decay => 360,
                    };
                    Some(Incident {
                        series: index,
                        kind,
                        start,
                        end: start + len,
                        peak_rate: peak,
                    })
                } else {
                    None
                };
                series.push(Series {
                    key: FlowKey {
                        tenant: format!("tenant-{t:03}"),
                        source: format!("tenant-{t:03}-src"),
                        channel: ["email", "chat", "sms", "voice"][c % 4].to_string()
                            + &if c >= 4 { c.to_string() } else { String::new() },
                    },
                    peak,
                    tz_hours,
                    night,
                    weekend,
                    alpha_day,
                    alpha_hour,
                    day_mult: 1.0,
                    mult: 1.0,
                    persistence: 0.0,
                    log_level: 0.0,
                    incident,
                    arrival: arrival(spec, probe, &mut extra),
                    since_event: 0.0,
                });
            }
        }
        if spec.hour_level == HourLevel::Persistent {
            // From a generator of its own, so that everything else of a seed is drawn as with
            // independent hours.
            let mut own = StdRng::seed_from_u64(spec.seed ^ 0x2545_f491_4f6c_dd1d);
            for s in &mut series {
                s.persistence = own.random_range(0.75..0.95);
            }
        }
        let mut holidays = Vec::new();
        for _ in 0..spec.holidays {
            if span_days > 7 {
                holidays.push(rng.random_range(7..span_days));
            }
        }
        let mut regional = Vec::new();
        for _ in 0..spec.regional_holidays {
            if span_days > 7 && !series.is_empty() {
                let day = extra.random_range(7..span_days);
                let tz = series[extra.random_range(0..series.len())].tz_hours;
                regional.push((day, tz));
            }
        }
        Traffic {
            spec: spec.clone(),
            series,
            holidays,
            regional,
            rng,
            start_min,
        }
    }

    /// Whether local day `day` is a holiday for a series in time zone `tz_hours`.
    fn holiday(&self, day: i64, tz_hours: i64) -> bool {
        self.holidays.contains(&day) || self.regional.contains(&(day, tz_hours))
    }

    /// Whether minute `m` falls on a holiday (or the morning after) of any series: a grouped
    /// warning then is a holiday's.
    pub fn holiday_anywhere(&self, m: i64) -> bool {
        (0..self.series.len()).any(|s| self.cause(s, m) == "holiday")
    }

    /// The arrival pattern of each series.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.series.iter().map(|s| s.arrival).collect()
    }

    /// The flows.
    pub fn keys(&self) -> Vec<FlowKey> {
        self.series.iter().map(|s| s.key.clone()).collect()
    }

    /// The injected incidents.
    pub fn incidents(&self) -> Vec<Incident> {
        self.series
            .iter()
            .filter_map(|s| s.incident.clone())
            .collect()
    }

    /// What was special about minute `m` for series `series`, for attributing false alerts:
    /// `holiday` on a public holiday (or before noon the day after, when a silence that began
    /// on it may still run), `weekend` likewise for Saturday, Sunday and Monday morning, and
    /// `other` for ordinary weekdays. Days are the series' local days.
    pub fn cause(&self, series: usize, m: i64) -> &'static str {
        let Some(s) = self.series.get(series) else {
            return "other";
        };
        let local = m - self.start_min + s.tz_hours * 60;
        let day = local.div_euclid(1440);
        let morning = local.rem_euclid(1440) < 12 * 60;
        if self.holiday(day, s.tz_hours) || (morning && self.holiday(day - 1, s.tz_hours)) {
            "holiday"
        } else if day.rem_euclid(7) >= 5 || (morning && day.rem_euclid(7) == 0) {
            "weekend"
        } else {
            "other"
        }
    }

    /// Total minutes of traffic.
    pub fn minutes(&self) -> i64 {
        i64::from(self.spec.weeks) * 7 * 1440
    }

    /// The first minute (minutes since the epoch).
    pub fn start_minute(&self) -> i64 {
        self.start_min
    }

    /// The counts of minute `m` for every series, in series order. Call with consecutive
    /// minutes from the start.
    pub fn minute(&mut self, m: i64, out: &mut Vec<u32>) {
        out.clear();
        let rel = m - self.start_min;
        let (holidays, regional) = (&self.holidays, &self.regional);
        let minute_gamma = self
            .spec
            .burst_shape
            .and_then(|k| Gamma::new(k, 1.0 / k).ok());
        for s in &mut self.series {
            let local = rel + s.tz_hours * 60;
            if local.rem_euclid(1440) == 0 || rel == 0 {
                s.day_mult = Gamma::new(1.0 / s.alpha_day, s.alpha_day)
                    .map(|g| g.sample(&mut self.rng))
                    .unwrap_or(1.0);
            }
            if local.rem_euclid(60) == 0 || rel == 0 {
                s.mult = match self.spec.hour_level {
                    HourLevel::Independent => Gamma::new(1.0 / s.alpha_hour, s.alpha_hour)
                        .map(|g| g.sample(&mut self.rng))
                        .unwrap_or(1.0),
                    HourLevel::Persistent => {
                        // Stationary from the first hour: the innovation's variance keeps
                        // the level's at `ln(1 + alpha_hour)`.
                        let var = s.alpha_hour.ln_1p();
                        let z: f64 = StandardNormal.sample(&mut self.rng);
                        let rho = if rel == 0 { 0.0 } else { s.persistence };
                        s.log_level = rho * s.log_level + (1.0 - rho * rho).sqrt() * var.sqrt() * z;
                        (s.log_level - var / 2.0).exp()
                    }
                };
            }
            let day = local.div_euclid(1440);
            let hour = local.rem_euclid(1440) as f64 / 60.0;
            // The span starts on a Monday: days 5 and 6 of each week are the weekend.
            let mut rate = s.peak * day_shape(hour, s.night);
            if day.rem_euclid(7) >= 5 {
                rate *= s.weekend;
            }
            if holidays.contains(&day) || regional.contains(&(day, s.tz_hours)) {
                rate *= 0.25;
            }
            if let Some(i) = &s.incident {
                rate *= i.factor(m);
            }
            let lambda = rate * s.day_mult * s.mult / 60.0;
            let minute_mult = minute_gamma
                .as_ref()
                .map_or(1.0, |g| g.sample(&mut self.rng));
            let n = arrivals(lambda, minute_mult, s.arrival, rel, &mut self.rng);
            s.since_event = if n > 0 { 0.0 } else { s.since_event + lambda };
            out.push(n);
        }
    }

    /// The generator's expected count over the minutes since the series' last event (the
    /// truth a silence is judged against; the monitor cannot know it).
    pub fn true_expected_since_event(&self, series: usize) -> f64 {
        self.series.get(series).map_or(0.0, |s| s.since_event)
    }

    /// Writes all counts as a counts file (`backtest::CSV_HEADER`) for `intake backtest
    /// --counts`: only minutes with events, as a store export would have them, and every
    /// flow's first minute, so that each flow exists from the start. Returns the rows written.
    pub fn write_counts<W: Write>(mut self, mut out: W) -> std::io::Result<u64> {
        let keys = self.keys();
        let mut buf = Vec::new();
        let mut rows = 0u64;
        writeln!(out, "{CSV_HEADER}")?;
        for m in self.start_min..self.start_min + self.minutes() {
            self.minute(m, &mut buf);
            let mut minute = None;
            for (k, &n) in keys.iter().zip(&buf) {
                if n > 0 || m == self.start_min {
                    let at = minute.get_or_insert_with(|| Timestamp(m * 60_000).to_rfc3339());
                    writeln!(out, "{at},{},{},{},{n}", k.tenant, k.source, k.channel)?;
                    rows += 1;
                }
            }
        }
        out.flush()?;
        Ok(rows)
    }
}

/// The label of the drops to zero of the channels that are not probes and peak at 90/h or
/// more, reported beside their own kind's (with `/batched` or `/polled` for those arrival
/// patterns): the goal's "channels of ≥ 90/h" at the rates the generator gives tenants,
/// where the `zero@90/h` probes are the bound's own rate.
pub const BUSY_ZERO: &str = "zero@>=90/h";

/// Detection delays of one (incident kind, rule).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DelayStats {
    /// Incidents of that kind.
    pub incidents: usize,
    /// Incidents the rule fired for (between its start and two hours after its end).
    pub detected: usize,
    /// Delays in minutes, sorted.
    pub delays: Vec<i64>,
}

impl DelayStats {
    /// The `q` quantile of the delays (nearest rank), if any.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        if self.delays.is_empty() {
            return None;
        }
        let i = ((q * self.delays.len() as f64).ceil() as usize).clamp(1, self.delays.len());
        Some(self.delays[i - 1])
    }
}

/// What a synthetic run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyntheticReport {
    /// Tenants × weeks.
    pub tenant_weeks: f64,
    /// Flows.
    pub series: usize,
    /// Evaluations.
    pub ticks: usize,
    /// Firing alerts outside every incident (and its two-hour aftermath), by rule.
    pub false_alerts: BTreeMap<String, usize>,
    /// Of those, how many came while the series had no seasonal baseline yet (first 2 weeks).
    pub false_alerts_warmup: BTreeMap<String, usize>,
    /// False alerts by (rule, cause): `holiday`, `weekend` or `other` (see
    /// [`Traffic::cause`]), and by (rule, phase): `weeks 1-2` or `weeks 3+`.
    pub false_by_cause: BTreeMap<(String, String), usize>,
    /// Detection by (incident label, rule): label is the kind, or `zero@90/h`, `zero@10/h`
    /// for the probe channels; a busy channel's drop to zero is also under [`BUSY_ZERO`].
    pub delays: BTreeMap<(String, String), DelayStats>,
    /// Time spent in `Monitor::evaluate`.
    pub evaluate_time: Duration,
    /// The first false alerts, as `rule at series: reason`, for reading.
    pub false_samples: Vec<String>,
    /// `inbound_drop`'s grouped warnings: (minute from the start, `holiday` or `other`).
    pub grouped: Vec<(i64, String)>,
    /// Each 90/h probe channel's first `inbound_stopped` page: where in its hour the stop
    /// fell, the delay and the reason, for reading what decided.
    pub probe_samples: Vec<String>,
}

impl SyntheticReport {
    /// False alerts of `rule` per 100 tenant-weeks.
    pub fn false_rate(&self, rule: &str) -> f64 {
        self.false_alerts.get(rule).copied().unwrap_or(0) as f64 / self.tenant_weeks * 100.0
    }
}

/// The label of a probe channel's stop (`zero@90/h`, `zero@10/h`), `None` for any other
/// incident.
fn probe_label(i: &Incident) -> Option<&'static str> {
    [(90.0, "zero@90/h"), (10.0, "zero@10/h")]
        .into_iter()
        .find(|(r, _)| i.kind == IncidentKind::Zero && i.peak_rate == *r)
        .map(|(_, name)| name)
}

/// Scores firing transitions against the injected incidents.
struct Scorer<'a> {
    index: HashMap<FlowKey, usize>,
    by_series: HashMap<usize, &'a Incident>,
    arrivals: Vec<Arrival>,
    first_detection: HashMap<(usize, String), i64>,
    start: i64,
}

impl Scorer<'_> {
    /// The label incidents are reported under: the kind, or `zero@90/h`, `zero@10/h` for the
    /// probe channels, with the arrival pattern of a batched or polled flow.
    fn label(&self, i: &Incident) -> String {
        let kind = match probe_label(i) {
            Some(name) => name.to_string(),
            None => format!("{:?}", i.kind).to_lowercase(),
        };
        format!("{kind}{}", self.arrival_suffix(i.series))
    }

    /// How a series' label names its arrival pattern: nothing for events that arrive one by
    /// one, `/batched` or `/polled`.
    fn arrival_suffix(&self, series: usize) -> &'static str {
        match self.arrivals.get(series) {
            Some(Arrival::Batched { .. }) => "/batched",
            Some(Arrival::Polled { .. }) => "/polled",
            _ => "",
        }
    }

    /// The labels an incident is reported under: [`Scorer::label`], and for a drop to zero
    /// of a channel that is not a probe but peaks at 90/h or more, also [`BUSY_ZERO`] with
    /// its arrival pattern: the outages of busy channels at the rates tenants have
    /// (90–1,000/h), beside the probes that sit at the bound itself.
    fn labels(&self, i: &Incident) -> Vec<String> {
        let mut labels = vec![self.label(i)];
        if i.kind == IncidentKind::Zero && probe_label(i).is_none() && i.peak_rate >= 90.0 {
            labels.push(format!("{BUSY_ZERO}{}", self.arrival_suffix(i.series)));
        }
        labels
    }

    fn score(&mut self, t: &Transition, now_min: i64, traffic: &Traffic, r: &mut SyntheticReport) {
        if t.state != AlertState::Firing {
            return;
        }
        let key = FlowKey {
            tenant: t.labels.tenant.clone(),
            source: t.labels.source.clone(),
            channel: t.labels.channel.clone(),
        };
        let Some(&s) = self.index.get(&key) else {
            if t.rule == "inbound_drop" && t.labels.tenant.is_empty() {
                // A grouped warning: one, whoever its members.
                let cause = if traffic.holiday_anywhere(now_min - 1) {
                    "holiday"
                } else {
                    "other"
                };
                r.grouped.push((now_min - self.start, cause.to_string()));
                self.false_alert(t, now_min, None, cause, r);
            }
            return;
        };
        match self.by_series.get(&s) {
            Some(i) if now_min >= i.start && now_min < i.end + 120 => {
                let first = !self.first_detection.contains_key(&(s, t.rule.clone()));
                self.first_detection
                    .entry((s, t.rule.clone()))
                    .or_insert(now_min - i.start);
                if first && t.rule == "inbound_stopped" && self.label(i) == "zero@90/h" {
                    r.probe_samples.push(format!(
                        "{} stopped at minute {} of its hour, paged after {} min: {}",
                        t.labels.tenant,
                        i.start.rem_euclid(60),
                        now_min - i.start,
                        t.reason
                    ));
                }
                if first && t.rule == "inbound_stopped" && self.label(i) == "zero@10/h" {
                    r.probe_samples.push(format!(
                        "{} (10/h) stopped at {} local, paged after {} min: {}",
                        t.labels.tenant,
                        traffic.local_time(i.series, i.start),
                        now_min - i.start,
                        t.reason
                    ));
                }
            }
            _ => {
                let cause = traffic.cause(s, now_min - 1);
                let sample = format!(
                    "{}/{} ({:?}) at {} local [generator expected {:.1} since the last event]",
                    t.labels.tenant,
                    t.labels.channel,
                    self.arrivals.get(s).copied().unwrap_or(Arrival::Plain),
                    traffic.local_time(s, now_min),
                    traffic.true_expected_since_event(s)
                );
                self.false_alert(t, now_min, Some(sample), cause, r);
            }
        }
    }

    fn false_alert(
        &self,
        t: &Transition,
        now_min: i64,
        series: Option<String>,
        cause: &str,
        r: &mut SyntheticReport,
    ) {
        let n = r.false_alerts.entry(t.rule.clone()).or_default();
        *n += 1;
        if *n <= 100 {
            r.false_samples.push(format!(
                "{} day {} ({cause}) {}: {}",
                t.rule,
                (now_min - self.start) / 1440,
                series.unwrap_or_else(|| "grouped".into()),
                t.reason,
            ));
        }
        if now_min - self.start < 14 * 1440 {
            *r.false_alerts_warmup.entry(t.rule.clone()).or_default() += 1;
        }
        *r.false_by_cause
            .entry((t.rule.clone(), cause.to_string()))
            .or_default() += 1;
    }
}

/// Generates the traffic of `spec`, runs it through a monitor evaluated every minute (with
/// healthy canaries), and scores the alerts against the injected incidents.
pub fn run(spec: &SyntheticSpec, rules: &RuleBook, settings: &MonitorSettings) -> SyntheticReport {
    let mut traffic = Traffic::new(spec);
    let keys = traffic.keys();
    let incidents = traffic.incidents();
    let mut scorer = Scorer {
        index: keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect(),
        by_series: incidents.iter().map(|i| (i.series, i)).collect(),
        arrivals: traffic.arrivals(),
        first_detection: HashMap::new(),
        start: traffic.start_minute(),
    };
    let mut monitor = Monitor::new(rules.clone(), settings.clone());
    monitor.observe_canaries(CanaryHealth::healthy());
    let start = traffic.start_minute();
    for k in &keys {
        monitor.add_flow(k, Timestamp(start * 60_000));
    }
    let mut report = SyntheticReport {
        tenant_weeks: spec.tenants as f64 * f64::from(spec.weeks),
        series: keys.len(),
        ..Default::default()
    };
    for i in &incidents {
        for rule in ["inbound_stopped", "inbound_drop"] {
            for label in scorer.labels(i) {
                report
                    .delays
                    .entry((label, rule.to_string()))
                    .or_default()
                    .incidents += 1;
            }
        }
    }
    let mut buf = Vec::new();
    for m in start..start + traffic.minutes() {
        traffic.minute(m, &mut buf);
        for (k, &n) in keys.iter().zip(&buf) {
            monitor.record_flow(k, Timestamp(m * 60_000), n);
        }
        let now_min = m + 1;
        let t0 = Instant::now();
        let transitions = monitor.evaluate(Timestamp(now_min * 60_000));
        report.evaluate_time += t0.elapsed();
        report.ticks += 1;
        for t in &transitions {
            scorer.score(t, now_min, &traffic, &mut report);
        }
    }
    for i in incidents.iter().filter(|i| scorer.label(i) == "zero@10/h") {
        if !scorer
            .first_detection
            .contains_key(&(i.series, "inbound_stopped".to_string()))
        {
            report.probe_samples.push(format!(
                "{} (10/h) stopped at {} local: not paged",
                keys.get(i.series).map_or("?", |k| k.tenant.as_str()),
                traffic.local_time(i.series, i.start)
            ));
        }
    }
    let detections: Vec<_> = scorer.first_detection.drain().collect();
    for ((s, rule), delay) in detections {
        if let Some(i) = scorer.by_series.get(&s) {
            for label in scorer.labels(i) {
                let d = report.delays.entry((label, rule.clone())).or_default();
                d.detected += 1;
                d.delays.push(delay);
            }
        }
    }
    for d in report.delays.values_mut() {
        d.delays.sort_unstable();
    }
    report
}

impl fmt::Display for SyntheticReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} flows, {:.0} tenant-weeks, {} evaluations ({:.1} µs per evaluation of all flows)",
            self.series,
            self.tenant_weeks,
            self.ticks,
            self.evaluate_time.as_secs_f64() * 1e6 / self.ticks.max(1) as f64
        )?;
        writeln!(
            f,
            "false alerts per 100 tenant-weeks (count: weeks 1-2 + weeks 3+; holiday / weekend / other):"
        )?;
        for rule in ["inbound_stopped", "inbound_drop"] {
            let total = self.false_alerts.get(rule).copied().unwrap_or(0);
            let warmup = self.false_alerts_warmup.get(rule).copied().unwrap_or(0);
            let cause = |c: &str| {
                self.false_by_cause
                    .get(&(rule.to_string(), c.to_string()))
                    .copied()
                    .unwrap_or(0)
            };
            writeln!(
                f,
                "  {rule:<16} {:>6.2}  ({total}: {warmup} + {}; {} / {} / {})",
                self.false_rate(rule),
                total - warmup,
                cause("holiday"),
                cause("weekend"),
                cause("other"),
            )?;
        }
        let holiday = self.grouped.iter().filter(|g| g.1 == "holiday").count();
        writeln!(
            f,
            "  of inbound_drop, grouped warnings: {} ({holiday} on holidays, at days {:?})",
            self.grouped.len(),
            self.grouped.iter().map(|g| g.0 / 1440).collect::<Vec<_>>(),
        )?;
        writeln!(f, "detection delay in minutes (median / p90 / max):")?;
        for ((label, rule), d) in &self.delays {
            write!(
                f,
                "  {label:<18} {rule:<16} {:>3}/{:<3} detected",
                d.detected, d.incidents
            )?;
            match (d.quantile(0.5), d.quantile(0.9), d.delays.last()) {
                (Some(a), Some(b), Some(c)) => writeln!(f, "  {a} / {b} / {c}")?,
                _ => writeln!(f)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lag-1 correlation of the log hour multipliers of every series over `hours` hours, and
    /// their mean.
    fn hour_levels(hour_level: HourLevel, hours: i64) -> (f64, f64) {
        let spec = SyntheticSpec {
            tenants: 4,
            channels: 1,
            weeks: 1,
            seed: 3,
            hour_level,
            ..SyntheticSpec::default()
        };
        let mut t = Traffic::new(&spec);
        let start = t.start_minute();
        let mut levels: Vec<Vec<f64>> = vec![Vec::new(); t.series.len()];
        let mut buf = Vec::new();
        for m in start..start + hours * 60 {
            t.minute(m, &mut buf);
            if (m - start) % 60 == 30 {
                for (l, s) in levels.iter_mut().zip(&t.series) {
                    l.push(s.mult);
                }
            }
        }
        let (mut num, mut den, mut sum, mut n) = (0.0, 0.0, 0.0, 0.0);
        for l in &levels {
            let logs: Vec<f64> = l.iter().map(|x| x.ln()).collect();
            let mean = logs.iter().sum::<f64>() / logs.len() as f64;
            for w in logs.windows(2) {
                num += (w[0] - mean) * (w[1] - mean);
            }
            den += logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
            sum += l.iter().sum::<f64>();
            n += l.len() as f64;
        }
        (num / den, sum / n)
    }

    /// A busy channel's drop to zero is also reported under `BUSY_ZERO`; the probes, the
    /// quiet channels and the other kinds are not.
    #[test]
    fn busy_channels_drops_to_zero_are_also_reported_together() {
        let scorer = Scorer {
            index: HashMap::new(),
            by_series: HashMap::new(),
            arrivals: vec![Arrival::Plain, Arrival::Batched { share: 0.5 }],
            first_detection: HashMap::new(),
            start: 0,
        };
        let incident = |series, kind, peak_rate| Incident {
            series,
            kind,
            start: 0,
            end: 240,
            peak_rate,
        };
        // (incident, labels)
        let cases = [
            (incident(0, IncidentKind::Zero, 90.0), vec!["zero@90/h"]),
            (incident(0, IncidentKind::Zero, 10.0), vec!["zero@10/h"]),
            (
                incident(0, IncidentKind::Zero, 412.5),
                vec!["zero", BUSY_ZERO],
            ),
            (
                incident(1, IncidentKind::Zero, 95.0),
                vec!["zero/batched", "zero@>=90/h/batched"],
            ),
            (incident(0, IncidentKind::Zero, 89.9), vec!["zero"]),
            (incident(0, IncidentKind::Half, 500.0), vec!["half"]),
        ];
        for (i, labels) in cases {
            assert_eq!(scorer.labels(&i), labels, "{i:?}");
        }
    }

    /// The persistent variant's hour levels carry from one hour to the next (correlation
    /// 0.75–0.95 per series); the first generator's are drawn afresh. Both have mean 1.
    #[test]
    fn persistent_hour_levels_carry_over_and_independent_ones_do_not() {
        let (rho, mean) = hour_levels(HourLevel::Persistent, 24 * 40);
        assert!((0.7..0.97).contains(&rho), "{rho}");
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
        let (rho, mean) = hour_levels(HourLevel::Independent, 24 * 40);
        assert!(rho.abs() < 0.1, "{rho}");
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
    }
}
