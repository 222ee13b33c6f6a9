//! Fire drills as the store keeps them. A running drill's row *is* its stored fault: every
//! node applies the faults of the drills that are running and whose `expires_at` is still
//! ahead, so a drill applies on every node, survives restarts, and is never applied past its
//! expiry, even when nobody finished it.
//!
//! The `report` is a JSON document the server owns; the store keeps it as text.

use intake_core::drill::Scenario;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

/// Who started a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillTrigger {
    /// Someone, through the API or `intake drill`.
    Manual,
    /// A `[[drills]]` schedule.
    Scheduled,
}

impl DrillTrigger {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillTrigger::Manual => "manual",
            DrillTrigger::Scheduled => "scheduled",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [DrillTrigger::Manual, DrillTrigger::Scheduled]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Where a drill is: `running → passed | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    /// Its fault is applied (until `expires_at` at the latest) and it watches for its alert.
    Running,
    /// Its alert fired and was notified; healed.
    Passed,
    /// Its bound passed first; healed. The report says what was missing.
    Failed,
    /// Stopped by someone before a verdict; healed.
    Cancelled,
}

impl DrillState {
    /// Every state.
    pub const ALL: [DrillState; 4] = [
        DrillState::Running,
        DrillState::Passed,
        DrillState::Failed,
        DrillState::Cancelled,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillState::Running => "running",
            DrillState::Passed => "passed",
            DrillState::Failed => "failed",
            DrillState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        DrillState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the drill has ended (and healed): the store changes it no more.
    pub fn is_final(self) -> bool {
        self != DrillState::Running
    }
}

/// A fire drill as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Drill {
    /// `drl_<ulid>`, made by the caller.
    pub id: String,
    /// What fault it injects.
    pub scenario: Scenario,
    /// The source, destination or notifier it injects it into.
    pub target: String,
    /// The tenant of its source (source scenarios), so a tenant token may read it.
    pub tenant: Option<String>,
    /// Who started it.
    pub trigger: DrillTrigger,
    /// The `[[drills]]` schedule it belongs to (`queue-stall:maelys-kustomer`), if scheduled.
    pub schedule: Option<String>,
    /// Where it is.
    pub state: DrillState,
    /// Who asked for it (`operator`, `schedule`).
    pub created_by: String,
    /// When its fault started.
    pub started_at: Timestamp,
    /// When its fault ends at the latest, healed or not.
    pub expires_at: Timestamp,
    /// When its expected alert fired.
    pub detected_at: Option<Timestamp>,
    /// When that alert's notification was sent.
    pub notified_at: Option<Timestamp>,
    /// When its fault was removed.
    pub healed_at: Option<Timestamp>,
    /// What it observed and concluded.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

impl Drill {
    /// Whether its fault applies at `now`: running, and not past its expiry.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.state == DrillState::Running && now < self.expires_at
    }
}

/// Which drills to list.
#[derive(Debug, Clone, Default)]
pub struct DrillFilter {
    /// Only drills of this tenant.
    pub tenant: Option<String>,
    /// Only drills in one of these states; empty means every state.
    pub states: Vec<DrillState>,
    /// Only drills of this schedule.
    pub schedule: Option<String>,
    /// At most this many (at most 1000; 0 means 1000).
    pub limit: usize,
}

/// What the drill duty (or a cancellation) writes on a running drill.
#[derive(Debug, Clone)]
pub struct DrillUpdate {
    /// The drill.
    pub id: String,
    /// Its state afterwards.
    pub state: DrillState,
    /// When its alert fired (written as given).
    pub detected_at: Option<Timestamp>,
    /// When its notification was sent (written as given).
    pub notified_at: Option<Timestamp>,
    /// When it healed (written as given).
    pub healed_at: Option<Timestamp>,
    /// What it observed and concluded.
    pub report: serde_json::Value,
}
