//! The shared backend: PostgreSQL, for several intake nodes using one database.
//!
//! It keeps the promises of the [`Store`] trait the way SQLite does, with what PostgreSQL
//! offers instead of what one process owning a file offers:
//!
//! * **Group commit.** Ingests (and rejections) queue on a channel to one writer task per
//!   node, which takes everything waiting (up to `max_batch`) into one transaction written with
//!   a few multi-row statements (`UNNEST` of column arrays), and answers each request only
//!   after the commit returned. If the batch fails because of one request, every request is
//!   run again in a transaction of its own, so the failure stays with the request that caused
//!   it; if the connection is lost, the batch fails as a whole (ingest answers 503).
//! * **The queue** is claimed with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take
//!   different rows without waiting for each other. Leases and `due_at` mean what they mean on
//!   SQLite; the lease also names the node holding it (`lease_node`), so the `lease-reaper`
//!   duty can make the work of a dead node due at once.
//! * **Wake-ups across nodes.** After a commit that created deliveries, the writer sends
//!   `NOTIFY intake_new_work, '<destination>'`. A dedicated connection LISTENs and forwards
//!   these to [`Store::subscribe_new_work`]; when it has to reconnect, it sends
//!   [`WorkSignal::All`], because notifications sent meanwhile are lost. The notification is
//!   sent after the commit, outside the transaction: a `NOTIFY` inside it takes a database-wide
//!   lock until the commit has been flushed, which would make the nodes commit one at a time.
//! * **Connections** come from a deadpool pool that drops connections found closed, so a node
//!   reconnects by itself after PostgreSQL restarts; meanwhile writes fail with
//!   [`StoreError::Unavailable`] and ingest answers 503.
//! * **Migrations** run at open under a PostgreSQL advisory lock, and each applied version is
//!   recorded in `intake_migrations`: nodes starting together migrate once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::event::Origin;
use intake_core::{DeliveryId, EventId, Timestamp};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row};

use crate::model::*;
use crate::{Result, Store, StoreError, StoreFault};

/// The schema, as numbered migrations; `intake_migrations` records which have run.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "events_and_queue",
        include_str!("../migrations/postgres/0001_events_and_queue.sql"),
    ),
    (
        "counters_hourly_state_alerts",
        include_str!("../migrations/postgres/0002_counters_hourly_state_alerts.sql"),
    ),
    (
        "notifications_silences",
        include_str!("../migrations/postgres/0003_notifications_silences.sql"),
    ),
];

const OUTBOX_COLUMNS: &str =
    "id, notifier, key, notice, state, attempts, due_at, created_at, finished_at, last_error";

fn outbox_row(r: &Row) -> Result<OutboxItem> {
    let state: String = r.get(4);
    Ok(OutboxItem {
        id: r.get(0),
        notifier: r.get(1),
        key: r.get(2),
        notice: r.get(3),
        state: NotificationState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown notification state `{state}`")))?,
        attempts: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
        due_at: Timestamp(r.get(6)),
        created_at: Timestamp(r.get(7)),
        finished_at: r.get::<_, Option<i64>>(8).map(Timestamp),
        last_error: r.get(9),
    })
}

const SILENCE_COLUMNS: &str =
    "id, matchers, starts_at, ends_at, created_by, comment, created_at, expiry_announced";

fn silence_row(r: &Row) -> Result<Silence> {
    let matchers: String = r.get(1);
    Ok(Silence {
        id: r.get(0),
        matchers: serde_json::from_str(&matchers)
            .map_err(|e| StoreError::Corrupt(format!("silence matchers: {e}")))?,
        starts_at: Timestamp(r.get(2)),
        ends_at: Timestamp(r.get(3)),
        created_by: r.get(4),
        comment: r.get(5),
        created_at: Timestamp(r.get(6)),
        expiry_announced: r.get(7),
    })
}

async fn insert_notifications(
    tx: &deadpool_postgres::Transaction<'_>,
    list: &[NewNotification],
) -> Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (notifier, key, notice, state, attempts, due_at, created_at)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
        )
        .await
        .map_err(unavailable)?;
    for n in list {
        tx.execute(
            &stmt,
            &[&n.notifier, &n.key, &n.notice, &n.created_at.as_millis()],
        )
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// The advisory lock key under which migrations run ("intake" in ASCII).
const MIGRATION_LOCK: i64 = 0x696e_7461_6b65;

/// The channel of new-work notifications.
const CHANNEL: &str = "intake_new_work";

/// How many requests may wait for the writer before senders are slowed down.
const WRITE_QUEUE: usize = 16 * 1024;

/// How many shards each counter is spread over (see the migration).
const COUNTER_SHARDS: i16 = 16;

/// Options of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most requests one transaction carries.
    pub max_batch: usize,
    /// Connections in the pool (the LISTEN connection comes on top).
    pub pool_size: usize,
    /// How long to wait for a connection to be made, or for a free one from the pool.
    pub connect_timeout: Duration,
    /// This node's id.
    pub node_id: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_batch: 1024,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            node_id: crate::generate_node_id(),
        }
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PostgresStore {
    pool: Pool,
    writes: mpsc::Sender<WriteOp>,
    /// The fault as the writer last applied it, for the operations that do not go through the
    /// writer (claims, finishes, duties).
    fault: Arc<AtomicBool>,
    node_id: String,
    new_work: broadcast::Sender<WorkSignal>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The URL without its password, for messages.
    display: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.display)
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// A PostgreSQL error as text: the server's code and message when there is one (the `Display`
/// of a server error is only "db error").
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(inner) = cur {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                cur = inner.source();
            }
            s
        }
    }
}

fn unavailable(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(pg_error(&e))
}

fn pool_unavailable(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => unavailable(e),
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        other => StoreError::Unavailable(format!("no connection to PostgreSQL: {other}")),
    }
}

/// How a write statement failed: the connection was lost (every request of the batch fails),
/// or the statement failed (perhaps because of one request: the batch is run request by
/// request).
enum WriteError {
    Lost(StoreError),
    Failed(StoreError),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            WriteError::Lost(unavailable(e))
        } else {
            WriteError::Failed(unavailable(e))
        }
    }
}

impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Lost(e) | WriteError::Failed(e) => e,
        }
    }
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(pg_error(&e))
}

/// Reads fail as `Unavailable` when the database cannot be reached, as `Corrupt` when what it
/// returned cannot be read.
fn read_error(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_some() || e.is_closed() || std::error::Error::source(&e).is_some() {
        unavailable(e)
    } else {
        corrupt(e)
    }
}

