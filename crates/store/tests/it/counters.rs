//! Per-minute counters, written in the transaction of the change they count.

use intake_core::delivery::NextStep;
use intake_core::Timestamp;
use intake_store::{Rejection, RejectionKind, Store};

use crate::common::*;
use crate::conformance;

type Row = CounterRow;

fn row(minute: i64, channel: &str, destination: &str, metric: &str, count: i64) -> Row {
    (
        minute,
        TENANT.to_string(),
        "kustomer".to_string(),
        channel.to_string(),
        destination.to_string(),
        metric.to_string(),
        count,
    )
}

async fn every_outcome_is_counted_in_its_minute(kind: Kind) {
    // T0 = 1_700_000_012_345; the minutes below are the instants floored to 60 000 ms.
    const M0: i64 = 1_699_999_980_000; // T0, T0 + 1 s
    const M1: i64 = 1_700_000_040_000; // T0 + 30 s
    const M2: i64 = 1_700_000_100_000; // T0 + 100 s
    const M3: i64 = 1_700_000_160_000; // T0 + 200 s
    const M4: i64 = 1_700_000_280_000; // T0 + 300 s

    let db = Db::new(kind).await;
    let store = db.open().await;
    let e1 = event("kustomer", "k1", &["crm", "warehouse"], Timestamp(T0));
    let e2 = event("kustomer", "k2", &["crm"], Timestamp(T0 + 1_000));
    store.ingest(e1.clone()).await.unwrap();
    store.ingest(e2.clone()).await.unwrap();
    let dup = store
        .ingest(event("kustomer", "k1", &["crm"], Timestamp(T0 + 30_000)))
        .await
        .unwrap();
    assert!(dup.duplicate);
    store
        .record_rejection(Rejection {
            at: Timestamp(T0),
            tenant: TENANT.into(),
            source: "kustomer".into(),
            kind: RejectionKind::Signature,
            reason: "bad signature".into(),
            body: None,
        })
        .await
        .unwrap();

    let claim_at = Timestamp(T0 + 40_000);
    let crm = store.claim_due("crm", claim_at, LEASE, 10).await.unwrap();
    assert_eq!(crm.len(), 2);
    let c1 = crm.iter().find(|c| c.event_id == e1.id).unwrap();
    let c2 = crm.iter().find(|c| c.event_id == e2.id).unwrap();
    let w = store
        .claim_due("warehouse", claim_at, LEASE, 10)
        .await
        .unwrap()
        .remove(0);

    let f1 = Timestamp(T0 + 100_000);
    store
        .finish_attempt(attempt(c1, NextStep::Delivered, f1))
        .await
        .unwrap();
    store
        .finish_attempt(attempt(&w, NextStep::Delivered, f1))
        .await
        .unwrap();
    let f2 = Timestamp(T0 + 200_000);
    let retry_at = Timestamp(T0 + 250_000);
    store
        .finish_attempt(attempt(c2, NextStep::RetryAt(retry_at), f2))
        .await
        .unwrap();
    let c2b = store
        .claim_due("crm", retry_at, LEASE, 10)
        .await
        .unwrap()
        .remove(0);
    let f3 = Timestamp(T0 + 300_000);
    store
        .finish_attempt(attempt(&c2b, NextStep::Dead, f3))
        .await
        .unwrap();
    // A superseded attempt (its lease is gone) counts nothing.
    store
        .finish_attempt(attempt(c2, NextStep::Delivered, f3))
        .await
        .unwrap();

    let mut want = vec![
        row(M0, "email", "crm", "deliveries.created", 2),
        row(M0, "email", "warehouse", "deliveries.created", 1),
        row(M0, "email", "", "events.webhook", 2),
        row(M0, "email", "", "requests.accepted", 2),
        row(M0, "", "", "requests.rejected_signature", 1),
        row(M1, "email", "", "requests.duplicate", 1),
        row(M2, "email", "crm", "deliveries.delivered", 1),
        row(M2, "email", "warehouse", "deliveries.delivered", 1),
        row(M3, "email", "crm", "deliveries.failed", 1),
        row(M4, "email", "crm", "deliveries.dead", 1),
    ];
    want.sort_by(|a, b| (a.0, &a.5, &a.4).cmp(&(b.0, &b.5, &b.4)));
    assert_eq!(db.counters().await, want);

    close(store).await;
}

/// Events received at the given offsets (ms) from `base`, one per key.
async fn ingest_at(store: &dyn Store, base: i64, offsets: &[i64]) {
    for (i, off) in offsets.iter().enumerate() {
        let at = Timestamp(base + off);
        store
            .ingest(event("kustomer", &format!("k{base}-{i}"), &["crm"], at))
            .await
            .unwrap();
    }
}

