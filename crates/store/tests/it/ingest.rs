//! Ingest: one transaction per event and its deliveries, deduplication, group commit.

use std::collections::HashSet;

use intake_core::delivery::DeliveryState;
use intake_core::{DeliveryId, EventId, Timestamp};
use intake_store::{Accepted, QueueStats, StoreError};

use crate::common::*;
use crate::conformance;

async fn ingest_stores_event_with_pending_deliveries_and_dedupes_per_source(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);

    let first = event("kustomer", "k1", &["crm", "warehouse"], t);
    let accepted = store.ingest(first.clone()).await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            id: first.id.clone(),
            duplicate: false
        }
    );

    let detail = event_detail(&*store, &first.id).await;
    assert_eq!(detail.summary.source, "kustomer");
    assert_eq!(detail.summary.tenant, TENANT);
    assert_eq!(detail.summary.dedupe_key, "k1");
    assert_eq!(detail.summary.channel, "email");
    assert_eq!(detail.summary.raw_channel.as_deref(), Some("EMAIL"));
    assert_eq!(detail.summary.received_at, t);
    assert_eq!(detail.summary.occurred_at, first.normalized.occurred_at);
    assert_eq!(detail.summary.object_type.as_deref(), Some("message"));
    assert_eq!(detail.summary.object_id.as_deref(), Some("msg-k1"));
    assert_eq!(detail.summary.conversation_id.as_deref(), Some("conv-k1"));
    assert_eq!(detail.body, first.body);
    assert_eq!(detail.headers, first.headers);
    assert!(detail.attempts.is_empty());
    let mut want: Vec<(DeliveryId, String)> = first.deliveries.clone();
    want.sort_by(|a, b| a.1.cmp(&b.1));
    let got: Vec<(DeliveryId, String)> = detail
        .summary
        .deliveries
        .iter()
        .map(|d| (d.id.clone(), d.destination.clone()))
        .collect();
    assert_eq!(got, want);
    for d in &detail.summary.deliveries {
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.attempts, 0);
        assert_eq!(
            d.due_at,
            Some(t),
            "a new delivery is due when it is received"
        );
        assert_eq!(d.delivered_at, None);
    }

    // Same source and dedupe key, new id and even another destination list: a duplicate.
    let again = event(
        "kustomer",
        "k1",
        &["crm", "warehouse", "audit"],
        Timestamp(T0 + 500),
    );
    assert_ne!(again.id, first.id);
    let accepted = store.ingest(again.clone()).await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            id: first.id.clone(),
            duplicate: true
        }
    );
    assert!(store.get_event(&again.id).await.unwrap().is_none());
    let events = all_events(&*store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, first.id);
    assert_eq!(events[0].deliveries.len(), 2);
    let stats = store.queue_stats().await.unwrap();
    let total: u64 = stats.iter().map(|s| s.pending).sum();
    assert_eq!(total, 2, "the duplicate wrote no delivery: {stats:?}");
    assert!(stats.iter().all(|s| s.destination != "audit"));

    // The same dedupe key on another source is another event.
    let other = event("zendesk", "k1", &["crm"], Timestamp(T0 + 1_000));
    let accepted = store.ingest(other.clone()).await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            id: other.id.clone(),
            duplicate: false
        }
    );
    let events = all_events(&*store).await;
    assert_eq!(events.len(), 2);
    let ids: HashSet<EventId> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, HashSet::from([first.id.clone(), other.id.clone()]));

    close(store).await;
}

