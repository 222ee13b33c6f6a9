//! Completion receipts on PostgreSQL: a delivery read for its confirmation, confirmations
//! written in one short transaction on a pooled connection (a confirmation is one row, not the
//! hot path of ingest), and the backlog of deliveries awaiting theirs, read from the partial
//! index `deliveries_awaiting_completion`.
//!
//! Each confirmed row is locked (`FOR UPDATE`) before it is decided, so two nodes receiving
//! the same confirmation at once record it once: the second waits, then finds it confirmed.

use intake_core::delivery::{confirm, Confirmation};
use intake_core::{DeliveryId, Timestamp};

use super::error::{read_error, unavailable};
use super::writer::flush_counts;
use super::PostgresStore;
use crate::counters::Counts;
use crate::decode;
use crate::model::*;
use crate::sql::{
    COMPLETE_DELIVERY, COMPLETION_BACKLOG, COMPLETION_OLDEST, DELIVERY_RECORD_COLUMNS,
};
use crate::Result;

impl PostgresStore {
    pub(super) async fn delivery_record(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>> {
        let client = self.conn().await?;
        let rows = client
            .query(
                &format!("SELECT {DELIVERY_RECORD_COLUMNS} FROM deliveries WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(read_error)?;
        rows.first().map(decode::delivery_record).transpose()
    }

    pub(super) async fn complete(
        &self,
        requests: Vec<CompletionRequest>,
    ) -> Result<Vec<CompletionReply>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let select =
            format!("SELECT {DELIVERY_RECORD_COLUMNS} FROM deliveries WHERE id = $1 FOR UPDATE");
        let update = COMPLETE_DELIVERY.replace("{p}", "$");
        let mut counts = Counts::default();
        let mut replies = Vec::with_capacity(requests.len());
        for req in &requests {
            let rows = tx
                .query(&select, &[&req.id.as_str()])
                .await
                .map_err(unavailable)?;
            let Some(d) = rows.first().map(decode::delivery_record).transpose()? else {
                replies.push(CompletionReply::NotFound);
                continue;
            };
            let reply = match confirm(d.state, d.attempts, d.completion, req.outcome) {
                Err(_) => CompletionReply::NotReceived,
                Ok(Confirmation::Duplicate(s)) => {
                    CompletionReply::Confirmed(Confirmation::Duplicate(s))
                }
                Ok(Confirmation::Recorded(s)) => {
                    tx.execute(
                        &update,
                        &[
                            &s.as_str(),
                            &req.at.as_millis(),
                            &req.detail,
                            &req.id.as_str(),
                        ],
                    )
                    .await
                    .map_err(unavailable)?;
                    counts.completed(&d, req.outcome, req.at);
                    CompletionReply::Confirmed(Confirmation::Recorded(s))
                }
            };
            replies.push(reply);
        }
        flush_counts(&tx, counts).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(replies)
    }

    pub(super) async fn backlog(
        &self,
        destination: &str,
        overdue_before: Timestamp,
    ) -> Result<Vec<CompletionBacklog>> {
        let client = self.conn().await?;
        let rows = client
            .query(
                &COMPLETION_BACKLOG.replace("{p}", "$"),
                &[&destination, &overdue_before.as_millis()],
            )
            .await
            .map_err(read_error)?;
        let oldest = COMPLETION_OLDEST.replace("{p}", "$");
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let tenant: String = r.try_get(0).map_err(read_error)?;
            let source: String = r.try_get(1).map_err(read_error)?;
            let awaiting: i64 = r.try_get(2).map_err(read_error)?;
            let overdue: Option<i64> = r.try_get(3).map_err(read_error)?;
            let oldest_at: Option<i64> = r.try_get(4).map_err(read_error)?;
            let id = client
                .query_opt(&oldest, &[&destination, &tenant, &source])
                .await
                .map_err(read_error)?
                .map(|row| row.try_get::<_, String>(0))
                .transpose()
                .map_err(read_error)?;
            out.push(CompletionBacklog {
                tenant,
                source,
                destination: destination.to_string(),
                awaiting: awaiting.max(0) as u64,
                overdue: overdue.unwrap_or(0).max(0) as u64,
                oldest_received_at: oldest_at.map(Timestamp),
                oldest: id.and_then(|i| i.parse().ok()),
            });
        }
        Ok(out)
    }
}
