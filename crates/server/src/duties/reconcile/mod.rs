//! Continuous reconciliation: the singleton duty `reconcile` compares each source's system of
//! record, through its API, with what intake received, and keeps the *gaps* it finds open
//! until every missing event has arrived. It catches a system of record that silently stopped
//! sending (one that disabled our webhook after failures, say) whatever the traffic volume,
//! which a flow detector cannot judge quickly on a quiet tenant. The monitor duty turns the
//! open gaps into `source_gap` alerts (see [`state`] and `intake_monitor::gap`).
//!
//! Every `reconcile.interval` on the injected clock, for each source with `api` credentials:
//!
//! 1. **Re-check the open gaps against the store only** (no request to the system of record):
//!    keys that arrived since (a late webhook, a backfill) are no longer missing; a gap with
//!    none left closes.
//! 2. **Skip the source while a backfill job of it is queued or running**: the job covers the
//!    window and needs the API budget. The state says so; the windows are checked once it
//!    ends (they are not advanced past).
//! 3. **Check the windows due** ([`window::due`]): from the end of the last window checked
//!    (stored, so a restart neither skips nor repeats a window) up to `now − lag`, each at most
//!    an interval long. The listing goes through the source's backfill client built with
//!    `max(1, floor(api.rate_limit_per_minute × budget_share))` requests a minute
//!    ([`budgeted`]), so reconciliation never starves a recovery of the same API.
//! 4. **With `auto_backfill`, start a backfill job for each new gap** (through the same checks
//!    as the API, `created_by = "reconcile"`), never a second one for a gap that has one. The
//!    windows still due then wait for the job to end, as in 2.
//!
//! | module | its one job |
//! |---|---|
//! | [`window`] | which windows are due, and when ticks fall (pure) |
//! | [`state`] | the state document per source and its bookkeeping (pure, plus load/save) |
//! | [`check`] | one window's listing compared with the store |
//! | [`view`] | what `GET /api/v1/reconciliation` shows, read from the state documents |

pub mod check;
pub mod state;
pub mod view;
pub mod window;

use std::collections::HashSet;

use futures::future::join_all;
use intake_connectors::backfill::{Backfill, DEFAULT_PER_MINUTE};
use intake_core::config::{ReconcileConfig, SourceConfig};
use intake_core::Timestamp;
use intake_store::{RecoveryFilter, RecoveryKind, RecoveryState, StoreError};
use tokio_util::sync::CancellationToken;

use super::recovery::params::{self, JobRequest};
use super::recovery::{new_id, new_job};
use super::Handles;
use state::{Note, SourceState};
use window::Span;

/// The duty's name.
pub const RECONCILE: &str = "reconcile";

/// Who the backfill jobs reconciliation starts are created by.
pub const CREATED_BY: &str = "reconcile";

/// The most keys one dedupe lookup asks about.
const LOOKUP_CHUNK: usize = 500;

/// `source` as reconciliation lists it: the same API, allowed only `budget_share` of its
/// per-minute budget (at least one request a minute).
pub fn budgeted(source: &SourceConfig, config: &ReconcileConfig) -> SourceConfig {
    let mut s = source.clone();
    if let Some(api) = s.api.as_mut() {
        let full = api.rate_limit_per_minute.unwrap_or(DEFAULT_PER_MINUTE);
        api.rate_limit_per_minute = Some(config.requests_per_minute(full));
    }
    s
}

/// The sources reconciliation checks: those with API credentials, when it is enabled.
pub fn reconciled(config: &intake_core::config::Config) -> impl Iterator<Item = &SourceConfig> {
    let on = config.reconcile.enabled;
    config.sources.iter().filter(move |s| on && s.api.is_some())
}

/// One source and the client that lists its system of record.
struct Reconciled {
    source: SourceConfig,
    client: Result<Box<dyn Backfill>, String>,
}

