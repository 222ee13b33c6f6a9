//! The writer: the only writing connection, plugged into the shared group-commit engine
//! (the `group_commit` module) on a thread of its own, and every write the store makes.
//!
//! Every write goes through here, so that one transaction (one fsync) carries a whole batch
//! of them. What is SQLite's own: `BEGIN IMMEDIATE` (the write lock is taken at once, so a
//! busy database fails the batch at its start rather than half way), a rewind of the WAL
//! between two batches when the checkpoint thread asks for it, and faults that fail the way a
//! read-only disk does.

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_core::delivery::{CompletionState, DeliveryState, NextStep};
use intake_core::event::Origin;
use intake_core::{DeliveryId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::broadcast;

use super::full::{self, Disk, Reclaim, Reserve};
use super::reads::{parse_id, rolled_until};
use super::{completion, drills, incidents, recovery, retention};
use crate::counters::Counts;
use crate::decode;
use crate::group_commit::{Backend, Failure, Output};
use crate::model::*;
use crate::sql::{HOURS_KEPT_KEY, MINUTES_KEPT_KEY, OUTBOX_COLUMNS, SILENCE_COLUMNS};
use crate::{Result, StoreError, StoreFault};

/// What the writer is asked to do.
pub(super) enum Request {
    Ingest(Box<NewEvent>),
    Reject(Rejection),
    Claim {
        destination: String,
        now: Timestamp,
        lease: Duration,
        limit: usize,
        /// Sources whose deliveries are left alone (a queue-stall drill).
        held: Vec<String>,
    },
    Finish(Box<FinishedAttempt>),
    Release(Vec<(DeliveryId, String)>, Timestamp),
    Ping,
    Fault(Option<StoreFault>),
    Compact(Timestamp, CounterRetention),
    PutState(String, String),
    PutStates(Vec<(String, Option<String>)>),
    InitState(String, String),
    PruneNotifications(Timestamp),
    Alerts(Vec<AlertTransitionRecord>),
    Heartbeat(NodeInfo),
    AcquireDuty {
        duty: String,
        now: Timestamp,
        ttl: Duration,
    },
    ReleaseDuty(String),
    Reap {
        now: Timestamp,
        node_timeout: Duration,
    },
    Leave,
    EnqueueNotifications(Box<NotificationBatch>),
    ClaimNotifications {
        now: Timestamp,
        lease: Duration,
        limit: usize,
    },
    FinishNotification {
        id: i64,
        outcome: NotificationOutcome,
        now: Timestamp,
    },
    CreateSilence(Box<Silence>, Vec<NewNotification>),
    ExpireSilence {
        id: String,
        now: Timestamp,
        announcements: Vec<NewNotification>,
    },
    CreateToken(Box<ApiToken>),
    RevokeToken {
        id: String,
        tenant: Option<String>,
        now: Timestamp,
    },
    CreateRecovery(Box<RecoveryJob>),
    SaveRecovery(Box<RecoveryUpdate>),
    CancelRecovery {
        id: String,
        now: Timestamp,
    },
    Replay(Box<ReplayBatch>),
    Requeue(Box<RequeueRequest>),
    CreateDrill(Box<Drill>),
    UpdateDrill(Box<DrillUpdate>),
    WriteIncident(Box<IncidentWrite>),
    Complete(Vec<CompletionRequest>),
    /// One batch of a retention pass (`sqlite::retention`).
    Expire(Box<ExpireRequest>),
}

/// A delivery as a claim's `RETURNING` gives it.
struct ClaimedRow {
    id: String,
    event_id: String,
    attempts: u32,
    tenant: String,
    source: String,
    channel: String,
    /// The delivery's own origin (NULL: its event's).
    origin: Option<String>,
}

/// The writing connection and what it needs besides.
pub(super) struct Writer {
    conn: Connection,
    node_id: String,
    /// Set by the checkpoint thread when the WAL should start over.
    rewind: Arc<AtomicBool>,
    /// Where the wake-ups of recovery writes go (`Store::subscribe_new_work`).
    new_work: broadcast::Sender<WorkSignal>,
    /// Destinations that got due work from a recovery write in the open transaction.
    staged: HashSet<String>,
    /// Destinations that got due work in a committed transaction of this batch.
    committed: HashSet<String>,
    /// False under [`StoreFault::AcceptWithoutQueueing`]: ingests store no deliveries.
    queueing: bool,
    /// Normal, full, or draining after a full disk (the `full` module).
    disk: Disk,
    /// The space set aside for a full disk.
    reserve: Reserve,
    /// The database file, for its file system's free space.
    db_file: File,
    /// Whether `disk` is other than normal, for the store's readers (`Store::disk_full`).
    disk_flag: Arc<AtomicBool>,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// What a write is refused with while the disk is full.
fn full_refusal() -> StoreError {
    StoreError::Unavailable(
        "the disk is full (writes resume once a checkpoint can empty the WAL)".into(),
    )
}

/// What new work is refused with while the writer drains after a full disk.
fn draining_refusal() -> StoreError {
    StoreError::Unavailable(format!(
        "the disk is full: what was accepted is being delivered; new events are accepted again once the file system has {} MiB free",
        2 * (full::RESERVE_BYTES >> 20)
    ))
}

impl Backend for Writer {
    type Request = Request;
    type Conn = ();

    fn fault(request: &Request) -> Option<Option<StoreFault>> {
        match request {
            Request::Fault(f) => Some(*f),
            _ => None,
        }
    }

    fn fault_changed(&mut self, fault: Option<StoreFault>) {
        self.queueing = fault != Some(StoreFault::AcceptWithoutQueueing);
    }

    fn refuses(&mut self, request: &Request) -> Option<StoreError> {
        self.refuse_while_draining(request)
    }

    fn yields(request: &Request) -> bool {
        // The delivery side gives way to ingest (see `group_commit`): a failing destination's
        // claims and finishes, or a dispatcher catching up, must not lengthen the commits
        // that acknowledgements wait for.
        matches!(
            request,
            Request::Claim { .. } | Request::Finish(_) | Request::Release(..)
        )
    }

    async fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    async fn begin(&mut self, _: &mut ()) -> Result<()> {
        self.reclaim_if_full()?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.failed(e))
    }

    async fn apply(
        &mut self,
        _: &mut (),
        requests: &[Request],
        counts: &mut Counts,
        outputs: &mut Vec<Output>,
    ) -> Result<usize, Failure> {
        let Some(request) = requests.first() else {
            return Ok(0);
        };
        let output = self
            .apply_one(request, counts)
            .map_err(|e| Failure::Request(self.failed(e)))?;
        outputs.push(output);
        Ok(1)
    }

    async fn write_counts(&mut self, _: &mut (), counts: Counts) -> Result<(), Failure> {
        self.flush_counts(counts)
            .map_err(|e| Failure::Batch(self.failed(e)))
    }

    async fn commit(&mut self, _: &mut ()) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.failed(e))?;
        self.committed.extend(self.staged.drain());
        Ok(())
    }

    async fn rollback(&mut self, _: &mut ()) {
        self.staged.clear();
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            // SQLite may already have rolled back on its own (e.g. after an I/O error).
            tracing::debug!(error = %e, "rollback");
        }
    }

    async fn refuse(&mut self, _: &mut ()) -> StoreError {
        // The injected fault fails the way a read-only or full disk does: with SQLite's own
        // error, raised by a real statement.
        let refused = self
            .conn
            .execute_batch("PRAGMA query_only = ON")
            .and_then(|()| {
                self.conn
                    .execute("INSERT INTO meta (key, value) VALUES ('fault', 'x')", [])
            });
        if let Err(e) = self.conn.execute_batch("PRAGMA query_only = OFF") {
            tracing::warn!(error = %e, "cannot make the writer writable again");
        }
        match refused {
            Err(e) => unavailable(e),
            Ok(_) => StoreError::Unavailable("writes are rejected (injected fault)".into()),
        }
    }

    async fn after_batch(&mut self, _: &mut ()) {
        self.rewind_if_asked();
        // Wake-ups go out once the work is committed. Ingest needs none here (its caller wakes
        // this process's dispatchers); recovery writes have no such caller.
        let mut destinations: Vec<String> = self.committed.drain().collect();
        destinations.sort();
        for destination in destinations {
            // Nobody subscribed yet is fine: a dispatcher starting later looks at its queue.
            let _ = self.new_work.send(WorkSignal::Destination(destination));
        }
    }
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        rewind: Arc<AtomicBool>,
        node_id: String,
        new_work: broadcast::Sender<WorkSignal>,
        reserve: Reserve,
        db_file: File,
        disk_flag: Arc<AtomicBool>,
    ) -> Self {
        Writer {
            conn,
            node_id,
            rewind,
            new_work,
            staged: HashSet::new(),
            committed: HashSet::new(),
            queueing: true,
            disk: Disk::Normal,
            reserve,
            db_file,
            disk_flag,
        }
    }

    /// The error a failed statement or commit is answered with. A full disk also gives the
    /// reserve back and stops the writes until [`Writer::reclaim_if_full`] has emptied the WAL.
    fn failed(&mut self, e: rusqlite::Error) -> StoreError {
        if full::is_disk_full(&e) && !matches!(self.disk, Disk::Full(_)) {
            let now = Instant::now();
            let since = match self.disk {
                Disk::Draining { since, .. } => since,
                _ => now,
            };
            let released = self.reserve.release();
            tracing::error!(
                error = %e,
                released_reserve_mib = if released { full::RESERVE_BYTES >> 20 } else { 0 },
                "the disk is full: refusing every write until a checkpoint can empty the WAL, then delivering what was accepted (free some space on the data directory's file system)"
            );
            self.set_disk(Disk::Full(Reclaim::new(now, since, released)));
        }
        unavailable(e)
    }

    /// On a full disk (see the `full` module): refuses the batch at once, or, when a try is
    /// due, copies the WAL into the database and empties it, and lets the batch run if that
    /// worked (the writer then drains: [`Writer::refuse_while_draining`]).
    fn reclaim_if_full(&mut self) -> Result<()> {
        let Disk::Full(reclaim) = &mut self.disk else {
            return Ok(());
        };
        let now = Instant::now();
        if !reclaim.due(now) {
            reclaim.refused += 1;
            return Err(full_refusal());
        }
        // (busy, frames in the WAL, frames copied): busy is 1 when a reader kept the
        // checkpoint from finishing, and the WAL was then not emptied.
        let truncated = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        match truncated {
            Ok(0) => {
                tracing::warn!(
                    refused_batches = reclaim.refused,
                    full_for_ms = now.duration_since(reclaim.since).as_millis() as u64,
                    "the WAL was copied into the database and emptied: delivering what was accepted; new events are refused until the file system has {} MiB free",
                    2 * (full::RESERVE_BYTES >> 20)
                );
                let since = reclaim.since;
                self.set_disk(Disk::Draining {
                    since,
                    next_check: now,
                });
                Ok(())
            }
            Ok(_) | Err(_) => {
                reclaim.failed(now);
                reclaim.refused += 1;
                Err(full_refusal())
            }
        }
    }

    /// While draining after a full disk: refuses new work (it would take the room the
    /// delivery of what was accepted needs), until the file system has room again; then sets
    /// the reserve aside again and accepts everything.
    fn refuse_while_draining(&mut self, request: &Request) -> Option<StoreError> {
        let Disk::Draining { since, next_check } = &mut self.disk else {
            return None;
        };
        if !matches!(
            request,
            Request::Ingest(_) | Request::Reject(_) | Request::Ping | Request::Replay(_)
        ) {
            return None;
        }
        let now = Instant::now();
        if now < *next_check {
            return Some(draining_refusal());
        }
        *next_check = now + full::ROOM_CHECK;
        if !full::room_again(full::free_bytes(&self.db_file)) {
            return Some(draining_refusal());
        }
        let full_for = now.duration_since(*since);
        self.reserve.take();
        tracing::warn!(
            full_for_ms = full_for.as_millis() as u64,
            "the disk has room again: accepting new events"
        );
        self.set_disk(Disk::Normal);
        None
    }

    /// Moves to `disk`, and tells the store's readers whether it is other than normal.
    fn set_disk(&mut self, disk: Disk) {
        self.disk_flag
            .store(!matches!(disk, Disk::Normal), Ordering::Relaxed);
        self.disk = disk;
    }

    /// Between two batches, completes the checkpoint the checkpoint thread asked for, so that
    /// the next transaction starts the WAL over (see `checkpoint_loop`).
    fn rewind_if_asked(&self) {
        if !self.rewind.load(Ordering::Relaxed) {
            return;
        }
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            }) {
            // Everything is copied: the next write transaction rewinds the WAL.
            Ok((frames, copied)) if frames == copied => self.rewind.store(false, Ordering::Relaxed),
            // The checkpoint thread is mid-copy, or a reader holds an old snapshot: try again
            // after the next batch.
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "checkpoint from the writer"),
        }
    }

    /// Runs one request in the open transaction.
    fn apply_one(&mut self, req: &Request, counts: &mut Counts) -> rusqlite::Result<Output> {
        Ok(match req {
            // The story's bug, injected: the event is stored, its deliveries are not.
            Request::Ingest(ev) if !self.queueing => {
                let unqueued = NewEvent {
                    deliveries: Vec::new(),
                    ..(**ev).clone()
                };
                Output::Accepted(self.ingest(&unqueued, counts)?)
            }
            Request::Ingest(ev) => Output::Accepted(self.ingest(ev, counts)?),
            Request::Reject(rej) => {
                self.reject(rej, counts)?;
                Output::Unit
            }
            Request::Claim {
                destination,
                now,
                lease,
                limit,
                held,
            } => Output::Claimed(self.claim(destination, *now, *lease, *limit, held)?),
            Request::Finish(att) => {
                self.finish(att, counts)?;
                Output::Unit
            }
            Request::Release(leases, now) => {
                self.release(leases, *now)?;
                Output::Unit
            }
            Request::Compact(now, retention) => Output::Compacted(self.compact(*now, *retention)?),
            Request::PruneNotifications(before) => {
                self.prune_notifications(*before)?;
                Output::Unit
            }
            Request::PutState(key, value) => {
                self.put_state(key, value)?;
                Output::Unit
            }
            Request::PutStates(writes) => {
                self.put_states(writes)?;
                Output::Unit
            }
            Request::InitState(key, value) => Output::Text(self.init_state(key, value)?),
            Request::Alerts(list) => {
                self.record_alerts(list)?;
                Output::Unit
            }
            Request::Ping => {
                self.ping()?;
                Output::Unit
            }
            // The engine applies faults itself.
            Request::Fault(_) => Output::Unit,
            Request::Heartbeat(node) => {
                self.heartbeat(node)?;
                Output::Unit
            }
            Request::AcquireDuty { duty, now, ttl } => {
                Output::Bool(self.acquire_duty(duty, *now, *ttl)?)
            }
            Request::ReleaseDuty(duty) => {
                self.release_duty(duty)?;
                Output::Unit
            }
            Request::Reap { now, node_timeout } => Output::Count(self.reap(*now, *node_timeout)?),
            Request::Leave => {
                self.leave()?;
                Output::Unit
            }
            Request::EnqueueNotifications(batch) => {
                self.enqueue_notifications(batch)?;
                Output::Unit
            }
            Request::ClaimNotifications { now, lease, limit } => {
                Output::Outbox(self.claim_notifications(*now, *lease, *limit)?)
            }
            Request::FinishNotification { id, outcome, now } => {
                self.finish_notification(*id, outcome, *now)?;
                Output::Unit
            }
            Request::CreateSilence(silence, announcements) => {
                self.create_silence(silence, announcements)?;
                Output::Unit
            }
            Request::ExpireSilence {
                id,
                now,
                announcements,
            } => Output::Expiry(self.expire_silence(id, *now, announcements)?),
            Request::CreateToken(token) => {
                self.create_token(token)?;
                Output::Unit
            }
            Request::RevokeToken { id, tenant, now } => {
                Output::Count(self.revoke_token(id, tenant.as_deref(), *now)?)
            }
            Request::CreateRecovery(job) => Output::Bool(recovery::create(&self.conn, job)?),
            Request::SaveRecovery(update) => Output::Count(recovery::save(&self.conn, update)?),
            Request::CancelRecovery { id, now } => {
                Output::Count(recovery::cancel(&self.conn, id, *now)?)
            }
            Request::Replay(batch) => Output::Replayed(recovery::replay(
                &self.conn,
                batch,
                counts,
                &mut self.staged,
            )?),
            Request::Requeue(req) => Output::Requeued(Box::new(recovery::requeue_page(
                &self.conn,
                req,
                counts,
                &mut self.staged,
            )?)),
            Request::CreateDrill(drill) => Output::Bool(drills::create(&self.conn, drill)?),
            Request::UpdateDrill(update) => Output::Count(drills::update(&self.conn, update)?),
            Request::Complete(requests) => {
                Output::Completions(completion::complete(&self.conn, requests, counts)?)
            }
            Request::WriteIncident(write) => Output::Bool(incidents::write(&self.conn, write)?),
            Request::Expire(req) => Output::Expired(retention::expire(&self.conn, req)?),
        })
    }

    fn create_token(&self, t: &ApiToken) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO api_tokens (id, hash, tenant, name, created_by, created_at,
                        expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                t.id,
                t.hash,
                t.tenant,
                t.name,
                t.created_by,
                t.created_at.as_millis(),
                t.expires_at.map(|e| e.as_millis()),
                t.revoked_at.map(|e| e.as_millis()),
            ])?;
        Ok(())
    }

    fn revoke_token(
        &self,
        id: &str,
        tenant: Option<&str>,
        now: Timestamp,
    ) -> rusqlite::Result<u64> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?3)
                 WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)",
            )?
            .execute(params![id, tenant, now.as_millis()])?;
        Ok(n as u64)
    }

    fn prune_notifications(&self, before: Timestamp) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM notifications
                 WHERE state <> 'pending' AND finished_at < ?1 AND incident IS NULL",
            )?
            .execute([before.as_millis()])?;
        Ok(())
    }

    fn put_state(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![format!("state:{key}"), value])?;
        Ok(())
    }

    fn put_states(&self, writes: &[(String, Option<String>)]) -> rusqlite::Result<()> {
        for (key, value) in writes {
            match value {
                Some(value) => self.put_state(key, value)?,
                None => {
                    self.conn
                        .prepare_cached("DELETE FROM meta WHERE key = ?1")?
                        .execute([format!("state:{key}")])?;
                }
            }
        }
        Ok(())
    }

    fn init_state(&self, key: &str, value: &str) -> rusqlite::Result<String> {
        let key = format!("state:{key}");
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![key, value])?;
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
    }

    fn record_alerts(&self, list: &[AlertTransitionRecord]) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO alert_transitions (at, rule, tenant, source, channel,
                        destination, severity, state, value, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for t in list {
            stmt.execute(params![
                t.at.as_millis(),
                t.rule,
                t.tenant,
                t.source,
                t.channel,
                t.destination,
                t.severity,
                t.state,
                t.value,
                t.reason
            ])?;
        }
        Ok(())
    }

    fn ping(&self) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('ping', '1')
                     ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            [],
        )?;
        Ok(())
    }

    fn heartbeat(&self, node: &NodeInfo) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO nodes (id, address, started_at, last_heartbeat)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                            last_heartbeat = MAX(last_heartbeat, excluded.last_heartbeat)",
            )?
            .execute(params![
                node.id,
                node.address,
                node.started_at.as_millis(),
                node.last_heartbeat.as_millis()
            ])?;
        Ok(())
    }

    fn acquire_duty(&self, duty: &str, now: Timestamp, ttl: Duration) -> rusqlite::Result<bool> {
        // The same statement as on PostgreSQL: take a free or expired lease, or renew our own;
        // another node's live lease is left alone.
        Ok(self
            .conn
            .prepare_cached(
                "INSERT INTO duties (duty, holder, acquired_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (duty) DO UPDATE SET holder = excluded.holder,
                            expires_at = excluded.expires_at,
                            acquired_at = CASE WHEN duties.holder = excluded.holder
                                THEN duties.acquired_at ELSE excluded.acquired_at END
                         WHERE duties.holder = excluded.holder
                            OR duties.expires_at <= excluded.acquired_at
                         RETURNING holder",
            )?
            .query_row(
                params![
                    duty,
                    self.node_id,
                    now.as_millis(),
                    now.plus(ttl).as_millis()
                ],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn release_duty(&self, duty: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM duties WHERE duty = ?1 AND holder = ?2")?
            .execute(params![duty, self.node_id])?;
        Ok(())
    }

    fn reap(&self, now: Timestamp, node_timeout: Duration) -> rusqlite::Result<u64> {
        let reaped = self
            .conn
            .prepare_cached(
                // `state IN (…)` repeats the condition of the partial index `deliveries_due`
                // so that SQLite reads only the queue's rows: `state = 'in_flight'` alone
                // does not imply it for SQLite's planner, which then reads every delivery
                // ever made, in the writer, at every heartbeat (issue 16).
                "UPDATE deliveries SET state = 'pending', lease_id = NULL,
                            lease_node = NULL, due_at = ?1, updated_at = ?1
                         WHERE state IN ('pending', 'retrying', 'in_flight')
                           AND state = 'in_flight' AND lease_node IS NOT ?3 AND NOT EXISTS (
                            SELECT 1 FROM nodes n WHERE n.id = deliveries.lease_node
                              AND n.last_heartbeat >= ?2)",
            )?
            .execute(params![
                now.as_millis(),
                now.minus(node_timeout).as_millis(),
                self.node_id
            ])?;
        self.conn
            .prepare_cached("DELETE FROM nodes WHERE last_heartbeat < ?1")?
            .execute([now.minus(Duration::from_secs(86_400)).as_millis()])?;
        Ok(reaped as u64)
    }

    fn leave(&self) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM duties WHERE holder = ?1")?
            .execute([&self.node_id])?;
        self.conn
            .prepare_cached("DELETE FROM nodes WHERE id = ?1")?
            .execute([&self.node_id])?;
        Ok(())
    }

    fn enqueue_notifications(&self, batch: &NotificationBatch) -> rusqlite::Result<()> {
        insert_notifications(&self.conn, &batch.notifications)?;
        for write in &batch.incidents {
            // A write whose incident changed since the pipeline read it is left out; the
            // next evaluation decides again from what is stored.
            if !incidents::write(&self.conn, write)? {
                tracing::debug!(incident = %write.incident.id, "incident changed meanwhile; its pipeline write waits for the next evaluation");
            }
        }
        for (key, value) in &batch.state {
            self.conn
                .prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![format!("state:{key}"), value])?;
        }
        for id in &batch.announced_expiries {
            self.conn
                .prepare_cached("UPDATE silences SET expiry_announced = 1 WHERE id = ?1")?
                .execute([id])?;
        }
        Ok(())
    }

    fn claim_notifications(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> rusqlite::Result<Vec<OutboxItem>> {
        let mut items = self
            .conn
            .prepare_cached(&format!(
                "UPDATE notifications SET due_at = ?1
                         WHERE id IN (
                            SELECT n.id FROM notifications n
                            WHERE n.state = 'pending' AND n.due_at <= ?2
                              AND n.id = (SELECT MIN(m.id) FROM notifications m
                                          WHERE m.notifier = n.notifier AND m.state = 'pending')
                            ORDER BY n.id LIMIT ?3)
                         RETURNING {OUTBOX_COLUMNS}"
            ))?
            .query_map(
                params![now.plus(lease).as_millis(), now.as_millis(), limit as i64],
                |r| decode::outbox_item(r),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    fn finish_notification(
        &self,
        id: i64,
        outcome: &NotificationOutcome,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let (state, due_at, error) = match outcome {
            NotificationOutcome::Sent => (NotificationState::Sent, now, None),
            NotificationOutcome::Retry { due_at, error } => {
                (NotificationState::Pending, *due_at, Some(error.as_str()))
            }
            NotificationOutcome::Dead { error } => {
                (NotificationState::Dead, now, Some(error.as_str()))
            }
        };
        let finished = (state != NotificationState::Pending).then_some(now.as_millis());
        self.conn
            .prepare_cached(
                "UPDATE notifications SET state = ?1, attempts = attempts + 1,
                            due_at = ?2, finished_at = ?3,
                            last_error = COALESCE(?4, last_error)
                         WHERE id = ?5 AND state = 'pending'",
            )?
            .execute(params![
                state.as_str(),
                due_at.as_millis(),
                finished,
                error,
                id
            ])?;
        Ok(())
    }

    fn create_silence(
        &self,
        silence: &Silence,
        announcements: &[NewNotification],
    ) -> rusqlite::Result<()> {
        let matchers = serde_json::to_string(&silence.matchers)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn
            .prepare_cached(
                "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by,
                            comment, created_at, expiry_announced)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                silence.id,
                matchers,
                silence.starts_at.as_millis(),
                silence.ends_at.as_millis(),
                silence.created_by,
                silence.comment,
                silence.created_at.as_millis(),
                silence.expiry_announced
            ])?;
        insert_notifications(&self.conn, announcements)
    }

    fn expire_silence(
        &self,
        id: &str,
        now: Timestamp,
        announcements: &[NewNotification],
    ) -> rusqlite::Result<SilenceExpiry> {
        let found = self
            .conn
            .prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"
            ))?
            .query_row([id], |r| decode::silence(r))
            .optional()?;
        Ok(match found {
            None => SilenceExpiry::NotFound,
            Some(s) if s.ends_at <= now => SilenceExpiry::AlreadyEnded(s),
            Some(mut s) => {
                self.conn
                    .prepare_cached(
                        "UPDATE silences SET ends_at = ?1, expiry_announced = 1
                                 WHERE id = ?2",
                    )?
                    .execute(params![now.as_millis(), id])?;
                insert_notifications(&self.conn, announcements)?;
                s.ends_at = now;
                s.expiry_announced = true;
                SilenceExpiry::Expired(s)
            }
        })
    }

    fn ingest(&self, ev: &NewEvent, counts: &mut Counts) -> rusqlite::Result<Accepted> {
        let n = &ev.normalized;
        let headers = serde_json::to_string(&ev.headers).unwrap_or_else(|_| "[]".into());
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO events (id, tenant, source, origin, sor_event_id, dedupe_key,
                    event_type, channel, raw_channel, object_type, object_id, occurred_at,
                    received_at, headers, body, conversation_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (source, dedupe_key) DO NOTHING",
            )?
            .execute(params![
                ev.id.as_str(),
                ev.tenant,
                ev.source,
                ev.origin.as_str(),
                n.sor_event_id,
                n.dedupe_key,
                n.event_type,
                n.channel.as_str(),
                n.raw_channel,
                n.object_type,
                n.object_id,
                n.occurred_at.map(Timestamp::as_millis),
                ev.received_at.as_millis(),
                headers,
                ev.body,
                n.conversation_id,
            ])?;
        if inserted == 0 {
            let existing: String = self
                .conn
                .prepare_cached("SELECT id FROM events WHERE source = ?1 AND dedupe_key = ?2")?
                .query_row(params![ev.source, n.dedupe_key], |r| r.get(0))?;
            let id = existing
                .parse()
                .map_err(|e: intake_core::ids::IdParseError| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
            counts.duplicate(ev);
            return Ok(Accepted {
                id,
                duplicate: true,
            });
        }
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state,
                attempts, due_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7, ?7)",
        )?;
        for (id, destination) in &ev.deliveries {
            insert.execute(params![
                id.as_str(),
                ev.id.as_str(),
                destination,
                ev.tenant,
                ev.source,
                n.channel.as_str(),
                ev.received_at.as_millis(),
            ])?;
        }
        counts.accepted(ev);
        Ok(Accepted {
            id: ev.id.clone(),
            duplicate: false,
        })
    }

    fn reject(&self, rej: &Rejection, counts: &mut Counts) -> rusqlite::Result<()> {
        if rej.body.is_some() || rej.kind == RejectionKind::Invalid {
            self.conn
                .prepare_cached(
                    "INSERT INTO rejections (at, tenant, source, outcome, reason, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    rej.at.as_millis(),
                    rej.tenant,
                    rej.source,
                    rej.kind.outcome(),
                    rej.reason,
                    rej.body,
                ])?;
        }
        counts.rejected(rej);
        Ok(())
    }

    fn claim(
        &self,
        destination: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
        held: &[String],
    ) -> rusqlite::Result<Vec<ClaimedDelivery>> {
        let lease_id = format!("{:032x}", rand::random::<u128>());
        let lease_until = now.plus(lease);
        let mut claimed = Vec::new();
        // Held sources (a queue-stall drill) get a statement of their own, so that the claim
        // of every other moment is the plain one.
        let sql = if held.is_empty() {
            "UPDATE deliveries SET state = 'in_flight', lease_id = ?1, due_at = ?2, updated_at = ?3,
                lease_node = ?6
             WHERE id IN (
                SELECT id FROM deliveries
                WHERE destination = ?4 AND state IN ('pending', 'retrying', 'in_flight')
                  AND due_at <= ?3 AND ?7 = '[]'
                ORDER BY due_at LIMIT ?5)
             RETURNING id, event_id, attempts, tenant, source, channel, origin"
        } else {
            "UPDATE deliveries SET state = 'in_flight', lease_id = ?1, due_at = ?2, updated_at = ?3,
                lease_node = ?6
             WHERE id IN (
                SELECT id FROM deliveries
                WHERE destination = ?4 AND state IN ('pending', 'retrying', 'in_flight')
                  AND due_at <= ?3 AND source NOT IN (SELECT value FROM json_each(?7))
                ORDER BY due_at LIMIT ?5)
             RETURNING id, event_id, attempts, tenant, source, channel, origin"
        };
        let held = serde_json::to_string(held).unwrap_or_else(|_| "[]".into());
        let rows: Vec<ClaimedRow> = self
            .conn
            .prepare_cached(sql)?
            .query_map(
                params![
                    lease_id,
                    lease_until.as_millis(),
                    now.as_millis(),
                    destination,
                    limit as i64,
                    self.node_id,
                    held
                ],
                |r| {
                    Ok(ClaimedRow {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        attempts: r.get(2)?,
                        tenant: r.get(3)?,
                        source: r.get(4)?,
                        channel: r.get(5)?,
                        origin: r.get(6)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut event = self.conn.prepare_cached(
            "SELECT event_type, origin, occurred_at, received_at, body FROM events WHERE id = ?1",
        )?;
        for row in rows {
            let (event_type, event_origin, occurred_at, received_at, body): (
                String,
                String,
                Option<i64>,
                i64,
                Vec<u8>,
            ) = event.query_row([&row.event_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            // A delivery's own origin (a replay) wins over its event's.
            let origin = row.origin.unwrap_or(event_origin);
            claimed.push(ClaimedDelivery {
                id: parse_id(&row.id)?,
                lease_id: lease_id.clone(),
                attempt: row.attempts + 1,
                destination: destination.to_string(),
                event_id: parse_id(&row.event_id)?,
                tenant: row.tenant,
                source: row.source,
                event_type,
                channel: row.channel,
                origin: Origin::parse(&origin).unwrap_or(Origin::Webhook),
                occurred_at: occurred_at.map(Timestamp),
                received_at: Timestamp(received_at),
                body,
            });
        }
        Ok(claimed)
    }

    fn finish(&self, a: &FinishedAttempt, counts: &mut Counts) -> rusqlite::Result<()> {
        let (state, due_at, delivered_at) = match a.next {
            NextStep::Delivered => (
                DeliveryState::Delivered,
                a.finished_at,
                Some(a.finished_at.as_millis()),
            ),
            NextStep::RetryAt(t) => (DeliveryState::Retrying, t, None),
            NextStep::Dead => (DeliveryState::Dead, a.finished_at, None),
        };
        // A destination on receipts: the 2xx leaves the delivery `received`, unless its
        // handler confirmed before its answer was read (the first word stands).
        let completion = (a.awaits_completion && state == DeliveryState::Delivered)
            .then_some(CompletionState::Received.as_str());
        let duration_ms = a.finished_at.since(a.started_at).as_millis() as i64;
        let updated = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = ?1, attempts = ?2, due_at = ?3, lease_id = NULL,
                    lease_node = NULL, updated_at = ?4, delivered_at = ?5, last_status = ?6, last_error = ?7,
                    completion = COALESCE(completion, ?10), delivered_ms = ?11
                 WHERE id = ?8 AND state = 'in_flight' AND lease_id = ?9",
            )?
            .execute(params![
                state.as_str(),
                a.attempt,
                due_at.as_millis(),
                a.finished_at.as_millis(),
                delivered_at,
                a.status,
                a.error,
                a.delivery_id.as_str(),
                a.lease_id,
                completion,
                delivered_at.map(|_| duration_ms),
            ])?;
        if updated > 0 {
            counts.finished(a, state);
        }
        // A success that changed its delivery is recorded there (`delivered_ms`, read back
        // as an attempt by `decode::with_delivered_attempts`): an attempt row per delivery
        // was a third of the writes of a delivered event. Failures, dead letters and
        // superseded attempts keep their rows.
        if updated > 0 && state == DeliveryState::Delivered {
            return Ok(());
        }
        let outcome = if updated == 0 {
            "superseded"
        } else {
            state.as_str()
        };
        self.conn
            .prepare_cached(
                "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                a.delivery_id.as_str(),
                a.attempt,
                a.started_at.as_millis(),
                duration_ms,
                a.status,
                a.error,
                outcome,
            ])?;
        Ok(())
    }

    fn release(&self, leases: &[(DeliveryId, String)], now: Timestamp) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE deliveries SET state = 'pending', lease_id = NULL, lease_node = NULL,
                due_at = ?1, updated_at = ?1
             WHERE id = ?2 AND state = 'in_flight' AND lease_id = ?3",
        )?;
        for (id, lease) in leases {
            stmt.execute(params![now.as_millis(), id.as_str(), lease])?;
        }
        Ok(())
    }

    fn flush_counts(&self, counts: Counts) -> rusqlite::Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO counters (minute, tenant, source, channel, destination, metric, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (minute, tenant, source, channel, destination, metric)
             DO UPDATE SET count = count + excluded.count",
        )?;
        for (k, v) in counts.into_rows() {
            stmt.execute(params![
                k.minute,
                k.tenant,
                k.source,
                k.channel,
                k.destination,
                k.metric.as_str(),
                v
            ])?;
        }
        Ok(())
    }

    fn compact(
        &self,
        now: Timestamp,
        retention: CounterRetention,
    ) -> rusqlite::Result<CompactReport> {
        const HOUR: i64 = 3_600_000;
        let current_hour = Resolution::Hour.bucket(now).as_millis();
        // The last rolled hour is rolled again: a counter committed right at the hour's end may
        // have landed after the previous compaction.
        let from = (rolled_until(&self.conn)? - HOUR).max(0);
        let hours_rolled = self.conn.execute(
            "INSERT INTO counters_hourly (hour, tenant, source, channel, destination, metric, count)
             SELECT (minute / 3600000) * 3600000, tenant, source, channel, destination, metric,
                    SUM(count)
             FROM counters WHERE minute >= ?1 AND minute < ?2
             GROUP BY 1, tenant, source, channel, destination, metric
             ON CONFLICT (hour, tenant, source, channel, destination, metric)
             DO UPDATE SET count = excluded.count",
            params![from, current_hour],
        )? as u64;
        let watermark = current_hour.max(rolled_until(&self.conn)?);
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('counters_rolled_until', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [watermark.to_string()],
        )?;
        // Minute rows go only once their hour is rolled up.
        let minute_cutoff = now
            .minus(retention.minutes)
            .as_millis()
            .min(watermark - HOUR);
        let minutes_deleted = self
            .conn
            .execute("DELETE FROM counters WHERE minute < ?1", [minute_cutoff])?
            as u64;
        let hour_cutoff = now.minus(retention.hours).as_millis();
        let hours_deleted = self
            .conn
            .execute("DELETE FROM counters_hourly WHERE hour < ?1", [hour_cutoff])?
            as u64;
        // Since when each resolution is complete, for audits (`Store::audit`); a mark never
        // moves back, even if the retention is shortened and then lengthened again.
        for (key, mark) in [
            (MINUTES_KEPT_KEY, minute_cutoff),
            (HOURS_KEPT_KEY, hour_cutoff),
        ] {
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value =
                    CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                params![key, mark.to_string()],
            )?;
        }
        Ok(CompactReport {
            hours_rolled,
            minutes_deleted,
            hours_deleted,
        })
    }
}

/// Enqueues notifications: pending, due at their creation.
pub(super) fn insert_notifications(
    conn: &Connection,
    list: &[NewNotification],
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO notifications (notifier, key, notice, state, attempts, due_at, created_at,
            incident, tenant)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?5, ?6)",
    )?;
    for n in list {
        stmt.execute(params![
            n.notifier,
            n.key,
            n.notice,
            n.created_at.as_millis(),
            n.incident,
            n.tenant
        ])?;
    }
    Ok(())
}
