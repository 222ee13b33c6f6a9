//! Helpers shared by the integration tests, and the [`Db`] factory that gives every test a
//! fresh database of either backend.
//!
//! PostgreSQL tests create their own database (`intake_test_<random>`) through the `postgres`
//! database at `INTAKE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! and drop it at the end. If PostgreSQL cannot be reached they fail, loudly: a conformance
//! suite that skips one of its backends proves nothing about it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use intake_core::delivery::NextStep;
use intake_core::event::{Channel, NormalizedEvent, Origin};
use intake_core::{DeliveryId, EventId, Timestamp};
use intake_store::postgres::{PostgresOptions, PostgresStore};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::{
    ClaimedDelivery, DeliverySummary, EventDetail, EventFilter, EventSummary, FinishedAttempt,
    NewEvent, Store,
};
use tempfile::TempDir;

/// A fixed instant, deliberately not on a minute boundary.
pub const T0: i64 = 1_700_000_012_345;

/// The tenant of every test event.
pub const TENANT: &str = "acme";

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The administrative URL PostgreSQL tests create their databases through.
pub fn pg_admin_url() -> String {
    std::env::var("INTAKE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Connects to `url` with a plain client (driving its connection on a task).
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL at {url}: {e}. The store tests need a running \
                 PostgreSQL (scripts/test starts one; or `pg_ctlcluster --skip-systemctl-redirect \
                 $(ls /etc/postgresql) main start`)"
            )
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A PostgreSQL database of one test, dropped on drop.
pub struct PgDb {
    pub name: String,
    pub url: String,
    /// Whether dropping this drops the database.
    owned: bool,
}

impl PgDb {
    pub async fn create() -> Self {
        let admin = pg_admin_url();
        let name = format!("intake_test_{:016x}", rand::random::<u64>());
        let client = pg_connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e:?}"));
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        PgDb {
            url: format!("{base}/{name}"),
            name,
            owned: true,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Best effort, on a thread of its own: drop may run inside or outside a runtime.
        let name = self.name.clone();
        let admin = pg_admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A fresh database of one backend: a file in a temporary directory, or a PostgreSQL database.
pub struct Db {
    pub kind: Kind,
    dir: Option<TempDir>,
    pub path: PathBuf,
    pub pg: Option<PgDb>,
    /// The node id stores opened with [`Db::open`] use: reopening is a restart of one node.
    pub node_id: String,
}

impl Db {
    pub async fn new(kind: Kind) -> Self {
        let node_id = intake_store::generate_node_id();
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("intake.db");
                Db {
                    kind,
                    dir: Some(dir),
                    path,
                    pg: None,
                    node_id,
                }
            }
            Kind::Postgres => Db {
                kind,
                dir: None,
                path: PathBuf::new(),
                pg: Some(PgDb::create().await),
                node_id,
            },
        }
    }

    /// A view of an existing PostgreSQL database (owned elsewhere), emptied of every row.
    pub async fn shared_pg(url: &str) -> Self {
        let client = pg_connect(url).await;
        // The first case finds no tables yet: the first open creates them.
        let _ = client
            .batch_execute(
                "TRUNCATE events, deliveries, attempts, rejections, counters, nodes, duties",
            )
            .await;
        Db {
            kind: Kind::Postgres,
            dir: None,
            path: PathBuf::new(),
            pg: Some(PgDb {
                name: String::new(),
                url: url.to_string(),
                owned: false,
            }),
            node_id: intake_store::generate_node_id(),
        }
    }

    /// The store's URL.
    pub fn url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}", self.path.display()),
        }
    }

    /// Opens the store as this test's node.
    pub async fn open(&self) -> Arc<dyn Store> {
        self.open_as(&self.node_id).await
    }

    /// Opens the store as another node (PostgreSQL: a second process on the same database).
    pub async fn open_as(&self, node_id: &str) -> Arc<dyn Store> {
        match self.kind {
            Kind::Sqlite => {
                let _ = &self.dir;
                Arc::new(
                    SqliteStore::open(
                        &self.path,
                        SqliteOptions {
                            node_id: node_id.to_string(),
                            ..SqliteOptions::default()
                        },
                    )
                    .expect("open store"),
                )
            }
            Kind::Postgres => Arc::new(
                PostgresStore::open(
                    &self.url(),
                    PostgresOptions {
                        node_id: node_id.to_string(),
                        pool_size: 4,
                        ..PostgresOptions::default()
                    },
                )
                .await
                .expect("open store"),
            ),
        }
    }

    /// One number from a query that is valid on both backends.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.kind {
            Kind::Sqlite => self
                .inspect()
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                .expect(sql)
                .unwrap_or(0),
            Kind::Postgres => {
                let client = self.pg_client().await;
                client
                    .query_one(sql, &[])
                    .await
                    .expect(sql)
                    .get::<_, Option<i64>>(0)
                    .unwrap_or(0)
            }
        }
    }

    /// Every counter, summed over PostgreSQL's shards: (minute, tenant, source, channel,
    /// destination, metric, count), ordered by minute, metric, destination.
    pub async fn counters(&self) -> Vec<CounterRow> {
        let sql = "SELECT minute, tenant, source, channel, destination, metric,
                          CAST(SUM(count) AS BIGINT)
                   FROM counters GROUP BY minute, tenant, source, channel, destination, metric
                   ORDER BY minute, metric, destination";
        match self.kind {
            Kind::Sqlite => {
                let conn = self.inspect();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
            }
            Kind::Postgres => self
                .pg_client()
                .await
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                    )
                })
                .collect(),
        }
    }

    /// A read-only connection of our own to the SQLite file.
    pub fn inspect(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open read-only connection")
    }

    /// A connection of our own to the PostgreSQL database.
    pub async fn pg_client(&self) -> tokio_postgres::Client {
        let pg = self.pg.as_ref().expect("a PostgreSQL database");
        pg_connect(&pg.url).await
    }

    /// Takes the write locks ingest needs from another connection, so that the store's writer
    /// waits (and the requests sent meanwhile pile up behind it) until the guard is released.
    pub async fn hold_write_lock(&self) -> WriteLock {
        match self.kind {
            Kind::Sqlite => {
                let other = rusqlite::Connection::open(&self.path).unwrap();
                other.execute_batch("BEGIN EXCLUSIVE").unwrap();
                WriteLock::Sqlite(other)
            }
            Kind::Postgres => {
                let client = self.pg_client().await;
                client
                    .batch_execute(
                        "BEGIN; LOCK TABLE events, meta, counters IN ACCESS EXCLUSIVE MODE",
                    )
                    .await
                    .unwrap();
                WriteLock::Postgres(client)
            }
        }
    }
}