/// The duty's body: a tick every `reconcile.interval` on the clock, until `stop`.
pub(crate) async fn run(h: Handles, stop: CancellationToken) {
    let config = h.config.reconcile.clone();
    if !config.enabled {
        tracing::warn!("reconcile.enabled = false: sources are not compared with their systems of record, and source_gap cannot fire");
        stop.cancelled().await;
        return;
    }
    let sources: Vec<Reconciled> = reconciled(&h.config)
        .map(|s| Reconciled {
            client: intake_connectors::backfill_for(&budgeted(s, &config), h.clock.clone())
                .map_err(|e| e.to_string()),
            source: s.clone(),
        })
        .collect();
    if sources.is_empty() {
        tracing::info!("no source has `api` credentials: nothing to reconcile");
    }
    let interval = config.interval.0;
    loop {
        let next = window::next_tick(h.clock.now(), interval);
        tokio::select! {
            _ = h.clock.sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        let now = h.clock.now();
        let ticks = sources.iter().map(|r| tick(&h, r, now));
        tokio::select! {
            _ = join_all(ticks) => {}
            // What a tick finished is saved; a window cut short is checked again next time.
            _ = stop.cancelled() => return,
        }
    }
}

/// One tick for one source; failures are logged and recorded, and the next tick retries.
async fn tick(h: &Handles, r: &Reconciled, now: Timestamp) {
    let id = &r.source.id;
    let mut st = match state::load(&*h.store, id).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!(source = %id, error = %e, "reconciliation cannot read its state; retrying at the next tick");
            return;
        }
    };
    if let Err(e) = settle(h, &r.source, &mut st, now).await {
        tracing::warn!(source = %id, error = %e, "reconciliation cannot re-check its open gaps; retrying at the next tick");
        return;
    }
    match running_backfill(h, id).await {
        Ok(Some(job)) => {
            st.skipped = Some(skip_note(&job, st.checked_until, now));
            return save(h, id, &st).await;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(source = %id, error = %e, "reconciliation cannot read the recovery jobs; retrying at the next tick");
            return save(h, id, &st).await;
        }
    }
    let client = match &r.client {
        Ok(c) => c.as_ref(),
        Err(e) => {
            st.error = Some(Note {
                at: now,
                message: format!("the source's API client cannot be built: {e}"),
                job: None,
            });
            return save(h, id, &st).await;
        }
    };
    let config = &h.config.reconcile;
    let due = window::due(st.checked_until, now, config.lag.0, config.interval.0);
    if let Some(gone) = due.skipped {
        tracing::warn!(source = %id, from = %gone.from, to = %gone.to, "reconciliation was more than a day behind; the oldest windows are not checked");
        st.checked_until = Some(gone.to);
    }
    for w in &due.windows {
        match check::check(client, &*h.store, id, *w).await {
            Ok(found) => {
                record(h, &r.source, &mut st, *w, found);
                // Before the gap is saved, so that what the monitor reads names its job.
                if start_backfills(h, &r.source, &mut st).await {
                    // The job needs the budget: the windows left wait for it, as at a tick
                    // that finds a backfill running.
                    save(h, id, &st).await;
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(source = %id, from = %w.from, to = %w.to, error = %e, "reconciliation could not check a window; it is checked again at the next tick");
                st.error = Some(Note {
                    at: now,
                    message: format!("the window {}–{} could not be checked: {e}", w.from, w.to),
                    job: None,
                });
                break;
            }
        }
        save(h, id, &st).await;
    }
    if let Some(gone) = due.skipped {
        st.skipped = Some(Note {
            at: now,
            message: format!(
                "the windows from {} to {} were more than a day behind and were not checked; \
                 `intake recover backfill --source {id} --from {} --to {} --dry-run` checks them",
                gone.from, gone.to, gone.from, gone.to
            ),
            job: None,
        });
    }
    // Gaps that were open before `auto_backfill` was turned on get their job too.
    start_backfills(h, &r.source, &mut st).await;
    save(h, id, &st).await;
}

/// Records a window's check, and logs a gap it opened.
fn record(h: &Handles, source: &SourceConfig, st: &mut SourceState, w: Span, found: check::Found) {
    let sample = h.config.reconcile.sample;
    let missing = found.missing.len();
    // The listing took its time (it is paced): the check is dated when it ended.
    let at = h.clock.now();
    let opened = st.record_check(w, at, found.listed, found.missing, found.requests, sample);
    if opened.is_some() {
        tracing::warn!(
            source = %source.id, tenant = %source.tenant, from = %w.from, to = %w.to,
            listed = found.listed, missing, requests = found.requests,
            "reconciliation found events the system of record has and intake never received"
        );
    } else {
        tracing::debug!(source = %source.id, from = %w.from, to = %w.to, listed = found.listed, requests = found.requests, "reconciled a window: nothing missing");
    }
}

/// Re-checks the open gaps against the store, and refreshes (or, when it was never created,
/// creates) the backfill job of each.
async fn settle(
    h: &Handles,
    source: &SourceConfig,
    st: &mut SourceState,
    now: Timestamp,
) -> Result<(), StoreError> {
    let keys = st.missing_keys();
    let mut arrived = HashSet::new();
    for chunk in keys.chunks(LOOKUP_CHUNK) {
        arrived.extend(
            h.store
                .known_dedupe_keys(&source.id, chunk.to_vec())
                .await?,
        );
    }
    for w in st.settle(&arrived, now) {
        tracing::info!(source = %source.id, from = %w.from, to = %w.to, "a reconciliation gap closed: every missing event has arrived");
    }
    for i in 0..st.gaps.len() {
        let Some(job_id) = st.gaps[i].backfill.clone() else {
            continue;
        };
        match h.store.get_recovery(&job_id).await? {
            Some(job) => st.gaps[i].backfill_state = Some(job.state.as_str().to_string()),
            // Its id was recorded but the job not created (the node stopped in between).
            None => {
                let window = st.gaps[i].window;
                st.gaps[i].backfill_state = Some(create_job(h, source, window, &job_id, now).await);
            }
        }
    }
    Ok(())
}

