//! Prometheus metrics: the names users graph (part of the external contract), the one
//! process-wide recorder that renders them, the registration of the per-source and
//! per-destination handles kept in `crate::state`, and the `/metrics` door.
//!
//! A scrape refreshes the queue, alert, canary and incident gauges from the store first, so it
//! always sees them as they are, whichever node evaluates.
//!
//! Every family has HELP text ([`FAMILIES`], described on the recorder when it is built), so
//! that `promtool check metrics` accepts the page; a test runs promtool on a real scrape.
//! When `metrics.token` is set, a scrape needs it as a bearer token: the series name every
//! tenant and source.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use intake_core::event::Channel;
use intake_core::incident::IncidentSeverity;
use intake_core::signature::constant_time_eq;
use intake_store::IncidentFilter;
use metrics::{KeyName, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::duties::{book, canary, drill, notify, retention};
use crate::state::{AppState, DeliveryMetrics, SourceMetrics};

/// Requests to `/ingest`, by `outcome`, `tenant`, `source`.
pub const REQUESTS: &str = "intake_requests_total";
/// Accepted (non-duplicate) events, by `tenant`, `source`, `channel`, `origin`.
pub const EVENTS: &str = "intake_events_total";
/// Delivery attempts by `outcome` (`delivered`, `failed`, `dead`), `tenant`, `source`, `destination`.
pub const DELIVERIES: &str = "intake_deliveries_total";
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
/// Incidents not yet resolved, by `severity`.
pub const INCIDENTS_OPEN: &str = "intake_incidents_open";
/// Handlers' confirmations (completion receipts) by `outcome` (`completed`,
/// `completion_failed`), `tenant`, `source`, `destination`.
pub const COMPLETIONS: &str = "intake_completions_total";
/// Deliveries received (2xx) and not yet confirmed, by `tenant`, `source`, `destination`.
pub const COMPLETION_PENDING: &str = "intake_completion_pending";
/// Age of the oldest delivery received and not yet confirmed, by `tenant`, `source`,
/// `destination`.
pub const COMPLETION_OLDEST: &str = "intake_completion_oldest_seconds";

/// 1 while the store refuses new events for want of disk space, else 0.
pub const STORE_DISK_FULL: &str = "intake_store_disk_full";

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

/// Every metric family intake exports: its name, type and HELP text. A family missing here
/// would be rendered without HELP, which `promtool check metrics` refuses.
pub const FAMILIES: [(&str, FamilyKind, &str); 24] = [
    (
        REQUESTS,
        FamilyKind::Counter,
        "Requests to /ingest by outcome (accepted, duplicate, rejected_signature, rejected_invalid, too_large, unavailable, handshake, shed, unknown_source), tenant and source. shed with empty tenant and source: connections over the connection caps.",
    ),
    (
        EVENTS,
        FamilyKind::Counter,
        "Events accepted (not duplicates) by tenant, source, channel and origin.",
    ),
    (
        DELIVERIES,
        FamilyKind::Counter,
        "Delivery attempts by outcome (delivered, failed, dead), tenant, source and destination.",
    ),
    (
        ALERTS_FIRING,
        FamilyKind::Gauge,
        "Alerts firing now, by rule and severity, as stored in the alert book.",
    ),
    (
        QUEUE_PENDING,
        FamilyKind::Gauge,
        "Deliveries not yet final (pending, retrying or in flight) by tenant, source and destination.",
    ),
    (
        QUEUE_IN_FLIGHT,
        FamilyKind::Gauge,
        "Deliveries being attempted now by tenant, source and destination.",
    ),
    (
        QUEUE_OLDEST,
        FamilyKind::Gauge,
        "Age in seconds of the oldest delivery not yet final, by tenant, source and destination.",
    ),
    (
        QUEUE_DEAD,
        FamilyKind::Gauge,
        "Dead deliveries (retries exhausted) by tenant, source and destination.",
    ),
    (
        INGEST_ACK,
        FamilyKind::Histogram,
        "Seconds from the start of an ingest request to its answer, by outcome.",
    ),
    (
        DELIVERY_LATENCY,
        FamilyKind::Histogram,
        "Seconds from acceptance of an event to its delivery, by destination.",
    ),
    (
        ATTEMPT_DURATION,
        FamilyKind::Histogram,
        "Seconds one delivery attempt took, by destination.",
    ),
    (
        notify::NOTIFICATIONS,
        FamilyKind::Counter,
        "Notification and watchdog ping attempts by notifier and outcome.",
    ),
    (
        canary::LATENCY,
        FamilyKind::Histogram,
        "Seconds each stage of a successful canary took, by tenant, source and stage: ack (POST to its 200), queue (accepted to first delivery attempt), delivery (first attempt to the 2xx), total (sent to delivered). Recorded by the node running the canary duty.",
    ),
    (
        canary::LAST_SUCCESS,
        FamilyKind::Gauge,
        "Unix time of the last canary that reached the handler, by tenant and source (0: none yet). Every node exports it.",
    ),
    (
        drill::DRILLS_TOTAL,
        FamilyKind::Counter,
        "Fire drills that ended, by scenario and result (passed, failed: counted by the node running the drills duty; cancelled: by the node that took the request).",
    ),
    (
        drill::DRILL_ACTIVE,
        FamilyKind::Gauge,
        "Fire drills whose fault this node applies now, by scenario (0 or 1 per target). Every node exports it.",
    ),
    (
        INCIDENTS_OPEN,
        FamilyKind::Gauge,
        "Incidents not yet resolved, by severity (critical, major, minor), as stored. Every node exports it.",
    ),
    (
        COMPLETIONS,
        FamilyKind::Counter,
        "Handlers' confirmations of their work (completion receipts) by outcome (completed, completion_failed), tenant, source and destination; counted by the node that took the confirmation.",
    ),
    (
        COMPLETION_PENDING,
        FamilyKind::Gauge,
        "Deliveries to destinations on receipts answered 2xx and not yet confirmed, by tenant, source and destination.",
    ),
    (
        COMPLETION_OLDEST,
        FamilyKind::Gauge,
        "Age in seconds of the oldest delivery answered 2xx and not yet confirmed, by tenant, source and destination (0: none).",
    ),
    (
        retention::DELETED_TOTAL,
        FamilyKind::Counter,
        "Rows deleted by storage.retention since it first ran, by kind (events, deliveries, attempts, rejections), as stored. Every node exports it.",
    ),
    (
        retention::LAST_PASS,
        FamilyKind::Gauge,
        "Unix time at which the last retention pass ended (0: none yet). Every node exports it.",
    ),
    (
        STORE_DISK_FULL,
        FamilyKind::Gauge,
        "1 while the store refuses new events because its disk is full (SQLite: it still delivers what it accepted; PostgreSQL: a write was refused for want of space and no event could be stored since), else 0.",
    ),
    (
        retention::KEPT,
        FamilyKind::Gauge,
        "Events past storage.retention that the last pass kept because their work is not done (pending, retrying, in flight, awaiting a receipt, never queued). Every node exports it.",
    ),
];

/// Gives every family of [`FAMILIES`] its HELP text on `recorder`.
fn describe(recorder: &impl Recorder) {
    for (name, kind, help) in FAMILIES {
        let key = KeyName::from_const_str(name);
        let help = SharedString::const_str(help);
        match kind {
            FamilyKind::Counter => recorder.describe_counter(key, None, help),
            FamilyKind::Gauge => recorder.describe_gauge(key, None, help),
            FamilyKind::Histogram => recorder.describe_histogram(key, None, help),
        }
    }
}

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
        // Described on the recorder itself, not through the global macros, so that the HELP
        // text is there even when another recorder is the global one.
        describe(&recorder);
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
    /// Refused for load (503 with `Retry-After`): the bodies in flight would go over
    /// `server.body_budget`, or the connection was over `server.max_connections[_per_ip]`.
    Shed,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::RejectedSignature,
        Outcome::RejectedInvalid,
        Outcome::TooLarge,
        Outcome::Unavailable,
        Outcome::Handshake,
        Outcome::Shed,
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
            Outcome::Shed => "shed",
        }
    }
}

