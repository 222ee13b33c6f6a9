//! Applying stored faults on this node: every node (not only the one running the `drills`
//! duty) reads the running drills from the store every [`REFRESH`] on the clock, at start,
//! and at once when this node started or ended a drill, into its `DrillFaults`, which the
//! ingest door, the dispatchers and the notification sender consult.
//!
//! A fault past its expiry is never applied: `DrillFaults` compares the expiry with the
//! instant at every check, so a drill nobody finished (its node died, the duty is down)
//! stops applying on every node at its expiry, without a write.

use std::sync::Arc;
use std::time::Duration;

use intake_core::{SharedClock, Timestamp};
use intake_store::{DrillFilter, DrillState, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::state::{ActiveFault, DrillFaults};

/// How often each node reads the stored faults.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Reads the running drills into `faults`; whether they changed. Called by the task below,
/// at start, and right after this node started or ended a drill, so that it applies at once
/// here (the other nodes follow within [`REFRESH`]).
pub(crate) async fn load(
    store: &dyn Store,
    faults: &DrillFaults,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let _one_at_a_time = faults.loading.lock().await;
    let running = store
        .list_drills(DrillFilter {
            states: vec![DrillState::Running],
            ..DrillFilter::default()
        })
        .await?;
    let mut active: Vec<ActiveFault> = running
        .into_iter()
        .filter(|d| d.is_active(now))
        .map(|d| ActiveFault {
            drill: d.id,
            scenario: d.scenario,
            target: d.target,
            expires_at: d.expires_at,
        })
        .collect();
    active.sort_by(|a, b| a.drill.cmp(&b.drill));
    Ok(faults.set(active))
}

/// Keeps this node's faults as stored, until `stop`. When they change, every dispatcher of
/// this node looks at its queue again (`DrillFaults::changed`: a healed queue-stall releases
/// its deliveries at once).
pub(crate) async fn apply_stored(
    store: Arc<dyn Store>,
    faults: Arc<DrillFaults>,
    clock: SharedClock,
    stop: CancellationToken,
) {
    loop {
        let now = clock.now();
        match load(&*store, &faults, now).await {
            Ok(true) => {
                tracing::info!(
                    faults = faults.in_force(now).len(),
                    "fire drill faults changed on this node"
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the fire drill faults; keeping the last ones read (each stops at its expiry)")
            }
        }
        tokio::select! {
            _ = clock.sleep_until(now.plus(REFRESH)) => {}
            _ = faults.reread.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}
