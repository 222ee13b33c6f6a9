//! The counters every write keeps, the same on both backends: which metrics there are, the key
//! of one counter row, and the per-transaction accumulation that merges increments by key.
//!
//! Rule: this module knows the model and the core types only; how counts reach a table (one row
//! at a time on SQLite, one `UNNEST` on PostgreSQL) is each backend's business.

use std::collections::HashMap;

use intake_core::delivery::{CompletionOutcome, DeliveryState};
use intake_core::event::Origin;
use intake_core::Timestamp;

use crate::model::{DeliveryRecord, FinishedAttempt, NewEvent, Rejection, RejectionKind};

/// A metric the store counts as it writes. Its name ([`Metric::as_str`]) is what the counter
/// tables and the API carry.
///
/// The variants are declared in the order of their names, so that the derived order is the
/// order of the names (PostgreSQL writes counter rows in key order, see its writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// `deliveries.completed`: a handler on receipts confirmed its work done.
    DeliveriesCompleted,
    /// `deliveries.completion_failed`: a handler on receipts confirmed its business logic
    /// failed.
    DeliveriesCompletionFailed,
    /// `deliveries.created`: a delivery was queued for a destination.
    DeliveriesCreated,
    /// `deliveries.dead`: a delivery gave up.
    DeliveriesDead,
    /// `deliveries.delivered`: a delivery succeeded.
    DeliveriesDelivered,
    /// `deliveries.failed`: an attempt failed and will be retried.
    DeliveriesFailed,
    /// `deliveries.rerouted`: a requeue closed a delivery to a destination the source no
    /// longer routes to (its event goes to the current routes instead). Not a dead letter:
    /// nothing exhausted its retries, and the monitor must not page for an operator's choice.
    DeliveriesRerouted,
    /// `events.backfill`: an event came from a backfill.
    EventsBackfill,
    /// `events.canary`: an event was a canary.
    EventsCanary,
    /// `events.replay`: an event was replayed.
    EventsReplay,
    /// `events.webhook`: an event came from a webhook.
    EventsWebhook,
    /// `requests.accepted`: a new event was stored.
    RequestsAccepted,
    /// `requests.duplicate`: a request repeated a stored event.
    RequestsDuplicate,
    /// `requests.rejected_invalid`: a body could not be read.
    RequestsRejectedInvalid,
    /// `requests.rejected_signature`: a signature did not verify.
    RequestsRejectedSignature,
    /// `requests.too_large`: a body was over the limit.
    RequestsTooLarge,
}

impl Metric {
    /// Every metric, in order.
    pub const ALL: [Metric; 16] = [
        Metric::DeliveriesCompleted,
        Metric::DeliveriesCompletionFailed,
        Metric::DeliveriesCreated,
        Metric::DeliveriesDead,
        Metric::DeliveriesDelivered,
        Metric::DeliveriesFailed,
        Metric::DeliveriesRerouted,
        Metric::EventsBackfill,
        Metric::EventsCanary,
        Metric::EventsReplay,
        Metric::EventsWebhook,
        Metric::RequestsAccepted,
        Metric::RequestsDuplicate,
        Metric::RequestsRejectedInvalid,
        Metric::RequestsRejectedSignature,
        Metric::RequestsTooLarge,
    ];

    /// The metric's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::DeliveriesCompleted => "deliveries.completed",
            Metric::DeliveriesCompletionFailed => "deliveries.completion_failed",
            Metric::DeliveriesCreated => "deliveries.created",
            Metric::DeliveriesDead => "deliveries.dead",
            Metric::DeliveriesDelivered => "deliveries.delivered",
            Metric::DeliveriesFailed => "deliveries.failed",
            Metric::DeliveriesRerouted => "deliveries.rerouted",
            Metric::EventsBackfill => "events.backfill",
            Metric::EventsCanary => "events.canary",
            Metric::EventsReplay => "events.replay",
            Metric::EventsWebhook => "events.webhook",
            Metric::RequestsAccepted => "requests.accepted",
            Metric::RequestsDuplicate => "requests.duplicate",
            Metric::RequestsRejectedInvalid => "requests.rejected_invalid",
            Metric::RequestsRejectedSignature => "requests.rejected_signature",
            Metric::RequestsTooLarge => "requests.too_large",
        }
    }

    /// The metric counting events of an origin.
    pub fn of_origin(origin: Origin) -> Metric {
        match origin {
            Origin::Webhook => Metric::EventsWebhook,
            Origin::Backfill => Metric::EventsBackfill,
            Origin::Canary => Metric::EventsCanary,
            Origin::Replay => Metric::EventsReplay,
        }
    }

    /// The metric counting a kind of refused request.
    pub fn of_rejection(kind: RejectionKind) -> Metric {
        match kind {
            RejectionKind::Signature => Metric::RequestsRejectedSignature,
            RejectionKind::Invalid => Metric::RequestsRejectedInvalid,
            RejectionKind::TooLarge => Metric::RequestsTooLarge,
        }
    }

    /// The metric counting an attempt that moved its delivery to `state`.
    pub fn of_attempt(state: DeliveryState) -> Metric {
        match state {
            DeliveryState::Delivered => Metric::DeliveriesDelivered,
            DeliveryState::Dead => Metric::DeliveriesDead,
            _ => Metric::DeliveriesFailed,
        }
    }
}

