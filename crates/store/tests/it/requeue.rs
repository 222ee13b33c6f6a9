//! Requeues (issue 11): a page of a source's events in a window gets its stuck work a fresh
//! pending state (stale leases, retrying deliveries when asked), its work for destinations no
//! longer routed made dead, and a delivery for every routed destination it has none to
//! (received but never queued, or routed since). A dry run says the same and writes nothing;
//! pages follow `after`/`last`; running a requeue twice changes nothing the second time.

use std::time::Duration;

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::{EventId, Timestamp};
use intake_store::{RequeueItem, RequeuePage, RequeueRequest};

use crate::common::*;
use crate::conformance;

fn request(routes: &[&str], now: Timestamp) -> RequeueRequest {
    RequeueRequest {
        recovery: "rec_rq".into(),
        source: "kustomer".into(),
        from: Timestamp(T0),
        to: Timestamp(T0 + 3_600_000),
        after: None,
        limit: 100,
        routes: routes.iter().map(|r| r.to_string()).collect(),
        stale_before: now,
        include_retrying: true,
        dry_run: false,
        now,
        sample: 100,
    }
}

/// The counts of a page, without its items.
fn totals(p: &RequeuePage) -> (u64, u64, u64, u64, u64) {
    (
        p.events,
        p.stale_leases,
        p.retrying_reset,
        p.rerouted,
        p.created,
    )
}

