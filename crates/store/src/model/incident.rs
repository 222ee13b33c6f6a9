//! Incidents as the store keeps them: the record itself, its timeline entries, and the writes
//! that change them together with the notices they send.
//!
//! `tracking` (what the notification pipeline follows for an incident) and each entry's
//! `detail` are JSON documents whose shape the server owns; the store keeps them as text.

use intake_core::incident::{IncidentSeverity, IncidentState};
use intake_core::Timestamp;
use serde::Serialize;

use super::NewNotification;

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// `inc_<ulid>`, made by the caller.
    pub id: String,
    /// What it is, in a few words.
    pub title: String,
    /// How bad.
    pub severity: IncidentSeverity,
    /// Where it is: investigating, identified, monitoring, resolved.
    pub status: IncidentState,
    /// The tenants affected, by id.
    pub tenants: Vec<String>,
    /// The sources affected (none: every source of those tenants).
    pub sources: Vec<String>,
    /// The channels affected (none: every channel).
    pub channels: Vec<String>,
    /// Who leads the response.
    pub commander: Option<String>,
    /// When the impact began (may be before the declaration).
    pub impact_start: Timestamp,
    /// When it was declared.
    pub declared_at: Timestamp,
    /// Who declared it: `operator`, `tenant:<id>`, or `rule:<rule>` when an alert did.
    pub declared_by: String,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// When tenants were promised the next update.
    pub next_update_at: Option<Timestamp>,
    /// What the notification pipeline follows for it (the server's document).
    pub tracking: serde_json::Value,
    /// For a drill incident (one a fire drill's alert declared), the drill's id (`drl_…`):
    /// it is shown as a drill and never merges with a real incident.
    pub drill: Option<String>,
    /// Grows by one with every write (see [`IncidentWrite`]).
    pub version: i64,
}

impl Incident {
    /// Whether it is still open.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// One entry of an incident's timeline, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentEntry {
    /// Increasing in write order.
    pub id: i64,
    /// The incident.
    pub incident: String,
    /// When it happened (an alert's entry has the alert's own time).
    pub at: Timestamp,
    /// What kind of entry: `declared`, `update`, `resolved`, `alert_firing`, … (the server's).
    pub kind: String,
    /// Who wrote it, for a person's entries.
    pub author: Option<String>,
    /// What happened, for people.
    pub text: String,
    /// The numbers behind it (the server's document).
    pub detail: serde_json::Value,
}

/// A timeline entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncidentEntry {
    /// When it happened.
    pub at: Timestamp,
    /// What kind of entry.
    pub kind: String,
    /// Who wrote it.
    pub author: Option<String>,
    /// What happened.
    pub text: String,
    /// The numbers behind it.
    pub detail: serde_json::Value,
}

/// One change of an incident, written in one transaction: the record as it is afterwards,
/// its new timeline entries and the notices it sends (outbox rows naming the incident).
///
/// With `expected_version: None` the incident is new and stored with `version` 1. With
/// `Some(v)`, the stored record must still be at version `v`: it is replaced (its version
/// becoming `v + 1`) and the entries and notices written; otherwise nothing of this write is,
/// because someone else changed the incident since it was read (the writer reads it again and
/// decides again). That is how a person's update and the monitor's pipeline never overwrite
/// each other, on one node or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentWrite {
    /// The record as it should be stored (its `version` is ignored).
    pub incident: Incident,
    /// The version it was read at; `None` for a new incident.
    pub expected_version: Option<i64>,
    /// New timeline entries.
    pub entries: Vec<NewIncidentEntry>,
    /// Notices to enqueue.
    pub notices: Vec<NewNotification>,
}

/// Which incidents a listing returns, newest declared first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only incidents affecting this tenant.
    pub tenant: Option<String>,
    /// Only open incidents, and (when set) those resolved at or after this instant.
    pub open_or_resolved_since: Option<Option<Timestamp>>,
    /// At most this many (0 means 1000; at most 1000).
    pub limit: usize,
}

impl IncidentFilter {
    /// Open incidents only.
    pub fn open() -> Self {
        IncidentFilter {
            open_or_resolved_since: Some(None),
            ..IncidentFilter::default()
        }
    }

    /// Whether `incident` passes the filter (the stores select roughly in SQL, then exactly
    /// here).
    pub fn admits(&self, incident: &Incident) -> bool {
        let tenant = self
            .tenant
            .as_ref()
            .is_none_or(|t| incident.tenants.contains(t));
        let time = match self.open_or_resolved_since {
            None => true,
            Some(None) => incident.is_open(),
            Some(Some(since)) => incident.resolved_at.is_none_or(|r| r >= since),
        };
        tenant && time
    }

    /// The listing's limit: at most 1000, and 0 means 1000.
    pub fn cap(&self) -> usize {
        if self.limit == 0 {
            1000
        } else {
            self.limit.min(1000)
        }
    }

    /// The SQL `LIKE` pattern that finds `tenant` in the stored JSON array of tenants (ids
    /// hold letters, digits, `-` and `_`; `_` is escaped with `\`).
    pub fn tenant_pattern(&self) -> Option<String> {
        self.tenant.as_ref().map(|t| {
            format!(
                "%\"{}\"%",
                t.replace('\\', "\\\\")
                    .replace('_', "\\_")
                    .replace('%', "\\%")
            )
        })
    }
}
