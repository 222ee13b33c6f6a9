//! Failures to commit: injected faults and real lock contention.

use std::time::{Duration, Instant};

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::{EventId, Timestamp};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::{Accepted, Rejection, RejectionKind, Store, StoreError, StoreFault};

use crate::common::*;
use crate::conformance;

async fn injected_write_fault_fails_every_write_and_stores_nothing(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    store.check_writable().await.unwrap();

    store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    let ev = event("kustomer", "k", &["crm", "warehouse"], now);
    let err = store.ingest(ev.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store
        .record_rejection(Rejection {
            at: now,
            tenant: TENANT.into(),
            source: "kustomer".into(),
            kind: RejectionKind::Invalid,
            reason: "not json".into(),
            body: Some(b"{".to_vec()),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Reads keep working while writes fail.
    assert!(all_events(&*store).await.is_empty());

    store.inject_fault(None).await.unwrap();
    store.check_writable().await.unwrap();
    assert!(
        all_events(&*store).await.is_empty(),
        "the failed ingest stored nothing"
    );
    assert!(store.get_event(&ev.id).await.unwrap().is_none());
    assert!(store.list_rejections(None, 10).await.unwrap().is_empty());
    assert!(store.queue_stats().await.unwrap().is_empty());
    let counted = db.scalar("SELECT COUNT(*) FROM counters").await;
    assert_eq!(counted, 0, "a failed write counts nothing");

    // The same event is accepted once the fault is gone: not a duplicate of a phantom.
    let accepted = store.ingest(ev.clone()).await.unwrap();
    assert!(!accepted.duplicate);
    assert_eq!(accepted.id, ev.id);
    assert_eq!(
        event_detail(&*store, &ev.id).await.summary.deliveries.len(),
        2
    );

    // Queue writes fail too, and leave the queue as it was.
    store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    let err = store.claim_due("crm", now, LEASE, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    store.inject_fault(None).await.unwrap();
    let claimed = store.claim_due("crm", now, LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    let err = store
        .finish_attempt(attempt(&claimed[0], NextStep::Delivered, now))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    store.inject_fault(None).await.unwrap();
    let detail = event_detail(&*store, &ev.id).await;
    let crm = detail
        .summary
        .deliveries
        .iter()
        .find(|d| d.destination == "crm")
        .unwrap();
    assert_eq!(crm.state, DeliveryState::InFlight);
    assert!(
        detail.attempts.is_empty(),
        "the failed finish recorded no attempt"
    );

    close(store).await;
}

/// SQLite only: a lock held by another connection is waited for up to the busy timeout.
/// (PostgreSQL's equivalent, a lost connection, is in `connection_loss`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lock_held_by_another_connection_makes_ingest_unavailable() {
    let db = Db::new(Kind::Sqlite).await;
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(SqliteStore::open(&db.path, options).unwrap());
    let now = Timestamp(T0);
    store
        .ingest(event("kustomer", "before", &["crm"], now))
        .await
        .unwrap();

    let other = rusqlite::Connection::open(&db.path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let blocked = event("kustomer", "blocked", &["crm"], now);
    let started = Instant::now();
    let err = store.ingest(blocked.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the busy timeout of 100 ms was not honoured: {:?}",
        started.elapsed()
    );
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(all_events(&*store).await.len(), 1);

    other.execute_batch("COMMIT").unwrap();
    store.check_writable().await.unwrap();
    let accepted = store.ingest(blocked.clone()).await.unwrap();
    assert!(
        !accepted.duplicate,
        "the refused ingest must not have been stored"
    );
    assert_eq!(accepted.id, blocked.id);
    assert_eq!(all_events(&*store).await.len(), 2);

    drop(other);
    close(store).await;
}

/// A fault applies to the requests queued after it, never to those queued before it, even
/// when they share a group commit with it.
async fn a_fault_does_not_fail_requests_queued_before_it(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);

    // Keep the writer waiting for a write lock, so that the next requests pile up behind it
    // and are committed together, in the order they were sent.
    let other = db.hold_write_lock().await;
    let ping = {
        let store = store.clone();
        tokio::spawn(async move { store.check_writable().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = event("kustomer", "before", &["crm"], now);
    let after = event("kustomer", "after", &["crm"], now);
    let requests = {
        let store = store.clone();
        let (before, after) = (before.clone(), after.clone());
        tokio::spawn(async move {
            tokio::join!(
                store.ingest(before),
                store.inject_fault(Some(StoreFault::RejectWrites)),
                store.ingest(after),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    other.release().await;

    ping.await.unwrap().unwrap();
    let (first, fault, second) = requests.await.unwrap();
    fault.unwrap();
    assert_eq!(
        first.unwrap(),
        Accepted {
            id: before.id.clone(),
            duplicate: false
        },
        "the ingest sent before the fault must succeed"
    );
    let err = second.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    store.inject_fault(None).await.unwrap();
    let ids: Vec<EventId> = all_events(&*store)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![before.id.clone()]);
    store.close().await.unwrap();
}

/// The story's bug as a fault: ingest answers as if all was well, the event is stored and
/// counted, and nothing is queued; every other write works. Cleared, ingest queues again.
async fn accept_without_queueing_stores_the_event_and_queues_nothing(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    store
        .inject_fault(Some(StoreFault::AcceptWithoutQueueing))
        .await
        .unwrap();
    let lost = event("kustomer", "lost", &["crm", "warehouse"], now);
    let accepted = store.ingest(lost.clone()).await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            id: lost.id.clone(),
            duplicate: false
        }
    );
    let detail = event_detail(&*store, &lost.id).await;
    assert!(detail.summary.deliveries.is_empty(), "{detail:?}");
    assert!(store
        .claim_due("crm", now, LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.queue_stats().await.unwrap().is_empty());
    // Other writes are not refused.
    store.check_writable().await.unwrap();
    store.put_state("k", "v".into()).await.unwrap();
    let created = db
        .scalar("SELECT COUNT(*) FROM counters WHERE metric = 'deliveries.created'")
        .await;
    assert_eq!(created, 0, "no delivery was created, none is counted");
    let accepted_count = db
        .scalar(
            "SELECT CAST(SUM(count) AS BIGINT) FROM counters WHERE metric = 'requests.accepted'",
        )
        .await;
    assert_eq!(accepted_count, 1);

    store.inject_fault(None).await.unwrap();
    let ok = event("kustomer", "ok", &["crm"], now);
    store.ingest(ok.clone()).await.unwrap();
    assert_eq!(
        event_detail(&*store, &ok.id).await.summary.deliveries.len(),
        1
    );
    assert_eq!(
        store.claim_due("crm", now, LEASE, 10).await.unwrap().len(),
        1
    );
    store.close().await.unwrap();
}

conformance!(
    injected_write_fault_fails_every_write_and_stores_nothing,
    a_fault_does_not_fail_requests_queued_before_it,
    accept_without_queueing_stores_the_event_and_queues_nothing,
);
