//! The delivery queue: leases, their expiry, retries, dead letters, release, gauges.

use std::collections::HashSet;
use std::time::Duration;

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::{DeliveryId, Timestamp};
use intake_store::QueueStats;

use crate::common::*;
use crate::conformance;

fn ids(claims: &[intake_store::ClaimedDelivery]) -> HashSet<DeliveryId> {
    claims.iter().map(|c| c.id.clone()).collect()
}

async fn claims_lease_and_expired_leases_are_claimed_again(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);

    let mut events = Vec::new();
    for i in 0..5 {
        let ev = event(
            "kustomer",
            &format!("k{i}"),
            &["crm"],
            Timestamp(T0 - 100 + i),
        );
        store.ingest(ev.clone()).await.unwrap();
        events.push(ev);
    }
    let other = event("kustomer", "other", &["warehouse"], Timestamp(T0 - 100));
    store.ingest(other.clone()).await.unwrap();

    let first = store.claim_due("crm", now, LEASE, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    let lease1 = first[0].lease_id.clone();
    for c in &first {
        assert_eq!(c.lease_id, lease1, "one claim, one lease");
        assert_eq!(c.attempt, 1);
        assert_eq!(c.destination, "crm");
        let ev = events
            .iter()
            .find(|e| e.id == c.event_id)
            .expect("claimed a crm event");
        assert_eq!(c.id, ev.deliveries[0].0);
        assert_eq!(c.tenant, TENANT);
        assert_eq!(c.source, "kustomer");
        assert_eq!(c.event_type, "kustomer.message.create");
        assert_eq!(c.channel, "email");
        assert_eq!(c.body, ev.body);
        assert_eq!(c.received_at, ev.received_at);
        assert_eq!(c.occurred_at, ev.normalized.occurred_at);
        let d = delivery(&*store, &c.event_id, &c.id).await;
        assert_eq!(d.state, DeliveryState::InFlight);
        assert_eq!(
            d.due_at,
            Some(now.plus(LEASE)),
            "an in-flight delivery is due at lease end"
        );
    }
    // The oldest due work goes first.
    let oldest: HashSet<DeliveryId> = events[..3]
        .iter()
        .map(|e| e.deliveries[0].0.clone())
        .collect();
    assert_eq!(ids(&first), oldest);

    let second = store.claim_due("crm", now, LEASE, 10).await.unwrap();
    assert_eq!(second.len(), 2, "only the two unleased deliveries are left");
    assert!(ids(&first).is_disjoint(&ids(&second)));
    let lease2 = second[0].lease_id.clone();
    assert_ne!(lease1, lease2);
    assert!(store
        .claim_due("crm", now, LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .claim_due(
            "crm",
            now.plus(LEASE).minus(Duration::from_millis(1)),
            LEASE,
            10
        )
        .await
        .unwrap()
        .is_empty());
    // The other destination is untouched.
    let wh = store.claim_due("warehouse", now, LEASE, 10).await.unwrap();
    assert_eq!(ids(&wh), HashSet::from([other.deliveries[0].0.clone()]));

    // Every lease has expired: the same deliveries come back under a new lease.
    let later = now.plus(LEASE).plus(Duration::from_millis(1));
    let third = store.claim_due("crm", later, LEASE, 10).await.unwrap();
    assert_eq!(third.len(), 5);
    let all: HashSet<DeliveryId> = events.iter().map(|e| e.deliveries[0].0.clone()).collect();
    assert_eq!(ids(&third), all);
    let lease3 = third[0].lease_id.clone();
    assert!(lease3 != lease1 && lease3 != lease2);
    for c in &third {
        assert_eq!(c.lease_id, lease3);
        assert_eq!(c.attempt, 1, "an expired lease is not an attempt");
    }

    // The worker whose lease expired finishes late: recorded, but nothing changes.
    let stale = &first[0];
    store
        .finish_attempt(attempt(stale, NextStep::Delivered, later))
        .await
        .unwrap();
    let detail = event_detail(&*store, &stale.event_id).await;
    let d = &detail.summary.deliveries[0];
    assert_eq!(d.state, DeliveryState::InFlight);
    assert_eq!(d.attempts, 0);
    assert_eq!(d.delivered_at, None);
    assert_eq!(d.due_at, Some(later.plus(LEASE)));
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].outcome, "superseded");
    assert_eq!(detail.attempts[0].delivery_id, stale.id);
    assert_eq!(detail.attempts[0].status, Some(200));

    // The worker that holds the lease now finishes for real.
    let current = third.iter().find(|c| c.id == stale.id).unwrap();
    let done_at = later.plus(Duration::from_millis(50));
    store
        .finish_attempt(attempt(current, NextStep::Delivered, done_at))
        .await
        .unwrap();
    let detail = event_detail(&*store, &stale.event_id).await;
    let d = &detail.summary.deliveries[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.delivered_at, Some(done_at));
    assert_eq!(d.due_at, None);
    assert_eq!(d.last_status, Some(200));
    let outcomes: Vec<&str> = detail.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["superseded", "delivered"]);
    assert_eq!(detail.attempts[1].duration_ms, 10);

    // A delivered delivery is never claimed again, however late.
    let much_later = later.plus(Duration::from_secs(86_400));
    let fourth = store.claim_due("crm", much_later, LEASE, 10).await.unwrap();
    assert_eq!(fourth.len(), 4);
    assert!(!ids(&fourth).contains(&stale.id));

    close(store).await;
}

