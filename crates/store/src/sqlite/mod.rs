//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One writer thread owns the only writing connection and runs the shared group commit
//! (the `group_commit` module) on it: requests queue up while it commits, it takes everything
//! waiting (up to `max_batch`) into one transaction, so a single fsync makes many requests
//! durable at once, and each request's answer is held back until that commit has returned,
//! which is what lets ingest answer 200 only for durable work. Every write, not only ingest,
//! goes through it. Reads use a small pool of separate connections, which WAL lets run beside
//! the writer.
//!
//! One process owns a database file at a time (an exclusive lock on `<db>.lock`). That makes
//! crash recovery simple: any delivery still `in_flight` when the store opens was leased by a
//! process that is gone, and is made due again at once.
//!
//! Recovery writes (replayed deliveries, requeue pages) wake the dispatchers of this process
//! through [`Store::subscribe_new_work`] once committed; ingest's caller wakes them itself.
//!
//! Files: `writer.rs` (the writer and every write), `reads.rs` (the read pool, the queries
//! that need more than one statement, and how a column is read), `recovery.rs` (recovery
//! jobs, replays and requeues, run by the writer), `drills.rs` (fire drills), `audit.rs` (the audit's reads, in one
//! snapshot), `export.rs` (what `migrate-store` reads),
//! `schema.rs` (migrations), `wal.rs` (the checkpoint thread). They import the crate's shared
//! modules, never the PostgreSQL backend.

mod audit;
mod completion;
mod drills;
mod export;
mod full;
mod incidents;
mod reads;
mod recovery;
mod retention;
mod schema;
mod wal;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use intake_core::{DeliveryId, EventId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::broadcast;

use self::reads::{get_event, list_events, queue_stats, read_counters, ReadPool};
use self::writer::{Request, Writer};
use crate::decode;
use crate::group_commit::{self, GroupCommit, Queue, Reply};
use crate::model::*;
use crate::sql::{
    ALERT_TRANSITION_COLUMNS, NOTIFIER_HEALTH, OUTBOX_COLUMNS, SILENCE_COLUMNS, TOKEN_COLUMNS,
};
use crate::{Result, Store, StoreError, StoreFault};

/// How many connections serve reads.
const READERS: usize = 4;

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The most requests one transaction carries.
    pub max_batch: usize,
    /// How long a statement waits for a lock held by another connection before failing.
    pub busy_timeout: Duration,
    /// This node's id (leases are recorded under it).
    pub node_id: String,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 1024,
            busy_timeout: Duration::from_secs(5),
            node_id: crate::generate_node_id(),
        }
    }
}

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    writes: Queue<Request>,
    readers: Arc<ReadPool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    node_id: String,
    /// Wake-ups of recovery writes, sent by the writer after their commit.
    new_work: broadcast::Sender<WorkSignal>,
    // Held until the store is closed or dropped: the exclusive lock that makes this process the
    // only one using the database file.
    lock: Mutex<Option<File>>,
    /// Set by the writer while the disk is full or it drains (the `full` module).
    disk_full: Arc<AtomicBool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Where the disk reserve of the database at `db` lives: `<db>-reserve`, beside its `-wal`.
fn reserve_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-reserve");
    PathBuf::from(name)
}

impl SqliteStore {
    /// The database path named by a `sqlite://` URL (`sqlite://./data/intake.db`,
    /// `sqlite:///var/lib/intake/intake.db`).
    pub fn path_from_url(url: &str) -> Result<PathBuf> {
        let path = url
            .strip_prefix("sqlite://")
            .ok_or_else(|| StoreError::Open(format!("`{url}` is not a sqlite:// URL")))?;
        if path.is_empty() {
            return Err(StoreError::Open(format!("`{url}` names no file")));
        }
        Ok(PathBuf::from(path))
    }

