//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One writer thread owns the only writing connection. Requests queue up on a channel while it
//! commits; it takes everything waiting (up to `max_batch`) into one transaction, so a single
//! fsync makes many requests durable at once ("group commit"). Each request's answer is held
//! back until that commit has returned, which is what lets ingest answer 200 only for durable
//! work. Reads use a small pool of separate connections, which WAL lets run beside the writer.
//!
//! One process owns a database file at a time (an exclusive lock on `<db>.lock`). That makes
//! crash recovery simple: any delivery still `in_flight` when the store opens was leased by a
//! process that is gone, and is made due again at once.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::event::Origin;
use intake_core::{DeliveryId, EventId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::model::*;
use crate::{Result, Store, StoreError, StoreFault};

/// The schema, as numbered migrations. `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_events_and_queue.sql"),
    include_str!("../migrations/sqlite/0002_conversation_id.sql"),
    include_str!("../migrations/sqlite/0003_counters_hourly.sql"),
    include_str!("../migrations/sqlite/0004_alert_transitions.sql"),
    include_str!("../migrations/sqlite/0005_nodes_and_duties.sql"),
    include_str!("../migrations/sqlite/0006_notifications_silences.sql"),
];

/// How many requests may wait for the writer before senders are slowed down.
const WRITE_QUEUE: usize = 16 * 1024;

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
    writes: mpsc::Sender<WriteOp>,
    readers: Arc<ReadPool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    node_id: String,
    // Held until the store is closed or dropped: the exclusive lock that makes this process the
    // only one using the database file.
    lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
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
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 0;
                 PRAGMA journal_size_limit = 67108864;
                 PRAGMA temp_store = MEMORY;",
            )
            .map_err(open_err)?;
        writer
            .busy_timeout(options.busy_timeout)
            .map_err(open_err)?;
        migrate(&mut writer).map_err(open_err)?;
        // Only this process can hold the lock, so every lease in the file belongs to a process
        // that is gone: make that work due now.
        let recovered = writer
            .execute(
                "UPDATE deliveries SET state = 'pending', lease_id = NULL, lease_node = NULL,
                    due_at = 0
                 WHERE state = 'in_flight'",
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
        checkpointer
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(open_err)?;

        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let max_batch = options.max_batch.max(1);
        let rewind = Arc::new(AtomicBool::new(false));
        let rewind2 = rewind.clone();
        let node_id = options.node_id.clone();
        let writer_thread = std::thread::Builder::new()
            .name("intake-sqlite-writer".into())
            .spawn(move || Writer::new(writer, rewind, node_id).run(rx, max_batch))
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        let stop2 = stop.clone();
        let checkpoint_thread = std::thread::Builder::new()
            .name("intake-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop2, rewind2))
            .map_err(|e| StoreError::Open(format!("cannot start the checkpoint thread: {e}")))?;

        Ok(SqliteStore {
            writes: tx,
            readers: Arc::new(ReadPool {
                conns: readers,
                next: AtomicUsize::new(0),
            }),
            threads: Mutex::new(vec![writer_thread, checkpoint_thread]),
            stop,
            path: path.to_path_buf(),
            node_id: options.node_id,
            lock: Mutex::new(Some(lock)),
        })
    }

    async fn write<T>(
        &self,
        request: Request,
        reply: fn(oneshot::Sender<Result<T>>) -> Reply,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(WriteOp::Op(request, reply(tx)))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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

/// The same on both backends: per notifier, what waits in its outbox (how many, since when,
/// after how many failed attempts, the last error) and when it last sent or gave up.
pub(crate) const NOTIFIER_HEALTH: &str = "SELECT notifier,
        CAST(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS BIGINT),
        MIN(CASE WHEN state = 'pending' THEN created_at END),
        CAST(COALESCE(MAX(CASE WHEN state = 'pending' THEN attempts END), 0) AS BIGINT),
        (SELECT m.last_error FROM notifications m
          WHERE m.notifier = n.notifier AND m.last_error IS NOT NULL
            AND (m.state = 'pending' OR m.state = 'dead')
          ORDER BY m.id DESC LIMIT 1),
        MAX(CASE WHEN state = 'sent' THEN finished_at END),
        MAX(CASE WHEN state = 'dead' THEN finished_at END)
     FROM notifications n GROUP BY notifier ORDER BY notifier";

/// The same on both backends: rows per table, counters summed over any shards.
pub(crate) const TABLE_COUNTS: &str = "SELECT
    (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries),
    (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM rejections),
    (SELECT COUNT(*) FROM (SELECT 1 FROM counters
        GROUP BY minute, tenant, source, channel, destination, metric) AS k),
    (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM counters)";

impl SqliteStore {
    /// Rows per table (for `intake migrate-store`).
    pub async fn table_counts(&self) -> Result<crate::migrate::TableCounts> {
        self.read(|c| {
            c.query_row(TABLE_COUNTS, [], |r| {
                Ok(crate::migrate::TableCounts {
                    events: r.get(0)?,
                    deliveries: r.get(1)?,
                    attempts: r.get(2)?,
                    rejections: r.get(3)?,
                    counter_rows: r.get(4)?,
                    counted: r.get(5)?,
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
    ) -> Result<Vec<crate::migrate::EventRows>> {
        use crate::migrate::{AttemptRow, DeliveryRow, EventRow, EventRows};
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
                    due_at, lease_id, created_at, updated_at, delivered_at, last_status, last_error
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
    pub async fn export_rejections(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::migrate::RejectionRow>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, at, tenant, source, outcome, reason, body FROM rejections
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![after, limit as i64], |r| {
                Ok(crate::migrate::RejectionRow {
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

    /// Every counter.
    /// Every hourly counter row (for `intake migrate-store`; `minute` holds the hour).
    pub async fn export_hourly_counters(&self) -> Result<Vec<crate::migrate::CounterRow>> {
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

    /// Named state documents and the counters' rollup watermark (for `intake migrate-store`).
    pub async fn export_state(&self) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT key, value FROM meta
                 WHERE key LIKE 'state:%' OR key = 'counters_rolled_until'",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
        .await
    }

    /// Notifications not yet sent nor dead, oldest first (for `intake migrate-store`).
    pub async fn export_pending_notifications(&self) -> Result<Vec<NewNotification>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT notifier, key, notice, created_at FROM notifications
                 WHERE state = 'pending' ORDER BY id",
            )?
            .query_map([], |r| {
                Ok(NewNotification {
                    notifier: r.get(0)?,
                    key: r.get(1)?,
                    notice: r.get(2)?,
                    created_at: Timestamp(r.get(3)?),
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
            .query_map([], alert_transition)?
            .collect()
        })
        .await
    }

    pub async fn export_counters(&self) -> Result<Vec<crate::migrate::CounterRow>> {
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

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(threads) = self.threads.lock() {
            threads.iter().for_each(|t| t.thread().unpark());
        }
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(migration = i + 1, "applied SQLite migration");
    }
    Ok(())
}

/// Past this many WAL frames (64 MiB of 4 KiB pages) the WAL is rewound.
const WAL_REWIND_FRAMES: i64 = 16 * 1024;

fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>, rewind: Arc<AtomicBool>) {
    // Checkpoints run here rather than inside the writer's commits (wal_autocheckpoint = 0),
    // so that copying the WAL back into the database does not stall acknowledgements. A
    // passive checkpoint never waits; under constant load, though, it never finds the WAL
    // fully copied at the moment the writer begins a transaction, which is when SQLite would
    // start the WAL over, so the WAL would grow for as long as the load lasts. Once it is
    // large, this thread asks the writer to finish the copy itself between two batches (see
    // `Writer::rewind_if_asked`): this thread has already copied nearly everything, so the
    // writer pauses for little more than one fsync, and its next transaction starts the WAL
    // over. The file keeps its size (journal_size_limit), so commits then overwrite allocated
    // blocks instead of growing the file, which costs the file system far more.
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(100));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = std::time::Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => {
                if frames > WAL_REWIND_FRAMES {
                    rewind.store(true, Ordering::Relaxed);
                }
                if started.elapsed() > Duration::from_millis(500) {
                    tracing::info!(
                        frames,
                        ms = started.elapsed().as_millis() as u64,
                        "slow WAL checkpoint"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

struct ReadPool {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReadPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        // A reader that panicked mid-query left its connection usable: SQLite statements are
        // finalized on drop. So a poisoned lock is taken over rather than propagated.
        let conn = self.conns[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// What the writer is asked to do.
enum Request {
    Ingest(Box<NewEvent>),
    Reject(Rejection),
    Claim {
        destination: String,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    },
    Finish(Box<FinishedAttempt>),
    Release(Vec<(DeliveryId, String)>, Timestamp),
    Ping,
    Fault(Option<StoreFault>),
    Compact(Timestamp, CounterRetention),
    PutState(String, String),
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
}

/// What a request produced, sent back once its transaction has committed.
enum Output {
    Accepted(Accepted),
    Claimed(Vec<ClaimedDelivery>),
    Compacted(CompactReport),
    Unit,
    Bool(bool),
    Count(u64),
    Outbox(Vec<OutboxItem>),
    Expiry(SilenceExpiry),
}

/// Where a request's answer goes.
enum Reply {
    Accepted(oneshot::Sender<Result<Accepted>>),
    Claimed(oneshot::Sender<Result<Vec<ClaimedDelivery>>>),
    Compacted(oneshot::Sender<Result<CompactReport>>),
    Unit(oneshot::Sender<Result<()>>),
    Bool(oneshot::Sender<Result<bool>>),
    Count(oneshot::Sender<Result<u64>>),
    Outbox(oneshot::Sender<Result<Vec<OutboxItem>>>),
    Expiry(oneshot::Sender<Result<SilenceExpiry>>),
}

impl Reply {
    fn send(self, result: Result<Output>) {
        // A requester that gave up (its HTTP client went away) no longer listens; that is fine,
        // the work is committed either way.
        let mismatch =
            || StoreError::Corrupt("the writer produced the wrong kind of answer".into());
        match self {
            Reply::Accepted(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Accepted(a) => Ok(a),
                _ => Err(mismatch()),
            }))),
            Reply::Claimed(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Claimed(c) => Ok(c),
                _ => Err(mismatch()),
            }))),
            Reply::Compacted(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Compacted(c) => Ok(c),
                _ => Err(mismatch()),
            }))),
            Reply::Unit(tx) => drop(tx.send(result.map(|_| ()))),
            Reply::Bool(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Bool(b) => Ok(b),
                _ => Err(mismatch()),
            }))),
            Reply::Count(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Count(n) => Ok(n),
                _ => Err(mismatch()),
            }))),
            Reply::Outbox(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Outbox(items) => Ok(items),
                _ => Err(mismatch()),
            }))),
            Reply::Expiry(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Expiry(e) => Ok(e),
                _ => Err(mismatch()),
            }))),
        }
    }
}

