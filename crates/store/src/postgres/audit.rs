//! The audit's reads on PostgreSQL: counters (summed over their shards), event rows and
//! deliveries of one source's window, in one `REPEATABLE READ` read-only transaction, so that
//! they are one snapshot however many nodes commit meanwhile (an ingest's event, deliveries and
//! counters commit together, so each is in all of the reads or in none).
//!
//! The window is a range of event ids (ULIDs whose time part is the instant of receipt),
//! served by the primary key.

use deadpool_postgres::GenericClient;
use intake_core::EventId;
use tokio_postgres::IsolationLevel;

use super::error::read_error;
use super::reads::parse;
use super::PostgresStore;
use crate::audit::{self, AuditRows};
use crate::model::*;
use crate::sql::{DELIVERY_STATE_RANK, HOURS_KEPT_KEY, MINUTES_KEPT_KEY};
use crate::Result;

/// The events of the window, as a `WHERE` clause on `e` (parameters 1 to 5).
const WINDOW: &str = "e.source = $1 AND e.id >= $2 AND e.id < $3 \
     AND e.received_at >= $4 AND e.received_at < $5";

impl PostgresStore {
    pub(super) async fn audit_counts(&self, q: AuditQuery) -> Result<AuditCounts> {
        let mut client = self.conn().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(read_error)?;
        let kept = audit::counters_kept(
            state(&tx, MINUTES_KEPT_KEY).await?.as_deref(),
            state(&tx, HOURS_KEPT_KEY).await?.as_deref(),
        );
        let window = AuditWindow::plan(q.from, q.to, kept);
        let rolled = state(&tx, "counters_rolled_until")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let rows = read(&tx, &q, &window, audit::hourly_until(&window, rolled)).await?;
        tx.commit().await.map_err(read_error)?;
        Ok(audit::assemble(&q, window, rows))
    }
}

async fn state(c: &impl GenericClient, key: &str) -> Result<Option<String>> {
    let rows = c
        .query("SELECT value FROM state WHERE key = $1", &[&key])
        .await
        .map_err(read_error)?;
    Ok(rows.first().map(|r| r.get(0)))
}

async fn read(
    c: &impl GenericClient,
    q: &AuditQuery,
    w: &AuditWindow,
    split: i64,
) -> Result<AuditRows> {
    let (from, to) = (w.from.as_millis(), w.to.as_millis());
    let (lo, hi) = (EventId::lower_bound(w.from), EventId::lower_bound(w.to));
    let counters = c
        .query(
            "SELECT metric, CAST(SUM(n) AS BIGINT) FROM (
                SELECT metric, count AS n FROM counters_hourly
                WHERE hour >= $1 AND hour < $2 AND source = $4
                UNION ALL
                SELECT metric, count FROM counters
                WHERE minute >= $2 AND minute < $3 AND source = $4) AS c
             GROUP BY metric",
            &[&from, &split, &to, &q.source],
        )
        .await
        .map_err(read_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let window: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&q.source, &lo, &hi, &from, &to];
    let events = c
        .query(
            &format!(
                "SELECT e.origin, e.channel, COUNT(*) FROM events e WHERE {WINDOW}
                 GROUP BY e.origin, e.channel"
            ),
            &window,
        )
        .await
        .map_err(read_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let pairs = c
        .query(
            &format!(
                "SELECT destination,
                    CAST(SUM(CASE WHEN best = 2 THEN 1 ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN best = 1 THEN 1 ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN best = 0 THEN 1 ELSE 0 END) AS BIGINT)
                 FROM (SELECT d.destination AS destination, MAX({DELIVERY_STATE_RANK}) AS best
                       FROM events e JOIN deliveries d ON d.event_id = e.id
                       WHERE {WINDOW} GROUP BY d.event_id, d.destination) AS pairs
                 GROUP BY destination ORDER BY destination"
            ),
            &window,
        )
        .await
        .map_err(read_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let mut missing = Vec::with_capacity(q.routes.len());
    for destination in &q.routes {
        missing.push(missing_to(c, q, &window, destination).await?);
    }
    Ok(AuditRows {
        counters,
        events,
        pairs,
        missing,
    })
}

/// How many events of the window have no delivery to `destination`, and the first of them.
async fn missing_to(
    c: &impl GenericClient,
    q: &AuditQuery,
    window: &[&(dyn tokio_postgres::types::ToSql + Sync); 5],
    destination: &String,
) -> Result<(i64, Vec<EventId>)> {
    let without = format!(
        "FROM events e WHERE {WINDOW} AND NOT EXISTS (
            SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.destination = $6)"
    );
    let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = window.to_vec();
    args.push(destination);
    let n: i64 = c
        .query_one(&format!("SELECT COUNT(*) {without}"), &args)
        .await
        .map_err(read_error)?
        .get(0);
    if n == 0 || q.sample == 0 {
        return Ok((n, Vec::new()));
    }
    let limit = i64::try_from(q.sample).unwrap_or(i64::MAX);
    args.push(&limit);
    let sample = c
        .query(
            &format!("SELECT e.id {without} ORDER BY e.id LIMIT $7"),
            &args,
        )
        .await
        .map_err(read_error)?
        .iter()
        .map(|r| parse(r.get::<_, &str>(0), "event id"))
        .collect::<Result<_>>()?;
    Ok((n, sample))
}
