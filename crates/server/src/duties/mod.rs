//! The duties: work that runs behind the doors, on its own schedule. This module holds the
//! duty runner and the singleton leases; each duty has its own file.
//!
//! **Rule of this room:** a duty takes the handles it uses (store, clock, config, notifiers,
//! metric handles from `crate::state`), never the server's whole state, and never imports
//! the doors (`api`, `ingest`, `health`, `metrics`): doors may read what duties expose, not
//! the reverse. Logic a door and a duty both need lives here, outside HTTP, and returns
//! [`StoreError`](intake_store::StoreError) (see [`book`]).
//!
//! * [`delivery`]: one dispatcher per destination, on every node.
//! * [`monitor`]: rule evaluation, then the notification pipeline ([`notify`]: the pure
//!   decision in `notify::decide`, the outbox IO in `notify::send`).
//! * [`incidents`]: incidents — what the admin API's declarations, updates and resolutions
//!   write, what the notification pipeline declares and follows, their timelines, views and
//!   postmortem drafts (no task of its own: the door and the monitor call it).
//! * [`compaction`]: counter rollup and the counters' retention.
//! * [`retention`]: `storage.retention` — old events whose work is done, with their
//!   deliveries and attempts, and old rejections, deleted in small batches; the mark that
//!   lets readers say what expired.
//! * [`recovery`]: backfill, replay and requeue jobs.
//! * [`reconcile`]: the periodic comparison of each source's system of record with what was
//!   received (the open gaps behind `source_gap`).
//! * [`canary`]: signed synthetic webhooks through the front door, followed to the handler
//!   (the pure decisions in `canary::decide`, the book every node reads in `canary::book`).
//! * [`drill`]: fire drills — stored faults every node applies until they expire
//!   (`drill::faults`, a task of every node), and the `drills` duty that watches them for
//!   their alert and notification, heals them, and starts the `[[drills]]` schedules.
//! * [`book`]: the alert book and flow expectations the monitor stores for everyone to read.
//! * [`audit`]: the conservation audit of a source's window, read and judged for the API door
//!   (no task of its own).
//! * `summarise_logs` (here): writes the summaries of the limited log lines whose burst ended.
//!
//! **A node among others.** Here: heartbeats, wake-ups from other nodes, and singleton duties.
//! Several nodes may share one PostgreSQL database. Each records a heartbeat every
//! `cluster.heartbeat`. Work some node must do, but only one at a time (a *singleton duty*),
//! runs under a lease in the database: a `DutyRunner` takes the lease, starts the duty, renews
//! the lease every third of `cluster.duty_lease`, and stops the duty as soon as it cannot be
//! sure it still holds it (the lease moved, or could not be renewed before it ended). When the
//! holder dies, its lease ends within `cluster.duty_lease` and another node's runner takes it.
//! With SQLite there is one node, which takes every lease at once.
//!
//! The singleton duties: the **recovery** jobs, **reconciliation**, the **lease reaper**
//! (deliveries in flight under the lease of a node that has stopped sending heartbeats are
//! made due at once, rather than when their leases expire), the **monitor** (with the
//! notifications), **counter compaction**, **retention**, the **canaries** and the
//! **drills**. The duties to come join them here.

pub mod audit;
pub mod book;
pub mod canary;
pub mod compaction;
pub mod delivery;
pub mod drill;
pub mod incidents;
pub mod monitor;
pub mod notify;
pub mod reconcile;
pub mod recovery;
pub mod retention;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use intake_core::config::Config;
use intake_core::log_limit::LOG_SUMMARY_INTERVAL;
use intake_core::{SharedClock, Timestamp};
use intake_store::{NodeInfo, Store, WorkSignal};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::{DestinationRuntime, DoorLogs, DrillFaults, DutyLogs, QueueView};

/// The handles the node's duties are started with; each duty takes from it what it uses.
#[derive(Clone)]
pub(crate) struct Handles {
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub store: Arc<dyn Store>,
    /// The queue's gauges, read once at a time for the monitor and the doors alike.
    pub queue: QueueView,
    /// The wake-ups of this node's delivery dispatchers, by destination id.
    pub wakers: Arc<HashMap<String, Arc<Notify>>>,
    /// Woken when this node's API queued or cancelled a recovery job.
    pub recoveries: Arc<Notify>,
    /// Wakes the outbox sender (on this node) when the API enqueued notices: an incident's.
    pub notices: Arc<Notify>,
    /// `intake_events_total{origin="backfill"}` by source, by channel (`Channel::ALL` order).
    pub backfilled: Arc<HashMap<String, [metrics::Counter; 6]>>,
    /// The key that marks canaries as intake's own (see `intake_core::canary`).
    pub canary_key: intake_core::canary::CanaryKey,
    /// Where canaries enter: `server.public_url`, else this node's listening address (no
    /// trailing `/`).
    pub front_door: String,
    /// The fire-drill faults this node applies.
    pub faults: Arc<DrillFaults>,
    /// Woken when this node's API started or cancelled a drill.
    pub drills: Arc<Notify>,
    /// The limited log lines of the heartbeat, the lease renewals and the reaper.
    pub logs: Arc<DutyLogs>,
}

