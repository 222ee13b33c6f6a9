//! The backfill job: list what the system of record has for a window through the connector's
//! backfill client, compare it by dedupe key with what was received, and ingest what is missing
//! through the store's ingest, with origin `backfill`.
//!
//! * The listing window is `[from − margin, to + margin]`, but only events that happened
//!   inside `[from, to]` are ever injected; the rest are counted as `outside_window`.
//! * Each page is compared and ingested before the next is read, and the cursor of the next
//!   page is saved only after that: a job stopped anywhere resumes at the page it was on, and
//!   what that page already ingested is then "already received" (the dedupe key), never twice.
//! * Within a conversation, the events are ingested in the system of record's order, and the
//!   conversation's first event is delivered before the others are ingested (bounded by
//!   [`ORDER_WAIT`], after which a failing destination cannot hold the job up).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use intake_connectors::backfill::{ApiStats, Backfill, BackfillError, Cursor, Recovered, Window};
use intake_core::delivery::DeliveryState;
use intake_core::event::Origin;
use intake_core::{DeliveryId, EventId};
use intake_store::NewEvent;

use super::job::{Ctx, StepError};
use super::params::Params;
use super::report::{Item, Report, SorUse};

/// How long the events of a conversation wait for its first event's delivery.
pub const ORDER_WAIT: Duration = Duration::from_secs(30);
/// How often that wait looks.
const ORDER_POLL: Duration = Duration::from_millis(25);
/// How many events are committed at once (the group commit batches them).
const INGEST_CONCURRENCY: usize = 32;
/// The most keys one dedupe lookup asks about.
const LOOKUP_CHUNK: usize = 500;

/// A backfill job's client and window.
pub(super) struct Backfiller {
    client: Box<dyn Backfill>,
    listed: Window,
    window: Window,
    /// The requests of earlier runs of this job (before a restart).
    earlier: ApiStats,
    per_minute: u32,
}

impl Backfiller {
    /// The backfill of `params`' window for `ctx`'s source; `report` holds what earlier runs
    /// of the job did.
    pub fn new(ctx: &Ctx, params: &Params, report: &Report) -> Result<Backfiller, StepError> {
        let client = intake_connectors::backfill_for(&ctx.source, ctx.clock.clone())
            .map_err(|e| StepError::Fatal(e.to_string()))?;
        let margin = Duration::from_secs(params.margin_secs);
        let per_minute = ctx
            .source
            .api
            .as_ref()
            .and_then(|a| a.rate_limit_per_minute)
            .unwrap_or(intake_connectors::backfill::DEFAULT_PER_MINUTE);
        let earlier = report
            .sor
            .as_ref()
            .map_or(ApiStats::default(), |s| ApiStats {
                requests: s.requests,
                throttled: s.throttled,
                retried: s.retried,
            });
        Ok(Backfiller {
            client,
            listed: Window {
                from: params.from.minus(margin),
                to: params.to.plus(margin),
            },
            window: Window {
                from: params.from,
                to: params.to,
            },
            earlier,
            per_minute,
        })
    }

    /// Reads, compares and (unless a dry run) ingests one page. Returns the next page's
    /// cursor, `None` when the window is exhausted.
    pub async fn step(
        &self,
        ctx: &Ctx,
        cursor: Option<&Cursor>,
        report: &mut Report,
    ) -> Result<Option<Cursor>, StepError> {
        let page = self.client.page(&self.listed, cursor).await;
        report.sor = Some(SorUse::at(
            self.earlier.plus(self.client.stats()),
            self.per_minute,
        ));
        let page = page.map_err(classify)?;
        let (inside, outside): (Vec<Recovered>, Vec<Recovered>) = page
            .events
            .into_iter()
            .partition(|r| r.event.occurred_at.is_some_and(|t| self.window.contains(t)));
        report.outside_window += outside.len() as u64;
        let inside = unique(inside);
        let listed = inside.len() as u64;
        let missing = self.missing(ctx, inside).await?;
        report.seen += listed;
        report.already_received += listed - missing.len() as u64;
        report.todo.add_page(missing.iter().map(|r| &r.event));
        for r in &missing {
            report.list(ctx.params.sample, || Item::of_event(&r.event, "ingest"));
        }
        if !ctx.dry_run {
            ingest_in_order(ctx, missing, report).await?;
        }
        report.pages += 1;
        Ok(page.next)
    }

