//! What one page of a requeue changes, decided once for both backends: each backend reads the
//! page's events with their deliveries ([`PageEvent`]), asks [`plan`] what to change, applies
//! the changes it still can (a delivery may have moved on since it was read), and builds its
//! answer and its counters from those with [`report`].
//!
//! Rule: pure decisions; this module knows the model and the counters only.

use std::collections::HashSet;

use intake_core::delivery::DeliveryState;
use intake_core::{DeliveryId, EventId};

use crate::counters::{Counts, DeliveryLabels, Metric};
use crate::model::{RequeueItem, RequeuePage, RequeueRequest};

/// An event of the page, as stored, with its deliveries.
#[derive(Debug, Clone)]
pub(crate) struct PageEvent {
    pub(crate) id: EventId,
    pub(crate) tenant: String,
    pub(crate) channel: String,
    pub(crate) deliveries: Vec<PageDelivery>,
}

/// A delivery of a page's event, as stored.
#[derive(Debug, Clone)]
pub(crate) struct PageDelivery {
    pub(crate) id: DeliveryId,
    pub(crate) destination: String,
    pub(crate) state: DeliveryState,
    /// Its next attempt, or its lease's end while in flight (milliseconds).
    pub(crate) due_at: i64,
}

/// What a requeue does to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// In flight under a lease that ended before `stale_before`: pending, due now.
    StaleLease,
    /// Retrying (when asked): pending, due now, attempts from 0.
    RetryingReset,
    /// Not final, to a destination the source no longer routes to: dead.
    Rerouted,
    /// A routed destination the event had no delivery to: a new pending delivery.
    Created,
}

impl Action {
    /// The name in [`RequeueItem::action`].
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::StaleLease => "stale_lease",
            Action::RetryingReset => "retrying_reset",
            Action::Rerouted => "rerouted",
            Action::Created => "created",
        }
    }
}

/// One change to make: to the delivery `delivery_id` of `events[event]`, or, for
/// [`Action::Created`], the delivery to create with that id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) event: usize,
    pub(crate) delivery_id: DeliveryId,
    pub(crate) destination: String,
    pub(crate) action: Action,
}

/// The changes a page needs, event by event in the order given, each event's deliveries in
/// the order given, then its new deliveries in the order of `req.routes`.
pub(crate) fn plan(req: &RequeueRequest, events: &[PageEvent]) -> Vec<Change> {
    let routed: HashSet<&str> = req.routes.iter().map(String::as_str).collect();
    let mut changes = Vec::new();
    for (i, event) in events.iter().enumerate() {
        for d in &event.deliveries {
            let action = if d.state.is_final() {
                None
            } else if !routed.contains(d.destination.as_str()) {
                Some(Action::Rerouted)
            } else if d.state == DeliveryState::InFlight && d.due_at < req.stale_before.as_millis()
            {
                Some(Action::StaleLease)
            } else if d.state == DeliveryState::Retrying && req.include_retrying {
                Some(Action::RetryingReset)
            } else {
                None
            };
            if let Some(action) = action {
                changes.push(Change {
                    event: i,
                    delivery_id: d.id.clone(),
                    destination: d.destination.clone(),
                    action,
                });
            }
        }
        // A delivery re-routed away is to a destination that is not routed, so it never
        // stands for a routed one: only a delivery to the route itself does.
        let mut seen: HashSet<&str> = event
            .deliveries
            .iter()
            .map(|d| d.destination.as_str())
            .collect();
        for route in &req.routes {
            if seen.insert(route.as_str()) {
                changes.push(Change {
                    event: i,
                    delivery_id: DeliveryId::generate(req.now),
                    destination: route.clone(),
                    action: Action::Created,
                });
            }
        }
    }
    changes
}

/// The `last_error` of a delivery re-routed away from `destination` by `recovery`.
pub(crate) fn reroute_error(recovery: &str, destination: &str) -> String {
    format!(
        "re-routed by recovery {recovery}: destination `{destination}` is no longer routed \
         from this source"
    )
}

/// The answer for a page whose `applied` changes took effect, and their counters
/// (`deliveries.created` and `deliveries.rerouted`, at `req.now`) added to `counts`.
pub(crate) fn report(
    req: &RequeueRequest,
    events: &[PageEvent],
    applied: &[Change],
    counts: &mut Counts,
) -> RequeuePage {
    let mut page = RequeuePage {
        events: events.len() as u64,
        last: events.last().map(|e| e.id.clone()),
        ..RequeuePage::default()
    };
    for change in applied {
        let Some(event) = events.get(change.event) else {
            continue;
        };
        let metric = match change.action {
            Action::StaleLease => {
                page.stale_leases += 1;
                None
            }
            Action::RetryingReset => {
                page.retrying_reset += 1;
                None
            }
            Action::Rerouted => {
                page.rerouted += 1;
                Some(Metric::DeliveriesRerouted)
            }
            Action::Created => {
                page.created += 1;
                Some(Metric::DeliveriesCreated)
            }
        };
        if let Some(metric) = metric {
            let labels = DeliveryLabels {
                tenant: &event.tenant,
                source: &req.source,
                channel: &event.channel,
                destination: &change.destination,
                metric,
            };
            counts.delivery_changed(req.now, &labels);
        }
        if page.items.len() < req.sample {
            page.items.push(RequeueItem {
                event_id: event.id.clone(),
                delivery_id: change.delivery_id.clone(),
                destination: change.destination.clone(),
                action: change.action.as_str().to_string(),
            });
        }
    }
    page
}

