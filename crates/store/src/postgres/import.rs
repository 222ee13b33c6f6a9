//! What `intake migrate-store` writes into a PostgreSQL store (see the `transfer` module):
//! copied rows, keeping their ids, and the row counts it checks.

use super::error::unavailable;
use super::PostgresStore;
use crate::model::{AlertTransitionRecord, Drill, RecoveryJob};
use crate::rows::{CounterRow, EventRows, RejectionRow, TableCounts};
use crate::sql::TABLE_COUNTS;
use crate::{Result, Store, StoreError};

impl PostgresStore {
    /// Rows per table (for `intake migrate-store`).
    pub async fn table_counts(&self) -> Result<TableCounts> {
        let rows = self.read_rows(TABLE_COUNTS, &[]).await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("no row counts".into()))?;
        Ok(TableCounts {
            events: r.get(0),
            deliveries: r.get(1),
            attempts: r.get(2),
            rejections: r.get(3),
            counter_rows: r.get(4),
            counted: r.get(5),
            recoveries: r.get(6),
            drills: r.get(7),
            incidents: r.get(8),
            incident_entries: r.get(9),
            incident_notices: r.get(10),
        })
    }

    /// Inserts copied events with their deliveries and attempts in one transaction, keeping
    /// their ids; rows already present are left as they are.
    pub async fn import_events(&self, page: Vec<EventRows>) -> Result<()> {
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let ev = tx
            .prepare_cached(
                "INSERT INTO events (id, tenant, source, origin, sor_event_id, dedupe_key,
                    event_type, channel, raw_channel, object_type, object_id, occurred_at,
                    received_at, headers, body, conversation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(unavailable)?;
        let dl = tx
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel,
                    state, attempts, due_at, lease_id, created_at, updated_at, delivered_at,
                    last_status, last_error, origin, replay_key, recovery, completion,
                    completed_at, completion_detail, delivered_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, $21, $22)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(unavailable)?;
        let at = tx
            .prepare_cached(
                "INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms, status,
                    error, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(unavailable)?;
        let small = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
        for rows in &page {
            let e = &rows.event;
            tx.execute(
                &ev,
                &[
                    &e.id,
                    &e.tenant,
                    &e.source,
                    &e.origin,
                    &e.sor_event_id,
                    &e.dedupe_key,
                    &e.event_type,
                    &e.channel,
                    &e.raw_channel,
                    &e.object_type,
                    &e.object_id,
                    &e.occurred_at,
                    &e.received_at,
                    &e.headers,
                    &e.body,
                    &e.conversation_id,
                ],
            )
            .await
            .map_err(unavailable)?;
            for d in &rows.deliveries {
                // A delivery in flight in the source belonged to a process that is gone.
                let (state, lease) = if d.state == "in_flight" {
                    ("pending", None)
                } else {
                    (d.state.as_str(), d.lease_id.as_deref())
                };
                tx.execute(
                    &dl,
                    &[
                        &d.id,
                        &d.event_id,
                        &d.destination,
                        &d.tenant,
                        &d.source,
                        &d.channel,
                        &state,
                        &small(d.attempts),
                        &d.due_at,
                        &lease,
                        &d.created_at,
                        &d.updated_at,
                        &d.delivered_at,
                        &d.last_status.map(small),
                        &d.last_error,
                        &d.origin,
                        &d.replay_key,
                        &d.recovery,
                        &d.completion,
                        &d.completed_at,
                        &d.completion_detail,
                        &d.delivered_ms,
                    ],
                )
                .await
                .map_err(unavailable)?;
            }
            for a in &rows.attempts {
                tx.execute(
                    &at,
                    &[
                        &a.id,
                        &a.delivery_id,
                        &small(a.attempt),
                        &a.started_at,
                        &a.duration_ms,
                        &a.status.map(small),
                        &a.error,
                        &a.outcome,
                    ],
                )
                .await
                .map_err(unavailable)?;
            }
        }
        tx.commit().await.map_err(unavailable)
    }

    /// Inserts copied rejections, keeping their ids.
    pub async fn import_rejections(&self, page: Vec<RejectionRow>) -> Result<()> {
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO rejections (id, at, tenant, source, outcome, reason, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(unavailable)?;
        for r in &page {
            tx.execute(
                &stmt,
                &[
                    &r.id, &r.at, &r.tenant, &r.source, &r.outcome, &r.reason, &r.body,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// Imports hourly counter rows (`minute` holds the hour), replacing existing ones.
    pub async fn import_hourly_counters(&self, rows: Vec<CounterRow>) -> Result<()> {
        self.import_counter_rows(
            "INSERT INTO counters_hourly (hour, tenant, source, channel, destination, metric,
                count)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (hour, tenant, source, channel, destination, metric)
             DO UPDATE SET count = excluded.count",
            rows,
        )
        .await
    }

    /// Imports state documents as exported (keys kept as they are).
    pub async fn import_state(&self, rows: Vec<(String, String)>) -> Result<()> {
        let client = self.write_conn().await?;
        for (key, value) in rows {
            client
                .execute(
                    "INSERT INTO state (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, &value],
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Imports alert transitions unless some were imported already (a resumed copy).
    pub async fn import_alert_transitions(&self, rows: Vec<AlertTransitionRecord>) -> Result<()> {
        let existing = self
            .read_rows("SELECT COUNT(*) FROM alert_transitions", &[])
            .await?
            .first()
            .map_or(0, |r| r.get::<_, i64>(0));
        if existing > 0 {
            return Ok(());
        }
        self.record_alert_transitions(rows).await
    }

    /// Imports recovery jobs as exported, keeping their ids; jobs already there (a resumed
    /// copy) are left as they are.
    pub async fn import_recoveries(&self, jobs: Vec<RecoveryJob>) -> Result<()> {
        let present: std::collections::HashSet<String> = self
            .read_rows("SELECT id FROM recoveries", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for job in jobs {
            if !present.contains(&job.id) {
                self.create_recovery(job).await?;
            }
        }
        Ok(())
    }

    /// Imports drills as exported, keeping their ids; drills already there (a resumed copy)
    /// are left as they are. A drill still running keeps its expiry: its fault applies on the
    /// new store until then, and the drill duty finishes it there.
    pub async fn import_drills(&self, drills: Vec<Drill>) -> Result<()> {
        let present: std::collections::HashSet<String> = self
            .read_rows("SELECT id FROM drills", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for drill in drills {
            if !present.contains(&drill.id) {
                self.create_drill(drill).await?;
            }
        }
        Ok(())
    }

    /// Writes copied counters into shard 0 with the source's values (so a second copy
    /// changes nothing).
    pub async fn import_counters(&self, rows: Vec<CounterRow>) -> Result<()> {
        self.import_counter_rows(
            "INSERT INTO counters (minute, tenant, source, channel, destination, metric, shard,
                count)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7)
             ON CONFLICT (minute, tenant, source, channel, destination, metric, shard)
             DO UPDATE SET count = excluded.count",
            rows,
        )
        .await
    }

    /// Runs `sql` (seven parameters: bucket, tenant, source, channel, destination, metric,
    /// count) for every row, in one transaction.
    async fn import_counter_rows(&self, sql: &str, rows: Vec<CounterRow>) -> Result<()> {
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let stmt = tx.prepare_cached(sql).await.map_err(unavailable)?;
        for c in &rows {
            tx.execute(
                &stmt,
                &[
                    &c.minute,
                    &c.tenant,
                    &c.source,
                    &c.channel,
                    &c.destination,
                    &c.metric,
                    &c.count,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// After a copy with explicit ids: moves the id sequences past them.
    pub async fn finish_import(&self) -> Result<()> {
        let client = self.write_conn().await?;
        client
            .batch_execute(
                "SELECT setval(pg_get_serial_sequence('attempts', 'id'),
                               GREATEST((SELECT MAX(id) FROM attempts), 1));
                 SELECT setval(pg_get_serial_sequence('rejections', 'id'),
                               GREATEST((SELECT MAX(id) FROM rejections), 1))",
            )
            .await
            .map_err(unavailable)
    }
}
