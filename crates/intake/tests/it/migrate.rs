//! `intake migrate-store`: an embedded installation copied into PostgreSQL, refused into a
//! database that is not empty, resumed idempotently.

use std::time::Duration;

use intake_core::delivery::NextStep;
use intake_core::event::{Channel, NormalizedEvent, Origin};
use intake_core::{DeliveryId, EventId, Timestamp};
use intake_store::postgres::{PostgresOptions, PostgresStore};
use intake_store::sqlite::{SqliteOptions, SqliteStore};
use intake_store::{EventFilter, FinishedAttempt, NewEvent, Rejection, RejectionKind, Store};

fn event(i: usize, at: Timestamp) -> NewEvent {
    NewEvent {
        id: EventId::generate(at),
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
        origin: Origin::Webhook,
        normalized: NormalizedEvent {
            sor_event_id: Some(format!("sor-{i}")),
            dedupe_key: format!("message:{i}:create"),
            event_type: "kustomer.message.create".into(),
            channel: if i.is_multiple_of(2) {
                Channel::Email
            } else {
                Channel::Chat
            },
            raw_channel: None,
            object_type: Some("message".into()),
            object_id: Some(format!("msg-{i}")),
            conversation_id: Some(format!("conv-{i}")),
            occurred_at: Some(at),
        },
        received_at: at,
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!("{{\"i\":{i}}}").into_bytes(),
        deliveries: vec![
            (DeliveryId::generate(at), "handler".into()),
            (DeliveryId::generate(at), "warehouse".into()),
        ],
    }
}

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_everything_refuses_a_full_destination_and_resumes() {
    // The source: 1,200 events (more than two pages), attempts of every kind, rejections.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.db");
    let sqlite = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let t0 = Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
    for i in 0..1200 {
        let at = t0.plus(Duration::from_millis(i as u64 * 250));
        sqlite.ingest(event(i, at)).await.unwrap();
    }
    let now = t0.plus(Duration::from_secs(600));
    let claimed = sqlite
        .claim_due("handler", now, Duration::from_secs(60), 30)
        .await
        .unwrap();
    for (k, c) in claimed.iter().enumerate() {
        let next = match k % 3 {
            0 => NextStep::Delivered,
            1 => NextStep::RetryAt(now.plus(Duration::from_secs(30))),
            _ => NextStep::Dead,
        };
        sqlite
            .finish_attempt(FinishedAttempt {
                delivery_id: c.id.clone(),
                lease_id: c.lease_id.clone(),
                attempt: c.attempt,
                next,
                started_at: now,
                finished_at: now.plus(Duration::from_millis(12)),
                status: Some(if k % 3 == 0 { 200 } else { 500 }),
                error: (k % 3 != 0).then(|| "HTTP 500".to_string()),
                tenant: c.tenant.clone(),
                source: c.source.clone(),
                channel: c.channel.clone(),
                destination: c.destination.clone(),
                received_at: c.received_at,
                awaits_completion: false,
            })
            .await
            .unwrap();
    }
    for i in 0..5 {
        sqlite
            .record_rejection(Rejection {
                at: now,
                tenant: "maelys".into(),
                source: "maelys-kustomer".into(),
                kind: RejectionKind::Invalid,
                reason: format!("not JSON #{i}"),
                body: Some(b"{".to_vec()),
            })
            .await
            .unwrap();
    }
    // The monitor's memory: an hour rolled up, its alert book, a transition.
    sqlite
        .compact_counters(
            t0.plus(Duration::from_secs(2 * 3600)),
            intake_store::CounterRetention::default(),
        )
        .await
        .unwrap();
    sqlite
        .put_state("alerts", "[\"book\"]".into())
        .await
        .unwrap();
    let transition = intake_store::AlertTransitionRecord {
        at: now,
        rule: "queue_stalled".into(),
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
        channel: String::new(),
        destination: "handler".into(),
        severity: "critical".into(),
        state: "firing".into(),
        value: 301.0,
        reason: "oldest undelivered delivery waiting 5m 1s".into(),
    };
    sqlite
        .record_alert_transitions(vec![transition.clone()])
        .await
        .unwrap();
    let hourly_query = intake_store::CounterQuery {
        from: t0,
        to: t0.plus(Duration::from_secs(3 * 3600)),
        resolution: intake_store::Resolution::Hour,
        metrics: vec![],
        tenant: None,
        source: None,
    };
    // A silence in force, and a page decided but not yet delivered (its notifier is down).
    let silence = intake_store::Silence {
        id: "sil_01JDMIGRATE0000000000000000".into(),
        matchers: std::collections::BTreeMap::from([("tenant".to_string(), "maelys".to_string())]),
        starts_at: now,
        ends_at: now.plus(Duration::from_secs(3600)),
        created_by: "alice".into(),
        comment: "moving to PostgreSQL".into(),
        created_at: now,
        expiry_announced: false,
    };
    sqlite
        .create_silence(silence.clone(), vec![])
        .await
        .unwrap();
    // A minted API token in use, and a revoked one: both move, the revocation with it.
    let mut tokens = Vec::new();
    for (id, revoked_at) in [
        ("tok_01JDMIGRATE0000000000000001", None),
        ("tok_01JDMIGRATE0000000000000002", Some(now)),
    ] {
        let token = intake_store::ApiToken {
            id: id.into(),
            hash: intake_core::token::hash(id),
            tenant: Some("maelys".into()),
            name: "moved".into(),
            created_by: "operator".into(),
            created_at: now,
            expires_at: None,
            revoked_at,
        };
        sqlite.create_token(token.clone()).await.unwrap();
        tokens.push(token);
    }
    sqlite
        .revoke_token("tok_01JDMIGRATE0000000000000002", None, now)
        .await
        .unwrap();
    sqlite
        .enqueue_notifications(intake_store::NotificationBatch {
            notifications: vec![intake_store::NewNotification {
                notifier: "oncall".into(),
                key: "queue_stalled{tenant=\"maelys\"}".into(),
                notice: "{\"status\":\"firing\"}".into(),
                created_at: now,
                incident: None,
                tenant: None,
            }],
            state: vec![],
            announced_expiries: vec![],
            incidents: vec![],
        })
        .await
        .unwrap();
    let source_hourly = sqlite.read_counters(hourly_query.clone()).await.unwrap();
    assert!(!source_hourly.is_empty());
    let source_counts = sqlite.table_counts().await.unwrap();
    let source_events = sqlite
        .list_events(EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    sqlite.close().await.unwrap();
    drop(sqlite);

    let db = crate::cluster::TestDb::create().await;
    let from = format!("sqlite://{}", path.display());

    let out = run(&["migrate-store", "--from", &from, "--to", &db.url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("agree"), "{stdout}");
    assert!(stderr.contains("events: 1200/1200 (100%)"), "{stderr}");

    // A second copy into the same database is refused...
    let out = run(&["migrate-store", "--from", &from, "--to", &db.url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("--resume"),
        "{stderr}"
    );
    // ...unless resumed, which changes nothing.
    let out = run(&[
        "migrate-store",
        "--from",
        &from,
        "--to",
        &db.url,
        "--resume",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pg = PostgresStore::open(
        &db.url,
        PostgresOptions {
            pool_size: 2,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(pg.table_counts().await.unwrap(), source_counts);
    assert_eq!(
        pg.read_counters(hourly_query).await.unwrap(),
        source_hourly,
        "hourly counters (rolled up and not) read back the same"
    );
    assert_eq!(
        pg.get_state("alerts").await.unwrap().as_deref(),
        Some("[\"book\"]")
    );
    assert_eq!(
        pg.list_alert_transitions(None, 10).await.unwrap(),
        vec![transition]
    );
    assert_eq!(
        pg.list_silences(Timestamp(0)).await.unwrap(),
        vec![silence],
        "the silence in force is copied"
    );
    let mut moved = pg.list_tokens(None).await.unwrap();
    moved.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(moved, tokens, "API tokens are copied, revoked ones too");
    let waiting = pg.list_notifications(None, 10).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].notifier, "oncall");
    assert_eq!(waiting[0].state, intake_store::NotificationState::Pending);
    let copied = pg
        .list_events(EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&copied).unwrap(),
        serde_json::to_value(&source_events).unwrap(),
        "the newest 1000 events read back the same from both stores"
    );
    for c in &claimed {
        let detail = pg.get_event(&c.event_id).await.unwrap().unwrap();
        assert_eq!(detail.attempts.len(), 1, "{}", c.event_id);
    }
    // The copy is a working store: new work goes on after the copied ids.
    let more = event(5000, now);
    assert!(!pg.ingest(more).await.unwrap().duplicate);
    pg.record_rejection(Rejection {
        at: now,
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
        kind: RejectionKind::Invalid,
        reason: "after the copy".into(),
        body: None,
    })
    .await
    .unwrap();
    assert_eq!(pg.list_rejections(None, 10).await.unwrap().len(), 6);
    pg.close().await.unwrap();
    db.drop_db().await;
}
