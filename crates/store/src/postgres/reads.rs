//! Reads: the larger queries of the [`Store`](crate::Store) reads (events, queue gauges,
//! counters), and how a column of a PostgreSQL row is read for the shared row readers
//! ([`Columns`]).

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use intake_core::{EventId, Timestamp};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::error::{pg_error, read_error};
use super::PostgresStore;
use crate::decode::{self, Columns};
use crate::model::*;
use crate::sql::{DELIVERED_ATTEMPTS, DELIVERY_COLUMNS, EVENT_COLUMNS};
use crate::{Result, StoreError};

pub(super) fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("`{s}` is not a valid {what}")))
}

fn status_of(v: Option<i32>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

/// The deliveries of these events, grouped by event id.
async fn deliveries_of(
    client: &impl GenericClient,
    event_ids: &[&str],
) -> Result<HashMap<String, Vec<DeliverySummary>>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ANY($1)
             ORDER BY event_id, destination COLLATE \"C\", id"
        ))
        .await
        .map_err(read_error)?;
    let mut out: HashMap<String, Vec<DeliverySummary>> = HashMap::new();
    for r in client
        .query(&stmt, &[&event_ids])
        .await
        .map_err(read_error)?
    {
        let (event_id, delivery) = decode::delivery_summary(&r)?;
        out.entry(event_id).or_default().push(delivery);
    }
    Ok(out)
}

/// A column read as the wrong type: a bug or a schema this build does not know.
fn mismatch(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(pg_error(&e))
}

impl Columns for Row {
    type Error = StoreError;

    fn text(&self, i: usize) -> Result<String> {
        self.try_get(i).map_err(mismatch)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.try_get(i).map_err(mismatch)
    }

    fn int(&self, i: usize) -> Result<i64> {
        self.try_get(i).map_err(mismatch)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.try_get(i).map_err(mismatch)
    }

    fn count(&self, i: usize) -> Result<u32> {
        Ok(u32::try_from(self.try_get::<_, i32>(i).map_err(mismatch)?).unwrap_or(0))
    }

    fn real(&self, i: usize) -> Result<f64> {
        self.try_get(i).map_err(mismatch)
    }

    fn flag(&self, i: usize) -> Result<bool> {
        self.try_get(i).map_err(mismatch)
    }

    fn corrupt(&self, _: usize, message: String) -> StoreError {
        StoreError::Corrupt(message)
    }
}

