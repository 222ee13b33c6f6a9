//! The audit's reads on SQLite: counters, event rows and deliveries of one source's window, in
//! one read transaction, so that they are one snapshot of the WAL (an ingest committing
//! meanwhile is in all of them or in none: its event, deliveries and counters commit together).
//!
//! The window is a range of event ids (ULIDs whose time part is the instant of receipt),
//! served by the primary key; `+source` keeps SQLite from reading every event of the source
//! through the dedupe index instead.

use intake_core::EventId;
use rusqlite::{params, Connection, OptionalExtension};

use super::reads::parse_id;
use super::SqliteStore;
use crate::audit::{self, AuditRows};
use crate::model::*;
use crate::sql::{DELIVERY_STATE_RANK, HOURS_KEPT_KEY, MINUTES_KEPT_KEY};
use crate::Result;

/// The events of the window, as a `WHERE` clause on `e` (parameters 1 to 5).
const WINDOW: &str = "+e.source = ?1 AND e.id >= ?2 AND e.id < ?3 \
     AND e.received_at >= ?4 AND e.received_at < ?5";

impl SqliteStore {
    pub(super) async fn audit_counts(&self, q: AuditQuery) -> Result<AuditCounts> {
        self.read(move |c| {
            // Deferred: the snapshot is taken by the first read and held to the end.
            let tx = c.unchecked_transaction()?;
            let window = AuditWindow::plan(q.from, q.to, kept(&tx)?);
            let rows = read(&tx, &q, &window)?;
            tx.finish()?;
            Ok(audit::assemble(&q, window, rows))
        })
        .await
    }
}

fn meta(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

fn kept(c: &Connection) -> rusqlite::Result<CountersKept> {
    Ok(audit::counters_kept(
        meta(c, MINUTES_KEPT_KEY)?.as_deref(),
        meta(c, HOURS_KEPT_KEY)?.as_deref(),
    ))
}

fn read(c: &Connection, q: &AuditQuery, w: &AuditWindow) -> rusqlite::Result<AuditRows> {
    let (from, to) = (w.from.as_millis(), w.to.as_millis());
    let window = params![
        q.source,
        EventId::lower_bound(w.from),
        EventId::lower_bound(w.to),
        from,
        to
    ];
    let split = audit::hourly_until(w, super::reads::rolled_until(c)?);
    let counters = c
        .prepare_cached(
            "SELECT metric, SUM(n) FROM (
                SELECT metric, count AS n FROM counters_hourly
                WHERE hour >= ?1 AND hour < ?2 AND source = ?4
                UNION ALL
                SELECT metric, count FROM counters
                WHERE minute >= ?2 AND minute < ?3 AND source = ?4)
             GROUP BY metric",
        )?
        .query_map(params![from, split, to, q.source], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let events = c
        .prepare_cached(&format!(
            "SELECT e.origin, e.channel, COUNT(*) FROM events e WHERE {WINDOW}
             GROUP BY e.origin, e.channel"
        ))?
        .query_map(window, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let pairs = c
        .prepare_cached(&format!(
            "SELECT destination,
                SUM(CASE WHEN best = 2 THEN 1 ELSE 0 END),
                SUM(CASE WHEN best = 1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN best = 0 THEN 1 ELSE 0 END)
             FROM (SELECT d.destination AS destination, MAX({DELIVERY_STATE_RANK}) AS best
                   FROM events e JOIN deliveries d ON d.event_id = e.id
                   WHERE {WINDOW} GROUP BY d.event_id, d.destination)
             GROUP BY destination ORDER BY destination"
        ))?
        .query_map(window, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut missing = Vec::with_capacity(q.routes.len());
    for destination in &q.routes {
        missing.push(missing_to(c, q, w, destination)?);
    }
    Ok(AuditRows {
        counters,
        events,
        pairs,
        missing,
    })
}

/// How many events of the window have no delivery to `destination`, and the first of them.
fn missing_to(
    c: &Connection,
    q: &AuditQuery,
    w: &AuditWindow,
    destination: &str,
) -> rusqlite::Result<(i64, Vec<EventId>)> {
    let (lo, hi) = (EventId::lower_bound(w.from), EventId::lower_bound(w.to));
    let (from, to) = (w.from.as_millis(), w.to.as_millis());
    let without = format!(
        "FROM events e WHERE {WINDOW} AND NOT EXISTS (
            SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.destination = ?6)"
    );
    let n: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) {without}"))?
        .query_row(params![q.source, lo, hi, from, to, destination], |r| {
            r.get(0)
        })?;
    if n == 0 || q.sample == 0 {
        return Ok((n, Vec::new()));
    }
    let limit = i64::try_from(q.sample).unwrap_or(i64::MAX);
    let sample = c
        .prepare_cached(&format!("SELECT e.id {without} ORDER BY e.id LIMIT ?7"))?
        .query_map(
            params![q.source, lo, hi, from, to, destination, limit],
            |r| parse_id(&r.get::<_, String>(0)?),
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok((n, sample))
}
