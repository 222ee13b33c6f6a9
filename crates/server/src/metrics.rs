//! Prometheus metrics: the names users graph (part of the external contract) and the one
//! process-wide recorder that renders them.

use std::sync::OnceLock;

use intake_core::event::Channel;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests to `/ingest`, by `outcome`, `tenant`, `source`.
pub const REQUESTS: &str = "intake_requests_total";
/// Accepted (non-duplicate) events, by `tenant`, `source`, `channel`, `origin`.
pub const EVENTS: &str = "intake_events_total";
/// Delivery attempts by `outcome` (`delivered`, `failed`, `dead`), `tenant`, `source`, `destination`.
pub const DELIVERIES: &str = "intake_deliveries_total";
/// Deliveries not yet final, by `tenant`, `source`, `destination`.
/// Alerts firing now, by rule and severity (every node exports the stored alert book).
pub const ALERTS_FIRING: &str = "intake_alerts_firing";
/// Deliveries not yet final.
pub const QUEUE_PENDING: &str = "intake_queue_pending";
/// Of those, in flight now.
pub const QUEUE_IN_FLIGHT: &str = "intake_queue_in_flight";
/// Age of the oldest non-final delivery, by `tenant`, `source`, `destination`.
pub const QUEUE_OLDEST: &str = "intake_queue_oldest_pending_seconds";
/// Dead deliveries, by `tenant`, `source`, `destination`.
pub const QUEUE_DEAD: &str = "intake_queue_dead";
/// Time from request start to the ingest answer, by `outcome`.
pub const INGEST_ACK: &str = "intake_ingest_ack_seconds";
/// Time from acceptance to delivery, by `destination`.
pub const DELIVERY_LATENCY: &str = "intake_delivery_latency_seconds";
/// Duration of one attempt, by `destination`.
pub const ATTEMPT_DURATION: &str = "intake_delivery_attempt_seconds";

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use. Several servers in one process (tests)
/// share it, which is why tests assert on metrics with "at least".
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness, an embedding program);
        // ours still renders what it records when it is not the global one.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How an ingest request ended: the `outcome` label of [`REQUESTS`] and [`INGEST_ACK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (new event).
    Accepted = 0,
    /// Already stored.
    Duplicate,
    /// Bad or missing signature.
    RejectedSignature,
    /// Unparseable body.
    RejectedInvalid,
    /// Body over the limit.
    TooLarge,
    /// The store could not commit.
    Unavailable,
    /// A setup handshake (Front's challenge), answered without storing anything.
    Handshake,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::RejectedSignature,
        Outcome::RejectedInvalid,
        Outcome::TooLarge,
        Outcome::Unavailable,
        Outcome::Handshake,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::RejectedSignature => "rejected_signature",
            Outcome::Handshake => "handshake",
            Outcome::RejectedInvalid => "rejected_invalid",
            Outcome::TooLarge => "too_large",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// One source's metric handles, registered once at start: the ingest hot path then counts
/// without building label sets or looking series up.
pub(crate) struct SourceMetrics {
    requests: [Counter; 7],
    ack: [Histogram; 7],
    events: [Counter; 6],
}

impl SourceMetrics {
    pub(crate) fn new(tenant: &str, source: &str) -> Self {
        let requests = Outcome::ALL.map(|o| {
            metrics::counter!(REQUESTS, "outcome" => o.as_str(), "tenant" => tenant.to_string(), "source" => source.to_string())
        });
        let ack = Outcome::ALL.map(|o| metrics::histogram!(INGEST_ACK, "outcome" => o.as_str()));
        let events = Channel::ALL.map(|c| {
            metrics::counter!(EVENTS, "tenant" => tenant.to_string(), "source" => source.to_string(),
                "channel" => c.as_str(), "origin" => "webhook")
        });
        SourceMetrics {
            requests,
            ack,
            events,
        }
    }

    /// Counts a request and the time it took to answer.
    pub(crate) fn request(&self, outcome: Outcome, elapsed: std::time::Duration) {
        self.requests[outcome as usize].increment(1);
        self.ack[outcome as usize].record(elapsed.as_secs_f64());
    }

    /// Counts an accepted event.
    pub(crate) fn event(&self, channel: Channel) {
        let i = Channel::ALL
            .iter()
            .position(|c| *c == channel)
            .unwrap_or(Channel::ALL.len() - 1);
        self.events[i].increment(1);
    }
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

impl DeliveryMetrics {
    pub(crate) fn new(tenant: &str, source: &str, destination: &str) -> Self {
        let c = |outcome: &'static str| {
            metrics::counter!(DELIVERIES, "outcome" => outcome, "tenant" => tenant.to_string(),
                "source" => source.to_string(), "destination" => destination.to_string())
        };
        DeliveryMetrics {
            delivered: c("delivered"),
            failed: c("failed"),
            dead: c("dead"),
        }
    }
}
