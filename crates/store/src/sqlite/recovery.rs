//! Recovery jobs on SQLite: the jobs' rows, the dedupe keys a backfill compares with, replayed
//! deliveries and requeue pages.
//!
//! The writes run on the writer, in its group commit, like every write (the writer calls the
//! functions here with its connection); a requeue's dry run and the reads use the read pool.
//! A requeue page is read and changed in the writer's transaction, which holds the only write
//! lock: no claim or finish can slip between what it reads and what it changes.

use std::collections::HashSet;

use intake_core::delivery::DeliveryState;
use intake_core::{DeliveryId, Timestamp};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::reads::parse_id;
use super::writer::Request;
use super::SqliteStore;
use crate::counters::{Counts, DeliveryLabels, Metric};
use crate::decode;
use crate::group_commit::Reply;
use crate::model::*;
use crate::requeue::{self, Action, Change, PageDelivery, PageEvent};
use crate::sql::{RECOVERY_COLUMNS, RECOVERY_FINAL_STATES};
use crate::{Result, StoreError};

/// Keys per statement of `known_dedupe_keys` (SQLite allows 32,766 parameters; this keeps
/// statements small and cacheable by their shape).
const KEYS_PER_QUERY: usize = 500;

impl SqliteStore {
    pub(super) async fn insert_recovery(&self, job: RecoveryJob) -> Result<()> {
        let id = job.id.clone();
        let inserted = self
            .write(Request::CreateRecovery(Box::new(job)), Reply::Bool)
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "a recovery job `{id}` exists already"
            )))
        }
    }

    pub(super) async fn recovery(&self, id: &str) -> Result<Option<RecoveryJob>> {
        let id = id.to_string();
        self.read(move |c| get(c, &id)).await
    }

    pub(super) async fn recoveries(&self, filter: RecoveryFilter) -> Result<Vec<RecoveryJob>> {
        self.read(move |c| list(c, &filter)).await
    }

    pub(super) async fn write_recovery_step(
        &self,
        update: RecoveryUpdate,
    ) -> Result<Option<RecoveryJob>> {
        let id = update.id.clone();
        self.write(Request::SaveRecovery(Box::new(update)), Reply::Count)
            .await?;
        // Read after the commit: the job as stored, whatever a cancel did meanwhile.
        self.recovery(&id).await
    }

    pub(super) async fn request_cancel(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<RecoveryJob>> {
        let request = Request::CancelRecovery {
            id: id.to_string(),
            now,
        };
        self.write(request, Reply::Count).await?;
        self.recovery(id).await
    }

    pub(super) async fn dedupe_keys_known(
        &self,
        source: &str,
        keys: Vec<String>,
    ) -> Result<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let source = source.to_string();
        self.read(move |c| known_keys(c, &source, &keys)).await
    }

    pub(super) async fn replay(&self, batch: ReplayBatch) -> Result<ReplayOutcome> {
        if batch.items.is_empty() {
            return Ok(ReplayOutcome::default());
        }
        // Events are never deleted, so one that is missing now was never there: a caller's
        // mistake, refused before anything is written.
        let ids: Vec<String> = batch.items.iter().map(|(e, _)| e.to_string()).collect();
        let missing = self.read(move |c| missing_events(c, &ids)).await?;
        if let Some(id) = missing {
            return Err(StoreError::Corrupt(format!(
                "cannot replay event `{id}`: no such event"
            )));
        }
        self.write(Request::Replay(Box::new(batch)), Reply::Replayed)
            .await
    }

    pub(super) async fn requeue(&self, req: RequeueRequest) -> Result<RequeuePage> {
        if req.dry_run {
            // Nothing is written, so the read pool serves it (and a store that cannot write
            // can still say what a requeue would do).
            return self
                .read(move |c| {
                    let events = load_page(c, &req)?;
                    let changes = requeue::plan(&req, &events);
                    Ok(requeue::report(
                        &req,
                        &events,
                        &changes,
                        &mut Counts::default(),
                    ))
                })
                .await;
        }
        self.write(Request::Requeue(Box::new(req)), Reply::Requeued)
            .await
            .map(|page| *page)
    }
}

fn get(c: &Connection, id: &str) -> rusqlite::Result<Option<RecoveryJob>> {
    c.prepare_cached(&format!(
        "SELECT {RECOVERY_COLUMNS} FROM recoveries WHERE id = ?1"
    ))?
    .query_row([id], |r| decode::recovery_job(r))
    .optional()
}

fn list(c: &Connection, f: &RecoveryFilter) -> rusqlite::Result<Vec<RecoveryJob>> {
    let mut sql = format!(
        "SELECT {RECOVERY_COLUMNS} FROM recoveries
         WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR source = ?2)"
    );
    let mut args: Vec<rusqlite::types::Value> = vec![
        f.tenant
            .clone()
            .map_or(rusqlite::types::Value::Null, Into::into),
        f.source
            .clone()
            .map_or(rusqlite::types::Value::Null, Into::into),
    ];
    if !f.states.is_empty() {
        let marks: Vec<String> = (0..f.states.len())
            .map(|i| format!("?{}", args.len() + i + 1))
            .collect();
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        args.extend(f.states.iter().map(|s| s.as_str().to_string().into()));
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT {}",
        list_limit(f.limit)
    ));
    c.prepare_cached(&sql)?
        .query_map(params_from_iter(args), |r| decode::recovery_job(r))?
        .collect()
}