enum WriteOp {
    Op(Request, Reply),
    Close(oneshot::Sender<Result<()>>),
}

#[derive(Hash, PartialEq, Eq)]
struct CounterKey {
    minute: i64,
    tenant: String,
    source: String,
    channel: String,
    destination: String,
    metric: &'static str,
}

/// Counter increments of one transaction, merged by key so that a batch of a thousand events of
/// one source writes one row per minute and metric, not a thousand.
#[derive(Default)]
struct Counts(HashMap<CounterKey, i64>);

impl Counts {
    fn push(&mut self, (key, n): (CounterKey, i64)) {
        *self.0.entry(key).or_default() += n;
    }
}

fn minute_of(t: Timestamp) -> i64 {
    t.as_millis().div_euclid(60_000) * 60_000
}

/// The columns [`outbox_row`] reads, in order.
const OUTBOX_COLUMNS: &str =
    "id, notifier, key, notice, state, attempts, due_at, created_at, finished_at, last_error";

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    let state: String = r.get(4)?;
    Ok(OutboxItem {
        id: r.get(0)?,
        notifier: r.get(1)?,
        key: r.get(2)?,
        notice: r.get(3)?,
        state: NotificationState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown notification state `{state}`").into(),
            )
        })?,
        attempts: r.get(5)?,
        due_at: Timestamp(r.get(6)?),
        created_at: Timestamp(r.get(7)?),
        finished_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        last_error: r.get(9)?,
    })
}

