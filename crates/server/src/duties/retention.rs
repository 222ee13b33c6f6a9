//! The retention duty (`storage.retention`): once an hour, deletes the events received
//! before `now - retention` whose work is done, with their deliveries and attempts, and the
//! rejections recorded before then. A singleton duty (see [`super`]).
//!
//! A pass goes in small batches ([`BATCH`] events looked at per transaction,
//! [`Store::expire_events`]); it sends the next batch only once the previous one is
//! committed, so on SQLite the writer carries ingest's group commits between two batches,
//! and on PostgreSQL each batch is a short transaction of its own. Between two batches it
//! pauses ([`pause_after`]) so that it takes only a share of the store's time: back to back,
//! the first pass over a big backlog took the SQLite writer from ingest, which fell to a
//! third of its rate while it ran. The share follows how busy the others keep the writer
//! during the pause ([`share_for`], from [`Store::writer_busy`]): half of an idle writer,
//! [`MIN_SHARE`] of a saturated one, [`WRITER_SHARE`] where the store cannot tell (PostgreSQL).
//! Which events go is
//! [`intake_core::retention::decide`]: never one whose work is not final.
//!
//! Before a pass deletes anything it moves the **retention mark**
//! ([`RetentionMark::expired_before`], the state document [`RETENTION_STATE_KEY`]): readers
//! that miss an event received before it say that retention removed it, rather than that it
//! never existed — `GET /api/v1/events/{id}`, the dashboard's event page, `intake audit`
//! and replay and backfill jobs (see [`refusal`]). Counters are not touched here: counter
//! compaction keeps them, rolled up into hours (`CounterRetention`).

use std::sync::Arc;
use std::time::Duration;

use intake_core::retention::{DeletedRows, RetentionMark, RETENTION_STATE_KEY};
use intake_core::{EventId, SharedClock, Timestamp};
use intake_store::{ExpireRequest, RecoveryKind, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::recovery::params::Params;

/// The retention duty's name.
pub const RETENTION: &str = "retention";

/// `intake_retention_deleted_total{kind}`: rows deleted by retention since it first ran, by
/// kind (`events`, `deliveries`, `attempts`, `rejections`).
pub const DELETED_TOTAL: &str = "intake_retention_deleted_total";
/// `intake_retention_last_pass_timestamp_seconds`: when the last pass ended (0: none yet).
pub const LAST_PASS: &str = "intake_retention_last_pass_timestamp_seconds";
/// `intake_retention_kept_events`: events past retention the last pass kept because their
/// work is not final (pending, retrying, in flight, awaiting a receipt, never queued).
pub const KEPT: &str = "intake_retention_kept_events";

/// Events looked at per batch (one transaction); as many rejections at most. An ingest that
/// arrives during a batch waits for all of it: 200 rather than 500 took the ack p99 during a
/// pass from 55-68 ms to 36-40 ms (docs/benchmarks.md, Retention).
pub const BATCH: usize = 200;

/// The share of the store's time a pass may take while it has a backlog, where the store
/// cannot tell how busy it is: after each batch it pauses four times as long as the batch
/// took (waiting in the writer's queue included, so a busy store slows retention down
/// further).
pub const WRITER_SHARE: f64 = 0.2;

/// The share a pass takes of a writer the others keep busy all the time (after each batch,
/// a pause 19 times as long). 0.2 took 11-13 % of ingest's rate during a pass over a
/// backlog (docs/benchmarks.md, Retention).
pub const MIN_SHARE: f64 = 0.05;

/// The share a pass takes of a writer nobody else uses.
pub const MAX_SHARE: f64 = 0.5;

/// The longest pause between two batches.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Every this many batches, a pass records its progress in the mark (`/metrics`).
const PROGRESS_EVERY: u64 = 100;

/// How often a pass runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Events received before this were past retention.
    pub cutoff: Timestamp,
    /// Rows deleted.
    pub deleted: DeletedRows,
    /// Events past retention kept because their work is not final.
    pub kept: u64,
    /// Transactions the pass took.
    pub batches: u64,
}

