//! The notification outbox and silences: enqueue with state in one transaction, claims one
//! per notifier in order, retries with their due time, dead letters, the health numbers that
//! decide `notifier_failing`, and silences that are created, listed, expired and announced.

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::Timestamp;
use intake_store::{
    NewNotification, NotificationBatch, NotificationOutcome, NotificationState, Silence,
    SilenceExpiry, StoreFault,
};

use crate::common::*;
use crate::conformance;

fn note(notifier: &str, key: &str, at: Timestamp) -> NewNotification {
    NewNotification {
        notifier: notifier.into(),
        key: key.into(),
        notice: format!(r#"{{"key":"{key}"}}"#),
        created_at: at,
        incident: None,
        tenant: None,
    }
}

fn silence(id: &str, at: Timestamp, ends: Duration) -> Silence {
    Silence {
        id: id.into(),
        matchers: BTreeMap::from([("tenant".to_string(), "maelys".to_string())]),
        starts_at: at,
        ends_at: at.plus(ends),
        created_by: "alice".into(),
        comment: "migration".into(),
        created_at: at,
        expiry_announced: false,
    }
}

async fn notifications_are_enqueued_with_state_and_claimed_in_order_per_notifier(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![
                note("slack", "a-firing", t),
                note("pager", "a-firing", t),
                note("slack", "a-resolved", t.plus(Duration::from_secs(1))),
            ],
            state: vec![("notifications".into(), r#"{"groups":1}"#.into())],
            announced_expiries: vec![],
            incidents: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_state("notifications").await.unwrap().as_deref(),
        Some(r#"{"groups":1}"#)
    );
    assert_eq!(store.next_notification_due().await.unwrap(), Some(t));

    // Nothing is due before its time.
    let early = store
        .claim_notifications(t.minus(Duration::from_secs(1)), LEASE, 10)
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");

    // One per notifier: the oldest. The resolution waits behind its firing.
    let now = t.plus(Duration::from_secs(5));
    let claimed = store.claim_notifications(now, LEASE, 10).await.unwrap();
    let got: Vec<(&str, &str)> = claimed
        .iter()
        .map(|c| (c.notifier.as_str(), c.key.as_str()))
        .collect();
    assert_eq!(got, [("slack", "a-firing"), ("pager", "a-firing")]);
    assert_eq!(claimed[0].state, NotificationState::Pending);
    assert_eq!(
        claimed[0].due_at,
        now.plus(LEASE),
        "claimed until the lease ends"
    );
    // Claimed items are not claimed again while leased.
    assert!(store
        .claim_notifications(now, LEASE, 10)
        .await
        .unwrap()
        .is_empty());

    store
        .finish_notification(claimed[0].id, NotificationOutcome::Sent, now)
        .await
        .unwrap();
    let next = store.claim_notifications(now, LEASE, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].key, "a-resolved");

    // A sender that died: its lease ends and the item is due again.
    let after_lease = now.plus(LEASE).plus(Duration::from_secs(1));
    let again = store
        .claim_notifications(after_lease, LEASE, 10)
        .await
        .unwrap();
    let keys: Vec<&str> = again.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["a-firing", "a-resolved"], "{again:?}");
    assert_eq!(again[0].notifier, "pager");

    let listed = store
        .list_notifications(Some("slack".into()), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].state, NotificationState::Sent);
    assert_eq!(listed[1].attempts, 1);
    assert_eq!(listed[1].finished_at, Some(now));
    close(store).await;
}

async fn failures_retry_at_their_due_time_and_count_toward_health(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![
                note("slack", "k1", t),
                note("slack", "k2", t),
                note("hook", "k3", t),
            ],
            ..NotificationBatch::default()
        })
        .await
        .unwrap();
    let mut now = t;
    for attempt in 1..=3u32 {
        let claimed = store.claim_notifications(now, LEASE, 10).await.unwrap();
        let slack = claimed.iter().find(|c| c.notifier == "slack").unwrap();
        assert_eq!(slack.key, "k1", "the head keeps its place while it fails");
        assert_eq!(slack.attempts, attempt - 1);
        let retry_at = now.plus(Duration::from_secs(30));
        store
            .finish_notification(
                slack.id,
                NotificationOutcome::Retry {
                    due_at: retry_at,
                    error: format!("HTTP 503 (attempt {attempt})"),
                },
                now,
            )
            .await
            .unwrap();
        if let Some(hook) = claimed.iter().find(|c| c.notifier == "hook") {
            store
                .finish_notification(hook.id, NotificationOutcome::Sent, now)
                .await
                .unwrap();
        }
        // Not due again before the retry time.
        let early = store
            .claim_notifications(retry_at.minus(Duration::from_millis(1)), LEASE, 10)
            .await
            .unwrap();
        assert!(early.is_empty(), "{early:?}");
        now = retry_at;
    }
    let health = store.notifier_health().await.unwrap();
    let slack = health.iter().find(|h| h.notifier == "slack").unwrap();
    assert_eq!(slack.undelivered, 2);
    assert_eq!(slack.failed_attempts, 3);
    assert_eq!(slack.oldest_undelivered, Some(t));
    assert_eq!(slack.last_error.as_deref(), Some("HTTP 503 (attempt 3)"));
    assert_eq!(slack.last_sent_at, None);
    let hook = health.iter().find(|h| h.notifier == "hook").unwrap();
    assert_eq!(hook.undelivered, 0);
    assert_eq!(hook.failed_attempts, 0);
    assert_eq!(hook.last_sent_at, Some(t));

    // The notifier recovers: everything waiting goes out, the health is clean again.
    for _ in 0..2 {
        let claimed = store.claim_notifications(now, LEASE, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        store
            .finish_notification(claimed[0].id, NotificationOutcome::Sent, now)
            .await
            .unwrap();
    }
    let health = store.notifier_health().await.unwrap();
    let slack = health.iter().find(|h| h.notifier == "slack").unwrap();
    assert_eq!((slack.undelivered, slack.failed_attempts), (0, 0));
    assert_eq!(slack.last_sent_at, Some(now));
    assert_eq!(store.next_notification_due().await.unwrap(), None);

    // A permanent refusal is dead at once and recorded as such.
    store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![note("slack", "k4", now)],
            ..NotificationBatch::default()
        })
        .await
        .unwrap();
    let claimed = store.claim_notifications(now, LEASE, 10).await.unwrap();
    store
        .finish_notification(
            claimed[0].id,
            NotificationOutcome::Dead {
                error: "HTTP 404".into(),
            },
            now,
        )
        .await
        .unwrap();
    let health = store.notifier_health().await.unwrap();
    let slack = health.iter().find(|h| h.notifier == "slack").unwrap();
    assert_eq!(slack.last_dead_at, Some(now));
    assert_eq!(slack.last_error.as_deref(), Some("HTTP 404"));
    let listed = store.list_notifications(None, 1).await.unwrap();
    assert_eq!(listed[0].state, NotificationState::Dead);
    close(store).await;
}

