//! Which windows reconciliation checks, and when: pure arithmetic on instants.
//!
//! A window is `(from, to]`: it starts just after the previous one ended, so windows are
//! contiguous and no instant is checked twice. Each ends `lag` before the tick that checks it,
//! so a webhook that is merely slow is not taken for a missing one. The end of the last
//! window checked is stored; after a restart the next window starts there, so nothing is
//! skipped and nothing is checked again. Windows are at most one `interval` long: a duty that
//! was stopped for a while catches up window by window, each with its own gap.

use std::time::Duration;

use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

/// How far behind reconciliation catches up. Windows older than this (the duty was off for
/// more than a day) are skipped and said so: checking them all would delay the windows that
/// matter now, and `intake recover backfill --dry-run` checks any past window on demand.
pub const MAX_BEHIND: Duration = Duration::from_secs(24 * 3600);

/// A checked window: `(from, to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Span {
    /// Start, exclusive.
    pub from: Timestamp,
    /// End, inclusive.
    pub to: Timestamp,
}

impl Span {
    /// Whether `t` is inside `(from, to]`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from < t && t <= self.to
    }
}

/// What a tick has to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The windows, oldest first.
    pub windows: Vec<Span>,
    /// The stretch left unchecked because it lies more than [`MAX_BEHIND`] back.
    pub skipped: Option<Span>,
}

/// The windows due at `now`, given where the last checked window ended (`None` before the
/// first check): from there up to `now − lag`, cut into windows of at most `interval`. The
/// first window ever is the one `interval` long that ends at `now − lag`.
pub fn due(
    checked_until: Option<Timestamp>,
    now: Timestamp,
    lag: Duration,
    interval: Duration,
) -> Due {
    let end = now.minus(lag);
    let step = interval.max(Duration::from_secs(1));
    let mut from = checked_until.unwrap_or_else(|| end.minus(step));
    let mut skipped = None;
    let oldest = end.minus(MAX_BEHIND);
    if from < oldest {
        skipped = Some(Span { from, to: oldest });
        from = oldest;
    }
    let mut windows = Vec::new();
    while from < end {
        let to = from.plus(step).min(end);
        windows.push(Span { from, to });
        from = to;
    }
    Due { windows, skipped }
}

/// The next tick after `now`: the next multiple of `interval` since the epoch, so that the
/// windows of every node and every restart fall on the same round boundaries (10:00, 10:10).
pub fn next_tick(now: Timestamp, interval: Duration) -> Timestamp {
    let step = interval.as_millis().max(1) as i64;
    let boundary = now.as_millis().div_euclid(step) * step;
    Timestamp(boundary + step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(&format!("2026-11-28T{s}Z")).unwrap()
    }

    fn min(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    fn span(from: &str, to: &str) -> Span {
        Span {
            from: t(from),
            to: t(to),
        }
    }

    #[test]
    fn windows_are_contiguous_lag_behind_and_at_most_an_interval_long() {
        let lag = min(15);
        let every = min(10);
        let cases: Vec<(&str, Option<&str>, &str, Vec<Span>)> = vec![
            (
                "the first tick checks the interval that ended a lag ago",
                None,
                "10:10:00",
                vec![span("09:45:00", "09:55:00")],
            ),
            (
                "the next tick continues where the last window ended",
                Some("09:55:00"),
                "10:20:00",
                vec![span("09:55:00", "10:05:00")],
            ),
            (
                "a late tick checks one longer stretch in interval-long windows",
                Some("09:55:00"),
                "10:43:00",
                vec![
                    span("09:55:00", "10:05:00"),
                    span("10:05:00", "10:15:00"),
                    span("10:15:00", "10:25:00"),
                    span("10:25:00", "10:28:00"),
                ],
            ),
            (
                "an early tick (or a clock stepped back) checks nothing",
                Some("10:05:00"),
                "10:19:00",
                vec![],
            ),
            (
                "a tick exactly at the end checks nothing",
                Some("10:05:00"),
                "10:20:00",
                vec![],
            ),
        ];
        for (what, until, now, want) in cases {
            let got = due(until.map(t), t(now), lag, every);
            assert_eq!(got.windows, want, "{what}");
            assert_eq!(got.skipped, None, "{what}");
        }
    }

    #[test]
    fn a_duty_off_for_more_than_a_day_skips_the_oldest_stretch_and_says_so() {
        let now = t("12:00:00");
        let got = due(
            Some(now.minus(Duration::from_secs(3 * 24 * 3600))),
            now,
            min(15),
            min(60),
        );
        let oldest = now.minus(min(15)).minus(MAX_BEHIND);
        assert_eq!(
            got.skipped,
            Some(Span {
                from: now.minus(Duration::from_secs(3 * 24 * 3600)),
                to: oldest
            })
        );
        assert_eq!(got.windows.len(), 24);
        assert_eq!(got.windows[0].from, oldest);
        assert_eq!(got.windows[23].to, now.minus(min(15)));
        for pair in got.windows.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
    }

    #[test]
    fn ticks_fall_on_round_boundaries_and_a_window_excludes_its_start() {
        assert_eq!(next_tick(t("10:03:17"), min(10)), t("10:10:00"));
        assert_eq!(next_tick(t("10:10:00"), min(10)), t("10:20:00"));
        assert_eq!(next_tick(t("10:59:59"), min(60)), t("11:00:00"));
        let w = span("10:00:00", "10:10:00");
        assert!(!w.contains(t("10:00:00")));
        assert!(w.contains(t("10:00:01")));
        assert!(w.contains(t("10:10:00")));
        assert!(!w.contains(t("10:10:01")));
    }
}