/// The retention duty: a pass at start, then every [`EVERY`]. With `retention` `None`
/// (`storage.retention = "off"`) it deletes nothing and only waits to be stopped.
pub(crate) async fn run(
    retention: Option<Duration>,
    clock: SharedClock,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) {
    let Some(retention) = retention else {
        stop.cancelled().await;
        return;
    };
    loop {
        let now = clock.now();
        let wait = match pass(&*store, &clock, retention, BATCH, &stop).await {
            Ok(report) => {
                tracing::info!(
                    cutoff = %report.cutoff,
                    events = report.deleted.events,
                    deliveries = report.deleted.deliveries,
                    attempts = report.deleted.attempts,
                    rejections = report.deleted.rejections,
                    kept = report.kept,
                    batches = report.batches,
                    "retention pass done"
                );
                now.plus(EVERY)
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed; retrying in a minute");
                now.plus(Duration::from_secs(60))
            }
        };
        tokio::select! {
            _ = clock.sleep_until(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One pass: moves the mark to `now - retention`, then deletes in batches of `batch` until
/// nothing is left or `stop` is cancelled, and records what it did in the mark (also when a
/// batch failed: what the earlier batches deleted stays counted).
pub async fn pass(
    store: &dyn Store,
    clock: &SharedClock,
    retention: Duration,
    batch: usize,
    stop: &CancellationToken,
) -> Result<PassReport, StoreError> {
    let cutoff = clock.now().minus(retention);
    let mut stored = mark(store).await?.unwrap_or_default();
    // The mark moves before anything is deleted, and never back (a retention made longer
    // does not bring deleted events back).
    if cutoff > stored.expired_before {
        stored.expired_before = cutoff;
        save(store, &stored).await?;
    }
    let mut report = PassReport {
        cutoff,
        ..PassReport::default()
    };
    let mut after: Option<EventId> = None;
    let mut share = WRITER_SHARE;
    let base = stored.deleted;
    let outcome = loop {
        if stop.is_cancelled() {
            break Ok(());
        }
        let req = ExpireRequest {
            before: cutoff,
            after: after.clone(),
            limit: batch,
        };
        let started = std::time::Instant::now();
        let done = match store.expire_events(req).await {
            Ok(b) => b,
            Err(e) => break Err(e),
        };
        let took = started.elapsed();
        report.batches += 1;
        report.deleted = report.deleted.plus(done.deleted);
        report.kept += done.kept;
        if done.is_last(batch) {
            break Ok(());
        }
        after = done.last.or(after);
        // A long pass (the first one over a big store) shows its progress on /metrics.
        if report.batches.is_multiple_of(PROGRESS_EVERY) {
            stored.deleted = base.plus(report.deleted);
            save(store, &stored).await?;
        }
        // Leave the store to ingest for a while before the next batch, and see how busy
        // ingest keeps it meanwhile. The pause is real time, not the clock's: it shares a
        // resource, it does not measure domain time.
        let (busy_before, paused) = (store.writer_busy(), std::time::Instant::now());
        tokio::select! {
            _ = tokio::time::sleep(pause_after(took, share)) => {}
            _ = stop.cancelled() => {}
        }
        if let Some(load) = writer_load(busy_before, store.writer_busy(), paused.elapsed()) {
            share = share_for(load);
        }
    };
    stored.deleted = base.plus(report.deleted);
    stored.kept = report.kept;
    stored.last_pass_at = Some(clock.now());
    save(store, &stored).await?;
    outcome.map(|()| report)
}

/// How long a pass pauses after a batch that took `took`, so that its batches take at most
/// `share` of the time (at most [`MAX_PAUSE`]; no pause for a share of 1 or more).
pub fn pause_after(took: Duration, share: f64) -> Duration {
    if share >= 1.0 || share.is_nan() {
        return Duration::ZERO;
    }
    let share = share.max(0.01);
    took.mul_f64((1.0 - share) / share).min(MAX_PAUSE)
}

/// The share of the writer's time a pass may take when the others kept it busy `load` of
/// the time (0 to 1) during its last pause: from [`MAX_SHARE`] of an idle writer down to
/// [`MIN_SHARE`] of a saturated one, falling fast as the load rises (a writer busy half the
/// time leaves retention 16 %).
pub fn share_for(load: f64) -> f64 {
    if load.is_nan() {
        return WRITER_SHARE;
    }
    let idle = 1.0 - load.clamp(0.0, 1.0);
    MIN_SHARE + (MAX_SHARE - MIN_SHARE) * idle * idle
}

/// The share of `elapsed` the writer was busy, from its busy time before and after
/// ([`Store::writer_busy`]); `None` when the store cannot tell or the interval is too short
/// to say (under a millisecond).
pub fn writer_load(
    before: Option<Duration>,
    after: Option<Duration>,
    elapsed: Duration,
) -> Option<f64> {
    let (before, after) = (before?, after?);
    if elapsed < Duration::from_millis(1) {
        return None;
    }
    let busy = after.saturating_sub(before).as_secs_f64() / elapsed.as_secs_f64();
    Some(busy.clamp(0.0, 1.0))
}

/// The retention mark, if retention ever ran.
pub async fn mark(store: &dyn Store) -> Result<Option<RetentionMark>, StoreError> {
    match store.get_state(RETENTION_STATE_KEY).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("the retention mark: {e}"))),
    }
}

async fn save(store: &dyn Store, mark: &RetentionMark) -> Result<(), StoreError> {
    let text = serde_json::to_string(mark)
        .map_err(|e| StoreError::Corrupt(format!("the retention mark: {e}")))?;
    store.put_state(RETENTION_STATE_KEY, text).await
}

/// Whether an event that is not in the store was removed by retention: its id says it was
/// received before the mark. (An id after the mark that is not found never existed.)
pub fn expired(id: &EventId, mark: Option<&RetentionMark>) -> bool {
    mark.is_some_and(|m| id.created_at() < m.expired_before)
}

/// Why a read of the events received from `from` on cannot be complete, or `None` when
/// retention removed nothing from that window: what `intake audit` and replay and backfill
/// jobs answer instead of a report that would lie. `what` names the reader.
pub fn refusal(what: &str, from: Timestamp, mark: Option<&RetentionMark>) -> Option<String> {
    let m = mark?;
    (from < m.expired_before).then(|| {
        format!(
            "{what} cannot cover events received before {}: storage.retention removed the events \
             received before then whose work was done (events whose work was not done are kept); \
             ask for a window starting at or after {}",
            m.expired_before, m.expired_before
        )
    })
}

/// Why a read over a window could not be answered.
#[derive(Debug, Clone)]
pub enum Cut {
    /// The store failed.
    Store(StoreError),
    /// Retention removed events from the window: what to ask instead ([`refusal`]).
    Expired(String),
}

impl From<StoreError> for Cut {
    fn from(e: StoreError) -> Self {
        Cut::Store(e)
    }
}

/// `Ok` when retention removed nothing from the events received from `from` on; else why
/// `what` cannot cover them ([`refusal`]).
pub async fn ensure_kept(store: &dyn Store, what: &str, from: Timestamp) -> Result<(), Cut> {
    match refusal(what, from, mark(store).await?.as_ref()) {
        None => Ok(()),
        Some(why) => Err(Cut::Expired(why)),
    }
}

/// `Ok` when a recovery job's window is untouched by retention. A replay of a window
/// retention cut would silently skip the deleted events; a backfill would find their dedupe
/// keys gone and deliver them all again as new events. A requeue acts only on work that is
/// not done, which retention never deletes, so it is always allowed.
pub async fn ensure_job_kept(
    store: &dyn Store,
    kind: RecoveryKind,
    params: &Params,
) -> Result<(), Cut> {
    match kind {
        RecoveryKind::Requeue => Ok(()),
        RecoveryKind::Replay => ensure_kept(store, "a replay", params.from).await,
        RecoveryKind::Backfill => {
            let from = params.from.minus(Duration::from_secs(params.margin_secs));
            ensure_kept(
                store,
                "a backfill (with its margin; the dedupe keys of removed events are gone, so their objects would be delivered again as new events)",
                from,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_pauses_so_that_its_batches_take_their_share_of_the_store() {
        let ms = Duration::from_millis;
        // (batch took, share, pause)
        let cases = [
            (ms(10), 0.2, ms(40)),
            (ms(25), 0.2, ms(100)),
            (ms(10), 0.5, ms(10)),
            (ms(0), 0.2, ms(0)),
            // A slow batch (a busy store) pauses at most a second.
            (ms(400), 0.2, ms(1000)),
            // The whole store: no pause; a share of nothing still lets a pass go on.
            (ms(10), 1.0, ms(0)),
            (ms(10), 0.0, ms(990)),
            (ms(10), f64::NAN, ms(0)),
        ];
        for (took, share, pause) in cases {
            let got = pause_after(took, share);
            let diff = got.abs_diff(pause);
            assert!(
                diff < ms(1),
                "{took:?} at {share}: {got:?}, expected {pause:?}"
            );
        }
        // Batch time over batch time plus pause is the share.
        let took = ms(30);
        let pause = pause_after(took, WRITER_SHARE);
        let share = took.as_secs_f64() / (took + pause).as_secs_f64();
        assert!((share - WRITER_SHARE).abs() < 1e-9, "{share}");
    }

    #[test]
    fn the_share_falls_as_the_others_keep_the_writer_busy() {
        // (load, share)
        let cases = [
            (0.0, MAX_SHARE),
            (0.5, 0.1625),
            (0.8, 0.068),
            (1.0, MIN_SHARE),
            // Out of range is the nearest end; not a number is the fixed share.
            (-0.5, MAX_SHARE),
            (3.0, MIN_SHARE),
            (f64::NAN, WRITER_SHARE),
        ];
        for (load, share) in cases {
            let got = share_for(load);
            assert!(
                (got - share).abs() < 1e-9,
                "{load}: {got}, expected {share}"
            );
        }
        // Busier is never given more.
        let shares: Vec<f64> = (0..=100).map(|i| share_for(f64::from(i) / 100.0)).collect();
        assert!(shares.windows(2).all(|w| w[1] <= w[0]), "{shares:?}");
    }

    #[test]
    fn the_writers_load_is_its_busy_time_over_the_pause() {
        let ms = Duration::from_millis;
        // (busy before, busy after, elapsed, load)
        let cases = [
            (Some(ms(100)), Some(ms(150)), ms(100), Some(0.5)),
            (Some(ms(100)), Some(ms(100)), ms(100), Some(0.0)),
            // A batch that began before the pause can end in it: never more than busy.
            (Some(ms(100)), Some(ms(400)), ms(100), Some(1.0)),
            // A store that cannot tell, or a pause too short to say anything.
            (None, None, ms(100), None),
            (Some(ms(1)), None, ms(100), None),
            (Some(ms(1)), Some(ms(2)), Duration::from_micros(500), None),
            // A counter that went back (it never does) reads as idle, not as a panic.
            (Some(ms(200)), Some(ms(100)), ms(100), Some(0.0)),
        ];
        for (before, after, elapsed, load) in cases {
            let got = writer_load(before, after, elapsed);
            match (got, load) {
                (Some(g), Some(l)) => assert!((g - l).abs() < 1e-9, "{before:?} {after:?}: {g}"),
                (g, l) => assert_eq!(g, l, "{before:?} {after:?} {elapsed:?}"),
            }
        }
    }

    #[test]
    fn readers_of_a_window_cut_by_retention_are_told_so() {
        let mark = RetentionMark {
            expired_before: Timestamp(1_000_000),
            ..RetentionMark::default()
        };
        // (from, mark, refused)
        let cases = [
            (Timestamp(0), Some(&mark), true),
            (Timestamp(999_999), Some(&mark), true),
            (Timestamp(1_000_000), Some(&mark), false),
            (Timestamp(5_000_000), Some(&mark), false),
            (Timestamp(0), None, false),
        ];
        for (from, m, refused) in cases {
            let got = refusal("the audit", from, m);
            assert_eq!(got.is_some(), refused, "{from:?} {m:?}");
            if let Some(text) = got {
                assert!(
                    text.starts_with(
                        "the audit cannot cover events received before 1970-01-01T00:16:40"
                    ),
                    "{text}"
                );
                assert!(text.contains("storage.retention"), "{text}");
            }
        }
        let old = EventId::generate(Timestamp(999_999));
        let new = EventId::generate(Timestamp(1_000_000));
        assert!(expired(&old, Some(&mark)));
        assert!(!expired(&new, Some(&mark)));
        assert!(!expired(&old, None));
    }
}
