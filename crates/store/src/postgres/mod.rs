//! The shared backend: PostgreSQL, for several intake nodes using one database.
//!
//! It keeps the promises of the [`Store`] trait the way SQLite does, with what PostgreSQL
//! offers instead of what one process owning a file offers:
//!
//! * **Group commit.** Ingests, finished delivery attempts and rejections queue on a channel
//!   to one writer task per node, which runs the shared group commit (the `group_commit`
//!   module): it takes everything waiting (up to `max_batch`) into one transaction written with
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
//! * **Deliveries found by id while in flight** (a finish, a release, a requeue of a stale
//!   lease) say `(state = 'in_flight') IS TRUE`, not `state = 'in_flight'`: the plain form
//!   lets the planner read the partial indexes `deliveries_in_flight` and `deliveries_due`,
//!   which keep an entry for every delivery that was ever in flight until autovacuum comes
//!   (every claim and finish updates the row, so none of it is a HOT update). It then chose a
//!   bitmap scan of those over the primary key, and a finish of 45 deliveries read 161,841
//!   dead entries (13 ms instead of 1.7): one node's sustained pipeline fell from 5,000 to
//!   2,300 events/s within a minute (docs/benchmarks.md). `IS TRUE` means the same for a
//!   column that is never NULL, but proves no index predicate, so the lookups go by id.
//!
//! Files: `writer.rs` (the group-commit writer: ingests, finishes, rejections), `reads.rs`
//! (the larger reads), `outbox.rs` (notifications and silences), `recovery.rs` (recovery
//! jobs, replays and requeues), `drills.rs` (fire drills), `audit.rs` (the audit's reads, in one snapshot),
//! `import.rs` (what `migrate-store` writes), `listen.rs` (wake-ups), `room.rs` (whether new
//! events fit: a full disk), `schema.rs` (migrations),
//! `error.rs` (errors); the store's other writes and small reads are here. They import the
//! crate's shared modules, never the SQLite backend.

mod audit;
mod completion;
mod drills;
mod error;
mod import;
mod incidents;
mod listen;
mod outbox;
mod reads;
mod recovery;
mod retention;
mod room;
mod schema;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use intake_core::event::Origin;
use intake_core::{DeliveryId, EventId, Timestamp};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use self::error::{injected_failure, pg_error, pool_unavailable, read_error, redact, unavailable};
use self::reads::parse;
use self::room::Room;
use self::writer::{Request, Writer};
use crate::decode;
use crate::group_commit::{self, GroupCommit, Queue, Reply};
use crate::model::*;
use crate::sql::{
    ALERT_TRANSITION_COLUMNS, HOURS_KEPT_KEY, MINUTES_KEPT_KEY, NOTIFIER_HEALTH, OUTBOX_COLUMNS,
    SILENCE_COLUMNS, TOKEN_COLUMNS,
};
use crate::{Result, Store, StoreError, StoreFault};

