//! One recovery job's life: started (or resumed from its cursor), stepped a page at a time
//! with its report saved after each, and finished as succeeded, failed or cancelled.
//!
//! A node that stops leaves its jobs `running` with the cursor of the last page it finished;
//! the node that next holds the recovery duty continues them from there. Failures of the
//! system of record or the store that may pass (`429`s beyond the client's own waits,
//! connection errors, `5xx`, a store that cannot commit) are waited out with a growing pause;
//! only refusals that will not change (bad credentials, a cursor the client does not know, a
//! `4xx`) or [`MAX_TRANSIENT`] failures in a row fail the job.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::Cursor;
use intake_core::config::{Config, SourceConfig};
use intake_core::{EventId, SharedClock, Timestamp};
use intake_store::{RecoveryJob, RecoveryKind, RecoveryState, RecoveryUpdate, Store, StoreError};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backfill::Backfiller;
use super::params::Params;
use super::report::Report;
use super::{replay, requeue};

/// Failures in a row after which a job fails.
pub const MAX_TRANSIENT: u32 = 10;
/// The first pause after a failure that may pass; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(2);
const MAX_PAUSE: Duration = Duration::from_secs(120);

/// Why a step did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepError {
    /// The system of record is rate limiting: waited out however long it lasts (a `429`
    /// slows a job down and never fails it).
    Throttled(String),
    /// It may work if tried again later.
    Transient(String),
    /// It will not: the job fails with this message.
    Fatal(String),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Closed => StepError::Transient(e.to_string()),
            StoreError::Corrupt(_) | StoreError::Open(_) => StepError::Fatal(e.to_string()),
        }
    }
}

/// What a job step works with.
pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub source: SourceConfig,
    pub wakers: Arc<HashMap<String, Arc<Notify>>>,
    pub params: Params,
    pub dry_run: bool,
    pub job_id: String,
    /// `intake_events_total{origin="backfill"}` of the source, by channel.
    pub counters: Option<[metrics::Counter; 6]>,
}

impl Ctx {
    /// Counts an event a backfill ingested.
    pub fn count_event(&self, channel: intake_core::event::Channel) {
        use intake_core::event::Channel;
        if let Some(counters) = &self.counters {
            let i = Channel::ALL
                .iter()
                .position(|c| *c == channel)
                .unwrap_or(Channel::ALL.len() - 1);
            counters[i].increment(1);
        }
    }

    /// Wakes the dispatchers of the source's destinations.
    pub fn wake(&self) {
        self.wake_only(&self.source.destinations);
    }

    /// Wakes the dispatchers of `destinations`.
    pub fn wake_only(&self, destinations: &[String]) {
        for d in destinations {
            if let Some(w) = self.wakers.get(d) {
                w.notify_one();
            }
        }
    }

    /// The source's destinations that are configured (a route to a removed destination is
    /// refused by the configuration check; this is the belt to its braces).
    pub fn routes(&self) -> Vec<String> {
        self.source
            .destinations
            .iter()
            .filter(|d| self.config.destinations.iter().any(|c| &c.id == *d))
            .cloned()
            .collect()
    }
}

/// The job's kind with what it keeps between steps.
enum Work {
    Backfill(Backfiller),
    Replay,
    Requeue,
}

impl Work {
    /// One step from `cursor`: the next cursor, `None` when the job is done.
    async fn step(
        &self,
        ctx: &Ctx,
        cursor: Option<&Value>,
        report: &mut Report,
    ) -> Result<Option<Value>, StepError> {
        match self {
            Work::Backfill(b) => {
                let cursor = cursor.map(|v| Cursor(v.clone()));
                Ok(b.step(ctx, cursor.as_ref(), report).await?.map(|c| c.0))
            }
            Work::Replay => Ok(replay::step(ctx, event_cursor(cursor)?, report)
                .await?
                .map(|id| json!(id.to_string()))),
            Work::Requeue => Ok(requeue::step(ctx, event_cursor(cursor)?, report)
                .await?
                .map(|id| json!(id.to_string()))),
        }
    }
}

