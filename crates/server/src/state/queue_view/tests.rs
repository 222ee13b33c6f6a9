//! The view's rules, on a read the test holds and releases, with tokio's clock paused (a
//! timeout passes as soon as nothing else can run).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use intake_core::ManualClock;
use tokio::sync::Semaphore;

use super::*;

/// A read that waits for a permit of `gate` per call, then answers `pending` = the number of
/// the call (1, 2, …), or fails while `failing` is set.
struct Script {
    clock: Arc<ManualClock>,
    calls: Arc<AtomicU64>,
    gate: Arc<Semaphore>,
    failing: Arc<AtomicBool>,
}

impl Script {
    fn new() -> Script {
        Script {
            clock: Arc::new(ManualClock::new(Timestamp(1_000))),
            calls: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            failing: Arc::default(),
        }
    }

    fn view(&self) -> QueueView {
        let (calls, gate, failing) = (self.calls.clone(), self.gate.clone(), self.failing.clone());
        QueueView::new(
            Arc::new(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let (gate, failing) = (gate.clone(), failing.clone());
                Box::pin(async move {
                    gate.acquire().await.map_err(|_| stopped())?.forget();
                    if failing.load(Ordering::SeqCst) {
                        return Err(StoreError::Unavailable("locked".into()));
                    }
                    Ok(vec![stats(n)])
                })
            }),
            self.clock.clone(),
            FRESH_WAIT,
        )
    }

    /// A view that has read once (its reading: 1).
    async fn read_once(&self) -> QueueView {
        let view = self.view();
        self.release(1);
        assert_eq!(pending(&view.read().await), Some(1));
        view
    }

    fn release(&self, reads: usize) {
        self.gate.add_permits(reads);
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn stats(pending: u64) -> QueueStats {
    QueueStats {
        tenant: "t".into(),
        source: "s".into(),
        destination: "d".into(),
        pending,
        in_flight: 0,
        oldest_pending_at: None,
        dead: 0,
    }
}

fn pending(r: &Result<Arc<Reading>>) -> Option<u64> {
    r.as_ref().ok().map(|r| r.stats[0].pending)
}

/// A caller on a task of its own.
fn spawn_read(view: &QueueView) -> tokio::task::JoinHandle<Result<Arc<Reading>>> {
    let view = view.clone();
    tokio::spawn(async move { view.read().await })
}

/// A read that must be answered without waiting (on the paused clock); its pending count.
async fn read_at_once(view: &QueueView) -> Option<u64> {
    let asked = tokio::time::Instant::now();
    let reading = view.read().await;
    assert_eq!(asked.elapsed(), Duration::ZERO, "answered at once");
    pending(&reading)
}

/// Lets the spawned tasks run until they wait on something.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn callers_at_once_share_one_read() {
    let script = Script::new();
    let view = script.view();
    let callers: Vec<_> = (0..5).map(|_| spawn_read(&view)).collect();
    settle().await;
    script.release(1);
    for c in callers {
        assert_eq!(pending(&c.await.unwrap()), Some(1));
    }
    assert_eq!(script.calls(), 1, "one read for five callers");
}

#[tokio::test(start_paused = true)]
async fn while_a_read_runs_a_caller_takes_the_reading_from_before_at_once() {
    let script = Script::new();
    let view = script.read_once().await;
    // A second read starts and is held; its starter waits, the next caller does not.
    let starter = spawn_read(&view);
    settle().await;
    assert_eq!(script.calls(), 2);
    assert_eq!(read_at_once(&view).await, Some(1));
    assert_eq!(script.calls(), 2, "no read of its own");
    script.release(1);
    assert_eq!(pending(&starter.await.unwrap()), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_slow_read_is_waited_for_up_to_the_patience_and_its_reading_serves_as_long_as_it_took() {
    let script = Script::new();
    let view = script.read_once().await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        pending(&view.read().await),
        Some(1),
        "the reading from before"
    );
    assert_eq!(started.elapsed(), FRESH_WAIT);
    // The read went on without its starter. It took a second: for a second after its end,
    // its reading is served without a read of its own.
    script.release(1);
    settle().await;
    assert_eq!(script.calls(), 2);
    assert_eq!(read_at_once(&view).await, Some(2));
    assert_eq!(script.calls(), 2);
    // Past that, the next caller starts a read.
    tokio::time::sleep(FRESH_WAIT).await;
    let next = spawn_read(&view);
    settle().await;
    assert_eq!(script.calls(), 3);
    script.release(1);
    assert_eq!(pending(&next.await.unwrap()), Some(3));
    // Read 4 is held: its starter falls back on read 3 after its patience.
    let started = tokio::time::Instant::now();
    assert_eq!(pending(&view.read().await), Some(3));
    assert_eq!(started.elapsed(), FRESH_WAIT);
    assert_eq!(script.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_first_read_is_waited_for_however_long_it_takes() {
    let script = Script::new();
    let view = script.view();
    let caller = spawn_read(&view);
    tokio::time::sleep(FRESH_WAIT * 30).await;
    assert!(
        !caller.is_finished(),
        "no reading from before to fall back on"
    );
    script.release(1);
    assert_eq!(pending(&caller.await.unwrap()), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_is_told_and_forgets_the_reading_from_before() {
    let script = Script::new();
    let view = script.read_once().await;
    script.failing.store(true, Ordering::SeqCst);
    script.release(1);
    assert!(view.read().await.is_err(), "the caller that waited is told");
    // The next caller does not get the old numbers while a read runs: it waits for it.
    script.failing.store(false, Ordering::SeqCst);
    let caller = spawn_read(&view);
    settle().await;
    let waiting = spawn_read(&view);
    tokio::time::sleep(FRESH_WAIT * 2).await;
    assert!(!waiting.is_finished());
    script.release(1);
    assert_eq!(pending(&caller.await.unwrap()), Some(3));
    assert_eq!(pending(&waiting.await.unwrap()), Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_reading_is_as_of_the_instant_its_count_began() {
    let script = Script::new();
    let view = script.view();
    let caller = spawn_read(&view);
    settle().await;
    script.clock.advance(Duration::from_secs(5));
    script.release(1);
    let reading = caller.await.unwrap().unwrap();
    assert_eq!(reading.taken_at, Timestamp(1_000));
}
