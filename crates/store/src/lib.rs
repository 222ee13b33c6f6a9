//! The durable event log and delivery queue behind one [`Store`] trait.
//!
//! Every backend keeps the same promises, which the conformance tests check:
//!
//! * **Ingest is one transaction.** An event, one delivery per destination and the counters of
//!   that outcome commit together or not at all; [`Store::ingest`] returns only after the
//!   commit is durable. A caller that gets `Ok` may answer 200.
//! * **Work is leased, never taken.** [`Store::claim_due`] marks deliveries `in_flight` until a
//!   lease expires; a worker that dies leaves them due again at the lease's end.
//! * **Every state change is counted in the transaction that makes it.**
//!
//! The embedded backend is [`sqlite::SqliteStore`] (one process owns a file); several intake
//! nodes share one database through [`postgres::PostgresStore`]. [`open`] picks one from a
//! `storage.url`.
//!
//! # Layout
//!
//! | module | its one job | may import from the crate |
//! |---|---|---|
//! | `lib.rs` | the [`Store`] trait, [`StoreError`], [`open`] | any module |
//! | [`model`] | the types the trait speaks | nothing |
//! | `sql` | SQL text that is the same on both backends | nothing |
//! | `rows` | tables row for row, as `migrate-store` copies them | nothing |
//! | `decode` | the model's types read out of a row of either backend | `model` |
//! | [`counters`] | the counted [`Metric`]s, and counts merged per transaction | `model` |
//! | `requeue` | what a page of a requeue changes, decided once for both backends | `model`, `counters` |
//! | `audit` | an audit's counts assembled from the rows either backend reads | `model`, `counters` |
//! | `retention` | which events of a retention batch are deleted, decided once for both backends | nothing |
//! | `group_commit` | the group-commit engine both backends write through | `model`, `counters`, the root |
//! | [`sqlite`] | the embedded backend: dialect, locking, WAL | the shared modules above |
//! | [`postgres`] | the shared backend: dialect, `SKIP LOCKED`, LISTEN/NOTIFY | the shared modules above |
//! | [`transfer`] | copying SQLite into PostgreSQL (`intake migrate-store`) | both backends, `rows` |
//!
//! The rule: shared modules never import a backend, and no backend imports the other; what
//! both need (SQL text, counters, the group commit, copied rows, requeue decisions, audit
//! counts) lives in a shared module.
//! Only `transfer` sees both backends. Schema migrations belong to each backend
//! (`sqlite/schema.rs`, `postgres/schema.rs`); `transfer` is not one.

mod audit;
pub mod counters;
mod decode;
mod group_commit;
pub mod model;
pub mod postgres;
mod requeue;
mod retention;
mod rows;
mod sql;
pub mod sqlite;
pub mod transfer;

use std::time::Duration;

use async_trait::async_trait;
use intake_core::{DeliveryId, EventId, Timestamp};
use tokio::sync::broadcast;

pub use counters::Metric;
pub use model::*;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot commit right now (disk full, read-only, locked, injected fault). The
    /// caller must not acknowledge anything; ingest answers 503 so the sender retries.
    #[error("the store cannot commit: {0}")]
    Unavailable(String),
    /// The store has been shut down.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be read back (a bug or corruption).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The store could not be opened or migrated.
    #[error("cannot open the store: {0}")]
    Open(String),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A fault a test or a fire drill injects into a running store, through
/// [`Store::inject_fault`] only: there is no configuration key or stored setting for one, so
/// a fault never survives the process that injected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// Every write fails, as on a full disk or a read-only file system.
    RejectWrites,
    /// The story's bug: ingest commits the event (and answers as if all was well) but
    /// creates none of its deliveries, so nothing is queued and nothing fails. Every other
    /// write works. Counted as what happened: the event is accepted, no delivery is created.
    AcceptWithoutQueueing,
}

impl StoreFault {
    /// Whether writes fail under this fault (else they succeed, possibly altered).
    pub fn rejects_writes(self) -> bool {
        matches!(self, StoreFault::RejectWrites)
    }
}

