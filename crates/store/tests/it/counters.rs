//! Per-minute counters, written in the transaction of the change they count.

use intake_core::delivery::NextStep;
use intake_core::Timestamp;
use intake_store::{Rejection, RejectionKind};

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

conformance!(every_outcome_is_counted_in_its_minute);