    /// The events of `inside` the store has no event for.
    async fn missing(
        &self,
        ctx: &Ctx,
        inside: Vec<Recovered>,
    ) -> Result<Vec<Recovered>, StepError> {
        let mut known = HashSet::new();
        for chunk in inside.chunks(LOOKUP_CHUNK) {
            let keys = chunk.iter().map(|r| r.event.dedupe_key.clone()).collect();
            known.extend(ctx.store.known_dedupe_keys(&ctx.source.id, keys).await?);
        }
        Ok(inside
            .into_iter()
            .filter(|r| !known.contains(&r.event.dedupe_key))
            .collect())
    }
}

/// The first of each dedupe key, in the listing's order (a page may repeat an object).
fn unique(events: Vec<Recovered>) -> Vec<Recovered> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|r| seen.insert(r.event.dedupe_key.clone()))
        .collect()
}

/// Which failures end a job and which are waited out.
fn classify(e: BackfillError) -> StepError {
    match e {
        BackfillError::RateLimited(_) => StepError::Throttled(e.to_string()),
        BackfillError::Status { status: 429, .. } => StepError::Throttled(e.to_string()),
        BackfillError::Transport(_) => StepError::Transient(e.to_string()),
        BackfillError::Status { status, .. } if status >= 500 => {
            StepError::Transient(e.to_string())
        }
        _ => StepError::Fatal(e.to_string()),
    }
}

/// The missing events of a page split for ordering: the first event of every conversation
/// that has others (and every event without a conversation), then the others of each
/// conversation in the listing's order.
pub(super) fn phases(missing: Vec<Recovered>) -> (Vec<Recovered>, Vec<Vec<Recovered>>) {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Recovered>> = HashMap::new();
    let mut first = Vec::new();
    for r in missing {
        match r.event.conversation_id.clone() {
            Some(c) => {
                let group = groups.entry(c.clone()).or_default();
                if group.is_empty() {
                    order.push(c);
                }
                group.push(r);
            }
            None => first.push(r),
        }
    }
    let mut rest = Vec::new();
    for c in order {
        let Some(mut group) = groups.remove(&c) else {
            continue;
        };
        let others = group.split_off(1);
        first.extend(group);
        if !others.is_empty() {
            rest.push(others);
        }
    }
    (first, rest)
}