async fn claim_limit_zero_claims_nothing(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    store
        .ingest(event("kustomer", "k", &["crm"], Timestamp(T0)))
        .await
        .unwrap();
    assert!(store
        .claim_due("crm", Timestamp(T0), LEASE, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_due("crm", Timestamp(T0), LEASE, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    close(store).await;
}

async fn retries_wait_for_their_time_and_dead_deliveries_stay_dead(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t0 = Timestamp(T0);
    let ev = event("kustomer", "k", &["crm"], t0);
    store.ingest(ev.clone()).await.unwrap();
    assert_eq!(store.next_due_at("crm").await.unwrap(), Some(t0));
    assert_eq!(store.next_due_at("nowhere").await.unwrap(), None);

    let c1 = store
        .claim_due("crm", t0, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store.next_due_at("crm").await.unwrap(),
        Some(t0.plus(LEASE))
    );
    let retry_at = Timestamp(T0 + 10_000);
    let finished = Timestamp(T0 + 100);
    store
        .finish_attempt(attempt(&c1, NextStep::RetryAt(retry_at), finished))
        .await
        .unwrap();
    let d = delivery(&*store, &ev.id, &c1.id).await;
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.due_at, Some(retry_at));
    assert_eq!(d.last_status, Some(503));
    assert_eq!(d.last_error.as_deref(), Some("503 Service Unavailable"));
    assert_eq!(store.next_due_at("crm").await.unwrap(), Some(retry_at));

    assert!(store
        .claim_due("crm", Timestamp(T0 + 9_999), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let c2 = store.claim_due("crm", retry_at, LEASE, 10).await.unwrap();
    assert_eq!(c2.len(), 1);
    let c2 = c2.into_iter().next().unwrap();
    assert_eq!(c2.id, c1.id);
    assert_eq!(c2.attempt, 2);

    store
        .finish_attempt(attempt(&c2, NextStep::Dead, Timestamp(T0 + 10_050)))
        .await
        .unwrap();
    let detail = event_detail(&*store, &ev.id).await;
    let d = &detail.summary.deliveries[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.due_at, None);
    let outcomes: Vec<(u32, &str)> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "retrying"), (2, "dead")]);
    assert_eq!(store.next_due_at("crm").await.unwrap(), None);
    for later in [T0 + 10_050, T0 + 3_600_000, i64::MAX / 2] {
        assert!(store
            .claim_due("crm", Timestamp(later), LEASE, 10)
            .await
            .unwrap()
            .is_empty());
    }

    close(store).await;
}

async fn queue_stats_and_next_due_at_follow_the_queue(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let (t1, t2, t3) = (Timestamp(T0), Timestamp(T0 + 1_000), Timestamp(T0 + 2_000));
    let e1 = event("kustomer", "k1", &["crm"], t1);
    let e2 = event("kustomer", "k2", &["crm"], t2);
    let e3 = event("kustomer", "k3", &["crm"], t3);
    let e4 = event("zendesk", "k4", &["crm", "warehouse"], t3);
    for e in [&e1, &e2, &e3, &e4] {
        store.ingest(e.clone()).await.unwrap();
    }

    let stats = store.queue_stats().await.unwrap();
    let row = |tenant: &str, source: &str, destination: &str, p, f, o: Timestamp, d| QueueStats {
        tenant: tenant.into(),
        source: source.into(),
        destination: destination.into(),
        pending: p,
        in_flight: f,
        oldest_pending_at: Some(o),
        dead: d,
    };
    assert_eq!(
        stats,
        vec![
            row(TENANT, "kustomer", "crm", 3, 0, t1, 0),
            row(TENANT, "zendesk", "crm", 1, 0, t3, 0),
            row(TENANT, "zendesk", "warehouse", 1, 0, t3, 0),
        ]
    );

    // The oldest kustomer delivery dies, the next is in flight, the newest waits.
    let now = Timestamp(T0 + 5_000);
    let c = store
        .claim_due("crm", now, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        c.id, e1.deliveries[0].0,
        "the oldest due delivery is claimed first"
    );
    store
        .finish_attempt(attempt(&c, NextStep::Dead, now))
        .await
        .unwrap();
    let c = store
        .claim_due("crm", now, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(c.id, e2.deliveries[0].0);
    // Deliver the warehouse one: delivered work leaves the gauges.
    let w = store
        .claim_due("warehouse", now, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    store
        .finish_attempt(attempt(&w, NextStep::Delivered, now))
        .await
        .unwrap();

    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        stats,
        vec![
            row(TENANT, "kustomer", "crm", 2, 1, t2, 1),
            row(TENANT, "zendesk", "crm", 1, 0, t3, 0),
        ]
    );
    // Pending: e3 (due t3) and e4's crm delivery (due t3); in flight: e2 (due now + lease).
    assert_eq!(store.next_due_at("crm").await.unwrap(), Some(t3));
    assert_eq!(store.next_due_at("warehouse").await.unwrap(), None);
    let rest = store.claim_due("crm", now, LEASE, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(
        store.next_due_at("crm").await.unwrap(),
        Some(now.plus(LEASE))
    );

    close(store).await;
}

async fn released_deliveries_are_due_again_at_once(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    for i in 0..3 {
        store
            .ingest(event("kustomer", &format!("k{i}"), &["crm"], now))
            .await
            .unwrap();
    }
    let claimed = store.claim_due("crm", now, LEASE, 2).await.unwrap();
    assert_eq!(claimed.len(), 2);

    // A release under the wrong lease does nothing.
    let wrong: Vec<(DeliveryId, String)> = claimed
        .iter()
        .map(|c| (c.id.clone(), "not-the-lease".to_string()))
        .collect();
    store.release(wrong, now).await.unwrap();
    let rest = store.claim_due("crm", now, LEASE, 10).await.unwrap();
    assert_eq!(rest.len(), 1, "only the unclaimed delivery is due");
    assert!(!ids(&claimed).contains(&rest[0].id));

    let release_at = Timestamp(T0 + 10);
    let leases: Vec<(DeliveryId, String)> = claimed
        .iter()
        .map(|c| (c.id.clone(), c.lease_id.clone()))
        .collect();
    store.release(leases, release_at).await.unwrap();
    for c in &claimed {
        let d = delivery(&*store, &c.event_id, &c.id).await;
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.due_at, Some(release_at));
        assert_eq!(d.attempts, 0);
    }
    let again = store.claim_due("crm", release_at, LEASE, 10).await.unwrap();
    assert_eq!(ids(&again), ids(&claimed));
    for c in &again {
        assert_eq!(c.attempt, 1);
        assert_ne!(c.lease_id, claimed[0].lease_id);
    }
    // The old lease can neither release nor finish any more.
    let old = &claimed[0];
    store
        .release(vec![(old.id.clone(), old.lease_id.clone())], release_at)
        .await
        .unwrap();
    assert_eq!(
        delivery(&*store, &old.event_id, &old.id).await.state,
        DeliveryState::InFlight
    );
    store
        .finish_attempt(attempt(old, NextStep::Dead, release_at))
        .await
        .unwrap();
    let detail = event_detail(&*store, &old.event_id).await;
    assert_eq!(detail.summary.deliveries[0].state, DeliveryState::InFlight);
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].outcome, "superseded");

    close(store).await;
}

