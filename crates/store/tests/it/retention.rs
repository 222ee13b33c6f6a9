//! Retention (`Store::expire_events`): old events whose every delivery is final go with their
//! deliveries and attempts, in bounded batches; old events whose work is not done stay,
//! however old; a deleted event's dedupe key is free again; ingest commits while a long pass
//! runs.

use std::time::Duration;

use intake_core::delivery::NextStep;
use intake_core::{EventId, Timestamp};
use intake_store::{ExpireBatch, ExpireRequest, Rejection, RejectionKind, Store};

use crate::common::*;
use crate::conformance;

const DAY: i64 = 86_400_000;

fn rejection(at: i64) -> Rejection {
    Rejection {
        at: Timestamp(at),
        tenant: TENANT.into(),
        source: "kustomer".into(),
        kind: RejectionKind::Invalid,
        reason: "not JSON".into(),
        body: Some(b"{".to_vec()),
    }
}

/// Claims every due delivery of `destination` and finishes each with `next`.
async fn settle(store: &dyn Store, destination: &str, now: Timestamp, next: NextStep) -> usize {
    let claimed = store
        .claim_due(destination, now, LEASE, 10_000)
        .await
        .unwrap();
    for c in &claimed {
        store.finish_attempt(attempt(c, next, now)).await.unwrap();
    }
    claimed.len()
}

async fn expire(
    store: &dyn Store,
    before: Timestamp,
    after: Option<EventId>,
    limit: usize,
) -> ExpireBatch {
    store
        .expire_events(ExpireRequest {
            before,
            after,
            limit,
        })
        .await
        .unwrap()
}

async fn old_events_whose_work_is_done_go_and_the_others_stay(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let old = Timestamp(T0 - 40 * DAY);
    let now = Timestamp(T0);
    let cutoff = Timestamp(T0 - 30 * DAY);
    // One event per fate; each destination gets one treatment below.
    let fates = [
        ("delivered", vec!["ok"]),
        ("dead", vec!["down"]),
        ("pending", vec!["idle"]),
        ("retrying", vec!["flaky"]),
        ("receipt", vec!["receipts"]),
        ("half", vec!["ok", "idle"]),
        ("unqueued", vec![]),
    ];
    let mut ids = std::collections::BTreeMap::new();
    for (key, destinations) in &fates {
        let ev = event("kustomer", key, destinations, old);
        ids.insert(*key, ev.id.clone());
        store.ingest(ev).await.unwrap();
    }
    let recent = event("kustomer", "recent", &["ok"], Timestamp(T0 - DAY));
    store.ingest(recent.clone()).await.unwrap();
    assert_eq!(settle(&*store, "ok", now, NextStep::Delivered).await, 3);
    assert_eq!(settle(&*store, "down", now, NextStep::Dead).await, 1);
    let later = NextStep::RetryAt(now.plus(Duration::from_secs(60)));
    assert_eq!(settle(&*store, "flaky", now, later).await, 1);
    for c in store.claim_due("receipts", now, LEASE, 10).await.unwrap() {
        let mut a = attempt(&c, NextStep::Delivered, now);
        a.awaits_completion = true;
        store.finish_attempt(a).await.unwrap();
    }
    store
        .record_rejection(rejection(old.as_millis()))
        .await
        .unwrap();
    store.record_rejection(rejection(T0 - DAY)).await.unwrap();
    let attempts_before = db.scalar("SELECT COUNT(*) FROM attempts").await;

    let batch = expire(&*store, cutoff, None, 500).await;
    assert_eq!(batch.scanned, 7, "{batch:?}");
    assert_eq!(
        (
            batch.deleted.events,
            batch.deleted.deliveries,
            batch.deleted.attempts
        ),
        // The dead delivery's failed attempt; a delivered attempt has no row (it is on its
        // delivery row).
        (2, 2, 1),
        "{batch:?}"
    );
    assert_eq!(batch.deleted.rejections, 1);
    assert_eq!(batch.kept, 5, "pending, retrying, receipt, half, unqueued");
    assert_eq!(batch.last.as_ref(), ids.values().max());
    assert!(
        !batch.is_last(500),
        "a batch that saw events may not be the last"
    );
    for (key, id) in &ids {
        let kept = store.get_event(id).await.unwrap().is_some();
        assert_eq!(
            kept,
            !matches!(*key, "delivered" | "dead"),
            "{key} kept: {kept}"
        );
    }
    assert!(store.get_event(&recent.id).await.unwrap().is_some());
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM attempts").await,
        attempts_before - 1
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM rejections").await, 1);
    // Nothing after the last event seen: the pass is over.
    let next = expire(&*store, cutoff, batch.last.clone(), 500).await;
    assert_eq!(next, ExpireBatch::default());
    assert!(next.is_last(500));

    // The deleted event's dedupe key is free: a copy arriving now is a new event.
    let again = store
        .ingest(event("kustomer", "delivered", &["ok"], now))
        .await
        .unwrap();
    assert!(!again.duplicate);
    // A kept one still dedupes.
    let dup = store
        .ingest(event("kustomer", "pending", &["idle"], now))
        .await
        .unwrap();
    assert!(dup.duplicate);
    close(store).await;
}