async fn a_failing_ingest_leaves_neither_event_nor_deliveries(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);

    let first = event("kustomer", "k1", &["crm"], t);
    store.ingest(first.clone()).await.unwrap();

    // The second delivery reuses the first event's delivery id: its insert fails after the
    // event row and the first delivery row were written, so everything must be undone.
    let mut broken = event("kustomer", "k2", &["crm", "warehouse"], t);
    broken.deliveries[1].0 = first.deliveries[0].0.clone();
    let err = store.ingest(broken.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(store.get_event(&broken.id).await.unwrap().is_none());
    let events = all_events(&*store).await;
    assert_eq!(events.len(), 1);
    let stats: Vec<QueueStats> = store.queue_stats().await.unwrap();
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(
        (stats[0].destination.as_str(), stats[0].pending),
        ("crm", 1)
    );

    // Nothing of the failed ingest is left behind, not even its dedupe key: a retry with a
    // fresh delivery id is a new event, not a duplicate of a phantom.
    let retry = event("kustomer", "k2", &["crm", "warehouse"], t);
    let accepted = store.ingest(retry.clone()).await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            id: retry.id.clone(),
            duplicate: false
        }
    );
    assert_eq!(
        event_detail(&*store, &retry.id)
            .await
            .summary
            .deliveries
            .len(),
        2
    );

    close(store).await;
}

async fn five_hundred_concurrent_ingests_all_commit(kind: Kind) {
    const N: usize = 500;
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);

    let mut tasks = Vec::with_capacity(N);
    for i in 0..N {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let ev = event("kustomer", &format!("key-{i}"), &["crm"], t);
            let sent = (ev.id.clone(), ev.deliveries[0].0.clone());
            (sent, store.ingest(ev).await)
        }));
    }
    let mut sent = Vec::with_capacity(N);
    for task in tasks {
        let ((id, delivery), result) = task.await.unwrap();
        let accepted = result.unwrap();
        assert_eq!(
            accepted,
            Accepted {
                id: id.clone(),
                duplicate: false
            }
        );
        sent.push((id, delivery));
    }

    let events = all_events(&*store).await;
    assert_eq!(events.len(), N);
    let listed: HashSet<EventId> = events.iter().map(|e| e.id.clone()).collect();
    let expected: HashSet<EventId> = sent.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(expected.len(), N, "event ids are distinct");
    assert_eq!(listed, expected);
    let deliveries: std::collections::HashMap<EventId, DeliveryId> = sent.into_iter().collect();
    for e in &events {
        assert_eq!(e.deliveries.len(), 1, "{:?}", e.id);
        assert_eq!(e.deliveries[0].id, deliveries[&e.id]);
        assert_eq!(e.deliveries[0].destination, "crm");
        assert_eq!(e.deliveries[0].state, DeliveryState::Pending);
    }

    // The counters summed over many group-committed requests add up.
    let accepted = db
        .scalar(
            "SELECT CAST(SUM(count) AS BIGINT) FROM counters WHERE metric = 'requests.accepted'",
        )
        .await;
    assert_eq!(accepted, N as i64);

    store.close().await.unwrap();
}

async fn concurrent_copies_of_one_event_are_accepted_once(kind: Kind) {
    const N: usize = 50;
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);

    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let ev = event("kustomer", "same", &["crm", "warehouse"], t);
            let id = ev.id.clone();
            (id, store.ingest(ev).await.unwrap())
        }));
    }
    let mut results = Vec::with_capacity(N);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let originals: Vec<&EventId> = results
        .iter()
        .filter(|(_, a)| !a.duplicate)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(originals.len(), 1, "exactly one copy is the original");
    let winner = originals[0].clone();
    assert!(
        results.iter().all(|(_, a)| a.id == winner),
        "every copy answers the original's id"
    );

    let events = all_events(&*store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, winner);
    assert_eq!(events[0].deliveries.len(), 2);
    let duplicates = db
        .scalar(
            "SELECT CAST(SUM(count) AS BIGINT) FROM counters WHERE metric = 'requests.duplicate'",
        )
        .await;
    assert_eq!(duplicates, N as i64 - 1);

    store.close().await.unwrap();
}

conformance!(
    ingest_stores_event_with_pending_deliveries_and_dedupes_per_source,
    a_failing_ingest_leaves_neither_event_nor_deliveries,
    five_hundred_concurrent_ingests_all_commit,
    concurrent_copies_of_one_event_are_accepted_once,
);
