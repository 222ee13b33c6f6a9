//! Incidents on SQLite: the writes run on the writer, in its group commit (the writer calls
//! [`write`] with its connection, alone or inside a notification batch); the reads use the
//! read pool.

use intake_core::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::writer::{insert_notifications, Request};
use super::SqliteStore;
use crate::decode::{self, IncidentRow};
use crate::group_commit::Reply;
use crate::model::*;
use crate::sql::{INCIDENT_COLUMNS, INCIDENT_ENTRY_COLUMNS, OUTBOX_COLUMNS};
use crate::{Result, StoreError};

impl SqliteStore {
    pub(super) async fn write_incident_now(&self, write: IncidentWrite) -> Result<bool> {
        let id = write.incident.id.clone();
        let new = write.expected_version.is_none();
        let written = self
            .write(Request::WriteIncident(Box::new(write)), Reply::Bool)
            .await?;
        if new && !written {
            return Err(StoreError::Corrupt(format!(
                "an incident `{id}` exists already"
            )));
        }
        Ok(written)
    }

    pub(super) async fn read_incident(&self, id: &str) -> Result<Option<Incident>> {
        let id = id.to_string();
        self.read(move |c| get(c, &id)).await
    }

    pub(super) async fn read_incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>> {
        self.read(move |c| list(c, &filter)).await
    }

    pub(super) async fn read_incident_entries(&self, id: &str) -> Result<Vec<IncidentEntry>> {
        let id = id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {INCIDENT_ENTRY_COLUMNS} FROM incident_entries
                 WHERE incident = ?1 ORDER BY at, id"
            ))?
            .query_map([id], |r| decode::incident_entry(r))?
            .collect()
        })
        .await
    }

    pub(super) async fn read_incident_notices(&self, id: &str) -> Result<Vec<OutboxItem>> {
        let id = id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM notifications WHERE incident = ?1 ORDER BY id"
            ))?
            .query_map([id], |r| decode::outbox_item(r))?
            .collect()
        })
        .await
    }

    /// Every incident, oldest first, and every timeline entry (for `intake migrate-store`).
    pub async fn export_incidents(&self) -> Result<(Vec<Incident>, Vec<IncidentEntry>)> {
        self.read(|c| {
            let incidents = c
                .prepare_cached(&format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY declared_at, id"
                ))?
                .query_map([], |r| decode::incident(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let entries = c
                .prepare_cached(&format!(
                    "SELECT {INCIDENT_ENTRY_COLUMNS} FROM incident_entries ORDER BY id"
                ))?
                .query_map([], |r| decode::incident_entry(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((incidents, entries))
        })
        .await
    }

    /// The incident notices that ended (sent or given up), oldest first, with their outcome
    /// (for `intake migrate-store`; pending ones are copied with the rest of the outbox).
    pub async fn export_finished_incident_notices(&self) -> Result<Vec<OutboxItem>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM notifications
                 WHERE incident IS NOT NULL AND state <> 'pending' ORDER BY id"
            ))?
            .query_map([], |r| decode::outbox_item(r))?
            .collect()
        })
        .await
    }
}

fn get(c: &Connection, id: &str) -> rusqlite::Result<Option<Incident>> {
    c.prepare_cached(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
    ))?
    .query_row([id], |r| decode::incident(r))
    .optional()
}

fn list(c: &Connection, f: &IncidentFilter) -> rusqlite::Result<Vec<Incident>> {
    let (open_only, since) = match f.open_or_resolved_since {
        None => (false, None),
        Some(since) => (true, since.map(|t| t.as_millis())),
    };
    let rows = c
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents
             WHERE (?1 IS NULL OR tenants LIKE ?1 ESCAPE '\\')
               AND (?2 = 0 OR resolved_at IS NULL OR resolved_at >= ?3)
             ORDER BY declared_at DESC, id DESC LIMIT ?4"
        ))?
        .query_map(
            params![
                f.tenant_pattern(),
                open_only,
                since.unwrap_or(i64::MAX),
                f.cap() as i64
            ],
            |r| decode::incident(r),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().filter(|i| f.admits(i)).collect())
}

/// Applies one incident write in the writer's open transaction: `false` (and nothing written)
/// when a new incident's id exists or the stored version moved.
pub(super) fn write(conn: &Connection, w: &IncidentWrite) -> rusqlite::Result<bool> {
    let i = &w.incident;
    let row = IncidentRow::of(i);
    let (impact_start, declared_at, updated_at) = (
        i.impact_start.as_millis(),
        i.declared_at.as_millis(),
        i.updated_at.as_millis(),
    );
    let resolved_at = i.resolved_at.map(Timestamp::as_millis);
    let next_update_at = i.next_update_at.map(Timestamp::as_millis);
    let columns: [&dyn rusqlite::ToSql; 16] = [
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
        None => conn
            .prepare_cached(&format!(
                "INSERT INTO incidents ({INCIDENT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 1)
                 ON CONFLICT (id) DO NOTHING"
            ))?
            .execute(&columns[..])?,
        Some(version) => {
            let mut values: Vec<&dyn rusqlite::ToSql> = columns.to_vec();
            values.push(&version);
            conn.prepare_cached(
                "UPDATE incidents SET title = ?2, severity = ?3, status = ?4, tenants = ?5,
                    sources = ?6, channels = ?7, commander = ?8, impact_start = ?9,
                    declared_at = ?10, declared_by = ?11, updated_at = ?12, resolved_at = ?13,
                    next_update_at = ?14, tracking = ?15, drill = ?16,
                    version = version + 1
                 WHERE id = ?1 AND version = ?17",
            )?
            .execute(&values[..])?
        }
    };
    if changed == 0 {
        return Ok(false);
    }
    let mut entry = conn.prepare_cached(
        "INSERT INTO incident_entries (incident, at, kind, author, text, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in &w.entries {
        entry.execute(params![
            i.id,
            e.at.as_millis(),
            e.kind,
            e.author,
            e.text,
            e.detail.to_string()
        ])?;
    }
    insert_notifications(conn, &w.notices)?;
    Ok(true)
}
