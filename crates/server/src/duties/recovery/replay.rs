//! The replay job: deliver again the events of a window that match a filter, as new
//! deliveries with origin `replay` and their own attempts; the original deliveries and their
//! history stay. The same job run twice delivers nothing the second time: each replayed
//! delivery carries the job's replay key (same parameters, same key), and the store makes at
//! most one delivery per event, destination and key.

use std::collections::{BTreeSet, HashSet};

use intake_core::EventId;
use intake_store::{EventFilter, EventSummary, RecoveryFilter, RecoveryKind, ReplayBatch};

use super::job::{Ctx, StepError};
use super::params::Filter;
use super::report::{object_kind, Item, Report};

/// Events read per step.
pub const PAGE: usize = 200;

/// Replays one page of events after `after`; the last event id when more may follow.
pub(super) async fn step(
    ctx: &Ctx,
    after: Option<EventId>,
    report: &mut Report,
) -> Result<Option<EventId>, StepError> {
    let p = &ctx.params;
    let events = ctx
        .store
        .list_events(EventFilter {
            source: Some(ctx.source.id.clone()),
            state: p.filter.state,
            completion: p.filter.completion,
            destination: p.filter.destination.clone(),
            event_type: p.filter.event_type.clone(),
            origin: p.filter.origin,
            channel: p.filter.channel.clone(),
            from: Some(p.from),
            to: Some(p.to),
            after,
            ascending: true,
            limit: PAGE,
            ..EventFilter::default()
        })
        .await?;
    let configured: Vec<&str> = ctx
        .config
        .destinations
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    // A dry run writes nothing, so the store cannot tell it what a job with the same key
    // replayed already; the deliveries those jobs made (each names its job) do.
    let earlier = if ctx.dry_run {
        same_key_jobs(ctx).await?
    } else {
        HashSet::new()
    };
    let mut items = Vec::new();
    for e in &events {
        report.seen += 1;
        for destination in targets(e, &p.filter, &configured) {
            let replayed = e.deliveries.iter().any(|d| {
                d.destination == destination
                    && d.recovery.as_ref().is_some_and(|r| earlier.contains(r))
            });
            if replayed {
                report.already_done += 1;
            }
            report.todo.add(
                e.channel.as_str(),
                &e.event_type,
                object_kind(e.object_type.as_deref()),
            );
            report.list(p.sample, || Item {
                key: e.id.to_string(),
                event_type: e.event_type.clone(),
                channel: e.channel.clone(),
                object_id: e.object_id.clone(),
                conversation_id: e.conversation_id.clone(),
                occurred_at: e.occurred_at,
                destination: Some(destination.clone()),
                action: "replay".into(),
            });
            items.push((e.id.clone(), destination));
        }
    }
    if !ctx.dry_run && !items.is_empty() {
        let destinations: Vec<String> = items.iter().map(|(_, d)| d.clone()).collect();
        let outcome = ctx
            .store
            .replay_deliveries(ReplayBatch {
                recovery: ctx.job_id.clone(),
                key: p.replay_key.clone(),
                items,
                now: ctx.clock.now(),
            })
            .await?;
        report.done += outcome.created;
        report.already_done += outcome.already;
        ctx.wake_only(&destinations);
    }
    report.pages += 1;
    Ok((events.len() == PAGE)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten())
}

/// The real replay jobs of the source with this job's replay key: what they delivered, a run of
/// this job would not deliver again. (The newest thousand jobs of the source are looked at.)
async fn same_key_jobs(ctx: &Ctx) -> Result<HashSet<String>, StepError> {
    let jobs = ctx
        .store
        .list_recoveries(RecoveryFilter {
            source: Some(ctx.source.id.clone()),
            limit: 1000,
            ..RecoveryFilter::default()
        })
        .await?;
    Ok(jobs
        .into_iter()
        .filter(|j| {
            j.kind == RecoveryKind::Replay
                && !j.dry_run
                && j.params.get("replay_key").and_then(|k| k.as_str())
                    == Some(ctx.params.replay_key.as_str())
        })
        .map(|j| j.id)
        .collect())
}

/// The destinations an event is replayed to: those of its deliveries that match the filter's
/// state and destination and are still configured, each once.
pub(super) fn targets(e: &EventSummary, filter: &Filter, configured: &[&str]) -> Vec<String> {
    let set: BTreeSet<String> = e
        .deliveries
        .iter()
        .filter(|d| filter.state.is_none_or(|s| d.state == s))
        .filter(|d| filter.completion.is_none_or(|c| d.completion == Some(c)))
        .filter(|d| {
            filter
                .destination
                .as_ref()
                .is_none_or(|f| &d.destination == f)
        })
        .filter(|d| configured.contains(&d.destination.as_str()))
        .map(|d| d.destination.clone())
        .collect();
    set.into_iter().collect()
}