/// The durable event log and delivery queue.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores an event and its deliveries in one durable transaction, or finds the event it
    /// duplicates (same source and dedupe key), in which case nothing is written but the count.
    async fn ingest(&self, event: NewEvent) -> Result<Accepted>;

    /// Records a refused request and counts it.
    async fn record_rejection(&self, rejection: Rejection) -> Result<()>;

    /// Leases up to `limit` deliveries of `destination` that are due at `now` (their next
    /// attempt is due, or their previous lease has expired) until `now + lease`.
    async fn claim_due(
        &self,
        destination: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>> {
        self.claim_due_holding(destination, now, lease, limit, &[])
            .await
    }

    /// [`Store::claim_due`], leaving alone the deliveries of the `held` sources (a
    /// queue-stall fire drill): they are not claimed and stay exactly as they are — pending,
    /// untouched, their attempts not counted — so the queue's oldest pending age grows as in
    /// the story, and they are claimed as usual once no longer held.
    async fn claim_due_holding(
        &self,
        destination: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Records an attempt and moves its delivery to the attempt's next step. An attempt whose
    /// lease was lost (another worker claimed the delivery since) is recorded but changes
    /// nothing.
    async fn finish_attempt(&self, attempt: FinishedAttempt) -> Result<()>;

    /// One delivery: whose it is and where it stands (a confirmation checks it before it is
    /// authenticated with the destination's secret).
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>>;

    /// Records handlers' confirmations (completion receipts), in one transaction, and answers
    /// each in order. The first outcome of a delivery wins; a repeat is answered
    /// [`Confirmation::Duplicate`](intake_core::delivery::Confirmation) and changes nothing.
    /// Each recorded confirmation counts `deliveries.completed` or
    /// `deliveries.completion_failed` (per tenant, source, channel and destination, at its
    /// `at`) in the same transaction. Whether the destination is on receipts is the caller's
    /// business; the decision is [`intake_core::delivery::confirm`].
    async fn complete_deliveries(
        &self,
        requests: Vec<CompletionRequest>,
    ) -> Result<Vec<CompletionReply>>;

    /// The deliveries of `destination` received and not confirmed, per tenant and source:
    /// how many, how many were received before `overdue_before`, and the oldest. Reads only
    /// the partial index of awaiting deliveries.
    async fn completion_backlog(
        &self,
        destination: &str,
        overdue_before: Timestamp,
    ) -> Result<Vec<CompletionBacklog>>;

    /// Gives leased deliveries back, due at `now` (graceful shutdown).
    async fn release(&self, leases: Vec<(DeliveryId, String)>, now: Timestamp) -> Result<()>;

    /// The earliest instant any delivery of `destination` needs a worker.
    async fn next_due_at(&self, destination: &str) -> Result<Option<Timestamp>> {
        self.next_due_at_holding(destination, &[]).await
    }

    /// [`Store::next_due_at`] among the deliveries of sources not in `held`.
    async fn next_due_at_holding(
        &self,
        destination: &str,
        held: &[String],
    ) -> Result<Option<Timestamp>>;

    /// Events matching a filter, newest first.
    async fn list_events(&self, filter: EventFilter) -> Result<Vec<EventSummary>>;

    /// One event with its body, deliveries and attempts.
    async fn get_event(&self, id: &EventId) -> Result<Option<EventDetail>>;

    /// Refused requests that were recorded (unparseable bodies), newest first.
    async fn list_rejections(
        &self,
        tenant: Option<String>,
        limit: usize,
    ) -> Result<Vec<RejectionRecord>>;

    /// Queue gauges per tenant, source and destination.
    async fn queue_stats(&self) -> Result<Vec<QueueStats>>;

    /// Counter buckets matching a query, oldest first. Hourly reads combine rolled-up hours
    /// with the minute rows of hours not yet rolled up.
    async fn read_counters(&self, query: CounterQuery) -> Result<Vec<CounterRow>>;

    /// What the store counted and what it holds for one source over one window of receipt
    /// times, read from one snapshot (see [`AuditCounts`]): the `requests.*` and
    /// `events.<origin>` counters, the event rows by origin and channel, and per destination
    /// the events by the best state of their deliveries and those without any. The window is
    /// widened to the buckets of the counters still kept ([`AuditWindow::plan`]).
    async fn audit(&self, query: AuditQuery) -> Result<AuditCounts>;

    /// Rolls complete hours of minute counters up into hourly rows, then deletes what is older
    /// than the retention, and records since when each resolution is complete (what
    /// [`Store::audit`] reads by). Idempotent; run periodically (a singleton duty on shared
    /// stores).
    async fn compact_counters(
        &self,
        now: Timestamp,
        retention: CounterRetention,
    ) -> Result<CompactReport>;

    /// One batch of a retention pass, in one short transaction: looks at up to `req.limit`
    /// events received before `req.before` with ids above `req.after`, in id order, and
    /// deletes those whose every delivery is final (delivered — and confirmed, on receipts —
    /// or dead; [`intake_core::retention::decide`]) with their deliveries and attempts; then
    /// deletes up to `req.limit` rejections recorded before `req.before`. An event whose work
    /// is not final is never deleted, however old. Deleting an event frees its dedupe key.
    /// On SQLite the batch goes through the writer, between two group commits of ingest.
    async fn expire_events(&self, req: ExpireRequest) -> Result<ExpireBatch>;

    /// How long the store's one writer has spent on its batches since the store opened, where
    /// a single writer carries every write (SQLite): a duty that shares it with ingest
    /// (retention) reads how busy ingest keeps it between two of its own batches. `None`
    /// where writes do not queue behind one writer (PostgreSQL, whose load is the database
    /// server's, not the writer task's).
    fn writer_busy(&self) -> Option<Duration> {
        None
    }

    /// Whether the store refuses new events for want of disk space (SQLite: its writer is
    /// full or draining, the `sqlite::full` module; PostgreSQL: a write was refused because
    /// the database's disk is full, and no event has been stored since, the `postgres::room`
    /// module). `None` where the store cannot tell.
    fn disk_full(&self) -> Option<bool> {
        None
    }

    /// Reads a small named document (e.g. the monitor's alert book, as JSON).
    async fn get_state(&self, key: &str) -> Result<Option<String>>;

    /// Writes a small named document, durably.
    async fn put_state(&self, key: &str, value: String) -> Result<()>;

    /// Writes (`Some`) and deletes (`None`) several small named documents in one durable
    /// transaction. For state kept as one document per item (the monitor's expectation of
    /// each flow), so that a writer stores only the items that changed.
    async fn put_states(&self, writes: Vec<(String, Option<String>)>) -> Result<()>;

    /// Every document whose key starts with `prefix`, as (key, document), in key order.
    async fn states_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>>;

    /// Writes a small named document unless one exists, and returns the stored one: `value`
    /// if it was written, the existing document otherwise. Nodes starting at once all end
    /// up with the same document (e.g. a key made once for the whole cluster).
    async fn init_state(&self, key: &str, value: String) -> Result<String>;

    /// Records alert transitions, durably, in one transaction.
    async fn record_alert_transitions(&self, transitions: Vec<AlertTransitionRecord>)
        -> Result<()>;

    /// The most recent alert transitions, newest first, optionally of one tenant.
    async fn list_alert_transitions(
        &self,
        tenant: Option<String>,
        limit: usize,
    ) -> Result<Vec<AlertTransitionRecord>>;

    /// Writes one evaluation of the notification pipeline in one durable transaction: enqueues
    /// its notifications (pending, due at their `created_at`), writes its state documents and
    /// marks the silences whose expiry it announces.
    async fn enqueue_notifications(&self, batch: NotificationBatch) -> Result<()>;

    /// Leases the oldest pending notification of each notifier, if it is due at `now`, until
    /// `now + lease` (its `due_at` moves there, so a sender that dies leaves it due again).
    /// One per notifier at a time keeps each notifier's notifications in order: a resolution
    /// never overtakes its firing.
    async fn claim_notifications(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxItem>>;

    /// Records one attempt of a claimed notification.
    async fn finish_notification(
        &self,
        id: i64,
        outcome: NotificationOutcome,
        now: Timestamp,
    ) -> Result<()>;

    /// The earliest due time of any pending notification.
    async fn next_notification_due(&self) -> Result<Option<Timestamp>>;

    /// Deletes notifications that ended (sent or dead) before `before`. Pending ones are never
    /// deleted, however old, nor those announcing an incident (its record of who was told).
    async fn prune_notifications(&self, before: Timestamp) -> Result<()>;

    /// The outbox of every notifier that has one, by notifier.
    async fn notifier_health(&self) -> Result<Vec<NotifierHealth>>;

    /// The most recent notifications, newest first, optionally of one notifier.
    async fn list_notifications(
        &self,
        notifier: Option<String>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>>;

    /// Stores a new silence and enqueues its announcement, in one transaction.
    async fn create_silence(
        &self,
        silence: Silence,
        announcements: Vec<NewNotification>,
    ) -> Result<()>;

    /// Every silence that ends after `ended_after` (active, future and recently ended ones),
    /// newest first.
    async fn list_silences(&self, ended_after: Timestamp) -> Result<Vec<Silence>>;

    /// Ends a silence at `now` and enqueues its expiry announcement, in one transaction.
    async fn expire_silence(
        &self,
        id: &str,
        now: Timestamp,
        announcements: Vec<NewNotification>,
    ) -> Result<SilenceExpiry>;

    /// Stores a minted API token (its hash, never its text).
    async fn create_token(&self, token: ApiToken) -> Result<()>;

    /// Stored API tokens, revoked and expired ones included, newest first; of one tenant only
    /// when `tenant` is given (operator tokens have none).
    async fn list_tokens(&self, tenant: Option<String>) -> Result<Vec<ApiToken>>;

    /// The stored token with this hash, whatever its state. Read on every request that
    /// presents a minted token, so a revocation on one node holds on every node at once.
    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>>;

    /// Revokes a token at `now` (a token already revoked keeps its first revocation time).
    /// With `tenant`, only a token of that tenant. Returns the token as it now is, or `None`
    /// when no such token exists.
    async fn revoke_token(
        &self,
        id: &str,
        tenant: Option<String>,
        now: Timestamp,
    ) -> Result<Option<ApiToken>>;

    /// Writes one change of an incident in one durable transaction: the record, its new
    /// timeline entries and its notices (see [`IncidentWrite`]). `Ok(false)`, with nothing
    /// written, when the incident changed since the caller read it (its version moved); the
    /// caller reads it again and decides again. A new incident whose id exists already is an
    /// error ([`StoreError::Corrupt`]).
    async fn write_incident(&self, write: IncidentWrite) -> Result<bool>;

    /// One incident.
    async fn get_incident(&self, id: &str) -> Result<Option<Incident>>;

    /// Incidents matching a filter, newest declared first.
    async fn list_incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>>;

    /// An incident's timeline entries, oldest first.
    async fn incident_entries(&self, id: &str) -> Result<Vec<IncidentEntry>>;

    /// The notifications that announce an incident (the outbox rows naming it), oldest first,
    /// whatever their state: who was told what, when, and whether it arrived.
    async fn incident_notices(&self, id: &str) -> Result<Vec<OutboxItem>>;

    /// Stores a new recovery job (in the state given, normally `Queued`). An id that exists
    /// already is an error ([`StoreError::Corrupt`]), and nothing is written.
    async fn create_recovery(&self, job: RecoveryJob) -> Result<()>;

    /// One recovery job.
    async fn get_recovery(&self, id: &str) -> Result<Option<RecoveryJob>>;

    /// Recovery jobs matching a filter, newest first (by `created_at`, then id).
    async fn list_recoveries(&self, filter: RecoveryFilter) -> Result<Vec<RecoveryJob>>;

    /// Writes a running job's step, and returns the job as stored afterwards, so the runner
    /// sees a cancellation requested meanwhile (`cancel_requested`). A job already in a final
    /// state is not changed (it is returned as it is). `None` when there is no such job.
    async fn save_recovery(&self, update: RecoveryUpdate) -> Result<Option<RecoveryJob>>;

    /// Asks a job to stop: sets `cancel_requested`; a `Queued` job becomes `Cancelled` at once
    /// (`finished_at = now`). A final job is returned unchanged. `None` when there is no such
    /// job.
    async fn cancel_recovery(&self, id: &str, now: Timestamp) -> Result<Option<RecoveryJob>>;

    /// Which of `keys` the source already has an event for (the `events_dedupe` index). Made
    /// for pages of about a thousand keys.
    async fn known_dedupe_keys(
        &self,
        source: &str,
        keys: Vec<String>,
    ) -> Result<std::collections::HashSet<String>>;

    /// For each (event, destination) of the batch, a new delivery (pending, due at
    /// `batch.now`, attempts 0, origin `replay`, `replay_key = batch.key`, `recovery =
    /// batch.recovery`), unless that event already has a delivery to that destination with the
    /// same replay key (it counts as `already`). The original deliveries and their attempts are
    /// untouched. Counts `deliveries.created` (per tenant, source, channel and destination, as
    /// ingest does) and `events.replay` (once per event that got a new delivery), at
    /// `batch.now`, and wakes the destinations' dispatchers (see
    /// [`Store::subscribe_new_work`]). One transaction. An event that does not exist is an
    /// error ([`StoreError::Corrupt`]; events are never deleted).
    async fn replay_deliveries(&self, batch: ReplayBatch) -> Result<ReplayOutcome>;

    /// One page of a requeue: the events of `req.source` received in `[req.from, req.to)`
    /// with ids above `req.after`, ascending by id, at most `req.limit` of them. Returns what
    /// it did (with `req.dry_run`: what it would do, writing nothing):
    ///
    /// * in-flight deliveries whose lease ended before `req.stale_before` become pending, due
    ///   now, their lease cleared (`stale_leases`);
    /// * with `req.include_retrying`, retrying deliveries become pending, due now, attempts
    ///   from 0 (`retrying_reset`);
    /// * deliveries not final (pending, retrying, in flight) to a destination not in
    ///   `req.routes` become dead, with a `last_error` naming the recovery (`rerouted`;
    ///   counted `deliveries.rerouted`, not as a dead letter);
    /// * every destination of `req.routes` the event has no delivery to gets a new pending
    ///   delivery, due now (`created`; counted `deliveries.created`): events received but never
    ///   queued, and routes added since.
    ///
    /// `items` lists the first `req.sample` changes; `last` is the last event looked at (the
    /// next page's `after`), `None` when the page was empty. A delivery that moved on since
    /// it was read (a worker finished it) is left alone and not counted. Wakes the dispatchers
    /// of the destinations that got due work. One transaction.
    async fn requeue_page(&self, req: RequeueRequest) -> Result<RequeuePage>;

    /// Stores a new drill (normally `Running`: its row is its fault, applied by every node
    /// until it ends or expires). An id that exists already is an error
    /// ([`StoreError::Corrupt`]), and nothing is written.
    async fn create_drill(&self, drill: Drill) -> Result<()>;

    /// One drill.
    async fn get_drill(&self, id: &str) -> Result<Option<Drill>>;

    /// Drills matching a filter, newest first (by `started_at`, then id).
    async fn list_drills(&self, filter: DrillFilter) -> Result<Vec<Drill>>;

    /// Writes what a running drill observed, or its end, and returns the drill as stored
    /// afterwards. A drill that has already ended is not changed (it is returned as it is), so
    /// a cancellation and the duty's verdict cannot overwrite each other. `None` when there
    /// is no such drill.
    async fn update_drill(&self, update: DrillUpdate) -> Result<Option<Drill>>;

    /// Succeeds when a write transaction can be committed now.
    async fn check_writable(&self) -> Result<()>;

    /// Injects (or with `None`, clears) a fault. For tests and fire drills.
    async fn inject_fault(&self, fault: Option<StoreFault>) -> Result<()>;

    /// The node this store speaks for: leases taken by [`Store::claim_due`] and duty leases
    /// are recorded under it.
    fn node_id(&self) -> &str;

    /// Wake-ups for dispatchers when new work was committed by something other than this
    /// node's ingest: another process (PostgreSQL's LISTEN/NOTIFY), or a recovery write of the
    /// store itself ([`Store::replay_deliveries`], [`Store::requeue_page`]; both backends).
    /// Ingest does not signal here on SQLite: its caller wakes the local dispatchers directly,
    /// which it does on every backend anyway. `None` when nothing ever signals.
    fn subscribe_new_work(&self) -> Option<broadcast::Receiver<WorkSignal>> {
        None
    }

    /// Records that this node is alive (inserting it on the first call).
    async fn heartbeat(&self, node: NodeInfo) -> Result<()>;

    /// Takes or renews the lease of a singleton duty for this node until `now + ttl`. `true`
    /// when this node holds it now; `false` when another node's lease has not expired.
    async fn acquire_duty(&self, duty: &str, now: Timestamp, ttl: Duration) -> Result<bool>;

    /// Gives up this node's lease of a duty (no-op if another node holds it).
    async fn release_duty(&self, duty: &str) -> Result<()>;

    /// The nodes that have sent heartbeats and the duty leases, for `GET /api/v1/cluster`.
    async fn cluster(&self) -> Result<ClusterView>;

    /// Makes due at once every in-flight delivery whose lease belongs to another node that has
    /// sent no heartbeat since `now - node_timeout` (it died holding them), and forgets nodes
    /// silent for a day. Returns how many deliveries were made due. A node never reaps its own
    /// leases: it is alive, since it is the one asking.
    async fn reap_orphaned_leases(&self, now: Timestamp, node_timeout: Duration) -> Result<u64>;

    /// Removes this node from the cluster view and gives up its duties (graceful shutdown).
    async fn leave(&self) -> Result<()>;

    /// Finishes queued writes and closes.
    async fn close(&self) -> Result<()>;
}

/// Opens the store a `storage.url` names (`sqlite://…` or `postgres://…`).
pub async fn open(url: &str, options: OpenOptions) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite://") {
        let path = sqlite::SqliteStore::path_from_url(url)?;
        let opts = sqlite::SqliteOptions {
            max_batch: options.max_batch,
            node_id: options.node_id,
            ..sqlite::SqliteOptions::default()
        };
        // Opening runs migrations and lease recovery: blocking file IO.
        let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path, opts))
            .await
            .map_err(|e| StoreError::Open(format!("open task failed: {e}")))??;
        Ok(std::sync::Arc::new(store))
    } else if postgres::PostgresStore::accepts(url) {
        let store = postgres::PostgresStore::open(
            url,
            postgres::PostgresOptions {
                max_batch: options.max_batch,
                pool_size: options.pool_size,
                node_id: options.node_id,
                ..postgres::PostgresOptions::default()
            },
        )
        .await?;
        Ok(std::sync::Arc::new(store))
    } else {
        Err(StoreError::Open(format!(
            "storage.url `{}` must start with sqlite:// or postgres://",
            intake_core::config::mask("storage.url", url)
        )))
    }
}

/// What [`open`] needs besides the URL.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The most requests one group commit carries.
    pub max_batch: usize,
    /// Connections to PostgreSQL (ignored by SQLite).
    pub pool_size: usize,
    /// This node's id.
    pub node_id: String,
}

/// A node id nobody else has: `node-` and 8 random hex digits.
pub fn generate_node_id() -> String {
    format!("node-{:08x}", rand::random::<u32>())
}
