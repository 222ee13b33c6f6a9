//! Reads: the pool of read connections, which WAL lets run beside the writer, the larger
//! queries of the [`Store`](crate::Store) reads, a few readers of SQLite-only row shapes, and
//! how a column of an SQLite row is read for the shared row readers ([`Columns`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use intake_core::{EventId, Timestamp};
use rusqlite::{Connection, OptionalExtension};

use crate::decode::{self, Columns};
use crate::model::*;
use crate::sql::{DELIVERED_ATTEMPTS, DELIVERY_COLUMNS, EVENT_COLUMNS};

/// A few read-only connections, taken in turn.
pub(super) struct ReadPool {
    pub(super) conns: Vec<Mutex<Connection>>,
    pub(super) next: AtomicUsize,
}

impl ReadPool {
    /// Runs `f` on a free connection, looking from the next one in turn; only when every
    /// connection is busy does it wait, for the next one. Taking the next one blindly made a
    /// quarter of the reads wait behind a long one (the queue gauges' count of millions of
    /// rows): a `/metrics` scrape of a few small reads took as long as that count.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let n = self.conns.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        // A reader that panicked mid-query left its connection usable: SQLite statements are
        // finalized on drop. So a poisoned lock is taken over rather than propagated.
        for k in 0..n {
            match self.conns[(first + k) % n].try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(p)) => return f(&p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let conn = self.conns[first % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// Hours before this instant (meta `counters_rolled_until`, milliseconds) are in
/// `counters_hourly`; later hours are read from minute rows.
pub(super) fn rolled_until(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT value FROM meta WHERE key = 'counters_rolled_until'")?
        .query_row([], |r| r.get::<_, String>(0))
        .optional()
        .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

pub(super) fn read_counters(c: &Connection, q: &CounterQuery) -> rusqlite::Result<Vec<CounterRow>> {
    use rusqlite::types::Value;
    let from = q.resolution.bucket(q.from).as_millis();
    let to = q.to.as_millis();
    let mut filter = String::new();
    let mut args: Vec<Value> = Vec::new();
    if !q.metrics.is_empty() {
        filter.push_str(" AND metric IN (");
        for (i, m) in q.metrics.iter().enumerate() {
            filter.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(Value::Text(m.clone()));
        }
        filter.push(')');
    }
    if let Some(t) = &q.tenant {
        filter.push_str(" AND tenant = ?");
        args.push(Value::Text(t.clone()));
    }
    if let Some(s) = &q.source {
        filter.push_str(" AND source = ?");
        args.push(Value::Text(s.clone()));
    }
    let (sql, mut params) = match q.resolution {
        Resolution::Minute => (
            format!(
                "SELECT minute, tenant, source, channel, destination, metric, count
                 FROM counters WHERE minute >= ? AND minute < ?{filter}
                 ORDER BY minute, tenant, source, channel, destination, metric"
            ),
            vec![Value::Integer(from), Value::Integer(to)],
        ),
        Resolution::Hour => {
            let split = rolled_until(c)?.clamp(from, to.max(from));
            (
                format!(
                    "SELECT hour, tenant, source, channel, destination, metric, count
                     FROM counters_hourly WHERE hour >= ? AND hour < ?{filter}
                     UNION ALL
                     SELECT (minute / 3600000) * 3600000 AS h, tenant, source, channel,
                            destination, metric, SUM(count)
                     FROM counters WHERE minute >= ? AND minute < ?{filter}
                     GROUP BY h, tenant, source, channel, destination, metric
                     ORDER BY 1, 2, 3, 4, 5, 6"
                ),
                vec![Value::Integer(from), Value::Integer(split)],
            )
        }
    };
    params.extend(args.iter().cloned());
    if q.resolution == Resolution::Hour {
        let split = match &params[1] {
            Value::Integer(v) => *v,
            _ => to,
        };
        params.push(Value::Integer(split));
        params.push(Value::Integer(to));
        params.extend(args.iter().cloned());
    }
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        decode::counter_row(r)
    })?;
    rows.collect()
}

/// A counter row in the column order `bucket, tenant, source, channel, destination, metric,
/// count` (minute or hourly table).
pub(super) fn migrated_counter(r: &rusqlite::Row<'_>) -> rusqlite::Result<crate::rows::CounterRow> {
    Ok(crate::rows::CounterRow {
        minute: r.get(0)?,
        tenant: r.get(1)?,
        source: r.get(2)?,
        channel: r.get(3)?,
        destination: r.get(4)?,
        metric: r.get(5)?,
        count: r.get(6)?,
    })
}

pub(super) fn parse_id<T: std::str::FromStr>(s: &str) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn deliveries_of(
    c: &Connection,
    event_id: &str,
) -> rusqlite::Result<Vec<DeliverySummary>> {
    c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?1 ORDER BY destination, id"
    ))?
    .query_map([event_id], |r| decode::delivery_summary(r).map(|(_, d)| d))?
    .collect()
}

