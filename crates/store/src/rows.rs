//! Tables as stored, row for row: what `intake migrate-store` exports from SQLite and imports
//! into PostgreSQL (see the `transfer` module), and the row counts it compares.
//!
//! Rule: plain data; this module imports nothing from the crate, so both backends and the
//! transfer can use it without importing one another.

/// An event row with everything that hangs off it, as stored.
#[derive(Debug, Clone)]
pub struct EventRows {
    /// `id, tenant, source, origin, sor_event_id, dedupe_key, event_type, channel,
    /// raw_channel, object_type, object_id, occurred_at, received_at, headers, body,
    /// conversation_id`
    pub event: EventRow,
    /// Its deliveries.
    pub deliveries: Vec<DeliveryRow>,
    /// Their attempts.
    pub attempts: Vec<AttemptRow>,
}

/// The `events` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct EventRow {
    pub id: String,
    pub tenant: String,
    pub source: String,
    pub origin: String,
    pub sor_event_id: Option<String>,
    pub dedupe_key: String,
    pub event_type: String,
    pub channel: String,
    pub raw_channel: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub occurred_at: Option<i64>,
    pub received_at: i64,
    pub headers: String,
    pub body: Vec<u8>,
    pub conversation_id: Option<String>,
}

/// A `deliveries` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct DeliveryRow {
    pub id: String,
    pub event_id: String,
    pub destination: String,
    pub tenant: String,
    pub source: String,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub due_at: i64,
    pub lease_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub delivered_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub origin: Option<String>,
    pub replay_key: Option<String>,
    pub recovery: Option<String>,
    pub completion: Option<String>,
    pub completed_at: Option<i64>,
    pub completion_detail: Option<String>,
    /// How long the attempt that delivered took, when it has no attempt row (issue 16).
    pub delivered_ms: Option<i64>,
}

/// An `attempts` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: String,
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub outcome: String,
}

/// A `rejections` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct RejectionRow {
    pub id: i64,
    pub at: i64,
    pub tenant: String,
    pub source: String,
    pub outcome: String,
    pub reason: String,
    pub body: Option<Vec<u8>>,
}

/// A counter, summed over shards.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct CounterRow {
    pub minute: i64,
    pub tenant: String,
    pub source: String,
    pub channel: String,
    pub destination: String,
    pub metric: String,
    pub count: i64,
}

/// How many rows each table holds (counters: the sum of their counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TableCounts {
    pub events: i64,
    pub deliveries: i64,
    pub attempts: i64,
    pub rejections: i64,
    pub counter_rows: i64,
    pub counted: i64,
    pub recoveries: i64,
    pub drills: i64,
    pub incidents: i64,
    pub incident_entries: i64,
    pub incident_notices: i64,
}

impl TableCounts {
    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == TableCounts::default()
    }
}

impl std::fmt::Display for TableCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events, {} deliveries, {} attempts, {} rejections, {} counter rows (total {}), \
             {} recovery jobs, {} drills, {} incidents ({} timeline entries, {} notices)",
            self.events,
            self.deliveries,
            self.attempts,
            self.rejections,
            self.counter_rows,
            self.counted,
            self.recoveries,
            self.drills,
            self.incidents,
            self.incident_entries,
            self.incident_notices
        )
    }
}