fn webhook_query(
    from: i64,
    to: i64,
    resolution: intake_store::Resolution,
) -> intake_store::CounterQuery {
    intake_store::CounterQuery {
        from: Timestamp(from),
        to: Timestamp(to),
        resolution,
        metrics: vec!["events.webhook".into()],
        tenant: Some(TENANT.into()),
        source: None,
    }
}

async fn counters_read_per_minute_and_per_hour_before_and_after_compaction(kind: Kind) {
    use intake_store::{CounterRetention, Resolution};
    const H: i64 = 3_600_000;
    let h0 = 1_700_002_800_000 - 1_700_002_800_000 % H; // an hour boundary
    let db = Db::new(kind).await;
    let store = db.open().await;
    // Hour 0: 3 events in minute 0, 1 in minute 59. Hour 1: 2 events. Hour 2 (current): 1.
    ingest_at(store.as_ref(), h0, &[0, 10_000, 59_999, 59 * 60_000]).await;
    ingest_at(store.as_ref(), h0 + H, &[5 * 60_000, 6 * 60_000]).await;
    ingest_at(store.as_ref(), h0 + 2 * H, &[1_000]).await;

    let minutes = store
        .read_counters(webhook_query(h0, h0 + H, Resolution::Minute))
        .await
        .unwrap();
    let by_minute: Vec<(i64, i64)> = minutes.iter().map(|r| (r.at.0 - h0, r.count)).collect();
    assert_eq!(by_minute, vec![(0, 3), (59 * 60_000, 1)]);

    let hourly = |rows: Vec<intake_store::CounterRow>| -> Vec<(i64, i64)> {
        rows.iter().map(|r| ((r.at.0 - h0) / H, r.count)).collect()
    };
    let before = hourly(
        store
            .read_counters(webhook_query(h0, h0 + 3 * H, Resolution::Hour))
            .await
            .unwrap(),
    );
    assert_eq!(before, vec![(0, 4), (1, 2), (2, 1)]);

    // Compaction during hour 2 rolls hours 0 and 1 up; reads give the same answer.
    let now = Timestamp(h0 + 2 * H + 30 * 60_000);
    let report = store
        .compact_counters(now, CounterRetention::default())
        .await
        .unwrap();
    assert!(report.hours_rolled >= 2, "{report:?}");
    assert_eq!(report.minutes_deleted, 0);
    let after = hourly(
        store
            .read_counters(webhook_query(h0, h0 + 3 * H, Resolution::Hour))
            .await
            .unwrap(),
    );
    assert_eq!(after, before);
    // A window starting mid-way reads only its hours, from both tables.
    let tail = hourly(
        store
            .read_counters(webhook_query(h0 + H, h0 + 3 * H, Resolution::Hour))
            .await
            .unwrap(),
    );
    assert_eq!(tail, vec![(1, 2), (2, 1)]);

    // Compacting again changes nothing (idempotent).
    store
        .compact_counters(now, CounterRetention::default())
        .await
        .unwrap();
    let again = hourly(
        store
            .read_counters(webhook_query(h0, h0 + 3 * H, Resolution::Hour))
            .await
            .unwrap(),
    );
    assert_eq!(again, before);

    // With a short minute retention, minute rows of rolled hours go; hourly rows stay.
    let short = CounterRetention {
        minutes: std::time::Duration::from_secs(60),
        hours: std::time::Duration::from_secs(30 * 86_400),
    };
    let later = Timestamp(h0 + 4 * H);
    let report = store.compact_counters(later, short).await.unwrap();
    assert!(report.minutes_deleted > 0, "{report:?}");
    let minutes = store
        .read_counters(webhook_query(h0, h0 + H, Resolution::Minute))
        .await
        .unwrap();
    assert!(minutes.is_empty(), "{minutes:?}");
    assert_eq!(
        hourly(
            store
                .read_counters(webhook_query(h0, h0 + 3 * H, Resolution::Hour))
                .await
                .unwrap()
        ),
        before
    );

    // Hourly rows past their retention go too.
    let report = store
        .compact_counters(
            Timestamp(h0 + 200 * 86_400 * 1000),
            CounterRetention::default(),
        )
        .await
        .unwrap();
    assert!(report.hours_deleted >= 3, "{report:?}");
    close(store).await;
}

conformance!(
    every_outcome_is_counted_in_its_minute,
    counters_read_per_minute_and_per_hour_before_and_after_compaction
);

mod state {
    use intake_core::Timestamp;
    use intake_store::AlertTransitionRecord;

    use crate::common::*;
    use crate::conformance;

