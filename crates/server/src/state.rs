//! The shared handles: what the doors read on every request and what the duties are handed.
//!
//! **Rule of this room:** it imports nothing else from the crate. Everything here is a plain
//! value or handle; the behaviour that goes with a handle lives where it is used (the metric
//! handles are registered and counted by the `metrics` module, the demo inbox is filled by
//! the `demo_handler` door), so every other module may depend on this one and it on none.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use intake_connectors::Connector;
use intake_core::config::{Config, DestinationConfig, SourceConfig};
use intake_core::signature::SigningKey;
use intake_core::SharedClock;
use intake_store::Store;
use metrics::{Counter, Histogram};
use serde::Serialize;
use tokio::sync::Notify;

/// A configured source, ready to verify and parse.
pub(crate) struct SourceRuntime {
    pub config: SourceConfig,
    pub connector: Box<dyn Connector>,
    /// The destinations, with the wakers of their dispatchers.
    pub wakers: Vec<Arc<Notify>>,
    pub metrics: SourceMetrics,
}

/// A configured destination, ready to sign.
pub(crate) struct DestinationRuntime {
    pub config: DestinationConfig,
    pub key: SigningKey,
    pub wake: Arc<Notify>,
    pub running: AtomicBool,
    /// Delivery counters by source.
    pub metrics: HashMap<String, DeliveryMetrics>,
    pub latency: Histogram,
    pub attempt_duration: Histogram,
}

/// What every request handler shares (duties get only the handles they use).
pub(crate) struct AppState {
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub store: Arc<dyn Store>,
    pub sources: HashMap<String, SourceRuntime>,
    pub destinations: HashMap<String, Arc<DestinationRuntime>>,
    pub demo: DemoInbox,
    /// Bounds the rejections being recorded at once (see `ingest::record`).
    pub rejection_slots: Arc<tokio::sync::Semaphore>,
    /// When this node started (for its heartbeat).
    pub started_at: intake_core::Timestamp,
}

/// One source's metric handles, registered once at start (by the `metrics` module): the ingest
/// hot path then counts without building label sets or looking series up.
pub(crate) struct SourceMetrics {
    /// Requests, indexed by `metrics::Outcome`.
    pub requests: [Counter; 7],
    /// Answer times, indexed by `metrics::Outcome`.
    pub ack: [Histogram; 7],
    /// Accepted events, indexed by `Channel::ALL`.
    pub events: [Counter; 6],
}

/// The delivery metric handles of one (source, destination) pair.
pub(crate) struct DeliveryMetrics {
    /// Attempts that delivered.
    pub delivered: Counter,
    /// Attempts that failed and will be retried.
    pub failed: Counter,
    /// Attempts that failed for the last time.
    pub dead: Counter,
}

/// The demo handler's keys and the last deliveries it received.
pub(crate) struct DemoInbox {
    /// The signing keys of the destinations that point at the demo handler.
    pub keys: Vec<SigningKey>,
    /// The last deliveries, oldest first.
    pub received: Mutex<VecDeque<Received>>,
}

/// One delivery the demo handler received.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// `webhook-id`
    pub id: String,
    /// `intake-event-type`
    pub event_type: String,
    /// `intake-channel`
    pub channel: String,
    /// `intake-attempt`
    pub attempt: String,
    /// Whether the signature verified.
    pub signature_valid: bool,
}
