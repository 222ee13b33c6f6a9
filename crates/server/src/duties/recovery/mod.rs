//! Recovery jobs: backfill, replay and requeue, run as the singleton duty `recovery` (one node
//! at a time on PostgreSQL; with SQLite, the one node).
//!
//! A job is created by the admin API (`POST /api/v1/recoveries`, checked by
//! [`params::check`]) as `queued`, with its parameters. The duty looks for queued and running
//! jobs every [`POLL`] (at once when this node's API created one), starts them — one at a
//! time per source unless a job asks to run `concurrent`ly — and each runs page by page
//! ([`job`]), saving its cursor and report after each page, so that a job whose node stopped
//! continues from its last page on the node that next holds the duty. A cancellation asked
//! through the API is seen at the job's next page, or at once on this node.
//!
//! | module | its one job |
//! |---|---|
//! | [`params`] | the request checked into a job's parameters (pure) |
//! | [`report`] | the report: counts by channel, type and object, items, SOR requests (pure) |
//! | [`job`] | one job's life: steps, saves, pauses after failures, final state |
//! | [`backfill`], [`replay`], [`requeue`] | one step of each kind |

pub mod backfill;
pub mod job;
pub mod params;
pub mod replay;
pub mod report;
pub mod requeue;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use intake_core::{RecoveryId, Timestamp};
use intake_store::{RecoveryFilter, RecoveryJob, RecoveryState};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Handles;
use job::{Ctx, Ended};
use params::{Checked, Params};

/// The duty's name.
pub const RECOVERY: &str = "recovery";

/// How often the duty looks for jobs to start or cancel.
pub const POLL: Duration = Duration::from_secs(1);

/// The most jobs the duty looks at in one pass.
const BATCH: usize = 200;

/// A new job id.
pub fn new_id(now: Timestamp) -> String {
    RecoveryId::generate(now).to_string()
}

/// A new job for a checked request, queued.
pub fn new_job(id: String, checked: Checked, created_by: String, now: Timestamp) -> RecoveryJob {
    RecoveryJob {
        id,
        kind: checked.kind,
        tenant: checked.source.tenant.clone(),
        source: checked.source.id.clone(),
        dry_run: checked.dry_run,
        state: RecoveryState::Queued,
        params: serde_json::to_value(&checked.params).unwrap_or(json!({})),
        cursor: None,
        progress: json!({}),
        report: json!({}),
        error: None,
        cancel_requested: false,
        created_by,
        created_at: now,
        started_at: None,
        updated_at: now,
        finished_at: None,
    }
}

/// A job running on this node.
struct Running {
    source: String,
    concurrent: bool,
    cancel: CancellationToken,
    task: JoinHandle<Ended>,
}

/// The duty: starts queued jobs and resumes running ones, until `stop`.
pub(crate) async fn run(h: Handles, stop: CancellationToken) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let jobs_stop = CancellationToken::new();
    loop {
        running.retain(|_, r| !r.task.is_finished());
        match h
            .store
            .list_recoveries(RecoveryFilter {
                states: vec![RecoveryState::Queued, RecoveryState::Running],
                limit: BATCH,
                ..RecoveryFilter::default()
            })
            .await
        {
            Ok(jobs) => start_due(&h, jobs, &mut running, &jobs_stop),
            Err(e) => tracing::warn!(error = %e, "cannot read the recovery jobs"),
        }
        let next = h.clock.now().plus(POLL);
        tokio::select! {
            _ = h.clock.sleep_until(next) => {}
            _ = h.recoveries.notified() => {}
            _ = stop.cancelled() => break,
        }
    }
    // The node is stopping: each job stops after saving what it finished; it stays `running`
    // and resumes from its cursor.
    jobs_stop.cancel();
    for (_, r) in running {
        let _ = r.task.await;
    }
}

/// Starts the jobs that may start, oldest first, and passes cancellations to running ones.
fn start_due(
    h: &Handles,
    mut jobs: Vec<RecoveryJob>,
    running: &mut HashMap<String, Running>,
    jobs_stop: &CancellationToken,
) {
    jobs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    // The sources with a job that runs alone, running or waiting for its turn.
    let mut busy: HashSet<String> = running
        .values()
        .filter(|r| !r.concurrent)
        .map(|r| r.source.clone())
        .collect();
    for job in jobs {
        if let Some(r) = running.get(&job.id) {
            if job.cancel_requested {
                r.cancel.cancel();
            }
            continue;
        }
        let params: Params = match serde_json::from_value(job.params.clone()) {
            Ok(p) => p,
            Err(e) => {
                fail_unreadable(h, job, e.to_string());
                continue;
            }
        };
        // One at a time per source: a job waits for the source's earlier ones, unless it or
        // they run concurrently. A concurrent job starts at once ("beside the source's other
        // jobs instead of after them", as the API and the CLI promise): a replay of dead
        // letters must not wait for an hours-long backfill of the same source to end.
        let blocked = !params.concurrent && busy.contains(&job.source);
        if !params.concurrent {
            busy.insert(job.source.clone());
        }
        if blocked {
            continue;
        }
        if let Some(r) = start(h, job, params, jobs_stop) {
            running.insert(r.0, r.1);
        }
    }
}

/// Starts one job; `None` when its source is no longer configured (it fails).
fn start(
    h: &Handles,
    job: RecoveryJob,
    params: Params,
    jobs_stop: &CancellationToken,
) -> Option<(String, Running)> {
    let Some(source) = h
        .config
        .sources
        .iter()
        .find(|s| s.id == job.source)
        .cloned()
    else {
        let why = format!("source `{}` is no longer configured", job.source);
        fail_unreadable(h, job, why);
        return None;
    };
    let cancel = CancellationToken::new();
    if job.cancel_requested {
        cancel.cancel();
    }
    let ctx = Ctx {
        store: h.store.clone(),
        clock: h.clock.clone(),
        config: h.config.clone(),
        source,
        wakers: h.wakers.clone(),
        params,
        dry_run: job.dry_run,
        job_id: job.id.clone(),
        counters: h.backfilled.get(&job.source).cloned(),
    };
    let id = job.id.clone();
    let r = Running {
        source: job.source.clone(),
        concurrent: ctx.params.concurrent,
        cancel: cancel.clone(),
        task: tokio::spawn(job::run(ctx, job, cancel, jobs_stop.clone())),
    };
    tracing::info!(job = %id, source = %r.source, "started a recovery job");
    Some((id, r))
}

/// Fails a job that cannot be run at all, in the background.
fn fail_unreadable(h: &Handles, job: RecoveryJob, why: String) {
    let store = h.store.clone();
    let now = h.clock.now();
    tokio::spawn(async move {
        let update = intake_store::RecoveryUpdate {
            id: job.id.clone(),
            state: RecoveryState::Failed,
            cursor: job.cursor,
            progress: job.progress,
            report: job.report,
            error: Some(why),
            started_at: job.started_at,
            updated_at: now,
            finished_at: Some(now),
        };
        if let Err(e) = store.save_recovery(update).await {
            tracing::warn!(job = %job.id, error = %e, "cannot record that a recovery job cannot run");
        }
    });
}
