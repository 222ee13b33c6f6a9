//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::time::Duration;

use intake_core::delivery::NextStep;
use intake_core::event::{Channel, NormalizedEvent, Origin};
use intake_core::{DeliveryId, EventId, Timestamp};
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

/// A database file in its own temporary directory (removed on drop).
pub struct Db {
    _dir: TempDir,
    pub path: PathBuf,
}

impl Db {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("intake.db");
        Db { _dir: dir, path }
    }

    pub fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path, SqliteOptions::default()).expect("open store")
    }

    pub fn open_with(&self, options: SqliteOptions) -> SqliteStore {
        SqliteStore::open(&self.path, options).expect("open store")
    }

    /// A read-only connection of our own, to look at the tables directly.
    pub fn inspect(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open read-only connection")
    }
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
    }
}

/// The result of an attempt at `claim` under its own lease.
pub fn attempt(claim: &ClaimedDelivery, next: NextStep, at: Timestamp) -> FinishedAttempt {
    attempt_with_lease(claim, &claim.lease_id, next, at)
}

/// Every event (up to 1000), newest first.
pub async fn all_events(store: &SqliteStore) -> Vec<EventSummary> {
    store
        .list_events(EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .expect("list events")
}

/// One event, which must exist.
pub async fn event_detail(store: &SqliteStore, id: &EventId) -> EventDetail {
    store
        .get_event(id)
        .await
        .expect("get event")
        .expect("event exists")
}

/// One delivery of an event, found by id.
pub async fn delivery(store: &SqliteStore, event: &EventId, id: &DeliveryId) -> DeliverySummary {
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
pub async fn close(store: SqliteStore) {
    store.close().await.expect("close store");
    drop(store);
}