/// The destinations whose dispatchers have new due work after `applied` (a re-routed delivery
/// is dead: nobody needs waking for it).
pub(crate) fn woken(applied: &[Change]) -> HashSet<String> {
    applied
        .iter()
        .filter(|c| c.action != Action::Rerouted)
        .map(|c| c.destination.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use intake_core::Timestamp;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn request(routes: &[&str], include_retrying: bool) -> RequeueRequest {
        RequeueRequest {
            recovery: "rec_1".into(),
            source: "kustomer".into(),
            from: Timestamp(0),
            to: Timestamp(NOW),
            after: None,
            limit: 100,
            routes: routes.iter().map(|r| r.to_string()).collect(),
            stale_before: Timestamp(NOW - 60_000),
            include_retrying,
            dry_run: false,
            now: Timestamp(NOW),
            sample: 10,
        }
    }

    fn delivery(destination: &str, state: DeliveryState, due_at: i64) -> PageDelivery {
        PageDelivery {
            id: DeliveryId::generate(Timestamp(NOW)),
            destination: destination.into(),
            state,
            due_at,
        }
    }

    fn event(deliveries: Vec<PageDelivery>) -> PageEvent {
        PageEvent {
            id: EventId::generate(Timestamp(NOW - 1000)),
            tenant: "acme".into(),
            channel: "email".into(),
            deliveries,
        }
    }

    fn actions(changes: &[Change]) -> Vec<(usize, &str, Action)> {
        changes
            .iter()
            .map(|c| (c.event, c.destination.as_str(), c.action))
            .collect()
    }

    #[test]
    fn stale_leases_only_before_the_cutoff_and_retrying_only_when_asked() {
        let events = vec![event(vec![
            delivery("a", DeliveryState::InFlight, NOW - 120_000),
            delivery("b", DeliveryState::InFlight, NOW - 1_000),
            delivery("c", DeliveryState::Retrying, NOW + 60_000),
            delivery("d", DeliveryState::Delivered, NOW),
            delivery("e", DeliveryState::Pending, NOW),
        ])];
        let routes = ["a", "b", "c", "d", "e"];
        assert_eq!(
            actions(&plan(&request(&routes, false), &events)),
            [(0, "a", Action::StaleLease)]
        );
        assert_eq!(
            actions(&plan(&request(&routes, true), &events)),
            [
                (0, "a", Action::StaleLease),
                (0, "c", Action::RetryingReset)
            ]
        );
    }

    #[test]
    fn unrouted_work_is_rerouted_and_missing_routes_are_created_once() {
        let events = vec![
            event(vec![
                delivery("old", DeliveryState::InFlight, NOW - 120_000),
                delivery("gone", DeliveryState::Dead, NOW),
                delivery("kept", DeliveryState::Dead, NOW),
            ]),
            // Received but never queued.
            event(vec![]),
        ];
        let req = request(&["kept", "new", "new"], false);
        let changes = plan(&req, &events);
        assert_eq!(
            actions(&changes),
            [
                (0, "old", Action::Rerouted),
                (0, "new", Action::Created),
                (1, "kept", Action::Created),
                (1, "new", Action::Created),
            ]
        );
        let mut counts = Counts::default();
        let page = report(&req, &events, &changes[..3], &mut counts);
        assert_eq!((page.events, page.rerouted, page.created), (2, 1, 2));
        assert_eq!(page.last.as_ref(), Some(&events[1].id));
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.items[0].action, "rerouted");
        let mut metrics: Vec<String> = counts
            .into_rows()
            .map(|(k, n)| format!("{}:{}={n}", k.destination, k.metric))
            .collect();
        metrics.sort();
        assert_eq!(
            metrics,
            [
                "kept:deliveries.created=1",
                "new:deliveries.created=1",
                "old:deliveries.rerouted=1"
            ]
        );
        assert_eq!(
            woken(&changes[..3]),
            HashSet::from(["new".to_string(), "kept".to_string()])
        );
    }

    #[test]
    fn the_sample_is_bounded_and_an_empty_page_has_no_cursor() {
        let events = vec![event(vec![]), event(vec![])];
        let mut req = request(&["a", "b"], false);
        req.sample = 3;
        let changes = plan(&req, &events);
        let page = report(&req, &events, &changes, &mut Counts::default());
        assert_eq!((page.created, page.items.len()), (4, 3));
        let empty = report(&req, &[], &[], &mut Counts::default());
        assert_eq!(empty, RequeuePage::default());
    }
}
