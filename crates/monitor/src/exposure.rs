//! What the hours before a silence say about a flow's level: the *exposure* of
//! `inbound_stopped`'s conjugate update (see `docs/detectors.md`). Three hours before the
//! silence's hour for most flows; for a slow flow, whose three hours hold too few events to
//! tell its day from a quiet day, the hours of its working day before them, read once per
//! silence.

use crate::baseline::{hour_baseline, profile_between, BaselineConfig};
use crate::history::{hour_of, EarlierExposure, FlowHistory, Hour, Minute};
use crate::params::InboundStopped;
use crate::stats::minutes_of;

/// The events and the baseline expectation over the minutes `[from, to)`: the *exposure* of
/// the conjugate update of `inbound_stopped`. Minutes still in the minute ring count exactly;
/// older ones count by their hour (a share of the hour's count and of its baseline), so the
/// exposure does not shrink as a long silence pushes it out of the ring. Hours without a
/// baseline count for nothing: they say nothing about the rate relative to the baseline.
pub(crate) fn exposure(
    f: &FlowHistory,
    from: Minute,
    to: Minute,
    cfg: &BaselineConfig,
) -> (f64, f64, i64) {
    let oldest = f.minutes.oldest().unwrap_or(to);
    let (mut events, mut expected, mut minutes) = (0.0, 0.0, 0);
    let mut m = from.max(f.first_minute());
    while m < to {
        let h = m.div_euclid(60);
        let end = ((h + 1) * 60).min(to);
        if let Some(b) = hour_baseline(f, h, cfg) {
            if m >= oldest {
                let (n, k) = f.sum_minutes(m, end);
                events += n as f64;
                expected += profile_between(f, m, end, cfg);
                minutes += k;
            } else if let Some(n) = f.full_hour(h) {
                let share = (end - m) as f64 / 60.0;
                events += f64::from(n) * share;
                expected += b.expected * share;
                minutes += end - m;
            }
        }
        m = end;
    }
    (events, expected, minutes)
}

/// The exposure of the silence that began at `start`: the `prior_window` before the
/// silence's hour (not before `floor`, a planned quiet day's start), and for a slow flow the
/// hours of its working day before that ([`working_day_start`]). That earlier part lies
/// wholly before the silence, so it is read once per silence and kept in the flow
/// (`FlowHistory::earlier_exposure`): reading it on every tick doubled the cost of a tick over
/// 10,000 flows.
pub(crate) fn silence_exposure(
    f: &mut FlowHistory,
    start: Minute,
    floor: Minute,
    p: &InboundStopped,
    cfg: &BaselineConfig,
) -> (f64, f64, i64) {
    let hour_start = hour_of(start) * 60;
    let lo = (start - minutes_of(p.prior_window)).max(floor);
    let (c, e, minutes) = exposure(f, lo, hour_start.max(lo), cfg);
    let earlier = match f.earlier_exposure {
        Some(kept) if kept.start == start && kept.floor == floor => kept.part,
        _ => {
            let part = working_day_start(f, lo, hour_start, floor, e, p, cfg)
                .map(|from| exposure(f, from, lo, cfg));
            f.earlier_exposure = Some(EarlierExposure { start, floor, part });
            part
        }
    };
    match earlier {
        Some((c0, e0, m0)) => (c + c0, e + e0, minutes + m0),
        None => (c, e, minutes),
    }
}

