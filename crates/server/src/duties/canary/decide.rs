//! The canary decisions, as pure functions: where a canary stands given what the store says
//! of its event, how long each stage took, and whether a source's canaries have failed
//! (`canary_failed`), naming the stage where the last one stopped.
//!
//! No IO and no `await`: the canary duty reads the event, the monitor reads the canary book,
//! and both hand what they read to these functions, which the tests below drive with tables.

use std::time::Duration;

use intake_core::config::Config;
use intake_core::delivery::{CompletionState, DeliveryState};
use intake_core::Timestamp;
use intake_monitor::{AlertKey, CanaryFailed, Finding, Labels, RuleBook};
use intake_store::{DeliverySummary, EventDetail};

use super::book::{CanaryBook, CanaryRun, Latency, SourceCanary, Stage};

/// The rule these decisions raise.
pub const CANARY_FAILED: &str = "canary_failed";

/// Where `run` stands given its event as the store has it (`None`: not found).
pub(crate) fn observe(run: &CanaryRun, event: Option<&EventDetail>) -> CanaryRun {
    let mut next = CanaryRun {
        status: None,
        destination: None,
        in_flight: None,
        attempts: None,
        detail: None,
        delivered_at: None,
        ..run.clone()
    };
    let Some(event) = event else {
        next.stage = Stage::Accepted;
        next.detail = Some("the accepted event is not in the store (yet)".into());
        return next;
    };
    let mut deliveries: Vec<_> = event.summary.deliveries.iter().collect();
    deliveries.sort_by(|a, b| a.destination.cmp(&b.destination));
    if deliveries.is_empty() {
        next.stage = Stage::NotQueued;
        next.detail = Some(format!(
            "event {} was stored with no delivery: nothing was queued",
            event.summary.id
        ));
        return next;
    }
    // On receipts, a canary is through when its handler confirmed the work, not at its 2xx:
    // a handler that acknowledges and drops work fails its canaries.
    let Some(stuck) = deliveries.iter().find(|d| !work_done(d)) else {
        next.stage = Stage::Delivered;
        next.delivered_at = deliveries.iter().filter_map(|d| done_at(d)).max();
        return next;
    };
    next.destination = Some(stuck.destination.clone());
    if stuck.state == DeliveryState::Delivered {
        next.status = stuck.last_status;
        next.attempts = Some(stuck.attempts);
        if stuck.completion == Some(CompletionState::CompletionFailed) {
            next.stage = Stage::Failing;
            next.detail = Some(format!(
                "the handler confirmed that its work failed{}",
                stuck
                    .completion_detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        } else {
            next.stage = Stage::Pending;
            next.in_flight = Some(false);
            next.detail = Some(
                "received by the handler (2xx); its completion receipt has not arrived".into(),
            );
        }
        return next;
    }
    let failed = stuck.last_status.is_some() || stuck.last_error.is_some();
    if stuck.state == DeliveryState::Dead || (stuck.attempts > 0 && failed) {
        next.stage = Stage::Failing;
        next.status = stuck.last_status;
        next.attempts = Some(stuck.attempts);
        let dead = if stuck.state == DeliveryState::Dead {
            " (dead: no attempts left)"
        } else {
            ""
        };
        next.detail = Some(match (&stuck.last_error, stuck.last_status) {
            (Some(e), _) => format!("{e}{dead}"),
            (None, Some(s)) => format!("HTTP {s}{dead}"),
            (None, None) => format!("no answer recorded{dead}"),
        });
    } else {
        next.stage = Stage::Pending;
        next.in_flight = Some(stuck.state == DeliveryState::InFlight);
    }
    next
}

/// Whether a delivery's work is done: delivered, and on receipts confirmed done.
fn work_done(d: &DeliverySummary) -> bool {
    d.state == DeliveryState::Delivered
        && !matches!(
            d.completion,
            Some(CompletionState::Received | CompletionState::CompletionFailed)
        )
}

/// When a delivery's work was done: its confirmation on receipts, else its 2xx.
fn done_at(d: &DeliverySummary) -> Option<Timestamp> {
    d.completed_at.or(d.delivered_at)
}

/// How long each stage of a delivered canary took: `ack` as measured by the sender, the
/// others from the times the store recorded (the slowest destination's).
pub(crate) fn latency(event: &EventDetail, sent_at: Timestamp, ack: Duration) -> Option<Latency> {
    let received = event.summary.received_at;
    let mut queue = Duration::ZERO;
    let mut delivery = Duration::ZERO;
    let mut last = None;
    for d in &event.summary.deliveries {
        let delivered = done_at(d)?;
        let first = event
            .attempts
            .iter()
            .filter(|a| a.delivery_id == d.id)
            .map(|a| a.started_at)
            .min()
            .unwrap_or(delivered);
        queue = queue.max(first.since(received));
        delivery = delivery.max(delivered.since(first));
        last = last.max(Some(delivered));
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Some(Latency {
        ack_ms: ms(ack),
        queue_ms: ms(queue),
        delivery_ms: ms(delivery),
        total_ms: ms(last?.since(sent_at)),
    })
}

/// A source's canaries, judged at one instant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// A canary succeeded within the deadline; it fails at `until` unless another does.
    Healthy {
        /// When the deadline runs out.
        until: Timestamp,
    },
    /// No canary succeeded within the deadline.
    Failed {
        /// Seconds since the deadline started counting.
        value: f64,
        /// What happened, naming the stage where the last canary stopped.
        reason: String,
    },
}

/// Judges one source at `now`: failed when no canary succeeded within `deadline` of the
/// reference instant (its last success, or when watching started if later; `watch_from` when
/// the canary duty has recorded nothing for it).
pub(crate) fn verdict(
    entry: Option<&SourceCanary>,
    watch_from: Timestamp,
    deadline: Duration,
    now: Timestamp,
) -> Verdict {
    let reference = entry.map_or(watch_from, SourceCanary::reference);
    let until = reference.plus(deadline);
    if now < until {
        return Verdict::Healthy { until };
    }
    let waited = now.since(reference);
    let since = match entry.and_then(|e| e.last_success_at) {
        Some(s) => format!("since the last success at {}", s.to_rfc3339()),
        None => format!("since {}", reference.to_rfc3339()),
    };
    let reason = format!(
        "no canary reached the handler for {} {since} (deadline {}): {}",
        human(waited),
        human(deadline),
        stopped(entry.and_then(SourceCanary::stopped_at), now),
    );
    Verdict::Failed {
        value: waited.as_secs_f64(),
        reason,
    }
}

/// Where the last canary stopped, in words.
fn stopped(last: Option<&CanaryRun>, now: Timestamp) -> String {
    let Some(run) = last else {
        return "no canary has been sent for this source (is a node running the `canary` duty? \
                GET /api/v1/cluster)"
            .into();
    };
    let age = human(now.since(run.sent_at));
    let detail = run.detail.as_deref().unwrap_or("");
    let event = run
        .event
        .as_ref()
        .map(|e| format!(", event {e}"))
        .unwrap_or_default();
    let dest = run.destination.as_deref().unwrap_or("?");
    match run.stage {
        Stage::Sending => {
            format!("the last canary, sent {age} ago, has had no answer from the front door yet")
        }
        Stage::Refused => match run.status {
            Some(s) => format!(
                "refused at ingest: the last canary, sent {age} ago, was answered {s} ({detail})"
            ),
            None => format!(
                "refused at ingest: the last canary, sent {age} ago, got no answer ({detail})"
            ),
        },
        Stage::Accepted => format!(
            "accepted but not delivered: the last canary, sent {age} ago, was accepted (200{event}) \
             but cannot be read back ({detail})"
        ),
        Stage::NotQueued => format!(
            "accepted but not delivered: nothing queued — the last canary, sent {age} ago, was \
             accepted (200{event}) and stored without any delivery"
        ),
        // On receipts: answered 2xx, its work never confirmed (the detail says so).
        Stage::Pending if run.status.is_some() => format!(
            "delivered but its work not confirmed — the last canary, sent {age} ago \
             (200{event}), was {detail} (destination `{dest}`)"
        ),
        Stage::Pending => format!(
            "accepted but not delivered: still pending — the last canary, sent {age} ago \
             (200{event}), {} to destination `{dest}`",
            if run.in_flight == Some(true) {
                "is in its first attempt"
            } else {
                "has never been attempted"
            }
        ),
        Stage::Failing => format!(
            "delivery failing: destination `{dest}` answered {} to the last canary, sent {age} \
             ago{event}, after {} attempt(s)",
            match (run.status, detail) {
                (Some(s), d) if d.is_empty() || d == format!("HTTP {s}") => format!("HTTP {s}"),
                (Some(s), d) => format!("HTTP {s} ({d})"),
                (None, d) => format!("nothing ({d})"),
            },
            run.attempts.unwrap_or(0),
        ),
        Stage::Delivered => format!(
            "none was sent since the last one, sent {age} ago and delivered (is a node running \
             the `canary` duty? GET /api/v1/cluster)"
        ),
    }
}

/// `canary_failed` for every configured source at `now`: the findings (the sources whose
/// canaries failed) and the next instant a healthy source's verdict can change, when the
/// caller should judge again. `watch_from` stands for when watching started for sources the
/// canary duty has recorded nothing for.
pub(crate) fn findings(
    config: &Config,
    rules: &RuleBook,
    book: &CanaryBook,
    watch_from: Timestamp,
    now: Timestamp,
) -> (Vec<Finding>, Option<Timestamp>) {
    let mut found = Vec::new();
    let mut next: Option<Timestamp> = None;
    for s in &config.sources {
        let deadline = config.canary.timing(&s.id).deadline;
        match verdict(book.get(&s.id), watch_from, deadline, now) {
            Verdict::Healthy { until } => next = Some(next.map_or(until, |n| n.min(until))),
            Verdict::Failed { value, reason } => {
                let params: CanaryFailed = rules.resolve(&s.tenant, &s.id);
                found.push(Finding {
                    key: AlertKey {
                        rule: CANARY_FAILED.into(),
                        labels: Labels {
                            tenant: s.tenant.clone(),
                            source: s.id.clone(),
                            channel: String::new(),
                            destination: String::new(),
                        },
                    },
                    params: params.common,
                    value,
                    reason,
                })
            }
        }
    }
    (found, next)
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use intake_core::config::Severity;
    use intake_core::{DeliveryId, EventId};
    use intake_store::{AttemptRecord, DeliverySummary, EventSummary};

    use super::*;

    const T0: Timestamp = Timestamp(1_795_860_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    fn delivery(
        dest: &str,
        state: DeliveryState,
        attempts: u32,
        status: Option<u16>,
    ) -> DeliverySummary {
        DeliverySummary {
            id: DeliveryId::generate(T0),
            destination: dest.into(),
            state,
            attempts,
            due_at: None,
            delivered_at: (state == DeliveryState::Delivered).then(|| at(3)),
            last_status: status,
            last_error: None,
            origin: None,
            recovery: None,
            completion: None,
            completed_at: None,
            completion_detail: None,
        }
    }

    fn event(deliveries: Vec<DeliverySummary>) -> EventDetail {
        EventDetail {
            summary: EventSummary {
                id: EventId::generate(T0),
                tenant: "maelys".into(),
                source: "maelys-kustomer".into(),
                origin: intake_core::event::Origin::Canary,
                sor_event_id: None,
                dedupe_key: "canary:c1".into(),
                event_type: "intake.canary".into(),
                channel: "other".into(),
                raw_channel: None,
                occurred_at: None,
                received_at: at(1),
                object_type: None,
                object_id: None,
                conversation_id: None,
                deliveries,
            },
            headers: vec![],
            body: vec![],
            attempts: vec![],
        }
    }

    fn sent() -> CanaryRun {
        CanaryRun {
            event: Some(EventId::generate(T0)),
            stage: Stage::Accepted,
            ..CanaryRun::sending("cny_1".into(), T0)
        }
    }

    #[test]
    fn a_canary_stands_where_its_event_says() {
        use DeliveryState::*;
        let cases: Vec<(&str, Option<EventDetail>, Stage, Option<&str>)> = vec![
            ("not read back", None, Stage::Accepted, None),
            (
                "stored, no delivery",
                Some(event(vec![])),
                Stage::NotQueued,
                None,
            ),
            (
                "never attempted",
                Some(event(vec![delivery("handler", Pending, 0, None)])),
                Stage::Pending,
                Some("handler"),
            ),
            (
                "first attempt in flight",
                Some(event(vec![delivery("handler", InFlight, 1, None)])),
                Stage::Pending,
                Some("handler"),
            ),
            (
                "an attempt failed",
                Some(event(vec![delivery("handler", Retrying, 2, Some(503))])),
                Stage::Failing,
                Some("handler"),
            ),
            (
                "retried while in flight",
                Some(event(vec![delivery("handler", InFlight, 3, Some(500))])),
                Stage::Failing,
                Some("handler"),
            ),
            (
                "dead",
                Some(event(vec![delivery("handler", Dead, 10, Some(500))])),
                Stage::Failing,
                Some("handler"),
            ),
            (
                "one of two destinations still failing",
                Some(event(vec![
                    delivery("b-crm", Retrying, 1, Some(502)),
                    delivery("a-handler", Delivered, 1, Some(200)),
                ])),
                Stage::Failing,
                Some("b-crm"),
            ),
            (
                "delivered everywhere",
                Some(event(vec![
                    delivery("a", Delivered, 1, Some(200)),
                    delivery("b", Delivered, 2, Some(204)),
                ])),
                Stage::Delivered,
                None,
            ),
        ];
        for (name, ev, stage, dest) in cases {
            let run = observe(&sent(), ev.as_ref());
            assert_eq!(run.stage, stage, "{name}");
            assert_eq!(run.destination.as_deref(), dest, "{name}");
            assert_eq!(run.id, "cny_1", "{name}: the canary keeps its identity");
        }
        let failing = observe(
            &sent(),
            Some(&event(vec![delivery("handler", Retrying, 2, Some(503))])),
        );
        assert_eq!((failing.status, failing.attempts), (Some(503), Some(2)));
        let delivered = observe(
            &sent(),
            Some(&event(vec![delivery("a", Delivered, 1, Some(200))])),
        );
        assert_eq!(delivered.delivered_at, Some(at(3)));
    }

    #[test]
    fn on_receipts_a_canary_is_through_only_when_its_work_is_confirmed() {
        use DeliveryState::Delivered;
        let with = |c: Option<CompletionState>| {
            let mut d = delivery("handler", Delivered, 1, Some(200));
            d.completion = c;
            d.completed_at = c.filter(|c| c.is_confirmed()).map(|_| at(9));
            d.completion_detail = Some("crm down".into());
            event(vec![d])
        };
        let cases = [
            (None, Stage::Delivered),
            (Some(CompletionState::Received), Stage::Pending),
            (Some(CompletionState::Completed), Stage::Delivered),
            (Some(CompletionState::CompletionFailed), Stage::Failing),
        ];
        for (completion, stage) in cases {
            let run = observe(&sent(), Some(&with(completion)));
            assert_eq!(run.stage, stage, "{completion:?}");
        }
        let dropped = observe(&sent(), Some(&with(Some(CompletionState::Received))));
        // The alert's reason says the work was not confirmed, not that nothing was attempted.
        let words = stopped(Some(&dropped), at(120));
        assert!(
            words.contains("completion receipt has not arrived")
                && !words.contains("never been attempted"),
            "{words}"
        );
        assert!(dropped.detail.unwrap().contains("completion receipt"));
        let failed = observe(
            &sent(),
            Some(&with(Some(CompletionState::CompletionFailed))),
        );
        assert!(failed.detail.unwrap().contains("crm down"));
        // Its latency runs to the confirmation.
        let done = observe(&sent(), Some(&with(Some(CompletionState::Completed))));
        assert_eq!(done.delivered_at, Some(at(9)));
    }

    #[test]
    fn stage_latencies_come_from_the_recorded_times() {
        let mut ev = event(vec![delivery(
            "handler",
            DeliveryState::Delivered,
            2,
            Some(200),
        )]);
        let id = ev.summary.deliveries[0].id.clone();
        // Received at 1 s; first attempt at 1.5 s (failed), second at 2.5 s, delivered at 3 s.
        for (n, started) in [(1, 1_500), (2, 2_500)] {
            ev.attempts.push(AttemptRecord {
                delivery_id: id.clone(),
                attempt: n,
                started_at: T0.plus(Duration::from_millis(started)),
                duration_ms: 10,
                status: Some(200),
                error: None,
                outcome: "delivered".into(),
            });
        }
        let l = latency(&ev, T0, Duration::from_millis(40)).unwrap();
        assert_eq!(
            l,
            Latency {
                ack_ms: 40,
                queue_ms: 500,
                delivery_ms: 1_500,
                total_ms: 3_000
            }
        );
        // Not delivered: no latency.
        let pending = event(vec![delivery("handler", DeliveryState::Pending, 0, None)]);
        assert!(latency(&pending, T0, Duration::ZERO).is_none());
    }

    fn entry(last_success: Option<u64>, watching: u64, last: Option<CanaryRun>) -> SourceCanary {
        SourceCanary {
            tenant: "maelys".into(),
            source: "maelys-kustomer".into(),
            interval_seconds: 60,
            deadline_seconds: 120,
            watching_since: at(watching),
            last_success_at: last_success.map(at),
            last_success_latency: None,
            last,
            previous: None,
        }
    }

    fn run(stage: Stage, f: impl FnOnce(&mut CanaryRun)) -> Option<CanaryRun> {
        let mut r = CanaryRun {
            stage,
            ..CanaryRun::sending("cny_9".into(), at(180))
        };
        f(&mut r);
        Some(r)
    }

    #[test]
    fn canary_failed_fires_after_the_deadline_and_names_the_stage() {
        let deadline = Duration::from_secs(120);
        let failing = run(Stage::Failing, |r| {
            r.destination = Some("handler".into());
            r.status = Some(503);
            r.detail = Some("HTTP 503".into());
            r.attempts = Some(2);
        });
        let refused = run(Stage::Refused, |r| {
            r.status = Some(503);
            r.detail = Some("the store cannot commit".into());
        });
        let unreachable = run(Stage::Refused, |r| {
            r.detail = Some("connection refused".into())
        });
        let cases: Vec<(&str, Option<SourceCanary>, u64, Option<&str>)> = vec![
            ("success within the deadline", Some(entry(Some(100), 0, failing.clone())), 219, None),
            ("deadline reached", Some(entry(Some(100), 0, failing.clone())), 220, Some("delivery failing: destination `handler` answered HTTP 503")),
            ("refused with a status", Some(entry(Some(100), 0, refused)), 230, Some("refused at ingest: the last canary, sent 50s ago, was answered 503 (the store cannot commit)")),
            ("refused without an answer", Some(entry(Some(100), 0, unreachable)), 230, Some("got no answer (connection refused)")),
            ("nothing queued", Some(entry(Some(100), 0, run(Stage::NotQueued, |_| {}))), 230, Some("accepted but not delivered: nothing queued")),
            ("still pending", Some(entry(Some(100), 0, run(Stage::Pending, |r| r.destination = Some("handler".into())))), 230, Some("accepted but not delivered: still pending")),
            ("never succeeded: counted from watching", Some(entry(None, 50, run(Stage::Sending, |_| {}))), 169, None),
            ("never succeeded, deadline reached", Some(entry(None, 50, run(Stage::Sending, |_| {}))), 170, Some("no answer from the front door yet")),
            ("a restart gives a full deadline", Some(entry(Some(10), 200, None)), 319, None),
            ("nothing recorded: from watch_from", None, 119, None),
            ("nothing recorded, deadline reached", None, 120, Some("no canary has been sent for this source")),
            ("the sender stopped", Some(entry(Some(100), 0, run(Stage::Delivered, |_| {}))), 400, Some("none was sent since")),
        ];
        for (name, e, now, want) in cases {
            let v = verdict(e.as_ref(), T0, deadline, at(now));
            match (want, v) {
                (None, Verdict::Healthy { .. }) => {}
                (Some(text), Verdict::Failed { reason, value }) => {
                    assert!(reason.contains(text), "{name}: {reason}");
                    assert!(reason.contains("deadline 2m"), "{name}: {reason}");
                    assert!(value >= 120.0, "{name}: {value}");
                }
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
        // A canary being sent does not hide where the one before it stopped.
        let mut e = entry(Some(100), 0, run(Stage::Sending, |_| {}));
        e.previous = failing.clone();
        match verdict(Some(&e), T0, deadline, at(230)) {
            Verdict::Failed { reason, .. } => {
                assert!(reason.contains("delivery failing"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
        // Healthy says when to judge again: at the deadline.
        assert_eq!(
            verdict(Some(&entry(Some(100), 0, None)), T0, deadline, at(150)),
            Verdict::Healthy { until: at(220) }
        );
    }

    #[test]
    fn findings_cover_every_configured_source_with_its_own_deadline_and_severity() {
        let config = Config::from_toml_str(
            r#"
[[tenants]]
id = "maelys"
[[destinations]]
id = "handler"
url = "http://127.0.0.1:9/h"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["s"]
destinations = ["handler"]
[[sources]]
id = "maelys-slow"
tenant = "maelys"
kind = "kustomer"
secrets = ["s"]
destinations = ["handler"]
[canary.sources.maelys-slow]
interval = "5m"
deadline = "10m"
[[rules]]
rule = "canary_failed"
source = "maelys-slow"
severity = "warning"
"#,
        )
        .unwrap();
        let rules = RuleBook::new(&config.rules).unwrap();
        let book = CanaryBook::new();
        // At 3 minutes the default deadline has passed, the slow source's has not.
        let (found, next) = findings(&config, &rules, &book, T0, at(180));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key.labels.source, "maelys-kustomer");
        assert_eq!(found[0].key.rule, CANARY_FAILED);
        assert_eq!(found[0].params.severity, Severity::Critical);
        assert_eq!(next, Some(at(600)));
        let (found, next) = findings(&config, &rules, &book, T0, at(600));
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].params.severity, Severity::Warning);
        assert_eq!(next, None);
    }
}