/// A duty's body: runs until its token is cancelled.
type DutyFn = fn(Handles, CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The singleton duties, by name.
const DUTIES: &[(&str, DutyFn)] = &[
    (LEASE_REAPER, |h, stop| Box::pin(reap_leases(h, stop))),
    (monitor::MONITOR, |h, stop| {
        Box::pin(monitor::run(
            h.config, h.clock, h.store, h.queue, h.faults, h.notices, stop,
        ))
    }),
    (compaction::COMPACTION, |h, stop| {
        Box::pin(compaction::run(h.clock, h.store, stop))
    }),
    (retention::RETENTION, |h, stop| {
        Box::pin(retention::run(
            h.config.storage.retention.0,
            h.clock,
            h.store,
            stop,
        ))
    }),
    (recovery::RECOVERY, |h, stop| {
        Box::pin(recovery::run(h, stop))
    }),
    (reconcile::RECONCILE, |h, stop| {
        Box::pin(reconcile::run(h, stop))
    }),
    (canary::CANARY, |h, stop| Box::pin(canary::run(h, stop))),
    (drill::DRILLS, |h, stop| Box::pin(drill::run(h, stop))),
];

/// The lease reaper's duty name.
pub const LEASE_REAPER: &str = "lease-reaper";

/// How long to wait before retrying after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Starts the heartbeat, the wake-up forwarder and one runner per singleton duty. `address`
/// and `started_at` describe this node in its heartbeats.
pub(crate) fn start(
    handles: Handles,
    address: String,
    started_at: Timestamp,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(heartbeat(
        handles.clone(),
        address,
        started_at,
        shutdown.clone(),
    ))];
    // Every node applies the stored fire-drill faults, whichever node runs the drill duty.
    tasks.push(tokio::spawn(drill::faults::apply_stored(
        handles.store.clone(),
        handles.faults.clone(),
        handles.clock.clone(),
        shutdown.clone(),
    )));
    if let Some(rx) = handles.store.subscribe_new_work() {
        tasks.push(tokio::spawn(forward_wakeups(
            handles.wakers.clone(),
            rx,
            shutdown.clone(),
        )));
    }
    for (name, duty) in DUTIES {
        let runner = DutyRunner {
            handles: handles.clone(),
            name,
            duty: *duty,
        };
        tasks.push(tokio::spawn(runner.run(shutdown.clone())));
    }
    tasks
}

/// Every [`LOG_SUMMARY_INTERVAL`] on the clock, writes the summary of each limited log line
/// whose burst has ended (see `state::LimitedLog`), so the count of the last burst is never
/// left unsaid for want of another occurrence; and at shutdown, the summary of what is left.
pub(crate) async fn summarise_logs(
    doors: Arc<DoorLogs>,
    duties: Arc<DutyLogs>,
    destinations: Vec<Arc<DestinationRuntime>>,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let each_destination = || destinations.iter().flat_map(|d| d.logs.all());
    let all = || {
        doors
            .all()
            .into_iter()
            .chain(duties.all())
            .chain(each_destination())
    };
    loop {
        let next = clock.now().plus(LOG_SUMMARY_INTERVAL);
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = stop.cancelled() => break,
        }
        let now = clock.now();
        for log in all() {
            log.flush(now);
        }
    }
    // The process is stopping: what was only counted is said now or never.
    let now = clock.now();
    for log in all() {
        log.finish(now);
    }
}

/// This node as its heartbeat describes it.
pub(crate) fn node_info(
    store: &dyn Store,
    address: &str,
    started_at: Timestamp,
    now: Timestamp,
) -> NodeInfo {
    NodeInfo {
        id: store.node_id().to_string(),
        address: address.to_string(),
        started_at,
        last_heartbeat: now,
    }
}

