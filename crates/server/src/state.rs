//! The shared handles: what the doors read on every request and what the duties are handed.
//!
//! **Rule of this room:** it imports nothing else from the crate. Everything here is a plain
//! value or handle; the behaviour that goes with a handle lives where it is used (the metric
//! handles are registered and counted by the `metrics` module, the demo inbox is filled by
//! the `demo_handler` door), so every other module may depend on this one and it on none.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use intake_connectors::Connector;
use intake_core::config::{Config, DestinationConfig, SourceConfig};
use intake_core::drill::Scenario;
use intake_core::log_limit::{SharedLogLimiter, Summary, LOG_SUMMARY_INTERVAL};
use intake_core::signature::SigningKey;
use intake_core::{SharedClock, Timestamp};
use intake_store::Store;
use metrics::{Counter, Histogram};
use serde::Serialize;
use tokio::sync::Notify;

mod queue_view;

pub(crate) use queue_view::QueueView;

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
    /// The log sites every attempt can reach.
    pub logs: DeliveryLogs,
}

/// The log lines a destination's attempts write, each limited so that a handler that is down
/// for a whole queue writes a line and a summary per interval, not a line per attempt.
pub(crate) struct DeliveryLogs {
    /// An attempt failed and will be retried.
    pub retrying: LimitedLog,
    /// An attempt failed for the last time.
    pub dead: LimitedLog,
    /// An attempt's result could not be recorded (the store is unavailable).
    pub not_recorded: LimitedLog,
    /// The dispatcher could not claim due deliveries (the store is unavailable).
    pub claim_failed: LimitedLog,
}

impl DeliveryLogs {
    pub fn new() -> Self {
        DeliveryLogs {
            retrying: LimitedLog::new(LogLevel::Info, "failed", "delivery attempts", "will retry"),
            dead: LimitedLog::new(
                LogLevel::Warn,
                "gave up",
                "deliveries",
                "no attempts left (dead letters)",
            ),
            not_recorded: LimitedLog::new(
                LogLevel::Error,
                "could not record",
                "attempts",
                "store unavailable; they are retried when their leases expire",
            ),
            claim_failed: LimitedLog::new(
                LogLevel::Warn,
                "failed",
                "claims of due deliveries",
                "store unavailable; retrying every second",
            ),
        }
    }

    pub fn all(&self) -> [&LimitedLog; 4] {
        [
            &self.retrying,
            &self.dead,
            &self.not_recorded,
            &self.claim_failed,
        ]
    }
}

/// The log lines of the doors (ingest, the metrics scrape) that a flood reaches once per
/// request.
pub(crate) struct DoorLogs {
    /// A commit failed: answered 503.
    pub unavailable: LimitedLog,
    /// A signature did not verify: answered 401.
    pub bad_signature: LimitedLog,
    /// A rejection could not be recorded in the store (it is still counted in the metrics).
    pub rejection_not_recorded: LimitedLog,
    /// A request was refused for load (503): its body would go over `server.body_budget`.
    pub shed: LimitedLog,
    /// A metrics scrape kept the last values of gauges it could not read from the store.
    pub stale_scrape: LimitedLog,
}

impl DoorLogs {
    pub fn new() -> Self {
        DoorLogs {
            unavailable: LimitedLog::new(
                LogLevel::Error,
                "refused",
                "requests",
                "store unavailable",
            ),
            bad_signature: LimitedLog::new(
                LogLevel::Warn,
                "rejected",
                "requests",
                "bad or missing signature",
            ),
            rejection_not_recorded: LimitedLog::new(
                LogLevel::Warn,
                "could not record",
                "rejected requests",
                "store unavailable",
            ),
            shed: LimitedLog::new(
                LogLevel::Warn,
                "refused",
                "requests",
                "bodies in flight over server.body_budget (503)",
            ),
            stale_scrape: LimitedLog::new(
                LogLevel::Warn,
                "answered",
                "metrics scrapes with gauges not refreshed",
                "store unavailable",
            ),
        }
    }

    pub fn all(&self) -> [&LimitedLog; 5] {
        [
            &self.unavailable,
            &self.bad_signature,
            &self.rejection_not_recorded,
            &self.shed,
            &self.stale_scrape,
        ]
    }
}

