//! Fire drills on SQLite: their rows, written by the writer in its group commit like every
//! write, read through the read pool.

use intake_core::Timestamp;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::writer::Request;
use super::SqliteStore;
use crate::decode;
use crate::group_commit::Reply;
use crate::model::*;
use crate::sql::DRILL_COLUMNS;
use crate::{Result, StoreError};

impl SqliteStore {
    pub(super) async fn insert_drill(&self, drill: Drill) -> Result<()> {
        let id = drill.id.clone();
        let inserted = self
            .write(Request::CreateDrill(Box::new(drill)), Reply::Bool)
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "a drill `{id}` exists already"
            )))
        }
    }

    pub(super) async fn drill(&self, id: &str) -> Result<Option<Drill>> {
        let id = id.to_string();
        self.read(move |c| get(c, &id)).await
    }

    pub(super) async fn drills(&self, filter: DrillFilter) -> Result<Vec<Drill>> {
        self.read(move |c| list(c, &filter)).await
    }

    pub(super) async fn write_drill(&self, update: DrillUpdate) -> Result<Option<Drill>> {
        let id = update.id.clone();
        self.write(Request::UpdateDrill(Box::new(update)), Reply::Count)
            .await?;
        // Read after the commit: the drill as stored, whatever ended it meanwhile.
        self.drill(&id).await
    }
}

fn get(c: &Connection, id: &str) -> rusqlite::Result<Option<Drill>> {
    c.prepare_cached(&format!("SELECT {DRILL_COLUMNS} FROM drills WHERE id = ?1"))?
        .query_row([id], |r| decode::drill(r))
        .optional()
}

fn list(c: &Connection, f: &DrillFilter) -> rusqlite::Result<Vec<Drill>> {
    let mut sql = format!(
        "SELECT {DRILL_COLUMNS} FROM drills
         WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR schedule = ?2)"
    );
    let text = |v: &Option<String>| v.clone().map_or(rusqlite::types::Value::Null, Into::into);
    let mut args: Vec<rusqlite::types::Value> = vec![text(&f.tenant), text(&f.schedule)];
    if !f.states.is_empty() {
        let marks: Vec<String> = (0..f.states.len())
            .map(|i| format!("?{}", args.len() + i + 1))
            .collect();
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        args.extend(f.states.iter().map(|s| s.as_str().to_string().into()));
    }
    let limit = if f.limit == 0 {
        1000
    } else {
        f.limit.min(1000)
    };
    sql.push_str(&format!(" ORDER BY started_at DESC, id DESC LIMIT {limit}"));
    c.prepare_cached(&sql)?
        .query_map(params_from_iter(args), |r| decode::drill(r))?
        .collect()
}

/// Inserts a drill unless its id is taken; whether it did.
pub(super) fn create(c: &Connection, d: &Drill) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO drills (id, scenario, target, tenant, trigger_kind, schedule, state,
                created_by, started_at, expires_at, detected_at, notified_at, healed_at, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            d.id,
            d.scenario.as_str(),
            d.target,
            d.tenant,
            d.trigger.as_str(),
            d.schedule,
            d.state.as_str(),
            d.created_by,
            d.started_at.as_millis(),
            d.expires_at.as_millis(),
            d.detected_at.map(Timestamp::as_millis),
            d.notified_at.map(Timestamp::as_millis),
            d.healed_at.map(Timestamp::as_millis),
            d.report.to_string(),
        ])?;
    Ok(n == 1)
}

/// Writes an update of a drill still running; how many rows changed.
pub(super) fn update(c: &Connection, u: &DrillUpdate) -> rusqlite::Result<u64> {
    let n = c
        .prepare_cached(
            "UPDATE drills SET state = ?2, detected_at = ?3, notified_at = ?4, healed_at = ?5,
                report = ?6
             WHERE id = ?1 AND state = 'running'",
        )?
        .execute(params![
            u.id,
            u.state.as_str(),
            u.detected_at.map(Timestamp::as_millis),
            u.notified_at.map(Timestamp::as_millis),
            u.healed_at.map(Timestamp::as_millis),
            u.report.to_string(),
        ])?;
    Ok(n as u64)
}
