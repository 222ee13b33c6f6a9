//! Duties of a node among others: heartbeats, wake-ups from other nodes, and singleton duties.
//!
//! Several nodes may share one PostgreSQL database. Each records a heartbeat every
//! `cluster.heartbeat`. Work some node must do, but only one at a time (a *singleton duty*),
//! runs under a lease in the database: a [`DutyRunner`] takes the lease, starts the duty, renews
//! the lease every third of `cluster.duty_lease`, and stops the duty as soon as it cannot be
//! sure it still holds it (the lease moved, or could not be renewed before it ended). When the
//! holder dies, its lease ends within `cluster.duty_lease` and another node's runner takes it.
//! With SQLite there is one node, which takes every lease at once.
//!
//! The duties: the **lease reaper** (deliveries in flight under the lease of a node that has
//! stopped sending heartbeats are made due at once, rather than when their leases expire), the
//! **monitor** (rule evaluation, see [`crate::monitoring`]) and **counter compaction** (rollup
//! and retention of counters). Notifications, canaries and reconciliation join them as they
//! arrive.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use intake_core::Timestamp;
use intake_store::{NodeInfo, WorkSignal};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runtime::AppState;

/// A duty's body: runs until its token is cancelled.
type DutyFn =
    fn(Arc<AppState>, CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The singleton duties, by name.
const DUTIES: &[(&str, DutyFn)] = &[
    (LEASE_REAPER, |app, stop| Box::pin(reap_leases(app, stop))),
    (crate::monitoring::MONITOR, |app, stop| {
        Box::pin(crate::monitoring::run(app, stop))
    }),
    (crate::monitoring::COMPACTION, |app, stop| {
        Box::pin(crate::monitoring::compact(app, stop))
    }),
];

/// The lease reaper's duty name.
pub const LEASE_REAPER: &str = "lease-reaper";

/// How long to wait before retrying after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Starts the heartbeat, the wake-up forwarder and one runner per singleton duty.
pub(crate) fn start(
    app: Arc<AppState>,
    address: String,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(heartbeat(
        app.clone(),
        address,
        shutdown.clone(),
    ))];
    if let Some(rx) = app.store.subscribe_new_work() {
        tasks.push(tokio::spawn(forward_wakeups(
            app.clone(),
            rx,
            shutdown.clone(),
        )));
    }
    for (name, duty) in DUTIES {
        let runner = DutyRunner {
            app: app.clone(),
            name,
            duty: *duty,
        };
        tasks.push(tokio::spawn(runner.run(shutdown.clone())));
    }
    tasks
}

/// This node as its heartbeat describes it.
pub(crate) fn node_info(app: &AppState, address: &str, now: Timestamp) -> NodeInfo {
    NodeInfo {
        id: app.store.node_id().to_string(),
        address: address.to_string(),
        started_at: app.started_at,
        last_heartbeat: now,
    }
}

async fn heartbeat(app: Arc<AppState>, address: String, shutdown: CancellationToken) {
    let every = app.config.cluster.heartbeat.0;
    loop {
        let now = app.clock.now();
        if let Err(e) = app.store.heartbeat(node_info(&app, &address, now)).await {
            tracing::warn!(error = %e, "cannot record this node's heartbeat");
        }
        tokio::select! {
            _ = app.clock.sleep_until(now.plus(every)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Wakes this node's dispatchers when another node committed work for them.
async fn forward_wakeups(
    app: Arc<AppState>,
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
                if let Some(dest) = app.destinations.get(&d) {
                    dest.wake.notify_one();
                }
            }
            // Notifications were missed (a reconnection, or this task fell behind): every
            // dispatcher looks at its queue.
            Ok(WorkSignal::All) | Err(RecvError::Lagged(_)) => wake_all(&app),
            Err(RecvError::Closed) => return,
        }
    }
}

fn wake_all(app: &AppState) {
    for d in app.destinations.values() {
        d.wake.notify_one();
    }
}

/// Runs one singleton duty while, and only while, this node holds its lease.
struct DutyRunner {
    app: Arc<AppState>,
    name: &'static str,
    duty: DutyFn,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl DutyRunner {
    async fn run(self, shutdown: CancellationToken) {
        let clock = self.app.clock.clone();
        let ttl = self.app.config.cluster.duty_lease.0;
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
                r = self.app.store.acquire_duty(self.name, now, ttl) => Some(r),
                _ = lease_end => None,
                _ = shutdown.cancelled() => break,
            };
            let next = match outcome {
                Some(Ok(true)) => {
                    held_until = Some(now.plus(ttl).minus(margin));
                    if running.is_none() {
                        tracing::info!(duty = self.name, node = %self.app.store.node_id(), "took the duty's lease; running it");
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
                    tracing::warn!(duty = self.name, error = %e, "cannot renew the duty's lease");
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
            if let Err(e) = self.app.store.release_duty(self.name).await {
                tracing::warn!(duty = self.name, error = %e, "cannot release the duty's lease; it will expire");
            }
        }
    }

    fn start(&self) -> Running {
        let stop = CancellationToken::new();
        let task = tokio::spawn((self.duty)(self.app.clone(), stop.clone()));
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
async fn reap_leases(app: Arc<AppState>, stop: CancellationToken) {
    let every = app.config.cluster.heartbeat.0;
    let timeout = app.config.cluster.node_timeout.0;
    loop {
        let now = app.clock.now();
        match app.store.reap_orphaned_leases(now, timeout).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    deliveries = n,
                    "made deliveries of a node that stopped sending heartbeats due again"
                );
                wake_all(&app);
            }
            Err(e) => tracing::warn!(error = %e, "the lease reaper could not run"),
        }
        tokio::select! {
            _ = app.clock.sleep_until(now.plus(every)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
