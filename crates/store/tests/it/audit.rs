//! The audit read (`Store::audit`, issue 11): the counters and the rows of one source's window,
//! read together — requests by outcome, events by origin and channel, each (event, destination)
//! once by its best state, and the events with no delivery to a routed destination. Per minute
//! while minute counters are kept, per hour (the window widened to whole hours) once they are
//! compacted away, and saying so when even the hourly ones are gone.

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::delivery::NextStep;
use intake_core::event::{Channel, Origin};
use intake_core::Timestamp;
use intake_store::{
    AuditCounts, AuditQuery, CounterRetention, DestinationAudit, NewEvent, Rejection,
    RejectionKind, ReplayBatch, RequestCounts, Resolution, Store,
};

use crate::common::*;
use crate::conformance;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn query(from: i64, to: i64, routes: &[&str]) -> AuditQuery {
    AuditQuery {
        source: "kustomer".into(),
        from: Timestamp(from),
        to: Timestamp(to),
        routes: routes.iter().map(|r| r.to_string()).collect(),
        sample: 2,
    }
}

fn rejection(kind: RejectionKind, at: i64) -> Rejection {
    Rejection {
        at: Timestamp(at),
        tenant: TENANT.into(),
        source: "kustomer".into(),
        kind,
        reason: "refused".into(),
        body: None,
    }
}

fn with(mut e: NewEvent, origin: Origin, channel: Channel) -> NewEvent {
    e.origin = origin;
    e.normalized.channel = channel;
    e
}

/// Claims every due delivery of `destination` and finishes each with `next(event key)`.
async fn finish_all(
    store: &dyn Store,
    destination: &str,
    at: i64,
    next: impl Fn(&str) -> NextStep,
    keys: &BTreeMap<String, &str>,
) {
    for c in store
        .claim_due(destination, Timestamp(at), LEASE, 100)
        .await
        .unwrap()
    {
        let step = next(keys[c.event_id.as_str()]);
        store
            .finish_attempt(attempt(&c, step, Timestamp(at + 10)))
            .await
            .unwrap();
    }
}

fn destination(
    name: &str,
    routed: bool,
    (delivered, pending, dead): (u64, u64, u64),
    missing: u64,
) -> DestinationAudit {
    DestinationAudit {
        destination: name.into(),
        routed,
        delivered,
        pending,
        dead,
        missing,
        missing_sample: Vec::new(),
    }
}

async fn an_audit_counts_one_window_of_one_source(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    // Inside the window [T0, T0 + 60 s): four events (one backfilled, one on a destination no
    // longer routed), a duplicate, three refused requests. Outside: an earlier event of the
    // source, and one of another source.
    let e1 = event("kustomer", "k1", &["crm", "warehouse"], Timestamp(T0));
    let e2 = with(
        event("kustomer", "k2", &["crm"], Timestamp(T0 + 1_000)),
        Origin::Webhook,
        Channel::Chat,
    );
    let e3 = with(
        event("kustomer", "k3", &["crm", "old"], Timestamp(T0 + 2_000)),
        Origin::Backfill,
        Channel::Email,
    );
    let e4 = event("kustomer", "k4", &["crm"], Timestamp(T0 + 3_000));
    let before = event("kustomer", "k0", &["crm"], Timestamp(T0 - 5 * MINUTE));
    let other = event("zendesk", "z1", &["crm"], Timestamp(T0 + 4_000));
    for e in [&e1, &e2, &e3, &e4, &before, &other] {
        assert!(!store.ingest(e.clone()).await.unwrap().duplicate);
    }
    let dup = event("kustomer", "k1", &["crm"], Timestamp(T0 + 5_000));
    assert!(store.ingest(dup).await.unwrap().duplicate);
    for (k, at) in [
        (RejectionKind::Signature, T0 + 6_000),
        (RejectionKind::Invalid, T0 + 7_000),
        (RejectionKind::TooLarge, T0 + 8_000),
        (RejectionKind::Signature, T0 - 5 * MINUTE),
    ] {
        store.record_rejection(rejection(k, at)).await.unwrap();
    }

    // crm: k1 delivered, k2 and k4 dead, k3 left pending; then k4 replayed (pending again).
    // warehouse: k1 failed once and is retrying.
    let keys: BTreeMap<String, &str> = [
        (&e1, "k1"),
        (&e2, "k2"),
        (&e3, "k3"),
        (&e4, "k4"),
        (&before, "k0"),
        (&other, "z1"),
    ]
    .into_iter()
    .map(|(e, k)| (e.id.to_string(), k))
    .collect();
    let crm = |k: &str| match k {
        "k2" | "k4" => NextStep::Dead,
        _ => NextStep::Delivered,
    };
    let e3_id = e3.id.to_string();
    for c in store
        .claim_due("crm", Timestamp(T0 + 10_000), LEASE, 100)
        .await
        .unwrap()
    {
        if c.event_id.as_str() == e3_id {
            continue; // stays in flight: pending for the audit
        }
        let step = crm(keys[c.event_id.as_str()]);
        store
            .finish_attempt(attempt(&c, step, Timestamp(T0 + 10_010)))
            .await
            .unwrap();
    }
    let retry = Timestamp(T0 + 20 * MINUTE);
    finish_all(
        &*store,
        "warehouse",
        T0 + 11_000,
        |_| NextStep::RetryAt(retry),
        &keys,
    )
    .await;
    store
        .replay_deliveries(ReplayBatch {
            recovery: "rec_1".into(),
            key: "rec_1:0".into(),
            items: vec![(e4.id.clone(), "crm".into())],
            now: Timestamp(T0 + 12_000),
        })
        .await
        .unwrap();

    let got: AuditCounts = store
        .audit(query(T0, T0 + MINUTE, &["crm", "warehouse"]))
        .await
        .unwrap();
    // T0 is not on a minute: the window is widened to whole minutes.
    let m0 = T0.div_euclid(MINUTE) * MINUTE;
    assert_eq!(got.window.resolution, Resolution::Minute);
    assert_eq!(got.window.from, Timestamp(m0));
    assert_eq!(got.window.to, Timestamp(m0 + 2 * MINUTE));
    assert!(got.window.counters_kept);
    assert_eq!(
        got.requests,
        RequestCounts {
            accepted: 4,
            duplicate: 1,
            rejected_signature: 1,
            rejected_invalid: 1,
            too_large: 1,
        }
    );
    let by = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    };
    assert_eq!(
        got.counted_by_origin,
        by(&[("webhook", 3), ("backfill", 1)])
    );
    assert_eq!(got.stored, 4);
    assert_eq!(got.stored_by_origin, by(&[("webhook", 3), ("backfill", 1)]));
    assert_eq!(got.stored_by_channel, by(&[("chat", 1), ("email", 3)]));
    let mut missing = vec![e2.id.clone(), e3.id.clone(), e4.id.clone()];
    missing.sort();
    missing.truncate(2);
    let want = vec![
        destination("crm", true, (1, 2, 1), 0),
        DestinationAudit {
            missing_sample: missing,
            ..destination("warehouse", true, (0, 1, 0), 3)
        },
        destination("old", false, (0, 1, 0), 0),
    ];
    assert_eq!(got.destinations, want);

    // A window with nothing in it adds up to zeros, and a route with no events is listed.
    let empty = store
        .audit(query(T0 + HOUR, T0 + 2 * HOUR, &["crm"]))
        .await
        .unwrap();
    assert_eq!(empty.requests, RequestCounts::default());
    assert_eq!(empty.stored, 0);
    assert_eq!(
        empty.destinations,
        vec![destination("crm", true, (0, 0, 0), 0)]
    );
    close(store).await;
}