/// The log lines the duties' own store writes reach about once a second each while the store
/// cannot commit (a full disk): this node's heartbeat, every duty's lease renewal and the lease
/// reaper. One limiter for all of them.
pub(crate) struct DutyLogs {
    pub store_unavailable: LimitedLog,
}

impl DutyLogs {
    pub fn new() -> Self {
        DutyLogs {
            store_unavailable: LimitedLog::new(
                LogLevel::Warn,
                "failed",
                "heartbeats, duty lease renewals and lease reaper runs",
                "store unavailable; retrying every second",
            ),
        }
    }

    pub fn all(&self) -> [&LimitedLog; 1] {
        [&self.store_unavailable]
    }
}

/// The level a limited log site writes at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogLevel {
    Info,
    Warn,
    Error,
}

/// A log site that a flood reaches once per request or attempt. Its first occurrence is
/// written in full by the caller; the next ones are counted, and at most one summary per
/// [`LOG_SUMMARY_INTERVAL`] says how many there were ("refused 12,345 requests in the last 10
/// s: store unavailable"). The decision is `intake_core::log_limit`'s; this only writes it.
pub(crate) struct LimitedLog {
    limiter: SharedLogLimiter,
    level: LogLevel,
    verb: &'static str,
    things: &'static str,
    reason: &'static str,
}

impl LimitedLog {
    pub fn new(
        level: LogLevel,
        verb: &'static str,
        things: &'static str,
        reason: &'static str,
    ) -> Self {
        LimitedLog {
            limiter: SharedLogLimiter::new(LOG_SUMMARY_INTERVAL),
            level,
            verb,
            things,
            reason,
        }
    }

    /// One occurrence at `now`: true when the caller writes its full line; otherwise it is
    /// counted, and written into a summary here when one is due.
    pub fn hit(&self, now: Timestamp) -> bool {
        use intake_core::log_limit::LogVerdict;
        match self.limiter.hit(now) {
            LogVerdict::Log => true,
            LogVerdict::Quiet => false,
            LogVerdict::Summary(s) => {
                self.write(s);
                false
            }
        }
    }

    /// Writes the summary of a burst that ended (called periodically).
    pub fn flush(&self, now: Timestamp) {
        if let Some(s) = self.limiter.flush(now) {
            self.write(s);
        }
    }

    /// Writes the summary of whatever is still only counted (called once, at shutdown).
    pub fn finish(&self, now: Timestamp) {
        if let Some(s) = self.limiter.finish(now) {
            self.write(s);
        }
    }

    fn write(&self, s: Summary) {
        let text = s.describe(self.verb, self.things, self.reason);
        let count = s.count;
        match self.level {
            LogLevel::Info => tracing::info!(count, summary = true, "{text}"),
            LogLevel::Warn => tracing::warn!(count, summary = true, "{text}"),
            LogLevel::Error => tracing::error!(count, summary = true, "{text}"),
        }
    }
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
    /// The doors' limited log sites (ingest, the metrics scrape).
    pub logs: Arc<DoorLogs>,
    /// The bytes of request bodies that may be held at once (`server.body_budget`), one
    /// permit a byte.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Wakes the recovery duty when the API queued or cancelled a job.
    pub recoveries: Arc<Notify>,
    /// Wakes the outbox sender when the API enqueued notices (an incident's).
    pub notices: Arc<Notify>,
    /// The key that tells intake's own canaries from other requests (see
    /// `intake_core::canary`).
    pub canary_key: intake_core::canary::CanaryKey,
    /// The key that signs dashboard sessions and their CSRF tokens (see `web::session`),
    /// made once per cluster and kept in the store.
    pub web_key: [u8; 32],
    /// The fire-drill faults this node applies.
    pub faults: Arc<DrillFaults>,
    /// Wakes the drill duty when the API started or cancelled a drill.
    pub drills: Arc<Notify>,
    /// The queue's gauges as the doors read them: one read of the store at a time.
    pub queue: QueueView,
}

/// One fire drill's fault, as this node applies it: running in the store when last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActiveFault {
    /// The drill (`drl_…`).
    pub drill: String,
    /// What it does.
    pub scenario: Scenario,
    /// To which source, destination or notifier.
    pub target: String,
    /// When it stops applying, whatever the store says by then.
    pub expires_at: Timestamp,
}

