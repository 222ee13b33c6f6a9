//! Completion receipts: `completion_stalled` and `completion_errors`, decided from what a
//! queue on receipts holds (its [`CompletionSnapshot`]) and from its confirmations per minute
//! ([`QueueMinute::completed`], [`QueueMinute::completion_failed`]).
//!
//! `completion_stalled` is the story's bug seen from outside the handler: the handler
//! answered 2xx and its work never finished. It fires when the deliveries received and not
//! confirmed within the destination's deadline are at least a share of the flow — overdue /
//! (overdue + confirmed within the last deadline) — so one slow item among thousands does not
//! page, and a handler that drops everything is at 100 %. Its reason names the oldest item.

use std::time::Duration;

use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::history::QueueMinute;
use crate::params::{CompletionErrors, CompletionStalled};
use crate::stats::fmt_secs;

/// What a queue on receipts holds at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionSnapshot {
    /// The destination's `completion_deadline`.
    pub deadline: Duration,
    /// Received (2xx) and not confirmed.
    pub awaiting: u64,
    /// Of those, received longer than the deadline ago.
    pub overdue: u64,
    /// When the oldest awaiting one was received.
    pub oldest_received_at: Option<Timestamp>,
    /// The oldest awaiting delivery's id.
    pub oldest: Option<String>,
}

/// `completion_stalled` for one queue: its value (the overdue share) and reason, or `None`.
/// `confirmed` is the number of confirmations (either outcome) within the last deadline.
pub fn stalled(
    s: &CompletionSnapshot,
    confirmed: u64,
    now: Timestamp,
    p: &CompletionStalled,
) -> Option<(f64, String)> {
    if s.overdue == 0 || s.overdue < p.min_overdue {
        return None;
    }
    let share = s.overdue as f64 / (s.overdue + confirmed) as f64;
    if share < p.share {
        return None;
    }
    let oldest = match (&s.oldest, s.oldest_received_at) {
        (Some(id), Some(at)) => format!(
            "; oldest {id}, received {} ago",
            fmt_secs(now.since(at).as_secs())
        ),
        _ => String::new(),
    };
    let reason = format!(
        "{} deliveries answered 2xx but not confirmed within the completion deadline of {} \
         ({:.0}% of the flow, threshold {:.0}%; {} confirmed meanwhile, {} awaiting in all){oldest}",
        s.overdue,
        fmt_secs(s.deadline.as_secs()),
        share * 100.0,
        p.share * 100.0,
        confirmed,
        s.awaiting,
    );
    Some((share, reason))
}

/// `completion_errors` for one queue: the failed share of confirmations over the window
/// (`now`), against the previous day's (`day`); its value and reason, or `None`.
pub fn errors(now: QueueMinute, day: QueueMinute, p: &CompletionErrors) -> Option<(f64, String)> {
    let failed = u64::from(now.completion_failed);
    let total = failed + u64::from(now.completed);
    if total < p.min_confirmations || total == 0 {
        return None;
    }
    let ratio = failed as f64 / total as f64;
    let day_failed = u64::from(day.completion_failed);
    let day_total = day_failed + u64::from(day.completed);
    let base = if day_total >= p.min_confirmations {
        day_failed as f64 / day_total as f64
    } else {
        0.0
    };
    if ratio < base + p.increase {
        return None;
    }
    let reason = format!(
        "{failed} of {total} confirmations said the handler's work failed in the last {} ({:.0}%); \
         previous day {:.1}% of {day_total}; threshold +{:.0} points",
        fmt_secs(p.window.as_secs()),
        ratio * 100.0,
        base * 100.0,
        p.increase * 100.0
    );
    Some((ratio, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(overdue: u64, awaiting: u64) -> CompletionSnapshot {
        CompletionSnapshot {
            deadline: Duration::from_secs(600),
            awaiting,
            overdue,
            oldest_received_at: (awaiting > 0).then_some(Timestamp(0)),
            oldest: (awaiting > 0).then(|| "dlv_oldest".to_string()),
        }
    }

    #[test]
    fn stalled_table() {
        let p = CompletionStalled::default();
        let now = Timestamp(15 * 60_000);
        // (overdue, awaiting, confirmed within the deadline, fires)
        let cases = [
            (0, 0, 0, false),
            // Everything recent: nothing overdue yet.
            (0, 40, 0, false),
            // A handler that drops all of its work.
            (30, 40, 0, true),
            // One straggler among many confirmed: 1/1001 is below 5 %.
            (1, 1, 1000, false),
            // 10 of 110: above 5 %.
            (10, 12, 100, true),
            // Exactly at the threshold fires.
            (5, 5, 95, true),
        ];
        for (overdue, awaiting, confirmed, fires) in cases {
            let got = stalled(&snap(overdue, awaiting), confirmed, now, &p);
            assert_eq!(
                got.is_some(),
                fires,
                "{overdue} overdue, {confirmed} confirmed: {got:?}"
            );
        }
        let (value, reason) = stalled(&snap(30, 40), 0, now, &p).unwrap();
        assert_eq!(value, 1.0);
        assert!(
            reason.contains("dlv_oldest") && reason.contains("15m"),
            "{reason}"
        );
        let strict = CompletionStalled {
            min_overdue: 50,
            ..p
        };
        assert!(stalled(&snap(30, 40), 0, now, &strict).is_none());
    }

    fn minute(completed: u32, failed: u32) -> QueueMinute {
        QueueMinute {
            completed,
            completion_failed: failed,
            ..QueueMinute::default()
        }
    }

    #[test]
    fn errors_table() {
        let p = CompletionErrors::default();
        // (window, previous day, fires)
        let cases = [
            // Too few to judge.
            (minute(5, 5), minute(0, 0), false),
            // Half failing, none the day before.
            (minute(20, 20), minute(1000, 0), true),
            // As bad as yesterday: no rise.
            (minute(20, 20), minute(500, 500), false),
            // A small rise, under the 20-point threshold.
            (minute(90, 10), minute(1000, 0), false),
            // No history: judged against zero.
            (minute(10, 30), minute(0, 0), true),
        ];
        for (now, day, fires) in cases {
            assert_eq!(errors(now, day, &p).is_some(), fires, "{now:?} vs {day:?}");
        }
    }
}
