//! Several nodes on one store: heartbeats, duty leases, leases of dead nodes, and (PostgreSQL
//! only, since one process owns a SQLite file) two stores on one database at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use intake_core::delivery::DeliveryState;
use intake_core::{DeliveryId, Timestamp};
use intake_store::{NodeInfo, Store, WorkSignal};

use crate::common::*;
use crate::conformance;

fn node(store: &dyn Store, at: Timestamp) -> NodeInfo {
    NodeInfo {
        id: store.node_id().to_string(),
        address: "127.0.0.1:8080".into(),
        started_at: Timestamp(T0),
        last_heartbeat: at,
    }
}

const TTL: Duration = Duration::from_secs(10);

async fn a_duty_lease_is_taken_renewed_listed_and_released(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store.heartbeat(node(&*store, t)).await.unwrap();
    assert!(store.acquire_duty("lease-reaper", t, TTL).await.unwrap());
    let later = t.plus(Duration::from_secs(3));
    assert!(
        store
            .acquire_duty("lease-reaper", later, TTL)
            .await
            .unwrap(),
        "the holder renews its own lease"
    );
    store.heartbeat(node(&*store, later)).await.unwrap();
    let view = store.cluster().await.unwrap();
    assert_eq!(view.nodes, vec![node(&*store, later)]);
    assert_eq!(view.duties.len(), 1);
    let lease = &view.duties[0];
    assert_eq!(lease.duty, "lease-reaper");
    assert_eq!(lease.holder, store.node_id());
    assert_eq!(
        lease.acquired_at, t,
        "a renewal keeps the time it was taken"
    );
    assert_eq!(lease.expires_at, later.plus(TTL));

    store.release_duty("lease-reaper").await.unwrap();
    assert!(store.cluster().await.unwrap().duties.is_empty());
    assert!(store
        .acquire_duty("lease-reaper", later, TTL)
        .await
        .unwrap());
    store.leave().await.unwrap();
    assert_eq!(
        store.cluster().await.unwrap(),
        Default::default(),
        "a node that leaves takes its duties and its entry with it"
    );
    close(store).await;
}

async fn a_node_never_reaps_its_own_leases(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store.heartbeat(node(&*store, t)).await.unwrap();
    for i in 0..3 {
        store
            .ingest(event("kustomer", &format!("k{i}"), &["crm"], t))
            .await
            .unwrap();
    }
    let claimed = store
        .claim_due("crm", t, Duration::from_secs(3600), 2)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    // However old its own heartbeat looks (a clock moved on, a heartbeat not yet written), the
    // node asking is alive: its attempts in flight keep their leases.
    let late = t.plus(TTL).plus(Duration::from_secs(3600));
    assert_eq!(store.reap_orphaned_leases(late, TTL).await.unwrap(), 0);
    for c in &claimed {
        let d = delivery(&*store, &c.event_id, &c.id).await;
        assert_eq!(d.state, DeliveryState::InFlight);
    }
    // Nodes silent for a day are forgotten.
    store
        .reap_orphaned_leases(t.plus(Duration::from_secs(2 * 86_400)), TTL)
        .await
        .unwrap();
    assert!(store.cluster().await.unwrap().nodes.is_empty());
    close(store).await;
}

conformance!(
    a_duty_lease_is_taken_renewed_listed_and_released,
    a_node_never_reaps_its_own_leases,
);

