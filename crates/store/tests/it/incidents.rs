//! Incidents as stored (issue 13): a write is the record, its timeline entries and its notices
//! in one transaction; it applies only at the version it read (a stale one writes nothing,
//! alone or inside a notification batch); incidents are listed by tenant and openness; an
//! incident's notices are outbox rows like any other (claimed, finished) that name it, are
//! never pruned, and keep their outcome; `migrate-store` copies all of it.

use std::time::Duration;

use intake_core::incident::{IncidentSeverity, IncidentState};
use intake_core::Timestamp;
use intake_store::postgres::{PostgresOptions, PostgresStore};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::{
    Incident, IncidentFilter, IncidentWrite, NewIncidentEntry, NewNotification, NotificationBatch,
    NotificationOutcome, NotificationState, Store, StoreError,
};
use serde_json::json;

use crate::common::*;
use crate::conformance;

fn incident(id: &str, tenants: &[&str], at: i64) -> Incident {
    Incident {
        id: id.into(),
        title: "Webhook processing stalled".into(),
        severity: IncidentSeverity::Critical,
        status: IncidentState::Investigating,
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        sources: vec![format!("{}-kustomer", tenants[0])],
        channels: vec!["chat".into(), "email".into()],
        commander: Some("alice".into()),
        impact_start: Timestamp(at - 600_000),
        declared_at: Timestamp(at),
        declared_by: "operator".into(),
        updated_at: Timestamp(at),
        resolved_at: None,
        next_update_at: Some(Timestamp(at + 1_800_000)),
        tracking: json!({"told": tenants, "alerts": {"k": {"n": 1.5}}}),
        drill: None,
        version: 1,
    }
}

fn entry(kind: &str, at: i64) -> NewIncidentEntry {
    NewIncidentEntry {
        at: Timestamp(at),
        kind: kind.into(),
        author: Some("alice".into()),
        text: format!("{kind} at {at}"),
        detail: json!({"status": "investigating", "n": [1, 2]}),
    }
}

fn notice(id: &str, notifier: &str, tenant: Option<&str>, at: i64) -> NewNotification {
    NewNotification {
        notifier: notifier.into(),
        key: format!("incident:{id}"),
        notice: format!(r#"{{"key":"incident:{id}","to":"{notifier}"}}"#),
        created_at: Timestamp(at),
        incident: Some(id.into()),
        tenant: tenant.map(str::to_string),
    }
}

fn create(
    i: &Incident,
    entries: Vec<NewIncidentEntry>,
    notices: Vec<NewNotification>,
) -> IncidentWrite {
    IncidentWrite {
        incident: i.clone(),
        expected_version: None,
        entries,
        notices,
    }
}

async fn an_incident_is_written_with_its_entries_and_notices_and_read_back(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let inc = incident("inc_a", &["maelys"], T0);
    let w = create(
        &inc,
        vec![entry("declared", T0), entry("alert_firing", T0 - 60_000)],
        vec![
            notice("inc_a", "slack", None, T0),
            notice("inc_a", "contact:maelys:0", Some("maelys"), T0),
        ],
    );
    assert!(store.write_incident(w.clone()).await.unwrap());
    assert_eq!(
        store.get_incident("inc_a").await.unwrap(),
        Some(inc.clone())
    );
    assert_eq!(store.get_incident("inc_nope").await.unwrap(), None);
    // A drill incident names its drill, and keeps it through a later write.
    let drill = Incident {
        drill: Some("drl_01JDRILL".into()),
        ..incident("inc_d", &["maelys"], T0 + 1)
    };
    assert!(store
        .write_incident(create(&drill, vec![], vec![]))
        .await
        .unwrap());
    assert_eq!(
        store.get_incident("inc_d").await.unwrap(),
        Some(drill.clone())
    );
    let later = IncidentWrite {
        incident: Incident {
            status: IncidentState::Resolved,
            resolved_at: Some(Timestamp(T0 + 2)),
            ..drill.clone()
        },
        expected_version: Some(1),
        entries: vec![],
        notices: vec![],
    };
    assert!(store.write_incident(later).await.unwrap());
    let read = store.get_incident("inc_d").await.unwrap().unwrap();
    assert_eq!(
        (read.drill.as_deref(), read.version),
        (Some("drl_01JDRILL"), 2)
    );
    // Entries come back in time order, whatever the order they were written in.
    let entries = store.incident_entries("inc_a").await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["alert_firing", "declared"]);
    assert_eq!(
        entries[1].detail,
        json!({"status": "investigating", "n": [1, 2]})
    );
    assert_eq!(entries[1].author.as_deref(), Some("alice"));
    // Its notices are outbox rows: claimed and finished like any other, and they keep their
    // outcome for the incident's record.
    let claimed = store
        .claim_notifications(Timestamp(T0), Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed
        .iter()
        .all(|c| c.incident.as_deref() == Some("inc_a")));
    let contact = claimed.iter().find(|c| c.tenant.is_some()).unwrap();
    store
        .finish_notification(contact.id, NotificationOutcome::Sent, Timestamp(T0 + 2_000))
        .await
        .unwrap();
    let notices = store.incident_notices("inc_a").await.unwrap();
    assert_eq!(notices.len(), 2);
    let sent = notices
        .iter()
        .find(|n| n.tenant.as_deref() == Some("maelys"))
        .unwrap();
    assert_eq!(sent.state, NotificationState::Sent);
    assert_eq!(sent.finished_at, Some(Timestamp(T0 + 2_000)));
    // A new incident with an id that exists is refused, and writes nothing.
    let again = store.write_incident(w).await;
    assert!(matches!(again, Err(StoreError::Corrupt(_))), "{again:?}");
    assert_eq!(store.incident_entries("inc_a").await.unwrap().len(), 2);
    close(store).await;
}