fn redact(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:***@host/db
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PostgresStore {
    /// Whether `url` names a PostgreSQL database.
    pub fn accepts(url: &str) -> bool {
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// Connects to the database at `url`, runs the migrations it lacks (under an advisory
    /// lock), and starts the writer and the listener.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self> {
        let display = redact(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("`{display}` is not a PostgreSQL URL: {e}")))?;
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name(format!("intake {}", options.node_id));
        }

        let open_err =
            |e: tokio_postgres::Error| StoreError::Open(format!("{display}: {}", pg_error(&e)));
        let (mut client, conn) = config.connect(NoTls).await.map_err(open_err)?;
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut migrated = migrate(&mut client).await.map_err(open_err);
        if migrated.is_ok() {
            // A node that restarts under the same id (`cluster.node_id`) knows that none of the
            // leases recorded under that id can be live: its work is due at once, as after a
            // restart on SQLite. Leases of nodes that died for good are the `lease-reaper`'s.
            match client
                .execute(
                    "UPDATE deliveries SET state = 'pending', lease_id = NULL, lease_node = NULL,
                        due_at = 0
                     WHERE state = 'in_flight' AND lease_node = $1",
                    &[&options.node_id],
                )
                .await
            {
                Ok(0) => {}
                Ok(recovered) => tracing::warn!(
                    recovered,
                    node = %options.node_id,
                    "made deliveries leased by this node before a restart due again"
                ),
                Err(e) => migrated = Err(open_err(e)),
            }
        }
        drop(client);
        let _ = conn_task.await;
        migrated?;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection found closed (PostgreSQL restarted, the backend was terminated)
                // is dropped and replaced; a live one is reused without a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Open(format!("{display}: cannot build the pool: {e}")))?;

        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let fault = Arc::new(AtomicBool::new(false));
        let (new_work, _) = broadcast::channel(1024);
        let (stop, stop_rx) = watch::channel(false);
        let writer = Writer {
            pool: pool.clone(),
            fault: None,
            shared_fault: fault.clone(),
        };
        let writer_task = tokio::spawn(writer.run(rx, options.max_batch.max(1)));
        let listener_task = tokio::spawn(listen(config, new_work.clone(), stop_rx));

        Ok(PostgresStore {
            pool,
            writes: tx,
            fault,
            node_id: options.node_id,
            new_work,
            stop,
            tasks: Mutex::new(vec![writer_task, listener_task]),
            display,
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

    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_unavailable)
    }

    /// A connection for a write that does not go through the writer. With a fault injected,
    /// the write fails the way it would in a read-only transaction: with PostgreSQL's own
    /// error, raised by a real statement.
    async fn write_conn(&self) -> Result<deadpool_postgres::Object> {
        let client = self.conn().await?;
        if self.fault.load(Ordering::SeqCst) {
            return Err(injected_failure(&client).await);
        }
        Ok(client)
    }

    /// Hours before this instant are in `counters_hourly` (see `compact_counters`).
    async fn rolled_until(&self) -> Result<i64> {
        let rows = self
            .read_rows(
                "SELECT value FROM state WHERE key = 'counters_rolled_until'",
                &[],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0))
    }

    /// Runs one statement that returns rows, as a read.
    async fn read_rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.conn().await?;
        let stmt = client.prepare_cached(sql).await.map_err(read_error)?;
        client.query(&stmt, params).await.map_err(read_error)
    }
}