/// The fire-drill faults this node applies: the running drills as last read from the store
/// (`duties::drill::faults` reads them every second, and at once when this node starts or
/// ends one). Every check also compares the fault's expiry with the instant, so a fault past
/// its expiry is never applied, even by a node that has not read the store since.
pub(crate) struct DrillFaults {
    /// Whether any fault is known: the hot paths (ingest, claims) check this first.
    any: AtomicBool,
    active: RwLock<Arc<Vec<ActiveFault>>>,
    /// Wakes the reader of the stored faults now.
    pub reread: Notify,
    /// Woken (every waiter) when the faults changed: the dispatchers look at their queues
    /// again, so a healed queue-stall releases its deliveries at once.
    pub changed: Notify,
    /// Held while the faults are read from the store and set, so that a read that began
    /// before a drill was written never replaces one that began after.
    pub loading: tokio::sync::Mutex<()>,
}

impl DrillFaults {
    pub fn new() -> Self {
        DrillFaults {
            any: AtomicBool::new(false),
            active: RwLock::new(Arc::new(Vec::new())),
            reread: Notify::new(),
            changed: Notify::new(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Replaces the known faults; whether they changed.
    pub fn set(&self, faults: Vec<ActiveFault>) -> bool {
        let mut active = match self.active.write() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if **active == faults {
            return false;
        }
        self.any.store(!faults.is_empty(), Ordering::Release);
        *active = Arc::new(faults);
        drop(active);
        self.changed.notify_waiters();
        true
    }

    fn current(&self) -> Option<Arc<Vec<ActiveFault>>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        Some(match self.active.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }

    /// The fault of `scenario` on `target` in force at `now`, if any.
    pub fn find(&self, scenario: Scenario, target: &str, now: Timestamp) -> Option<ActiveFault> {
        self.current()?
            .iter()
            .find(|f| f.scenario == scenario && f.target == target && now < f.expires_at)
            .cloned()
    }

    /// The sources a queue-stall holds at `now`, and when the first of those holds ends.
    pub fn held(&self, now: Timestamp) -> (Vec<String>, Option<Timestamp>) {
        let Some(all) = self.current() else {
            return (Vec::new(), None);
        };
        let held: Vec<&ActiveFault> = all
            .iter()
            .filter(|f| f.scenario == Scenario::QueueStall && now < f.expires_at)
            .collect();
        let until = held.iter().map(|f| f.expires_at).min();
        (held.into_iter().map(|f| f.target.clone()).collect(), until)
    }

    /// Every fault in force at `now` (for `/metrics`).
    pub fn in_force(&self, now: Timestamp) -> Vec<ActiveFault> {
        self.current()
            .map(|all| all.iter().filter(|f| now < f.expires_at).cloned().collect())
            .unwrap_or_default()
    }
}

/// One source's metric handles, registered once at start (by the `metrics` module): the ingest
/// hot path then counts without building label sets or looking series up.
pub(crate) struct SourceMetrics {
    /// Requests, indexed by `metrics::Outcome`.
    pub requests: [Counter; 8],
    /// Answer times, indexed by `metrics::Outcome`.
    pub ack: [Histogram; 8],
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

/// The demo handler's keys, the last deliveries it received, and the last notifications the
/// demo notifier received.
pub(crate) struct DemoInbox {
    /// The signing keys of the destinations that point at the demo handler, each with
    /// whether that destination is on completion receipts (the handler then confirms).
    pub keys: Vec<(SigningKey, bool)>,
    /// The last deliveries, oldest first.
    pub received: Mutex<VecDeque<Received>>,
    /// The last notifications, oldest first.
    pub notices: Mutex<VecDeque<DemoNotice>>,
}

/// One notification the demo notifier received (a webhook notifier's body, in short).
#[derive(Debug, Clone, Serialize)]
pub struct DemoNotice {
    /// When the notice was made.
    pub at: serde_json::Value,
    /// `alert`, `silence`, `watchdog`, `incident`, `drill`.
    pub kind: serde_json::Value,
    /// `firing`, `repeat`, `resolved`, …
    pub status: serde_json::Value,
    /// The one line a person reads.
    pub summary: serde_json::Value,
    /// The fire drill it belongs to, if any.
    pub drill: serde_json::Value,
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
