//! Repeated log lines, counted and summarised: the decision of whether one more occurrence of
//! the same problem is worth a line of its own.
//!
//! A store outage makes every ingest request fail the same way. Logging each one wrote 217,000
//! lines in 40 seconds, enough to fill the disk the logs share, and told the operator nothing
//! the first line had not. So the hot log sites ask a [`LogLimiter`] first: the first
//! occurrence is logged in full, the next ones in the same interval are only counted, and the
//! first occurrence after the interval logs one summary ("refused 12,345 requests in the last
//! 10 s: store unavailable") instead of its own line. A burst that ends leaves its count to
//! [`LogLimiter::flush`], which a periodic task calls. The metrics still count every one.
//!
//! The limiter is a pure function of the instants it is given; the log site owns the text and
//! emits the line.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use crate::time::Timestamp;

/// How long repeated occurrences of one kind are only counted before a summary is written.
pub const LOG_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What a log site does with one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVerdict {
    /// Log this occurrence in full: the first in its interval.
    Log,
    /// Only count it: a line was already written in this interval.
    Quiet,
    /// Log one summary of the occurrences counted since the last line (this one included)
    /// instead of this occurrence.
    Summary(Summary),
}

/// Occurrences counted without a line of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many.
    pub count: u64,
    /// Over how long (from the last line written to now).
    pub over: Duration,
}

impl Summary {
    /// `"{verb} {count} {things} in the last {over}: {reason}"`, with the count grouped by
    /// thousands and the interval in whole seconds, e.g. "refused 12,345 requests in the last
    /// 10 s: store unavailable".
    pub fn describe(&self, verb: &str, things: &str, reason: &str) -> String {
        format!(
            "{verb} {} {things} in the last {} s: {reason}",
            Grouped(self.count),
            self.over.as_secs().max(1)
        )
    }
}

/// A number with a comma between each group of three digits.
struct Grouped(u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        // The first group holds what is left over by the groups of three after it.
        let first = match digits.len() % 3 {
            0 => 3,
            n => n,
        };
        let (head, rest) = digits.split_at(first.min(digits.len()));
        f.write_str(head)?;
        for group in rest.as_bytes().chunks(3) {
            f.write_str(",")?;
            f.write_str(std::str::from_utf8(group).unwrap_or_default())?;
        }
        Ok(())
    }
}

/// Decides, for one kind of repeated problem, which occurrences get a line.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval: Duration,
    /// When the last line (full or summary) was written; `None` before the first occurrence.
    last_line: Option<Timestamp>,
    /// Occurrences counted since that line.
    quiet: u64,
}

impl LogLimiter {
    /// At most one line per `interval` (a zero interval logs every occurrence).
    pub const fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last_line: None,
            quiet: 0,
        }
    }

    /// One more occurrence at `now`.
    pub fn hit(&mut self, now: Timestamp) -> LogVerdict {
        let Some(last) = self.last_line else {
            self.last_line = Some(now);
            return LogVerdict::Log;
        };
        if now.since(last) < self.interval {
            self.quiet += 1;
            return LogVerdict::Quiet;
        }
        self.last_line = Some(now);
        if self.quiet == 0 {
            // Nothing was left unsaid: this occurrence starts a new burst.
            return LogVerdict::Log;
        }
        let count = std::mem::take(&mut self.quiet) + 1;
        LogVerdict::Summary(Summary {
            count,
            over: now.since(last),
        })
    }

    /// The summary of occurrences still only counted, once their interval has passed (`None`
    /// if there are none or the interval is still running). Called periodically, so the end
    /// of a burst is reported without waiting for another occurrence.
    pub fn flush(&mut self, now: Timestamp) -> Option<Summary> {
        let last = self.last_line?;
        if self.quiet == 0 || now.since(last) < self.interval {
            return None;
        }
        self.last_line = Some(now);
        Some(Summary {
            count: std::mem::take(&mut self.quiet),
            over: now.since(last),
        })
    }
}

impl LogLimiter {
    /// The summary of every occurrence still only counted, whether or not its interval has
    /// passed: what a process that stops must still say.
    pub fn finish(&mut self, now: Timestamp) -> Option<Summary> {
        let last = self.last_line?;
        if self.quiet == 0 {
            return None;
        }
        self.last_line = Some(now);
        Some(Summary {
            count: std::mem::take(&mut self.quiet),
            over: now.since(last),
        })
    }
}

/// A [`LogLimiter`] that tasks share (a log site reached from many requests at once).
#[derive(Debug)]
pub struct SharedLogLimiter(Mutex<LogLimiter>);

impl SharedLogLimiter {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        SharedLogLimiter(Mutex::new(LogLimiter::new(interval)))
    }

    /// See [`LogLimiter::hit`].
    pub fn hit(&self, now: Timestamp) -> LogVerdict {
        match self.0.lock() {
            Ok(mut l) => l.hit(now),
            Err(p) => p.into_inner().hit(now),
        }
    }

    /// See [`LogLimiter::flush`].
    pub fn flush(&self, now: Timestamp) -> Option<Summary> {
        match self.0.lock() {
            Ok(mut l) => l.flush(now),
            Err(p) => p.into_inner().flush(now),
        }
    }
}

impl SharedLogLimiter {
    /// See [`LogLimiter::finish`].
    pub fn finish(&self, now: Timestamp) -> Option<Summary> {
        match self.0.lock() {
            Ok(mut l) => l.finish(now),
            Err(p) => p.into_inner().finish(now),
        }
    }
}

