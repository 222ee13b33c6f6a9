//! The audit of one source's window (`intake audit`): what the store counted as it wrote, and
//! what it holds, read together from one snapshot so that a report can check that they agree.
//!
//! The counters and the rows answer the same questions in two independent ways: ingest counts
//! `requests.accepted` (and `events.<origin>`) in the transaction that stores the event row, at
//! the minute of its `received_at`. Both therefore cover *every* event stored through
//! [`Store::ingest`](crate::Store::ingest) — webhooks, backfilled events and canaries alike —
//! and an audit compares them over the same window of receipt times. Replays count
//! `events.replay` but store no event, so they are not part of that comparison.

use std::collections::BTreeMap;

use intake_core::{EventId, Timestamp};
use serde::Serialize;

use super::Resolution;

/// What an audit reads: one source, one window of receipt times.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// The source.
    pub source: String,
    /// Events received at or after this instant (widened to the counters' bucket, see
    /// [`AuditWindow::plan`]).
    pub from: Timestamp,
    /// Events received before this instant (widened likewise).
    pub to: Timestamp,
    /// The destinations the source routes to now: an event of the window with no delivery at
    /// all to one of them is `missing` there.
    pub routes: Vec<String>,
    /// How many missing event ids to list per destination.
    pub sample: usize,
}

/// Since when the counters of each resolution are complete: counter compaction deletes minute
/// rows (once rolled up into hours) and hourly rows older than their retention, and records
/// how far it went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersKept {
    /// Minute rows before this instant may have been deleted.
    pub minutes_from: Timestamp,
    /// Hourly rows before this instant may have been deleted.
    pub hours_from: Timestamp,
}

/// The window an audit counts over: the one asked for, widened to whole buckets of the
/// counters it reads, so that the counters and the event rows cover exactly the same events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditWindow {
    /// Minute counters where they are still kept, else hourly ones.
    pub resolution: Resolution,
    /// The first instant counted (the asked `from`, rounded down to the resolution).
    pub from: Timestamp,
    /// The end, exclusive (the asked `to`, rounded up to the resolution).
    pub to: Timestamp,
    /// Whether every counter of the window is still kept. `false` when the window starts
    /// before the hourly counters' retention: what the counters say is then incomplete.
    pub counters_kept: bool,
}

impl AuditWindow {
    /// The window over `[from, to)`: per minute when minute counters are kept from the window's
    /// first minute on, else per hour, widened to whole hours.
    pub fn plan(from: Timestamp, to: Timestamp, kept: CountersKept) -> AuditWindow {
        let widen = |resolution: Resolution| {
            let first = resolution.bucket(from);
            let last = resolution.bucket(to);
            let end = if last == to {
                to
            } else {
                Timestamp(last.as_millis() + resolution.millis())
            };
            (first, end.max(first))
        };
        let (first, end) = widen(Resolution::Minute);
        if first >= kept.minutes_from {
            return AuditWindow {
                resolution: Resolution::Minute,
                from: first,
                to: end,
                counters_kept: true,
            };
        }
        let (first, end) = widen(Resolution::Hour);
        AuditWindow {
            resolution: Resolution::Hour,
            from: first,
            to: end,
            counters_kept: first >= kept.hours_from,
        }
    }
}

/// The request outcomes the store counted (`requests.*` counters) over an audit's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RequestCounts {
    /// `requests.accepted`: new events stored, of every origin (webhooks and backfills alike).
    pub accepted: u64,
    /// `requests.duplicate`: requests that repeated a stored event.
    pub duplicate: u64,
    /// `requests.rejected_signature`.
    pub rejected_signature: u64,
    /// `requests.rejected_invalid`: unparseable bodies.
    pub rejected_invalid: u64,
    /// `requests.too_large`.
    pub too_large: u64,
}

/// One destination of an audit: each (event of the window, destination) counted once, by the
/// best state of its deliveries (a replay adds deliveries to a pair; the pair counts once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DestinationAudit {
    /// The destination.
    pub destination: String,
    /// Whether the source routes to it now (it was asked for in [`AuditQuery::routes`]).
    /// A destination no longer routed appears when events of the window have deliveries to
    /// it; events without one are not missing there.
    pub routed: bool,
    /// Events with a delivered delivery to it.
    pub delivered: u64,
    /// Events with none delivered and one still pending, retrying or in flight.
    pub pending: u64,
    /// Events whose every delivery to it is dead.
    pub dead: u64,
    /// Events with no delivery at all to it ("received but never queued"). Routed
    /// destinations only.
    pub missing: u64,
    /// The first missing events, by id.
    pub missing_sample: Vec<EventId>,
}

/// What an audit read: the counters and the rows of one source over one window, from one
/// snapshot of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCounts {
    /// The window counted over.
    pub window: AuditWindow,
    /// The `requests.*` counters.
    pub requests: RequestCounts,
    /// The `events.<origin>` counters of the origins that store events (`webhook`,
    /// `backfill`, `canary`), by origin; written with `requests.accepted`.
    pub counted_by_origin: BTreeMap<String, u64>,
    /// Event rows received in the window.
    pub stored: u64,
    /// Those, by origin.
    pub stored_by_origin: BTreeMap<String, u64>,
    /// Those, by normalized channel.
    pub stored_by_channel: BTreeMap<String, u64>,
    /// Per destination: the routed ones in the order asked, then the others by name.
    pub destinations: Vec<DestinationAudit>,
}

/// The `events.<origin>` counters an audit compares with event rows: the origins an event row
/// can have. (`events.replay` counts replays, which store no event.)
pub const STORED_ORIGINS: [&str; 3] = ["webhook", "backfill", "canary"];

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 3_600_000;

    fn kept(minutes_from: i64, hours_from: i64) -> CountersKept {
        CountersKept {
            minutes_from: Timestamp(minutes_from),
            hours_from: Timestamp(hours_from),
        }
    }

    #[test]
    fn the_window_is_widened_to_the_buckets_of_the_counters_still_kept() {
        let base = 1_000 * HOUR;
        // (from, to, kept) → (resolution, from, to, counters kept)
        let cases = [
            // Minute rows kept: whole minutes around the asked window.
            (
                (base + 30_000, base + 5 * MIN + 1, kept(0, 0)),
                (Resolution::Minute, base, base + 6 * MIN, true),
            ),
            // Already on minute boundaries: unchanged.
            (
                (base, base + 10 * MIN, kept(base, 0)),
                (Resolution::Minute, base, base + 10 * MIN, true),
            ),
            // Minute rows deleted inside the window: whole hours instead.
            (
                (base + 30 * MIN, base + 90 * MIN, kept(base + 40 * MIN, 0)),
                (Resolution::Hour, base, base + 2 * HOUR, true),
            ),
            // Even the hourly rows are gone for part of it.
            (
                (base, base + HOUR, kept(base + 5 * HOUR, base + 1)),
                (Resolution::Hour, base, base + HOUR, false),
            ),
            // A window inside one minute counts that whole minute.
            (
                (base + 7, base + 9, kept(0, 0)),
                (Resolution::Minute, base, base + MIN, true),
            ),
        ];
        for ((from, to, k), (resolution, f, t, counters_kept)) in cases {
            let w = AuditWindow::plan(Timestamp(from), Timestamp(to), k);
            assert_eq!(
                w,
                AuditWindow {
                    resolution,
                    from: Timestamp(f),
                    to: Timestamp(t),
                    counters_kept
                },
                "{from} {to} {k:?}"
            );
        }
    }
}
