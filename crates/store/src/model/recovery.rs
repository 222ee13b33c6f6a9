//! Recovery jobs (backfill, replay, requeue) as the store keeps them, and what their steps ask
//! the store to do: replay a batch of deliveries, requeue a page of events.
//!
//! The job's documents (`params`, `cursor`, `progress`, `report`) belong to the server, which
//! runs the jobs; the store keeps them as JSON text and never looks inside.

use intake_core::{DeliveryId, EventId, Timestamp};
use serde::{Deserialize, Serialize};

/// What a recovery job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryKind {
    /// Lists the SOR's objects through its API and ingests the events that never arrived.
    Backfill,
    /// Delivers accepted events again.
    Replay,
    /// Gives deliveries that are stuck or missing a fresh pending state.
    Requeue,
}

impl RecoveryKind {
    /// Every kind.
    pub const ALL: [RecoveryKind; 3] = [
        RecoveryKind::Backfill,
        RecoveryKind::Replay,
        RecoveryKind::Requeue,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryKind::Backfill => "backfill",
            RecoveryKind::Replay => "replay",
            RecoveryKind::Requeue => "requeue",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        RecoveryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RecoveryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a recovery job is in its life: `queued → running → succeeded | failed`, or
/// `cancelled` from either of the first two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryState {
    /// Created, not started yet.
    Queued,
    /// A runner is working on it.
    Running,
    /// Finished, everything done.
    Succeeded,
    /// Stopped by an error it could not get past.
    Failed,
    /// Stopped because someone asked.
    Cancelled,
}

impl RecoveryState {
    /// Every state, in lifecycle order.
    pub const ALL: [RecoveryState; 5] = [
        RecoveryState::Queued,
        RecoveryState::Running,
        RecoveryState::Succeeded,
        RecoveryState::Failed,
        RecoveryState::Cancelled,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::Queued => "queued",
            RecoveryState::Running => "running",
            RecoveryState::Succeeded => "succeeded",
            RecoveryState::Failed => "failed",
            RecoveryState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        RecoveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job has ended: the store changes a final job no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RecoveryState::Succeeded | RecoveryState::Failed | RecoveryState::Cancelled
        )
    }
}

impl std::fmt::Display for RecoveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recovery job as stored. `params`, `progress`, `report` and `cursor` are JSON documents
/// whose shape the server owns; the store keeps them as text and never looks inside.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecoveryJob {
    /// `rec_<ulid>`, made by the caller.
    pub id: String,
    /// Backfill, replay or requeue.
    pub kind: RecoveryKind,
    /// The tenant of its source.
    pub tenant: String,
    /// The source it works on.
    pub source: String,
    /// Whether it only reports what it would do.
    pub dry_run: bool,
    /// Where it is.
    pub state: RecoveryState,
    /// What was asked (window, filters, options).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Where to resume after a crash (`None` before the first step).
    #[schema(value_type = Option<Object>)]
    pub cursor: Option<serde_json::Value>,
    /// How far it is.
    #[schema(value_type = Object)]
    pub progress: serde_json::Value,
    /// What it found and did.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
    /// Someone asked it to stop; the runner stops at its next step.
    pub cancel_requested: bool,
    /// Who asked for it.
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a runner started it.
    pub started_at: Option<Timestamp>,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

/// Which recovery jobs to list.
#[derive(Debug, Clone, Default)]
pub struct RecoveryFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only this source's.
    pub source: Option<String>,
    /// Only jobs in one of these states; empty means every state.
    pub states: Vec<RecoveryState>,
    /// At most this many (at most 1000; 0 means 1000).
    pub limit: usize,
}

/// What a running job writes after each step (a page).
#[derive(Debug, Clone)]
pub struct RecoveryUpdate {
    /// The job.
    pub id: String,
    /// Its state after the step.
    pub state: RecoveryState,
    /// Where to resume (written as given).
    pub cursor: Option<serde_json::Value>,
    /// How far it is.
    pub progress: serde_json::Value,
    /// What it found and did so far.
    pub report: serde_json::Value,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When it started; `None` keeps the stored value.
    pub started_at: Option<Timestamp>,
    /// Now.
    pub updated_at: Timestamp,
    /// When it ended, if it did (written as given).
    pub finished_at: Option<Timestamp>,
}

/// A batch of a replay: new deliveries of accepted events, idempotent per `key`.
#[derive(Debug, Clone)]
pub struct ReplayBatch {
    /// The recovery job replaying (recorded on each delivery it creates).
    pub recovery: String,
    /// The replay key: an (event, destination) gets at most one delivery per key, so running
    /// the same replay twice delivers once.
    pub key: String,
    /// (event, destination) pairs to deliver again.
    pub items: Vec<(EventId, String)>,
    /// Now: the new deliveries are due at once.
    pub now: Timestamp,
}

/// What a replay batch did.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplayOutcome {
    /// Deliveries created.
    pub created: u64,
    /// Pairs that already had a delivery of this replay key (nothing written).
    pub already: u64,
}

/// One page of a requeue (see [`Store::requeue_page`](crate::Store::requeue_page)).
#[derive(Debug, Clone)]
pub struct RequeueRequest {
    /// The recovery job (named in re-route errors, recorded on created deliveries).
    pub recovery: String,
    /// The source whose events are looked at.
    pub source: String,
    /// Events received at or after.
    pub from: Timestamp,
    /// Events received before.
    pub to: Timestamp,
    /// Only events with ids above this one (the previous page's `last`).
    pub after: Option<EventId>,
    /// At most this many events (1 to 10,000).
    pub limit: usize,
    /// The destinations the source routes to now.
    pub routes: Vec<String>,
    /// In-flight deliveries whose lease ended before this instant are stale.
    pub stale_before: Timestamp,
    /// Also give retrying deliveries a fresh start.
    pub include_retrying: bool,
    /// Only say what would be done.
    pub dry_run: bool,
    /// Now: changed and created deliveries are due at once.
    pub now: Timestamp,
    /// How many changes to list in `items`.
    pub sample: usize,
}

/// What one page of a requeue did (or, in a dry run, would do).
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequeuePage {
    /// Events looked at.
    pub events: u64,
    /// In-flight deliveries with a stale lease made pending.
    pub stale_leases: u64,
    /// Retrying deliveries given a fresh start.
    pub retrying_reset: u64,
    /// Deliveries to destinations no longer routed, made dead.
    pub rerouted: u64,
    /// Deliveries created for routed destinations the event had none to.
    pub created: u64,
    /// The first changes (up to the request's `sample`).
    pub items: Vec<RequeueItem>,
    /// The last event looked at (the cursor of the next page); `None` when the page was empty.
    pub last: Option<EventId>,
}

/// One change of a requeue page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequeueItem {
    /// The event.
    pub event_id: EventId,
    /// The delivery changed or created (in a dry run, for `created`, the id it would have had).
    pub delivery_id: DeliveryId,
    /// Its destination.
    pub destination: String,
    /// `stale_lease`, `retrying_reset`, `rerouted` or `created`.
    pub action: String,
}