/// A listing's limit: at most 1000, and 0 (a default filter) means 1000.
fn list_limit(limit: usize) -> usize {
    if limit == 0 {
        1000
    } else {
        limit.min(1000)
    }
}

fn known_keys(c: &Connection, source: &str, keys: &[String]) -> rusqlite::Result<HashSet<String>> {
    let mut known = HashSet::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("?{}", i + 2)).collect();
        let sql = format!(
            "SELECT dedupe_key FROM events WHERE source = ?1 AND dedupe_key IN ({})",
            marks.join(", ")
        );
        let args = std::iter::once(source).chain(chunk.iter().map(String::as_str));
        let mut stmt = c.prepare_cached(&sql)?;
        for key in stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(0))? {
            known.insert(key?);
        }
    }
    Ok(known)
}

/// The first of `ids` that names no event.
fn missing_events(c: &Connection, ids: &[String]) -> rusqlite::Result<Option<String>> {
    let mut stmt = c.prepare_cached("SELECT 1 FROM events WHERE id = ?1")?;
    for id in ids {
        if !stmt.exists([id])? {
            return Ok(Some(id.clone()));
        }
    }
    Ok(None)
}

/// Inserts a job unless its id is taken; whether it did.
pub(super) fn create(c: &Connection, job: &RecoveryJob) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO recoveries (id, kind, tenant, source, dry_run, state, params, cursor,
                progress, report, error, cancel_requested, created_by, created_at, started_at,
                updated_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            job.id,
            job.kind.as_str(),
            job.tenant,
            job.source,
            job.dry_run,
            job.state.as_str(),
            job.params.to_string(),
            job.cursor.as_ref().map(|v| v.to_string()),
            job.progress.to_string(),
            job.report.to_string(),
            job.error,
            job.cancel_requested,
            job.created_by,
            job.created_at.as_millis(),
            job.started_at.map(Timestamp::as_millis),
            job.updated_at.as_millis(),
            job.finished_at.map(Timestamp::as_millis),
        ])?;
    Ok(n == 1)
}

/// Writes a step of a job that has not ended; how many rows changed.
pub(super) fn save(c: &Connection, u: &RecoveryUpdate) -> rusqlite::Result<u64> {
    let n = c
        .prepare_cached(&format!(
            "UPDATE recoveries SET state = ?2, cursor = ?3, progress = ?4, report = ?5,
                error = ?6, started_at = COALESCE(?7, started_at), updated_at = ?8,
                finished_at = ?9
             WHERE id = ?1 AND state NOT IN {RECOVERY_FINAL_STATES}"
        ))?
        .execute(params![
            u.id,
            u.state.as_str(),
            u.cursor.as_ref().map(|v| v.to_string()),
            u.progress.to_string(),
            u.report.to_string(),
            u.error,
            u.started_at.map(Timestamp::as_millis),
            u.updated_at.as_millis(),
            u.finished_at.map(Timestamp::as_millis),
        ])?;
    Ok(n as u64)
}

/// Asks a job that has not ended to stop (a queued one stops at once); how many rows changed.
pub(super) fn cancel(c: &Connection, id: &str, now: Timestamp) -> rusqlite::Result<u64> {
    let n = c
        .prepare_cached(&format!(
            "UPDATE recoveries SET cancel_requested = 1, updated_at = ?2,
                state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                finished_at = CASE WHEN state = 'queued' THEN ?2 ELSE finished_at END
             WHERE id = ?1 AND state NOT IN {RECOVERY_FINAL_STATES}"
        ))?
        .execute(params![id, now.as_millis()])?;
    Ok(n as u64)
}