async fn a_write_applies_only_at_the_version_it_read(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let inc = incident("inc_v", &["maelys"], T0);
    store
        .write_incident(create(&inc, vec![entry("declared", T0)], vec![]))
        .await
        .unwrap();
    let update = |status: IncidentState, read: i64, at: i64| IncidentWrite {
        incident: Incident {
            status,
            updated_at: Timestamp(at),
            ..inc.clone()
        },
        expected_version: Some(read),
        entries: vec![entry("update", at)],
        notices: vec![notice("inc_v", "contact:maelys:0", Some("maelys"), at)],
    };
    assert!(store
        .write_incident(update(IncidentState::Identified, 1, T0 + 1))
        .await
        .unwrap());
    // Someone who read version 1 too comes second: nothing of theirs is written.
    assert!(!store
        .write_incident(update(IncidentState::Monitoring, 1, T0 + 2))
        .await
        .unwrap());
    let stored = store.get_incident("inc_v").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (IncidentState::Identified, 2)
    );
    assert_eq!(store.incident_entries("inc_v").await.unwrap().len(), 2);
    assert_eq!(store.incident_notices("inc_v").await.unwrap().len(), 1);
    // Inside a notification batch a stale write is left out and the rest is committed.
    let batch = NotificationBatch {
        notifications: vec![NewNotification {
            incident: None,
            tenant: None,
            ..notice("x", "slack", None, T0 + 3)
        }],
        state: vec![("notifications".into(), "{}".into())],
        announced_expiries: vec![],
        incidents: vec![
            update(IncidentState::Monitoring, 1, T0 + 3),
            create(
                &incident("inc_w", &["other"], T0 + 3),
                vec![entry("declared", T0 + 3)],
                vec![],
            ),
        ],
    };
    store.enqueue_notifications(batch).await.unwrap();
    let stored = store.get_incident("inc_v").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (IncidentState::Identified, 2)
    );
    assert!(store.get_incident("inc_w").await.unwrap().is_some());
    assert_eq!(store.list_notifications(None, 10).await.unwrap().len(), 2);
    assert!(store.get_state("notifications").await.unwrap().is_some());
    close(store).await;
}

async fn incidents_are_listed_by_tenant_and_openness_newest_first(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let resolved = Incident {
        status: IncidentState::Resolved,
        resolved_at: Some(Timestamp(T0 + 10)),
        ..incident("inc_1", &["maelys"], T0)
    };
    let both = incident("inc_2", &["maelys", "other"], T0 + 1);
    // `_` is a wildcard in SQL's LIKE: a tenant `ma_lys` must not find `maelys`'s.
    let wild = incident("inc_3", &["ma_lys"], T0 + 2);
    for i in [&resolved, &both, &wild] {
        store
            .write_incident(create(i, vec![], vec![]))
            .await
            .unwrap();
    }
    let ids = |list: Vec<Incident>| list.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let all = store
        .list_incidents(IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(all), ["inc_3", "inc_2", "inc_1"]);
    let of = |t: &str| IncidentFilter {
        tenant: Some(t.into()),
        ..IncidentFilter::default()
    };
    assert_eq!(
        ids(store.list_incidents(of("maelys")).await.unwrap()),
        ["inc_2", "inc_1"]
    );
    assert_eq!(
        ids(store.list_incidents(of("other")).await.unwrap()),
        ["inc_2"]
    );
    assert_eq!(
        ids(store.list_incidents(of("ma_lys")).await.unwrap()),
        ["inc_3"]
    );
    assert!(store.list_incidents(of("mae")).await.unwrap().is_empty());
    let open = store.list_incidents(IncidentFilter::open()).await.unwrap();
    assert_eq!(ids(open), ["inc_3", "inc_2"]);
    let recent = |since: i64| IncidentFilter {
        open_or_resolved_since: Some(Some(Timestamp(since))),
        ..IncidentFilter::default()
    };
    assert_eq!(
        ids(store.list_incidents(recent(T0 + 10)).await.unwrap()).len(),
        3
    );
    assert_eq!(
        ids(store.list_incidents(recent(T0 + 11)).await.unwrap()).len(),
        2
    );
    let limited = IncidentFilter {
        limit: 1,
        ..IncidentFilter::default()
    };
    assert_eq!(ids(store.list_incidents(limited).await.unwrap()), ["inc_3"]);
    close(store).await;
}

