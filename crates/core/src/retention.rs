//! Retention (`storage.retention`): which old events may be deleted, decided as a pure
//! function of an event's age and the states of its deliveries, and the mark that tells
//! readers what retention may have removed.
//!
//! The promise retention keeps is the product's first one: *nothing acknowledged is ever
//! lost*. An event is deleted only once it is older than the retention **and** every one of
//! its deliveries is final — delivered (and, on a destination with completion receipts,
//! confirmed) or dead. An event whose work is pending, in flight, retrying, held by a
//! queue-stall drill (its deliveries stay pending) or awaiting its completion receipt is kept,
//! however old. So is an event with no delivery at all: that is the story's "received but
//! never queued", the evidence the audit shows and a requeue repairs.

use serde::{Deserialize, Serialize};

use crate::delivery::{CompletionState, DeliveryState};
use crate::time::Timestamp;

/// The name of the state document retention keeps ([`RetentionMark`]).
pub const RETENTION_STATE_KEY: &str = "retention";

/// Why an event past retention is kept, or that it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Received at or after the cutoff: not yet past retention.
    Recent,
    /// Past retention, and every delivery is final: delete it with its deliveries and
    /// attempts.
    Expire,
    /// Past retention, but a delivery is pending, in flight or retrying.
    KeepUnfinished,
    /// Past retention, but a delivery answered 2xx awaits its completion receipt.
    KeepAwaitingReceipt,
    /// Past retention, but the event has no delivery at all (received, never queued).
    KeepNeverQueued,
}

impl Verdict {
    /// Whether the event may be deleted.
    pub fn expires(self) -> bool {
        self == Verdict::Expire
    }
}

/// The state of one delivery of an event, as retention reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStage {
    /// The delivery's state.
    pub state: DeliveryState,
    /// Its completion stage on a destination with receipts (`None` elsewhere).
    pub completion: Option<CompletionState>,
}

/// Decides whether an event received at `received_at` may be deleted by a retention pass
/// whose cutoff is `cutoff` (events received before it are past retention).
pub fn decide(received_at: Timestamp, cutoff: Timestamp, deliveries: &[DeliveryStage]) -> Verdict {
    if received_at >= cutoff {
        return Verdict::Recent;
    }
    if deliveries.is_empty() {
        return Verdict::KeepNeverQueued;
    }
    if deliveries.iter().any(|d| !d.state.is_final()) {
        return Verdict::KeepUnfinished;
    }
    if deliveries
        .iter()
        .any(|d| d.completion == Some(CompletionState::Received))
    {
        return Verdict::KeepAwaitingReceipt;
    }
    Verdict::Expire
}

/// What retention has done, kept as one small state document
/// ([`RETENTION_STATE_KEY`]) that every node reads: the API and the audit to say that data
/// expired rather than that it never existed, `/metrics` for the totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionMark {
    /// Events received before this instant may have been deleted by retention (those whose
    /// work was not final are kept). Written *before* a pass deletes anything, and never
    /// moved back, so a reader that sees an event missing before it knows why.
    pub expired_before: Timestamp,
    /// When the last pass ended (`None`: none has ended yet).
    pub last_pass_at: Option<Timestamp>,
    /// Rows deleted since retention first ran, by kind.
    pub deleted: DeletedRows,
    /// Events past retention that the last pass kept because their work is not final.
    pub kept: u64,
}

/// Rows deleted, by kind (`intake_retention_deleted_total{kind}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedRows {
    /// Events (with their payloads).
    pub events: u64,
    /// Their deliveries.
    pub deliveries: u64,
    /// Those deliveries' attempt rows.
    pub attempts: u64,
    /// Recorded rejections (unparseable bodies) older than retention.
    pub rejections: u64,
}

impl DeletedRows {
    /// The sum of two tallies.
    pub fn plus(self, o: DeletedRows) -> DeletedRows {
        DeletedRows {
            events: self.events + o.events,
            deliveries: self.deliveries + o.deliveries,
            attempts: self.attempts + o.attempts,
            rejections: self.rejections + o.rejections,
        }
    }

    /// `(kind, count)` for each kind, in a fixed order (the metric's `kind` label).
    pub fn by_kind(self) -> [(&'static str, u64); 4] {
        [
            ("events", self.events),
            ("deliveries", self.deliveries),
            ("attempts", self.attempts),
            ("rejections", self.rejections),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CompletionState::*;
    use DeliveryState::*;

    fn stage(state: DeliveryState, completion: Option<CompletionState>) -> DeliveryStage {
        DeliveryStage { state, completion }
    }

    #[test]
    fn only_old_events_whose_every_delivery_is_final_expire() {
        let cutoff = Timestamp(1_000_000);
        let old = Timestamp(999_999);
        let cases: Vec<(Timestamp, Vec<DeliveryStage>, Verdict)> = vec![
            // Not past retention, whatever the deliveries.
            (cutoff, vec![stage(Delivered, None)], Verdict::Recent),
            (Timestamp(2_000_000), vec![], Verdict::Recent),
            // Past retention and done.
            (old, vec![stage(Delivered, None)], Verdict::Expire),
            (old, vec![stage(Dead, None)], Verdict::Expire),
            (
                old,
                vec![stage(Delivered, None), stage(Dead, None)],
                Verdict::Expire,
            ),
            (
                old,
                vec![stage(Delivered, Some(Completed))],
                Verdict::Expire,
            ),
            (
                old,
                vec![stage(Delivered, Some(CompletionFailed))],
                Verdict::Expire,
            ),
            // A replay's delivery still pending beside a delivered original: kept.
            (
                old,
                vec![stage(Delivered, None), stage(Pending, None)],
                Verdict::KeepUnfinished,
            ),
            (old, vec![stage(Pending, None)], Verdict::KeepUnfinished),
            (old, vec![stage(InFlight, None)], Verdict::KeepUnfinished),
            (
                old,
                vec![stage(Dead, None), stage(Retrying, None)],
                Verdict::KeepUnfinished,
            ),
            // Answered 2xx, its receipt never came.
            (
                old,
                vec![stage(Delivered, Some(Received))],
                Verdict::KeepAwaitingReceipt,
            ),
            (
                old,
                vec![
                    stage(Delivered, Some(Completed)),
                    stage(Delivered, Some(Received)),
                ],
                Verdict::KeepAwaitingReceipt,
            ),
            // Received and never queued (the story's bug): the audit's evidence.
            (Timestamp(0), vec![], Verdict::KeepNeverQueued),
        ];
        for (received_at, deliveries, verdict) in cases {
            let got = decide(received_at, cutoff, &deliveries);
            assert_eq!(got, verdict, "{received_at:?} {deliveries:?}");
            assert_eq!(got.expires(), verdict == Verdict::Expire);
        }
    }

    #[test]
    fn tallies_add_up_kind_by_kind() {
        let a = DeletedRows {
            events: 1,
            deliveries: 2,
            attempts: 3,
            rejections: 4,
        };
        let sum = a.plus(a);
        assert_eq!(
            sum.by_kind(),
            [
                ("events", 2),
                ("deliveries", 4),
                ("attempts", 6),
                ("rejections", 8)
            ]
        );
    }
}