async fn heartbeat(
    h: Handles,
    address: String,
    started_at: Timestamp,
    shutdown: CancellationToken,
) {
    let every = h.config.cluster.heartbeat.0;
    loop {
        let now = h.clock.now();
        let node = node_info(&*h.store, &address, started_at, now);
        if let Err(e) = h.store.heartbeat(node).await {
            if h.logs.store_unavailable.hit(now) {
                tracing::warn!(error = %e, "cannot record this node's heartbeat");
            }
        }
        tokio::select! {
            _ = h.clock.sleep_until(now.plus(every)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Wakes this node's dispatchers when another node committed work for them.
async fn forward_wakeups(
    wakers: Arc<HashMap<String, Arc<Notify>>>,
    mut rx: tokio::sync::broadcast::Receiver<WorkSignal>,
    shutdown: CancellationToken,
) {
    loop {
        let signal = tokio::select! {
            s = rx.recv() => s,
            _ = shutdown.cancelled() => return,
        };
        match signal {
            Ok(WorkSignal::Destination(d)) => {
                if let Some(wake) = wakers.get(&d) {
                    wake.notify_one();
                }
            }
            // Notifications were missed (a reconnection, or this task fell behind): every
            // dispatcher looks at its queue.
            Ok(WorkSignal::All) | Err(RecvError::Lagged(_)) => wake_all(&wakers),
            Err(RecvError::Closed) => return,
        }
    }
}

fn wake_all(wakers: &HashMap<String, Arc<Notify>>) {
    for wake in wakers.values() {
        wake.notify_one();
    }
}

/// Runs one singleton duty while, and only while, this node holds its lease.
struct DutyRunner {
    handles: Handles,
    name: &'static str,
    duty: DutyFn,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl DutyRunner {
    async fn run(self, shutdown: CancellationToken) {
        let clock = self.handles.clock.clone();
        let store = self.handles.store.clone();
        let ttl = self.handles.config.cluster.duty_lease.0;
        let renew_every = ttl / 3;
        // The duty stops a tenth of the lease before the lease ends unless it was renewed, so
        // that it has stopped before another node can take the lease over.
        let margin = ttl / 10;
        let mut running: Option<Running> = None;
        let mut held_until: Option<Timestamp> = None;
        loop {
            let now = clock.now();
            let deadline = held_until;
            let lease_end = async {
                match deadline {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                r = store.acquire_duty(self.name, now, ttl) => Some(r),
                _ = lease_end => None,
                _ = shutdown.cancelled() => break,
            };
            let next = match outcome {
                Some(Ok(true)) => {
                    held_until = Some(now.plus(ttl).minus(margin));
                    if running.is_none() {
                        tracing::info!(duty = self.name, node = %store.node_id(), "took the duty's lease; running it");
                        running = Some(self.start());
                    }
                    now.plus(renew_every)
                }
                Some(Ok(false)) => {
                    if self
                        .stop(&mut running, "another node holds its lease")
                        .await
                    {
                        held_until = None;
                    }
                    now.plus(renew_every)
                }
                Some(Err(e)) => {
                    if self.handles.logs.store_unavailable.hit(now) {
                        tracing::warn!(duty = self.name, error = %e, "cannot renew the duty's lease");
                    }
                    if held_until.is_some_and(|t| clock.now() >= t) {
                        self.stop(&mut running, "its lease could not be renewed")
                            .await;
                        held_until = None;
                    }
                    now.plus(STORE_BACKOFF)
                }
                None => {
                    self.stop(&mut running, "its lease ended before it could be renewed")
                        .await;
                    held_until = None;
                    clock.now()
                }
            };
            // Sleep until the next renewal, but never past the moment the lease ends.
            let wake = held_until.map_or(next, |t| next.min(t));
            tokio::select! {
                _ = clock.sleep_until(wake) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if self.stop(&mut running, "the node is shutting down").await {
            if let Err(e) = store.release_duty(self.name).await {
                tracing::warn!(duty = self.name, error = %e, "cannot release the duty's lease; it will expire");
            }
        }
    }

    fn start(&self) -> Running {
        let stop = CancellationToken::new();
        let task = tokio::spawn((self.duty)(self.handles.clone(), stop.clone()));
        Running { stop, task }
    }

    /// Stops the duty if it runs; `true` if it was running.
    async fn stop(&self, running: &mut Option<Running>, why: &str) -> bool {
        let Some(r) = running.take() else {
            return false;
        };
        tracing::info!(duty = self.name, why, "stopping the duty");
        r.stop.cancel();
        let _ = r.task.await;
        true
    }
}

/// The lease reaper: every heartbeat, makes due the deliveries leased by nodes that stopped
/// sending heartbeats, and wakes the dispatchers if there were any.
async fn reap_leases(h: Handles, stop: CancellationToken) {
    let every = h.config.cluster.heartbeat.0;
    let timeout = h.config.cluster.node_timeout.0;
    loop {
        let now = h.clock.now();
        match h.store.reap_orphaned_leases(now, timeout).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    deliveries = n,
                    "made deliveries of a node that stopped sending heartbeats due again"
                );
                wake_all(&h.wakers);
            }
            Err(e) => {
                if h.logs.store_unavailable.hit(now) {
                    tracing::warn!(error = %e, "the lease reaper could not run");
                }
            }
        }
        tokio::select! {
            _ = h.clock.sleep_until(now.plus(every)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
