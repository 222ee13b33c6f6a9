//! Crash recovery (a node restarting under its id) and SQLite's one-process-per-file lock.

use std::collections::HashSet;
use std::time::Duration;

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::{DeliveryId, Timestamp};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::StoreError;

use crate::common::*;
use crate::conformance;

async fn leases_of_a_previous_process_are_due_at_once_after_reopen(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0 + 10);
    for i in 0..3 {
        let ev = event("kustomer", &format!("k{i}"), &["crm"], Timestamp(T0 + i));
        store.ingest(ev).await.unwrap();
    }
    let hour = Duration::from_secs(3600);
    let claimed = store.claim_due("crm", now, hour, 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // What a crash leaves behind: rows in flight under a lease that nobody will finish.
    close(store).await;
    let raw = db
        .scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'in_flight'")
        .await;
    assert_eq!(raw, 2, "the database holds the in-flight rows");

    let store = db.open().await;
    for c in &claimed {
        let d = delivery(&*store, &c.event_id, &c.id).await;
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.due_at, Some(Timestamp(0)));
        assert_eq!(d.attempts, 0);
    }
    assert_eq!(store.next_due_at("crm").await.unwrap(), Some(Timestamp(0)));
    // Long before their old lease would have expired, they are claimable again, first in line.
    let again = store.claim_due("crm", now, hour, 2).await.unwrap();
    let again_ids: HashSet<DeliveryId> = again.iter().map(|c| c.id.clone()).collect();
    let claimed_ids: HashSet<DeliveryId> = claimed.iter().map(|c| c.id.clone()).collect();
    assert_eq!(again_ids, claimed_ids);
    assert!(again
        .iter()
        .all(|c| c.lease_id != claimed[0].lease_id && c.attempt == 1));

    // The dead process's lease is worthless now.
    store
        .finish_attempt(attempt(&claimed[0], NextStep::Delivered, now))
        .await
        .unwrap();
    let detail = event_detail(&*store, &claimed[0].event_id).await;
    assert_eq!(detail.summary.deliveries[0].state, DeliveryState::InFlight);
    assert_eq!(detail.attempts[0].outcome, "superseded");
    // Nothing was lost across the restart.
    assert_eq!(all_events(&*store).await.len(), 3);

    close(store).await;
}

async fn reopen_keeps_final_and_retrying_states(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let ev = event("kustomer", "k", &["a", "b", "c"], now);
    store.ingest(ev.clone()).await.unwrap();
    let retry_at = Timestamp(T0 + 60_000);
    let a = store.claim_due("a", now, LEASE, 1).await.unwrap().remove(0);
    store
        .finish_attempt(attempt(&a, NextStep::Delivered, now))
        .await
        .unwrap();
    let b = store.claim_due("b", now, LEASE, 1).await.unwrap().remove(0);
    store
        .finish_attempt(attempt(&b, NextStep::RetryAt(retry_at), now))
        .await
        .unwrap();
    let c = store.claim_due("c", now, LEASE, 1).await.unwrap().remove(0);
    store
        .finish_attempt(attempt(&c, NextStep::Dead, now))
        .await
        .unwrap();
    close(store).await;

    let store = db.open().await;
    let states: Vec<(String, DeliveryState, Option<Timestamp>)> = event_detail(&*store, &ev.id)
        .await
        .summary
        .deliveries
        .into_iter()
        .map(|d| (d.destination, d.state, d.due_at))
        .collect();
    assert_eq!(
        states,
        vec![
            ("a".to_string(), DeliveryState::Delivered, None),
            ("b".to_string(), DeliveryState::Retrying, Some(retry_at)),
            ("c".to_string(), DeliveryState::Dead, None),
        ]
    );
    assert!(store
        .claim_due("b", now, LEASE, 1)
        .await
        .unwrap()
        .is_empty());
    close(store).await;
}

/// SQLite only: one process owns a file (on PostgreSQL, several nodes share the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_second_store_on_the_same_file_is_refused() {
    let db = Db::new(Kind::Sqlite).await;
    let store = db.open().await;
    store
        .ingest(event("kustomer", "k", &["crm"], Timestamp(T0)))
        .await
        .unwrap();

    match SqliteStore::open(&db.path, SqliteOptions::default()) {
        Err(StoreError::Open(msg)) => {
            assert!(msg.contains("in use"), "{msg}");
            assert!(msg.contains(&db.path.display().to_string()), "{msg}");
        }
        Err(other) => panic!("expected StoreError::Open, got {other:?}"),
        Ok(_) => panic!("a second store opened a file that is in use"),
    }
    // The refused open did not disturb the first store.
    store
        .ingest(event("kustomer", "k2", &["crm"], Timestamp(T0)))
        .await
        .unwrap();
    assert_eq!(all_events(&*store).await.len(), 2);

    close(store).await;
    let store = db.open().await;
    assert_eq!(all_events(&*store).await.len(), 2);
    close(store).await;
}

conformance!(
    leases_of_a_previous_process_are_due_at_once_after_reopen,
    reopen_keeps_final_and_retrying_states,
);
