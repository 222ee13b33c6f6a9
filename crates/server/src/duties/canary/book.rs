//! What the canary duty keeps in the store for everyone else: per source, the timings in
//! force, the last canary sent and where it stands, and the last success with its stage
//! latencies — one state document, [`CANARIES_STATE`].
//!
//! The canary duty writes it; the monitor duty reads it to decide `canary_failed`, and the
//! admin API (`GET /api/v1/canaries`) and `/metrics` read it, so every node answers the same
//! whichever node sends the canaries.

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::{EventId, Timestamp};
use intake_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The state document holding every source's canary status, as JSON.
pub const CANARIES_STATE: &str = "canaries";

/// Where a canary stands, from its send to its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Being sent to the front door, no answer yet.
    Sending,
    /// The front door did not answer 200 (`status`), or did not answer at all.
    Refused,
    /// The front door answered 200; the event has not been read back yet.
    Accepted,
    /// Accepted and stored, but no delivery exists for it: nothing was queued.
    NotQueued,
    /// Queued and not delivered: no attempt has failed yet (never attempted, or in flight).
    Pending,
    /// An attempt to deliver it failed (`destination`, `status`, `detail`); it is retried
    /// on the destination's schedule, or dead.
    Failing,
    /// Delivered to every destination of its source (2xx).
    Delivered,
}

impl Stage {
    /// The stage's name as the API and the alerts write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Sending => "sending",
            Stage::Refused => "refused",
            Stage::Accepted => "accepted",
            Stage::NotQueued => "not_queued",
            Stage::Pending => "pending",
            Stage::Failing => "failing",
            Stage::Delivered => "delivered",
        }
    }
}

/// One canary: what was sent and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CanaryRun {
    /// The canary's own id (in its body marker, and its object's id).
    pub id: String,
    /// When it was sent.
    pub sent_at: Timestamp,
    /// The event it became, once the front door accepted it.
    pub event: Option<EventId>,
    /// Where it stands.
    pub stage: Stage,
    /// `refused`: the front door's status (none: no answer). `failing`: the destination's
    /// last status (none: no answer, e.g. a timeout or a refused connection).
    pub status: Option<u16>,
    /// `pending`, `failing`: the first destination it has not reached.
    pub destination: Option<String>,
    /// `pending`: whether an attempt is in flight. (Absent otherwise.)
    pub in_flight: Option<bool>,
    /// `failing`: attempts made to that destination.
    pub attempts: Option<u32>,
    /// The answer or error behind the stage, for people (a problem's detail, a connection
    /// error, the destination's last error).
    pub detail: Option<String>,
    /// When it was delivered (stage `delivered`).
    pub delivered_at: Option<Timestamp>,
}

impl CanaryRun {
    /// A canary just sent.
    pub fn sending(id: String, sent_at: Timestamp) -> Self {
        CanaryRun {
            id,
            sent_at,
            event: None,
            stage: Stage::Sending,
            status: None,
            destination: None,
            in_flight: None,
            attempts: None,
            detail: None,
            delivered_at: None,
        }
    }
}

/// How long each stage of a successful canary took, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Latency {
    /// From the start of the POST to its 200 (wall-clock time).
    pub ack_ms: u64,
    /// From acceptance to the first delivery attempt (the slowest destination's).
    pub queue_ms: u64,
    /// From the first attempt to the 2xx (retries included; the slowest destination's).
    pub delivery_ms: u64,
    /// From the send to the last delivery.
    pub total_ms: u64,
}

/// One source's canaries, as the canary duty last recorded them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceCanary {
    /// The tenant.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// Its canary interval in force, in seconds.
    pub interval_seconds: u64,
    /// Its deadline in force, in seconds.
    pub deadline_seconds: u64,
    /// Since when the node running the canary duty has been sending this source's canaries:
    /// the deadline counts from here when there was no success since.
    pub watching_since: Timestamp,
    /// The last successful canary's delivery time.
    pub last_success_at: Option<Timestamp>,
    /// The stage latencies of the last successful canary.
    pub last_success_latency: Option<Latency>,
    /// The last canary sent, and where it stands.
    pub last: Option<CanaryRun>,
    /// The canary before it, kept while the last one is still being sent: where a source's
    /// canaries stopped is said by the last one that got an answer.
    #[serde(default)]
    pub previous: Option<CanaryRun>,
}

impl SourceCanary {
    /// The deadline in force.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_seconds)
    }

    /// Where this source's canaries stopped: the last canary, unless it is still being sent
    /// (then the one before it, if any).
    pub fn stopped_at(&self) -> Option<&CanaryRun> {
        match (&self.last, &self.previous) {
            (Some(last), Some(previous)) if last.stage == Stage::Sending => Some(previous),
            (last, _) => last.as_ref(),
        }
    }

    /// The instant the deadline counts from: the last success, or when watching started if
    /// that is later (a restart or a new duty holder gives the path a full deadline).
    pub fn reference(&self) -> Timestamp {
        match self.last_success_at {
            Some(s) if s > self.watching_since => s,
            _ => self.watching_since,
        }
    }
}

/// Every source's canaries, by source id.
pub type CanaryBook = BTreeMap<String, SourceCanary>;

/// The canary book as stored by the canary duty (empty before its first write).
pub(crate) async fn load(store: &dyn Store) -> Result<CanaryBook, StoreError> {
    match store.get_state(CANARIES_STATE).await? {
        None => Ok(CanaryBook::new()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("the stored canary book is unreadable: {e}"))),
    }
}

/// Stores the canary book.
pub(crate) async fn save(store: &dyn Store, book: &CanaryBook) -> Result<(), StoreError> {
    let json = serde_json::to_string(book)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the canary book: {e}")))?;
    store.put_state(CANARIES_STATE, json).await
}