/// The columns [`silence_row`] reads, in order.
const SILENCE_COLUMNS: &str =
    "id, matchers, starts_at, ends_at, created_by, comment, created_at, expiry_announced";

fn silence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Silence> {
    let matchers: String = r.get(1)?;
    Ok(Silence {
        id: r.get(0)?,
        matchers: serde_json::from_str(&matchers).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        starts_at: Timestamp(r.get(2)?),
        ends_at: Timestamp(r.get(3)?),
        created_by: r.get(4)?,
        comment: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        expiry_announced: r.get(7)?,
    })
}

struct Writer {
    conn: Connection,
    node_id: String,
    fault: Option<StoreFault>,
    /// Set by the checkpoint thread when the WAL should start over.
    rewind: Arc<AtomicBool>,
}

impl Writer {
    fn insert_notifications(&self, list: &[NewNotification]) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO notifications (notifier, key, notice, state, attempts, due_at, created_at)
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
        )?;
        for n in list {
            stmt.execute(params![
                n.notifier,
                n.key,
                n.notice,
                n.created_at.as_millis()
            ])?;
        }
        Ok(())
    }

    fn new(conn: Connection, rewind: Arc<AtomicBool>, node_id: String) -> Self {
        Writer {
            conn,
            node_id,
            fault: None,
            rewind,
        }
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

    fn run(mut self, mut rx: mpsc::Receiver<WriteOp>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        let mut closing = None;
        while closing.is_none() {
            let Some(mut op) = rx.blocking_recv() else {
                break;
            };
            loop {
                match op {
                    WriteOp::Op(req, reply) => batch.push((req, reply)),
                    WriteOp::Close(reply) => {
                        closing = Some(reply);
                        break;
                    }
                }
                if batch.len() >= max_batch {
                    break;
                }
                match rx.try_recv() {
                    Ok(next) => op = next,
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
            self.rewind_if_asked();
        }
        // Answer whatever was queued behind a close, so no requester waits forever.
        rx.close();
        while let Ok(op) = rx.try_recv() {
            match op {
                WriteOp::Op(req, reply) => batch.push((req, reply)),
                WriteOp::Close(reply) => drop(reply.send(Ok(()))),
            }
        }
        self.commit_batch(&mut batch);
        if let Some(reply) = closing {
            let _ = reply.send(Ok(()));
        }
    }

    /// Runs every request of `batch` in one transaction and answers them after its commit.
    ///
    /// Requests almost never fail one by one (a failing disk fails them all), so the batch runs
    /// without per-request savepoints, which would copy every touched page to a sub-journal. If
    /// one request does fail, the whole transaction is rolled back and each request is run
    /// again in a transaction of its own, so that the failure stays with the request that
    /// caused it. No answer is sent before the transaction that produced it has committed.
    fn commit_batch(&mut self, batch: &mut Vec<(Request, Reply)>) {
        if batch.is_empty() {
            return;
        }
        match self.run_together(batch) {
            Ok(outputs) => {
                for ((_, reply), out) in batch.drain(..).zip(outputs) {
                    reply.send(Ok(out));
                }
            }
            Err(BatchFailure::Commit(e)) => {
                tracing::error!(error = %e, requests = batch.len(), "commit failed; answering every request of the batch with an error");
                let err = StoreError::Unavailable(e.to_string());
                for (_, reply) in batch.drain(..) {
                    reply.send(Err(err.clone()));
                }
            }
            Err(BatchFailure::Request) => {
                for (req, reply) in batch.drain(..) {
                    let result = self.run_alone(&req);
                    reply.send(result);
                }
            }
        }
    }

    fn run_together(&mut self, batch: &[(Request, Reply)]) -> Result<Vec<Output>, BatchFailure> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(BatchFailure::Commit)?;
        // A fault request changes the writer, not the file, so the rollback would not undo it:
        // restore it by hand, or requests queued before it would fail on their rerun.
        let fault_before = self.fault;
        let mut counts = Counts::default();
        let mut outputs = Vec::with_capacity(batch.len());
        for (req, _) in batch {
            match self.apply(req, &mut counts) {
                Ok(out) => outputs.push(out),
                Err(_) => {
                    self.rollback();
                    self.fault = fault_before;
                    return Err(BatchFailure::Request);
                }
            }
        }
        if let Err(e) = self
            .flush_counts(counts)
            .and_then(|()| self.conn.execute_batch("COMMIT"))
        {
            self.rollback();
            self.fault = fault_before;
            return Err(BatchFailure::Commit(e));
        }
        Ok(outputs)
    }

    fn run_alone(&mut self, req: &Request) -> Result<Output> {
        let unavailable = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(unavailable)?;
        let mut counts = Counts::default();
        let result = self
            .apply(req, &mut counts)
            .and_then(|out| self.flush_counts(counts).map(|()| out))
            .and_then(|out| self.conn.execute_batch("COMMIT").map(|()| out));
        if result.is_err() {
            self.rollback();
        }
        result.map_err(unavailable)
    }

    fn rollback(&self) {
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            // SQLite may already have rolled back on its own (e.g. after an I/O error).
            tracing::debug!(error = %e, "rollback");
        }
    }

    fn check_fault(&self) -> rusqlite::Result<()> {
        match self.fault {
            // The injected fault fails the way a read-only or full disk does: with SQLite's own
            // error, raised by a real statement.
            Some(StoreFault::RejectWrites) => {
                self.conn.execute_batch("PRAGMA query_only = ON")?;
                let r = self
                    .conn
                    .execute("INSERT INTO meta (key, value) VALUES ('fault', 'x')", []);
                self.conn.execute_batch("PRAGMA query_only = OFF")?;
                r.map(|_| ())
            }
            None => Ok(()),
        }
    }

    fn apply(&mut self, req: &Request, counts: &mut Counts) -> rusqlite::Result<Output> {
        if let Request::Fault(f) = req {
            self.fault = *f;
            return Ok(Output::Unit);
        }
        self.check_fault()?;
        Ok(match req {
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
            } => Output::Claimed(self.claim(destination, *now, *lease, *limit)?),
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
                self.conn
                    .prepare_cached(
                        "DELETE FROM notifications WHERE state <> 'pending' AND finished_at < ?1",
                    )?
                    .execute([before.as_millis()])?;
                Output::Unit
            }
            Request::PutState(key, value) => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![format!("state:{key}"), value])?;
                Output::Unit
            }
            Request::Alerts(list) => {
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
                Output::Unit
            }
            Request::Ping => {
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('ping', '1')
                     ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                    [],
                )?;
                Output::Unit
            }
            Request::Fault(_) => Output::Unit,
            Request::Heartbeat(node) => {
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
                Output::Unit
            }
            Request::AcquireDuty { duty, now, ttl } => {
                // The same statement as on PostgreSQL: take a free or expired lease, or renew
                // our own; another node's live lease is left alone.
                let held = self
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
                            now.plus(*ttl).as_millis()
                        ],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                Output::Bool(held)
            }
            Request::ReleaseDuty(duty) => {
                self.conn
                    .prepare_cached("DELETE FROM duties WHERE duty = ?1 AND holder = ?2")?
                    .execute(params![duty, self.node_id])?;
                Output::Unit
            }
            Request::Reap { now, node_timeout } => {
                let reaped = self
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'pending', lease_id = NULL,
                            lease_node = NULL, due_at = ?1, updated_at = ?1
                         WHERE state = 'in_flight' AND lease_node IS NOT ?3 AND NOT EXISTS (
                            SELECT 1 FROM nodes n WHERE n.id = deliveries.lease_node
                              AND n.last_heartbeat >= ?2)",
                    )?
                    .execute(params![
                        now.as_millis(),
                        now.minus(*node_timeout).as_millis(),
                        self.node_id
                    ])?;
                self.conn
                    .prepare_cached("DELETE FROM nodes WHERE last_heartbeat < ?1")?
                    .execute([now.minus(Duration::from_secs(86_400)).as_millis()])?;
                Output::Count(reaped as u64)
            }
            Request::Leave => {
                self.conn
                    .prepare_cached("DELETE FROM duties WHERE holder = ?1")?
                    .execute([&self.node_id])?;
                self.conn
                    .prepare_cached("DELETE FROM nodes WHERE id = ?1")?
                    .execute([&self.node_id])?;
                Output::Unit
            }
            Request::EnqueueNotifications(batch) => {
                self.insert_notifications(&batch.notifications)?;
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
                Output::Unit
            }
            Request::ClaimNotifications { now, lease, limit } => {
                let items = self
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
                        params![now.plus(*lease).as_millis(), now.as_millis(), *limit as i64],
                        outbox_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut items = items;
                items.sort_by_key(|i| i.id);
                Output::Outbox(items)
            }
            Request::FinishNotification { id, outcome, now } => {
                let (state, due_at, error) = match outcome {
                    NotificationOutcome::Sent => (NotificationState::Sent, *now, None),
                    NotificationOutcome::Retry { due_at, error } => {
                        (NotificationState::Pending, *due_at, Some(error.as_str()))
                    }
                    NotificationOutcome::Dead { error } => {
                        (NotificationState::Dead, *now, Some(error.as_str()))
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
                Output::Unit
            }
            Request::CreateSilence(silence, announcements) => {
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
                self.insert_notifications(announcements)?;
                Output::Unit
            }
            Request::ExpireSilence {
                id,
                now,
                announcements,
            } => {
                let found = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"
                    ))?
                    .query_row([id], silence_row)
                    .optional()?;
                Output::Expiry(match found {
                    None => SilenceExpiry::NotFound,
                    Some(s) if s.ends_at <= *now => SilenceExpiry::AlreadyEnded(s),
                    Some(mut s) => {
                        self.conn
                            .prepare_cached(
                                "UPDATE silences SET ends_at = ?1, expiry_announced = 1
                                 WHERE id = ?2",
                            )?
                            .execute(params![now.as_millis(), id])?;
                        self.insert_notifications(announcements)?;
                        s.ends_at = *now;
                        s.expiry_announced = true;
                        SilenceExpiry::Expired(s)
                    }
                })
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
        let key = |metric| CounterKey {
            minute: minute_of(ev.received_at),
            tenant: ev.tenant.clone(),
            source: ev.source.clone(),
            channel: n.channel.as_str().to_string(),
            destination: String::new(),
            metric,
        };
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
            counts.push((key("requests.duplicate"), 1));
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
        counts.push((key("requests.accepted"), 1));
        counts.push((key(origin_metric(ev.origin)), 1));
        for (_, destination) in &ev.deliveries {
            counts.push((
                CounterKey {
                    destination: destination.clone(),
                    ..key("deliveries.created")
                },
                1,
            ));
        }
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
        let metric = match rej.kind {
            RejectionKind::Signature => "requests.rejected_signature",
            RejectionKind::Invalid => "requests.rejected_invalid",
            RejectionKind::TooLarge => "requests.too_large",
        };
        counts.push((
            CounterKey {
                minute: minute_of(rej.at),
                tenant: rej.tenant.clone(),
                source: rej.source.clone(),
                channel: String::new(),
                destination: String::new(),
                metric,
            },
            1,
        ));
        Ok(())
    }

    fn claim(
        &self,
        destination: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> rusqlite::Result<Vec<ClaimedDelivery>> {
        let lease_id = format!("{:032x}", rand::random::<u128>());
        let lease_until = now.plus(lease);
        let mut claimed = Vec::new();
        let rows: Vec<(String, String, u32, String, String, String)> = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'in_flight', lease_id = ?1, due_at = ?2, updated_at = ?3,
                    lease_node = ?6
                 WHERE id IN (
                    SELECT id FROM deliveries
                    WHERE destination = ?4 AND state IN ('pending', 'retrying', 'in_flight')
                      AND due_at <= ?3
                    ORDER BY due_at LIMIT ?5)
                 RETURNING id, event_id, attempts, tenant, source, channel",
            )?
            .query_map(
                params![
                    lease_id,
                    lease_until.as_millis(),
                    now.as_millis(),
                    destination,
                    limit as i64,
                    self.node_id
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut event = self.conn.prepare_cached(
            "SELECT event_type, origin, occurred_at, received_at, body FROM events WHERE id = ?1",
        )?;
        for (id, event_id, attempts, tenant, source, channel) in rows {
            let (event_type, origin, occurred_at, received_at, body): (
                String,
                String,
                Option<i64>,
                i64,
                Vec<u8>,
            ) = event.query_row([&event_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            claimed.push(ClaimedDelivery {
                id: parse_id(&id)?,
                lease_id: lease_id.clone(),
                attempt: attempts + 1,
                destination: destination.to_string(),
                event_id: parse_id(&event_id)?,
                tenant,
                source,
                event_type,
                channel,
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
        let updated = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = ?1, attempts = ?2, due_at = ?3, lease_id = NULL,
                    lease_node = NULL, updated_at = ?4, delivered_at = ?5, last_status = ?6, last_error = ?7
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
            ])?;
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
                a.finished_at.since(a.started_at).as_millis() as i64,
                a.status,
                a.error,
                outcome,
            ])?;
        if updated > 0 {
            let metric = match state {
                DeliveryState::Delivered => "deliveries.delivered",
                DeliveryState::Dead => "deliveries.dead",
                _ => "deliveries.failed",
            };
            counts.push((
                CounterKey {
                    minute: minute_of(a.finished_at),
                    tenant: a.tenant.clone(),
                    source: a.source.clone(),
                    channel: a.channel.clone(),
                    destination: a.destination.clone(),
                    metric,
                },
                1,
            ));
        }
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
        let counts = counts.0;
        if counts.is_empty() {
            return Ok(());
        }
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO counters (minute, tenant, source, channel, destination, metric, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (minute, tenant, source, channel, destination, metric)
             DO UPDATE SET count = count + excluded.count",
        )?;
        for (k, v) in counts {
            stmt.execute(params![
                k.minute,
                k.tenant,
                k.source,
                k.channel,
                k.destination,
                k.metric,
                v
            ])?;
        }
        Ok(())
    }
}

/// Hours before this instant (meta `counters_rolled_until`, milliseconds) are in
/// `counters_hourly`; later hours are read from minute rows.
fn rolled_until(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT value FROM meta WHERE key = 'counters_rolled_until'")?
        .query_row([], |r| r.get::<_, String>(0))
        .optional()
        .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

impl Writer {
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
        let hours_deleted = self.conn.execute(
            "DELETE FROM counters_hourly WHERE hour < ?1",
            [now.minus(retention.hours).as_millis()],
        )? as u64;
        Ok(CompactReport {
            hours_rolled,
            minutes_deleted,
            hours_deleted,
        })
    }
}

fn read_counters(c: &Connection, q: &CounterQuery) -> rusqlite::Result<Vec<CounterRow>> {
    use rusqlite::types::Value;
    let from = q.resolution.bucket(q.from).as_millis();
    let to = q.to.as_millis();
    let mut filter = String::new();
    let mut args: Vec<Value> = Vec::new();
    if !q.metrics.is_empty() {
        filter.push_str(" AND metric IN (");
        for (i, m) in q.metrics.iter().enumerate() {
            filter.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(Value::Text(m.clone()));
        }
        filter.push(')');
    }
    if let Some(t) = &q.tenant {
        filter.push_str(" AND tenant = ?");
        args.push(Value::Text(t.clone()));
    }
    if let Some(s) = &q.source {
        filter.push_str(" AND source = ?");
        args.push(Value::Text(s.clone()));
    }
    let (sql, mut params) = match q.resolution {
        Resolution::Minute => (
            format!(
                "SELECT minute, tenant, source, channel, destination, metric, count
                 FROM counters WHERE minute >= ? AND minute < ?{filter}
                 ORDER BY minute, tenant, source, channel, destination, metric"
            ),
            vec![Value::Integer(from), Value::Integer(to)],
        ),
        Resolution::Hour => {
            let split = rolled_until(c)?.clamp(from, to.max(from));
            (
                format!(
                    "SELECT hour, tenant, source, channel, destination, metric, count
                     FROM counters_hourly WHERE hour >= ? AND hour < ?{filter}
                     UNION ALL
                     SELECT (minute / 3600000) * 3600000 AS h, tenant, source, channel,
                            destination, metric, SUM(count)
                     FROM counters WHERE minute >= ? AND minute < ?{filter}
                     GROUP BY h, tenant, source, channel, destination, metric
                     ORDER BY 1, 2, 3, 4, 5, 6"
                ),
                vec![Value::Integer(from), Value::Integer(split)],
            )
        }
    };
    params.extend(args.iter().cloned());
    if q.resolution == Resolution::Hour {
        let split = match &params[1] {
            Value::Integer(v) => *v,
            _ => to,
        };
        params.push(Value::Integer(split));
        params.push(Value::Integer(to));
        params.extend(args.iter().cloned());
    }
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        Ok(CounterRow {
            at: Timestamp(r.get(0)?),
            tenant: r.get(1)?,
            source: r.get(2)?,
            channel: r.get(3)?,
            destination: r.get(4)?,
            metric: r.get(5)?,
            count: r.get(6)?,
        })
    })?;
    rows.collect()
}

