//! `[[drills]]`: fire drills the server runs by itself on a schedule (see `crate::drill`). A
//! scheduled drill is recorded like a manual one (`trigger: scheduled`), and one that fails
//! raises `drill_failed` until the next drill of its schedule passes.

use serde::{Deserialize, Serialize};

use super::units::Dur;

/// `[[drills]]`: one scheduled fire drill.
///
/// The scenario and schedule are kept as written and checked by validation, so that a wrong
/// value gets a message that lists the right ones rather than serde's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// `queue-stall`, `handler-down`, `flow-stop` or `notifier-down`.
    pub scenario: String,
    /// The source (`queue-stall`, `flow-stop`).
    #[serde(default)]
    pub source: Option<String>,
    /// The destination (`handler-down`).
    #[serde(default)]
    pub destination: Option<String>,
    /// The notifier (`notifier-down`).
    #[serde(default)]
    pub notifier: Option<String>,
    /// `daily`, `weekly`, or a duration of at least an hour (`"72h"`).
    pub schedule: String,
    /// How long the fault may last at most (default 5m); the drill heals earlier as soon as
    /// its alert was notified.
    #[serde(default, rename = "for")]
    pub for_: Option<Dur>,
}

impl DrillConfig {
    /// The target the entry names: its `source`, `destination` or `notifier`, whichever the
    /// scenario takes (`None` when that key is missing or the scenario unknown).
    pub fn target(&self) -> Option<&str> {
        let scenario = crate::drill::Scenario::parse(&self.scenario)?;
        match scenario.target_kind() {
            crate::drill::TargetKind::Source => self.source.as_deref(),
            crate::drill::TargetKind::Destination => self.destination.as_deref(),
            crate::drill::TargetKind::Notifier => self.notifier.as_deref(),
        }
    }

    /// The name its drills are recorded under (`queue-stall:maelys-kustomer`): one schedule
    /// per scenario and target, so the next drill of a schedule is found across restarts and
    /// edits of the file.
    pub fn key(&self) -> String {
        format!("{}:{}", self.scenario, self.target().unwrap_or(""))
    }
}