async fn an_audit_reads_hourly_counters_once_the_minutes_are_compacted_away(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let e1 = event("kustomer", "k1", &["crm"], Timestamp(T0));
    // Same hour, outside the minute asked for: counted once the window is whole hours.
    let e2 = event("kustomer", "k2", &["crm"], Timestamp(T0 + 20 * MINUTE));
    store.ingest(e1).await.unwrap();
    store.ingest(e2).await.unwrap();
    store
        .record_rejection(rejection(RejectionKind::Signature, T0 + 30 * MINUTE))
        .await
        .unwrap();
    let minute = store.audit(query(T0, T0 + MINUTE, &["crm"])).await.unwrap();
    assert_eq!(minute.window.resolution, Resolution::Minute);
    assert_eq!((minute.requests.accepted, minute.stored), (1, 1));

    // Four days later, with the default retention, the minute rows are gone.
    let later = Timestamp(T0 + 96 * HOUR);
    let report = store
        .compact_counters(later, CounterRetention::default())
        .await
        .unwrap();
    assert!(report.minutes_deleted > 0, "{report:?}");
    let hourly = store.audit(query(T0, T0 + MINUTE, &["crm"])).await.unwrap();
    let hour = T0.div_euclid(HOUR) * HOUR;
    assert_eq!(hourly.window.resolution, Resolution::Hour);
    assert_eq!(
        (hourly.window.from, hourly.window.to),
        (Timestamp(hour), Timestamp(hour + HOUR))
    );
    assert!(hourly.window.counters_kept);
    assert_eq!(hourly.requests.accepted, 2);
    assert_eq!(hourly.requests.rejected_signature, 1);
    assert_eq!(hourly.stored, 2);
    assert_eq!(hourly.destinations[0].pending, 2);

    // With hourly rows kept a day only, even those are gone: the audit says so.
    let short = CounterRetention {
        minutes: Duration::from_secs(3600),
        hours: Duration::from_secs(86_400),
    };
    store.compact_counters(later, short).await.unwrap();
    let gone = store.audit(query(T0, T0 + MINUTE, &["crm"])).await.unwrap();
    assert!(!gone.window.counters_kept, "{:?}", gone.window);
    assert_eq!(gone.requests.accepted, 0);
    assert_eq!(gone.stored, 2);
    // A window after the retention marks is read per minute again.
    let recent = store
        .audit(query(
            later.as_millis(),
            later.as_millis() + MINUTE,
            &["crm"],
        ))
        .await
        .unwrap();
    assert_eq!(recent.window.resolution, Resolution::Minute);
    close(store).await;
}

conformance!(
    an_audit_counts_one_window_of_one_source,
    an_audit_reads_hourly_counters_once_the_minutes_are_compacted_away,
);
