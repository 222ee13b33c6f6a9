//! What a running drill looks for, read from the store (the IO around the pure decisions):
//! its expected alerts firing — in the alert book, in the recorded transitions (an alert
//! that resolved meanwhile), or among the failing notifiers — and the notifications of them
//! that the pipeline marked with the drill's id, queued and sent.

use std::collections::BTreeMap;

use intake_core::drill::{DrillScope, Scenario, DRILL_LABEL};
use intake_monitor::AlertState;
use intake_notify::{AlertStatus, Notice, NoticeKind};
use intake_store::{Drill, NotificationState, Store, StoreError};

use super::decide::{DrillAlert, DrillNotice, Observed};
use crate::duties::{book, notify};

/// How many recent alert transitions and notifications one look reads.
const RECENT: usize = 500;

/// One look at the store for `drill` (in `scope`). Notifications are read only when
/// `notices` (once an alert was seen: before, there is nothing to look for).
pub(crate) async fn observe(
    store: &dyn Store,
    drill: &Drill,
    scope: &DrillScope,
    notices: bool,
) -> Result<Observed, StoreError> {
    let mut seen = Observed {
        alert: firing(store, drill, scope).await?,
        ..Observed::default()
    };
    if notices || seen.alert.is_some() {
        let (routed, sent) = notified(store, drill).await?;
        seen.routed = routed;
        seen.sent = sent;
    }
    Ok(seen)
}

/// The earliest expected alert firing since the drill started.
async fn firing(
    store: &dyn Store,
    drill: &Drill,
    scope: &DrillScope,
) -> Result<Option<DrillAlert>, StoreError> {
    let mut found: Vec<DrillAlert> = Vec::new();
    for a in book::alert_book(store).await? {
        let labels = notify::decide::alert_labels(&a);
        if a.state == AlertState::Firing && scope.expects(&a.key.rule, &labels, a.active_since) {
            found.push(DrillAlert {
                rule: a.key.rule.clone(),
                labels,
                at: a.firing_since.unwrap_or(a.active_since),
            });
        }
    }
    for t in store.list_alert_transitions(None, RECENT).await? {
        if t.state != "firing" || t.at < drill.started_at {
            continue;
        }
        let labels: BTreeMap<String, String> = [
            ("tenant", &t.tenant),
            ("source", &t.source),
            ("channel", &t.channel),
            ("destination", &t.destination),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        if scope.expects(&t.rule, &labels, t.at) {
            found.push(DrillAlert {
                rule: t.rule,
                labels,
                at: t.at,
            });
        }
    }
    // `notifier_failing` is raised by the notification pipeline itself, outside the book.
    if drill.scenario == Scenario::NotifierDown {
        for (id, a) in notify::load_state(store).await?.notifier_alerts {
            let labels = BTreeMap::from([("notifier".to_string(), id)]);
            if scope.expects(notify::NOTIFIER_FAILING, &labels, a.since) {
                found.push(DrillAlert {
                    rule: notify::NOTIFIER_FAILING.into(),
                    labels,
                    at: a.since,
                });
            }
        }
    }
    Ok(found.into_iter().min_by_key(|a| a.at))
}

/// The earliest notification of the drill's expected alerts queued, and the earliest sent,
/// to a notifier that counts (for `notifier-down`: any but the one it makes fail).
async fn notified(
    store: &dyn Store,
    drill: &Drill,
) -> Result<(Option<DrillNotice>, Option<DrillNotice>), StoreError> {
    let expected = drill.scenario.expected_rules();
    let mut routed: Option<DrillNotice> = None;
    let mut sent: Option<DrillNotice> = None;
    for item in store.list_notifications(None, RECENT).await? {
        if item.created_at < drill.started_at {
            continue;
        }
        if drill.scenario == Scenario::NotifierDown && item.notifier == drill.target {
            continue;
        }
        let Ok(notice) = serde_json::from_str::<Notice>(&item.notice) else {
            continue;
        };
        let firing = matches!(
            notice.kind,
            NoticeKind::Alert(AlertStatus::Firing | AlertStatus::Repeat)
        );
        let ours = notice.drill.as_deref() == Some(drill.id.as_str())
            || notice.labels.get(DRILL_LABEL) == Some(&drill.id);
        let expected_rule = notice
            .rule
            .as_deref()
            .is_some_and(|r| expected.contains(&r));
        if !(firing && ours && expected_rule) {
            continue;
        }
        let at = |t| DrillNotice {
            notifier: item.notifier.clone(),
            key: item.key.clone(),
            at: t,
        };
        if routed.as_ref().is_none_or(|r| item.created_at < r.at) {
            routed = Some(at(item.created_at));
        }
        if item.state == NotificationState::Sent {
            let t = item.finished_at.unwrap_or(item.created_at);
            if sent.as_ref().is_none_or(|s| t < s.at) {
                sent = Some(at(t));
            }
        }
    }
    Ok((routed, sent))
}