const ALERT_TRANSITION_COLUMNS: &str =
    "at, rule, tenant, source, channel, destination, severity, state, value, reason";

fn alert_transition(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertTransitionRecord> {
    Ok(AlertTransitionRecord {
        at: Timestamp(r.get(0)?),
        rule: r.get(1)?,
        tenant: r.get(2)?,
        source: r.get(3)?,
        channel: r.get(4)?,
        destination: r.get(5)?,
        severity: r.get(6)?,
        state: r.get(7)?,
        value: r.get(8)?,
        reason: r.get(9)?,
    })
}

/// A counter row in the column order `bucket, tenant, source, channel, destination, metric,
/// count` (minute or hourly table).
fn migrated_counter(r: &rusqlite::Row<'_>) -> rusqlite::Result<crate::migrate::CounterRow> {
    Ok(crate::migrate::CounterRow {
        minute: r.get(0)?,
        tenant: r.get(1)?,
        source: r.get(2)?,
        channel: r.get(3)?,
        destination: r.get(4)?,
        metric: r.get(5)?,
        count: r.get(6)?,
    })
}

fn origin_metric(origin: Origin) -> &'static str {
    match origin {
        Origin::Webhook => "events.webhook",
        Origin::Backfill => "events.backfill",
        Origin::Canary => "events.canary",
        Origin::Replay => "events.replay",
    }
}

