//! Fire drills as stored (issue 12): created once, read back as written, listed newest first
//! by tenant, state and schedule; an update writes a running drill and never one that ended
//! (a cancellation and a verdict cannot overwrite each other); a queue-stall's held source is
//! left out of claims and of the next due time, its deliveries pending and untouched, and
//! claimed as usual once released. Also `migrate-store` copying drills.

use std::time::Duration;

use intake_core::delivery::DeliveryState;
use intake_core::drill::Scenario;
use intake_core::Timestamp;
use intake_store::postgres::{PostgresOptions, PostgresStore};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::{Drill, DrillFilter, DrillState, DrillTrigger, DrillUpdate, Store};
use serde_json::json;

use crate::common::*;
use crate::conformance;

fn drill(id: &str, scenario: Scenario, target: &str, state: DrillState, at: i64) -> Drill {
    Drill {
        id: id.into(),
        scenario,
        target: target.into(),
        tenant: Some(TENANT.into()),
        trigger: DrillTrigger::Manual,
        schedule: None,
        state,
        created_by: "operator".into(),
        started_at: Timestamp(at),
        expires_at: Timestamp(at + 300_000),
        detected_at: None,
        notified_at: None,
        healed_at: None,
        report: json!({"summary": "running", "nested": {"a": [1, 2.5, null]}}),
    }
}

fn ids(drills: &[Drill]) -> Vec<&str> {
    drills.iter().map(|d| d.id.as_str()).collect()
}