impl PostgresStore {
    /// Rows per table (for `intake migrate-store`).
    pub async fn table_counts(&self) -> Result<crate::rows::TableCounts> {
        let rows = self.read_rows(crate::sql::TABLE_COUNTS, &[]).await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("no row counts".into()))?;
        Ok(crate::rows::TableCounts {
            events: r.get(0),
            deliveries: r.get(1),
            attempts: r.get(2),
            rejections: r.get(3),
            counter_rows: r.get(4),
            counted: r.get(5),
        })
    }

    /// Inserts copied events with their deliveries and attempts in one transaction, keeping
    /// their ids; rows already present are left as they are.
    pub async fn import_events(&self, page: Vec<crate::rows::EventRows>) -> Result<()> {
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
                    last_status, last_error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
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
    pub async fn import_rejections(&self, page: Vec<crate::rows::RejectionRow>) -> Result<()> {
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

    /// Writes copied counters into shard 0 with the source's values (so a second copy
    /// changes nothing).
    /// Imports hourly counter rows (`minute` holds the hour), replacing existing ones.
    pub async fn import_hourly_counters(
        &self,
        rows: Vec<crate::rows::CounterRow>,
    ) -> Result<()> {
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

    pub async fn import_counters(&self, rows: Vec<crate::rows::CounterRow>) -> Result<()> {
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
    async fn import_counter_rows(
        &self,
        sql: &str,
        rows: Vec<crate::rows::CounterRow>,
    ) -> Result<()> {
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

/// Runs a write in a read-only transaction, which fails, and returns its error.
async fn injected_failure(client: &impl GenericClient) -> StoreError {
    let result = client
        .batch_execute(
            "BEGIN READ ONLY; INSERT INTO meta (key, value) VALUES ('fault', 'injected')",
        )
        .await;
    let _ = client.batch_execute("ROLLBACK").await;
    match result {
        Err(e) => unavailable(e),
        Ok(()) => StoreError::Unavailable("writes are rejected (injected fault)".into()),
    }
}

async fn migrate(client: &mut Client) -> std::result::Result<(), tokio_postgres::Error> {
    // Session-level advisory lock: a second node starting at the same moment waits here, then
    // finds every version recorded and applies nothing.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS intake_migrations (
                    version    INTEGER PRIMARY KEY,
                    name       TEXT NOT NULL,
                    applied_at BIGINT NOT NULL
                 )",
            )
            .await?;
        let applied: HashSet<i32> = client
            .query("SELECT version FROM intake_migrations", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if applied.contains(&version) {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            // When it was applied is a record for people, not a decision: wall-clock time.
            let now = Timestamp::from_system_time(std::time::SystemTime::now()).as_millis();
            tx.execute(
                "INSERT INTO intake_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&version, name, &now],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(migration = version, name, "applied PostgreSQL migration");
        }
        Ok(())
    }
    .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result.and(unlocked.map(|_| ()))
}

/// Keeps one connection LISTENing and forwards notifications; reconnects when it is lost.
async fn listen(
    config: tokio_postgres::Config,
    tx: broadcast::Sender<WorkSignal>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let connected = tokio::select! {
            c = config.connect(NoTls) => c,
            _ = stop.changed() => return,
        };
        match connected {
            Ok((client, mut conn)) => {
                let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                let sql = format!("LISTEN {CHANNEL}");
                let listen = client.batch_execute(&sql);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        r = &mut listen, if !listening => match r {
                            Ok(()) => {
                                listening = true;
                                backoff = Duration::from_millis(100);
                                // Whatever was notified while this connection was down is
                                // lost: every dispatcher looks at its queue once.
                                let _ = tx.send(WorkSignal::All);
                            }
                            Err(e) => {
                                tracing::warn!(error = %pg_error(&e), "cannot LISTEN for new work");
                                break;
                            }
                        },
                        m = messages.next() => match m {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                let _ = tx.send(WorkSignal::Destination(n.payload().to_string()));
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %pg_error(&e), "lost the LISTEN connection; reconnecting");
                                break;
                            }
                            None => {
                                tracing::warn!("the LISTEN connection closed; reconnecting");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %pg_error(&e), "cannot connect to LISTEN for new work; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// What the writer is asked to do.
enum Request {
    Ingest(Box<NewEvent>),
    Reject(Rejection),
    Ping,
    Fault(Option<StoreFault>),
}

enum Output {
    Accepted(Accepted),
    Unit,
}

enum Reply {
    Accepted(oneshot::Sender<Result<Accepted>>),
    Unit(oneshot::Sender<Result<()>>),
}

impl Reply {
    fn send(self, result: Result<Output>) {
        match self {
            Reply::Accepted(tx) => drop(tx.send(result.and_then(|o| match o {
                Output::Accepted(a) => Ok(a),
                Output::Unit => Err(StoreError::Corrupt(
                    "the writer produced the wrong kind of answer".into(),
                )),
            }))),
            Reply::Unit(tx) => drop(tx.send(result.map(|_| ()))),
        }
    }
}

enum WriteOp {
    Op(Request, Reply),
    Close(oneshot::Sender<Result<()>>),
}

#[derive(Hash, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct CounterKey {
    minute: i64,
    tenant: String,
    source: String,
    channel: String,
    destination: String,
    metric: &'static str,
}

/// Counter increments of one transaction, merged by key.
#[derive(Default)]
struct Counts(HashMap<CounterKey, i64>);

impl Counts {
    fn push(&mut self, key: CounterKey, n: i64) {
        *self.0.entry(key).or_default() += n;
    }
}

fn minute_of(t: Timestamp) -> i64 {
    t.as_millis().div_euclid(60_000) * 60_000
}

fn origin_metric(origin: Origin) -> &'static str {
    match origin {
        Origin::Webhook => "events.webhook",
        Origin::Backfill => "events.backfill",
        Origin::Canary => "events.canary",
        Origin::Replay => "events.replay",
    }
}

/// Adds `counts` to the counters, in key order (transactions that lock the same rows in the
/// same order cannot deadlock), on one random shard.
async fn flush_counts(
    client: &impl GenericClient,
    counts: Counts,
) -> std::result::Result<(), tokio_postgres::Error> {
    if counts.0.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(CounterKey, i64)> = counts.0.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let shard: i16 = rand::random_range(0..COUNTER_SHARDS);
    let mut minutes = Vec::with_capacity(rows.len());
    let mut tenants = Vec::with_capacity(rows.len());
    let mut sources = Vec::with_capacity(rows.len());
    let mut channels = Vec::with_capacity(rows.len());
    let mut destinations = Vec::with_capacity(rows.len());
    let mut metrics = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        minutes.push(k.minute);
        tenants.push(k.tenant);
        sources.push(k.source);
        channels.push(k.channel);
        destinations.push(k.destination);
        metrics.push(k.metric.to_string());
        values.push(v);
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO counters (minute, tenant, source, channel, destination, metric, shard, count)
             SELECT c.minute, c.tenant, c.source, c.channel, c.destination, c.metric, $7, c.count
             FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::int8[])
                  AS c(minute, tenant, source, channel, destination, metric, count)
             ON CONFLICT (minute, tenant, source, channel, destination, metric, shard)
             DO UPDATE SET count = counters.count + excluded.count",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &minutes,
                &tenants,
                &sources,
                &channels,
                &destinations,
                &metrics,
                &shard,
                &values,
            ],
        )
        .await?;
    Ok(())
}

struct Writer {
    pool: Pool,
    /// The fault as of the request being run (requests before a fault are not failed by it).
    fault: Option<StoreFault>,
    shared_fault: Arc<AtomicBool>,
}

enum BatchFailure {
    /// No connection, or the transaction could not begin or commit: every request fails.
    Commit(StoreError),
    /// A request failed: the batch is run again request by request.
    Request,
}

impl Writer {
    fn set_fault(&mut self, fault: Option<StoreFault>) {
        self.fault = fault;
        self.shared_fault.store(fault.is_some(), Ordering::SeqCst);
    }

    async fn run(mut self, mut rx: mpsc::Receiver<WriteOp>, max_batch: usize) {
        let mut batch: Vec<(Request, Reply)> = Vec::with_capacity(max_batch);
        let mut closing = None;
        while closing.is_none() {
            let Some(mut op) = rx.recv().await else {
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
            self.commit_batch(&mut batch).await;
        }
        rx.close();
        while let Ok(op) = rx.try_recv() {
            match op {
                WriteOp::Op(req, reply) => batch.push((req, reply)),
                WriteOp::Close(reply) => drop(reply.send(Ok(()))),
            }
        }
        self.commit_batch(&mut batch).await;
        if let Some(reply) = closing {
            let _ = reply.send(Ok(()));
        }
    }

    async fn commit_batch(&mut self, batch: &mut Vec<(Request, Reply)>) {
        if batch.is_empty() {
            return;
        }
        let mut client = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                let err = pool_unavailable(e);
                tracing::error!(error = %err, requests = batch.len(), "no connection to PostgreSQL; answering every request of the batch with an error");
                // Faults still apply in order, so that a later retry sees the state asked for.
                for (req, reply) in batch.drain(..) {
                    if let Request::Fault(f) = req {
                        self.set_fault(f);
                        reply.send(Ok(Output::Unit));
                    } else {
                        reply.send(Err(err.clone()));
                    }
                }
                return;
            }
        };
        let fault_before = self.fault;
        let mut notify = HashSet::new();
        match self.run_together(&mut client, batch, &mut notify).await {
            Ok(outputs) => {
                for ((_, reply), out) in batch.drain(..).zip(outputs) {
                    reply.send(Ok(out));
                }
            }
            Err(BatchFailure::Commit(err)) => {
                self.set_fault(fault_before);
                notify.clear();
                tracing::error!(error = %err, requests = batch.len(), "commit failed; answering every request of the batch with an error");
                for (req, reply) in batch.drain(..) {
                    if let Request::Fault(f) = req {
                        self.set_fault(f);
                        reply.send(Ok(Output::Unit));
                    } else {
                        reply.send(Err(err.clone()));
                    }
                }
            }
            Err(BatchFailure::Request) => {
                self.set_fault(fault_before);
                notify.clear();
                for (req, reply) in batch.drain(..) {
                    let result = self.run_alone(&mut client, &req, &mut notify).await;
                    reply.send(result);
                }
            }
        }
        // Wake-ups go out after the commit, outside any transaction (see the module docs).
        // They are hints: a lost one costs a dispatcher at most its safety poll.
        if !notify.is_empty() {
            let mut destinations: Vec<String> = notify.into_iter().collect();
            destinations.sort();
            if let Err(e) = client
                .execute(
                    "SELECT pg_notify($1, d) FROM UNNEST($2::text[]) AS d",
                    &[&CHANNEL, &destinations],
                )
                .await
            {
                tracing::debug!(error = %pg_error(&e), "could not notify new work");
            }
        }
    }

    async fn run_together(
        &mut self,
        client: &mut deadpool_postgres::Object,
        batch: &[(Request, Reply)],
        notify: &mut HashSet<String>,
    ) -> std::result::Result<Vec<Output>, BatchFailure> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| BatchFailure::Commit(unavailable(e)))?;
        let mut counts = Counts::default();
        let mut outputs: Vec<Option<Output>> = Vec::with_capacity(batch.len());
        // Consecutive ingests are written together, a handful of statements for all of them;
        // a fault request splits the batch, as faults apply from where they were queued.
        let mut run: Vec<(usize, &NewEvent)> = Vec::new();
        for (i, (req, _)) in batch.iter().enumerate() {
            outputs.push(None);
            if let Request::Ingest(ev) = req {
                if self.fault.is_some() {
                    return Err(BatchFailure::Request);
                }
                run.push((i, ev));
                continue;
            }
            if !run.is_empty() {
                self.ingest_run(&tx, &mut run, &mut outputs, &mut counts, notify)
                    .await?;
            }
            match req {
                Request::Fault(f) => {
                    self.set_fault(*f);
                    outputs[i] = Some(Output::Unit);
                }
                _ if self.fault.is_some() => return Err(BatchFailure::Request),
                Request::Reject(rej) => {
                    reject(&tx, rej, &mut counts)
                        .await
                        .map_err(|_| BatchFailure::Request)?;
                    outputs[i] = Some(Output::Unit);
                }
                Request::Ping => {
                    ping(&tx).await.map_err(|_| BatchFailure::Request)?;
                    outputs[i] = Some(Output::Unit);
                }
                Request::Ingest(_) => {}
            }
        }
        if !run.is_empty() {
            self.ingest_run(&tx, &mut run, &mut outputs, &mut counts, notify)
                .await?;
        }
        flush_counts(&tx, counts)
            .await
            .map_err(|_| BatchFailure::Request)?;
        tx.commit()
            .await
            .map_err(|e| BatchFailure::Commit(unavailable(e)))?;
        outputs
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| {
                    BatchFailure::Commit(StoreError::Corrupt("a request got no answer".into()))
                })
            })
            .collect()
    }

    async fn ingest_run(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        run: &mut Vec<(usize, &NewEvent)>,
        outputs: &mut [Option<Output>],
        counts: &mut Counts,
        notify: &mut HashSet<String>,
    ) -> std::result::Result<(), BatchFailure> {
        let events: Vec<&NewEvent> = run.iter().map(|(_, e)| *e).collect();
        match ingest_many(tx, &events, counts, notify).await {
            Ok(accepted) => {
                for ((i, _), a) in run.drain(..).zip(accepted) {
                    outputs[i] = Some(Output::Accepted(a));
                }
                Ok(())
            }
            // A lost connection fails everything; anything else may be one request's fault.
            Err(WriteError::Lost(e)) => Err(BatchFailure::Commit(e)),
            Err(WriteError::Failed(_)) => Err(BatchFailure::Request),
        }
    }

    async fn run_alone(
        &mut self,
        client: &mut deadpool_postgres::Object,
        req: &Request,
        notify: &mut HashSet<String>,
    ) -> Result<Output> {
        if let Request::Fault(f) = req {
            self.set_fault(*f);
            return Ok(Output::Unit);
        }
        if self.fault.is_some() {
            return Err(injected_failure(&*client).await);
        }
        let tx = client.transaction().await.map_err(unavailable)?;
        let mut counts = Counts::default();
        let mut woken = HashSet::new();
        let out =
            match req {
                Request::Ingest(ev) => {
                    let mut a = ingest_many(&tx, &[ev], &mut counts, &mut woken).await?;
                    Output::Accepted(a.pop().ok_or_else(|| {
                        StoreError::Corrupt("an ingest produced no answer".into())
                    })?)
                }
                Request::Reject(rej) => {
                    reject(&tx, rej, &mut counts).await.map_err(unavailable)?;
                    Output::Unit
                }
                Request::Ping => {
                    ping(&tx).await.map_err(unavailable)?;
                    Output::Unit
                }
                Request::Fault(_) => Output::Unit,
            };
        flush_counts(&tx, counts).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        notify.extend(woken);
        Ok(out)
    }
}