impl SourceMetrics {
    /// Registers the handles of one source.
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

/// The `intake_events_total` handles of the events a recovery job ingests for one source, by
/// channel (in `Channel::ALL` order), with `origin="backfill"`.
pub(crate) fn backfill_counters(tenant: &str, source: &str) -> [metrics::Counter; 6] {
    Channel::ALL.map(|c| {
        metrics::counter!(EVENTS, "tenant" => tenant.to_string(), "source" => source.to_string(),
            "channel" => c.as_str(), "origin" => "backfill")
    })
}

impl DeliveryMetrics {
    /// Registers the handles of one (source, destination) pair.
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

/// The `/metrics` route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(scrape))
}

/// Renders metrics after refreshing the queue gauges from the store, so that a scrape always
/// sees the queue as it is. Every configured (source, destination) pair has its series, zero
/// when idle: a silent series is zero, never missing. With `metrics.token` set, a scrape
/// without that bearer token gets 401 and reads nothing.
async fn scrape(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(expected) = &app.config.metrics.token {
        if !bearer_matches(&headers, expected) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"intake metrics\"")],
                "/metrics needs `Authorization: Bearer <metrics.token>`\n",
            )
                .into_response();
        }
    }
    let stale: Vec<Stale> = [
        refresh_queue_gauges(&app).await,
        refresh_alert_gauges(&app).await,
        refresh_canary_gauges(&app).await,
        refresh_incident_gauges(&app).await,
        refresh_completion_gauges(&app).await,
        refresh_retention(&app).await,
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    refresh_drill_gauges(&app);
    log_stale(&app, &stale);
    if let Some(full) = app.store.disk_full() {
        metrics::gauge!(STORE_DISK_FULL).set(if full { 1.0 } else { 0.0 });
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}

/// Gauges a scrape could not refresh from the store: they keep their last values.
struct Stale {
    /// Which gauges (`queue`, `alert`, …).
    gauges: &'static str,
    /// What the store said.
    error: String,
}

impl Stale {
    fn new(gauges: &'static str, error: impl std::fmt::Display) -> Self {
        Stale {
            gauges,
            error: error.to_string(),
        }
    }
}

/// One line for a scrape that kept stale gauges, naming them all: while the store is down,
/// every scrape does, so the line is limited (a line, then a summary per interval).
fn log_stale(app: &AppState, stale: &[Stale]) {
    let Some(first) = stale.first() else { return };
    if app.logs.stale_scrape.hit(app.clock.now()) {
        let gauges: Vec<&str> = stale.iter().map(|s| s.gauges).collect();
        tracing::warn!(
            error = %first.error,
            gauges = %gauges.join(", "),
            "gauges not refreshed; the scrape shows their last values"
        );
    }
}

/// Whether the request carries `Authorization: Bearer <expected>` (compared in constant time).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|token| constant_time_eq(token.trim().as_bytes(), expected.as_bytes()))
}

