//! What `intake migrate-store` reads from an embedded store (see the `transfer` module): every
//! table, row for row, as stored.

use intake_core::Timestamp;
use rusqlite::params;

use super::reads::migrated_counter;
use super::SqliteStore;
use crate::decode;
use crate::model::{AlertTransitionRecord, Drill, NewNotification, RecoveryJob};
use crate::rows::{
    AttemptRow, CounterRow, DeliveryRow, EventRow, EventRows, RejectionRow, TableCounts,
};
use crate::sql::{
    ALERT_TRANSITION_COLUMNS, DRILL_COLUMNS, HOURS_KEPT_KEY, MINUTES_KEPT_KEY, RECOVERY_COLUMNS,
    TABLE_COUNTS,
};
use crate::Result;

impl SqliteStore {
    /// Rows per table (for `intake migrate-store`).
    pub async fn table_counts(&self) -> Result<TableCounts> {
        self.read(|c| {
            c.query_row(TABLE_COUNTS, [], |r| {
                Ok(TableCounts {
                    events: r.get(0)?,
                    deliveries: r.get(1)?,
                    attempts: r.get(2)?,
                    rejections: r.get(3)?,
                    counter_rows: r.get(4)?,
                    counted: r.get(5)?,
                    recoveries: r.get(6)?,
                    drills: r.get(7)?,
                    incidents: r.get(8)?,
                    incident_entries: r.get(9)?,
                    incident_notices: r.get(10)?,
                })
            })
        })
        .await
    }