async fn ping(client: &impl GenericClient) -> std::result::Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ('ping', '1')
             ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text",
            &[],
        )
        .await
        .map(|_| ())
}

/// Inserts events and the deliveries of those that are new, with a few multi-row statements.
/// Returns one answer per event, in order.
async fn ingest_many(
    client: &impl GenericClient,
    events: &[&NewEvent],
    counts: &mut Counts,
    notify: &mut HashSet<String>,
) -> std::result::Result<Vec<Accepted>, WriteError> {
    // Rows are inserted in (source, dedupe key) order: two nodes inserting the same keys in
    // opposite orders would otherwise wait for each other.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| {
        (&events[a].source, &events[a].normalized.dedupe_key)
            .cmp(&(&events[b].source, &events[b].normalized.dedupe_key))
    });
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut origins = Vec::with_capacity(n);
    let mut sor_ids = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut raw_channels = Vec::with_capacity(n);
    let mut object_types = Vec::with_capacity(n);
    let mut object_ids = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut headers = Vec::with_capacity(n);
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
    let mut conversations = Vec::with_capacity(n);
    for &i in &order {
        let ev = events[i];
        let e = &ev.normalized;
        ids.push(ev.id.as_str());
        tenants.push(ev.tenant.as_str());
        sources.push(ev.source.as_str());
        origins.push(ev.origin.as_str());
        sor_ids.push(e.sor_event_id.as_deref());
        keys.push(e.dedupe_key.as_str());
        types.push(e.event_type.as_str());
        channels.push(e.channel.as_str());
        raw_channels.push(e.raw_channel.as_deref());
        object_types.push(e.object_type.as_deref());
        object_ids.push(e.object_id.as_deref());
        occurred.push(e.occurred_at.map(Timestamp::as_millis));
        received.push(ev.received_at.as_millis());
        headers.push(serde_json::to_string(&ev.headers).unwrap_or_else(|_| "[]".into()));
        bodies.push(ev.body.as_slice());
        conversations.push(e.conversation_id.as_deref());
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO events (id, tenant, source, origin, sor_event_id, dedupe_key, event_type,
                channel, raw_channel, object_type, object_id, occurred_at, received_at, headers,
                body, conversation_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                $12::int8[], $13::int8[], $14::text[], $15::bytea[], $16::text[])
             ON CONFLICT (source, dedupe_key) DO NOTHING
             RETURNING id",
        )
        .await?;
    let inserted: HashSet<String> = client
        .query(
            &stmt,
            &[
                &ids,
                &tenants,
                &sources,
                &origins,
                &sor_ids,
                &keys,
                &types,
                &channels,
                &raw_channels,
                &object_types,
                &object_ids,
                &occurred,
                &received,
                &headers,
                &bodies,
                &conversations,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    // Duplicates (of a stored event, or of an earlier copy in this very batch): the id of the
    // event they duplicate. In READ COMMITTED, this statement sees a copy that a concurrent
    // transaction committed while our insert waited for it.
    let mut originals: HashMap<(String, String), String> = HashMap::new();
    if inserted.len() < n {
        let mut dup_sources = Vec::new();
        let mut dup_keys = Vec::new();
        for ev in events.iter().filter(|e| !inserted.contains(e.id.as_str())) {
            dup_sources.push(ev.source.as_str());
            dup_keys.push(ev.normalized.dedupe_key.as_str());
        }
        let stmt = client
            .prepare_cached(
                "SELECT e.source, e.dedupe_key, e.id FROM events e
                 JOIN UNNEST($1::text[], $2::text[]) AS k(source, dedupe_key)
                   ON e.source = k.source AND e.dedupe_key = k.dedupe_key",
            )
            .await?;
        for r in client.query(&stmt, &[&dup_sources, &dup_keys]).await? {
            originals.insert((r.get(0), r.get(1)), r.get(2));
        }
    }

    let mut d_ids = Vec::new();
    let mut d_events = Vec::new();
    let mut d_destinations = Vec::new();
    let mut d_tenants = Vec::new();
    let mut d_sources = Vec::new();
    let mut d_channels = Vec::new();
    let mut d_times = Vec::new();
    let mut answers = Vec::with_capacity(n);
    for ev in events {
        let e = &ev.normalized;
        let key = |metric| CounterKey {
            minute: minute_of(ev.received_at),
            tenant: ev.tenant.clone(),
            source: ev.source.clone(),
            channel: e.channel.as_str().to_string(),
            destination: String::new(),
            metric,
        };
        if inserted.contains(ev.id.as_str()) {
            for (id, destination) in &ev.deliveries {
                d_ids.push(id.as_str());
                d_events.push(ev.id.as_str());
                d_destinations.push(destination.as_str());
                d_tenants.push(ev.tenant.as_str());
                d_sources.push(ev.source.as_str());
                d_channels.push(e.channel.as_str());
                d_times.push(ev.received_at.as_millis());
                notify.insert(destination.clone());
            }
            counts.push(key("requests.accepted"), 1);
            counts.push(key(origin_metric(ev.origin)), 1);
            for (_, destination) in &ev.deliveries {
                counts.push(
                    CounterKey {
                        destination: destination.clone(),
                        ..key("deliveries.created")
                    },
                    1,
                );
            }
            answers.push(Accepted {
                id: ev.id.clone(),
                duplicate: false,
            });
        } else {
            // Not inserted, yet no event with its key: cannot happen without a bug.
            let original = originals
                .get(&(ev.source.clone(), e.dedupe_key.clone()))
                .ok_or_else(|| {
                    WriteError::Failed(StoreError::Corrupt(format!(
                        "event {} was neither stored nor a duplicate",
                        ev.id
                    )))
                })?;
            let id: EventId = parse(original, "event id").map_err(WriteError::Failed)?;
            counts.push(key("requests.duplicate"), 1);
            answers.push(Accepted {
                id,
                duplicate: true,
            });
        }
    }
    if !d_ids.is_empty() {
        let stmt = client
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state,
                    attempts, due_at, created_at, updated_at)
                 SELECT d.id, d.event_id, d.destination, d.tenant, d.source, d.channel, 'pending',
                    0, d.t, d.t, d.t
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::text[], $7::int8[])
                    AS d(id, event_id, destination, tenant, source, channel, t)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &d_ids,
                    &d_events,
                    &d_destinations,
                    &d_tenants,
                    &d_sources,
                    &d_channels,
                    &d_times,
                ],
            )
            .await?;
    }
    Ok(answers)
}