    /// Opens (creating if needed) the database at `path`, runs migrations, and recovers the
    /// leases of a previous process.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Open(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path).map_err(|e| {
            StoreError::Open(format!(
                "cannot create lock file {}: {e}",
                lock_path.display()
            ))
        })?;
        lock.try_lock().map_err(|_| {
            StoreError::Open(format!(
                "{} is in use by another intake process (it holds {}); stop it or use another storage.url",
                path.display(),
                lock_path.display()
            ))
        })?;

        let open_err = |e: rusqlite::Error| StoreError::Open(format!("{}: {e}", path.display()));
        let mut writer = Connection::open(path).map_err(open_err)?;
        // The writer's page cache (16 MiB, against SQLite's 2 MiB default) holds the upper
        // levels of the big indexes (events by id and by dedupe key, deliveries by id), so
        // that on a store of millions of events an ingest or a claim reads little more than
        // the leaf it needs (docs/benchmarks.md, "Cost as the store grows").
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 0;
                 PRAGMA journal_size_limit = 67108864;
                 PRAGMA cache_size = -16384;
                 PRAGMA temp_store = MEMORY;",
            )
            .map_err(open_err)?;
        writer
            .busy_timeout(options.busy_timeout)
            .map_err(open_err)?;
        schema::migrate(&mut writer).map_err(open_err)?;
        // Only this process can hold the lock, so every lease in the file belongs to a process
        // that is gone: make that work due now.
        let recovered = writer
            .execute(
                // The first condition is the partial index's (`deliveries_due`): without it
                // SQLite reads every delivery ever made to find the few in flight.
                "UPDATE deliveries SET state = 'pending', lease_id = NULL, lease_node = NULL,
                    due_at = 0
                 WHERE state IN ('pending', 'retrying', 'in_flight') AND state = 'in_flight'",
                [],
            )
            .map_err(open_err)?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "made deliveries leased by a previous process due again"
            );
        }

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open(path).map_err(open_err)?;
            c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
                .map_err(open_err)?;
            readers.push(Mutex::new(c));
        }
        let checkpointer = Connection::open(path).map_err(open_err)?;
        // The checkpoint thread starts writing out what it copied into the database file
        // through a handle of its own (see `wal::checkpoint_loop`).
        let db_file = std::fs::File::open(path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        checkpointer
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(open_err)?;

        // The space given back when the disk is full (the `full` module), and a handle on the
        // database file through which the writer reads its file system's free space.
        let reserve = full::Reserve::new(reserve_path(path));
        let writer_file = std::fs::File::open(path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;

        let disk_full = Arc::new(AtomicBool::new(false));
        let disk_flag = disk_full.clone();
        let (queue, inbox) = group_commit::queue();
        let stop = Arc::new(AtomicBool::new(false));
        let max_batch = options.max_batch.max(1);
        let rewind = Arc::new(AtomicBool::new(false));
        let rewind2 = rewind.clone();
        let node_id = options.node_id.clone();
        let (new_work, _) = broadcast::channel(1024);
        let writer_work = new_work.clone();
        let busy = queue.busy();
        let writer_thread = std::thread::Builder::new()
            .name("intake-sqlite-writer".into())
            .spawn(move || {
                GroupCommit::new(
                    Writer::new(
                        writer,
                        rewind,
                        node_id,
                        writer_work,
                        reserve,
                        writer_file,
                        disk_flag,
                    ),
                    max_batch,
                    busy,
                )
                .run_blocking(inbox)
            })
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        let stop2 = stop.clone();
        let checkpoint_thread = std::thread::Builder::new()
            .name("intake-sqlite-checkpoint".into())
            .spawn(move || wal::checkpoint_loop(checkpointer, db_file, stop2, rewind2))
            .map_err(|e| StoreError::Open(format!("cannot start the checkpoint thread: {e}")))?;

        Ok(SqliteStore {
            writes: queue,
            readers: Arc::new(ReadPool {
                conns: readers,
                next: AtomicUsize::new(0),
            }),
            threads: Mutex::new(vec![writer_thread, checkpoint_thread]),
            stop,
            path: path.to_path_buf(),
            node_id: options.node_id,
            new_work,
            lock: Mutex::new(Some(lock)),
            disk_full,
        })
    }

    async fn write<T>(
        &self,
        request: Request,
        reply: fn(tokio::sync::oneshot::Sender<Result<T>>) -> Reply,
    ) -> Result<T> {
        self.writes.write(request, reply).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(threads) = self.threads.lock() {
            threads.iter().for_each(|t| t.thread().unpark());
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, event: NewEvent) -> Result<Accepted> {
        self.write(Request::Ingest(Box::new(event)), Reply::Accepted)
            .await
    }

    async fn record_rejection(&self, rejection: Rejection) -> Result<()> {
        self.write(Request::Reject(rejection), Reply::Unit).await
    }

    async fn claim_due_holding(
        &self,
        destination: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<ClaimedDelivery>> {
        let destination = destination.to_string();
        self.write(
            Request::Claim {
                destination,
                now,
                lease,
                limit,
                held: held.to_vec(),
            },
            Reply::Claimed,
        )
        .await
    }

    async fn finish_attempt(&self, attempt: FinishedAttempt) -> Result<()> {
        self.write(Request::Finish(Box::new(attempt)), Reply::Unit)
            .await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>> {
        self.delivery_record(id).await
    }

    async fn complete_deliveries(
        &self,
        requests: Vec<CompletionRequest>,
    ) -> Result<Vec<CompletionReply>> {
        self.complete(requests).await
    }

    async fn completion_backlog(
        &self,
        destination: &str,
        overdue_before: Timestamp,
    ) -> Result<Vec<CompletionBacklog>> {
        self.backlog(destination, overdue_before).await
    }

    async fn release(&self, leases: Vec<(DeliveryId, String)>, now: Timestamp) -> Result<()> {
        self.write(Request::Release(leases, now), Reply::Unit).await
    }

    async fn next_due_at_holding(
        &self,
        destination: &str,
        held: &[String],
    ) -> Result<Option<Timestamp>> {
        let destination = destination.to_string();
        let held = serde_json::to_string(held).unwrap_or_else(|_| "[]".into());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT MIN(due_at) FROM deliveries
                 WHERE destination = ?1 AND state IN ('pending', 'retrying', 'in_flight')
                   AND (?2 = '[]' OR source NOT IN (SELECT value FROM json_each(?2)))",
            )?
            .query_row(rusqlite::params![destination, held], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|t| t.map(Timestamp))
        })
        .await
    }

    async fn list_events(&self, filter: EventFilter) -> Result<Vec<EventSummary>> {
        self.read(move |c| list_events(c, &filter)).await
    }

    async fn get_event(&self, id: &EventId) -> Result<Option<EventDetail>> {
        let id = id.clone();
        self.read(move |c| get_event(c, &id)).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        self.read(queue_stats).await
    }

    async fn list_rejections(
        &self,
        tenant: Option<String>,
        limit: usize,
    ) -> Result<Vec<RejectionRecord>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT at, tenant, source, outcome, reason, body FROM rejections
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![tenant, limit.clamp(1, 1000) as i64], |r| {
                Ok(RejectionRecord {
                    at: Timestamp(r.get(0)?),
                    tenant: r.get(1)?,
                    source: r.get(2)?,
                    outcome: r.get(3)?,
                    reason: r.get(4)?,
                    body: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn read_counters(&self, query: CounterQuery) -> Result<Vec<CounterRow>> {
        self.read(move |c| read_counters(c, &query)).await
    }

    async fn audit(&self, query: AuditQuery) -> Result<AuditCounts> {
        self.audit_counts(query).await
    }

    async fn compact_counters(
        &self,
        now: Timestamp,
        retention: CounterRetention,
    ) -> Result<CompactReport> {
        self.write(Request::Compact(now, retention), Reply::Compacted)
            .await
    }

    fn writer_busy(&self) -> Option<Duration> {
        Some(self.writes.busy_total())
    }

    fn disk_full(&self) -> Option<bool> {
        Some(self.disk_full.load(Ordering::Relaxed))
    }

    async fn expire_events(&self, req: ExpireRequest) -> Result<ExpireBatch> {
        self.write(Request::Expire(Box::new(req)), Reply::Expired)
            .await
    }

    async fn get_state(&self, key: &str) -> Result<Option<String>> {
        let key = format!("state:{key}");
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn prune_notifications(&self, before: Timestamp) -> Result<()> {
        self.write(Request::PruneNotifications(before), Reply::Unit)
            .await
    }

    async fn put_state(&self, key: &str, value: String) -> Result<()> {
        self.write(Request::PutState(key.to_string(), value), Reply::Unit)
            .await
    }

    async fn put_states(&self, writes: Vec<(String, Option<String>)>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(Request::PutStates(writes), Reply::Unit).await
    }

    async fn states_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let prefix = format!("state:{prefix}");
        self.read(move |c| {
            // `substr` compares bytes whatever the key holds (`LIKE` would read `_` and `%`).
            c.prepare_cached(
                "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            )?
            .query_map([&prefix], |r| {
                let key: String = r.get(0)?;
                Ok((key["state:".len()..].to_string(), r.get(1)?))
            })?
            .collect()
        })
        .await
    }

    async fn init_state(&self, key: &str, value: String) -> Result<String> {
        self.write(Request::InitState(key.to_string(), value), Reply::Text)
            .await
    }

    async fn record_alert_transitions(
        &self,
        transitions: Vec<AlertTransitionRecord>,
    ) -> Result<()> {
        if transitions.is_empty() {
            return Ok(());
        }
        self.write(Request::Alerts(transitions), Reply::Unit).await
    }

    async fn list_alert_transitions(
        &self,
        tenant: Option<String>,
        limit: usize,
    ) -> Result<Vec<AlertTransitionRecord>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {ALERT_TRANSITION_COLUMNS} FROM alert_transitions
                     WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![tenant, limit.clamp(1, 1000) as i64], |r| {
                decode::alert_transition(r)
            })?
            .collect()
        })
        .await
    }

    async fn enqueue_notifications(&self, batch: NotificationBatch) -> Result<()> {
        if batch == NotificationBatch::default() {
            return Ok(());
        }
        self.write(Request::EnqueueNotifications(Box::new(batch)), Reply::Unit)
            .await
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        self.write(
            Request::ClaimNotifications { now, lease, limit },
            Reply::Outbox,
        )
        .await
    }

    async fn finish_notification(
        &self,
        id: i64,
        outcome: NotificationOutcome,
        now: Timestamp,
    ) -> Result<()> {
        self.write(
            Request::FinishNotification { id, outcome, now },
            Reply::Unit,
        )
        .await
    }

    async fn next_notification_due(&self) -> Result<Option<Timestamp>> {
        self.read(|c| {
            c.prepare_cached("SELECT MIN(due_at) FROM notifications WHERE state = 'pending'")?
                .query_row([], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.map(Timestamp))
        })
        .await
    }

    async fn notifier_health(&self) -> Result<Vec<NotifierHealth>> {
        self.read(|c| {
            c.prepare_cached(NOTIFIER_HEALTH)?
                .query_map([], |r| decode::notifier_health(r))?
                .collect()
        })
        .await
    }

    async fn list_notifications(
        &self,
        notifier: Option<String>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM notifications
                 WHERE ?1 IS NULL OR notifier = ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![notifier, limit.clamp(1, 1000) as i64], |r| {
                decode::outbox_item(r)
            })?
            .collect()
        })
        .await
    }

    async fn create_silence(
        &self,
        silence: Silence,
        announcements: Vec<NewNotification>,
    ) -> Result<()> {
        self.write(
            Request::CreateSilence(Box::new(silence), announcements),
            Reply::Unit,
        )
        .await
    }

    async fn list_silences(&self, ended_after: Timestamp) -> Result<Vec<Silence>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > ?1
                 ORDER BY created_at DESC, id DESC LIMIT 1000"
            ))?
            .query_map([ended_after.as_millis()], |r| decode::silence(r))?
            .collect()
        })
        .await
    }

    async fn expire_silence(
        &self,
        id: &str,
        now: Timestamp,
        announcements: Vec<NewNotification>,
    ) -> Result<SilenceExpiry> {
        self.write(
            Request::ExpireSilence {
                id: id.to_string(),
                now,
                announcements,
            },
            Reply::Expiry,
        )
        .await
    }

    async fn create_token(&self, token: ApiToken) -> Result<()> {
        self.write(Request::CreateToken(Box::new(token)), Reply::Unit)
            .await
    }

    async fn list_tokens(&self, tenant: Option<String>) -> Result<Vec<ApiToken>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR tenant = ?1
                 ORDER BY created_at DESC, id DESC LIMIT 1000"
            ))?
            .query_map([tenant], |r| decode::api_token(r))?
            .collect()
        })
        .await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>> {
        let hash = hash.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1"
            ))?
            .query_map([hash], |r| decode::api_token(r))?
            .next()
            .transpose()
        })
        .await
    }

    async fn revoke_token(
        &self,
        id: &str,
        tenant: Option<String>,
        now: Timestamp,
    ) -> Result<Option<ApiToken>> {
        let changed = self
            .write(
                Request::RevokeToken {
                    id: id.to_string(),
                    tenant,
                    now,
                },
                Reply::Count,
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        let id = id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"
            ))?
            .query_map([id], |r| decode::api_token(r))?
            .next()
            .transpose()
        })
        .await
    }

    async fn write_incident(&self, write: IncidentWrite) -> Result<bool> {
        self.write_incident_now(write).await
    }

    async fn get_incident(&self, id: &str) -> Result<Option<Incident>> {
        self.read_incident(id).await
    }

    async fn list_incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>> {
        self.read_incidents(filter).await
    }

    async fn incident_entries(&self, id: &str) -> Result<Vec<IncidentEntry>> {
        self.read_incident_entries(id).await
    }

    async fn incident_notices(&self, id: &str) -> Result<Vec<OutboxItem>> {
        self.read_incident_notices(id).await
    }

    async fn create_recovery(&self, job: RecoveryJob) -> Result<()> {
        self.insert_recovery(job).await
    }

    async fn get_recovery(&self, id: &str) -> Result<Option<RecoveryJob>> {
        self.recovery(id).await
    }

    async fn list_recoveries(&self, filter: RecoveryFilter) -> Result<Vec<RecoveryJob>> {
        self.recoveries(filter).await
    }

    async fn save_recovery(&self, update: RecoveryUpdate) -> Result<Option<RecoveryJob>> {
        self.write_recovery_step(update).await
    }

    async fn create_drill(&self, drill: Drill) -> Result<()> {
        self.insert_drill(drill).await
    }

    async fn get_drill(&self, id: &str) -> Result<Option<Drill>> {
        self.drill(id).await
    }

    async fn list_drills(&self, filter: DrillFilter) -> Result<Vec<Drill>> {
        self.drills(filter).await
    }

    async fn update_drill(&self, update: DrillUpdate) -> Result<Option<Drill>> {
        self.write_drill(update).await
    }

    async fn cancel_recovery(&self, id: &str, now: Timestamp) -> Result<Option<RecoveryJob>> {
        self.request_cancel(id, now).await
    }

    async fn known_dedupe_keys(
        &self,
        source: &str,
        keys: Vec<String>,
    ) -> Result<std::collections::HashSet<String>> {
        self.dedupe_keys_known(source, keys).await
    }

    async fn replay_deliveries(&self, batch: ReplayBatch) -> Result<ReplayOutcome> {
        self.replay(batch).await
    }

    async fn requeue_page(&self, req: RequeueRequest) -> Result<RequeuePage> {
        self.requeue(req).await
    }

    async fn check_writable(&self) -> Result<()> {
        self.write(Request::Ping, Reply::Unit).await
    }

    async fn inject_fault(&self, fault: Option<StoreFault>) -> Result<()> {
        self.write(Request::Fault(fault), Reply::Unit).await
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn subscribe_new_work(&self) -> Option<broadcast::Receiver<WorkSignal>> {
        Some(self.new_work.subscribe())
    }

    async fn heartbeat(&self, node: NodeInfo) -> Result<()> {
        self.write(Request::Heartbeat(node), Reply::Unit).await
    }

    async fn acquire_duty(&self, duty: &str, now: Timestamp, ttl: Duration) -> Result<bool> {
        let duty = duty.to_string();
        self.write(Request::AcquireDuty { duty, now, ttl }, Reply::Bool)
            .await
    }

    async fn release_duty(&self, duty: &str) -> Result<()> {
        self.write(Request::ReleaseDuty(duty.to_string()), Reply::Unit)
            .await
    }

    async fn cluster(&self) -> Result<ClusterView> {
        self.read(|c| {
            let nodes = c
                .prepare_cached(
                    "SELECT id, address, started_at, last_heartbeat FROM nodes ORDER BY id",
                )?
                .query_map([], |r| {
                    Ok(NodeInfo {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        started_at: Timestamp(r.get(2)?),
                        last_heartbeat: Timestamp(r.get(3)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let duties = c
                .prepare_cached(
                    "SELECT duty, holder, acquired_at, expires_at FROM duties ORDER BY duty",
                )?
                .query_map([], |r| {
                    Ok(DutyLease {
                        duty: r.get(0)?,
                        holder: r.get(1)?,
                        acquired_at: Timestamp(r.get(2)?),
                        expires_at: Timestamp(r.get(3)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ClusterView { nodes, duties })
        })
        .await
    }

    async fn reap_orphaned_leases(&self, now: Timestamp, node_timeout: Duration) -> Result<u64> {
        self.write(Request::Reap { now, node_timeout }, Reply::Count)
            .await
    }

    async fn leave(&self) -> Result<()> {
        self.write(Request::Leave, Reply::Unit).await
    }

    async fn close(&self) -> Result<()> {
        let result = self.writes.close().await;
        self.stop.store(true, Ordering::Relaxed);
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in &threads {
            t.thread().unpark();
        }
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store threads did not stop: {e}")))?;
        // The database is closed: another store (a restart in the same process) may open it.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
        match result {
            Err(StoreError::Closed) => Ok(()),
            other => other,
        }
    }
}
