//! `[server]`, `[storage]`, `[cluster]`, `[admin]` and `[metrics]`: where intake listens,
//! where it keeps its data, how its nodes see each other, and who may use the admin API and
//! read the metrics.

use serde::{Deserialize, Serialize};

use super::units::{lenient, ByteSize, Dur, DurOrOff};

/// `[server]`: where intake listens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to bind, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub listen: String,
    /// The URL the outside world reaches this server at (canaries enter here).
    pub public_url: Option<String>,
    /// The largest webhook body accepted; larger ones get 413.
    pub max_body_size: ByteSize,
    /// How long a graceful shutdown waits for in-flight deliveries before releasing them.
    pub shutdown_timeout: Dur,
    /// Serve a built-in handler at `/demo/handler` that accepts and logs deliveries. Only the
    /// embedded default turns this on, so a newcomer sees a delivery with no other program.
    #[serde(deserialize_with = "lenient::boolean")]
    pub demo_handler: bool,
    /// How long a client has to send a request's headers, counted from the moment the server
    /// waits for them (so it also bounds a kept-alive connection waiting for its next request).
    pub header_timeout: Dur,
    /// How long a client has to send a whole request body once its headers are in (a total
    /// deadline: with `max_body_size` it implies a minimum average rate); past it, 408.
    pub body_timeout: Dur,
    /// A connection on which nothing is received for this long while the server waits to read
    /// is closed (idle keep-alive sockets, sockets that never send, bodies that stall).
    pub idle_timeout: Dur,
    /// The most connections open at once; the ones over it get 503 with `Retry-After` and
    /// are closed.
    #[serde(deserialize_with = "lenient::count")]
    pub max_connections: usize,
    /// The most connections open at once from one client IP address.
    #[serde(deserialize_with = "lenient::count")]
    pub max_connections_per_ip: usize,
    /// The most bytes of request bodies held in memory at once, over every request; a request
    /// whose body would go over it gets 503 with `Retry-After`.
    pub body_budget: ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_size: ByteSize(1 << 20),
            shutdown_timeout: Dur::secs(10),
            demo_handler: false,
            header_timeout: Dur::secs(10),
            body_timeout: Dur::secs(30),
            idle_timeout: Dur::secs(60),
            max_connections: 4096,
            max_connections_per_ip: 256,
            body_budget: ByteSize(128 << 20),
        }
    }
}

/// `[storage]`: where events and the queue live.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path/to/intake.db` (embedded, the default) or `postgres://…`.
    pub url: String,
    /// The most requests one group commit may carry.
    #[serde(deserialize_with = "lenient::count")]
    pub max_batch: usize,
    /// PostgreSQL only: connections in the pool (one more LISTENs for new work).
    #[serde(deserialize_with = "lenient::count")]
    pub pool_size: usize,
    /// How long events whose work is done (every delivery delivered, confirmed or dead) are
    /// kept, with their deliveries and attempts; older ones are deleted by the `retention`
    /// duty. `"off"` keeps everything. Events whose work is not done are never deleted.
    pub retention: DurOrOff,
}

/// The default `storage.retention`: 30 days.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The shortest `storage.retention` accepted.
pub const MIN_RETENTION: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite://./intake-data/intake.db".into(),
            max_batch: 1024,
            pool_size: 16,
            retention: DurOrOff(Some(DEFAULT_RETENTION)),
        }
    }
}

/// `[cluster]`: how nodes sharing a PostgreSQL database see each other. With SQLite there is
/// one node, and these keys only name it and pace its (local) duties.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id. A node restarting under the same id takes its leases back at once;
    /// without one, a random id is chosen at each start (`node-1a2b3c4d`).
    pub node_id: Option<String>,
    /// How often this node records that it is alive.
    pub heartbeat: Dur,
    /// A node silent for this long is taken for dead: its deliveries in flight are made due.
    pub node_timeout: Dur,
    /// How long a node holds a singleton duty's lease without renewing it; when the holder
    /// dies, another node takes the duty over within this time.
    pub duty_lease: Dur,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            heartbeat: Dur::secs(2),
            node_timeout: Dur::secs(15),
            duty_lease: Dur::secs(10),
        }
    }
}

/// `[admin]`: the admin API.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The operator-wide bearer token. Without it the admin API answers 401 to everyone.
    pub token: Option<String>,
}

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A bearer token `/metrics` requires when set (the metrics name every tenant and
    /// source); without one, `/metrics` is open, as Prometheus scrapers expect by default.
    pub token: Option<String>,
}