async fn reject(
    client: &impl GenericClient,
    rej: &Rejection,
    counts: &mut Counts,
) -> std::result::Result<(), tokio_postgres::Error> {
    if rej.body.is_some() || rej.kind == RejectionKind::Invalid {
        let stmt = client
            .prepare_cached(
                "INSERT INTO rejections (at, tenant, source, outcome, reason, body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &rej.at.as_millis(),
                    &rej.tenant,
                    &rej.source,
                    &rej.kind.outcome(),
                    &rej.reason,
                    &rej.body,
                ],
            )
            .await?;
    }
    let metric = match rej.kind {
        RejectionKind::Signature => "requests.rejected_signature",
        RejectionKind::Invalid => "requests.rejected_invalid",
        RejectionKind::TooLarge => "requests.too_large",
    };
    counts.push(
        CounterKey {
            minute: minute_of(rej.at),
            tenant: rej.tenant.clone(),
            source: rej.source.clone(),
            channel: String::new(),
            destination: String::new(),
            metric,
        },
        1,
    );
    Ok(())
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("`{s}` is not a valid {what}")))
}

fn state_of(s: &str) -> Result<DeliveryState> {
    DeliveryState::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state `{s}`")))
}

fn status_of(v: Option<i32>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

const EVENT_COLUMNS: &str = "id, tenant, source, origin, sor_event_id, dedupe_key, event_type, \
     channel, raw_channel, occurred_at, received_at, object_type, object_id, conversation_id";

fn event_summary(r: &Row) -> Result<EventSummary> {
    let origin: String = r.get(3);
    Ok(EventSummary {
        id: parse(r.get::<_, &str>(0), "event id")?,
        tenant: r.get(1),
        source: r.get(2),
        origin: Origin::parse(&origin).unwrap_or(Origin::Webhook),
        sor_event_id: r.get(4),
        dedupe_key: r.get(5),
        event_type: r.get(6),
        channel: r.get(7),
        raw_channel: r.get(8),
        occurred_at: r.get::<_, Option<i64>>(9).map(Timestamp),
        received_at: Timestamp(r.get(10)),
        object_type: r.get(11),
        object_id: r.get(12),
        conversation_id: r.get(13),
        deliveries: Vec::new(),
    })
}

fn delivery_summary(r: &Row) -> Result<DeliverySummary> {
    let state = state_of(r.get(2))?;
    Ok(DeliverySummary {
        id: parse(r.get::<_, &str>(0), "delivery id")?,
        destination: r.get(1),
        state,
        attempts: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
        due_at: if state.is_final() {
            None
        } else {
            Some(Timestamp(r.get(4)))
        },
        delivered_at: r.get::<_, Option<i64>>(5).map(Timestamp),
        last_status: status_of(r.get(6)),
        last_error: r.get(7),
    })
}

/// The deliveries of these events, grouped by event id.
async fn deliveries_of(
    client: &impl GenericClient,
    event_ids: &[&str],
) -> Result<HashMap<String, Vec<DeliverySummary>>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, destination, state, attempts, due_at, delivered_at, last_status,
                    last_error, event_id
             FROM deliveries WHERE event_id = ANY($1) ORDER BY event_id, destination",
        )
        .await
        .map_err(read_error)?;
    let mut out: HashMap<String, Vec<DeliverySummary>> = HashMap::new();
    for r in client
        .query(&stmt, &[&event_ids])
        .await
        .map_err(read_error)?
    {
        out.entry(r.get(8)).or_default().push(delivery_summary(&r)?);
    }
    Ok(out)
}

