//! The values that cross the [`Store`](crate::Store) boundary.

use intake_core::delivery::{
    CompletionOutcome, CompletionState, Confirmation, DeliveryState, NextStep,
};
use intake_core::event::{NormalizedEvent, Origin};
use intake_core::{DeliveryId, EventId, Timestamp};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod audit;
mod drill;
mod incident;
mod recovery;

pub use audit::*;
pub use drill::*;
pub use incident::*;
pub use recovery::*;

/// An event about to be accepted.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its id, if it is new.
    pub id: EventId,
    /// The tenant.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// How it entered.
    pub origin: Origin,
    /// What the connector made of it.
    pub normalized: NormalizedEvent,
    /// When intake received it.
    pub received_at: Timestamp,
    /// Selected request headers, kept for replay and for the handler.
    pub headers: Vec<(String, String)>,
    /// The raw body, exactly as received.
    pub body: Vec<u8>,
    /// One delivery per destination.
    pub deliveries: Vec<(DeliveryId, String)>,
}

/// The answer to an ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// The event's id: the new one, or the one it duplicates.
    pub id: EventId,
    /// Whether the event had already been accepted.
    pub duplicate: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// Bad or missing signature.
    Signature,
    /// Unparseable body.
    Invalid,
    /// Body over the limit.
    TooLarge,
}

impl RejectionKind {
    /// The outcome name used in counters and metrics.
    pub fn outcome(self) -> &'static str {
        match self {
            RejectionKind::Signature => "rejected_signature",
            RejectionKind::Invalid => "rejected_invalid",
            RejectionKind::TooLarge => "too_large",
        }
    }
}

/// A refused request.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// When.
    pub at: Timestamp,
    /// The tenant of the source it was sent to.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// Why.
    pub kind: RejectionKind,
    /// Why, for people.
    pub reason: String,
    /// The body, for invalid bodies only (never for signature failures: an unauthenticated
    /// sender must not be able to write into the store).
    pub body: Option<Vec<u8>>,
}

/// A delivery leased to a worker, with what it needs to make the attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: DeliveryId,
    /// The lease: finishing needs it, so a worker whose lease expired cannot overwrite the
    /// result of the worker that took over.
    pub lease_id: String,
    /// The attempt this will be (1-based).
    pub attempt: u32,
    /// The destination.
    pub destination: String,
    /// The event.
    pub event_id: EventId,
    /// The tenant.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// The normalized channel.
    pub channel: String,
    /// How the delivery entered: the event's origin, or `replay` for a delivery a replay
    /// created (sent as `intake-origin`).
    pub origin: Origin,
    /// When the SOR says it happened.
    pub occurred_at: Option<Timestamp>,
    /// When intake accepted it.
    pub received_at: Timestamp,
    /// The raw body.
    pub body: Vec<u8>,
}

/// The result of one attempt, ready to be recorded.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was made under.
    pub lease_id: String,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// What to do next, as the retry policy decided.
    pub next: NextStep,
    /// When the attempt started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// What went wrong, when it did.
    pub error: Option<String>,
    /// For counters: the delivery's tenant.
    pub tenant: String,
    /// For counters: the delivery's source.
    pub source: String,
    /// For counters: the delivery's channel.
    pub channel: String,
    /// For counters: the destination.
    pub destination: String,
    /// When the event was accepted (for accept → delivered latency).
    pub received_at: Timestamp,
    /// Whether the destination confirms its work (`completion = "receipt"`): a 2xx then
    /// leaves the delivery `received`, awaiting its confirmation (unless one came first).
    pub awaits_completion: bool,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Only events with a delivery in this state.
    pub state: Option<DeliveryState>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Received at or after.
    pub from: Option<Timestamp>,
    /// Received before.
    pub to: Option<Timestamp>,
    /// Only events with ids below this one (pagination cursor: the last id of the previous page).
    pub before: Option<EventId>,
    /// Only events with ids above this one (the cursor of an ascending listing).
    pub after: Option<EventId>,
    /// Only events with a delivery to this destination (with `state`: a delivery to it in
    /// that state).
    pub destination: Option<String>,
    /// Only events that entered this way.
    pub origin: Option<Origin>,
    /// Only events with a delivery whose handler's work stands here (with `state` and
    /// `destination`: the same delivery). `received` selects the deliveries a handler on
    /// receipts acknowledged and never confirmed.
    pub completion: Option<CompletionState>,
    /// Oldest first (by id) instead of newest first.
    pub ascending: bool,
    /// At most this many.
    pub limit: usize,
}