pub(super) fn list_events(c: &Connection, f: &EventFilter) -> rusqlite::Result<Vec<EventSummary>> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(t) = &f.tenant {
        arg(&mut sql, " AND tenant = ?", t.clone().into());
    }
    if let Some(s) = &f.source {
        // With a range of ids to read (a time window, a page cursor), the primary key serves
        // it and the source is a filter: `+source` keeps SQLite from reading every event of
        // the source through the dedupe index and sorting them, once per page.
        let ranged = f.from.is_some() || f.to.is_some() || f.before.is_some() || f.after.is_some();
        let clause = if ranged {
            " AND +source = ?"
        } else {
            " AND source = ?"
        };
        arg(&mut sql, clause, s.clone().into());
    }
    if let Some(t) = &f.event_type {
        arg(&mut sql, " AND event_type = ?", t.clone().into());
    }
    if let Some(ch) = &f.channel {
        arg(&mut sql, " AND channel = ?", ch.clone().into());
    }
    // Event ids are ULIDs whose time part is the instant of receipt, so a time window is also
    // a range of ids: the primary key serves it, and no index on `received_at` is needed.
    if let Some(t) = f.from {
        arg(&mut sql, " AND id >= ?", EventId::lower_bound(t).into());
        arg(&mut sql, " AND received_at >= ?", t.as_millis().into());
    }
    if let Some(t) = f.to {
        arg(&mut sql, " AND id < ?", EventId::lower_bound(t).into());
        arg(&mut sql, " AND received_at < ?", t.as_millis().into());
    }
    if let Some(b) = &f.before {
        arg(&mut sql, " AND id < ?", b.as_str().to_string().into());
    }
    if let Some(a) = &f.after {
        arg(&mut sql, " AND id > ?", a.as_str().to_string().into());
    }
    if let Some(o) = f.origin {
        arg(&mut sql, " AND origin = ?", o.as_str().to_string().into());
    }
    // One delivery must match every delivery condition at once.
    if f.destination.is_some() || f.state.is_some() || f.completion.is_some() {
        sql.push_str(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id");
        if let Some(d) = &f.destination {
            arg(&mut sql, " AND d.destination = ?", d.clone().into());
        }
        if let Some(st) = f.state {
            arg(&mut sql, " AND d.state = ?", st.as_str().to_string().into());
        }
        if let Some(c) = f.completion {
            arg(
                &mut sql,
                " AND d.completion = ?",
                c.as_str().to_string().into(),
            );
        }
        sql.push(')');
    }
    sql.push_str(&format!(
        " ORDER BY id {} LIMIT {}",
        if f.ascending { "ASC" } else { "DESC" },
        f.limit.clamp(1, 1000)
    ));
    let mut events: Vec<EventSummary> = c
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(args), |r| {
            decode::event_summary(r)
        })?
        .collect::<rusqlite::Result<_>>()?;
    for e in &mut events {
        e.deliveries = deliveries_of(c, e.id.as_str())?;
    }
    Ok(events)
}

