//! The notification outbox and silences: the writes that enqueue, claim and finish
//! notifications, and create and end silences. Each is one short transaction on a pooled
//! connection (the notification sender is a singleton duty; these do not need a group commit).

use std::time::Duration;

use intake_core::Timestamp;

use super::error::unavailable;
use super::PostgresStore;
use crate::decode;
use crate::model::*;
use crate::sql::{OUTBOX_COLUMNS, SILENCE_COLUMNS};
use crate::{Result, StoreError};

impl PostgresStore {
    /// Writes one evaluation of the notification pipeline in one transaction.
    pub(super) async fn enqueue(&self, batch: NotificationBatch) -> Result<()> {
        if batch == NotificationBatch::default() {
            return Ok(());
        }
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        insert_notifications(&tx, &batch.notifications).await?;
        for write in &batch.incidents {
            // A write whose incident changed since the pipeline read it is left out; the next
            // evaluation decides again from what is stored.
            if !super::incidents::write_in(&tx, write).await? {
                tracing::debug!(incident = %write.incident.id, "incident changed meanwhile; its pipeline write waits for the next evaluation");
            }
        }
        for (key, value) in &batch.state {
            tx.execute(
                "INSERT INTO state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&format!("state:{key}"), value],
            )
            .await
            .map_err(unavailable)?;
        }
        for id in &batch.announced_expiries {
            tx.execute(
                "UPDATE silences SET expiry_announced = TRUE WHERE id = $1",
                &[id],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// Leases the oldest pending notification of each notifier that is due.
    pub(super) async fn claim_outbox(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let client = self.write_conn().await?;
        // The same statement as on SQLite; the notification sender is a singleton duty, so no
        // two nodes claim at once, and the row locks of the UPDATE settle any race anyway.
        let rows = client
            .query(
                &format!(
                    "UPDATE notifications SET due_at = $1
                     WHERE id IN (
                        SELECT n.id FROM notifications n
                        WHERE n.state = 'pending' AND n.due_at <= $2
                          AND n.id = (SELECT MIN(m.id) FROM notifications m
                                      WHERE m.notifier = n.notifier AND m.state = 'pending')
                        ORDER BY n.id LIMIT $3)
                     RETURNING {OUTBOX_COLUMNS}"
                ),
                &[
                    &now.plus(lease).as_millis(),
                    &now.as_millis(),
                    &(limit as i64),
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut items = rows
            .iter()
            .map(decode::outbox_item)
            .collect::<Result<Vec<_>>>()?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    /// Records one attempt of a claimed notification.
    pub(super) async fn finish_outbox_item(
        &self,
        id: i64,
        outcome: NotificationOutcome,
        now: Timestamp,
    ) -> Result<()> {
        let (state, due_at, error) = match &outcome {
            NotificationOutcome::Sent => (NotificationState::Sent, now, None),
            NotificationOutcome::Retry { due_at, error } => {
                (NotificationState::Pending, *due_at, Some(error.clone()))
            }
            NotificationOutcome::Dead { error } => {
                (NotificationState::Dead, now, Some(error.clone()))
            }
        };
        let finished = (state != NotificationState::Pending).then_some(now.as_millis());
        let client = self.write_conn().await?;
        client
            .execute(
                "UPDATE notifications SET state = $1, attempts = attempts + 1, due_at = $2,
                    finished_at = $3, last_error = COALESCE($4, last_error)
                 WHERE id = $5 AND state = 'pending'",
                &[&state.as_str(), &due_at.as_millis(), &finished, &error, &id],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Stores a silence and enqueues its announcement, in one transaction.
    pub(super) async fn insert_silence(
        &self,
        silence: Silence,
        announcements: Vec<NewNotification>,
    ) -> Result<()> {
        let matchers = serde_json::to_string(&silence.matchers)
            .map_err(|e| StoreError::Corrupt(format!("silence matchers: {e}")))?;
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        tx.execute(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment,
                created_at, expiry_announced)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &silence.id,
                &matchers,
                &silence.starts_at.as_millis(),
                &silence.ends_at.as_millis(),
                &silence.created_by,
                &silence.comment,
                &silence.created_at.as_millis(),
                &silence.expiry_announced,
            ],
        )
        .await
        .map_err(unavailable)?;
        insert_notifications(&tx, &announcements).await?;
        tx.commit().await.map_err(unavailable)
    }

    /// Ends a silence and enqueues its expiry announcement, in one transaction.
    pub(super) async fn end_silence(
        &self,
        id: &str,
        now: Timestamp,
        announcements: Vec<NewNotification>,
    ) -> Result<SilenceExpiry> {
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let found = tx
            .query_opt(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await
            .map_err(unavailable)?;
        let outcome = match found.as_ref().map(decode::silence).transpose()? {
            None => SilenceExpiry::NotFound,
            Some(s) if s.ends_at <= now => SilenceExpiry::AlreadyEnded(s),
            Some(mut s) => {
                tx.execute(
                    "UPDATE silences SET ends_at = $1, expiry_announced = TRUE WHERE id = $2",
                    &[&now.as_millis(), &id],
                )
                .await
                .map_err(unavailable)?;
                insert_notifications(&tx, &announcements).await?;
                s.ends_at = now;
                s.expiry_announced = true;
                SilenceExpiry::Expired(s)
            }
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }
}

/// Enqueues notifications, pending and due at their `created_at`, in the open transaction.
pub(super) async fn insert_notifications(
    tx: &deadpool_postgres::Transaction<'_>,
    list: &[NewNotification],
) -> Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (notifier, key, notice, state, attempts, due_at, created_at,
                incident, tenant)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4, $5, $6)",
        )
        .await
        .map_err(unavailable)?;
    for n in list {
        tx.execute(
            &stmt,
            &[
                &n.notifier,
                &n.key,
                &n.notice,
                &n.created_at.as_millis(),
                &n.incident,
                &n.tenant,
            ],
        )
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}