async fn an_incident_s_notices_are_never_pruned(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    store
        .write_incident(create(
            &incident("inc_p", &["maelys"], T0),
            vec![],
            vec![notice("inc_p", "contact:maelys:0", Some("maelys"), T0)],
        ))
        .await
        .unwrap();
    store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![NewNotification {
                incident: None,
                tenant: None,
                ..notice("x", "slack", None, T0)
            }],
            ..NotificationBatch::default()
        })
        .await
        .unwrap();
    for item in store
        .claim_notifications(Timestamp(T0), Duration::from_secs(60), 10)
        .await
        .unwrap()
    {
        store
            .finish_notification(item.id, NotificationOutcome::Sent, Timestamp(T0))
            .await
            .unwrap();
    }
    store
        .prune_notifications(Timestamp(T0 + 86_400_000))
        .await
        .unwrap();
    let left = store.list_notifications(None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].incident.as_deref(), Some("inc_p"));
    close(store).await;
}

conformance!(
    an_incident_is_written_with_its_entries_and_notices_and_read_back,
    a_write_applies_only_at_the_version_it_read,
    incidents_are_listed_by_tenant_and_openness_newest_first,
    an_incident_s_notices_are_never_pruned,
);

/// `intake migrate-store` copies incidents, their timelines (entry ids kept) and their notices
/// with their outcome; a resumed copy changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_store_copies_incidents_their_timelines_and_notices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.db");
    let sqlite = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    // A drill incident: its drill is copied too.
    let resolved = Incident {
        status: IncidentState::Resolved,
        resolved_at: Some(Timestamp(T0 + 5)),
        drill: Some("drl_01JDRILL".into()),
        ..incident("inc_m1", &["maelys"], T0)
    };
    sqlite
        .write_incident(create(
            &resolved,
            vec![entry("declared", T0), entry("resolved", T0 + 5)],
            vec![
                notice("inc_m1", "contact:maelys:0", Some("maelys"), T0),
                notice("inc_m1", "slack", None, T0),
            ],
        ))
        .await
        .unwrap();
    for item in sqlite
        .claim_notifications(Timestamp(T0), Duration::from_secs(60), 10)
        .await
        .unwrap()
    {
        let outcome = if item.tenant.is_some() {
            NotificationOutcome::Sent
        } else {
            NotificationOutcome::Dead {
                error: "HTTP 404".into(),
            }
        };
        sqlite
            .finish_notification(item.id, outcome, Timestamp(T0 + 1))
            .await
            .unwrap();
    }
    let open = incident("inc_m2", &["other"], T0 + 10);
    sqlite
        .write_incident(create(
            &open,
            vec![entry("declared", T0 + 10)],
            vec![notice("inc_m2", "contact:other:0", Some("other"), T0 + 10)],
        ))
        .await
        .unwrap();
    sqlite
        .write_incident(IncidentWrite {
            incident: Incident {
                status: IncidentState::Monitoring,
                ..open.clone()
            },
            expected_version: Some(1),
            entries: vec![entry("update", T0 + 11)],
            notices: vec![],
        })
        .await
        .unwrap();
    let source_counts = sqlite.table_counts().await.unwrap();
    assert_eq!(
        (
            source_counts.incidents,
            source_counts.incident_entries,
            source_counts.incident_notices
        ),
        (2, 4, 3)
    );
    let source_entries = sqlite.incident_entries("inc_m1").await.unwrap();
    let source_notices = sqlite.incident_notices("inc_m1").await.unwrap();
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

    assert_eq!(pg.get_incident("inc_m1").await.unwrap(), Some(resolved));
    let moved = pg.get_incident("inc_m2").await.unwrap().unwrap();
    assert_eq!(
        (moved.status, moved.version),
        (IncidentState::Monitoring, 2)
    );
    assert_eq!(pg.incident_entries("inc_m1").await.unwrap(), source_entries);
    let notices = pg.incident_notices("inc_m1").await.unwrap();
    let outcome = |list: &[intake_store::OutboxItem]| {
        let mut v: Vec<_> = list
            .iter()
            .map(|n| {
                (
                    n.notifier.clone(),
                    n.state.as_str(),
                    n.finished_at,
                    n.last_error.clone(),
                    n.tenant.clone(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(outcome(&notices), outcome(&source_notices));
    // The waiting notice of the open incident came with the outbox, still naming it.
    let waiting = pg.incident_notices("inc_m2").await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].state, NotificationState::Pending);
    // Written on the new store, a new entry does not collide with the copied ids.
    assert!(pg
        .write_incident(IncidentWrite {
            incident: moved.clone(),
            expected_version: Some(2),
            entries: vec![entry("update", T0 + 20)],
            notices: vec![],
        })
        .await
        .unwrap());
    sqlite.close().await.unwrap();
    pg.close().await.unwrap();
}