fn event_cursor(cursor: Option<&Value>) -> Result<Option<EventId>, StepError> {
    cursor
        .map(|v| {
            v.as_str()
                .and_then(|s| s.parse::<EventId>().ok())
                .ok_or_else(|| {
                    StepError::Fatal(format!("the job's cursor `{v}` is not an event id"))
                })
        })
        .transpose()
}

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It reached a final state.
    Finished(RecoveryState),
    /// The node is stopping: the job stays `running` and resumes elsewhere or later.
    Interrupted,
}

/// Runs `job` until it ends, is cancelled (`cancel`), or the node stops (`stop`).
pub(crate) async fn run(
    ctx: Ctx,
    job: RecoveryJob,
    cancel: CancellationToken,
    stop: CancellationToken,
) -> Ended {
    let mut report = Report::from_json(&job.report);
    let mut cursor = job.cursor.clone();
    let started_at = job.started_at.or(Some(ctx.clock.now()));
    if job.state == RecoveryState::Running {
        report.resumed += 1;
        tracing::info!(job = %job.id, "resuming a recovery job from its cursor");
    }
    let work = match work_of(&ctx, &job, &report) {
        Ok(w) => w,
        Err(e) => return finish(&ctx, &job, started_at, cursor, &report, Err(e)).await,
    };
    let mut failures = 0u32;
    loop {
        let saved = save(&ctx, &job, started_at, cursor.clone(), &report).await;
        if saved.is_some_and(|j| j.cancel_requested) {
            return finish(
                &ctx,
                &job,
                started_at,
                cursor,
                &report,
                Ok(RecoveryState::Cancelled),
            )
            .await;
        }
        let step = tokio::select! {
            s = work.step(&ctx, cursor.as_ref(), &mut report) => Ok(s),
            _ = cancel.cancelled() => Err(RecoveryState::Cancelled),
            _ = stop.cancelled() => Err(RecoveryState::Running),
        };
        let outcome = match step {
            Err(RecoveryState::Running) => return Ended::Interrupted,
            Err(state) => Ok(state),
            Ok(Ok(Some(next))) => {
                failures = 0;
                cursor = Some(next);
                continue;
            }
            Ok(Ok(None)) => {
                cursor = None;
                Ok(RecoveryState::Succeeded)
            }
            Ok(Err(StepError::Fatal(e))) => Err(e),
            Ok(Err(StepError::Throttled(e))) => {
                report.transient_failures += 1;
                match wait_out(&ctx, &job, &e, 1, &cancel, &stop).await {
                    Some(Ok(RecoveryState::Running)) => continue,
                    Some(outcome) => outcome,
                    None => return Ended::Interrupted,
                }
            }
            Ok(Err(StepError::Transient(e))) => {
                failures += 1;
                report.transient_failures += 1;
                match wait_out(&ctx, &job, &e, failures, &cancel, &stop).await {
                    Some(Ok(RecoveryState::Running)) => continue,
                    Some(outcome) => outcome,
                    None => return Ended::Interrupted,
                }
            }
        };
        return finish(&ctx, &job, started_at, cursor, &report, outcome).await;
    }
}

/// The pause after a failure that may pass: `Running` to go on, `Cancelled`, a failure when
/// there were too many in a row, or `None` when the node is stopping.
async fn wait_out(
    ctx: &Ctx,
    job: &RecoveryJob,
    error: &str,
    failures: u32,
    cancel: &CancellationToken,
    stop: &CancellationToken,
) -> Option<Result<RecoveryState, String>> {
    if failures >= MAX_TRANSIENT {
        return Some(Err(format!("{error} ({failures} failures in a row)")));
    }
    tracing::warn!(job = %job.id, error, failures, "a recovery job step failed; retrying after a pause");
    let until = ctx.clock.now().plus(pause_after(failures));
    tokio::select! {
        _ = ctx.clock.sleep_until(until) => Some(Ok(RecoveryState::Running)),
        _ = cancel.cancelled() => Some(Ok(RecoveryState::Cancelled)),
        _ = stop.cancelled() => None,
    }
}

/// The pause after the `n`th failure in a row.
pub(crate) fn pause_after(n: u32) -> Duration {
    FIRST_PAUSE
        .saturating_mul(1u32 << n.saturating_sub(1).min(10))
        .min(MAX_PAUSE)
}