/// An event in a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    /// Id.
    pub id: EventId,
    /// Tenant.
    pub tenant: String,
    /// Source.
    pub source: String,
    /// Origin.
    pub origin: Origin,
    /// The SOR's event id.
    pub sor_event_id: Option<String>,
    /// Dedupe key.
    pub dedupe_key: String,
    /// Event type.
    pub event_type: String,
    /// Normalized channel.
    pub channel: String,
    /// The SOR's channel.
    pub raw_channel: Option<String>,
    /// When it happened, per the SOR.
    pub occurred_at: Option<Timestamp>,
    /// When intake accepted it.
    pub received_at: Timestamp,
    /// The kind of object the event is about.
    pub object_type: Option<String>,
    /// That object's id.
    pub object_id: Option<String>,
    /// The conversation (ticket) the object belongs to.
    pub conversation_id: Option<String>,
    /// Its deliveries' states, by destination.
    pub deliveries: Vec<DeliverySummary>,
}

/// A delivery in a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliverySummary {
    /// Id.
    pub id: DeliveryId,
    /// Destination.
    pub destination: String,
    /// State.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When it next needs a worker (next attempt, or lease expiry), while not final.
    pub due_at: Option<Timestamp>,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// The last HTTP status.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
    /// How this delivery entered when it differs from its event (`replay` for a delivery a
    /// replay created); `None`: the event's origin.
    pub origin: Option<Origin>,
    /// The recovery job that created it, if one did.
    pub recovery: Option<String>,
    /// For a destination on receipts, where the handler's own work stands: `received` (its
    /// 2xx came, its confirmation has not), `completed` or `completion_failed`. `None` for a
    /// destination on `ack`, or before the first 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<CompletionState>,
    /// When the handler confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// What the handler said with its confirmation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_detail: Option<String>,
}

/// One delivery as a confirmation needs it: whose it is, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The delivery.
    pub id: DeliveryId,
    /// Its event.
    pub event_id: EventId,
    /// The destination.
    pub destination: String,
    /// The tenant.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// The channel.
    pub channel: String,
    /// The delivery state.
    pub state: DeliveryState,
    /// Attempts recorded.
    pub attempts: u32,
    /// Where the handler's work stands.
    pub completion: Option<CompletionState>,
}

/// A handler's confirmation of one delivery, as the API checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    /// The delivery.
    pub id: DeliveryId,
    /// What the handler says.
    pub outcome: CompletionOutcome,
    /// What the handler adds, for people (kept as given, at most a few KiB).
    pub detail: Option<String>,
    /// When it arrived.
    pub at: Timestamp,
}

/// What [`Store::complete_delivery`](crate::Store::complete_delivery) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionReply {
    /// Recorded or found already recorded (see [`Confirmation`]).
    Confirmed(Confirmation),
    /// No delivery has this id.
    NotFound,
    /// The delivery has never been sent, so its handler cannot have seen it.
    NotReceived,
}

/// Deliveries of one tenant, source and destination waiting for their confirmation
/// ([`Store::completion_backlog`](crate::Store::completion_backlog)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompletionBacklog {
    /// Tenant.
    pub tenant: String,
    /// Source.
    pub source: String,
    /// Destination.
    pub destination: String,
    /// Received and not confirmed.
    pub awaiting: u64,
    /// Of those, received before the deadline's cutoff.
    pub overdue: u64,
    /// When the oldest awaiting one was received.
    pub oldest_received_at: Option<Timestamp>,
    /// The oldest awaiting one (for the alert: the item to look at first).
    pub oldest: Option<DeliveryId>,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The attempt number.
    pub attempt: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: i64,
    /// The HTTP status.
    pub status: Option<u16>,
    /// The error.
    pub error: Option<String>,
    /// `delivered`, `retrying`, `dead` or `superseded`.
    pub outcome: String,
}

/// One event with everything about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    /// The event and its deliveries.
    #[serde(flatten)]
    pub summary: EventSummary,
    /// Selected headers, as `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The raw body.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// Queue gauges for one tenant, source and destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Tenant.
    pub tenant: String,
    /// Source.
    pub source: String,
    /// Destination.
    pub destination: String,
    /// Deliveries not yet final (pending, retrying, in flight).
    pub pending: u64,
    /// Of those, in flight now.
    pub in_flight: u64,
    /// When the oldest non-final delivery was created.
    pub oldest_pending_at: Option<Timestamp>,
    /// Dead deliveries.
    pub dead: u64,
}

/// A recorded rejection.
#[derive(Debug, Clone, Serialize)]
pub struct RejectionRecord {
    /// When.
    pub at: Timestamp,
    /// Tenant.
    pub tenant: String,
    /// Source.
    pub source: String,
    /// `rejected_invalid`, …
    pub outcome: String,
    /// Why.
    pub reason: String,
    /// The body (up to 64 KiB), when kept.
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
}