async fn drills_are_created_once_read_back_and_listed_newest_first(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let a = drill(
        "drl_a",
        Scenario::QueueStall,
        "kustomer",
        DrillState::Running,
        T0,
    );
    let b = Drill {
        tenant: None,
        trigger: DrillTrigger::Scheduled,
        schedule: Some("handler-down:crm".into()),
        created_by: "schedule".into(),
        detected_at: Some(Timestamp(T0 + 5)),
        notified_at: Some(Timestamp(T0 + 6)),
        healed_at: Some(Timestamp(T0 + 7)),
        ..drill(
            "drl_b",
            Scenario::HandlerDown,
            "crm",
            DrillState::Passed,
            T0 + 1,
        )
    };
    let c = Drill {
        tenant: None,
        ..drill(
            "drl_c",
            Scenario::NotifierDown,
            "slack",
            DrillState::Failed,
            T0 + 2,
        )
    };
    // Started at the same instant as c: the id breaks the tie.
    let d = drill(
        "drl_d",
        Scenario::FlowStop,
        "kustomer",
        DrillState::Cancelled,
        T0 + 2,
    );
    for x in [&a, &b, &c, &d] {
        store.create_drill(x.clone()).await.unwrap();
    }
    // An id is created once; the second attempt changes nothing.
    let again = Drill {
        target: "other".into(),
        ..a.clone()
    };
    assert!(matches!(
        store.create_drill(again).await,
        Err(intake_store::StoreError::Corrupt(_))
    ));
    assert_eq!(store.get_drill("drl_a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_drill("drl_b").await.unwrap(), Some(b.clone()));
    assert_eq!(store.get_drill("drl_nope").await.unwrap(), None);

    let all = store.list_drills(DrillFilter::default()).await.unwrap();
    assert_eq!(ids(&all), ["drl_d", "drl_c", "drl_b", "drl_a"]);
    let mine = store
        .list_drills(DrillFilter {
            tenant: Some(TENANT.into()),
            ..DrillFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&mine), ["drl_d", "drl_a"]);
    let running = store
        .list_drills(DrillFilter {
            states: vec![DrillState::Running],
            ..DrillFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(running, vec![a.clone()]);
    let ended = store
        .list_drills(DrillFilter {
            states: vec![DrillState::Passed, DrillState::Failed],
            limit: 1,
            ..DrillFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&ended), ["drl_c"]);
    let scheduled = store
        .list_drills(DrillFilter {
            schedule: Some("handler-down:crm".into()),
            ..DrillFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(scheduled, vec![b]);
    // The fault is the running drill until its expiry.
    assert!(a.is_active(Timestamp(T0 + 299_999)));
    assert!(!a.is_active(a.expires_at));
    assert!(!c.is_active(Timestamp(T0 + 3)));
}

async fn an_update_writes_a_running_drill_and_never_one_that_ended(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    store
        .create_drill(drill(
            "drl_a",
            Scenario::QueueStall,
            "kustomer",
            DrillState::Running,
            T0,
        ))
        .await
        .unwrap();
    let seen = store
        .update_drill(DrillUpdate {
            id: "drl_a".into(),
            state: DrillState::Running,
            detected_at: Some(Timestamp(T0 + 120_000)),
            notified_at: None,
            healed_at: None,
            report: json!({"alert": "canary_failed"}),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.state, DrillState::Running);
    assert_eq!(seen.detected_at, Some(Timestamp(T0 + 120_000)));
    assert_eq!(seen.report, json!({"alert": "canary_failed"}));
    // Cancelled: the verdict written after it changes nothing, and the drill comes back as
    // the cancellation left it.
    let cancelled = store
        .update_drill(DrillUpdate {
            id: "drl_a".into(),
            state: DrillState::Cancelled,
            detected_at: seen.detected_at,
            notified_at: None,
            healed_at: Some(Timestamp(T0 + 130_000)),
            report: json!({"cancelled_by": "operator"}),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.state, DrillState::Cancelled);
    let late = store
        .update_drill(DrillUpdate {
            id: "drl_a".into(),
            state: DrillState::Passed,
            detected_at: seen.detected_at,
            notified_at: Some(Timestamp(T0 + 131_000)),
            healed_at: Some(Timestamp(T0 + 131_000)),
            report: json!({"verdict": "passed"}),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late, cancelled);
    assert_eq!(late.healed_at, Some(Timestamp(T0 + 130_000)));
    let none = store
        .update_drill(DrillUpdate {
            id: "drl_nope".into(),
            state: DrillState::Failed,
            detected_at: None,
            notified_at: None,
            healed_at: None,
            report: json!({}),
        })
        .await
        .unwrap();
    assert_eq!(none, None);
}

async fn a_held_source_is_neither_claimed_nor_due_and_its_deliveries_stay_pending(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let at = Timestamp(T0);
    let held = event("kustomer", "k1", &["crm"], at);
    let free = event("zendesk", "z1", &["crm"], Timestamp(T0 + 1));
    store.ingest(held.clone()).await.unwrap();
    store.ingest(free.clone()).await.unwrap();
    let now = Timestamp(T0 + 10_000);
    let lease = Duration::from_secs(30);
    let hold = vec!["kustomer".to_string()];

    assert_eq!(
        store.next_due_at_holding("crm", &hold).await.unwrap(),
        Some(Timestamp(T0 + 1)),
        "the held source's earlier delivery is not what the dispatcher waits for"
    );
    let claimed = store
        .claim_due_holding("crm", now, lease, 10, &hold)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].source, "zendesk");
    assert_eq!(
        store.next_due_at_holding("crm", &hold).await.unwrap(),
        Some(now.plus(lease)),
        "only the free source's lease is due"
    );
    assert!(store
        .claim_due_holding("crm", now, lease, 10, &hold)
        .await
        .unwrap()
        .is_empty());
    // Held: pending, never attempted, as ingest left it.
    let e = store.get_event(&held.id).await.unwrap().unwrap();
    let d = &e.summary.deliveries[0];
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 0));
    let queue = store.queue_stats().await.unwrap();
    let row = queue.iter().find(|q| q.source == "kustomer").unwrap();
    assert_eq!(
        row.oldest_pending_at,
        Some(at),
        "its age grows: queue_stalled can fire"
    );
    // Released: claimed like any due delivery.
    assert_eq!(
        store.next_due_at("crm").await.unwrap(),
        Some(at),
        "without a hold it is the first due"
    );
    let claimed = store.claim_due("crm", now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event_id, held.id);
    assert_eq!(claimed[0].attempt, 1);
}

conformance!(
    drills_are_created_once_read_back_and_listed_newest_first,
    an_update_writes_a_running_drill_and_never_one_that_ended,
    a_held_source_is_neither_claimed_nor_due_and_its_deliveries_stay_pending,
);

/// `intake migrate-store` (the `transfer` module) copies the drills, finished ones too (their
/// reports are the record of what alerting proved) and a running one with its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_store_copies_drills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.db");
    let sqlite = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let drills = vec![
        Drill {
            notified_at: Some(Timestamp(T0 + 9)),
            healed_at: Some(Timestamp(T0 + 9)),
            ..drill(
                "drl_a",
                Scenario::FlowStop,
                "kustomer",
                DrillState::Passed,
                T0,
            )
        },
        drill(
            "drl_b",
            Scenario::QueueStall,
            "kustomer",
            DrillState::Running,
            T0 + 1,
        ),
    ];
    for d in &drills {
        sqlite.create_drill(d.clone()).await.unwrap();
    }
    let source_counts = sqlite.table_counts().await.unwrap();
    assert_eq!(source_counts.drills, 2);
    sqlite.close().await.unwrap();
    drop(sqlite);

    let pg_db = PgDb::create().await;
    let sqlite = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let pg = PostgresStore::open(
        &pg_db.url,
        PostgresOptions {
            pool_size: 2,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap();
    let copied = intake_store::transfer::copy(&sqlite, &pg, false, |_| {})
        .await
        .unwrap();
    assert_eq!(copied, source_counts);
    let again = intake_store::transfer::copy(&sqlite, &pg, true, |_| {})
        .await
        .unwrap();
    assert_eq!(again, source_counts);
    let mut moved = pg.list_drills(DrillFilter::default()).await.unwrap();
    moved.reverse();
    assert_eq!(moved, drills);
    sqlite.close().await.unwrap();
    pg.close().await.unwrap();
}