fn work_of(ctx: &Ctx, job: &RecoveryJob, report: &Report) -> Result<Work, String> {
    Ok(match job.kind {
        RecoveryKind::Backfill => Work::Backfill(
            Backfiller::new(ctx, &ctx.params, report).map_err(|e| match e {
                StepError::Fatal(m) | StepError::Transient(m) | StepError::Throttled(m) => m,
            })?,
        ),
        RecoveryKind::Replay => Work::Replay,
        RecoveryKind::Requeue => Work::Requeue,
    })
}

/// Writes the job's final state (`Err`: failed with that message).
async fn finish(
    ctx: &Ctx,
    job: &RecoveryJob,
    started_at: Option<Timestamp>,
    cursor: Option<Value>,
    report: &Report,
    outcome: Result<RecoveryState, String>,
) -> Ended {
    let (state, error) = match outcome {
        Ok(s) => (s, None),
        Err(e) => (RecoveryState::Failed, Some(e)),
    };
    match &error {
        Some(e) => {
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), error = %e, "recovery job failed")
        }
        None => {
            tracing::info!(job = %job.id, kind = job.kind.as_str(), state = state.as_str(), done = report.done, "recovery job ended")
        }
    }
    // A final state must be written: the store may be down for a moment.
    for attempt in 0..MAX_TRANSIENT {
        let update = update(
            ctx,
            job,
            state,
            started_at,
            cursor.clone(),
            report,
            error.clone(),
        );
        match ctx.store.save_recovery(update).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot record the recovery job's end; retrying");
                ctx.clock
                    .sleep_until(ctx.clock.now().plus(pause_after(attempt + 1)))
                    .await;
            }
        }
    }
    Ended::Finished(state)
}

/// Saves a step; the job as stored afterwards, or `None` when the store could not be written
/// (the step's work is kept in the store's rows; only the cursor is behind).
async fn save(
    ctx: &Ctx,
    job: &RecoveryJob,
    started_at: Option<Timestamp>,
    cursor: Option<Value>,
    report: &Report,
) -> Option<RecoveryJob> {
    let update = update(
        ctx,
        job,
        RecoveryState::Running,
        started_at,
        cursor,
        report,
        None,
    );
    match ctx.store.save_recovery(update).await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "cannot save the recovery job's progress");
            None
        }
    }
}

fn update(
    ctx: &Ctx,
    job: &RecoveryJob,
    state: RecoveryState,
    started_at: Option<Timestamp>,
    cursor: Option<Value>,
    report: &Report,
    error: Option<String>,
) -> RecoveryUpdate {
    let now = ctx.clock.now();
    let mut report = report.clone();
    report.updated_at = Some(now);
    RecoveryUpdate {
        id: job.id.clone(),
        state,
        cursor,
        progress: progress(&report),
        report: report.to_json(),
        error,
        started_at,
        updated_at: now,
        finished_at: state.is_final().then_some(now),
    }
}

/// The few numbers a progress bar shows.
pub(crate) fn progress(r: &Report) -> Value {
    json!({
        "pages": r.pages,
        "seen": r.seen,
        "todo": r.todo.total,
        "done": r.done,
        "requests": r.sor.as_ref().map_or(0, |s| s.requests),
        "estimated_seconds": r.sor.as_ref().map(|s| s.estimated_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_two_seconds_up_to_two_minutes() {
        let got: Vec<u64> = (1..=9).map(|n| pause_after(n).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 64, 120, 120, 120]);
        assert_eq!(pause_after(u32::MAX), MAX_PAUSE);
    }

    #[test]
    fn a_store_that_cannot_commit_is_waited_out_and_corruption_is_not() {
        assert!(matches!(
            StepError::from(StoreError::Unavailable("disk full".into())),
            StepError::Transient(_)
        ));
        assert!(matches!(
            StepError::from(StoreError::Corrupt("bad row".into())),
            StepError::Fatal(_)
        ));
    }

    #[test]
    fn a_cursor_must_be_an_event_id() {
        assert_eq!(event_cursor(None), Ok(None));
        assert!(matches!(
            event_cursor(Some(&json!(42))),
            Err(StepError::Fatal(_))
        ));
        let id = EventId::generate(Timestamp(1_700_000_000_000));
        assert_eq!(event_cursor(Some(&json!(id.to_string()))), Ok(Some(id)));
    }
}