/// Ingests a page's missing events: conversations' first events, a wait until they are
/// delivered, then the others, each conversation's in order.
async fn ingest_in_order(
    ctx: &Ctx,
    missing: Vec<Recovered>,
    report: &mut Report,
) -> Result<(), StepError> {
    let (first, rest) = phases(missing);
    let waited: HashSet<String> = rest
        .iter()
        .filter_map(|g| g.first().and_then(|r| r.event.conversation_id.clone()))
        .collect();
    let firsts = futures::stream::iter(first.into_iter().map(|r| ingest(ctx, r)))
        .buffer_unordered(INGEST_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut awaited = Vec::new();
    for result in firsts {
        let (id, conversation, new) = result?;
        count(report, new);
        if new && conversation.is_some_and(|c| waited.contains(&c)) {
            awaited.push(id);
        }
    }
    ctx.wake();
    if !awaited.is_empty() {
        if wait_delivered(ctx, &awaited).await? {
            report.ordered_conversations += awaited.len() as u64;
        } else {
            report.order_waits_timed_out += 1;
        }
    }
    let groups = futures::stream::iter(rest.into_iter().map(|group| async move {
        let mut news = Vec::new();
        for r in group {
            news.push(ingest(ctx, r).await?.2);
        }
        Ok::<_, StepError>(news)
    }))
    .buffer_unordered(INGEST_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    for group in groups {
        for new in group? {
            count(report, new);
        }
    }
    ctx.wake();
    Ok(())
}

fn count(report: &mut Report, new: bool) {
    if new {
        report.done += 1;
    } else {
        // A webhook of the same object arrived between the comparison and the ingest.
        report.already_received += 1;
    }
}

/// Ingests one recovered event; its id, conversation, and whether it was new.
async fn ingest(ctx: &Ctx, r: Recovered) -> Result<(EventId, Option<String>, bool), StepError> {
    let now = ctx.clock.now();
    let conversation = r.event.conversation_id.clone();
    let channel = r.event.channel;
    let event = NewEvent {
        id: EventId::generate(now),
        tenant: ctx.source.tenant.clone(),
        source: ctx.source.id.clone(),
        origin: Origin::Backfill,
        normalized: r.event,
        received_at: now,
        headers: r.headers,
        body: r.body,
        deliveries: ctx
            .source
            .destinations
            .iter()
            .map(|d| (DeliveryId::generate(now), d.clone()))
            .collect(),
    };
    let accepted = ctx.store.ingest(event).await?;
    if !accepted.duplicate {
        ctx.count_event(channel);
    }
    Ok((accepted.id, conversation, !accepted.duplicate))
}

/// Waits until none of `events` has a delivery waiting for its first attempt or in flight;
/// `false` when [`ORDER_WAIT`] ended first. The bound is on real time, not the injected clock:
/// it waits for the dispatcher, which works in real time, and is no schedule of the product's.
async fn wait_delivered(ctx: &Ctx, events: &[EventId]) -> Result<bool, StepError> {
    let deadline = tokio::time::Instant::now() + ORDER_WAIT;
    let mut waiting: Vec<EventId> = events.to_vec();
    loop {
        let mut still = Vec::new();
        for id in waiting {
            let unsettled = ctx.store.get_event(&id).await?.is_some_and(|e| {
                e.summary
                    .deliveries
                    .iter()
                    .any(|d| matches!(d.state, DeliveryState::Pending | DeliveryState::InFlight))
            });
            if unsettled {
                still.push(id);
            }
        }
        if still.is_empty() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        waiting = still;
        tokio::time::sleep(ORDER_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::event::{Channel, NormalizedEvent};
    use intake_core::Timestamp;

    fn rec(key: &str, conv: Option<&str>) -> Recovered {
        Recovered {
            event: NormalizedEvent {
                sor_event_id: None,
                dedupe_key: key.into(),
                event_type: "t".into(),
                channel: Channel::Chat,
                raw_channel: None,
                object_type: None,
                object_id: None,
                conversation_id: conv.map(str::to_string),
                occurred_at: Some(Timestamp(0)),
            },
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn keys(v: &[Recovered]) -> Vec<&str> {
        v.iter().map(|r| r.event.dedupe_key.as_str()).collect()
    }

    /// A page's missing events (key, conversation), the first phase's keys, the groups after.
    type PhaseCase<'a> = (
        &'a [(&'a str, Option<&'a str>)],
        &'a [&'a str],
        &'a [&'a [&'a str]],
    );

    #[test]
    fn conversations_go_first_and_their_events_follow_in_the_listing_order() {
        let cases: &[PhaseCase] = &[
            (&[], &[], &[]),
            // One conversation: its first event, then the rest in order.
            (
                &[("c1", Some("1")), ("m1", Some("1")), ("u1", Some("1"))],
                &["c1"],
                &[&["m1", "u1"]],
            ),
            // Interleaved conversations keep each one's order; events without one go first.
            (
                &[
                    ("c1", Some("1")),
                    ("c2", Some("2")),
                    ("x", None),
                    ("m2", Some("2")),
                    ("m1", Some("1")),
                ],
                &["x", "c1", "c2"],
                &[&["m1"], &["m2"]],
            ),
            // A conversation whose only missing event is a message: nothing to wait for.
            (&[("m9", Some("9"))], &["m9"], &[]),
        ];
        for (input, first, rest) in cases {
            let events = input.iter().map(|(k, c)| rec(k, *c)).collect();
            let (f, r) = phases(events);
            assert_eq!(keys(&f), *first, "{input:?}");
            let r: Vec<Vec<&str>> = r.iter().map(|g| keys(g)).collect();
            let want: Vec<Vec<&str>> = rest.iter().map(|g| g.to_vec()).collect();
            assert_eq!(r, want, "{input:?}");
        }
    }

    #[test]
    fn a_page_that_repeats_an_object_keeps_its_first_listing() {
        let events = vec![rec("a", None), rec("b", None), rec("a", Some("x"))];
        let u = unique(events);
        assert_eq!(keys(&u), ["a", "b"]);
        assert_eq!(u[0].event.conversation_id, None);
    }

    #[test]
    fn rate_limits_and_transport_failures_are_waited_out_and_refusals_end_the_job() {
        assert!(matches!(
            classify(BackfillError::RateLimited(20)),
            StepError::Throttled(_)
        ));
        let transient = [
            BackfillError::Transport("connection refused".into()),
            BackfillError::Status {
                status: 503,
                what: "GET".into(),
                body: String::new(),
            },
        ];
        for e in transient {
            assert!(matches!(classify(e), StepError::Transient(_)));
        }
        let fatal = [
            BackfillError::Unauthorized(401),
            BackfillError::NotConfigured("no api".into()),
            BackfillError::BadCursor("x".into()),
            BackfillError::Status {
                status: 404,
                what: "GET".into(),
                body: String::new(),
            },
        ];
        for e in fatal {
            assert!(matches!(classify(e), StepError::Fatal(_)));
        }
    }
}