pub(super) fn get_event(c: &Connection, id: &EventId) -> rusqlite::Result<Option<EventDetail>> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, headers, body FROM events WHERE id = ?1"
        ))?
        .query_row([id.as_str()], |r| {
            let summary = decode::event_summary(r)?;
            let headers: String = r.get(14)?;
            Ok(EventDetail {
                summary,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                body: r.get(15)?,
                attempts: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut detail) = row else {
        return Ok(None);
    };
    detail.summary.deliveries = deliveries_of(c, id.as_str())?;
    let rows = c
        .prepare_cached(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status, a.error, a.outcome
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = ?1 ORDER BY a.started_at, a.attempt",
        )?
        .query_map([id.as_str()], |r| {
            Ok(AttemptRecord {
                delivery_id: parse_id(&r.get::<_, String>(0)?)?,
                attempt: r.get(1)?,
                started_at: Timestamp(r.get(2)?),
                duration_ms: r.get(3)?,
                status: r.get(4)?,
                error: r.get(5)?,
                outcome: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let delivered = c
        .prepare_cached(&DELIVERED_ATTEMPTS.replace("{p}", "?"))?
        .query_map([id.as_str()], |r| decode::delivered_attempt(r))?
        .collect::<rusqlite::Result<_>>()?;
    detail.attempts = decode::with_delivered_attempts(rows, delivered);
    Ok(Some(detail))
}

/// The queue gauges' rows: per tenant, source, destination and state, the count and the
/// oldest creation.
///
/// Two selects, each with the exact condition of a partial index (`deliveries_due`,
/// `deliveries_dead`), so that each reads only the rows of its index. One select over the
/// four states matches neither index and reads every delivery ever made: at ten million
/// delivered events that was seconds of work at every evaluation and every scrape
/// (`docs/benchmarks.md`, issue 16).
pub(super) const QUEUE_STATS: &str =
    "SELECT tenant, source, destination, state, COUNT(*), MIN(created_at)
     FROM deliveries WHERE state IN ('pending', 'retrying', 'in_flight')
     GROUP BY tenant, source, destination, state
     UNION ALL
     SELECT tenant, source, destination, 'dead', COUNT(*), MIN(created_at)
     FROM deliveries WHERE state = 'dead'
     GROUP BY tenant, source, destination
     ORDER BY 1, 2, 3";

pub(super) fn queue_stats(c: &Connection) -> rusqlite::Result<Vec<QueueStats>> {
    let mut stats: Vec<QueueStats> = Vec::new();
    let rows = c
        .prepare_cached(QUEUE_STATS)?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (tenant, source, destination, state, count, oldest) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        let same = stats.last().is_some_and(|s| {
            s.tenant == tenant && s.source == source && s.destination == destination
        });
        if !same {
            stats.push(QueueStats {
                tenant,
                source,
                destination,
                pending: 0,
                in_flight: 0,
                oldest_pending_at: None,
                dead: 0,
            });
        }
        let Some(s) = stats.last_mut() else { continue };
        if state == "dead" {
            s.dead += count;
        } else {
            s.pending += count;
            if state == "in_flight" {
                s.in_flight += count;
            }
            let oldest = Timestamp(oldest);
            s.oldest_pending_at = Some(s.oldest_pending_at.map_or(oldest, |o| o.min(oldest)));
        }
    }
    Ok(stats)
}

impl Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }

    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }

    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }

    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }

    fn count(&self, i: usize) -> rusqlite::Result<u32> {
        self.get(i)
    }

    fn real(&self, i: usize) -> rusqlite::Result<f64> {
        self.get(i)
    }

    fn flag(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }

    fn corrupt(&self, i: usize, message: String) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_takes_a_free_connection_rather_than_wait_behind_a_busy_one() {
        let pool = ReadPool {
            conns: (0..3)
                .map(|_| Mutex::new(Connection::open_in_memory().unwrap()))
                .collect(),
            next: AtomicUsize::new(0),
        };
        // Connections 0 and 1 are held (a long read each); the next in turn is 0. Waiting
        // for it here, on the thread that holds it, would never end.
        let _busy = (pool.conns[0].lock().unwrap(), pool.conns[1].lock().unwrap());
        for _ in 0..4 {
            let one: i64 = pool
                .with(|c| c.query_row("SELECT 1", [], |r| r.get(0)))
                .unwrap();
            assert_eq!(one, 1);
        }
    }

    /// The plan SQLite chose for `sql`, one line per step.
    fn plan(c: &Connection, sql: &str) -> Vec<String> {
        c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn the_queue_gauges_read_the_partial_indexes_never_every_delivery() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        // Statistics of a store whose deliveries are nearly all delivered, so that the
        // planner knows how few rows the partial indexes hold.
        c.execute_batch(
            "ANALYZE;
             INSERT OR REPLACE INTO sqlite_stat1 VALUES ('deliveries', 'deliveries_event', '10000000 1');
             INSERT OR REPLACE INTO sqlite_stat1 VALUES ('deliveries', 'deliveries_due', '1000 1000 1');
             INSERT OR REPLACE INTO sqlite_stat1 VALUES ('deliveries', 'deliveries_dead', '10 10');
             ANALYZE sqlite_schema;",
        )
        .unwrap();
        for statistics in [true, false] {
            if !statistics {
                c.execute_batch("DELETE FROM sqlite_stat1; ANALYZE sqlite_schema;")
                    .unwrap();
            }
            let steps = plan(&c, QUEUE_STATS);
            let scans: Vec<&String> = steps
                .iter()
                .filter(|s| s.starts_with("SCAN deliveries"))
                .collect();
            assert_eq!(
                scans,
                [
                    "SCAN deliveries USING INDEX deliveries_due",
                    "SCAN deliveries USING INDEX deliveries_dead"
                ],
                "{steps:?}"
            );
        }
    }
}