/// The channel of new-work notifications.
const CHANNEL: &str = "intake_new_work";

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
    writes: Queue<Request>,
    /// Whether the fault the writer last applied rejects writes, for the operations that do
    /// not go through the writer (claims, releases, duties).
    fault: Arc<AtomicBool>,
    /// Whether the database has room for new events (the `room` module).
    room: Room,
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
        let mut migrated = schema::migrate(&mut client).await.map_err(open_err);
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

        let (queue, inbox) = group_commit::queue();
        let fault = Arc::new(AtomicBool::new(false));
        let (new_work, _) = broadcast::channel(1024);
        let (stop, stop_rx) = watch::channel(false);
        let room = Room::default();
        let writer = Writer::new(pool.clone(), fault.clone(), room.clone());
        let writer_task =
            tokio::spawn(GroupCommit::new(writer, options.max_batch, queue.busy()).run(inbox));
        let listener_task = tokio::spawn(listen::listen(config, new_work.clone(), stop_rx));

        Ok(PostgresStore {
            pool,
            writes: queue,
            fault,
            room,
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
        self.writes.write(request, reply).await
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

#[async_trait]
impl Store for PostgresStore {
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
        let client = self.write_conn().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease_id = format!("{:032x}", rand::random::<u128>());
        let lease_until = now.plus(lease).as_millis();
        // Deliveries of held sources (a queue-stall drill) are left as they are: pending, not
        // claimed. With none held the filter is a constant true.
        let stmt = client
            .prepare_cached(
                "WITH due AS (
                    SELECT id FROM deliveries
                    WHERE destination = $4 AND state IN ('pending', 'retrying', 'in_flight')
                      AND due_at <= $3
                      AND (cardinality($7::text[]) = 0 OR NOT (source = ANY($7::text[])))
                    ORDER BY due_at LIMIT $5
                    FOR UPDATE SKIP LOCKED
                 ), claimed AS (
                    UPDATE deliveries d
                    SET state = 'in_flight', lease_id = $1, lease_node = $6, due_at = $2,
                        updated_at = $3
                    FROM due WHERE d.id = due.id
                    RETURNING d.id, d.event_id, d.attempts, d.tenant, d.source, d.channel,
                        d.origin
                 )
                 SELECT c.id, c.event_id, c.attempts, c.tenant, c.source, c.channel,
                        e.event_type, COALESCE(c.origin, e.origin), e.occurred_at, e.received_at,
                        e.body
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
                    &held,
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
        // Through the writer: the finishes waiting are committed together (see `writer`).
        self.write(Request::Finish(Box::new(a)), Reply::Unit).await
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
                 -- `IS TRUE`: see the module docs (deliveries found by id while in flight).
                 WHERE d.id = r.id AND (d.state = 'in_flight') IS TRUE
                    AND d.lease_id = r.lease_id",
                &[&now.as_millis(), &ids, &lease_ids],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_due_at_holding(
        &self,
        destination: &str,
        held: &[String],
    ) -> Result<Option<Timestamp>> {
        let rows = self
            .read_rows(
                "SELECT MIN(due_at) FROM deliveries
                 WHERE destination = $1 AND state IN ('pending', 'retrying', 'in_flight')
                   AND (cardinality($2::text[]) = 0 OR NOT (source = ANY($2::text[])))",
                &[&destination, &held],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(Timestamp))
    }

    async fn list_events(&self, f: EventFilter) -> Result<Vec<EventSummary>> {
        self.events(f).await
    }

    async fn get_event(&self, id: &EventId) -> Result<Option<EventDetail>> {
        self.event_detail(id).await
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
        self.queue_gauges().await
    }

    async fn read_counters(&self, q: CounterQuery) -> Result<Vec<CounterRow>> {
        self.counter_rows(q).await
    }

    async fn audit(&self, query: AuditQuery) -> Result<AuditCounts> {
        self.audit_counts(query).await
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
        let hour_cutoff = now.minus(retention.hours).as_millis();
        let hours_deleted = tx
            .execute(
                "DELETE FROM counters_hourly WHERE hour < $1",
                &[&hour_cutoff],
            )
            .await
            .map_err(unavailable)?;
        // Since when each resolution is complete, for audits (`Store::audit`); a mark never
        // moves back.
        for (key, mark) in [
            (MINUTES_KEPT_KEY, minute_cutoff),
            (HOURS_KEPT_KEY, hour_cutoff),
        ] {
            tx.execute(
                "INSERT INTO state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value =
                    GREATEST(state.value::BIGINT, excluded.value::BIGINT)::TEXT",
                &[&key, &mark.to_string()],
            )
            .await
            .map_err(unavailable)?;
        }
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

    async fn expire_events(&self, req: ExpireRequest) -> Result<ExpireBatch> {
        let mut client = self.write_conn().await?;
        retention::expire(&mut client, &req).await
    }

    async fn prune_notifications(&self, before: Timestamp) -> Result<()> {
        let client = self.write_conn().await?;
        client
            .execute(
                "DELETE FROM notifications
                 WHERE state <> 'pending' AND finished_at < $1 AND incident IS NULL",
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

    async fn put_states(&self, writes: Vec<(String, Option<String>)>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in writes {
            match value {
                Some(value) => {
                    keys.push(format!("state:{key}"));
                    values.push(value);
                }
                None => gone.push(format!("state:{key}")),
            }
        }
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        // Keys written in sorted order, so two writers never wait for each other in opposite
        // orders (only the monitor's holder writes these, but a fail-over may overlap).
        tx.execute(
            "INSERT INTO state (key, value)
             SELECT k, v FROM UNNEST($1::text[], $2::text[]) AS w(k, v) ORDER BY k
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&keys, &values],
        )
        .await
        .map_err(unavailable)?;
        if !gone.is_empty() {
            tx.execute("DELETE FROM state WHERE key = ANY($1)", &[&gone])
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn states_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let prefix = format!("state:{prefix}");
        let rows = self
            .read_rows(
                "SELECT key, value FROM state
                 WHERE substr(key, 1, length($1)) = $1 ORDER BY key COLLATE \"C\"",
                &[&prefix],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let key: String = r.get(0);
                (key["state:".len()..].to_string(), r.get(1))
            })
            .collect())
    }

    async fn init_state(&self, key: &str, value: String) -> Result<String> {
        let client = self.write_conn().await?;
        let key = format!("state:{key}");
        client
            .execute(
                "INSERT INTO state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(unavailable)?;
        let row = client
            .query_one("SELECT value FROM state WHERE key = $1", &[&key])
            .await
            .map_err(unavailable)?;
        Ok(row.get(0))
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
                &format!(
                    "SELECT {ALERT_TRANSITION_COLUMNS}
                     FROM alert_transitions WHERE $1::text IS NULL OR tenant = $1
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&tenant, &(limit.clamp(1, 1000) as i64)],
            )
            .await?;
        rows.iter().map(decode::alert_transition).collect()
    }

    async fn enqueue_notifications(&self, batch: NotificationBatch) -> Result<()> {
        self.enqueue(batch).await
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        self.claim_outbox(now, lease, limit).await
    }

    async fn finish_notification(
        &self,
        id: i64,
        outcome: NotificationOutcome,
        now: Timestamp,
    ) -> Result<()> {
        self.finish_outbox_item(id, outcome, now).await
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
        let rows = self.read_rows(NOTIFIER_HEALTH, &[]).await?;
        rows.iter().map(decode::notifier_health).collect()
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
        rows.iter().map(decode::outbox_item).collect()
    }

    async fn create_silence(
        &self,
        silence: Silence,
        announcements: Vec<NewNotification>,
    ) -> Result<()> {
        self.insert_silence(silence, announcements).await
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
        rows.iter().map(decode::silence).collect()
    }

    async fn expire_silence(
        &self,
        id: &str,
        now: Timestamp,
        announcements: Vec<NewNotification>,
    ) -> Result<SilenceExpiry> {
        self.end_silence(id, now, announcements).await
    }

    async fn create_token(&self, t: ApiToken) -> Result<()> {
        let client = self.write_conn().await?;
        client
            .execute(
                "INSERT INTO api_tokens (id, hash, tenant, name, created_by, created_at,
                        expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &t.id,
                    &t.hash,
                    &t.tenant,
                    &t.name,
                    &t.created_by,
                    &t.created_at.as_millis(),
                    &t.expires_at.map(|e| e.as_millis()),
                    &t.revoked_at.map(|e| e.as_millis()),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_tokens(&self, tenant: Option<String>) -> Result<Vec<ApiToken>> {
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens
                     WHERE $1::TEXT IS NULL OR tenant = $1
                     ORDER BY created_at DESC, id DESC LIMIT 1000"
                ),
                &[&tenant],
            )
            .await?;
        rows.iter().map(decode::api_token).collect()
    }

    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>> {
        let rows = self
            .read_rows(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1"),
                &[&hash],
            )
            .await?;
        rows.first().map(decode::api_token).transpose()
    }

    async fn revoke_token(
        &self,
        id: &str,
        tenant: Option<String>,
        now: Timestamp,
    ) -> Result<Option<ApiToken>> {
        let client = self.write_conn().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3)
                     WHERE id = $1 AND ($2::TEXT IS NULL OR tenant = $2)
                     RETURNING {TOKEN_COLUMNS}"
                ),
                &[&id, &tenant, &now.as_millis()],
            )
            .await
            .map_err(unavailable)?;
        rows.first().map(decode::api_token).transpose()
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
        self.write(Request::Ping, Reply::Unit).await?;
        if !self.room.is_out() {
            return Ok(());
        }
        // The ping fits in the page it updates: whether a new event fits, only a probe says.
        let mut client = self.conn().await?;
        match room::probe(&mut client).await {
            Ok(()) => {
                self.room.stored();
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "no room for new events: {}",
                pg_error(&e)
            ))),
        }
    }

    fn disk_full(&self) -> Option<bool> {
        Some(self.room.is_out())
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
        let result = self.writes.close().await;
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