async fn refresh_queue_gauges(app: &AppState) -> Result<(), Stale> {
    let reading = app.queue.read().await.map_err(|e| Stale::new("queue", e))?;
    let now = app.clock.now();
    let by_pair: HashMap<(&str, &str), &intake_store::QueueStats> = reading
        .stats
        .iter()
        .map(|q| ((q.source.as_str(), q.destination.as_str()), q))
        .collect();
    for s in &app.config.sources {
        for d in &s.destinations {
            let labels = [
                ("tenant", s.tenant.clone()),
                ("source", s.id.clone()),
                ("destination", d.clone()),
            ];
            let row = by_pair.get(&(s.id.as_str(), d.as_str()));
            let (pending, in_flight, dead, oldest) = match row {
                Some(q) => (
                    q.pending,
                    q.in_flight,
                    q.dead,
                    q.oldest_pending_at
                        .map_or(0.0, |t| now.since(t).as_secs_f64()),
                ),
                None => (0, 0, 0, 0.0),
            };
            metrics::gauge!(QUEUE_PENDING, &labels).set(pending as f64);
            metrics::gauge!(QUEUE_IN_FLIGHT, &labels).set(in_flight as f64);
            metrics::gauge!(QUEUE_DEAD, &labels).set(dead as f64);
            metrics::gauge!(QUEUE_OLDEST, &labels).set(oldest);
        }
    }
    Ok(())
}

/// The receipts gauges: per (source, destination on receipts), what awaits confirmation.
async fn refresh_completion_gauges(app: &AppState) -> Result<(), Stale> {
    let now = app.clock.now();
    for d in app.config.destinations.iter().filter(|d| d.uses_receipts()) {
        let backlog = app
            .store
            .completion_backlog(&d.id, now)
            .await
            .map_err(|e| Stale::new("completion", e))?;
        for s in app
            .config
            .sources
            .iter()
            .filter(|s| s.destinations.contains(&d.id))
        {
            let labels = [
                ("tenant", s.tenant.clone()),
                ("source", s.id.clone()),
                ("destination", d.id.clone()),
            ];
            let row = backlog.iter().find(|b| b.source == s.id);
            let pending = row.map_or(0, |b| b.awaiting);
            let oldest = row
                .and_then(|b| b.oldest_received_at)
                .map_or(0.0, |t| now.since(t).as_secs_f64());
            metrics::gauge!(COMPLETION_PENDING, &labels).set(pending as f64);
            metrics::gauge!(COMPLETION_OLDEST, &labels).set(oldest);
        }
    }
    Ok(())
}