/// Creates the replayed deliveries of a batch; destinations that got one go to `woken`.
pub(super) fn replay(
    c: &Connection,
    batch: &ReplayBatch,
    counts: &mut Counts,
    woken: &mut HashSet<String>,
) -> rusqlite::Result<ReplayOutcome> {
    let now = batch.now.as_millis();
    // The event's labels come from its row; the partial unique index on (event, destination,
    // replay key) turns a second delivery of the same key into nothing.
    let mut insert = c.prepare_cached(
        "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state,
            attempts, due_at, created_at, updated_at, origin, replay_key, recovery)
         SELECT ?1, id, ?2, tenant, source, channel, 'pending', 0, ?3, ?3, ?3, 'replay', ?4, ?5
         FROM events WHERE id = ?6
         ON CONFLICT (event_id, destination, replay_key) WHERE replay_key IS NOT NULL
         DO NOTHING
         RETURNING tenant, source, channel",
    )?;
    let mut outcome = ReplayOutcome::default();
    let mut replayed: HashSet<&str> = HashSet::new();
    for (event_id, destination) in &batch.items {
        let id = DeliveryId::generate(batch.now);
        let labels = insert
            .query_row(
                params![
                    id.as_str(),
                    destination,
                    now,
                    batch.key,
                    batch.recovery,
                    event_id.as_str()
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((tenant, source, channel)) = labels else {
            outcome.already += 1;
            continue;
        };
        outcome.created += 1;
        let labels = DeliveryLabels {
            tenant: &tenant,
            source: &source,
            channel: &channel,
            destination,
            metric: Metric::DeliveriesCreated,
        };
        counts.delivery_changed(batch.now, &labels);
        if replayed.insert(event_id.as_str()) {
            counts.replayed(batch.now, &tenant, &source, &channel);
        }
        woken.insert(destination.clone());
    }
    Ok(outcome)
}

/// The events of a requeue page, with their deliveries.
fn load_page(c: &Connection, req: &RequeueRequest) -> rusqlite::Result<Vec<PageEvent>> {
    use intake_core::EventId;
    // Ids are ULIDs whose time part is the instant of receipt: the window is an id range,
    // served by the primary key. `+source` keeps SQLite from scanning the whole source through
    // the dedupe index instead.
    let rows: Vec<(String, String, String)> = c
        .prepare_cached(
            "SELECT id, tenant, channel FROM events
             WHERE +source = ?1 AND id >= ?2 AND id < ?3 AND id > ?4
               AND received_at >= ?5 AND received_at < ?6
             ORDER BY id LIMIT ?7",
        )?
        .query_map(
            params![
                req.source,
                EventId::lower_bound(req.from),
                EventId::lower_bound(req.to),
                req.after.as_ref().map_or("", |a| a.as_str()),
                req.from.as_millis(),
                req.to.as_millis(),
                req.limit.clamp(1, 10_000) as i64,
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut deliveries = c.prepare_cached(
        "SELECT id, destination, state, due_at FROM deliveries WHERE event_id = ?1
         ORDER BY destination, id",
    )?;
    let mut events = Vec::with_capacity(rows.len());
    for (id, tenant, channel) in rows {
        let ds = deliveries
            .query_map([&id], |r| {
                let state: String = r.get(2)?;
                Ok(PageDelivery {
                    id: parse_id(&r.get::<_, String>(0)?)?,
                    destination: r.get(1)?,
                    state: DeliveryState::parse(&state).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            2,
                            rusqlite::types::Type::Text,
                            format!("unknown delivery state `{state}`").into(),
                        )
                    })?,
                    due_at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        events.push(PageEvent {
            id: parse_id(&id)?,
            tenant,
            channel,
            deliveries: ds,
        });
    }
    Ok(events)
}

/// Reads, decides and changes one requeue page in the writer's transaction; destinations with
/// new due work go to `woken`.
pub(super) fn requeue_page(
    c: &Connection,
    req: &RequeueRequest,
    counts: &mut Counts,
    woken: &mut HashSet<String>,
) -> rusqlite::Result<RequeuePage> {
    let events = load_page(c, req)?;
    let mut applied = Vec::new();
    for change in requeue::plan(req, &events) {
        let Some(event) = events.get(change.event) else {
            continue;
        };
        if apply_change(c, req, event, &change)? {
            applied.push(change);
        }
    }
    woken.extend(requeue::woken(&applied));
    Ok(requeue::report(req, &events, &applied, counts))
}

/// Makes one change, if the delivery is still as it was read; whether it did.
fn apply_change(
    c: &Connection,
    req: &RequeueRequest,
    event: &PageEvent,
    change: &Change,
) -> rusqlite::Result<bool> {
    let now = req.now.as_millis();
    let id = change.delivery_id.as_str();
    let n = match change.action {
        Action::StaleLease => c
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', lease_id = NULL, lease_node = NULL,
                    due_at = ?2, updated_at = ?2
                 WHERE id = ?1 AND state = 'in_flight' AND due_at < ?3",
            )?
            .execute(params![id, now, req.stale_before.as_millis()])?,
        Action::RetryingReset => c
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?2,
                    updated_at = ?2
                 WHERE id = ?1 AND state = 'retrying'",
            )?
            .execute(params![id, now])?,
        Action::Rerouted => c
            .prepare_cached(
                "UPDATE deliveries SET state = 'dead', lease_id = NULL, lease_node = NULL,
                    due_at = ?2, updated_at = ?2, last_error = ?3
                 WHERE id = ?1 AND state IN ('pending', 'retrying', 'in_flight')",
            )?
            .execute(params![
                id,
                now,
                requeue::reroute_error(&req.recovery, &change.destination)
            ])?,
        Action::Created => c
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel,
                    state, attempts, due_at, created_at, updated_at, recovery)
                 SELECT ?1, e.id, ?2, e.tenant, e.source, e.channel, 'pending', 0, ?3, ?3, ?3, ?4
                 FROM events e WHERE e.id = ?5 AND NOT EXISTS (
                    SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.destination = ?2)",
            )?
            .execute(params![
                id,
                change.destination,
                now,
                req.recovery,
                event.id.as_str()
            ])?,
    };
    Ok(n == 1)
}