enum BatchFailure {
    /// The transaction could not begin or commit: every request of the batch fails.
    Commit(rusqlite::Error),
    /// One request failed: the batch is run again request by request.
    Request,
}

fn parse_id<T: std::str::FromStr>(s: &str) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
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

    async fn claim_due(
        &self,
        destination: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>> {
        let destination = destination.to_string();
        self.write(
            Request::Claim {
                destination,
                now,
                lease,
                limit,
            },
            Reply::Claimed,
        )
        .await
    }

    async fn finish_attempt(&self, attempt: FinishedAttempt) -> Result<()> {
        self.write(Request::Finish(Box::new(attempt)), Reply::Unit)
            .await
    }

    async fn release(&self, leases: Vec<(DeliveryId, String)>, now: Timestamp) -> Result<()> {
        self.write(Request::Release(leases, now), Reply::Unit).await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<Timestamp>> {
        let destination = destination.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT MIN(due_at) FROM deliveries
                 WHERE destination = ?1 AND state IN ('pending', 'retrying', 'in_flight')",
            )?
            .query_row([destination], |r| r.get::<_, Option<i64>>(0))
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

    async fn compact_counters(
        &self,
        now: Timestamp,
        retention: CounterRetention,
    ) -> Result<CompactReport> {
        self.write(Request::Compact(now, retention), Reply::Compacted)
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
            .query_map(
                params![tenant, limit.clamp(1, 1000) as i64],
                alert_transition,
            )?
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
                .query_map([], |r| {
                    Ok(NotifierHealth {
                        notifier: r.get(0)?,
                        undelivered: r.get::<_, i64>(1)?.max(0) as u64,
                        oldest_undelivered: r.get::<_, Option<i64>>(2)?.map(Timestamp),
                        failed_attempts: r.get::<_, i64>(3)?.clamp(0, u32::MAX as i64) as u32,
                        last_error: r.get(4)?,
                        last_sent_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
                        last_dead_at: r.get::<_, Option<i64>>(6)?.map(Timestamp),
                    })
                })?
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
            .query_map(params![notifier, limit.clamp(1, 1000) as i64], outbox_row)?
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
            .query_map([ended_after.as_millis()], silence_row)?
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

    async fn check_writable(&self) -> Result<()> {
        self.write(Request::Ping, Reply::Unit).await
    }

    async fn inject_fault(&self, fault: Option<StoreFault>) -> Result<()> {
        self.write(Request::Fault(fault), Reply::Unit).await
    }

    fn node_id(&self) -> &str {
        &self.node_id
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
        let (tx, rx) = oneshot::channel();
        let result = match self.writes.send(WriteOp::Close(tx)).await {
            Ok(()) => rx.await.unwrap_or(Err(StoreError::Closed)),
            Err(_) => Err(StoreError::Closed),
        };
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

const EVENT_COLUMNS: &str = "id, tenant, source, origin, sor_event_id, dedupe_key, event_type, \
     channel, raw_channel, occurred_at, received_at, object_type, object_id, conversation_id";

fn event_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    let origin: String = r.get(3)?;
    Ok(EventSummary {
        id: parse_id(&r.get::<_, String>(0)?)?,
        tenant: r.get(1)?,
        source: r.get(2)?,
        origin: Origin::parse(&origin).unwrap_or(Origin::Webhook),
        sor_event_id: r.get(4)?,
        dedupe_key: r.get(5)?,
        event_type: r.get(6)?,
        channel: r.get(7)?,
        raw_channel: r.get(8)?,
        occurred_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
        received_at: Timestamp(r.get(10)?),
        object_type: r.get(11)?,
        object_id: r.get(12)?,
        conversation_id: r.get(13)?,
        deliveries: Vec::new(),
    })
}

fn deliveries_of(c: &Connection, event_id: &str) -> rusqlite::Result<Vec<DeliverySummary>> {
    c.prepare_cached(
        "SELECT id, destination, state, attempts, due_at, delivered_at, last_status, last_error
         FROM deliveries WHERE event_id = ?1 ORDER BY destination",
    )?
    .query_map([event_id], |r| {
        let state: String = r.get(2)?;
        let state = DeliveryState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown delivery state `{state}`").into(),
            )
        })?;
        Ok(DeliverySummary {
            id: parse_id(&r.get::<_, String>(0)?)?,
            destination: r.get(1)?,
            state,
            attempts: r.get(3)?,
            due_at: if state.is_final() {
                None
            } else {
                Some(Timestamp(r.get(4)?))
            },
            delivered_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
            last_status: r.get(6)?,
            last_error: r.get(7)?,
        })
    })?
    .collect()
}

