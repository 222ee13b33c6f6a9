//! The counter-compaction duty: rolls minute counters up into hours, applies retention, and
//! prunes notifications that ended over a week ago. A singleton duty (see [`super`]).

use std::sync::Arc;
use std::time::Duration;

use intake_core::SharedClock;
use intake_store::{CounterRetention, Resolution, Store};
use tokio_util::sync::CancellationToken;

/// The counter compaction's duty name.
pub const COMPACTION: &str = "counter-compaction";

/// The counter-compaction duty: once an hour, rolls complete hours of minute counters up,
/// deletes what is past retention, and prunes notifications that ended over a week ago.
pub(crate) async fn run(clock: SharedClock, store: Arc<dyn Store>, stop: CancellationToken) {
    loop {
        let now = clock.now();
        let wait = match store
            .compact_counters(now, CounterRetention::default())
            .await
        {
            Ok(report) => {
                tracing::debug!(?report, "counters compacted");
                // Notifications that ended are kept a week for the API and postmortems.
                let week_ago = now.minus(Duration::from_secs(7 * 86_400));
                if let Err(e) = store.prune_notifications(week_ago).await {
                    tracing::warn!(error = %e, "old notifications could not be pruned");
                }
                // A few minutes into the next hour, once its first minutes are committed.
                Resolution::Hour
                    .bucket(now)
                    .plus(Duration::from_secs(3600 + 300))
            }
            Err(e) => {
                tracing::warn!(error = %e, "counter compaction failed; retrying in a minute");
                now.plus(Duration::from_secs(60))
            }
        };
        tokio::select! {
            _ = clock.sleep_until(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}
