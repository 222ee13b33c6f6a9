//! Recovery jobs as stored (issue 11): created once, read back as written, listed newest first
//! by tenant, source and state; a step is saved unless the job has ended and returns the job as
//! stored (with a cancellation requested meanwhile); a cancel ends a queued job at once and only
//! flags a running one. Also the dedupe keys a backfill compares with, and `migrate-store`
//! copying the jobs and the delivery columns of replays.

use intake_core::Timestamp;
use intake_store::postgres::{PostgresOptions, PostgresStore};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::{
    RecoveryFilter, RecoveryJob, RecoveryKind, RecoveryState, RecoveryUpdate, ReplayBatch,
    RequeueRequest, Store, StoreError,
};
use serde_json::json;

use crate::common::*;
use crate::conformance;

fn job(id: &str, tenant: &str, source: &str, state: RecoveryState, at: i64) -> RecoveryJob {
    RecoveryJob {
        id: id.into(),
        kind: RecoveryKind::Replay,
        tenant: tenant.into(),
        source: source.into(),
        dry_run: false,
        state,
        params: json!({"from": "2026-11-28T00:00:00Z", "to": "2026-11-29T00:00:00Z",
                       "states": ["dead"], "nested": {"a": [1, 2.5, null]}}),
        cursor: None,
        progress: json!({"done": 0}),
        report: json!({}),
        error: None,
        cancel_requested: false,
        created_by: "operator".into(),
        created_at: Timestamp(at),
        started_at: None,
        updated_at: Timestamp(at),
        finished_at: None,
    }
}