impl Default for SharedLogLimiter {
    fn default() -> Self {
        SharedLogLimiter::new(LOG_SUMMARY_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(10);

    fn at(secs_tenths: i64) -> Timestamp {
        Timestamp(1_000_000 + secs_tenths * 100)
    }

    fn summary(count: u64, over_tenths: u64) -> LogVerdict {
        LogVerdict::Summary(Summary {
            count,
            over: Duration::from_millis(over_tenths * 100),
        })
    }

    #[test]
    fn occurrences_become_a_first_line_then_one_summary_per_interval() {
        use LogVerdict::{Log, Quiet};
        // (instant in tenths of a second, expected verdict)
        let table: &[(&str, &[(i64, LogVerdict)])] = &[
            ("a single occurrence is logged", &[(0, Log)]),
            (
                "a burst inside one interval: one line",
                &[(0, Log), (1, Quiet), (2, Quiet), (99, Quiet)],
            ),
            (
                "the first occurrence after the interval summarises the burst, itself included",
                &[(0, Log), (1, Quiet), (2, Quiet), (100, summary(3, 100))],
            ),
            (
                "after a summary the next interval is quiet again",
                &[
                    (0, Log),
                    (5, Quiet),
                    (100, summary(2, 100)),
                    (150, Quiet),
                    (210, summary(2, 110)),
                ],
            ),
            (
                "a lone occurrence after a quiet interval is logged in full",
                &[(0, Log), (100, Log), (300, Log)],
            ),
            (
                "exactly at the end of the interval counts as after it",
                &[(0, Log), (50, Quiet), (100, summary(2, 100))],
            ),
            (
                "a clock that goes back stays quiet",
                &[(100, Log), (50, Quiet), (0, Quiet)],
            ),
        ];
        for (case, steps) in table {
            let mut l = LogLimiter::new(S);
            for (i, (t, want)) in steps.iter().enumerate() {
                assert_eq!(l.hit(at(*t)), *want, "{case}: step {i}");
            }
        }
    }

    #[test]
    fn a_zero_interval_logs_everything() {
        let mut l = LogLimiter::new(Duration::ZERO);
        for t in [0, 0, 1, 1] {
            assert_eq!(l.hit(at(t)), LogVerdict::Log);
        }
    }

    #[test]
    fn flush_reports_the_end_of_a_burst_once() {
        let mut l = LogLimiter::new(S);
        assert_eq!(l.flush(at(0)), None, "nothing happened yet");
        assert_eq!(l.hit(at(0)), LogVerdict::Log);
        assert_eq!(
            l.flush(at(200)),
            None,
            "only the logged line: nothing to add"
        );
        for t in 1..=5 {
            assert_eq!(l.hit(at(t)), LogVerdict::Quiet);
        }
        assert_eq!(l.flush(at(99)), None, "the interval is still running");
        assert_eq!(l.flush(at(100)), Some(Summary { count: 5, over: S }));
        assert_eq!(l.flush(at(300)), None, "said once");
        assert_eq!(
            l.hit(at(301)),
            LogVerdict::Log,
            "a new burst starts in full"
        );
    }

    #[test]
    fn many_occurrences_make_a_number_of_lines_bounded_by_the_time_they_span() {
        let mut l = LogLimiter::new(S);
        let mut lines = 0;
        // 100,000 occurrences over 40 s: a line at most every 10 s.
        for i in 0..100_000i64 {
            if l.hit(Timestamp(i * 40_000 / 100_000)) != LogVerdict::Quiet {
                lines += 1;
            }
        }
        assert!(lines <= 5, "{lines} lines");
    }

    #[test]
    fn finish_says_what_is_left_before_the_interval_ends() {
        let mut l = LogLimiter::new(S);
        assert_eq!(l.finish(at(0)), None, "nothing happened");
        assert_eq!(l.hit(at(0)), LogVerdict::Log);
        assert_eq!(l.finish(at(1)), None, "the only occurrence was logged");
        assert_eq!(l.hit(at(2)), LogVerdict::Quiet);
        assert_eq!(l.hit(at(3)), LogVerdict::Quiet);
        assert_eq!(
            l.finish(at(30)),
            Some(Summary {
                count: 2,
                over: Duration::from_secs(3)
            })
        );
        assert_eq!(l.finish(at(31)), None, "said once");
    }

    #[test]
    fn summaries_read_as_a_sentence() {
        let table = [
            (
                0,
                10,
                "refused 0 requests in the last 10 s: store unavailable",
            ),
            (
                7,
                10,
                "refused 7 requests in the last 10 s: store unavailable",
            ),
            (
                999,
                0,
                "refused 999 requests in the last 1 s: store unavailable",
            ),
            (
                1_000,
                12,
                "refused 1,000 requests in the last 12 s: store unavailable",
            ),
            (
                12_345,
                10,
                "refused 12,345 requests in the last 10 s: store unavailable",
            ),
            (
                1_234_567,
                10,
                "refused 1,234,567 requests in the last 10 s: store unavailable",
            ),
        ];
        for (count, secs, want) in table {
            let s = Summary {
                count,
                over: Duration::from_secs(secs),
            };
            assert_eq!(s.describe("refused", "requests", "store unavailable"), want);
        }
    }
}
