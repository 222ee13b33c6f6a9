//! Replays (issue 11): a replay batch creates one new delivery per (event, destination) and
//! replay key, leaves the original deliveries and their attempts alone, is sent with origin
//! `replay`, is counted like ingest counts, and wakes the dispatchers. Also the event listing
//! filters a replay selects its events with.

use std::collections::HashSet;
use std::time::Duration;

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::event::Origin;
use intake_core::{EventId, Timestamp};
use intake_store::{EventFilter, ReplayBatch, ReplayOutcome, StoreError, WorkSignal};

use crate::common::*;
use crate::conformance;

fn batch(key: &str, items: &[(&EventId, &str)], now: Timestamp) -> ReplayBatch {
    ReplayBatch {
        recovery: "rec_1".into(),
        key: key.into(),
        items: items
            .iter()
            .map(|(e, d)| ((*e).clone(), (*d).to_string()))
            .collect(),
        now,
    }
}

async fn a_replay_creates_one_delivery_per_key_and_leaves_the_originals_alone(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let e1 = event("kustomer", "k1", &["crm", "warehouse"], Timestamp(T0));
    let e2 = event("kustomer", "k2", &["crm"], Timestamp(T0 + 1));
    store.ingest(e1.clone()).await.unwrap();
    store.ingest(e2.clone()).await.unwrap();
    // The handler got e1 once and lost it: that is what a replay is for.
    let claim = store
        .claim_due("crm", Timestamp(T0 + 10), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(claim.event_id, e1.id);
    store
        .finish_attempt(attempt(&claim, NextStep::Delivered, Timestamp(T0 + 20)))
        .await
        .unwrap();
    let before = event_detail(&*store, &e1.id).await;

    let now = Timestamp(T0 + 60_000);
    let first = store
        .replay_deliveries(batch(
            "rec_1:0",
            &[(&e1.id, "crm"), (&e2.id, "crm"), (&e1.id, "crm")],
            now,
        ))
        .await
        .unwrap();
    assert_eq!(
        first,
        ReplayOutcome {
            created: 2,
            already: 1
        },
        "a pair named twice in one batch is delivered once"
    );
    let again = store
        .replay_deliveries(batch("rec_1:0", &[(&e1.id, "crm"), (&e2.id, "crm")], now))
        .await
        .unwrap();
    assert_eq!(
        again,
        ReplayOutcome {
            created: 0,
            already: 2
        },
        "running the same replay twice changes nothing the second time"
    );
    let other_key = store
        .replay_deliveries(batch("rec_2:0", &[(&e1.id, "crm")], now))
        .await
        .unwrap();
    assert_eq!(other_key.created, 1, "another replay is another delivery");

    let after = event_detail(&*store, &e1.id).await;
    let crm: Vec<_> = after
        .summary
        .deliveries
        .iter()
        .filter(|d| d.destination == "crm")
        .collect();
    assert_eq!(crm.len(), 3);
    let original = crm.iter().find(|d| d.id == claim.id).unwrap();
    let before_original = before
        .summary
        .deliveries
        .iter()
        .find(|d| d.id == claim.id)
        .unwrap();
    assert_eq!(
        serde_json::to_value(original).unwrap(),
        serde_json::to_value(before_original).unwrap(),
        "the original delivery is untouched"
    );
    assert_eq!(original.origin, None);
    assert_eq!(original.recovery, None);
    for replayed in crm.iter().filter(|d| d.id != claim.id) {
        assert_eq!(replayed.state, DeliveryState::Pending);
        assert_eq!(replayed.attempts, 0);
        assert_eq!(replayed.due_at, Some(now));
        assert_eq!(replayed.origin, Some(Origin::Replay));
        assert_eq!(replayed.recovery.as_deref(), Some("rec_1"));
        assert_eq!(replayed.last_status, None);
    }
    assert_eq!(
        after.attempts.len(),
        1,
        "the original's attempt stays, alone"
    );
    assert_eq!(after.attempts[0].delivery_id, claim.id);
    // The warehouse was not named: it got nothing.
    assert_eq!(
        after
            .summary
            .deliveries
            .iter()
            .filter(|d| d.destination == "warehouse")
            .count(),
        1
    );
    assert_eq!(
        after.summary.origin,
        Origin::Webhook,
        "the event keeps its origin"
    );
    store.close().await.unwrap();
}

async fn a_replayed_delivery_is_sent_as_a_replay_and_counted(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let ev = event("kustomer", "k1", &["crm"], Timestamp(T0));
    store.ingest(ev.clone()).await.unwrap();
    let original = store
        .claim_due("crm", Timestamp(T0 + 10), LEASE, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(original.origin, Origin::Webhook);
    store
        .finish_attempt(attempt(&original, NextStep::Delivered, Timestamp(T0 + 20)))
        .await
        .unwrap();
    let before = db.counters().await;

    let now = Timestamp(T0 + 120_000);
    store
        .replay_deliveries(batch("rec_1:0", &[(&ev.id, "crm")], now))
        .await
        .unwrap();
    assert_eq!(store.next_due_at("crm").await.unwrap(), Some(now));
    let claimed = store.claim_due("crm", now, LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let replay = &claimed[0];
    assert_eq!(replay.origin, Origin::Replay);
    assert_eq!(replay.attempt, 1);
    assert_eq!(replay.event_id, ev.id);
    assert_ne!(replay.id, original.id);
    assert_eq!(replay.body, ev.body);
    assert_eq!(replay.received_at, ev.received_at);

    // Counted in the replay's minute: one delivery created for crm, one event replayed.
    let minute = now.as_millis().div_euclid(60_000) * 60_000;
    let added: Vec<CounterRow> = db
        .counters()
        .await
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    let row = |destination: &str, metric: &str| -> CounterRow {
        (
            minute,
            TENANT.into(),
            "kustomer".into(),
            "email".into(),
            destination.into(),
            metric.into(),
            1,
        )
    };
    assert_eq!(
        added,
        vec![row("crm", "deliveries.created"), row("", "events.replay")]
    );
    store.close().await.unwrap();
}

async fn a_replay_of_an_unknown_event_is_refused_and_writes_nothing(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let ev = event("kustomer", "k1", &["crm"], Timestamp(T0));
    store.ingest(ev.clone()).await.unwrap();
    let ghost = EventId::generate(Timestamp(T0));
    let err = store
        .replay_deliveries(batch(
            "rec_1:0",
            &[(&ev.id, "crm"), (&ghost, "crm")],
            Timestamp(T0 + 1),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains(ghost.as_str())),
        "{err:?}"
    );
    assert_eq!(
        event_detail(&*store, &ev.id).await.summary.deliveries.len(),
        1
    );
    assert_eq!(
        store
            .replay_deliveries(batch("rec_1:0", &[], Timestamp(T0)))
            .await
            .unwrap(),
        ReplayOutcome::default()
    );
    store.close().await.unwrap();
}

/// Waits for wake-ups of every destination in `expected` (other signals are ignored).
async fn wait_for_wakeups(
    rx: &mut tokio::sync::broadcast::Receiver<WorkSignal>,
    expected: &[&str],
) {
    let mut seen = HashSet::new();
    while !expected.iter().all(|d| seen.contains(*d)) {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no wake-up for {expected:?}; saw {seen:?}"))
            .unwrap()
        {
            WorkSignal::Destination(d) => {
                seen.insert(d);
            }
            WorkSignal::All => {}
        }
    }
}

async fn recovery_writes_wake_the_dispatchers(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let mut wakeups = store
        .subscribe_new_work()
        .expect("recovery writes signal new work on every backend");
    if kind == Kind::Postgres {
        // The listener says "look at everything" once it is listening: from then on no
        // notification is lost.
        let first = tokio::time::timeout(Duration::from_secs(20), wakeups.recv())
            .await
            .expect("the listener connects")
            .unwrap();
        assert_eq!(first, WorkSignal::All);
    }
    let ev = event("kustomer", "k1", &["crm"], Timestamp(T0));
    store.ingest(ev.clone()).await.unwrap();
    let never_queued = event("kustomer", "k2", &[], Timestamp(T0 + 1));
    store.ingest(never_queued).await.unwrap();
    let now = Timestamp(T0 + 60_000);
    store
        .replay_deliveries(batch("rec_1:0", &[(&ev.id, "crm")], now))
        .await
        .unwrap();
    wait_for_wakeups(&mut wakeups, &["crm"]).await;
    let page = store
        .requeue_page(intake_store::RequeueRequest {
            recovery: "rec_2".into(),
            source: "kustomer".into(),
            from: Timestamp(T0),
            to: now,
            after: None,
            limit: 10,
            routes: vec!["crm".into(), "warehouse".into()],
            stale_before: now,
            include_retrying: false,
            dry_run: false,
            now,
            sample: 0,
        })
        .await
        .unwrap();
    assert_eq!(page.created, 3);
    assert!(page.items.is_empty());
    wait_for_wakeups(&mut wakeups, &["crm", "warehouse"]).await;
    store.close().await.unwrap();
}

async fn events_are_listed_by_destination_origin_and_after_in_either_order(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let e1 = event("kustomer", "k1", &["crm", "warehouse"], Timestamp(T0));
    let e2 = intake_store::NewEvent {
        origin: Origin::Backfill,
        ..event("kustomer", "k2", &["crm"], Timestamp(T0 + 1))
    };
    let e3 = event("kustomer", "k3", &["warehouse"], Timestamp(T0 + 2));
    for ev in [&e1, &e2, &e3] {
        store.ingest(ev.clone()).await.unwrap();
    }
    let claim = store
        .claim_due("crm", Timestamp(T0 + 10), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(claim.event_id, e1.id);
    store
        .finish_attempt(attempt(&claim, NextStep::Delivered, Timestamp(T0 + 20)))
        .await
        .unwrap();

    let (i1, i2, i3) = (e1.id.clone(), e2.id.clone(), e3.id.clone());
    let name = |id: &EventId| -> &'static str {
        [(&i1, "e1"), (&i2, "e2"), (&i3, "e3")]
            .into_iter()
            .find(|(i, _)| *i == id)
            .map_or("?", |(_, n)| n)
    };
    let list = |filter: EventFilter| {
        let store = store.clone();
        async move {
            store
                .list_events(EventFilter {
                    limit: 100,
                    ..filter
                })
                .await
                .unwrap()
                .iter()
                .map(|e| name(&e.id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(EventFilter::default()).await, ["e3", "e2", "e1"]);
    let to_crm = EventFilter {
        destination: Some("crm".into()),
        ..EventFilter::default()
    };
    assert_eq!(list(to_crm.clone()).await, ["e2", "e1"]);
    assert_eq!(
        list(EventFilter {
            state: Some(DeliveryState::Delivered),
            ..to_crm.clone()
        })
        .await,
        ["e1"],
        "with a state: a delivery to that destination in that state"
    );
    assert_eq!(
        list(EventFilter {
            destination: Some("warehouse".into()),
            state: Some(DeliveryState::Delivered),
            ..EventFilter::default()
        })
        .await,
        Vec::<&str>::new(),
        "e1 has a delivered delivery, but not to the warehouse"
    );
    assert_eq!(
        list(EventFilter {
            destination: Some("warehouse".into()),
            state: Some(DeliveryState::Pending),
            ..EventFilter::default()
        })
        .await,
        ["e3", "e1"]
    );
    assert_eq!(
        list(EventFilter {
            origin: Some(Origin::Backfill),
            ..EventFilter::default()
        })
        .await,
        ["e2"]
    );
    assert_eq!(
        list(EventFilter {
            origin: Some(Origin::Webhook),
            ..EventFilter::default()
        })
        .await,
        ["e3", "e1"]
    );
    let ascending = EventFilter {
        ascending: true,
        ..EventFilter::default()
    };
    assert_eq!(list(ascending.clone()).await, ["e1", "e2", "e3"]);
    assert_eq!(
        list(EventFilter {
            after: Some(i1.clone()),
            ..ascending.clone()
        })
        .await,
        ["e2", "e3"]
    );
    // Paging forward: the last id of a page is the next page's `after`.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(EventFilter {
                after: after.clone(),
                limit: 2,
                ..ascending.clone()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        pages.push(page.into_iter().map(|e| e.id).collect::<Vec<_>>());
    }
    assert_eq!(pages, vec![vec![i1.clone(), i2.clone()], vec![i3.clone()]]);
    assert_eq!(
        list(EventFilter {
            after: Some(i1.clone()),
            before: Some(i3.clone()),
            ..EventFilter::default()
        })
        .await,
        ["e2"]
    );
    store.close().await.unwrap();
}

conformance!(
    a_replay_creates_one_delivery_per_key_and_leaves_the_originals_alone,
    a_replayed_delivery_is_sent_as_a_replay_and_counted,
    a_replay_of_an_unknown_event_is_refused_and_writes_nothing,
    recovery_writes_wake_the_dispatchers,
    events_are_listed_by_destination_origin_and_after_in_either_order,
);