fn ids(jobs: &[RecoveryJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

fn step(id: &str, state: RecoveryState, at: i64) -> RecoveryUpdate {
    RecoveryUpdate {
        id: id.into(),
        state,
        cursor: Some(json!({"after": format!("evt_{at}")})),
        progress: json!({"done": at - T0}),
        report: json!({"created": 3}),
        error: None,
        started_at: None,
        updated_at: Timestamp(at),
        finished_at: None,
    }
}

async fn recovery_jobs_are_created_once_read_back_and_listed_newest_first(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let a = job("rec_a", "acme", "kustomer", RecoveryState::Queued, T0);
    let b = RecoveryJob {
        kind: RecoveryKind::Requeue,
        dry_run: true,
        cursor: Some(json!({"after": "evt_1"})),
        started_at: Some(Timestamp(T0 + 5)),
        ..job("rec_b", "acme", "zendesk", RecoveryState::Running, T0 + 1)
    };
    let c = RecoveryJob {
        kind: RecoveryKind::Backfill,
        error: Some("the SOR answered 401".into()),
        finished_at: Some(Timestamp(T0 + 9)),
        ..job("rec_c", "other", "kustomer", RecoveryState::Failed, T0 + 2)
    };
    // Created at the same instant as c: the id breaks the tie.
    let d = job(
        "rec_d",
        "other",
        "kustomer",
        RecoveryState::Succeeded,
        T0 + 2,
    );
    for j in [&a, &b, &c, &d] {
        store.create_recovery(j.clone()).await.unwrap();
    }
    for j in [&a, &b, &c, &d] {
        assert_eq!(store.get_recovery(&j.id).await.unwrap().as_ref(), Some(j));
    }
    assert_eq!(store.get_recovery("rec_nope").await.unwrap(), None);

    // An id that exists is refused, and the stored job is left as it was.
    let again = RecoveryJob {
        tenant: "intruder".into(),
        ..a.clone()
    };
    let err = store.create_recovery(again).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(store.get_recovery("rec_a").await.unwrap(), Some(a.clone()));

    let list = |filter: RecoveryFilter| {
        let store = store.clone();
        async move { store.list_recoveries(filter).await.unwrap() }
    };
    let all = list(RecoveryFilter::default()).await;
    assert_eq!(ids(&all), ["rec_d", "rec_c", "rec_b", "rec_a"]);
    assert_eq!(all[2], b);
    let acme = list(RecoveryFilter {
        tenant: Some("acme".into()),
        ..RecoveryFilter::default()
    })
    .await;
    assert_eq!(ids(&acme), ["rec_b", "rec_a"]);
    let kustomer = list(RecoveryFilter {
        source: Some("kustomer".into()),
        ..RecoveryFilter::default()
    })
    .await;
    assert_eq!(ids(&kustomer), ["rec_d", "rec_c", "rec_a"]);
    let live = list(RecoveryFilter {
        states: vec![RecoveryState::Queued, RecoveryState::Running],
        ..RecoveryFilter::default()
    })
    .await;
    assert_eq!(ids(&live), ["rec_b", "rec_a"]);
    let other_done = list(RecoveryFilter {
        tenant: Some("other".into()),
        source: Some("kustomer".into()),
        states: vec![RecoveryState::Failed],
        limit: 10,
    })
    .await;
    assert_eq!(ids(&other_done), ["rec_c"]);
    let newest = list(RecoveryFilter {
        limit: 2,
        ..RecoveryFilter::default()
    })
    .await;
    assert_eq!(ids(&newest), ["rec_d", "rec_c"]);
    store.close().await.unwrap();
}

async fn a_saved_step_returns_the_job_as_stored_and_a_final_job_never_changes(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    store
        .create_recovery(job("rec_1", "acme", "kustomer", RecoveryState::Queued, T0))
        .await
        .unwrap();

    let first = RecoveryUpdate {
        started_at: Some(Timestamp(T0 + 10)),
        ..step("rec_1", RecoveryState::Running, T0 + 10)
    };
    let saved = store.save_recovery(first).await.unwrap().unwrap();
    assert_eq!(saved.state, RecoveryState::Running);
    assert_eq!(saved.started_at, Some(Timestamp(T0 + 10)));
    assert_eq!(
        saved.cursor,
        Some(json!({"after": format!("evt_{}", T0 + 10)}))
    );
    assert_eq!(saved.progress, json!({"done": 10}));
    assert_eq!(saved.report, json!({"created": 3}));
    assert_eq!(saved.updated_at, Timestamp(T0 + 10));
    assert!(!saved.cancel_requested);
    assert_eq!(
        store.get_recovery("rec_1").await.unwrap(),
        Some(saved.clone())
    );

    // A later step without `started_at` keeps the stored one.
    let second = store
        .save_recovery(step("rec_1", RecoveryState::Running, T0 + 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.started_at, Some(Timestamp(T0 + 10)));
    assert_eq!(second.progress, json!({"done": 20}));

    // A cancellation asked for meanwhile only flags a running job, and the runner's next save
    // sees it.
    let flagged = store
        .cancel_recovery("rec_1", Timestamp(T0 + 25))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flagged.state, RecoveryState::Running);
    assert!(flagged.cancel_requested);
    assert_eq!(flagged.finished_at, None);
    let seen = store
        .save_recovery(step("rec_1", RecoveryState::Running, T0 + 30))
        .await
        .unwrap()
        .unwrap();
    assert!(seen.cancel_requested, "the runner sees the cancellation");
    assert_eq!(seen.progress, json!({"done": 30}));

    // The runner stops: the job is final, and no later write changes it.
    let stopped = RecoveryUpdate {
        finished_at: Some(Timestamp(T0 + 31)),
        ..step("rec_1", RecoveryState::Cancelled, T0 + 31)
    };
    let last = store.save_recovery(stopped).await.unwrap().unwrap();
    assert_eq!(last.state, RecoveryState::Cancelled);
    assert_eq!(last.finished_at, Some(Timestamp(T0 + 31)));
    let late = RecoveryUpdate {
        error: Some("too late".into()),
        ..step("rec_1", RecoveryState::Failed, T0 + 40)
    };
    assert_eq!(
        store.save_recovery(late).await.unwrap(),
        Some(last.clone()),
        "a final job is returned unchanged"
    );
    assert_eq!(store.get_recovery("rec_1").await.unwrap(), Some(last));
    assert_eq!(
        store
            .save_recovery(step("rec_nope", RecoveryState::Running, T0))
            .await
            .unwrap(),
        None
    );
    store.close().await.unwrap();
}

async fn a_cancel_ends_a_queued_job_at_once_and_leaves_a_final_one_alone(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    store
        .create_recovery(job("rec_q", "acme", "kustomer", RecoveryState::Queued, T0))
        .await
        .unwrap();
    let done = RecoveryJob {
        finished_at: Some(Timestamp(T0 + 1)),
        ..job("rec_s", "acme", "kustomer", RecoveryState::Succeeded, T0)
    };
    store.create_recovery(done.clone()).await.unwrap();

    let now = Timestamp(T0 + 100);
    let cancelled = store.cancel_recovery("rec_q", now).await.unwrap().unwrap();
    assert_eq!(cancelled.state, RecoveryState::Cancelled);
    assert!(cancelled.cancel_requested);
    assert_eq!(cancelled.finished_at, Some(now));
    assert!(cancelled.state.is_final());
    // Cancelling again changes nothing (not even the time it ended).
    assert_eq!(
        store
            .cancel_recovery("rec_q", Timestamp(T0 + 200))
            .await
            .unwrap(),
        Some(cancelled)
    );
    // A job that ended is returned as it is, never flagged.
    assert_eq!(
        store.cancel_recovery("rec_s", now).await.unwrap(),
        Some(done)
    );
    assert_eq!(store.cancel_recovery("rec_nope", now).await.unwrap(), None);
    store.close().await.unwrap();
}

async fn known_dedupe_keys_are_the_source_s_own(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    for (source, key) in [("kustomer", "k1"), ("kustomer", "k2"), ("zendesk", "k3")] {
        store
            .ingest(event(source, key, &["crm"], Timestamp(T0)))
            .await
            .unwrap();
    }
    let known = store
        .known_dedupe_keys("kustomer", vec!["k1".into(), "k3".into(), "k4".into()])
        .await
        .unwrap();
    assert_eq!(known, ["k1".to_string()].into());
    assert!(store
        .known_dedupe_keys("kustomer", Vec::new())
        .await
        .unwrap()
        .is_empty());
    // A backfill page of more than a thousand keys, the known ones at both ends.
    let mut keys: Vec<String> = (0..1500).map(|i| format!("missing-{i}")).collect();
    keys.insert(0, "k2".into());
    keys.push("k1".into());
    let known = store.known_dedupe_keys("kustomer", keys).await.unwrap();
    assert_eq!(known, ["k1".to_string(), "k2".to_string()].into());
    store.close().await.unwrap();
}

conformance!(
    recovery_jobs_are_created_once_read_back_and_listed_newest_first,
    a_saved_step_returns_the_job_as_stored_and_a_final_job_never_changes,
    a_cancel_ends_a_queued_job_at_once_and_leaves_a_final_one_alone,
    known_dedupe_keys_are_the_source_s_own,
);

/// `intake migrate-store` (the `transfer` module) copies the recovery jobs and the columns
/// that make replays what they are: a replayed delivery keeps its origin, its job and its
/// replay key, so replaying the same key on the new store creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_store_copies_recovery_jobs_and_the_delivery_columns_of_recoveries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.db");
    let sqlite = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let now = Timestamp(T0 + 60_000);
    let replayed = event("kustomer", "k1", &["crm"], Timestamp(T0));
    let never_queued = event("kustomer", "k2", &[], Timestamp(T0 + 1));
    sqlite.ingest(replayed.clone()).await.unwrap();
    sqlite.ingest(never_queued.clone()).await.unwrap();
    let batch = ReplayBatch {
        recovery: "rec_replay".into(),
        key: "rec_replay".into(),
        items: vec![(replayed.id.clone(), "crm".into())],
        now,
    };
    assert_eq!(
        sqlite
            .replay_deliveries(batch.clone())
            .await
            .unwrap()
            .created,
        1
    );
    let page = sqlite
        .requeue_page(RequeueRequest {
            recovery: "rec_requeue".into(),
            source: "kustomer".into(),
            from: Timestamp(T0),
            to: now,
            after: None,
            limit: 100,
            routes: vec!["crm".into()],
            stale_before: now,
            include_retrying: false,
            dry_run: false,
            now,
            sample: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.created, 1);
    let jobs = vec![
        RecoveryJob {
            finished_at: Some(now),
            ..job(
                "rec_replay",
                TENANT,
                "kustomer",
                RecoveryState::Succeeded,
                T0,
            )
        },
        RecoveryJob {
            cursor: Some(json!({"after": never_queued.id.to_string()})),
            started_at: Some(now),
            ..job(
                "rec_requeue",
                TENANT,
                "kustomer",
                RecoveryState::Running,
                T0 + 1,
            )
        },
    ];
    for j in &jobs {
        sqlite.create_recovery(j.clone()).await.unwrap();
    }
    let source_counts = sqlite.table_counts().await.unwrap();
    assert_eq!(source_counts.recoveries, 2);
    let mut source_events = Vec::new();
    for id in [&replayed.id, &never_queued.id] {
        source_events.push(sqlite.get_event(id).await.unwrap().unwrap());
    }
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
    // A resumed copy changes nothing.
    let again = intake_store::transfer::copy(&sqlite, &pg, true, |_| {})
        .await
        .unwrap();
    assert_eq!(again, source_counts);

    let mut moved = pg.list_recoveries(RecoveryFilter::default()).await.unwrap();
    moved.reverse();
    assert_eq!(moved, jobs);
    for source in &source_events {
        let copy = pg.get_event(&source.summary.id).await.unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&copy).unwrap(),
            serde_json::to_value(source).unwrap()
        );
    }
    let replay = source_events[0]
        .summary
        .deliveries
        .iter()
        .find(|d| d.recovery.as_deref() == Some("rec_replay"))
        .expect("the replayed delivery");
    assert_eq!(replay.origin, Some(intake_core::event::Origin::Replay));
    assert_eq!(
        source_events[1].summary.deliveries[0].recovery.as_deref(),
        Some("rec_requeue")
    );
    // The replay key came along: the same replay on the new store finds its work done.
    let outcome = pg.replay_deliveries(batch).await.unwrap();
    assert_eq!((outcome.created, outcome.already), (0, 1));
    sqlite.close().await.unwrap();
    pg.close().await.unwrap();
}
