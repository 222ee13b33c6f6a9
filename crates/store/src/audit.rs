//! An audit's counts, assembled the same way on both backends from the rows each reads in its
//! own dialect (see [`crate::Store::audit`]): the counter sums by metric, the event rows by
//! origin and channel, the (event, destination) pairs by best state, and the events missing a
//! delivery to each routed destination.
//!
//! Rule: this module knows the model and the counters only; how the rows are read (and in
//! which snapshot) is each backend's business.

use std::collections::BTreeMap;

use intake_core::{EventId, Timestamp};

use crate::counters::Metric;
use crate::model::{
    AuditCounts, AuditQuery, AuditWindow, CountersKept, DestinationAudit, RequestCounts,
    Resolution, STORED_ORIGINS,
};

/// The rows one audit read.
#[derive(Debug, Default)]
pub(crate) struct AuditRows {
    /// Counter sums over the window, by metric name.
    pub(crate) counters: Vec<(String, i64)>,
    /// Event rows of the window: (origin, channel, count).
    pub(crate) events: Vec<(String, String, i64)>,
    /// Per destination: (destination, delivered, pending, dead) events.
    pub(crate) pairs: Vec<(String, i64, i64, i64)>,
    /// Per routed destination, in the order of the query's routes: how many events of the
    /// window have no delivery to it, and the first of them.
    pub(crate) missing: Vec<(i64, Vec<EventId>)>,
}

/// Since when the counters are complete, from the values compaction recorded. Absent: it never
/// deleted anything. Unreadable (a hand edit): nothing is assumed kept, so that an audit says
/// its counters are incomplete rather than vouch for them.
pub(crate) fn counters_kept(minutes: Option<&str>, hours: Option<&str>) -> CountersKept {
    let read = |v: Option<&str>| match v {
        None => Timestamp(i64::MIN),
        Some(v) => Timestamp(v.trim().parse().unwrap_or(i64::MAX)),
    };
    CountersKept {
        minutes_from: read(minutes),
        hours_from: read(hours),
    }
}