async fn concurrent_claims_never_lease_one_delivery_twice(kind: Kind) {
    const DELIVERIES: usize = 60;
    const WORKERS: usize = 16;
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    for i in 0..DELIVERIES {
        store
            .ingest(event("kustomer", &format!("k{i}"), &["crm"], now))
            .await
            .unwrap();
    }

    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.claim_due("crm", now, LEASE, 5).await.unwrap()
        }));
    }
    let mut seen = HashSet::new();
    let mut leases = HashSet::new();
    let mut total = 0;
    for task in tasks {
        let claimed = task.await.unwrap();
        assert!(claimed.len() <= 5);
        total += claimed.len();
        for c in claimed {
            assert!(seen.insert(c.id.clone()), "{} was leased twice", c.id);
            leases.insert(c.lease_id);
        }
    }
    assert_eq!(total, DELIVERIES.min(WORKERS * 5));
    assert_eq!(seen.len(), total);
    assert!(store
        .claim_due("crm", now, LEASE, 100)
        .await
        .unwrap()
        .is_empty());

    store.close().await.unwrap();
}

/// Issue 16: a successful attempt is kept on its delivery row, not as an attempt row, and the
/// event still lists it, in its place, with its status, start and duration; failures keep
/// their rows.
async fn a_success_is_listed_from_its_delivery_row_and_only_failures_have_rows(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let ev = event(
        "kustomer",
        "ok-after-retry",
        &["crm", "warehouse"],
        Timestamp(T0),
    );
    store.ingest(ev.clone()).await.unwrap();

    // crm: fails once, then delivers; warehouse: delivers at once.
    let c1 = store
        .claim_due("crm", Timestamp(T0), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let retry_at = Timestamp(T0 + 1_000);
    store
        .finish_attempt(attempt(
            &c1,
            NextStep::RetryAt(retry_at),
            Timestamp(T0 + 100),
        ))
        .await
        .unwrap();
    let c2 = store
        .claim_due("crm", retry_at, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    store
        .finish_attempt(attempt(&c2, NextStep::Delivered, Timestamp(T0 + 1_200)))
        .await
        .unwrap();
    let w = store
        .claim_due("warehouse", Timestamp(T0), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    store
        .finish_attempt(attempt(&w, NextStep::Delivered, Timestamp(T0 + 50)))
        .await
        .unwrap();

    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM attempts").await,
        1,
        "only the failed attempt has a row"
    );
    let detail = event_detail(&*store, &ev.id).await;
    // (delivery, attempt, outcome, status, started at, duration)
    type Listed<'a> = (DeliveryId, u32, &'a str, Option<u16>, i64, i64);
    let listed: Vec<Listed> = detail
        .attempts
        .iter()
        .map(|a| {
            (
                a.delivery_id.clone(),
                a.attempt,
                a.outcome.as_str(),
                a.status,
                a.started_at.as_millis(),
                a.duration_ms,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (w.id.clone(), 1, "delivered", Some(200), T0 + 40, 10),
            (c1.id.clone(), 1, "retrying", Some(503), T0 + 90, 10),
            (c1.id.clone(), 2, "delivered", Some(200), T0 + 1_190, 10),
        ]
    );
    assert!(detail
        .attempts
        .iter()
        .all(|a| a.outcome != "delivered" || a.error.is_none()));
    let d = delivery(&*store, &ev.id, &c1.id).await;
    assert_eq!((d.state, d.attempts), (DeliveryState::Delivered, 2));
    // The counters count every attempt as before: one failure, two deliveries.
    let counted: i64 = db
        .counters()
        .await
        .iter()
        .filter(|c| {
            [
                "deliveries.delivered",
                "deliveries.failed",
                "deliveries.dead",
            ]
            .contains(&c.5.as_str())
        })
        .map(|c| c.6)
        .sum();
    assert_eq!(counted, 3);

    close(store).await;
}

conformance!(
    a_success_is_listed_from_its_delivery_row_and_only_failures_have_rows,
    claims_lease_and_expired_leases_are_claimed_again,
    claim_limit_zero_claims_nothing,
    retries_wait_for_their_time_and_dead_deliveries_stay_dead,
    queue_stats_and_next_due_at_follow_the_queue,
    released_deliveries_are_due_again_at_once,
    concurrent_claims_never_lease_one_delivery_twice,
);
