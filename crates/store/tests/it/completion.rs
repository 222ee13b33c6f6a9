//! Completion receipts: a 2xx to a destination on receipts leaves the delivery `received`;
//! confirmations are recorded once, counted in the same transaction, and the backlog of
//! deliveries awaiting theirs is read per tenant and source.

use std::time::Duration;

use intake_core::delivery::{
    CompletionOutcome, CompletionState, Confirmation, DeliveryState, NextStep,
};
use intake_core::Timestamp;
use intake_store::{CompletionReply, CompletionRequest, EventFilter};

use crate::common::*;
use crate::conformance;

fn confirm(
    id: &intake_core::DeliveryId,
    outcome: CompletionOutcome,
    at: Timestamp,
) -> CompletionRequest {
    CompletionRequest {
        id: id.clone(),
        outcome,
        detail: Some(format!("said {}", outcome.as_str())),
        at,
    }
}

async fn a_2xx_on_receipts_is_received_and_the_first_confirmation_wins(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let mut events = Vec::new();
    for i in 0..3 {
        let ev = event(
            "kustomer",
            &format!("k{i}"),
            &["crm", "warehouse"],
            Timestamp(T0 - 100),
        );
        store.ingest(ev.clone()).await.unwrap();
        events.push(ev);
    }
    // `crm` is on receipts, `warehouse` is not.
    for c in store.claim_due("crm", now, LEASE, 10).await.unwrap() {
        let mut a = attempt(&c, NextStep::Delivered, now);
        a.awaits_completion = true;
        store.finish_attempt(a).await.unwrap();
    }
    for c in store.claim_due("warehouse", now, LEASE, 10).await.unwrap() {
        store
            .finish_attempt(attempt(&c, NextStep::Delivered, now))
            .await
            .unwrap();
    }
    let crm = |i: usize| events[i].deliveries[0].0.clone();
    let warehouse = events[0].deliveries[1].0.clone();
    let d = delivery(&*store, &events[0].id, &crm(0)).await;
    assert_eq!(d.state, DeliveryState::Delivered, "final for retries");
    assert_eq!(d.completion, Some(CompletionState::Received));
    assert_eq!(
        delivery(&*store, &events[0].id, &warehouse)
            .await
            .completion,
        None
    );

    let later = now.plus(Duration::from_secs(90));
    let replies = store
        .complete_deliveries(vec![
            confirm(&crm(0), CompletionOutcome::Ok, later),
            confirm(&crm(1), CompletionOutcome::Failed, later),
            // The same delivery again in the same batch: the first outcome stands.
            confirm(&crm(0), CompletionOutcome::Failed, later),
            confirm(
                &"dlv_01J00000000000000000000000".parse().unwrap(),
                CompletionOutcome::Ok,
                later,
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![
            CompletionReply::Confirmed(Confirmation::Recorded(CompletionState::Completed)),
            CompletionReply::Confirmed(Confirmation::Recorded(CompletionState::CompletionFailed)),
            CompletionReply::Confirmed(Confirmation::Duplicate(CompletionState::Completed)),
            CompletionReply::NotFound,
        ]
    );
    // A repeat later changes nothing either.
    let again = store
        .complete_deliveries(vec![confirm(
            &crm(1),
            CompletionOutcome::Ok,
            later.plus(LEASE),
        )])
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![CompletionReply::Confirmed(Confirmation::Duplicate(
            CompletionState::CompletionFailed
        ))]
    );
    let d = delivery(&*store, &events[1].id, &crm(1)).await;
    assert_eq!(d.completion, Some(CompletionState::CompletionFailed));
    assert_eq!(d.completed_at, Some(later));
    assert_eq!(d.completion_detail.as_deref(), Some("said failed"));

    // Counted once each, at the confirmation's minute, with the delivery's labels.
    let counted: Vec<(String, String, i64)> = db
        .counters()
        .await
        .into_iter()
        .filter(|r| r.5.starts_with("deliveries.complet"))
        .map(|r| (r.5, r.4, r.6))
        .collect();
    assert_eq!(
        counted,
        vec![
            ("deliveries.completed".into(), "crm".into(), 1),
            ("deliveries.completion_failed".into(), "crm".into(), 1),
        ]
    );

    // The record a confirmation is checked against.
    let r = store.get_delivery(&crm(2)).await.unwrap().unwrap();
    assert_eq!(
        (r.destination.as_str(), r.tenant.as_str(), r.source.as_str()),
        ("crm", TENANT, "kustomer")
    );
    assert_eq!(r.completion, Some(CompletionState::Received));
    assert_eq!(r.event_id, events[2].id);

    // The filter a replay of lost work uses.
    let lost = store
        .list_events(EventFilter {
            completion: Some(CompletionState::Received),
            destination: Some("crm".into()),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        lost.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![events[2].id.clone()]
    );
    store.close().await.unwrap();
}

async fn a_delivery_never_sent_cannot_be_confirmed_but_one_in_flight_can(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let waiting = event("kustomer", "waiting", &["crm"], Timestamp(T0 - 100));
    store.ingest(waiting.clone()).await.unwrap();
    let id = waiting.deliveries[0].0.clone();
    let replies = store
        .complete_deliveries(vec![confirm(&id, CompletionOutcome::Ok, now)])
        .await
        .unwrap();
    assert_eq!(replies, vec![CompletionReply::NotReceived]);
    assert!(db
        .counters()
        .await
        .iter()
        .all(|r| !r.5.starts_with("deliveries.complet")));

    // A handler faster than intake's reading of its 2xx: confirmed while in flight, and the
    // 2xx that follows keeps the confirmation.
    let claimed = store.claim_due("crm", now, LEASE, 1).await.unwrap();
    let replies = store
        .complete_deliveries(vec![confirm(&id, CompletionOutcome::Ok, now)])
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![CompletionReply::Confirmed(Confirmation::Recorded(
            CompletionState::Completed
        ))]
    );
    let mut a = attempt(
        &claimed[0],
        NextStep::Delivered,
        now.plus(Duration::from_secs(1)),
    );
    a.awaits_completion = true;
    store.finish_attempt(a).await.unwrap();
    let d = delivery(&*store, &waiting.id, &id).await;
    assert_eq!(
        (d.state, d.completion),
        (DeliveryState::Delivered, Some(CompletionState::Completed))
    );
    store.close().await.unwrap();
}

async fn the_backlog_counts_awaiting_and_overdue_deliveries_per_source(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let mut ids = Vec::new();
    // Received at T0 + 0, 1, 2 … minutes, two sources.
    for i in 0..4i64 {
        let source = if i < 3 { "kustomer" } else { "zendesk" };
        let ev = event(source, &format!("k{i}"), &["crm"], Timestamp(T0 - 100));
        store.ingest(ev.clone()).await.unwrap();
        ids.push(ev.deliveries[0].0.clone());
    }
    for (i, id) in ids.iter().enumerate() {
        let at = Timestamp(T0 + i as i64 * 60_000);
        let claimed = store.claim_due("crm", at, LEASE, 10).await.unwrap();
        let c = claimed.iter().find(|c| &c.id == id).expect("claimed");
        let mut a = attempt(c, NextStep::Delivered, at);
        a.awaits_completion = true;
        store.finish_attempt(a).await.unwrap();
        for other in claimed.iter().filter(|c| &c.id != id) {
            store
                .release(vec![(other.id.clone(), other.lease_id.clone())], at)
                .await
                .unwrap();
        }
    }
    store
        .complete_deliveries(vec![confirm(
            &ids[2],
            CompletionOutcome::Ok,
            Timestamp(T0 + 300_000),
        )])
        .await
        .unwrap();
    // Overdue: received before T0 + 90 s (ids 0 and 1).
    let backlog = store
        .completion_backlog("crm", Timestamp(T0 + 90_000))
        .await
        .unwrap();
    let view: Vec<_> = backlog
        .iter()
        .map(|b| {
            (
                b.source.as_str(),
                b.awaiting,
                b.overdue,
                b.oldest_received_at,
                b.oldest.clone(),
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            ("kustomer", 2, 2, Some(Timestamp(T0)), Some(ids[0].clone())),
            (
                "zendesk",
                1,
                0,
                Some(Timestamp(T0 + 180_000)),
                Some(ids[3].clone())
            ),
        ]
    );
    assert!(store
        .completion_backlog("warehouse", Timestamp(T0))
        .await
        .unwrap()
        .is_empty());
    store.close().await.unwrap();
}

conformance!(
    a_2xx_on_receipts_is_received_and_the_first_confirmation_wins,
    a_delivery_never_sent_cannot_be_confirmed_but_one_in_flight_can,
    the_backlog_counts_awaiting_and_overdue_deliveries_per_source,
);
