//! Incidents on PostgreSQL: each write is one short transaction on a pooled connection (they
//! are rare, a person's or the monitor's, and need no group commit); the version check of
//! [`IncidentWrite`] is the `WHERE version = $n` of one `UPDATE`, so two nodes writing the same
//! incident at once cannot both succeed.

use intake_core::Timestamp;
use tokio_postgres::types::ToSql;

use super::error::unavailable;
use super::outbox::insert_notifications;
use super::PostgresStore;
use crate::decode::{self, IncidentRow};
use crate::model::*;
use crate::sql::{INCIDENT_COLUMNS, INCIDENT_ENTRY_COLUMNS, OUTBOX_COLUMNS};
use crate::{Result, StoreError};

impl PostgresStore {
    pub(super) async fn write_incident_now(&self, write: IncidentWrite) -> Result<bool> {
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let written = write_in(&tx, &write).await?;
        if !written {
            if write.expected_version.is_none() {
                return Err(StoreError::Corrupt(format!(
                    "an incident `{}` exists already",
                    write.incident.id
                )));
            }
            return Ok(false);
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    pub(super) async fn read_incident(&self, id: &str) -> Result<Option<Incident>> {
        let rows = self
            .read_rows(
                &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first().map(decode::incident).transpose()
    }

    pub(super) async fn read_incidents(&self, f: IncidentFilter) -> Result<Vec<Incident>> {
        let (open_only, since) = match f.open_or_resolved_since {
            None => (false, None),
            Some(since) => (true, since.map(|t| t.as_millis())),
        };
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents
                     WHERE ($1::text IS NULL OR tenants LIKE $1 ESCAPE '\\')
                       AND (NOT $2 OR resolved_at IS NULL OR resolved_at >= $3)
                     ORDER BY declared_at DESC, id DESC LIMIT $4"
                ),
                &[
                    &f.tenant_pattern(),
                    &open_only,
                    &since.unwrap_or(i64::MAX),
                    &(f.cap() as i64),
                ],
            )
            .await?;
        let all = rows
            .iter()
            .map(decode::incident)
            .collect::<Result<Vec<_>>>()?;
        Ok(all.into_iter().filter(|i| f.admits(i)).collect())
    }

    pub(super) async fn read_incident_entries(&self, id: &str) -> Result<Vec<IncidentEntry>> {
        self.read_rows(
            &format!(
                "SELECT {INCIDENT_ENTRY_COLUMNS} FROM incident_entries
                 WHERE incident = $1 ORDER BY at, id"
            ),
            &[&id],
        )
        .await?
        .iter()
        .map(decode::incident_entry)
        .collect()
    }

    pub(super) async fn read_incident_notices(&self, id: &str) -> Result<Vec<OutboxItem>> {
        self.read_rows(
            &format!("SELECT {OUTBOX_COLUMNS} FROM notifications WHERE incident = $1 ORDER BY id"),
            &[&id],
        )
        .await?
        .iter()
        .map(decode::outbox_item)
        .collect()
    }

    /// Imports copied incidents with their timeline entries (keeping the entries' ids) and the
    /// incident notices that ended (with their outcome); what is there already (a resumed
    /// copy) is left as it is.
    pub async fn import_incidents(
        &self,
        incidents: Vec<Incident>,
        entries: Vec<IncidentEntry>,
        finished_notices: Vec<OutboxItem>,
    ) -> Result<()> {
        let present: std::collections::HashSet<String> = self
            .read_rows("SELECT id FROM incidents", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        for i in incidents.iter().filter(|i| !present.contains(&i.id)) {
            let write = IncidentWrite {
                incident: i.clone(),
                expected_version: None,
                entries: Vec::new(),
                notices: Vec::new(),
            };
            write_in(&tx, &write).await?;
            tx.execute(
                "UPDATE incidents SET version = $2 WHERE id = $1",
                &[&i.id, &i.version],
            )
            .await
            .map_err(unavailable)?;
        }
        for e in entries.iter().filter(|e| !present.contains(&e.incident)) {
            tx.execute(
                "INSERT INTO incident_entries (id, incident, at, kind, author, text, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &e.id,
                    &e.incident,
                    &e.at.as_millis(),
                    &e.kind,
                    &e.author,
                    &e.text,
                    &e.detail.to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        for n in finished_notices
            .iter()
            .filter(|n| n.incident.as_ref().is_some_and(|i| !present.contains(i)))
        {
            tx.execute(
                "INSERT INTO notifications (notifier, key, notice, state, attempts, due_at,
                    created_at, finished_at, last_error, incident, tenant)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &n.notifier,
                    &n.key,
                    &n.notice,
                    &n.state.as_str(),
                    &i32::try_from(n.attempts).unwrap_or(i32::MAX),
                    &n.due_at.as_millis(),
                    &n.created_at.as_millis(),
                    &n.finished_at.map(Timestamp::as_millis),
                    &n.last_error,
                    &n.incident,
                    &n.tenant,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('incident_entries', 'id'),
                           GREATEST((SELECT MAX(id) FROM incident_entries), 1))",
            &[],
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }
}

/// Applies one incident write in an open transaction: `false` (and nothing written) when a new
/// incident's id exists or the stored version moved.
pub(super) async fn write_in(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &IncidentWrite,
) -> Result<bool> {
    let i = &w.incident;
    let row = IncidentRow::of(i);
    let (impact_start, declared_at, updated_at) = (
        i.impact_start.as_millis(),
        i.declared_at.as_millis(),
        i.updated_at.as_millis(),
    );
    let resolved_at = i.resolved_at.map(Timestamp::as_millis);
    let next_update_at = i.next_update_at.map(Timestamp::as_millis);
    let columns: [&(dyn ToSql + Sync); 16] = [
        &i.id,
        &i.title,
        &i.severity.as_str(),
        &i.status.as_str(),
        &row.tenants,
        &row.sources,
        &row.channels,
        &i.commander,
        &impact_start,
        &declared_at,
        &i.declared_by,
        &updated_at,
        &resolved_at,
        &next_update_at,
        &row.tracking,
        &i.drill,
    ];
    let changed = match w.expected_version {
        None => tx
            .execute(
                &format!(
                    "INSERT INTO incidents ({INCIDENT_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 1)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &columns,
            )
            .await
            .map_err(unavailable)?,
        Some(version) => {
            let mut values: Vec<&(dyn ToSql + Sync)> = columns.to_vec();
            values.push(&version);
            tx.execute(
                "UPDATE incidents SET title = $2, severity = $3, status = $4, tenants = $5,
                    sources = $6, channels = $7, commander = $8, impact_start = $9,
                    declared_at = $10, declared_by = $11, updated_at = $12, resolved_at = $13,
                    next_update_at = $14, tracking = $15, drill = $16,
                    version = version + 1
                 WHERE id = $1 AND version = $17",
                &values,
            )
            .await
            .map_err(unavailable)?
        }
    };
    if changed == 0 {
        return Ok(false);
    }
    for e in &w.entries {
        tx.execute(
            "INSERT INTO incident_entries (incident, at, kind, author, text, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &i.id,
                &e.at.as_millis(),
                &e.kind,
                &e.author,
                &e.text,
                &e.detail.to_string(),
            ],
        )
        .await
        .map_err(unavailable)?;
    }
    insert_notifications(tx, &w.notices).await?;
    Ok(true)
}