/// Where the exposure of a slow flow starts, when it reaches further back than
/// `prior_window`: through the hours of the flow's working day before it, so that a flow of
/// a few events an hour has its day's level read from the whole day so far, not from the
/// dozen events of three hours. `None` when the exposure stays as it was: the flow is busy
/// enough (the exposure expects at least `slow_exposure_expected` events), or the hour before
/// it is already outside the working day.
///
/// The working day is the flow's own: the contiguous hours before the exposure whose
/// baseline is at least `working_share` of the busiest hour's within 12 hours either side of
/// the silence's hour. It ends at the flow's night, wherever that falls in UTC, so the
/// exposure never reaches back across a night into another day. That matters: a holiday
/// begins at a night, and an exposure that reaches back to the ordinary day before it reads
/// the holiday's quiet as an outage (the 6 h exposure measured on 2026-12-06 did). The
/// extension stops once the exposure expects `slow_exposure_expected` events, or spans
/// `longest_exposure`, or reaches `floor` (a planned quiet day's start).
fn working_day_start(
    f: &FlowHistory,
    lo: Minute,
    hour_start: Minute,
    floor: Minute,
    expected: f64,
    p: &InboundStopped,
    cfg: &BaselineConfig,
) -> Option<Minute> {
    if expected >= p.slow_exposure_expected || lo >= hour_start {
        return None;
    }
    let at = |h: Hour| hour_baseline(f, h, cfg).map(|b| b.expected);
    let centre = hour_of(hour_start);
    let peak = (centre - 12..centre + 12)
        .filter_map(at)
        .fold(0.0f64, f64::max);
    if peak <= 0.0 {
        return None;
    }
    let earliest = (hour_start - minutes_of(p.longest_exposure)).max(floor);
    let (mut from, mut total) = (lo, expected);
    while total < p.slow_exposure_expected && from > earliest {
        let h = hour_of(from - 1);
        match at(h) {
            Some(b) if b >= p.working_share * peak => {
                let begin = (h * 60).max(earliest);
                total += b * (from - begin) as f64 / 60.0;
                from = begin;
            }
            _ => break,
        }
    }
    (from < lo).then_some(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three weeks and a day of a business day in UTC, hour by hour: `peak` from 09:00 to
    /// 18:00, 60 % of it at 08:00 and 18:00, 30 % at 07:00 and 19:00, a tenth at night.
    fn business_days(peak: f64) -> FlowHistory {
        let cfg = BaselineConfig::default();
        let mut f = FlowHistory::new(0, 360, cfg.hour_capacity());
        for h in 0..22 * 24 {
            let share = match h % 24 {
                9..=17 => 1.0,
                8 | 18 => 0.6,
                7 | 19 => 0.3,
                _ => 0.1,
            };
            f.record_hour(h, (peak * share).round() as u32);
        }
        f
    }

    /// A slow flow's exposure reaches back through its working day, hour by hour, until it
    /// expects 60 events; never into its night, never past a planned quiet day's start, and
    /// not at all for a busy flow.
    #[test]
    fn a_slow_flows_exposure_reaches_back_through_its_working_day_only() {
        let cfg = BaselineConfig::default();
        let p = InboundStopped::default();
        let day = 21 * 24 * 60;
        let slow = business_days(10.0);
        // (the flow, the silence's start in minutes of day 21, a planned quiet day's start,
        // the exposure's start in minutes of the day, or None for the 3 h one)
        let table = [
            // 12:20–15:00 expects 27; 12:00, 11, 10 and 09 bring it to 60.
            (&slow, 15 * 60 + 20, None, Some(9 * 60)),
            // From 17:40: 14:40–17:00 expects 23; back to 11:00 it expects 60.
            (&slow, 17 * 60 + 40, None, Some(11 * 60)),
            // 07:20–10:00: the hour before, 07:00, is at 30 % of the peak: the night's.
            (&slow, 10 * 60 + 20, None, None),
            // 08:30–11:00 reaches back to 08:00, at 60 %, then stops at 07:00.
            (&slow, 11 * 60 + 30, None, Some(8 * 60)),
            // A silence at night: its exposure is the night's and stays so.
            (&slow, 2 * 60 + 10, None, None),
            // A planned quiet day ends the exposure at its start.
            (&slow, 15 * 60 + 20, Some(12 * 60 + 20), None),
            (&slow, 16 * 60 + 20, Some(12 * 60), Some(12 * 60)),
        ];
        for (f, start, floor, want) in table {
            let start = day + start;
            let floor = floor.map_or(Minute::MIN, |m| day + m);
            let lo = (start - minutes_of(p.prior_window)).max(floor);
            let hour_start = hour_of(start) * 60;
            let (_, e, _) = exposure(f, lo, hour_start.max(lo), &cfg);
            let got = working_day_start(f, lo, hour_start, floor, e, &p, &cfg);
            assert_eq!(got, want.map(|m| day + m), "silence from {}", start - day);
        }
        // A busy flow's 3 h already expect well over 60 events.
        let busy = business_days(100.0);
        let start = day + 15 * 60 + 20;
        let (lo, hour_start) = (start - 180, 15 * 60 + day);
        let (_, e, _) = exposure(&busy, lo, hour_start, &cfg);
        assert!(e > 200.0, "{e}");
        assert_eq!(
            working_day_start(&busy, lo, hour_start, Minute::MIN, e, &p, &cfg),
            None
        );
    }

    /// The working day is read once per silence and kept: a later tick of the same silence
    /// gets the same exposure, a new silence (or the same one on a planned quiet day) is
    /// read afresh.
    #[test]
    fn the_working_day_is_read_once_per_silence() {
        let cfg = BaselineConfig::default();
        let p = InboundStopped::default();
        let day = 21 * 24 * 60;
        let mut f = business_days(10.0);
        let afternoon = day + 15 * 60 + 20;
        let first = silence_exposure(&mut f, afternoon, Minute::MIN, &p, &cfg);
        // 09:00 to 15:00: six hours at the peak of 10 an hour.
        assert_eq!(first.2, 360, "{first:?}");
        assert!((first.1 - 60.0).abs() < 1e-9, "{first:?}");
        let kept = f.earlier_exposure;
        assert!(kept.is_some_and(|k| k.start == afternoon && k.part.is_some()));
        assert_eq!(
            silence_exposure(&mut f, afternoon, Minute::MIN, &p, &cfg),
            first
        );
        assert_eq!(f.earlier_exposure, kept);
        // A new silence in the morning: not extended, and what was kept is replaced.
        let morning = day + 10 * 60 + 20;
        let second = silence_exposure(&mut f, morning, Minute::MIN, &p, &cfg);
        assert_eq!(
            f.earlier_exposure.map(|k| (k.start, k.part)),
            Some((morning, None))
        );
        let fresh = silence_exposure(&mut business_days(10.0), morning, Minute::MIN, &p, &cfg);
        assert_eq!(second, fresh);
        // The afternoon silence on a planned quiet day since 12:20 is another question.
        let quiet = silence_exposure(&mut f, afternoon, day + 12 * 60 + 20, &p, &cfg);
        assert_eq!(quiet.2, 160, "{quiet:?}");
    }
}