fn list_events(c: &Connection, f: &EventFilter) -> rusqlite::Result<Vec<EventSummary>> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(t) = &f.tenant {
        arg(&mut sql, " AND tenant = ?", t.clone().into());
    }
    if let Some(s) = &f.source {
        arg(&mut sql, " AND source = ?", s.clone().into());
    }
    if let Some(t) = &f.event_type {
        arg(&mut sql, " AND event_type = ?", t.clone().into());
    }
    if let Some(ch) = &f.channel {
        arg(&mut sql, " AND channel = ?", ch.clone().into());
    }
    // Event ids are ULIDs whose time part is the instant of receipt, so a time window is also
    // a range of ids: the primary key serves it, and no index on `received_at` is needed.
    if let Some(t) = f.from {
        arg(&mut sql, " AND id >= ?", EventId::lower_bound(t).into());
        arg(&mut sql, " AND received_at >= ?", t.as_millis().into());
    }
    if let Some(t) = f.to {
        arg(&mut sql, " AND id < ?", EventId::lower_bound(t).into());
        arg(&mut sql, " AND received_at < ?", t.as_millis().into());
    }
    if let Some(b) = &f.before {
        arg(&mut sql, " AND id < ?", b.as_str().to_string().into());
    }
    if let Some(st) = f.state {
        arg(
            &mut sql,
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = ?)",
            st.as_str().to_string().into(),
        );
    }
    sql.push_str(&format!(
        " ORDER BY id DESC LIMIT {}",
        f.limit.clamp(1, 1000)
    ));
    let mut events: Vec<EventSummary> = c
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(args), event_summary)?
        .collect::<rusqlite::Result<_>>()?;
    for e in &mut events {
        e.deliveries = deliveries_of(c, e.id.as_str())?;
    }
    Ok(events)
}

