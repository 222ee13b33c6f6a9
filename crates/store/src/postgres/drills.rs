//! Fire drills on PostgreSQL: their rows, each write one statement on a pooled connection
//! (drills are not the hot path and need no group commit).

use intake_core::Timestamp;

use super::error::unavailable;
use super::PostgresStore;
use crate::decode;
use crate::model::*;
use crate::sql::DRILL_COLUMNS;
use crate::{Result, StoreError};

impl PostgresStore {
    pub(super) async fn insert_drill(&self, d: Drill) -> Result<()> {
        let client = self.write_conn().await?;
        let inserted = client
            .execute(
                "INSERT INTO drills (id, scenario, target, tenant, trigger_kind, schedule, state,
                    created_by, started_at, expires_at, detected_at, notified_at, healed_at,
                    report)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &d.id,
                    &d.scenario.as_str(),
                    &d.target,
                    &d.tenant,
                    &d.trigger.as_str(),
                    &d.schedule,
                    &d.state.as_str(),
                    &d.created_by,
                    &d.started_at.as_millis(),
                    &d.expires_at.as_millis(),
                    &d.detected_at.map(Timestamp::as_millis),
                    &d.notified_at.map(Timestamp::as_millis),
                    &d.healed_at.map(Timestamp::as_millis),
                    &d.report.to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "a drill `{}` exists already",
                d.id
            )))
        }
    }

    pub(super) async fn drill(&self, id: &str) -> Result<Option<Drill>> {
        let rows = self
            .read_rows(
                &format!("SELECT {DRILL_COLUMNS} FROM drills WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first().map(decode::drill).transpose()
    }

    pub(super) async fn drills(&self, f: DrillFilter) -> Result<Vec<Drill>> {
        let states: Option<Vec<&str>> =
            (!f.states.is_empty()).then(|| f.states.iter().map(|s| s.as_str()).collect());
        let limit = if f.limit == 0 {
            1000
        } else {
            f.limit.min(1000)
        } as i64;
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {DRILL_COLUMNS} FROM drills
                     WHERE ($1::text IS NULL OR tenant = $1)
                       AND ($2::text IS NULL OR schedule = $2)
                       AND ($3::text[] IS NULL OR state = ANY($3))
                     ORDER BY started_at DESC, id DESC LIMIT $4"
                ),
                &[&f.tenant, &f.schedule, &states, &limit],
            )
            .await?;
        rows.iter().map(decode::drill).collect()
    }

    pub(super) async fn write_drill(&self, u: DrillUpdate) -> Result<Option<Drill>> {
        let client = self.write_conn().await?;
        // One statement: written unless the drill has ended, and the drill comes back as
        // stored either way (the second half reads it only when the first changed nothing).
        let rows = client
            .query(
                &format!(
                    "WITH saved AS (
                        UPDATE drills SET state = $2, detected_at = $3, notified_at = $4,
                            healed_at = $5, report = $6
                        WHERE id = $1 AND state = 'running'
                        RETURNING {DRILL_COLUMNS})
                     SELECT * FROM saved
                     UNION ALL
                     SELECT {DRILL_COLUMNS} FROM drills
                     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM saved)"
                ),
                &[
                    &u.id,
                    &u.state.as_str(),
                    &u.detected_at.map(Timestamp::as_millis),
                    &u.notified_at.map(Timestamp::as_millis),
                    &u.healed_at.map(Timestamp::as_millis),
                    &u.report.to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        rows.first().map(decode::drill).transpose()
    }
}
