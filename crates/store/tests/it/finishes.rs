//! Finished attempts committed together: on both backends the writer's group commit takes the
//! finishes waiting (with the ingests queued beside them) into one transaction, and each
//! finish still applies only under its own lease.

use std::time::Duration;

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::Timestamp;
use intake_store::{Accepted, ClaimedDelivery, FinishedAttempt, Store, StoreError};

use crate::common::*;
use crate::conformance;

/// The count of `metric` over every counter row.
async fn counted(db: &Db, metric: &str) -> i64 {
    db.counters()
        .await
        .iter()
        .filter(|r| r.5 == metric)
        .map(|r| r.6)
        .sum()
}

/// Ingests `n` events for the `crm` destination and claims them all under one lease.
async fn claimed(store: &dyn Store, n: usize, now: Timestamp) -> Vec<ClaimedDelivery> {
    for i in 0..n {
        let at = Timestamp(T0 - 100 + i as i64);
        store
            .ingest(event("kustomer", &format!("k{i}"), &["crm"], at))
            .await
            .unwrap();
    }
    let claims = store.claim_due("crm", now, LEASE, n).await.unwrap();
    assert_eq!(claims.len(), n);
    claims
}

/// Sends `finishes` at once while another connection holds the write lock, so that they pile
/// up behind the writer and are committed together; returns their answers, in order.
async fn finish_together(
    db: &Db,
    store: &std::sync::Arc<dyn Store>,
    finishes: Vec<FinishedAttempt>,
) -> Vec<Result<(), StoreError>> {
    let other = db.hold_write_lock().await;
    let ping = {
        let store = store.clone();
        tokio::spawn(async move { store.check_writable().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = {
        let store = store.clone();
        tokio::spawn(async move {
            futures::future::join_all(finishes.into_iter().map(|f| store.finish_attempt(f))).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    other.release().await;
    ping.await.unwrap().unwrap();
    sent.await.unwrap()
}

/// Finishes and ingests committed in one transaction: a finish whose lease was taken over is
/// recorded as `superseded` and changes nothing, alone; every other finish changes its
/// delivery and is counted once; the ingests beside them get their own answers.
async fn finishes_committed_together_apply_each_under_its_own_lease(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let first = claimed(&*store, 6, now).await;
    // One lease expires and is taken over; its worker does not know yet.
    let later = now.plus(LEASE).plus(Duration::from_millis(1));
    let taken = store.claim_due("crm", later, LEASE, 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    let lost = taken[0].id.clone();

    let done = later.plus(Duration::from_millis(20));
    let next_of = |i: usize| match i % 3 {
        0 => NextStep::Delivered,
        1 => NextStep::RetryAt(done.plus(Duration::from_secs(60))),
        _ => NextStep::Dead,
    };
    let finishes: Vec<FinishedAttempt> = first
        .iter()
        .enumerate()
        .map(|(i, c)| attempt(c, next_of(i), done))
        .collect();

    // Two ingests ride in the same transaction: a new event and a copy of a stored one.
    let fresh = event("kustomer", "fresh", &["crm"], done);
    let copy = event("kustomer", "k0", &["crm"], done);
    let ingests = {
        let store = store.clone();
        let (fresh, copy) = (fresh.clone(), copy.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            tokio::join!(store.ingest(fresh), store.ingest(copy))
        })
    };
    let answers = finish_together(&db, &store, finishes).await;
    for answer in &answers {
        answer.as_ref().expect("every finish is answered Ok");
    }
    let (fresh_answer, copy_answer) = ingests.await.unwrap();
    assert_eq!(
        fresh_answer.unwrap(),
        Accepted {
            id: fresh.id.clone(),
            duplicate: false
        }
    );
    let copy_answer = copy_answer.unwrap();
    assert!(copy_answer.duplicate);
    assert_ne!(copy_answer.id, copy.id);

    let mut expected = [0i64; 3];
    for (i, c) in first.iter().enumerate() {
        let detail = event_detail(&*store, &c.event_id).await;
        let d = &detail.summary.deliveries[0];
        assert_eq!(detail.attempts.len(), 1, "every finish is recorded");
        if c.id == lost {
            assert_eq!(
                d.state,
                DeliveryState::InFlight,
                "the lost lease changes nothing"
            );
            assert_eq!(d.attempts, 0);
            assert_eq!(d.due_at, Some(later.plus(LEASE)));
            assert_eq!(detail.attempts[0].outcome, "superseded");
            continue;
        }
        let state = match next_of(i) {
            NextStep::Delivered => DeliveryState::Delivered,
            NextStep::RetryAt(_) => DeliveryState::Retrying,
            NextStep::Dead => DeliveryState::Dead,
        };
        expected[i % 3] += 1;
        assert_eq!(d.state, state, "delivery {i}");
        assert_eq!(d.attempts, 1);
        assert_eq!(detail.attempts[0].outcome, state.as_str());
    }
    assert_eq!(
        counted(&db, "deliveries.delivered").await,
        expected[0],
        "delivered"
    );
    assert_eq!(counted(&db, "deliveries.failed").await, expected[1]);
    assert_eq!(counted(&db, "deliveries.dead").await, expected[2]);
    assert_eq!(counted(&db, "requests.accepted").await, 7);
    assert_eq!(counted(&db, "requests.duplicate").await, 1);

    // The worker holding the lease now finishes for real.
    store
        .finish_attempt(attempt(&taken[0], NextStep::Delivered, done))
        .await
        .unwrap();
    let detail = event_detail(&*store, &taken[0].event_id).await;
    assert_eq!(detail.summary.deliveries[0].state, DeliveryState::Delivered);
    let outcomes: Vec<&str> = detail.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["superseded", "delivered"]);
    assert_eq!(counted(&db, "deliveries.delivered").await, expected[0] + 1);
    store.close().await.unwrap();
}

conformance!(finishes_committed_together_apply_each_under_its_own_lease);

/// A finish that fails (here: it names a delivery that does not exist, which the attempts'
/// foreign key refuses) fails alone; the finishes committed with it are applied and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_failing_finish_fails_alone() {
    let db = Db::new(Kind::Postgres).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let claims = claimed(&*store, 3, now).await;
    let done = now.plus(Duration::from_millis(20));
    let mut finishes: Vec<FinishedAttempt> = claims
        .iter()
        .map(|c| attempt(c, NextStep::Delivered, done))
        .collect();
    let mut bogus = finishes[1].clone();
    bogus.delivery_id = intake_core::DeliveryId::generate(done);
    finishes.insert(1, bogus);

    let answers = finish_together(&db, &store, finishes).await;
    assert!(answers[0].is_ok() && answers[2].is_ok() && answers[3].is_ok());
    let err = answers[1].as_ref().unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    for c in &claims {
        assert_eq!(
            delivery(&*store, &c.event_id, &c.id).await.state,
            DeliveryState::Delivered
        );
    }
    assert_eq!(counted(&db, "deliveries.delivered").await, 3);
    // Successes are kept on their delivery rows: no attempt row, and none for the bogus one.
    assert_eq!(db.scalar("SELECT COUNT(*) FROM attempts").await, 0);
    store.close().await.unwrap();
}

/// Two nodes on one database: node A's finishes, committed together, are refused row by row
/// for the deliveries node B took over after A's leases expired, while node B finishes those
/// at the same time; each delivery ends delivered once and is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_finishes_of_a_node_whose_leases_were_taken_over_are_refused_row_by_row() {
    let db = Db::new(Kind::Postgres).await;
    let a = db.open_as("node-a").await;
    let b = db.open_as("node-b").await;
    let now = Timestamp(T0);
    let on_a = claimed(&*a, 8, now).await;
    let later = now.plus(LEASE).plus(Duration::from_millis(1));
    let on_b = b.claim_due("crm", later, LEASE, 3).await.unwrap();
    assert_eq!(on_b.len(), 3);

    let done = later.plus(Duration::from_millis(20));
    let late: Vec<FinishedAttempt> = on_a
        .iter()
        .map(|c| attempt(c, NextStep::Delivered, done))
        .collect();
    let current: Vec<FinishedAttempt> = on_b
        .iter()
        .map(|c| attempt(c, NextStep::Delivered, done))
        .collect();
    let (from_a, from_b) = tokio::join!(
        futures::future::join_all(late.into_iter().map(|f| a.finish_attempt(f))),
        futures::future::join_all(current.into_iter().map(|f| b.finish_attempt(f))),
    );
    assert!(from_a.iter().chain(&from_b).all(Result::is_ok));

    for c in &on_a {
        let detail = event_detail(&*a, &c.event_id).await;
        assert_eq!(detail.summary.deliveries[0].state, DeliveryState::Delivered);
        let mut outcomes: Vec<&str> = detail.attempts.iter().map(|x| x.outcome.as_str()).collect();
        outcomes.sort();
        if on_b.iter().any(|x| x.id == c.id) {
            assert_eq!(outcomes, ["delivered", "superseded"], "{}", c.id);
        } else {
            assert_eq!(outcomes, ["delivered"], "{}", c.id);
        }
    }
    assert_eq!(counted(&db, "deliveries.delivered").await, 8);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The scans PostgreSQL counted on `index` since the last reset, once the store's
/// connections have closed (a backend sends its counts when it exits); waits up to 10 s for
/// them to arrive.
async fn index_scans(client: &tokio_postgres::Client, index: &str, at_least: i64) -> i64 {
    let mut scans = 0;
    for _ in 0..100 {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT COALESCE(SUM(idx_scan), 0)::int8 FROM pg_stat_user_indexes
                 WHERE indexrelname = $1",
                &[&index],
            )
            .await
            .unwrap();
        scans = row.get(0);
        if scans >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scans
}

/// Finishes look their deliveries up by primary key, however many dead entries the partial
/// indexes hold. PostgreSQL keeps an entry in `deliveries_in_flight` and `deliveries_due` for
/// every delivery ever claimed until autovacuum comes (claims and finishes are not HOT
/// updates); with statistics saying few deliveries are in flight, the planner served a
/// finish's `state = 'in_flight'` by bitmap-scanning those indexes, and a finish of 45
/// deliveries read 161,841 dead entries (docs/benchmarks.md). The statements say
/// `(state = 'in_flight') IS TRUE`, which no partial index can serve. Sequential scans are
/// off for this database, as they would be too costly on a big table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_finishes_go_by_primary_key_not_through_the_partial_indexes() {
    let db = Db::new(Kind::Postgres).await;
    let name = db.pg.as_ref().expect("postgres").name.clone();
    let admin = db.pg_client().await;
    admin
        .batch_execute(&format!("ALTER DATABASE {name} SET enable_seqscan = off"))
        .await
        .unwrap();
    let store = db.open().await;
    let now = Timestamp(T0);
    // 1,000 deliveries claimed and finished: 1,000 dead entries in each partial index.
    for round in 0..5 {
        for i in 0..200 {
            let at = Timestamp(T0 - 10_000 + round * 200 + i);
            let key = format!("old-{round}-{i}");
            store
                .ingest(event("kustomer", &key, &["crm"], at))
                .await
                .unwrap();
        }
        let claims = store.claim_due("crm", now, LEASE, 200).await.unwrap();
        assert_eq!(claims.len(), 200);
        for c in &claims {
            store
                .finish_attempt(attempt(c, NextStep::Delivered, now))
                .await
                .unwrap();
        }
    }
    admin
        .batch_execute("ANALYZE deliveries; SELECT pg_stat_reset()")
        .await
        .unwrap();

    let fresh = claimed(&*store, 50, now).await;
    let finishes = fresh.iter().map(|c| attempt(c, NextStep::Delivered, now));
    let answers = futures::future::join_all(finishes.map(|f| store.finish_attempt(f))).await;
    assert!(answers.iter().all(Result::is_ok));
    close(store).await;

    assert!(
        index_scans(&admin, "deliveries_pkey", 1).await >= 1,
        "the finishes found their deliveries by primary key"
    );
    assert_eq!(
        index_scans(&admin, "deliveries_in_flight", 0).await,
        0,
        "no finish read deliveries_in_flight"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
            .await,
        1_050
    );
}