    /// Up to `limit` events with ids above `after`, in id order, with their deliveries and
    /// attempts, as stored.
    pub async fn export_events(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<EventRows>> {
        self.read(move |c| {
            let events: Vec<EventRow> = c
                .prepare_cached(
                    "SELECT id, tenant, source, origin, sor_event_id, dedupe_key, event_type,
                        channel, raw_channel, object_type, object_id, occurred_at, received_at,
                        headers, body, conversation_id
                     FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![after.unwrap_or_default(), limit as i64], |r| {
                    Ok(EventRow {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        source: r.get(2)?,
                        origin: r.get(3)?,
                        sor_event_id: r.get(4)?,
                        dedupe_key: r.get(5)?,
                        event_type: r.get(6)?,
                        channel: r.get(7)?,
                        raw_channel: r.get(8)?,
                        object_type: r.get(9)?,
                        object_id: r.get(10)?,
                        occurred_at: r.get(11)?,
                        received_at: r.get(12)?,
                        headers: r.get(13)?,
                        body: r.get(14)?,
                        conversation_id: r.get(15)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(events.len());
            let mut deliveries = c.prepare_cached(
                "SELECT id, event_id, destination, tenant, source, channel, state, attempts,
                    due_at, lease_id, created_at, updated_at, delivered_at, last_status, last_error,
                    origin, replay_key, recovery, completion, completed_at, completion_detail,
                    delivered_ms
                 FROM deliveries WHERE event_id = ?1 ORDER BY id",
            )?;
            let mut attempts = c.prepare_cached(
                "SELECT a.id, a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status,
                    a.error, a.outcome
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE d.event_id = ?1 ORDER BY a.id",
            )?;
            for event in events {
                let ds = deliveries
                    .query_map([&event.id], |r| {
                        Ok(DeliveryRow {
                            id: r.get(0)?,
                            event_id: r.get(1)?,
                            destination: r.get(2)?,
                            tenant: r.get(3)?,
                            source: r.get(4)?,
                            channel: r.get(5)?,
                            state: r.get(6)?,
                            attempts: r.get(7)?,
                            due_at: r.get(8)?,
                            lease_id: r.get(9)?,
                            created_at: r.get(10)?,
                            updated_at: r.get(11)?,
                            delivered_at: r.get(12)?,
                            last_status: r.get(13)?,
                            last_error: r.get(14)?,
                            origin: r.get(15)?,
                            replay_key: r.get(16)?,
                            recovery: r.get(17)?,
                            completion: r.get(18)?,
                            completed_at: r.get(19)?,
                            completion_detail: r.get(20)?,
                            delivered_ms: r.get(21)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let atts = attempts
                    .query_map([&event.id], |r| {
                        Ok(AttemptRow {
                            id: r.get(0)?,
                            delivery_id: r.get(1)?,
                            attempt: r.get(2)?,
                            started_at: r.get(3)?,
                            duration_ms: r.get(4)?,
                            status: r.get(5)?,
                            error: r.get(6)?,
                            outcome: r.get(7)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                out.push(EventRows {
                    event,
                    deliveries: ds,
                    attempts: atts,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Up to `limit` rejections with ids above `after`, in id order.
    pub async fn export_rejections(&self, after: i64, limit: usize) -> Result<Vec<RejectionRow>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, at, tenant, source, outcome, reason, body FROM rejections
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![after, limit as i64], |r| {
                Ok(RejectionRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    tenant: r.get(2)?,
                    source: r.get(3)?,
                    outcome: r.get(4)?,
                    reason: r.get(5)?,
                    body: r.get(6)?,
                })
            })?
            .collect()
        })
        .await
    }

    /// Every hourly counter row (for `intake migrate-store`; `minute` holds the hour).
    pub async fn export_hourly_counters(&self) -> Result<Vec<CounterRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT hour, tenant, source, channel, destination, metric, count
                 FROM counters_hourly",
            )?
            .query_map([], migrated_counter)?
            .collect()
        })
        .await
    }

    /// Named state documents, the counters' rollup watermark and the marks since when each
    /// resolution of counters is complete (for `intake migrate-store`).
    pub async fn export_state(&self) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT key, value FROM meta
                 WHERE key LIKE 'state:%' OR key IN ('counters_rolled_until', ?1, ?2)",
            )?
            .query_map([MINUTES_KEPT_KEY, HOURS_KEPT_KEY], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .await
    }

    /// Notifications not yet sent nor dead, oldest first (for `intake migrate-store`).
    pub async fn export_pending_notifications(&self) -> Result<Vec<NewNotification>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT notifier, key, notice, created_at, incident, tenant FROM notifications
                 WHERE state = 'pending' ORDER BY id",
            )?
            .query_map([], |r| {
                Ok(NewNotification {
                    notifier: r.get(0)?,
                    key: r.get(1)?,
                    notice: r.get(2)?,
                    created_at: Timestamp(r.get(3)?),
                    incident: r.get(4)?,
                    tenant: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    /// Every alert transition, oldest first (for `intake migrate-store`).
    pub async fn export_alert_transitions(&self) -> Result<Vec<AlertTransitionRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {ALERT_TRANSITION_COLUMNS} FROM alert_transitions ORDER BY id"
            ))?
            .query_map([], |r| decode::alert_transition(r))?
            .collect()
        })
        .await
    }

    /// Every recovery job, oldest first (for `intake migrate-store`).
    pub async fn export_recoveries(&self) -> Result<Vec<RecoveryJob>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {RECOVERY_COLUMNS} FROM recoveries ORDER BY created_at, id"
            ))?
            .query_map([], |r| decode::recovery_job(r))?
            .collect()
        })
        .await
    }

    /// Every drill, oldest first (for `intake migrate-store`).
    pub async fn export_drills(&self) -> Result<Vec<Drill>> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {DRILL_COLUMNS} FROM drills ORDER BY started_at, id"
            ))?
            .query_map([], |r| decode::drill(r))?
            .collect()
        })
        .await
    }

    /// Every minute counter row (for `intake migrate-store`).
    pub async fn export_counters(&self) -> Result<Vec<CounterRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT minute, tenant, source, channel, destination, metric, count FROM counters",
            )?
            .query_map([], migrated_counter)?
            .collect()
        })
        .await
    }
}