/// The source's backfill job that is queued or running, if any.
async fn running_backfill(
    h: &Handles,
    source: &str,
) -> Result<Option<intake_store::RecoveryJob>, StoreError> {
    let jobs = h
        .store
        .list_recoveries(RecoveryFilter {
            source: Some(source.to_string()),
            states: vec![RecoveryState::Queued, RecoveryState::Running],
            limit: 100,
            ..RecoveryFilter::default()
        })
        .await?;
    Ok(jobs.into_iter().find(|j| j.kind == RecoveryKind::Backfill))
}

/// Why a tick left the system of record alone while a backfill job runs.
fn skip_note(job: &intake_store::RecoveryJob, until: Option<Timestamp>, now: Timestamp) -> Note {
    let from = until.map_or_else(|| "now".to_string(), |t| t.to_string());
    Note {
        at: now,
        message: format!(
            "backfill job {} is {}: it covers the source's windows and needs its API budget; \
             the windows from {from} are checked once it ends",
            job.id,
            job.state.as_str()
        ),
        job: Some(job.id.clone()),
    }
}

/// With `auto_backfill`, a backfill job for each open gap that has none; `true` if it started
/// any. The job's id is saved with the gap before the job is created: a node that stops in
/// between leaves an id whose job the next tick creates ([`settle`]), never a second job.
async fn start_backfills(h: &Handles, source: &SourceConfig, st: &mut SourceState) -> bool {
    let needing = st.needing_backfill(h.config.reconcile.auto_backfill);
    for &i in &needing {
        let now = h.clock.now();
        let id = new_id(now);
        st.gaps[i].backfill = Some(id.clone());
        save(h, &source.id, st).await;
        let window = st.gaps[i].window;
        st.gaps[i].backfill_state = Some(create_job(h, source, window, &id, now).await);
    }
    !needing.is_empty()
}

/// Creates the backfill job `id` for a gap's window, through the checks the API applies, and
/// wakes the recovery duty. Returns the job's state, or why it could not be created.
async fn create_job(
    h: &Handles,
    source: &SourceConfig,
    window: Span,
    id: &str,
    now: Timestamp,
) -> String {
    let req = JobRequest {
        kind: Some("backfill".into()),
        source: Some(source.id.clone()),
        from: Some(window.from.to_rfc3339()),
        to: Some(window.to.to_rfc3339()),
        ..JobRequest::default()
    };
    let checked = match params::check(&req, &h.config, |_| true, now, id) {
        Ok(c) => c,
        Err(r) => {
            tracing::error!(source = %source.id, error = %r.detail, "reconciliation cannot start a backfill job");
            return format!("refused: {}", r.detail);
        }
    };
    let job = new_job(id.to_string(), checked, CREATED_BY.to_string(), now);
    match h.store.create_recovery(job).await {
        Ok(()) => {
            h.recoveries.notify_one();
            tracing::warn!(source = %source.id, job = %id, from = %window.from, to = %window.to, "reconciliation started a backfill job for a gap");
            RecoveryState::Queued.as_str().to_string()
        }
        Err(e) => {
            tracing::warn!(source = %source.id, job = %id, error = %e, "reconciliation cannot store a backfill job; it is created at the next tick");
            "not created yet".to_string()
        }
    }
}

async fn save(h: &Handles, source: &str, st: &SourceState) {
    if let Err(e) = state::save(&*h.store, source, st).await {
        tracing::warn!(source, error = %e, "reconciliation cannot save its state; the windows since the last save are checked again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::Config;

    #[test]
    fn reconciliation_lists_with_its_share_of_the_source_budget() {
        let text = |api: &str| {
            format!(
                r#"
                [[tenants]]
                id = "t"
                [[destinations]]
                id = "d"
                url = "http://127.0.0.1:9/"
                secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                [[sources]]
                id = "s"
                tenant = "t"
                kind = "kustomer"
                secrets = ["x"]
                destinations = ["d"]
                {api}
                "#
            )
        };
        let cases = [
            (
                r#"api = { base_url = "http://a", token = "k", rate_limit_per_minute = 1000 }"#,
                Some(200),
            ),
            (r#"api = { base_url = "http://a", token = "k" }"#, Some(12)),
            (
                r#"api = { base_url = "http://a", token = "k", rate_limit_per_minute = 3 }"#,
                Some(1),
            ),
            ("", None),
        ];
        for (api, want) in cases {
            let c = Config::from_toml_str(&text(api)).unwrap();
            let b = budgeted(&c.sources[0], &c.reconcile);
            assert_eq!(
                b.api.as_ref().and_then(|a| a.rate_limit_per_minute),
                want,
                "{api}"
            );
            // The source itself is untouched: its recoveries keep the whole budget.
            assert_eq!(reconciled(&c).count(), usize::from(want.is_some()));
        }
    }
}
