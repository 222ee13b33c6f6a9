//! The notification IO: the outbox sender (one notification per notifier at a time, in
//! order, retried with back-off) and the watchdog's ping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_core::drill::Scenario;
use intake_core::{SharedClock, Timestamp};
use intake_notify::{LinkBuilder, Notice, Notifier, NotifyError, WatchdogPing};
use intake_store::{NewNotification, NotificationOutcome, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::decide::WATCHDOG_NOTIFIER;
use crate::state::DrillFaults;

/// Attempts after which a notification is given up. With the back-off capped at
/// [`MAX_BACKOFF`] this is more than a day: a notifier that is down delays, it does not drop.
pub const MAX_ATTEMPTS: u32 = 400;
/// The first retry delay; it doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest retry delay (unless the receiver asks for longer with `Retry-After`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// How long a claimed notification stays leased to the sender trying it.
const SEND_LEASE: Duration = Duration::from_secs(60);
/// The sender looks at the outbox at least this often (on the injected clock).
const SENDER_POLL: Duration = Duration::from_secs(5);

/// The metric counting notification attempts by `notifier` and `outcome`.
pub const NOTIFICATIONS: &str = "intake_notifications_total";

/// Outbox items of one notice, one per notifier.
pub(crate) fn outbox_items(
    notice: &Notice,
    route: &[String],
    now: Timestamp,
) -> Vec<NewNotification> {
    let Ok(json) = serde_json::to_string(notice) else {
        tracing::error!(key = %notice.key, "a notice could not be encoded; it is not sent");
        return Vec::new();
    };
    route
        .iter()
        .map(|id| NewNotification {
            notifier: id.clone(),
            key: notice.key.clone(),
            notice: json.clone(),
            created_at: now,
            incident: None,
            tenant: None,
        })
        .collect()
}

/// The retry delay after `attempts` failed attempts, or longer if the receiver asked.
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    exp.min(MAX_BACKOFF)
        .max(retry_after.unwrap_or(Duration::ZERO))
}