async fn refresh_alert_gauges(app: &AppState) -> Result<(), Stale> {
    let book = book::alert_book(&*app.store)
        .await
        .map_err(|e| Stale::new("alert", e))?;
    // Every built-in rule and severity has a series, zero when nothing fires.
    let mut firing: BTreeMap<(&str, &str), f64> = Default::default();
    for rule in intake_core::config::RULE_IDS {
        for severity in ["critical", "warning", "info"] {
            firing.insert((rule, severity), 0.0);
        }
    }
    for a in book
        .iter()
        .filter(|a| a.state == intake_monitor::AlertState::Firing)
    {
        let severity = a.severity.as_str();
        if let Some(rule) = intake_core::config::RULE_IDS
            .iter()
            .find(|r| **r == a.key.rule)
        {
            *firing.entry((rule, severity)).or_default() += 1.0;
        }
    }
    // The notification pipeline raises `notifier_failing` itself, outside the book.
    if let Ok(state) = notify::load_state(&*app.store).await {
        for alert in state.notifier_alerts.values() {
            let severity = alert.severity.as_str();
            *firing.entry(("notifier_failing", severity)).or_default() += 1.0;
        }
    }
    for ((rule, severity), n) in firing {
        metrics::gauge!(ALERTS_FIRING, "rule" => rule, "severity" => severity).set(n);
    }
    Ok(())
}

/// Every configured source's last canary success, from the stored canary book, so that every
/// node exports it whichever node sends the canaries.
async fn refresh_canary_gauges(app: &AppState) -> Result<(), Stale> {
    let book = canary::book::load(&*app.store)
        .await
        .map_err(|e| Stale::new("canary", e))?;
    for s in &app.config.sources {
        let last = book
            .get(&s.id)
            .and_then(|c| c.last_success_at)
            .map_or(0.0, |t| t.as_millis() as f64 / 1000.0);
        metrics::gauge!(canary::LAST_SUCCESS, "tenant" => s.tenant.clone(), "source" => s.id.clone())
            .set(last);
    }
    Ok(())
}

/// The fire drills this node applies now, by scenario; and every series of the drills'
/// results, zero until a drill ends (a silent series is zero, never missing).
fn refresh_drill_gauges(app: &AppState) {
    let active = app.faults.in_force(app.clock.now());
    for scenario in intake_core::drill::Scenario::ALL {
        let n = active.iter().filter(|f| f.scenario == scenario).count();
        metrics::gauge!(drill::DRILL_ACTIVE, "scenario" => scenario.as_str()).set(n as f64);
        for result in ["passed", "failed", "cancelled"] {
            metrics::counter!(drill::DRILLS_TOTAL, "scenario" => scenario.as_str(), "result" => result)
                .increment(0);
        }
    }
}

/// What retention did, from its stored mark (zero before its first pass), so every node
/// exports the same totals whichever node runs the duty.
async fn refresh_retention(app: &AppState) -> Result<(), Stale> {
    let mark = retention::mark(&*app.store)
        .await
        .map_err(|e| Stale::new("retention", e))?
        .unwrap_or_default();
    for (kind, n) in mark.deleted.by_kind() {
        metrics::counter!(retention::DELETED_TOTAL, "kind" => kind).absolute(n);
    }
    let last = mark
        .last_pass_at
        .map_or(0.0, |t| t.as_millis() as f64 / 1000.0);
    metrics::gauge!(retention::LAST_PASS).set(last);
    metrics::gauge!(retention::KEPT).set(mark.kept as f64);
    Ok(())
}

/// The open incidents by severity, from the store (zero for a severity without any).
async fn refresh_incident_gauges(app: &AppState) -> Result<(), Stale> {
    let open = app
        .store
        .list_incidents(IncidentFilter::open())
        .await
        .map_err(|e| Stale::new("incident", e))?;
    for severity in IncidentSeverity::ALL {
        let n = open.iter().filter(|i| i.severity == severity).count();
        metrics::gauge!(INCIDENTS_OPEN, "severity" => severity.as_str()).set(n as f64);
    }
    Ok(())
}