impl PostgresStore {
    /// Events matching a filter, newest first, with their deliveries.
    pub(super) async fn events(&self, f: EventFilter) -> Result<Vec<EventSummary>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(t) = &f.tenant {
            arg(&mut sql, " AND tenant = ?", Box::new(t.clone()));
        }
        if let Some(s) = &f.source {
            arg(&mut sql, " AND source = ?", Box::new(s.clone()));
        }
        if let Some(t) = &f.event_type {
            arg(&mut sql, " AND event_type = ?", Box::new(t.clone()));
        }
        if let Some(ch) = &f.channel {
            arg(&mut sql, " AND channel = ?", Box::new(ch.clone()));
        }
        // Ids are ULIDs whose time part is the instant of receipt: a time window is an id
        // range, served by the primary key (see the SQLite backend).
        if let Some(t) = f.from {
            arg(&mut sql, " AND id >= ?", Box::new(EventId::lower_bound(t)));
            arg(&mut sql, " AND received_at >= ?", Box::new(t.as_millis()));
        }
        if let Some(t) = f.to {
            arg(&mut sql, " AND id < ?", Box::new(EventId::lower_bound(t)));
            arg(&mut sql, " AND received_at < ?", Box::new(t.as_millis()));
        }
        if let Some(b) = &f.before {
            arg(&mut sql, " AND id < ?", Box::new(b.as_str().to_string()));
        }
        if let Some(a) = &f.after {
            arg(&mut sql, " AND id > ?", Box::new(a.as_str().to_string()));
        }
        if let Some(o) = f.origin {
            arg(
                &mut sql,
                " AND origin = ?",
                Box::new(o.as_str().to_string()),
            );
        }
        // One delivery must match every delivery condition at once.
        if f.destination.is_some() || f.state.is_some() || f.completion.is_some() {
            sql.push_str(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id");
            if let Some(d) = &f.destination {
                arg(&mut sql, " AND d.destination = ?", Box::new(d.clone()));
            }
            if let Some(st) = f.state {
                arg(
                    &mut sql,
                    " AND d.state = ?",
                    Box::new(st.as_str().to_string()),
                );
            }
            if let Some(c) = f.completion {
                arg(
                    &mut sql,
                    " AND d.completion = ?",
                    Box::new(c.as_str().to_string()),
                );
            }
            sql.push(')');
        }
        // Ids compare byte by byte (the column is COLLATE "C"), as on SQLite.
        sql.push_str(&format!(
            " ORDER BY id {} LIMIT {}",
            if f.ascending { "ASC" } else { "DESC" },
            f.limit.clamp(1, 1000)
        ));
        let client = self.conn().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &params).await.map_err(read_error)?;
        let mut events = rows
            .iter()
            .map(decode::event_summary)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let mut deliveries = deliveries_of(&client, &ids).await?;
        for e in &mut events {
            e.deliveries = deliveries.remove(e.id.as_str()).unwrap_or_default();
        }
        Ok(events)
    }

    /// One event with its body, deliveries and attempts.
    pub(super) async fn event_detail(&self, id: &EventId) -> Result<Option<EventDetail>> {
        let client = self.conn().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, headers, body FROM events WHERE id = $1"
            ))
            .await
            .map_err(read_error)?;
        let Some(row) = client
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(read_error)?
        else {
            return Ok(None);
        };
        let mut summary = decode::event_summary(&row)?;
        let headers: String = row.get(14);
        summary.deliveries = deliveries_of(&client, &[id.as_str()])
            .await?
            .remove(id.as_str())
            .unwrap_or_default();
        let stmt = client
            .prepare_cached(
                "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status, a.error,
                        a.outcome
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE d.event_id = $1 ORDER BY a.started_at, a.attempt, a.id",
            )
            .await
            .map_err(read_error)?;
        let attempts = client
            .query(&stmt, &[&id.as_str()])
            .await
            .map_err(read_error)?
            .iter()
            .map(|r| {
                Ok(AttemptRecord {
                    delivery_id: parse(r.get::<_, &str>(0), "delivery id")?,
                    attempt: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                    started_at: Timestamp(r.get(2)),
                    duration_ms: r.get(3),
                    status: status_of(r.get(4)),
                    error: r.get(5),
                    outcome: r.get(6),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let stmt = client
            .prepare_cached(&DELIVERED_ATTEMPTS.replace("{p}", "$"))
            .await
            .map_err(read_error)?;
        let delivered = client
            .query(&stmt, &[&id.as_str()])
            .await
            .map_err(read_error)?
            .iter()
            .map(decode::delivered_attempt)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(EventDetail {
            summary,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: row.get(15),
            attempts: decode::with_delivered_attempts(attempts, delivered),
        }))
    }

    /// Queue gauges per tenant, source and destination.
    pub(super) async fn queue_gauges(&self) -> Result<Vec<QueueStats>> {
        let rows = self
            // Two selects, each with the exact condition of a partial index (`deliveries_due`,
            // `deliveries_dead`), so that each reads only its index's rows: one select over
            // the four states matches neither and scans every delivery ever made.
            .read_rows(
                "SELECT tenant, source, destination, CAST(SUM(active) AS BIGINT),
                        CAST(SUM(in_flight) AS BIGINT), MIN(oldest), CAST(SUM(dead) AS BIGINT)
                 FROM (
                    SELECT tenant, source, destination, COUNT(*) AS active,
                           COUNT(*) FILTER (WHERE state = 'in_flight') AS in_flight,
                           MIN(created_at) AS oldest, 0 AS dead
                    FROM deliveries WHERE state IN ('pending', 'retrying', 'in_flight')
                    GROUP BY tenant, source, destination
                    UNION ALL
                    SELECT tenant, source, destination, 0, 0, NULL, COUNT(*)
                    FROM deliveries WHERE state = 'dead'
                    GROUP BY tenant, source, destination
                 ) AS gauges
                 GROUP BY tenant, source, destination
                 ORDER BY tenant COLLATE \"C\", source COLLATE \"C\", destination COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueueStats {
                tenant: r.get(0),
                source: r.get(1),
                destination: r.get(2),
                pending: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                in_flight: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                oldest_pending_at: r.get::<_, Option<i64>>(5).map(Timestamp),
                dead: u64::try_from(r.get::<_, i64>(6)).unwrap_or(0),
            })
            .collect())
    }

    /// Counter buckets matching a query (hourly reads combine rolled-up hours with minute
    /// rows), in byte order.
    pub(super) async fn counter_rows(&self, q: CounterQuery) -> Result<Vec<CounterRow>> {
        let from = q.resolution.bucket(q.from).as_millis();
        let to = q.to.as_millis();
        let metrics: Option<Vec<String>> = (!q.metrics.is_empty()).then(|| q.metrics.clone());
        let filter = "($3::text[] IS NULL OR metric = ANY($3))
                      AND ($4::text IS NULL OR tenant = $4)
                      AND ($5::text IS NULL OR source = $5)";
        let rows = match q.resolution {
            Resolution::Minute => {
                self.read_rows(
                    &format!(
                        "SELECT minute, tenant, source, channel, destination, metric,
                                SUM(count)::BIGINT
                         FROM counters WHERE minute >= $1 AND minute < $2 AND {filter}
                         GROUP BY minute, tenant, source, channel, destination, metric"
                    ),
                    &[&from, &to, &metrics, &q.tenant, &q.source],
                )
                .await?
            }
            Resolution::Hour => {
                let rolled = self.rolled_until().await?;
                let split = rolled.clamp(from, to.max(from));
                self.read_rows(
                    &format!(
                        "SELECT hour, tenant, source, channel, destination, metric, count
                         FROM counters_hourly WHERE hour >= $1 AND hour < $6 AND {filter}
                         UNION ALL
                         SELECT (minute / 3600000) * 3600000 AS h, tenant, source, channel,
                                destination, metric, SUM(count)::BIGINT
                         FROM counters WHERE minute >= $6 AND minute < $2 AND {filter}
                         GROUP BY h, tenant, source, channel, destination, metric"
                    ),
                    &[&from, &to, &metrics, &q.tenant, &q.source, &split],
                )
                .await?
            }
        };
        let mut out = rows
            .iter()
            .map(decode::counter_row)
            .collect::<Result<Vec<_>>>()?;
        // Byte order, as SQLite sorts: sorted here rather than in SQL, where a collation
        // cannot be given to the columns of a UNION.
        out.sort_by(|a, b| {
            (
                a.at,
                &a.tenant,
                &a.source,
                &a.channel,
                &a.destination,
                &a.metric,
            )
                .cmp(&(
                    b.at,
                    &b.tenant,
                    &b.source,
                    &b.channel,
                    &b.destination,
                    &b.metric,
                ))
        });
        Ok(out)
    }
}
