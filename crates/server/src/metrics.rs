//! Prometheus metrics: the names users graph (part of the external contract) and the one
//! process-wide recorder that renders them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests to `/ingest`, by `outcome`, `tenant`, `source`.
pub const REQUESTS: &str = "intake_requests_total";
/// Accepted (non-duplicate) events, by `tenant`, `source`, `channel`, `origin`.
pub const EVENTS: &str = "intake_events_total";
/// Delivery attempts by `outcome` (`delivered`, `failed`, `dead`), `tenant`, `source`, `destination`.
pub const DELIVERIES: &str = "intake_deliveries_total";
/// Deliveries not yet final, by `tenant`, `source`, `destination`.
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
