//! The queue's gauges as the doors read them (`/metrics`, `GET /api/v1/queue`, the dashboard and
//! `intake status` through it), and the monitor's duty at each tick: one read of the store at a
//! time, shared by every caller that asks meanwhile.
//!
//! The read counts the queue's rows, about a microsecond each on SQLite: milliseconds
//! normally, seconds after hours of a handler outage with millions queued. Every scraper,
//! dashboard and CLI used to make that read on its own, on the two cores ingest needs: with
//! 3 M deliveries pending one scrape took 2.4 s and four at once 5.6 s each
//! (`docs/benchmarks.md`), and at around 7 M a scrape outlasted Prometheus' 10 s timeout.
//!
//! The rules, in [`QueueView::read`]:
//! * a caller that finds a read running and a reading from before takes that reading at once;
//! * so does a caller that comes within one read's duration of the last read's end: reads
//!   then use at most half of one connection's time, however many callers there are;
//! * otherwise it starts a read, on a task of its own (so that a caller that gives up does not
//!   waste it), and waits for it up to the view's patience (`FRESH_WAIT`, one second); past
//!   that it takes the reading from before, if there is one;
//! * a failed read is everyone's answer who waited for it, and forgets the reading from
//!   before: a store that cannot be read is not hidden behind old numbers.
//!
//! A reading served is thus at most about two reads old: nothing for a queue of thousands,
//! seconds for one of millions. It carries the instant its count began (the API's `as_of`);
//! the deliveries' ages are computed from their creation instants by the caller, so they stay
//! exact.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use intake_core::{SharedClock, Timestamp};
use intake_store::{QueueStats, Result, Store, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a caller waits for a read it started before it takes the reading from before.
pub(crate) const FRESH_WAIT: Duration = Duration::from_secs(1);

/// One reading of the queue's gauges.
#[derive(Debug)]
pub(crate) struct Reading {
    /// When its count began: what the numbers are "as of".
    pub taken_at: Timestamp,
    pub stats: Vec<QueueStats>,
}

/// What a running read ends with (`None` until it ended).
type Outcome = Option<std::result::Result<Arc<Reading>, StoreError>>;

/// The read itself: the store's `queue_stats`, or a test's.
type ReadFn = Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<QueueStats>>> + Send + Sync>;

/// The shared reader of the queue's gauges (see the module's page).
#[derive(Clone)]
pub(crate) struct QueueView {
    read: ReadFn,
    clock: SharedClock,
    patience: Duration,
    state: Arc<Mutex<ViewState>>,
}

#[derive(Default)]
struct ViewState {
    /// The last reading that succeeded, unless a read failed since.
    last: Option<Arc<Reading>>,
    /// The read running now.
    running: Option<watch::Receiver<Outcome>>,
    /// Until when `last` is served without a new read: the last read's end plus its duration.
    fresh_until: Option<Instant>,
}

impl QueueView {
    /// A view of `store`'s queue.
    pub(crate) fn of_store(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        Self::new(
            Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.queue_stats().await })
            }),
            clock,
            FRESH_WAIT,
        )
    }

    fn new(read: ReadFn, clock: SharedClock, patience: Duration) -> Self {
        QueueView {
            read,
            clock,
            patience,
            state: Arc::default(),
        }
    }

    /// The queue's gauges, by the rules of the module's page.
    pub(crate) async fn read(&self) -> Result<Arc<Reading>> {
        let (mut running, before) = {
            let mut state = self.lock();
            let fresh = state.fresh_until.is_some_and(|t| Instant::now() < t);
            match (&state.running, &state.last) {
                (Some(_), Some(last)) => return Ok(last.clone()),
                (None, Some(last)) if fresh => return Ok(last.clone()),
                (Some(running), None) => (running.clone(), None),
                (None, last) => {
                    let last = last.clone();
                    (self.start(&mut state), last)
                }
            }
        };
        let ended = async {
            match running.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(stopped())),
                Err(_) => Err(stopped()),
            }
        };
        match before {
            Some(before) => tokio::time::timeout(self.patience, ended)
                .await
                .unwrap_or(Ok(before)),
            None => ended.await,
        }
    }

    /// Starts a read on a task of its own; returns where it will say how it ended.
    fn start(&self, state: &mut ViewState) -> watch::Receiver<Outcome> {
        let (tell, running) = watch::channel(None);
        state.running = Some(running.clone());
        let read = (self.read)();
        let taken_at = self.clock.now();
        let shared = self.state.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = read
                .await
                .map(|stats| Arc::new(Reading { taken_at, stats }));
            {
                let mut state = lock(&shared);
                state.running = None;
                state.last = outcome.as_ref().ok().cloned();
                let ended = Instant::now();
                state.fresh_until = Some(ended + (ended - started));
            }
            let _ = tell.send(Some(outcome));
        });
        running
    }

    fn lock(&self) -> MutexGuard<'_, ViewState> {
        lock(&self.state)
    }
}

/// The state, even if a holder panicked (it holds plain values, always consistent).
fn lock(state: &Mutex<ViewState>) -> MutexGuard<'_, ViewState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a caller gets if the read's task ended without an answer (it panicked).
fn stopped() -> StoreError {
    StoreError::Unavailable("the read of the queue's gauges stopped without an answer".into())
}

#[cfg(test)]
mod tests;