fn get_event(c: &Connection, id: &EventId) -> rusqlite::Result<Option<EventDetail>> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, headers, body FROM events WHERE id = ?1"
        ))?
        .query_row([id.as_str()], |r| {
            let summary = event_summary(r)?;
            let headers: String = r.get(14)?;
            Ok(EventDetail {
                summary,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                body: r.get(15)?,
                attempts: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut detail) = row else {
        return Ok(None);
    };
    detail.summary.deliveries = deliveries_of(c, id.as_str())?;
    detail.attempts = c
        .prepare_cached(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status, a.error, a.outcome
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = ?1 ORDER BY a.started_at, a.attempt",
        )?
        .query_map([id.as_str()], |r| {
            Ok(AttemptRecord {
                delivery_id: parse_id(&r.get::<_, String>(0)?)?,
                attempt: r.get(1)?,
                started_at: Timestamp(r.get(2)?),
                duration_ms: r.get(3)?,
                status: r.get(4)?,
                error: r.get(5)?,
                outcome: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(detail))
}

fn queue_stats(c: &Connection) -> rusqlite::Result<Vec<QueueStats>> {
    let mut stats: Vec<QueueStats> = Vec::new();
    let rows = c
        .prepare_cached(
            "SELECT tenant, source, destination, state, COUNT(*), MIN(created_at)
             FROM deliveries WHERE state IN ('pending', 'retrying', 'in_flight', 'dead')
             GROUP BY tenant, source, destination, state
             ORDER BY tenant, source, destination",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (tenant, source, destination, state, count, oldest) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        let same = stats.last().is_some_and(|s| {
            s.tenant == tenant && s.source == source && s.destination == destination
        });
        if !same {
            stats.push(QueueStats {
                tenant,
                source,
                destination,
                pending: 0,
                in_flight: 0,
                oldest_pending_at: None,
                dead: 0,
            });
        }
        let Some(s) = stats.last_mut() else { continue };
        if state == "dead" {
            s.dead += count;
        } else {
            s.pending += count;
            if state == "in_flight" {
                s.in_flight += count;
            }
            let oldest = Timestamp(oldest);
            s.oldest_pending_at = Some(s.oldest_pending_at.map_or(oldest, |o| o.min(oldest)));
        }
    }
    Ok(stats)
}