/// A write lock held by another connection (see [`Db::hold_write_lock`]).
pub enum WriteLock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl WriteLock {
    pub async fn release(self) {
        match self {
            WriteLock::Sqlite(c) => c.execute_batch("COMMIT").unwrap(),
            WriteLock::Postgres(c) => c.batch_execute("COMMIT").await.unwrap(),
        }
    }
}

/// A counter row (see [`Db::counters`]).
pub type CounterRow = (i64, String, String, String, String, String, i64);

/// Instantiates conformance tests, each written once as `async fn name(kind: Kind)`, for both
/// backends: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Kind::Postgres).await
                }
            )*
        }
    };
}

/// A new event of `source` with one delivery per destination, received at `at`.
pub fn event(source: &str, dedupe_key: &str, destinations: &[&str], at: Timestamp) -> NewEvent {
    NewEvent {
        id: EventId::generate(at),
        tenant: TENANT.to_string(),
        source: source.to_string(),
        origin: Origin::Webhook,
        normalized: NormalizedEvent {
            sor_event_id: Some(format!("sor-{dedupe_key}")),
            dedupe_key: dedupe_key.to_string(),
            event_type: "kustomer.message.create".to_string(),
            channel: Channel::Email,
            raw_channel: Some("EMAIL".to_string()),
            object_type: Some("message".to_string()),
            object_id: Some(format!("msg-{dedupe_key}")),
            conversation_id: Some(format!("conv-{dedupe_key}")),
            occurred_at: Some(Timestamp(at.as_millis() - 1_000)),
        },
        received_at: at,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: format!("{{\"key\":\"{dedupe_key}\"}}").into_bytes(),
        deliveries: destinations
            .iter()
            .map(|d| (DeliveryId::generate(at), (*d).to_string()))
            .collect(),
    }
}

/// The result of an attempt at `claim`, made under `lease_id`, ending at `at`.
pub fn attempt_with_lease(
    claim: &ClaimedDelivery,
    lease_id: &str,
    next: NextStep,
    at: Timestamp,
) -> FinishedAttempt {
    let (status, error) = match next {
        NextStep::Delivered => (Some(200), None),
        NextStep::RetryAt(_) => (Some(503), Some("503 Service Unavailable".to_string())),
        NextStep::Dead => (Some(500), Some("500 Internal Server Error".to_string())),
    };
    FinishedAttempt {
        delivery_id: claim.id.clone(),
        lease_id: lease_id.to_string(),
        attempt: claim.attempt,
        next,
        started_at: Timestamp(at.as_millis() - 10),
        finished_at: at,
        status,
        error,
        tenant: claim.tenant.clone(),
        source: claim.source.clone(),
        channel: claim.channel.clone(),
        destination: claim.destination.clone(),
        received_at: claim.received_at,
        awaits_completion: false,
    }
}

/// The result of an attempt at `claim` under its own lease.
pub fn attempt(claim: &ClaimedDelivery, next: NextStep, at: Timestamp) -> FinishedAttempt {
    attempt_with_lease(claim, &claim.lease_id, next, at)
}

/// Every event (up to 1000), newest first.
pub async fn all_events(store: &dyn Store) -> Vec<EventSummary> {
    store
        .list_events(EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .expect("list events")
}

/// One event, which must exist.
pub async fn event_detail(store: &dyn Store, id: &EventId) -> EventDetail {
    store
        .get_event(id)
        .await
        .expect("get event")
        .expect("event exists")
}

/// One delivery of an event, found by id.
pub async fn delivery(store: &dyn Store, event: &EventId, id: &DeliveryId) -> DeliverySummary {
    event_detail(store, event)
        .await
        .summary
        .deliveries
        .into_iter()
        .find(|d| &d.id == id)
        .expect("delivery exists")
}

/// A lease long enough that it never expires within a test unless time is moved on purpose.
pub const LEASE: Duration = Duration::from_secs(30);

/// Closes the store and drops it, which releases its lock on the file.
pub async fn close(store: Arc<dyn Store>) {
    store.close().await.expect("close store");
    drop(store);
}