#[async_trait]
impl Store for PostgresStore {
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
        let client = self.write_conn().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease_id = format!("{:032x}", rand::random::<u128>());
        let lease_until = now.plus(lease).as_millis();
        let stmt = client
            .prepare_cached(
                "WITH due AS (
                    SELECT id FROM deliveries
                    WHERE destination = $4 AND state IN ('pending', 'retrying', 'in_flight')
                      AND due_at <= $3
                    ORDER BY due_at LIMIT $5
                    FOR UPDATE SKIP LOCKED
                 ), claimed AS (
                    UPDATE deliveries d
                    SET state = 'in_flight', lease_id = $1, lease_node = $6, due_at = $2,
                        updated_at = $3
                    FROM due WHERE d.id = due.id
                    RETURNING d.id, d.event_id, d.attempts, d.tenant, d.source, d.channel
                 )
                 SELECT c.id, c.event_id, c.attempts, c.tenant, c.source, c.channel,
                        e.event_type, e.origin, e.occurred_at, e.received_at, e.body
                 FROM claimed c JOIN events e ON e.id = c.event_id",
            )
            .await
            .map_err(unavailable)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &lease_id,
                    &lease_until,
                    &now.as_millis(),
                    &destination,
                    &(limit as i64),
                    &self.node_id,
                ],
            )
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let origin: String = r.get(7);
                Ok(ClaimedDelivery {
                    id: parse(r.get::<_, &str>(0), "delivery id")?,
                    lease_id: lease_id.clone(),
                    attempt: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0) + 1,
                    destination: destination.to_string(),
                    event_id: parse(r.get::<_, &str>(1), "event id")?,
                    tenant: r.get(3),
                    source: r.get(4),
                    channel: r.get(5),
                    event_type: r.get(6),
                    origin: Origin::parse(&origin).unwrap_or(Origin::Webhook),
                    occurred_at: r.get::<_, Option<i64>>(8).map(Timestamp),
                    received_at: Timestamp(r.get(9)),
                    body: r.get(10),
                })
            })
            .collect()
    }

    async fn finish_attempt(&self, a: FinishedAttempt) -> Result<()> {
        let client = self.write_conn().await?;
        let (state, due_at, delivered_at) = match a.next {
            NextStep::Delivered => (
                DeliveryState::Delivered,
                a.finished_at,
                Some(a.finished_at.as_millis()),
            ),
            NextStep::RetryAt(t) => (DeliveryState::Retrying, t, None),
            NextStep::Dead => (DeliveryState::Dead, a.finished_at, None),
        };
        let metric = match state {
            DeliveryState::Delivered => "deliveries.delivered",
            DeliveryState::Dead => "deliveries.dead",
            _ => "deliveries.failed",
        };
        // One statement, so one implicit transaction and one round trip: the delivery changes
        // only under its lease; the attempt is recorded either way (`superseded` when the
        // lease was lost); the counter counts only a change that happened.
        let stmt = client
            .prepare_cached(
                "WITH finished AS (
                    UPDATE deliveries SET state = $1, attempts = $2, due_at = $3, lease_id = NULL,
                        lease_node = NULL, updated_at = $4, delivered_at = $5, last_status = $6,
                        last_error = $7
                    WHERE id = $8 AND state = 'in_flight' AND lease_id = $9
                    RETURNING id
                 ), recorded AS (
                    INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status,
                        error, outcome)
                    SELECT $8, $2, $10, $11, $6, $7,
                        CASE WHEN EXISTS (SELECT 1 FROM finished) THEN $1 ELSE 'superseded' END
                 ), counted AS (
                    INSERT INTO counters (minute, tenant, source, channel, destination, metric,
                        shard, count)
                    SELECT $12, $13, $14, $15, $16, $17, $18, 1 FROM finished
                    ON CONFLICT (minute, tenant, source, channel, destination, metric, shard)
                    DO UPDATE SET count = counters.count + 1
                 )
                 SELECT COUNT(*) FROM finished",
            )
            .await
            .map_err(unavailable)?;
        let shard: i16 = rand::random_range(0..COUNTER_SHARDS);
        client
            .query_one(
                &stmt,
                &[
                    &state.as_str(),
                    &(a.attempt as i32),
                    &due_at.as_millis(),
                    &a.finished_at.as_millis(),
                    &delivered_at,
                    &a.status.map(i32::from),
                    &a.error,
                    &a.delivery_id.as_str(),
                    &a.lease_id,
                    &a.started_at.as_millis(),
                    &(a.finished_at.since(a.started_at).as_millis() as i64),
                    &minute_of(a.finished_at),
                    &a.tenant,
                    &a.source,
                    &a.channel,
                    &a.destination,
                    &metric,
                    &shard,
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, leases: Vec<(DeliveryId, String)>, now: Timestamp) -> Result<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let client = self.write_conn().await?;
        let ids: Vec<&str> = leases.iter().map(|(d, _)| d.as_str()).collect();
        let lease_ids: Vec<&str> = leases.iter().map(|(_, l)| l.as_str()).collect();
        client
            .execute(
                "UPDATE deliveries d SET state = 'pending', lease_id = NULL, lease_node = NULL,
                    due_at = $1, updated_at = $1
                 FROM UNNEST($2::text[], $3::text[]) AS r(id, lease_id)
                 WHERE d.id = r.id AND d.state = 'in_flight' AND d.lease_id = r.lease_id",
                &[&now.as_millis(), &ids, &lease_ids],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<Timestamp>> {
        let rows = self
            .read_rows(
                "SELECT MIN(due_at) FROM deliveries
                 WHERE destination = $1 AND state IN ('pending', 'retrying', 'in_flight')",
                &[&destination],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(Timestamp))
    }

    async fn list_events(&self, f: EventFilter) -> Result<Vec<EventSummary>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(t) = &f.tenant {
            arg(&mut sql, " AND tenant = ?", Box::new(t.clone()));
        }
        if let Some(s) = &f.source {
            arg(&mut sql, " AND source = ?", Box::new(s.clone()));
        }
        if let Some(t) = &f.event_type {
            arg(&mut sql, " AND event_type = ?", Box::new(t.clone()));
        }
        if let Some(ch) = &f.channel {
            arg(&mut sql, " AND channel = ?", Box::new(ch.clone()));
        }
        // Ids are ULIDs whose time part is the instant of receipt: a time window is an id
        // range, served by the primary key (see the SQLite backend).
        if let Some(t) = f.from {
            arg(&mut sql, " AND id >= ?", Box::new(EventId::lower_bound(t)));
            arg(&mut sql, " AND received_at >= ?", Box::new(t.as_millis()));
        }
        if let Some(t) = f.to {
            arg(&mut sql, " AND id < ?", Box::new(EventId::lower_bound(t)));
            arg(&mut sql, " AND received_at < ?", Box::new(t.as_millis()));
        }
        if let Some(b) = &f.before {
            arg(&mut sql, " AND id < ?", Box::new(b.as_str().to_string()));
        }
        if let Some(st) = f.state {
            arg(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = ?)",
                Box::new(st.as_str().to_string()),
            );
        }
        // Ids compare byte by byte (the column is COLLATE "C"), as on SQLite.
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            f.limit.clamp(1, 1000)
        ));
        let client = self.conn().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &params).await.map_err(read_error)?;
        let mut events = rows.iter().map(event_summary).collect::<Result<Vec<_>>>()?;
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let mut deliveries = deliveries_of(&client, &ids).await?;
        for e in &mut events {
            e.deliveries = deliveries.remove(e.id.as_str()).unwrap_or_default();
        }
        Ok(events)
    }

    async fn get_event(&self, id: &EventId) -> Result<Option<EventDetail>> {
        let client = self.conn().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, headers, body FROM events WHERE id = $1"
            ))
            .await
            .map_err(read_error)?;
        let Some(row) = client
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(read_error)?
        else {
            return Ok(None);
        };
        let mut summary = event_summary(&row)?;
        let headers: String = row.get(14);
        summary.deliveries = deliveries_of(&client, &[id.as_str()])
            .await?
            .remove(id.as_str())
            .unwrap_or_default();
        let stmt = client
            .prepare_cached(
                "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status, a.error,
                        a.outcome
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE d.event_id = $1 ORDER BY a.started_at, a.attempt, a.id",
            )
            .await
            .map_err(read_error)?;
        let attempts = client
            .query(&stmt, &[&id.as_str()])
            .await
            .map_err(read_error)?
            .iter()
            .map(|r| {
                Ok(AttemptRecord {
                    delivery_id: parse(r.get::<_, &str>(0), "delivery id")?,
                    attempt: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                    started_at: Timestamp(r.get(2)),
                    duration_ms: r.get(3),
                    status: status_of(r.get(4)),
                    error: r.get(5),
                    outcome: r.get(6),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(EventDetail {
            summary,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: row.get(15),
            attempts,
        }))
    }

    async fn list_rejections(
        &self,
        tenant: Option<String>,
        limit: usize,
    ) -> Result<Vec<RejectionRecord>> {
        let rows = self
            .read_rows(
                "SELECT at, tenant, source, outcome, reason, body FROM rejections
                 WHERE $1::text IS NULL OR tenant = $1 ORDER BY id DESC LIMIT $2",
                &[&tenant, &(limit.clamp(1, 1000) as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RejectionRecord {
                at: Timestamp(r.get(0)),
                tenant: r.get(1),
                source: r.get(2),
                outcome: r.get(3),
                reason: r.get(4),
                body: r.get(5),
            })
            .collect())
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let rows = self
            .read_rows(
                "SELECT tenant, source, destination,
                        COUNT(*) FILTER (WHERE state <> 'dead'),
                        COUNT(*) FILTER (WHERE state = 'in_flight'),
                        MIN(created_at) FILTER (WHERE state <> 'dead'),
                        COUNT(*) FILTER (WHERE state = 'dead')
                 FROM deliveries WHERE state IN ('pending', 'retrying', 'in_flight', 'dead')
                 GROUP BY tenant, source, destination
                 ORDER BY tenant COLLATE \"C\", source COLLATE \"C\", destination COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueueStats {
                tenant: r.get(0),
                source: r.get(1),
                destination: r.get(2),
                pending: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                in_flight: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                oldest_pending_at: r.get::<_, Option<i64>>(5).map(Timestamp),
                dead: u64::try_from(r.get::<_, i64>(6)).unwrap_or(0),
            })
            .collect())
    }

    async fn read_counters(&self, q: CounterQuery) -> Result<Vec<CounterRow>> {
        let from = q.resolution.bucket(q.from).as_millis();
        let to = q.to.as_millis();
        let metrics: Option<Vec<String>> = (!q.metrics.is_empty()).then(|| q.metrics.clone());
        let filter = "($3::text[] IS NULL OR metric = ANY($3))
                      AND ($4::text IS NULL OR tenant = $4)
                      AND ($5::text IS NULL OR source = $5)";
        let rows = match q.resolution {
            Resolution::Minute => {
                self.read_rows(
                    &format!(
                        "SELECT minute, tenant, source, channel, destination, metric,
                                SUM(count)::BIGINT
                         FROM counters WHERE minute >= $1 AND minute < $2 AND {filter}
                         GROUP BY minute, tenant, source, channel, destination, metric"
                    ),
                    &[&from, &to, &metrics, &q.tenant, &q.source],
                )
                .await?
            }
            Resolution::Hour => {
                let rolled = self.rolled_until().await?;
                let split = rolled.clamp(from, to.max(from));
                self.read_rows(
                    &format!(
                        "SELECT hour, tenant, source, channel, destination, metric, count
                         FROM counters_hourly WHERE hour >= $1 AND hour < $6 AND {filter}
                         UNION ALL
                         SELECT (minute / 3600000) * 3600000 AS h, tenant, source, channel,
                                destination, metric, SUM(count)::BIGINT
                         FROM counters WHERE minute >= $6 AND minute < $2 AND {filter}
                         GROUP BY h, tenant, source, channel, destination, metric"
                    ),
                    &[&from, &to, &metrics, &q.tenant, &q.source, &split],
                )
                .await?
            }
        };
        let mut out: Vec<CounterRow> = rows
            .iter()
            .map(|r| CounterRow {
                at: Timestamp(r.get(0)),
                tenant: r.get(1),
                source: r.get(2),
                channel: r.get(3),
                destination: r.get(4),
                metric: r.get(5),
                count: r.get(6),
            })
            .collect();
        // Byte order, as SQLite sorts: sorted here rather than in SQL, where a collation
        // cannot be given to the columns of a UNION.
        out.sort_by(|a, b| {
            (
                a.at,
                &a.tenant,
                &a.source,
                &a.channel,
                &a.destination,
                &a.metric,
            )
                .cmp(&(
                    b.at,
                    &b.tenant,
                    &b.source,
                    &b.channel,
                    &b.destination,
                    &b.metric,
                ))
        });
        Ok(out)
    }

    async fn compact_counters(
        &self,
        now: Timestamp,
        retention: CounterRetention,
    ) -> Result<CompactReport> {
        const HOUR: i64 = 3_600_000;
        let current_hour = Resolution::Hour.bucket(now).as_millis();
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let rolled: i64 = tx
            .query_opt(
                "SELECT value FROM state WHERE key = 'counters_rolled_until'",
                &[],
            )
            .await
            .map_err(unavailable)?
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0);
        // The last rolled hour is rolled again: a counter committed right at the hour's end
        // may have landed after the previous compaction.
        let from = (rolled - HOUR).max(0);
        let hours_rolled = tx
            .execute(
                "INSERT INTO counters_hourly (hour, tenant, source, channel, destination, metric,
                    count)
                 SELECT (minute / 3600000) * 3600000, tenant, source, channel, destination,
                        metric, SUM(count)
                 FROM counters WHERE minute >= $1 AND minute < $2
                 GROUP BY 1, tenant, source, channel, destination, metric
                 ON CONFLICT (hour, tenant, source, channel, destination, metric)
                 DO UPDATE SET count = excluded.count",
                &[&from, &current_hour],
            )
            .await
            .map_err(unavailable)?;
        let watermark = current_hour.max(rolled);
        tx.execute(
            "INSERT INTO state (key, value) VALUES ('counters_rolled_until', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&watermark.to_string()],
        )
        .await
        .map_err(unavailable)?;
        let minute_cutoff = now
            .minus(retention.minutes)
            .as_millis()
            .min(watermark - HOUR);
        let minutes_deleted = tx
            .execute("DELETE FROM counters WHERE minute < $1", &[&minute_cutoff])
            .await
            .map_err(unavailable)?;
        let hours_deleted = tx
            .execute(
                "DELETE FROM counters_hourly WHERE hour < $1",
                &[&now.minus(retention.hours).as_millis()],
            )
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(CompactReport {
            hours_rolled,
            minutes_deleted,
            hours_deleted,
        })
    }

    async fn get_state(&self, key: &str) -> Result<Option<String>> {
        let rows = self
            .read_rows(
                "SELECT value FROM state WHERE key = $1",
                &[&format!("state:{key}")],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn prune_notifications(&self, before: Timestamp) -> Result<()> {
        let client = self.write_conn().await?;
        client
            .execute(
                "DELETE FROM notifications WHERE state <> 'pending' AND finished_at < $1",
                &[&before.as_millis()],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn put_state(&self, key: &str, value: String) -> Result<()> {
        let client = self.write_conn().await?;
        client
            .execute(
                "INSERT INTO state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&format!("state:{key}"), &value],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_alert_transitions(
        &self,
        transitions: Vec<AlertTransitionRecord>,
    ) -> Result<()> {
        if transitions.is_empty() {
            return Ok(());
        }
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO alert_transitions (at, rule, tenant, source, channel, destination,
                    severity, state, value, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await
            .map_err(unavailable)?;
        for t in &transitions {
            tx.execute(
                &stmt,
                &[
                    &t.at.as_millis(),
                    &t.rule,
                    &t.tenant,
                    &t.source,
                    &t.channel,
                    &t.destination,
                    &t.severity,
                    &t.state,
                    &t.value,
                    &t.reason,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn list_alert_transitions(
        &self,
        tenant: Option<String>,
        limit: usize,
    ) -> Result<Vec<AlertTransitionRecord>> {
        let rows = self
            .read_rows(
                "SELECT at, rule, tenant, source, channel, destination, severity, state, value,
                        reason
                 FROM alert_transitions WHERE $1::text IS NULL OR tenant = $1
                 ORDER BY id DESC LIMIT $2",
                &[&tenant, &(limit.clamp(1, 1000) as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AlertTransitionRecord {
                at: Timestamp(r.get(0)),
                rule: r.get(1),
                tenant: r.get(2),
                source: r.get(3),
                channel: r.get(4),
                destination: r.get(5),
                severity: r.get(6),
                state: r.get(7),
                value: r.get(8),
                reason: r.get(9),
            })
            .collect())
    }

    async fn enqueue_notifications(&self, batch: NotificationBatch) -> Result<()> {
        if batch == NotificationBatch::default() {
            return Ok(());
        }
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        insert_notifications(&tx, &batch.notifications).await?;
        for (key, value) in &batch.state {
            tx.execute(
                "INSERT INTO state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&format!("state:{key}"), value],
            )
            .await
            .map_err(unavailable)?;
        }
        for id in &batch.announced_expiries {
            tx.execute(
                "UPDATE silences SET expiry_announced = TRUE WHERE id = $1",
                &[id],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let client = self.write_conn().await?;
        // The same statement as on SQLite; the notification sender is a singleton duty, so no
        // two nodes claim at once, and the row locks of the UPDATE settle any race anyway.
        let rows = client
            .query(
                &format!(
                    "UPDATE notifications SET due_at = $1
                     WHERE id IN (
                        SELECT n.id FROM notifications n
                        WHERE n.state = 'pending' AND n.due_at <= $2
                          AND n.id = (SELECT MIN(m.id) FROM notifications m
                                      WHERE m.notifier = n.notifier AND m.state = 'pending')
                        ORDER BY n.id LIMIT $3)
                     RETURNING {OUTBOX_COLUMNS}"
                ),
                &[
                    &now.plus(lease).as_millis(),
                    &now.as_millis(),
                    &(limit as i64),
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut items = rows.iter().map(outbox_row).collect::<Result<Vec<_>>>()?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn finish_notification(
        &self,
        id: i64,
        outcome: NotificationOutcome,
        now: Timestamp,
    ) -> Result<()> {
        let (state, due_at, error) = match &outcome {
            NotificationOutcome::Sent => (NotificationState::Sent, now, None),
            NotificationOutcome::Retry { due_at, error } => {
                (NotificationState::Pending, *due_at, Some(error.clone()))
            }
            NotificationOutcome::Dead { error } => {
                (NotificationState::Dead, now, Some(error.clone()))
            }
        };
        let finished = (state != NotificationState::Pending).then_some(now.as_millis());
        let client = self.write_conn().await?;
        client
            .execute(
                "UPDATE notifications SET state = $1, attempts = attempts + 1, due_at = $2,
                    finished_at = $3, last_error = COALESCE($4, last_error)
                 WHERE id = $5 AND state = 'pending'",
                &[&state.as_str(), &due_at.as_millis(), &finished, &error, &id],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_notification_due(&self) -> Result<Option<Timestamp>> {
        let rows = self
            .read_rows(
                "SELECT MIN(due_at) FROM notifications WHERE state = 'pending'",
                &[],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(Timestamp))
    }

    async fn notifier_health(&self) -> Result<Vec<NotifierHealth>> {
        let rows = self.read_rows(crate::sql::NOTIFIER_HEALTH, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| NotifierHealth {
                notifier: r.get(0),
                undelivered: r.get::<_, i64>(1).max(0) as u64,
                oldest_undelivered: r.get::<_, Option<i64>>(2).map(Timestamp),
                failed_attempts: r.get::<_, i64>(3).clamp(0, u32::MAX as i64) as u32,
                last_error: r.get(4),
                last_sent_at: r.get::<_, Option<i64>>(5).map(Timestamp),
                last_dead_at: r.get::<_, Option<i64>>(6).map(Timestamp),
            })
            .collect())
    }

    async fn list_notifications(
        &self,
        notifier: Option<String>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM notifications
                     WHERE $1::text IS NULL OR notifier = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&notifier, &(limit.clamp(1, 1000) as i64)],
            )
            .await?;
        rows.iter().map(outbox_row).collect()
    }

    async fn create_silence(
        &self,
        silence: Silence,
        announcements: Vec<NewNotification>,
    ) -> Result<()> {
        let matchers = serde_json::to_string(&silence.matchers)
            .map_err(|e| StoreError::Corrupt(format!("silence matchers: {e}")))?;
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        tx.execute(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment,
                created_at, expiry_announced)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &silence.id,
                &matchers,
                &silence.starts_at.as_millis(),
                &silence.ends_at.as_millis(),
                &silence.created_by,
                &silence.comment,
                &silence.created_at.as_millis(),
                &silence.expiry_announced,
            ],
        )
        .await
        .map_err(unavailable)?;
        insert_notifications(&tx, &announcements).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn list_silences(&self, ended_after: Timestamp) -> Result<Vec<Silence>> {
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > $1
                     ORDER BY created_at DESC, id DESC LIMIT 1000"
                ),
                &[&ended_after.as_millis()],
            )
            .await?;
        rows.iter().map(silence_row).collect()
    }

    async fn expire_silence(
        &self,
        id: &str,
        now: Timestamp,
        announcements: Vec<NewNotification>,
    ) -> Result<SilenceExpiry> {
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let found = tx
            .query_opt(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await
            .map_err(unavailable)?;
        let outcome = match found.as_ref().map(silence_row).transpose()? {
            None => SilenceExpiry::NotFound,
            Some(s) if s.ends_at <= now => SilenceExpiry::AlreadyEnded(s),
            Some(mut s) => {
                tx.execute(
                    "UPDATE silences SET ends_at = $1, expiry_announced = TRUE WHERE id = $2",
                    &[&now.as_millis(), &id],
                )
                .await
                .map_err(unavailable)?;
                insert_notifications(&tx, &announcements).await?;
                s.ends_at = now;
                s.expiry_announced = true;
                SilenceExpiry::Expired(s)
            }
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
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
        let client = self.write_conn().await?;
        client
            .execute(
                "INSERT INTO nodes (id, address, started_at, last_heartbeat) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                    last_heartbeat = GREATEST(nodes.last_heartbeat, excluded.last_heartbeat)",
                &[
                    &node.id,
                    &node.address,
                    &node.started_at.as_millis(),
                    &node.last_heartbeat.as_millis(),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn acquire_duty(&self, duty: &str, now: Timestamp, ttl: Duration) -> Result<bool> {
        let client = self.write_conn().await?;
        let row = client
            .query_opt(
                "INSERT INTO duties (duty, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (duty) DO UPDATE SET holder = excluded.holder,
                    expires_at = excluded.expires_at,
                    acquired_at = CASE WHEN duties.holder = excluded.holder
                                       THEN duties.acquired_at ELSE excluded.acquired_at END
                 WHERE duties.holder = excluded.holder OR duties.expires_at <= excluded.acquired_at
                 RETURNING holder",
                &[
                    &duty,
                    &self.node_id,
                    &now.as_millis(),
                    &now.plus(ttl).as_millis(),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(row.is_some())
    }

    async fn release_duty(&self, duty: &str) -> Result<()> {
        let client = self.write_conn().await?;
        client
            .execute(
                "DELETE FROM duties WHERE duty = $1 AND holder = $2",
                &[&duty, &self.node_id],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn cluster(&self) -> Result<ClusterView> {
        let nodes = self
            .read_rows(
                "SELECT id, address, started_at, last_heartbeat FROM nodes ORDER BY id COLLATE \"C\"",
                &[],
            )
            .await?
            .iter()
            .map(|r| NodeInfo {
                id: r.get(0),
                address: r.get(1),
                started_at: Timestamp(r.get(2)),
                last_heartbeat: Timestamp(r.get(3)),
            })
            .collect();
        let duties = self
            .read_rows(
                "SELECT duty, holder, acquired_at, expires_at FROM duties ORDER BY duty COLLATE \"C\"",
                &[],
            )
            .await?
            .iter()
            .map(|r| DutyLease {
                duty: r.get(0),
                holder: r.get(1),
                acquired_at: Timestamp(r.get(2)),
                expires_at: Timestamp(r.get(3)),
            })
            .collect();
        Ok(ClusterView { nodes, duties })
    }

    async fn reap_orphaned_leases(&self, now: Timestamp, node_timeout: Duration) -> Result<u64> {
        let client = self.write_conn().await?;
        let cutoff = now.minus(node_timeout).as_millis();
        let reaped = client
            .execute(
                "UPDATE deliveries d SET state = 'pending', lease_id = NULL, lease_node = NULL,
                    due_at = $1, updated_at = $1
                 WHERE d.state = 'in_flight' AND d.lease_node IS DISTINCT FROM $3
                   AND NOT EXISTS (
                    SELECT 1 FROM nodes n WHERE n.id = d.lease_node AND n.last_heartbeat >= $2)",
                &[&now.as_millis(), &cutoff, &self.node_id],
            )
            .await
            .map_err(unavailable)?;
        let forget = now.minus(Duration::from_secs(86_400)).as_millis();
        client
            .execute("DELETE FROM nodes WHERE last_heartbeat < $1", &[&forget])
            .await
            .map_err(unavailable)?;
        if reaped > 0 {
            tracing::warn!(
                reaped,
                "made deliveries leased by a node that stopped sending heartbeats due again"
            );
        }
        Ok(reaped)
    }

    async fn leave(&self) -> Result<()> {
        let client = self.write_conn().await?;
        client.batch_execute("BEGIN").await.map_err(unavailable)?;
        let result = async {
            client
                .execute("DELETE FROM duties WHERE holder = $1", &[&self.node_id])
                .await?;
            client
                .execute("DELETE FROM nodes WHERE id = $1", &[&self.node_id])
                .await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        if result.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result.map_err(unavailable)
    }

    async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let result = match self.writes.send(WriteOp::Close(tx)).await {
            Ok(()) => rx.await.unwrap_or(Err(StoreError::Closed)),
            Err(_) => Err(StoreError::Closed),
        };
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
        self.pool.close();
        match result {
            Err(StoreError::Closed) => Ok(()),
            other => other,
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writer ends when its channel closes (with this store), the listener on this.
        let _ = self.stop.send(true);
    }
}