/// The sender: delivers the outbox through the notifiers, one notification per notifier at a
/// time (in order), retrying failures with back-off. Runs beside the monitor evaluation.
pub(crate) async fn send_loop(
    clock: SharedClock,
    store: Arc<dyn Store>,
    by_id: Arc<HashMap<String, Arc<dyn Notifier>>>,
    wake: Arc<Notify>,
    faults: Arc<DrillFaults>,
    stop: CancellationToken,
) {
    loop {
        let now = clock.now();
        let claimed = match store.claim_notifications(now, SEND_LEASE, 64).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification outbox");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            let next = match store.next_notification_due().await {
                Ok(Some(t)) => t.min(now.plus(SENDER_POLL)),
                _ => now.plus(SENDER_POLL),
            };
            tokio::select! {
                _ = clock.sleep_until(next.max(now.plus(Duration::from_millis(1)))) => {}
                _ = wake.notified() => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let sends = claimed.into_iter().map(|item| {
            let clock = clock.clone();
            let store = store.clone();
            let notifier = by_id.get(&item.notifier).cloned();
            // A `notifier-down` drill fails the send here, as the notifier's own failure
            // would: retried with back-off, so the notice is delayed, never lost.
            let drill = faults.find(Scenario::NotifierDown, &item.notifier, clock.now());
            async move {
                let outcome = match (notifier, serde_json::from_str::<Notice>(&item.notice)) {
                    (None, _) => NotificationOutcome::Dead {
                        error: format!(
                            "notifier `{}` is no longer configured",
                            item.notifier
                        ),
                    },
                    (_, Err(e)) => NotificationOutcome::Dead {
                        error: format!("the stored notice is unreadable: {e}"),
                    },
                    (Some(_), Ok(_)) if drill.is_some() => {
                        let drill = drill.map(|f| f.drill).unwrap_or_default();
                        let e = drill_failure(&drill, &item.notifier);
                        failed(&item.notifier, item.attempts, &e, clock.now())
                    }
                    (Some(n), Ok(notice)) => match n.send(&notice).await {
                        Ok(()) => NotificationOutcome::Sent,
                        Err(e) => failed(&item.notifier, item.attempts, &e, clock.now()),
                    },
                };
                let label = match &outcome {
                    NotificationOutcome::Sent => "sent",
                    NotificationOutcome::Retry { .. } => "retry",
                    NotificationOutcome::Dead { .. } => "dead",
                };
                metrics::counter!(NOTIFICATIONS, "notifier" => item.notifier.clone(), "outcome" => label)
                    .increment(1);
                if let Err(e) = store
                    .finish_notification(item.id, outcome, clock.now())
                    .await
                {
                    // The lease ends and the notification is sent again: at least once.
                    tracing::warn!(error = %e, "cannot record a notification attempt");
                }
            }
        });
        tokio::select! {
            _ = futures::future::join_all(sends) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The failure a `notifier-down` drill makes of a send: retryable, naming the drill.
pub(crate) fn drill_failure(drill: &str, notifier: &str) -> NotifyError {
    NotifyError::retryable(format!(
        "fire drill {drill}: notifier-down on `{notifier}` (nothing was sent; retried once the drill heals)"
    ))
}

fn failed(notifier: &str, attempts: u32, e: &NotifyError, now: Timestamp) -> NotificationOutcome {
    let attempts = attempts + 1;
    if !e.is_retryable() {
        tracing::error!(notifier, error = %e, "the notifier refused a notification; it is not retried");
        NotificationOutcome::Dead {
            error: e.to_string(),
        }
    } else if attempts >= MAX_ATTEMPTS {
        tracing::error!(notifier, error = %e, attempts, "giving up a notification");
        NotificationOutcome::Dead {
            error: format!("{e} (gave up after {attempts} attempts)"),
        }
    } else {
        tracing::warn!(notifier, error = %e, attempts, "notification failed; will retry");
        NotificationOutcome::Retry {
            due_at: now.plus(backoff(attempts, e.retry_after())),
            error: e.to_string(),
        }
    }
}

/// The watchdog's ping and its recent failures (they count toward `notifier_failing`).
pub(crate) struct Watchdog {
    pub ping: WatchdogPing,
    pub every: Duration,
    pub next: Timestamp,
    pub health: Arc<Mutex<PingHealth>>,
}

/// Consecutive watchdog ping failures.
#[derive(Debug, Default, Clone)]
pub struct PingHealth {
    /// Failures in a row.
    pub failures: u32,
    /// When the first of them happened.
    pub failing_since: Option<Timestamp>,
    /// The last error.
    pub last_error: Option<String>,
}

impl Watchdog {
    /// Pings the dead-man's switch if its time has come. `alive` says whether the last
    /// evaluation succeeded recently: a monitor that cannot evaluate sends no heartbeat, so
    /// the switch alarms.
    pub(crate) async fn ping(&mut self, now: Timestamp, alive: bool, links: &LinkBuilder) {
        if now < self.next {
            return;
        }
        self.next = now.plus(self.every);
        if !alive {
            tracing::error!("the monitor has not evaluated recently; withholding the watchdog heartbeat so the dead-man's switch alarms");
            return;
        }
        let notice = Notice::watchdog(now, self.next, links);
        let result = self.ping.send(&notice).await;
        let outcome = match &result {
            Ok(()) => "sent",
            Err(_) => "retry",
        };
        metrics::counter!(NOTIFICATIONS, "notifier" => WATCHDOG_NOTIFIER, "outcome" => outcome)
            .increment(1);
        if let Ok(mut h) = self.health.lock() {
            match result {
                Ok(()) => *h = PingHealth::default(),
                Err(e) => {
                    tracing::warn!(error = %e, "the watchdog ping failed");
                    h.failures += 1;
                    h.failing_since.get_or_insert(now);
                    h.last_error = Some(e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_honours_retry_after() {
        assert_eq!(backoff(1, None), Duration::from_secs(5));
        assert_eq!(backoff(2, None), Duration::from_secs(10));
        assert_eq!(backoff(4, None), Duration::from_secs(40));
        assert_eq!(backoff(30, None), MAX_BACKOFF);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
    }
}