/// The time resolution of a counter read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Per minute (kept for `CounterRetention::minutes`).
    Minute,
    /// Per hour (kept for `CounterRetention::hours`).
    Hour,
}

impl Resolution {
    /// The bucket length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// The start of the bucket `t` falls in.
    pub fn bucket(self, t: Timestamp) -> Timestamp {
        Timestamp(t.as_millis().div_euclid(self.millis()) * self.millis())
    }
}

/// Which counters to read.
#[derive(Debug, Clone)]
pub struct CounterQuery {
    /// First bucket (rounded down to the resolution).
    pub from: Timestamp,
    /// Buckets strictly before this instant.
    pub to: Timestamp,
    /// Per minute or per hour.
    pub resolution: Resolution,
    /// Only these metrics (all when empty), e.g. `events.webhook`, `deliveries.delivered`.
    pub metrics: Vec<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this source.
    pub source: Option<String>,
}

/// One counter bucket. Empty label strings mean "not applicable" (a rejection has no channel,
/// an event no destination).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterRow {
    /// The bucket's start.
    pub at: Timestamp,
    /// Tenant.
    pub tenant: String,
    /// Source.
    pub source: String,
    /// Normalized channel, or empty.
    pub channel: String,
    /// Destination, or empty.
    pub destination: String,
    /// Metric name.
    pub metric: String,
    /// The count in the bucket.
    pub count: i64,
}

/// How long counters are kept at each resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterRetention {
    /// Minute rows older than this are deleted (after being rolled up).
    pub minutes: Duration,
    /// Hourly rows older than this are deleted.
    pub hours: Duration,
}

impl Default for CounterRetention {
    /// Minute rows for 3 days; hourly rows for 26 weeks (a seasonal baseline reads 4–8 weeks).
    fn default() -> Self {
        CounterRetention {
            minutes: Duration::from_secs(3 * 86_400),
            hours: Duration::from_secs(26 * 7 * 86_400),
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// Hourly rows written or refreshed.
    pub hours_rolled: u64,
    /// Minute rows deleted.
    pub minutes_deleted: u64,
    /// Hourly rows deleted.
    pub hours_deleted: u64,
}

/// One batch of a retention pass ([`Store::expire_events`](crate::Store::expire_events)).
#[derive(Debug, Clone)]
pub struct ExpireRequest {
    /// Events received before this instant are past retention; so are rejections recorded
    /// before it.
    pub before: Timestamp,
    /// Look only at events with ids above this one (the previous batch's `last`).
    pub after: Option<EventId>,
    /// The most events looked at, and the most rejections deleted, in this batch.
    pub limit: usize,
}

/// What one batch of a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpireBatch {
    /// Events past retention looked at.
    pub scanned: u64,
    /// Rows deleted, by kind.
    pub deleted: intake_core::retention::DeletedRows,
    /// Events past retention kept because their work is not final.
    pub kept: u64,
    /// The last event looked at (the next batch's `after`); `None` when there was none left.
    pub last: Option<EventId>,
}

impl ExpireBatch {
    /// Whether a pass is over: no event left to look at, and fewer rejections deleted than
    /// the batch allowed.
    pub fn is_last(&self, limit: usize) -> bool {
        self.last.is_none() && (self.deleted.rejections as usize) < limit
    }
}

/// One alert transition, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertTransitionRecord {
    /// When it happened.
    pub at: Timestamp,
    /// The rule id.
    pub rule: String,
    /// Tenant label ("" when not applicable).
    pub tenant: String,
    /// Source label.
    pub source: String,
    /// Channel label.
    pub channel: String,
    /// Destination label.
    pub destination: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// The number behind it.
    pub value: f64,
    /// The human reason, with the numbers.
    pub reason: String,
}

/// A hint that new work was committed, for the dispatchers of one destination or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkSignal {
    /// New deliveries for this destination.
    Destination(String),
    /// Anything may have changed (notifications may have been missed): look at every queue.
    All,
}

/// A node of the cluster, as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Where it listens, for people.
    pub address: String,
    /// When it started.
    pub started_at: Timestamp,
    /// Its last heartbeat.
    pub last_heartbeat: Timestamp,
}

/// Who holds a singleton duty, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DutyLease {
    /// The duty's name (`lease-reaper`, …).
    pub duty: String,
    /// The node holding it.
    pub holder: String,
    /// When the holder took it.
    pub acquired_at: Timestamp,
    /// When the lease ends unless renewed.
    pub expires_at: Timestamp,
}

/// The nodes and duty leases of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// Every node that has sent a heartbeat and not left, by id.
    pub nodes: Vec<NodeInfo>,
    /// Every duty lease ever taken (expired ones included), by duty.
    pub duties: Vec<DutyLease>,
}

