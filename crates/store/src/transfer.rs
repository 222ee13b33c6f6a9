//! Copying an embedded (SQLite) installation into PostgreSQL: `intake migrate-store`. (Not to
//! be confused with the schema migrations, which each backend runs when it opens.)
//!
//! Events are copied in id order, each page with its deliveries and attempts in one
//! PostgreSQL transaction, so the destination never holds an event without its deliveries.
//! Every row keeps its id and every insert ignores rows already there, so a copy that stopped
//! half way can be run again (`--resume`) and changes nothing the second time. Counters are
//! written with the source's values (not added), which is idempotent too. At the end the row
//! counts of both sides must agree.

use intake_core::Timestamp;

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{Result, Store, StoreError};

pub use crate::rows::{
    AttemptRow, CounterRow, DeliveryRow, EventRow, EventRows, RejectionRow, TableCounts,
};

/// Events copied per transaction.
const PAGE: usize = 500;

/// Where a copy is.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// `done` of `total` events (with their deliveries and attempts) copied.
    Events { done: i64, total: i64 },
    /// Rejections copied.
    Rejections { done: i64 },
    /// Counter rows copied.
    Counters { done: i64 },
}

/// Copies everything from `from` into `to`. Refuses a destination that holds anything unless
/// `resume` (a previous copy stopped half way). Returns the counts both sides agree on.
pub async fn copy(
    from: &SqliteStore,
    to: &PostgresStore,
    resume: bool,
    mut progress: impl FnMut(Progress),
) -> Result<TableCounts> {
    let source = from.table_counts().await?;
    let before = to.table_counts().await?;
    if !before.is_empty() && !resume {
        return Err(StoreError::Open(format!(
            "the destination is not empty ({before}); pass --resume to continue a copy that \
             stopped, or use an empty database"
        )));
    }
    let mut done = 0i64;
    let mut after: Option<String> = None;
    loop {
        let page = from.export_events(after.clone(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.event.id.clone());
        done += page.len() as i64;
        to.import_events(page).await?;
        progress(Progress::Events {
            done,
            total: source.events,
        });
    }
    let mut after_id = 0i64;
    let mut rejections = 0i64;
    loop {
        let page = from.export_rejections(after_id, PAGE).await?;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        rejections += page.len() as i64;
        to.import_rejections(page).await?;
        progress(Progress::Rejections { done: rejections });
    }
    let counters = from.export_counters().await?;
    let n = counters.len() as i64;
    for chunk in counters.chunks(PAGE) {
        to.import_counters(chunk.to_vec()).await?;
    }
    progress(Progress::Counters { done: n });
    // The monitor's history and memory: hourly counters, its alert book and flow
    // expectations, and the log of alert transitions.
    let hourly = from.export_hourly_counters().await?;
    for chunk in hourly.chunks(PAGE) {
        to.import_hourly_counters(chunk.to_vec()).await?;
    }
    to.import_state(from.export_state().await?).await?;
    to.import_alert_transitions(from.export_alert_transitions().await?)
        .await?;
    // Silences still in force (not announced again), and the notifications still waiting for
    // their notifier: a move must not drop a page that was decided but not yet delivered.
    let far_past = Timestamp(0);
    let copied: std::collections::HashSet<String> = to
        .list_silences(far_past)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    for silence in from.list_silences(far_past).await? {
        if !copied.contains(&silence.id) {
            to.create_silence(silence, Vec::new()).await?;
        }
    }
    // Minted API tokens (hashes only), revoked ones included so a revocation survives the move.
    let tokens: std::collections::HashSet<String> = to
        .list_tokens(None)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    for token in from.list_tokens(None).await? {
        if !tokens.contains(&token.id) {
            to.create_token(token).await?;
        }
    }
    // Recovery jobs, finished ones too (their reports are the record of what was recovered);
    // a job still running resumes from its cursor on the new store.
    to.import_recoveries(from.export_recoveries().await?)
        .await?;
    // Drills, finished ones too (their reports are the record of what alerting proved).
    to.import_drills(from.export_drills().await?).await?;
    // Copied once: a resumed copy finds them there already.
    if to.list_notifications(None, 1).await?.is_empty() {
        let waiting = from.export_pending_notifications().await?;
        if !waiting.is_empty() {
            to.enqueue_notifications(crate::NotificationBatch {
                notifications: waiting,
                state: Vec::new(),
                announced_expiries: Vec::new(),
                incidents: Vec::new(),
            })
            .await?;
        }
    }
    // Incidents with their timelines and the notices they sent (the record of who was told
    // what and when), after the outbox above: notices still waiting came with it.
    let (incidents, entries) = from.export_incidents().await?;
    let notices = from.export_finished_incident_notices().await?;
    to.import_incidents(incidents, entries, notices).await?;
    to.finish_import().await?;

    let after = to.table_counts().await?;
    if after != source {
        return Err(StoreError::Corrupt(format!(
            "the copy does not match its source: source {source}; destination {after}"
        )));
    }
    Ok(after)
}
