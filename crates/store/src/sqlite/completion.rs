//! Completion receipts on SQLite: a delivery read for its confirmation, confirmations written
//! by the writer in its group commit like every write, and the backlog of deliveries awaiting
//! theirs, read from the partial index `deliveries_awaiting_completion`.

use intake_core::delivery::{confirm, Confirmation};
use intake_core::{DeliveryId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::writer::Request;
use super::SqliteStore;
use crate::counters::Counts;
use crate::decode;
use crate::group_commit::Reply;
use crate::model::*;
use crate::sql::{
    COMPLETE_DELIVERY, COMPLETION_BACKLOG, COMPLETION_OLDEST, DELIVERY_RECORD_COLUMNS,
};
use crate::Result;

impl SqliteStore {
    pub(super) async fn delivery_record(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>> {
        let id = id.to_string();
        self.read(move |c| record(c, &id)).await
    }

    pub(super) async fn complete(
        &self,
        requests: Vec<CompletionRequest>,
    ) -> Result<Vec<CompletionReply>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.write(Request::Complete(requests), Reply::Completions)
            .await
    }

    pub(super) async fn backlog(
        &self,
        destination: &str,
        overdue_before: Timestamp,
    ) -> Result<Vec<CompletionBacklog>> {
        let destination = destination.to_string();
        self.read(move |c| read_backlog(c, &destination, overdue_before))
            .await
    }
}

fn record(c: &Connection, id: &str) -> rusqlite::Result<Option<DeliveryRecord>> {
    c.prepare_cached(&format!(
        "SELECT {DELIVERY_RECORD_COLUMNS} FROM deliveries WHERE id = ?1"
    ))?
    .query_row([id], |r| decode::delivery_record(r))
    .optional()
}

/// Applies confirmations in the writer's transaction: each is decided against the row as it
/// is now (an earlier confirmation of the same batch included).
pub(super) fn complete(
    c: &Connection,
    requests: &[CompletionRequest],
    counts: &mut Counts,
) -> rusqlite::Result<Vec<CompletionReply>> {
    let mut replies = Vec::with_capacity(requests.len());
    for req in requests {
        let Some(d) = record(c, req.id.as_str())? else {
            replies.push(CompletionReply::NotFound);
            continue;
        };
        let reply = match confirm(d.state, d.attempts, d.completion, req.outcome) {
            Err(_) => CompletionReply::NotReceived,
            Ok(Confirmation::Duplicate(s)) => {
                CompletionReply::Confirmed(Confirmation::Duplicate(s))
            }
            Ok(Confirmation::Recorded(s)) => {
                c.prepare_cached(&COMPLETE_DELIVERY.replace("{p}", "?"))?
                    .execute(params![
                        s.as_str(),
                        req.at.as_millis(),
                        req.detail,
                        req.id.as_str()
                    ])?;
                counts.completed(&d, req.outcome, req.at);
                CompletionReply::Confirmed(Confirmation::Recorded(s))
            }
        };
        replies.push(reply);
    }
    Ok(replies)
}

fn read_backlog(
    c: &Connection,
    destination: &str,
    overdue_before: Timestamp,
) -> rusqlite::Result<Vec<CompletionBacklog>> {
    let mut rows: Vec<CompletionBacklog> = c
        .prepare_cached(&COMPLETION_BACKLOG.replace("{p}", "?"))?
        .query_map(params![destination, overdue_before.as_millis()], |r| {
            Ok(CompletionBacklog {
                tenant: r.get(0)?,
                source: r.get(1)?,
                destination: destination.to_string(),
                awaiting: r.get::<_, i64>(2)?.max(0) as u64,
                overdue: r.get::<_, Option<i64>>(3)?.unwrap_or(0).max(0) as u64,
                oldest_received_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                oldest: None,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut oldest = c.prepare_cached(&COMPLETION_OLDEST.replace("{p}", "?"))?;
    for b in &mut rows {
        let id: Option<String> = oldest
            .query_row(params![destination, b.tenant, b.source], |r| r.get(0))
            .optional()?;
        b.oldest = id.and_then(|i| i.parse().ok());
    }
    Ok(rows)
}