async fn batches_are_bounded_and_a_pass_resumes_after_the_last_event_seen(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let cutoff = Timestamp(T0 - 30 * DAY);
    // 25 old events: every fifth left pending, the others delivered. 12 old rejections.
    for i in 0..25 {
        let destination = if i % 5 == 0 { "idle" } else { "ok" };
        let at = Timestamp(T0 - 40 * DAY + i);
        store
            .ingest(event("kustomer", &format!("k{i}"), &[destination], at))
            .await
            .unwrap();
    }
    for i in 0..12 {
        store
            .record_rejection(rejection(T0 - 40 * DAY + i))
            .await
            .unwrap();
    }
    settle(&*store, "ok", now, NextStep::Delivered).await;
    let mut after = None;
    let mut batches = Vec::new();
    loop {
        let b = expire(&*store, cutoff, after.clone(), 10).await;
        assert!(b.scanned <= 10 && b.deleted.rejections <= 10, "{b:?}");
        let last = b.is_last(10);
        after = b.last.clone().or(after);
        batches.push(b);
        if last {
            break;
        }
        assert!(batches.len() < 10, "the pass does not end: {batches:?}");
    }
    let scanned: Vec<u64> = batches.iter().map(|b| b.scanned).collect();
    assert_eq!(scanned, vec![10, 10, 5, 0], "{batches:?}");
    let deleted: u64 = batches.iter().map(|b| b.deleted.events).sum();
    let kept: u64 = batches.iter().map(|b| b.kept).sum();
    let rejections: Vec<u64> = batches.iter().map(|b| b.deleted.rejections).collect();
    assert_eq!((deleted, kept), (20, 5));
    assert_eq!(rejections, vec![10, 2, 0, 0]);
    assert_eq!(all_events(&*store).await.len(), 5);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM deliveries").await, 5);
    close(store).await;
}

async fn ingest_commits_while_a_long_pass_runs(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let now = Timestamp(T0);
    let cutoff = Timestamp(T0 - 30 * DAY);
    const OLD: i64 = 1_500;
    let mut tasks = Vec::new();
    for i in 0..OLD {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let at = Timestamp(T0 - 40 * DAY + i);
            store
                .ingest(event("kustomer", &format!("old{i}"), &["ok"], at))
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        settle(&*store, "ok", now, NextStep::Delivered).await,
        OLD as usize
    );

    // The pass runs in batches of 100 while 300 new events are ingested beside it.
    let pass = {
        let store = store.clone();
        tokio::spawn(async move {
            let (mut after, mut deleted, mut batches) = (None, 0, 0);
            loop {
                let b = expire(&*store, cutoff, after.clone(), 100).await;
                deleted += b.deleted.events;
                batches += 1;
                if b.is_last(100) {
                    return (deleted, batches);
                }
                after = b.last.or(after);
            }
        })
    };
    let mut new = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        new.push(tokio::spawn(async move {
            let ev = event("kustomer", &format!("new{i}"), &["ok"], now);
            let accepted = store
                .ingest(ev.clone())
                .await
                .expect("ingest during a pass");
            assert!(!accepted.duplicate);
            ev.id
        }));
    }
    let mut new_ids = Vec::new();
    for t in new {
        new_ids.push(t.await.unwrap());
    }
    let (deleted, batches) = pass.await.unwrap();
    assert_eq!(deleted, OLD as u64);
    assert_eq!(batches, 16, "15 full batches and the empty last one");
    for id in &new_ids {
        assert!(store.get_event(id).await.unwrap().is_some(), "{id} lost");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM events").await, 300);
    close(store).await;
}

/// Retention paces itself by how busy the others keep the store's one writer: SQLite's
/// writer counts the time its batches take; PostgreSQL has no one writer to ask.
async fn the_writer_counts_its_busy_time_where_one_writer_carries_every_write(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let before = store.writer_busy();
    for i in 0..20 {
        let at = Timestamp(T0 + i);
        store
            .ingest(event("kustomer", &format!("busy{i}"), &["ok"], at))
            .await
            .unwrap();
    }
    let after = store.writer_busy();
    match kind {
        Kind::Sqlite => {
            let (before, after) = (before.expect("sqlite tells"), after.expect("sqlite tells"));
            // Twenty durable commits (each an fsync) take time; the counter only grows.
            assert!(after > before, "{before:?} -> {after:?}");
        }
        Kind::Postgres => assert_eq!((before, after), (None, None)),
    }
    close(store).await;
}

conformance!(
    the_writer_counts_its_busy_time_where_one_writer_carries_every_write,
    old_events_whose_work_is_done_go_and_the_others_stay,
    batches_are_bounded_and_a_pass_resumes_after_the_last_event_seen,
    ingest_commits_while_a_long_pass_runs,
);