async fn silences_are_created_listed_expired_and_their_expiry_announced_once(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store
        .create_silence(
            silence("sil_a", t, Duration::from_secs(3600)),
            vec![note("slack", "silence:sil_a", t)],
        )
        .await
        .unwrap();
    store
        .create_silence(silence("sil_b", t, Duration::from_secs(60)), vec![])
        .await
        .unwrap();
    let listed = store.list_silences(t).await.unwrap();
    assert_eq!(listed.len(), 2);
    let a = listed.iter().find(|s| s.id == "sil_a").unwrap();
    assert_eq!(a, &silence("sil_a", t, Duration::from_secs(3600)));
    assert!(a.is_active(t) && !a.is_active(a.ends_at));
    // The creation was announced in the same transaction.
    let outbox = store.list_notifications(None, 10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].key, "silence:sil_a");

    // Expiry by time: the list still shows it when asked from before its end; the pipeline
    // announces it once.
    let later = t.plus(Duration::from_secs(120));
    let live: Vec<String> = store
        .list_silences(later)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["sil_a"]);
    store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![note("slack", "silence:sil_b", later)],
            state: vec![],
            announced_expiries: vec!["sil_b".into()],
            incidents: vec![],
        })
        .await
        .unwrap();
    let b = store
        .list_silences(t)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == "sil_b")
        .unwrap();
    assert!(b.expiry_announced);

    // Expiry by hand ends it now, once.
    match store
        .expire_silence("sil_a", later, vec![note("slack", "silence:sil_a", later)])
        .await
        .unwrap()
    {
        SilenceExpiry::Expired(s) => {
            assert_eq!(s.ends_at, later);
            assert!(s.expiry_announced);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.expire_silence("sil_a", later, vec![]).await.unwrap(),
        SilenceExpiry::AlreadyEnded(_)
    ));
    assert_eq!(
        store
            .expire_silence("sil_nope", later, vec![])
            .await
            .unwrap(),
        SilenceExpiry::NotFound
    );
    assert!(store.list_silences(later).await.unwrap().is_empty());
    assert_eq!(store.list_notifications(None, 10).await.unwrap().len(), 3);

    // They survive a restart.
    close(store).await;
    let store = db.open().await;
    assert_eq!(store.list_silences(t).await.unwrap().len(), 2);
    close(store).await;
}

async fn a_store_that_cannot_commit_enqueues_nothing(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    let err = store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![note("slack", "k", t)],
            state: vec![("notifications".into(), "{}".into())],
            announced_expiries: vec![],
            incidents: vec![],
        })
        .await;
    assert!(err.is_err());
    assert!(store
        .create_silence(silence("sil_x", t, Duration::from_secs(60)), vec![])
        .await
        .is_err());
    store.inject_fault(None).await.unwrap();
    assert!(store.list_notifications(None, 10).await.unwrap().is_empty());
    assert_eq!(store.get_state("notifications").await.unwrap(), None);
    assert!(store.list_silences(t).await.unwrap().is_empty());
    close(store).await;
}

async fn ended_notifications_are_pruned_and_pending_ones_never(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store
        .enqueue_notifications(NotificationBatch {
            notifications: vec![
                note("slack", "old-sent", t),
                note("pager", "old-waiting", t),
            ],
            state: vec![],
            announced_expiries: vec![],
            incidents: vec![],
        })
        .await
        .unwrap();
    let claimed = store.claim_notifications(t, LEASE, 10).await.unwrap();
    let sent = claimed.iter().find(|c| c.key == "old-sent").unwrap();
    store
        .finish_notification(sent.id, NotificationOutcome::Sent, t)
        .await
        .unwrap();
    // A week later: the sent one goes, the one still waiting (its notifier is down) stays.
    store
        .prune_notifications(t.plus(Duration::from_secs(7 * 86_400)))
        .await
        .unwrap();
    let left: Vec<String> = store
        .list_notifications(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert_eq!(left, ["old-waiting"]);
    close(store).await;
}

conformance!(
    ended_notifications_are_pruned_and_pending_ones_never,
    notifications_are_enqueued_with_state_and_claimed_in_order_per_notifier,
    failures_retry_at_their_due_time_and_count_toward_health,
    silences_are_created_listed_expired_and_their_expiry_announced_once,
    a_store_that_cannot_commit_enqueues_nothing,
);