/// (event, destination, action) of each item, with the events named.
fn items(
    p: &RequeuePage,
    names: &[(&EventId, &'static str)],
) -> Vec<(&'static str, String, String)> {
    let name = |id: &EventId| {
        names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or("?", |(_, n)| *n)
    };
    p.items
        .iter()
        .map(|i: &RequeueItem| (name(&i.event_id), i.destination.clone(), i.action.clone()))
        .collect()
}

async fn a_requeue_frees_stuck_work_reroutes_and_creates_what_is_missing(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    // e1: its crm delivery leased by a worker that died. e2: crm retrying, and work for
    // `legacy`, a destination the source no longer routes to. e3: received but never queued.
    // e4: pending to both routes, nothing to do. The source now routes to crm and warehouse.
    let e1 = event("kustomer", "k1", &["crm"], Timestamp(T0));
    let e2 = event("kustomer", "k2", &["crm", "legacy"], Timestamp(T0 + 1));
    let e3 = event("kustomer", "k3", &[], Timestamp(T0 + 2));
    let e4 = event("kustomer", "k4", &["crm", "warehouse"], Timestamp(T0 + 3));
    for ev in [&e1, &e2, &e3, &e4] {
        store.ingest(ev.clone()).await.unwrap();
    }
    let at = Timestamp(T0 + 10);
    let dead_worker = store
        .claim_due("crm", at, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(dead_worker.event_id, e1.id);
    let retried = store
        .claim_due("crm", at, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(retried.event_id, e2.id);
    let retry_at = Timestamp(T0 + 3_600_000);
    store
        .finish_attempt(attempt(&retried, NextStep::RetryAt(retry_at), at))
        .await
        .unwrap();

    let now = Timestamp(T0 + 120_000);
    let names = [
        (&e1.id, "e1"),
        (&e2.id, "e2"),
        (&e3.id, "e3"),
        (&e4.id, "e4"),
    ];
    let expected_items = vec![
        ("e1", "crm".to_string(), "stale_lease".to_string()),
        ("e1", "warehouse".to_string(), "created".to_string()),
        ("e2", "crm".to_string(), "retrying_reset".to_string()),
        ("e2", "legacy".to_string(), "rerouted".to_string()),
        ("e2", "warehouse".to_string(), "created".to_string()),
        ("e3", "crm".to_string(), "created".to_string()),
        ("e3", "warehouse".to_string(), "created".to_string()),
    ];

    // The dry run says what would be done and writes nothing.
    let before = serde_json::to_value(all_events(&*store).await).unwrap();
    let counters_before = db.counters().await;
    let dry = store
        .requeue_page(RequeueRequest {
            dry_run: true,
            ..request(&["crm", "warehouse"], now)
        })
        .await
        .unwrap();
    assert_eq!(totals(&dry), (4, 1, 1, 1, 4));
    assert_eq!(items(&dry, &names), expected_items);
    assert_eq!(dry.last.as_ref(), Some(&e4.id));
    assert_eq!(
        serde_json::to_value(all_events(&*store).await).unwrap(),
        before
    );
    assert_eq!(db.counters().await, counters_before);

    let page = store
        .requeue_page(request(&["crm", "warehouse"], now))
        .await
        .unwrap();
    assert_eq!(totals(&page), totals(&dry), "the dry run told the truth");
    assert_eq!(items(&page, &names), expected_items);
    assert_eq!(page.last.as_ref(), Some(&e4.id));

    // e1: due now, lease cleared, no attempt counted; the dead worker's lease is worthless.
    let d = delivery(&*store, &e1.id, &dead_worker.id).await;
    assert_eq!(
        (d.state, d.due_at, d.attempts),
        (DeliveryState::Pending, Some(now), 0)
    );
    store
        .finish_attempt(attempt(&dead_worker, NextStep::Delivered, now))
        .await
        .unwrap();
    let e1_after = event_detail(&*store, &e1.id).await;
    assert_eq!(e1_after.attempts[0].outcome, "superseded");
    let created = e1_after
        .summary
        .deliveries
        .iter()
        .find(|d| d.destination == "warehouse")
        .expect("a delivery to the new route");
    assert_eq!(created.state, DeliveryState::Pending);
    assert_eq!(created.due_at, Some(now));
    assert_eq!(created.recovery.as_deref(), Some("rec_rq"));
    assert_eq!(
        created.origin, None,
        "a first delivery goes with its event's origin"
    );
    assert_eq!(created.id, page.items[1].delivery_id);

    // e2: crm from scratch, legacy dead and saying why.
    let e2_after = event_detail(&*store, &e2.id).await;
    let crm = &e2_after
        .summary
        .deliveries
        .iter()
        .find(|d| d.destination == "crm")
        .unwrap();
    assert_eq!(
        (crm.state, crm.due_at, crm.attempts),
        (DeliveryState::Pending, Some(now), 0)
    );
    assert_eq!(
        e2_after.attempts.len(),
        1,
        "the attempt made stays recorded"
    );
    let legacy = e2_after
        .summary
        .deliveries
        .iter()
        .find(|d| d.destination == "legacy")
        .unwrap();
    assert_eq!(legacy.state, DeliveryState::Dead);
    let why = legacy.last_error.as_deref().unwrap_or_default();
    assert!(
        why.contains("re-routed by recovery rec_rq") && why.contains("`legacy`"),
        "{why}"
    );
    // e3: queued at last, to both routes.
    let e3_after = event_detail(&*store, &e3.id).await;
    let mut routes: Vec<&str> = e3_after
        .summary
        .deliveries
        .iter()
        .map(|d| d.destination.as_str())
        .collect();
    routes.sort();
    assert_eq!(routes, ["crm", "warehouse"]);
    // The work is due for the dispatchers.
    let crm_due = store.claim_due("crm", now, LEASE, 100).await.unwrap();
    assert_eq!(crm_due.len(), 4, "e1, e2, e3 and e4 to crm");
    assert!(store
        .claim_due("legacy", now, LEASE, 100)
        .await
        .unwrap()
        .is_empty());

    // Counted in the requeue's minute.
    let minute = now.as_millis().div_euclid(60_000) * 60_000;
    let mut added: Vec<(String, String, i64)> = db
        .counters()
        .await
        .into_iter()
        .filter(|r| r.0 == minute)
        .map(|r| (r.4, r.5, r.6))
        .collect();
    added.sort();
    assert_eq!(
        added,
        vec![
            ("crm".into(), "deliveries.created".into(), 1),
            ("legacy".into(), "deliveries.rerouted".into(), 1),
            ("warehouse".into(), "deliveries.created".into(), 3),
        ]
    );

    // Twice changes nothing the second time (the crm work is leased now, and not stale).
    let again = store
        .requeue_page(request(
            &["crm", "warehouse"],
            Timestamp(now.as_millis() + 1),
        ))
        .await
        .unwrap();
    assert_eq!(totals(&again), (4, 0, 0, 0, 0));
    assert!(again.items.is_empty());
    store.close().await.unwrap();
}

async fn retrying_work_is_left_alone_unless_asked_and_fresh_leases_are_not_stale(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let e1 = event("kustomer", "k1", &["crm"], Timestamp(T0));
    let e2 = event("kustomer", "k2", &["crm"], Timestamp(T0 + 1));
    store.ingest(e1.clone()).await.unwrap();
    store.ingest(e2.clone()).await.unwrap();
    let at = Timestamp(T0 + 10);
    let retried = store
        .claim_due("crm", at, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    store
        .finish_attempt(attempt(
            &retried,
            NextStep::RetryAt(Timestamp(T0 + 600_000)),
            at,
        ))
        .await
        .unwrap();
    let live = store
        .claim_due("crm", at, Duration::from_secs(600), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(live.event_id, e2.id);

    // The live lease ends after `stale_before`: a worker is on it.
    let now = Timestamp(T0 + 60_000);
    let page = store
        .requeue_page(RequeueRequest {
            include_retrying: false,
            ..request(&["crm"], now)
        })
        .await
        .unwrap();
    assert_eq!(totals(&page), (2, 0, 0, 0, 0));
    let d = delivery(&*store, &e1.id, &retried.id).await;
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(d.attempts, 1);
    let d = delivery(&*store, &e2.id, &live.id).await;
    assert_eq!(d.state, DeliveryState::InFlight);
    // Its worker finishes normally.
    store
        .finish_attempt(attempt(&live, NextStep::Delivered, now))
        .await
        .unwrap();
    assert_eq!(
        delivery(&*store, &e2.id, &live.id).await.state,
        DeliveryState::Delivered
    );
    store.close().await.unwrap();
}

async fn requeue_pages_follow_after_and_last_within_the_window(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    // Five events of the window never queued; one before it, one after it, one of another
    // source: those are never looked at.
    let mut inside = Vec::new();
    for i in 0..5 {
        let ev = event("kustomer", &format!("k{i}"), &[], Timestamp(T0 + 1_000 * i));
        store.ingest(ev.clone()).await.unwrap();
        inside.push(ev.id);
    }
    let early = event("kustomer", "early", &[], Timestamp(T0 - 1));
    let late = event("kustomer", "late", &[], Timestamp(T0 + 3_600_000));
    let other = event("zendesk", "z", &[], Timestamp(T0 + 10));
    for ev in [&early, &late, &other] {
        store.ingest(ev.clone()).await.unwrap();
    }
    let now = Timestamp(T0 + 7_200_000);
    let page_of = |after: Option<EventId>, dry_run: bool| RequeueRequest {
        after,
        limit: 2,
        dry_run,
        ..request(&["crm"], now)
    };

    // A dry run pages the same way.
    let dry = store.requeue_page(page_of(None, true)).await.unwrap();
    assert_eq!((dry.events, dry.created), (2, 2));
    assert_eq!(dry.last.as_ref(), Some(&inside[1]));

    let mut after = None;
    let mut seen = Vec::new();
    let mut created = 0;
    loop {
        let page = store
            .requeue_page(page_of(after.clone(), false))
            .await
            .unwrap();
        let Some(last) = page.last.clone() else {
            assert_eq!(page, RequeuePage::default(), "an empty page says nothing");
            break;
        };
        assert!(page.events <= 2);
        created += page.created;
        seen.extend(page.items.iter().map(|i| i.event_id.clone()));
        after = Some(last);
    }
    assert_eq!(seen, inside, "each event of the window once, in id order");
    assert_eq!(created, 5);
    for ev in [&early, &late, &other] {
        assert!(event_detail(&*store, &ev.id)
            .await
            .summary
            .deliveries
            .is_empty());
    }
    // Resuming from the middle finds its work done.
    let resumed = store
        .requeue_page(page_of(Some(inside[1].clone()), false))
        .await
        .unwrap();
    assert_eq!((resumed.events, resumed.created), (2, 0));
    assert_eq!(resumed.last.as_ref(), Some(&inside[3]));
    store.close().await.unwrap();
}

conformance!(
    a_requeue_frees_stuck_work_reroutes_and_creates_what_is_missing,
    retrying_work_is_left_alone_unless_asked_and_fresh_leases_are_not_stale,
    requeue_pages_follow_after_and_last_within_the_window,
);