    fn transition(at: i64, tenant: &str, state: &str) -> AlertTransitionRecord {
        AlertTransitionRecord {
            at: Timestamp(at),
            rule: "inbound_stopped".into(),
            tenant: tenant.into(),
            source: format!("{tenant}-kustomer"),
            channel: "email".into(),
            destination: String::new(),
            severity: "critical".into(),
            state: state.into(),
            value: 14.0,
            reason: "0 events in 14 min".into(),
        }
    }

    async fn state_documents_and_alert_transitions_survive_a_reopen(kind: Kind) {
        let db = Db::new(kind).await;
        let store = db.open().await;
        assert_eq!(store.get_state("alerts").await.unwrap(), None);
        store.put_state("alerts", "[1]".into()).await.unwrap();
        store.put_state("alerts", "[1,2]".into()).await.unwrap();
        store
            .record_alert_transitions(vec![
                transition(T0, "acme", "pending"),
                transition(T0 + 60_000, "acme", "firing"),
                transition(T0 + 60_000, "globex", "firing"),
            ])
            .await
            .unwrap();
        close(store).await;

        let store = db.open().await;
        assert_eq!(
            store.get_state("alerts").await.unwrap().as_deref(),
            Some("[1,2]")
        );
        let all = store.list_alert_transitions(None, 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].tenant, "globex", "newest first");
        let acme = store
            .list_alert_transitions(Some("acme".into()), 10)
            .await
            .unwrap();
        assert_eq!(
            acme.iter().map(|t| t.state.as_str()).collect::<Vec<_>>(),
            ["firing", "pending"]
        );
        assert_eq!(acme[1], transition(T0, "acme", "pending"));
        close(store).await;
    }

    async fn init_state_writes_once_and_answers_what_is_stored(kind: Kind) {
        let db = Db::new(kind).await;
        let store = db.open().await;
        let first = store.init_state("canary-key", "aa".into()).await.unwrap();
        assert_eq!(first, "aa");
        // Another node (or a restart) offering its own value gets the stored one.
        let second = store.init_state("canary-key", "bb".into()).await.unwrap();
        assert_eq!(second, "aa");
        close(store).await;
        let store = db.open().await;
        assert_eq!(
            store.init_state("canary-key", "cc".into()).await.unwrap(),
            "aa"
        );
        assert_eq!(
            store.get_state("canary-key").await.unwrap().as_deref(),
            Some("aa")
        );
        close(store).await;
    }

    async fn many_documents_are_written_and_deleted_at_once_and_read_by_prefix(kind: Kind) {
        let db = Db::new(kind).await;
        let store = db.open().await;
        let put = |k: &str, v: Option<&str>| (k.to_string(), v.map(str::to_string));
        store
            .put_states(vec![
                put("flow:a", Some("1")),
                put("flow:b", Some("2")),
                put("flow:c", Some("3")),
                // `_` and `%` are literal: a prefix is never a pattern.
                put("flowxa", Some("not a flow")),
                put("flow_", Some("not a flow either")),
                put("alerts", Some("[]")),
            ])
            .await
            .unwrap();
        store
            .put_states(vec![put("flow:b", Some("22")), put("flow:c", None)])
            .await
            .unwrap();
        // Deleting what is not there, and writing nothing, are no-ops.
        store.put_states(vec![put("flow:zz", None)]).await.unwrap();
        store.put_states(Vec::new()).await.unwrap();
        let expected = vec![
            ("flow:a".to_string(), "1".to_string()),
            ("flow:b".to_string(), "22".to_string()),
        ];
        assert_eq!(store.states_with_prefix("flow:").await.unwrap(), expected);
        assert_eq!(
            store.get_state("flow:b").await.unwrap().as_deref(),
            Some("22")
        );
        assert_eq!(
            store.get_state("alerts").await.unwrap().as_deref(),
            Some("[]")
        );
        assert!(store
            .states_with_prefix("nothing:")
            .await
            .unwrap()
            .is_empty());
        close(store).await;

        let store = db.open().await;
        assert_eq!(store.states_with_prefix("flow:").await.unwrap(), expected);
        // A store that cannot write refuses the whole set, and keeps what it had.
        store
            .inject_fault(Some(intake_store::StoreFault::RejectWrites))
            .await
            .unwrap();
        assert!(store
            .put_states(vec![put("flow:a", Some("9")), put("flow:b", None)])
            .await
            .is_err());
        store.inject_fault(None).await.unwrap();
        assert_eq!(store.states_with_prefix("flow:").await.unwrap(), expected);
        close(store).await;
    }

    conformance!(
        state_documents_and_alert_transitions_survive_a_reopen,
        init_state_writes_once_and_answers_what_is_stored,
        many_documents_are_written_and_deleted_at_once_and_read_by_prefix
    );
}