impl Metric {
    /// The metric counting a handler's confirmation with `outcome`.
    pub fn of_completion(outcome: CompletionOutcome) -> Metric {
        match outcome {
            CompletionOutcome::Ok => Metric::DeliveriesCompleted,
            CompletionOutcome::Failed => Metric::DeliveriesCompletionFailed,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The start of the minute `t` falls in, in milliseconds: the bucket of a minute counter.
pub(crate) fn minute_of(t: Timestamp) -> i64 {
    t.as_millis().div_euclid(60_000) * 60_000
}

/// One counter row: a minute, the labels, a metric. Ordered field by field (the metric by its
/// name), which is the order PostgreSQL locks counter rows in.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CounterKey {
    pub(crate) minute: i64,
    pub(crate) tenant: String,
    pub(crate) source: String,
    pub(crate) channel: String,
    pub(crate) destination: String,
    pub(crate) metric: Metric,
}

impl CounterKey {
    /// A counter of an event received at its `received_at`, without a destination.
    fn of_event(ev: &NewEvent, metric: Metric) -> Self {
        CounterKey {
            minute: minute_of(ev.received_at),
            tenant: ev.tenant.clone(),
            source: ev.source.clone(),
            channel: ev.normalized.channel.as_str().to_string(),
            destination: String::new(),
            metric,
        }
    }
}

/// The labels of a delivery's counter, and the metric to count.
pub(crate) struct DeliveryLabels<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) source: &'a str,
    pub(crate) channel: &'a str,
    pub(crate) destination: &'a str,
    pub(crate) metric: Metric,
}

/// Counter increments of one transaction, merged by key so that a batch of a thousand events of
/// one source writes one row per minute and metric, not a thousand.
#[derive(Debug, Default)]
pub(crate) struct Counts(HashMap<CounterKey, i64>);

impl Counts {
    /// Adds `n` to one counter.
    pub(crate) fn push(&mut self, key: CounterKey, n: i64) {
        *self.0.entry(key).or_default() += n;
    }

    /// Whether nothing was counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The counters, in no particular order.
    pub(crate) fn into_rows(self) -> impl Iterator<Item = (CounterKey, i64)> {
        self.0.into_iter()
    }

    /// Counts a stored event: accepted, its origin, and a created delivery per destination.
    pub(crate) fn accepted(&mut self, ev: &NewEvent) {
        self.push(CounterKey::of_event(ev, Metric::RequestsAccepted), 1);
        self.push(CounterKey::of_event(ev, Metric::of_origin(ev.origin)), 1);
        for (_, destination) in &ev.deliveries {
            self.push(
                CounterKey {
                    destination: destination.clone(),
                    ..CounterKey::of_event(ev, Metric::DeliveriesCreated)
                },
                1,
            );
        }
    }

    /// Counts a request that repeated a stored event.
    pub(crate) fn duplicate(&mut self, ev: &NewEvent) {
        self.push(CounterKey::of_event(ev, Metric::RequestsDuplicate), 1);
    }

    /// Counts a refused request.
    pub(crate) fn rejected(&mut self, rej: &Rejection) {
        self.push(
            CounterKey {
                minute: minute_of(rej.at),
                tenant: rej.tenant.clone(),
                source: rej.source.clone(),
                channel: String::new(),
                destination: String::new(),
                metric: Metric::of_rejection(rej.kind),
            },
            1,
        );
    }

    /// Counts a change a recovery made to a delivery at `at` (`deliveries.created` for a new
    /// one, `deliveries.rerouted` for one re-routed away), with the labels ingest and attempts
    /// use.
    pub(crate) fn delivery_changed(&mut self, at: Timestamp, labels: &DeliveryLabels<'_>) {
        self.push(
            CounterKey {
                minute: minute_of(at),
                tenant: labels.tenant.to_string(),
                source: labels.source.to_string(),
                channel: labels.channel.to_string(),
                destination: labels.destination.to_string(),
                metric: labels.metric,
            },
            1,
        );
    }

    /// Counts an event a replay delivered again (`events.replay`, without a destination).
    pub(crate) fn replayed(&mut self, at: Timestamp, tenant: &str, source: &str, channel: &str) {
        self.push(
            CounterKey {
                minute: minute_of(at),
                tenant: tenant.to_string(),
                source: source.to_string(),
                channel: channel.to_string(),
                destination: String::new(),
                metric: Metric::EventsReplay,
            },
            1,
        );
    }

    /// Counts a handler's confirmation of `d` recorded at `at`.
    pub(crate) fn completed(
        &mut self,
        d: &DeliveryRecord,
        outcome: CompletionOutcome,
        at: Timestamp,
    ) {
        self.push(
            CounterKey {
                minute: minute_of(at),
                tenant: d.tenant.clone(),
                source: d.source.clone(),
                channel: d.channel.clone(),
                destination: d.destination.clone(),
                metric: Metric::of_completion(outcome),
            },
            1,
        );
    }

    /// Counts an attempt that moved its delivery to `state`.
    pub(crate) fn finished(&mut self, a: &FinishedAttempt, state: DeliveryState) {
        self.push(
            CounterKey {
                minute: minute_of(a.finished_at),
                tenant: a.tenant.clone(),
                source: a.source.clone(),
                channel: a.channel.clone(),
                destination: a.destination.clone(),
                metric: Metric::of_attempt(state),
            },
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_declared_in_the_order_of_their_names() {
        let mut by_name = Metric::ALL;
        by_name.sort_by_key(|m| m.as_str());
        assert_eq!(by_name, Metric::ALL);
        let mut by_order = Metric::ALL;
        by_order.sort();
        assert_eq!(by_order, Metric::ALL);
    }

    #[test]
    fn minutes_round_down_also_before_the_epoch() {
        assert_eq!(minute_of(Timestamp(125_000)), 120_000);
        assert_eq!(minute_of(Timestamp(-1)), -60_000);
    }
}