/// Where hourly rows end and minute rows take over in an audit's counter read: at the
/// window's start for a per-minute read (no hourly rows), else at the roll-up watermark, within
/// the window (hours before it are rolled up into `counters_hourly`).
pub(crate) fn hourly_until(window: &AuditWindow, rolled_until: i64) -> i64 {
    let (from, to) = (window.from.as_millis(), window.to.as_millis());
    match window.resolution {
        Resolution::Minute => from,
        Resolution::Hour => rolled_until.clamp(from, to.max(from)),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The counts of an audit of `q` over `window`, from its rows.
pub(crate) fn assemble(q: &AuditQuery, window: AuditWindow, rows: AuditRows) -> AuditCounts {
    let sums: BTreeMap<String, u64> = rows
        .counters
        .into_iter()
        .map(|(metric, n)| (metric, count(n)))
        .collect();
    let sum = |m: Metric| sums.get(m.as_str()).copied().unwrap_or(0);
    let requests = RequestCounts {
        accepted: sum(Metric::RequestsAccepted),
        duplicate: sum(Metric::RequestsDuplicate),
        rejected_signature: sum(Metric::RequestsRejectedSignature),
        rejected_invalid: sum(Metric::RequestsRejectedInvalid),
        too_large: sum(Metric::RequestsTooLarge),
    };
    let counted_by_origin = STORED_ORIGINS
        .iter()
        .filter_map(|o| {
            let n = sums.get(&format!("events.{o}")).copied().unwrap_or(0);
            (n > 0).then(|| (o.to_string(), n))
        })
        .collect();
    let mut stored = 0;
    let mut stored_by_origin: BTreeMap<String, u64> = BTreeMap::new();
    let mut stored_by_channel: BTreeMap<String, u64> = BTreeMap::new();
    for (origin, channel, n) in rows.events {
        let n = count(n);
        stored += n;
        *stored_by_origin.entry(origin).or_default() += n;
        *stored_by_channel.entry(channel).or_default() += n;
    }
    let mut destinations: Vec<DestinationAudit> = q
        .routes
        .iter()
        .map(|d| DestinationAudit {
            destination: d.clone(),
            routed: true,
            ..DestinationAudit::default()
        })
        .collect();
    for (d, (missing, sample)) in destinations.iter_mut().zip(rows.missing) {
        d.missing = count(missing);
        d.missing_sample = sample;
    }
    for (destination, delivered, pending, dead) in rows.pairs {
        let i = match destinations
            .iter()
            .position(|d| d.destination == destination)
        {
            Some(i) => i,
            None => {
                destinations.push(DestinationAudit {
                    destination,
                    ..DestinationAudit::default()
                });
                destinations.len() - 1
            }
        };
        let d = &mut destinations[i];
        d.delivered += count(delivered);
        d.pending += count(pending);
        d.dead += count(dead);
    }
    // The routed destinations in the order asked, then the others by name.
    let routed = q.routes.len().min(destinations.len());
    destinations[routed..].sort_by(|a, b| a.destination.cmp(&b.destination));
    AuditCounts {
        window,
        requests,
        counted_by_origin,
        stored,
        stored_by_origin,
        stored_by_channel,
        destinations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_assembled_per_origin_channel_and_destination() {
        let q = AuditQuery {
            source: "s".into(),
            from: Timestamp(0),
            to: Timestamp(60_000),
            routes: vec!["b".into(), "a".into()],
            sample: 5,
        };
        let window = AuditWindow::plan(q.from, q.to, CountersKept::default());
        let missing_id: EventId = EventId::generate(Timestamp(1));
        let rows = AuditRows {
            counters: vec![
                ("requests.accepted".into(), 5),
                ("requests.duplicate".into(), 2),
                ("requests.too_large".into(), 1),
                ("events.webhook".into(), 4),
                ("events.backfill".into(), 1),
                ("events.replay".into(), 9),
                ("deliveries.created".into(), 10),
            ],
            events: vec![
                ("webhook".into(), "email".into(), 3),
                ("webhook".into(), "chat".into(), 1),
                ("backfill".into(), "email".into(), 1),
            ],
            pairs: vec![
                ("a".into(), 4, 0, 1),
                ("old".into(), 0, 0, 2),
                ("b".into(), 3, 1, 0),
            ],
            missing: vec![(0, vec![]), (1, vec![missing_id.clone()])],
        };
        let c = assemble(&q, window, rows);
        assert_eq!(
            c.requests,
            RequestCounts {
                accepted: 5,
                duplicate: 2,
                too_large: 1,
                ..RequestCounts::default()
            }
        );
        // events.replay counts replays, which store no event: not an origin of rows.
        assert_eq!(
            c.counted_by_origin,
            BTreeMap::from([("backfill".into(), 1), ("webhook".into(), 4)])
        );
        assert_eq!(c.stored, 5);
        assert_eq!(
            c.stored_by_channel,
            BTreeMap::from([("chat".into(), 1), ("email".into(), 4)])
        );
        let names: Vec<(&str, bool)> = c
            .destinations
            .iter()
            .map(|d| (d.destination.as_str(), d.routed))
            .collect();
        assert_eq!(names, [("b", true), ("a", true), ("old", false)]);
        assert_eq!(
            (c.destinations[0].delivered, c.destinations[0].pending),
            (3, 1)
        );
        assert_eq!(c.destinations[1].missing_sample, vec![missing_id]);
        assert_eq!(c.destinations[2].dead, 2);
    }

    #[test]
    fn recorded_retention_marks_are_read_and_an_unreadable_one_keeps_nothing() {
        assert_eq!(counters_kept(None, None).minutes_from, Timestamp(i64::MIN));
        let k = counters_kept(Some("120000"), Some("garbage"));
        assert_eq!(k.minutes_from, Timestamp(120_000));
        assert_eq!(k.hours_from, Timestamp(i64::MAX));
    }

    #[test]
    fn hourly_rows_are_read_only_for_rolled_hours_of_an_hourly_window() {
        let hour = 3_600_000;
        let w = |resolution| AuditWindow {
            resolution,
            from: Timestamp(10 * hour),
            to: Timestamp(14 * hour),
            counters_kept: true,
        };
        assert_eq!(hourly_until(&w(Resolution::Minute), 12 * hour), 10 * hour);
        assert_eq!(hourly_until(&w(Resolution::Hour), 12 * hour), 12 * hour);
        assert_eq!(hourly_until(&w(Resolution::Hour), 20 * hour), 14 * hour);
        assert_eq!(hourly_until(&w(Resolution::Hour), 0), 10 * hour);
    }
}