/// A notification for the outbox: one notice for one notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The `[[notifiers]]` id it goes to.
    pub notifier: String,
    /// The notice's deduplication key (for people and queries; not unique).
    pub key: String,
    /// The notice, as JSON (`intake_notify::Notice`).
    pub notice: String,
    /// When it was made; also its first due time.
    pub created_at: Timestamp,
    /// The incident it announces, if it does: such notifications are the incident's record
    /// of who was told what and are never pruned.
    pub incident: Option<String>,
    /// The tenant whose contact it goes to, for an incident notice to a tenant.
    pub tenant: Option<String>,
}

/// Where an outbox item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The notifier accepted it.
    Sent,
    /// Given up: the notifier refused it for good, or it failed too many times.
    Dead,
}

impl NotificationState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(NotificationState::Pending),
            "sent" => Some(NotificationState::Sent),
            "dead" => Some(NotificationState::Dead),
            _ => None,
        }
    }
}

/// One notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxItem {
    /// Its id (increasing in enqueue order).
    pub id: i64,
    /// The notifier it goes to.
    pub notifier: String,
    /// The notice's key.
    pub key: String,
    /// The notice, as JSON.
    pub notice: String,
    /// Pending, sent or dead.
    pub state: NotificationState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due next (pending), or was finished.
    pub due_at: Timestamp,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When it was sent or given up.
    pub finished_at: Option<Timestamp>,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// The incident it announces, if it does.
    pub incident: Option<String>,
    /// The tenant whose contact it goes to, for an incident notice to a tenant.
    pub tenant: Option<String>,
}

/// What one attempt to send an outbox item came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Accepted by the notifier.
    Sent,
    /// Failed; try again at `due_at`.
    Retry {
        /// When to try again.
        due_at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// Failed for good.
    Dead {
        /// What went wrong.
        error: String,
    },
}

/// Everything one evaluation of the notification pipeline writes, in one transaction: the
/// notifications to send, the pipeline's state documents (what was sent per group), and the
/// silences whose expiry is announced by these notifications. Committing them together is
/// what lets a restart neither re-page nor forget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationBatch {
    /// Notifications to enqueue.
    pub notifications: Vec<NewNotification>,
    /// State documents to write (as [`Store::put_state`](crate::Store::put_state)).
    pub state: Vec<(String, String)>,
    /// Silences whose expiry is announced by this batch.
    pub announced_expiries: Vec<String>,
    /// Incidents the pipeline declares or follows (alerts joining and resolving, tenant
    /// notices after a hold), each with its entries and notices. One whose version moved
    /// since the pipeline read it is left out, with its entries and notices (see
    /// [`IncidentWrite`]); the next evaluation decides again from what is stored.
    pub incidents: Vec<IncidentWrite>,
}

/// How a notifier's outbox looks: the numbers `notifier_failing` is decided from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifierHealth {
    /// The notifier.
    pub notifier: String,
    /// Notifications waiting (pending).
    pub undelivered: u64,
    /// When the oldest waiting one was enqueued.
    pub oldest_undelivered: Option<Timestamp>,
    /// The most attempts any waiting notification has made (all of them failed).
    pub failed_attempts: u32,
    /// The last error of a waiting or dead notification.
    pub last_error: Option<String>,
    /// When a notification was last sent.
    pub last_sent_at: Option<Timestamp>,
    /// When a notification was last given up.
    pub last_dead_at: Option<Timestamp>,
}

/// A silence: label matchers that mute notifications of the alerts they match, until
/// `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// `sil_…`
    pub id: String,
    /// Label → exact value (`rule`, `tenant`, `source`, `channel`, `destination`).
    pub matchers: std::collections::BTreeMap<String, String>,
    /// When it starts muting.
    pub starts_at: Timestamp,
    /// When it stops muting.
    pub ends_at: Timestamp,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether its expiry has been announced.
    pub expiry_announced: bool,
}

impl Silence {
    /// Whether it mutes at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// What [`Store::expire_silence`](crate::Store::expire_silence) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SilenceExpiry {
    /// No silence has this id.
    NotFound,
    /// It had already ended; nothing changed.
    AlreadyEnded(Silence),
    /// It ends now; its expiry announcement was enqueued.
    Expired(Silence),
}

/// An API token intake minted (not one from the configuration). Only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// `tok_…`: names the token in listings and revocation; not a secret.
    pub id: String,
    /// The lowercase hex SHA-256 of the token.
    pub hash: String,
    /// The tenant it is confined to; `None` for an operator token.
    pub tenant: Option<String>,
    /// What it is for (a name or comment; required).
    pub name: String,
    /// Who created it: `operator` or `tenant:<id>`.
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl ApiToken {
    /// Whether it authenticates requests at `now`: neither revoked nor expired.
    pub fn is_valid(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}
