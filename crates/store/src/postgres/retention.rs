//! One batch of a retention pass on PostgreSQL: its own short transaction on a pooled
//! connection, beside the writer task, so ingest on this node or any other never waits for
//! it beyond the row locks of the batch's own (old) events.
//!
//! The batch's events are locked (`FOR UPDATE`) before their deliveries are read. Every way
//! of giving an event new work — a replay's delivery, a requeue's missing one — inserts a
//! delivery row, whose foreign key takes a share lock on the event row: it therefore waits
//! for this transaction, and then finds the event gone. Deliveries already there only move
//! towards final states meanwhile, so a verdict of "every delivery is final" cannot be
//! overtaken.

use intake_core::retention::DeletedRows;
use intake_core::EventId;

use super::error::unavailable;
use crate::model::{ExpireBatch, ExpireRequest};
use crate::retention::{choose, BatchRow};
use crate::{Result, StoreError};

/// Looks at the batch's events, deletes the expired ones with their deliveries and
/// attempts, then the old rejections, in one transaction.
pub(super) async fn expire(
    client: &mut deadpool_postgres::Object,
    req: &ExpireRequest,
) -> Result<ExpireBatch> {
    let below = EventId::lower_bound(req.before);
    let after = req
        .after
        .as_ref()
        .map_or(String::new(), |id| id.as_str().to_string());
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let tx = client.transaction().await.map_err(unavailable)?;
    let locked: Vec<String> = tx
        .query(
            "SELECT id FROM events WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3 FOR UPDATE",
            &[&after, &below, &limit],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows: Vec<BatchRow> = tx
        .query(
            "SELECT e.id, e.received_at, d.state, d.completion
             FROM events e LEFT JOIN deliveries d ON d.event_id = e.id
             WHERE e.id = ANY($1)
             ORDER BY e.id",
            &[&locked],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let choice = choose(rows, req.before)?;
    let mut deleted = DeletedRows::default();
    if !choice.expire.is_empty() {
        let ids = &choice.expire;
        deleted.attempts = tx
            .execute(
                "DELETE FROM attempts WHERE delivery_id IN
                    (SELECT id FROM deliveries WHERE event_id = ANY($1))",
                &[ids],
            )
            .await
            .map_err(unavailable)?;
        deleted.deliveries = tx
            .execute("DELETE FROM deliveries WHERE event_id = ANY($1)", &[ids])
            .await
            .map_err(unavailable)?;
        deleted.events = tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[ids])
            .await
            .map_err(unavailable)?;
    }
    deleted.rejections = tx
        .execute(
            "DELETE FROM rejections WHERE id IN
                (SELECT id FROM rejections WHERE at < $1 ORDER BY at LIMIT $2)",
            &[&req.before.as_millis(), &limit],
        )
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    let last = match choice.last {
        None => None,
        Some(id) => Some(
            id.parse::<EventId>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        ),
    };
    Ok(ExpireBatch {
        scanned: choice.scanned,
        deleted,
        kept: choice.kept,
        last,
    })
}
