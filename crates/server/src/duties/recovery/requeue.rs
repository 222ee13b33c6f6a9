//! The requeue job: give the deliveries of a window that are stuck a fresh pending state —
//! an in-flight lease that ended and was never reaped, `retrying` deliveries when asked
//! (`include_retrying`: a destination that is fixed need not wait out its back-off), a
//! destination no longer routed from the source (closed with the reason, and re-routed by the
//! current configuration), and events with no delivery at all to a routed destination
//! ("received but never queued"). The store decides each page in one transaction; a second
//! run finds nothing left to change.

use intake_core::EventId;
use intake_store::RequeueRequest;

use super::job::{Ctx, StepError};
use super::report::{Item, Report};

/// Events looked at per step.
pub const PAGE: usize = 500;

/// Requeues one page of events after `after`; the last event id when more may follow.
pub(super) async fn step(
    ctx: &Ctx,
    after: Option<EventId>,
    report: &mut Report,
) -> Result<Option<EventId>, StepError> {
    let p = &ctx.params;
    let now = ctx.clock.now();
    let page = ctx
        .store
        .requeue_page(RequeueRequest {
            recovery: ctx.job_id.clone(),
            source: ctx.source.id.clone(),
            from: p.from,
            to: p.to,
            after,
            limit: PAGE,
            routes: ctx.routes(),
            stale_before: now,
            include_retrying: p.include_retrying,
            dry_run: ctx.dry_run,
            now,
            sample: p.sample.saturating_sub(report.items.len()),
        })
        .await?;
    report.seen += page.events;
    let q = &mut report.requeue;
    q.stale_leases += page.stale_leases;
    q.retrying_reset += page.retrying_reset;
    q.rerouted += page.rerouted;
    q.created += page.created;
    let changed = page.stale_leases + page.retrying_reset + page.rerouted + page.created;
    report.todo.total += changed;
    for item in &page.items {
        report.list(p.sample, || Item {
            key: item.event_id.to_string(),
            event_type: String::new(),
            channel: String::new(),
            object_id: None,
            conversation_id: None,
            occurred_at: None,
            destination: Some(item.destination.clone()),
            action: item.action.clone(),
        });
    }
    if !ctx.dry_run && changed > 0 {
        report.done += changed;
        ctx.wake();
    }
    report.pages += 1;
    Ok((page.events as usize == PAGE)
        .then_some(page.last)
        .flatten())
}