async fn two_nodes() -> (Db, Arc<dyn Store>, Arc<dyn Store>) {
    let db = Db::new(Kind::Postgres).await;
    let a = db.open_as("node-a").await;
    let b = db.open_as("node-b").await;
    (db, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_opening_together_migrate_once() {
    let db = Db::new(Kind::Postgres).await;
    let url = db.url();
    let opens: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                intake_store::postgres::PostgresStore::open(
                    &url,
                    intake_store::postgres::PostgresOptions {
                        node_id: format!("node-{i}"),
                        pool_size: 2,
                        ..Default::default()
                    },
                )
                .await
            })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("every node opens"));
    }
    let versions = db.scalar("SELECT COUNT(*) FROM intake_migrations").await;
    let distinct = db
        .scalar("SELECT COUNT(DISTINCT version) FROM intake_migrations")
        .await;
    assert!(versions >= 1);
    assert_eq!(versions, distinct);
    for s in stores {
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_ingest_on_one_node_wakes_the_other() {
    let (_db, a, b) = two_nodes().await;
    let mut wakeups = b.subscribe_new_work().expect("PostgreSQL notifies");
    // The listener says "look at everything" once it is listening.
    let first = tokio::time::timeout(Duration::from_secs(20), wakeups.recv())
        .await
        .expect("the listener connects")
        .unwrap();
    assert_eq!(first, WorkSignal::All);
    a.ingest(event("kustomer", "k", &["crm", "warehouse"], Timestamp(T0)))
        .await
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(20), wakeups.recv())
            .await
            .expect("node b is told about node a's new work")
            .unwrap()
        {
            WorkSignal::Destination(d) => {
                seen.insert(d);
            }
            WorkSignal::All => {}
        }
    }
    assert_eq!(
        seen,
        HashSet::from(["crm".to_string(), "warehouse".to_string()])
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_nodes_claiming_at_once_never_lease_one_delivery_twice() {
    let (_db, a, b) = two_nodes().await;
    let t = Timestamp(T0);
    for i in 0..80 {
        a.ingest(event("kustomer", &format!("k{i}"), &["crm"], t))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due("crm", t, LEASE, 3).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut seen: HashSet<DeliveryId> = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id.clone()), "{id} was leased twice");
        }
    }
    assert_eq!(seen.len(), 80);
    let by_node = |n: &'static str| {
        let db = &_db;
        async move {
            db.scalar(&format!(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'in_flight' AND lease_node = '{n}'"
            ))
            .await
        }
    };
    assert_eq!(by_node("node-a").await + by_node("node-b").await, 80);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_copies_sent_to_two_nodes_at_once_are_accepted_once() {
    let (db, a, b) = two_nodes().await;
    let t = Timestamp(T0);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .ingest(event("kustomer", "same", &["crm"], t))
                .await
                .unwrap()
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    let id = &answers[0].id;
    assert!(answers.iter().all(|a| &a.id == id));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM deliveries").await, 1);
    assert_eq!(
        db.scalar(
            "SELECT CAST(SUM(count) AS BIGINT) FROM counters WHERE metric = 'requests.duplicate'"
        )
        .await,
        39
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_duty_lease_moves_only_when_it_expires() {
    let (_db, a, b) = two_nodes().await;
    let t = Timestamp(T0);
    assert!(a.acquire_duty("lease-reaper", t, TTL).await.unwrap());
    assert!(
        !b.acquire_duty("lease-reaper", t.plus(Duration::from_secs(9)), TTL)
            .await
            .unwrap(),
        "a live lease is not taken over"
    );
    // a stops renewing (it died): once its lease has expired, b takes it.
    let expired = t.plus(TTL);
    assert!(b.acquire_duty("lease-reaper", expired, TTL).await.unwrap());
    assert!(
        !a.acquire_duty("lease-reaper", expired, TTL).await.unwrap(),
        "the old holder cannot renew a lease that moved"
    );
    let view = b.cluster().await.unwrap();
    assert_eq!(view.duties[0].holder, "node-b");
    assert_eq!(view.duties[0].acquired_at, expired);
    // Releasing a lease one does not hold changes nothing.
    a.release_duty("lease-reaper").await.unwrap();
    assert_eq!(b.cluster().await.unwrap().duties[0].holder, "node-b");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_only_dead_nodes_lose_their_leases() {
    let (_db, a, b) = two_nodes().await;
    let t = Timestamp(T0);
    for i in 0..4 {
        a.ingest(event("kustomer", &format!("k{i}"), &["crm"], t))
            .await
            .unwrap();
    }
    a.heartbeat(node(&*a, t)).await.unwrap();
    b.heartbeat(node(&*b, t)).await.unwrap();
    let hour = Duration::from_secs(3600);
    let by_a = a.claim_due("crm", t, hour, 2).await.unwrap();
    let by_b = b.claim_due("crm", t, hour, 2).await.unwrap();
    assert_eq!((by_a.len(), by_b.len()), (2, 2));
    // b keeps sending heartbeats; a has gone quiet.
    let later = t.plus(Duration::from_secs(30));
    b.heartbeat(node(&*b, later)).await.unwrap();
    assert_eq!(b.reap_orphaned_leases(later, TTL).await.unwrap(), 2);
    for c in &by_a {
        let d = delivery(&*b, &c.event_id, &c.id).await;
        assert_eq!(d.state, DeliveryState::Pending);
    }
    for c in &by_b {
        let d = delivery(&*b, &c.event_id, &c.id).await;
        assert_eq!(
            d.state,
            DeliveryState::InFlight,
            "a live node keeps its leases"
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}
