//! One batch of a retention pass on SQLite: run by the writer as one request, so it commits
//! in the same group commit as the ingests queued beside it, and ingest waits for one batch
//! at most (the pass sends the next batch only once this one is answered).

use intake_core::retention::DeletedRows;
use intake_core::EventId;
use rusqlite::{params, Connection};

use crate::model::{ExpireBatch, ExpireRequest};
use crate::retention::{choose, BatchRow};

/// Looks at the batch's events, deletes the expired ones with their deliveries and
/// attempts, then the old rejections.
pub(super) fn expire(conn: &Connection, req: &ExpireRequest) -> rusqlite::Result<ExpireBatch> {
    // Ids are ULIDs whose time part is the instant of receipt: "received before" is an id
    // range of the primary key, and `after` resumes where the previous batch stopped.
    let below = EventId::lower_bound(req.before);
    let after = req.after.as_ref().map_or("", |id| id.as_str()).to_string();
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let rows: Vec<BatchRow> = conn
        .prepare_cached(
            "SELECT e.id, e.received_at, d.state, d.completion
             FROM (SELECT id, received_at FROM events WHERE id > ?1 AND id < ?2
                   ORDER BY id LIMIT ?3) e
             LEFT JOIN deliveries d ON d.event_id = e.id
             ORDER BY e.id",
        )?
        .query_map(params![after, below, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let choice = choose(rows, req.before).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })?;
    let mut deleted = DeletedRows::default();
    for id in &choice.expire {
        deleted.attempts += conn
            .prepare_cached(
                "DELETE FROM attempts WHERE delivery_id IN
                    (SELECT id FROM deliveries WHERE event_id = ?1)",
            )?
            .execute([id])? as u64;
        deleted.deliveries += conn
            .prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?
            .execute([id])? as u64;
        deleted.events += conn
            .prepare_cached("DELETE FROM events WHERE id = ?1")?
            .execute([id])? as u64;
    }
    deleted.rejections = conn
        .prepare_cached(
            "DELETE FROM rejections WHERE id IN
                (SELECT id FROM rejections WHERE at < ?1 ORDER BY at LIMIT ?2)",
        )?
        .execute(params![req.before.as_millis(), limit])? as u64;
    let last = match choice.last {
        None => None,
        Some(id) => Some(id.parse::<EventId>().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?),
    };
    Ok(ExpireBatch {
        scanned: choice.scanned,
        deleted,
        kept: choice.kept,
        last,
    })
}
