//! The notification pipeline: from the alert book to people.
//!
//! It runs inside the monitor duty (see [`super::monitor`]), right after each evaluation,
//! and is *level-triggered*: it compares what fires now (the stored alert book, plus the
//! `notifier_failing` alerts it raises itself) with what it last notified (its own stored
//! state, one entry per group) and sends the difference. Nothing depends on having seen a
//! transition, so a restart, a crash between two writes or a fail-over to another node
//! neither re-pages (the group state says it was sent) nor forgets (the book says it fires).
//!
//! * **Grouping.** Alerts of one rule and one tenant form one group (`notifier_failing`: one
//!   group per notifier): five quiet channels of a tenant are one notification.
//! * **Firing** when a group gains a member (a new alert, or one whose silence ended);
//!   **repeat** every `monitor.repeat_interval` while it fires; **resolved** when every
//!   member has resolved. A member that resolves while others still fire is announced in a
//!   firing update that lists it as resolved, so PagerDuty's incident stays open.
//! * **Silences** mute: a silenced alert leaves its group without a resolution (it did not
//!   resolve) and rejoins it, notified as firing, when the silence ends. `watchdog` and
//!   `canary_failed` are never muted.
//! * **Routing.** `[[rules]] notifiers` of the most specific override (source, then tenant,
//!   then rule-wide) when set; else every notifier whose `severities` accepts the group's
//!   severity (all when empty). A resolution goes where its firing went. `notifier_failing`
//!   of a notifier never goes to that notifier.
//!
//! * **The watchdog alert.** After every evaluation that succeeded, the always-firing
//!   `watchdog` alert goes straight to every `alertmanager` notifier (not through the outbox:
//!   a heartbeat that waits is no heartbeat), with an `endsAt` two intervals ahead, so that a
//!   dead-man's switch routed in Alertmanager alarms when intake stops sending it. Its
//!   failures count toward that notifier's `notifier_failing`.
//!
//! * **Incidents.** Right after the alert decision, the same evaluation decides what
//!   incidents need ([`super::incidents::pipeline`]): critical alerts that declare one, alerts
//!   joining and resolving in open ones, tenants told when a hold ends. Those writes join the
//!   same batch.
//!
//! The decision itself is a pure function, `decide::decide`. Everything one evaluation
//! decides — the notifications, the new group state and the incidents' changes — is
//! committed in one transaction ([`Store::enqueue_notifications`]); a separate sender loop
//! ([`send`]) delivers the outbox, with retries, one notification per notifier at a time, in
//! order: to on-call's notifiers and to tenants' contacts
//! ([`super::incidents::contacts`]).
//!
//! [`Store::enqueue_notifications`]: intake_store::Store::enqueue_notifications

pub mod decide;
pub mod send;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_core::config::{Config, NotifierConfig, NotifierKind, RuleOverride, Severity};
use intake_core::{IncidentId, SharedClock, Timestamp};
use intake_notify::{LinkBuilder, Notice, Notifier, NotifyContext, WatchdogPing};
use intake_store::{
    AlertTransitionRecord, IncidentWrite, NotificationBatch, NotifierHealth, Store, StoreError,
};
use tokio::sync::Notify;

use super::incidents::{self, notices::Notices};
use super::{book, drill};
use crate::state::DrillFaults;
use decide::{decide, Decision, Routing};
pub use decide::{
    GroupState, Member, NotifierAlert, NotifyState, NOTIFIER_FAILING, UNSILENCEABLE,
    WATCHDOG_NOTIFIER,
};
use send::Watchdog;
pub use send::{backoff, PingHealth, FIRST_BACKOFF, MAX_ATTEMPTS, MAX_BACKOFF, NOTIFICATIONS};

/// The state document holding what was notified, per group, and the `notifier_failing`
/// alerts.
pub const NOTIFY_STATE: &str = "notifications";

/// Consecutive failed attempts after which a notifier is failing.
pub const FAILING_AFTER_ATTEMPTS: u32 = 3;
/// Age of the oldest undelivered notification after which its notifier is failing.
pub const FAILING_AFTER_AGE: Duration = Duration::from_secs(5 * 60);

/// Reads the pipeline's state (empty before the first evaluation).
pub(crate) async fn load_state(store: &dyn Store) -> Result<NotifyState, StoreError> {
    match store.get_state(NOTIFY_STATE).await? {
        None => Ok(NotifyState::default()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("the notification state is unreadable: {e}"))),
    }
}

/// Builds every configured notifier. A notifier that cannot be built is logged and left
/// out; [`crate::Server::check`] refuses such configurations before start.
pub(crate) fn build_notifiers(
    config: &Config,
    clock: SharedClock,
) -> Vec<(NotifierConfig, Arc<dyn Notifier>)> {
    let ctx = NotifyContext::new(clock);
    config
        .notifiers
        .iter()
        .filter_map(|n| match intake_notify::build(n, &ctx) {
            Ok(b) => Some((n.clone(), Arc::from(b))),
            Err(e) => {
                tracing::error!(error = %e, "notifier cannot be built; it receives nothing");
                None
            }
        })
        .collect()
}

/// The links every notice carries, from `server.public_url` (validated at start).
pub(crate) fn link_builder(config: &Config) -> LinkBuilder {
    LinkBuilder::new(config.server.public_url.as_deref()).unwrap_or_default()
}

/// Every sender of the outbox by notifier id: on-call's notifiers and tenants' contacts.
pub(crate) type Senders = Arc<HashMap<String, Arc<dyn Notifier>>>;

/// The notifiers, the links and the sender's wake-up, built once by the monitor duty, with
/// the handles the pipeline reads and commits through.
pub(crate) struct Pipeline {
    pub notifiers: Arc<Vec<(NotifierConfig, Arc<dyn Notifier>)>>,
    /// What the sender loop sends through: the notifiers and the contacts.
    pub senders: Senders,
    pub links: LinkBuilder,
    pub wake: Arc<Notify>,
    watchdog: Option<Watchdog>,
    /// The watchdog alert's recent failures, per `alertmanager` notifier.
    alertmanager_health: BTreeMap<String, PingHealth>,
    config: Arc<Config>,
    store: Arc<dyn Store>,
    /// The fire-drill faults this node applies (`notifier-down` fails the watchdog alert
    /// too).
    faults: Arc<DrillFaults>,
    clock: SharedClock,
}

impl Pipeline {
    /// Builds the notifiers, the contacts' senders and the watchdog of `config`; `wake`
    /// wakes the sender loop (the admin API shares it, so an incident's notices leave at once).
    pub(crate) fn new(
        config: Arc<Config>,
        clock: SharedClock,
        store: Arc<dyn Store>,
        faults: Arc<DrillFaults>,
        wake: Arc<Notify>,
    ) -> Self {
        let notifiers = Arc::new(build_notifiers(&config, clock.clone()));
        let ctx = NotifyContext::new(clock.clone());
        let mut senders: HashMap<String, Arc<dyn Notifier>> = notifiers
            .iter()
            .map(|(c, n)| (c.id.clone(), n.clone()))
            .collect();
        senders.extend(incidents::contacts::build(&config, &ctx));
        let watchdog = config.monitor.watchdog_url.as_deref().and_then(|url| {
            match WatchdogPing::new(WATCHDOG_NOTIFIER, url, Default::default(), &ctx) {
                Ok(ping) => Some(Watchdog {
                    ping,
                    every: config.monitor.watchdog_every(),
                    next: clock.now(),
                    health: Arc::new(Mutex::new(PingHealth::default())),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "monitor.watchdog_url is unusable; no heartbeat is sent");
                    None
                }
            }
        });
        Pipeline {
            notifiers,
            senders: Arc::new(senders),
            links: link_builder(&config),
            wake,
            watchdog,
            alertmanager_health: BTreeMap::new(),
            config,
            store,
            faults,
            clock,
        }
    }

    /// One evaluation: reads what fires and what was notified, decides what to notify, and
    /// commits it with the new state.
    pub(crate) async fn evaluate(&self, now: Timestamp) -> Result<(), StoreError> {
        let mut state = load_state(&*self.store).await?;
        let book = book::alert_book(&*self.store).await?;
        let silences = self
            .store
            .list_silences(now.minus(Duration::from_secs(7 * 86_400)))
            .await?;
        let health = self.store.notifier_health().await?;
        let drills = drill::scopes(&*self.store, &self.config, now).await?;
        let transitions = self.update_notifier_alerts(&mut state, &health, now);
        let routing = Routing {
            notifiers: &self.notifiers,
            rules: &self.config.rules,
            links: &self.links,
            repeat: self.config.monitor.repeat_interval.0,
        };
        let decision = decide(state, &book, &silences, &drills, &routing, now);
        let incidents = self
            .store
            .list_incidents(incidents::pipeline_filter(now))
            .await?;
        let notices = Notices {
            config: &self.config,
            links: &self.links,
            oncall: &self.notifiers,
            now,
        };
        let writes = incidents::pipeline::decide(
            &book,
            &silences,
            &drills,
            &incidents,
            &notices,
            &mut || IncidentId::generate(now).to_string(),
        );
        self.commit(decision, transitions, writes, now).await
    }

    /// Records the `notifier_failing` transitions and enqueues the decided notices with the
    /// new state, in one transaction; wakes the sender if there is anything to send.
    async fn commit(
        &self,
        decision: Decision,
        transitions: Vec<AlertTransitionRecord>,
        incidents: Vec<IncidentWrite>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut batch = NotificationBatch::default();
        for (notice, route) in &decision.notices {
            batch
                .notifications
                .extend(send::outbox_items(notice, route, now));
        }
        for w in &incidents {
            if w.expected_version.is_none() {
                tracing::warn!(incident = %w.incident.id, tenants = ?w.incident.tenants, by = %w.incident.declared_by, "incident declared by a critical alert");
            }
        }
        let incident_notices = incidents.iter().any(|w| !w.notices.is_empty());
        batch.incidents = incidents;
        batch.announced_expiries = decision.announced_expiries;
        let json = serde_json::to_string(&decision.state).map_err(|e| {
            StoreError::Corrupt(format!("cannot encode the notification state: {e}"))
        })?;
        batch.state.push((NOTIFY_STATE.to_string(), json));
        self.store.record_alert_transitions(transitions).await?;
        let any = !batch.notifications.is_empty() || incident_notices;
        self.store.enqueue_notifications(batch).await?;
        if any {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Raises, updates and resolves `notifier_failing` from the outbox numbers and the
    /// watchdog's pings; returns the transitions to record.
    fn update_notifier_alerts(
        &self,
        state: &mut NotifyState,
        health: &[NotifierHealth],
        now: Timestamp,
    ) -> Vec<AlertTransitionRecord> {
        let mut failing = failing_notifiers(health, now);
        if let Some(w) = &self.watchdog {
            let h = w.health.lock().map(|h| h.clone()).unwrap_or_default();
            if let Some(f) = watchdog_failing(&h, now) {
                failing.insert(WATCHDOG_NOTIFIER.to_string(), f);
            }
        }
        for (id, h) in &self.alertmanager_health {
            if failing.contains_key(id) {
                continue;
            }
            if let Some((value, reason)) = watchdog_failing(h, now) {
                let reason = format!(
                    "notifier `{id}`: the watchdog alert {}",
                    reason.trim_start_matches("the watchdog ping to monitor.watchdog_url ")
                );
                failing.insert(id.clone(), (value, reason));
            }
        }
        let severity = failing_severity(&self.config.rules);
        apply_failing(state, failing, severity, now)
    }

    /// Sends the always-firing `watchdog` alert to every `alertmanager` notifier, valid until
    /// two evaluations from now (`next` is the next one), and records each one's failures.
    pub(crate) async fn send_watchdog_alerts(&mut self, now: Timestamp, next: Timestamp) {
        let notice = Notice::watchdog(now, next, &self.links);
        let sends = self
            .notifiers
            .iter()
            .filter(|(c, _)| c.kind == NotifierKind::Alertmanager)
            .map(|(c, n)| {
                let notice = &notice;
                let drill = self.faults.find(
                    intake_core::drill::Scenario::NotifierDown,
                    &c.id,
                    self.clock.now(),
                );
                async move {
                    let result = match drill {
                        Some(f) => Err(send::drill_failure(&f.drill, &c.id)),
                        None => n.send(notice).await,
                    };
                    (c.id.clone(), result)
                }
            });
        for (id, result) in futures::future::join_all(sends).await {
            let outcome = if result.is_ok() { "sent" } else { "retry" };
            metrics::counter!(send::NOTIFICATIONS, "notifier" => id.clone(), "outcome" => outcome)
                .increment(1);
            let h = self.alertmanager_health.entry(id.clone()).or_default();
            match result {
                Ok(()) => *h = PingHealth::default(),
                Err(e) => {
                    tracing::warn!(notifier = %id, error = %e, "the watchdog alert could not be sent to Alertmanager");
                    h.failures += 1;
                    h.failing_since.get_or_insert(now);
                    h.last_error = Some(e.to_string());
                }
            }
        }
    }

    /// Pings the dead-man's switch if its time has come. `alive` says whether the last
    /// evaluation succeeded recently: a monitor that cannot evaluate sends no heartbeat, so
    /// the switch alarms.
    pub(crate) async fn ping_watchdog(&mut self, now: Timestamp, alive: bool) {
        if let Some(w) = self.watchdog.as_mut() {
            w.ping(now, alive, &self.links).await;
        }
    }

    /// The next instant the watchdog must ping, if there is one.
    pub(crate) fn watchdog_due(&self) -> Option<Timestamp> {
        self.watchdog.as_ref().map(|w| w.next)
    }
}

/// The severity of `notifier_failing`: its rule-wide override, else critical.
fn failing_severity(rules: &[RuleOverride]) -> Severity {
    rules
        .iter()
        .filter(|o| o.rule == NOTIFIER_FAILING && o.tenant.is_none() && o.source.is_none())
        .find_map(|o| o.severity)
        .unwrap_or(Severity::Critical)
}

/// The notifiers failing by their outbox numbers, with their value and reason: some wait
/// after several failed attempts or for too long, or one was refused for good.
fn failing_notifiers(health: &[NotifierHealth], now: Timestamp) -> BTreeMap<String, (f64, String)> {
    let mut failing = BTreeMap::new();
    for h in health {
        let stale = h
            .oldest_undelivered
            .is_some_and(|t| now.since(t) >= FAILING_AFTER_AGE);
        let refused = h
            .last_dead_at
            .is_some_and(|d| h.last_sent_at.is_none_or(|s| d > s));
        if (h.undelivered > 0 && (h.failed_attempts >= FAILING_AFTER_ATTEMPTS || stale)) || refused
        {
            let oldest = h
                .oldest_undelivered
                .map(|t| format!(", the oldest waiting for {}", human(now.since(t))))
                .unwrap_or_default();
            let reason = format!(
                "notifier `{}`: {} notification(s) undelivered{oldest}, {} failed attempt(s) in a row{}; last error: {}",
                h.notifier,
                h.undelivered,
                h.failed_attempts,
                if refused { ", and one was refused for good" } else { "" },
                h.last_error.as_deref().unwrap_or("none recorded"),
            );
            failing.insert(h.notifier.clone(), (f64::from(h.failed_attempts), reason));
        }
    }
    failing
}

/// Whether the watchdog's pings fail often or long enough to count as a failing notifier.
fn watchdog_failing(h: &PingHealth, now: Timestamp) -> Option<(f64, String)> {
    let stale = h
        .failing_since
        .is_some_and(|t| now.since(t) >= FAILING_AFTER_AGE);
    if h.failures >= FAILING_AFTER_ATTEMPTS || (h.failures > 0 && stale) {
        Some((
            f64::from(h.failures),
            format!(
                "the watchdog ping to monitor.watchdog_url failed {} time(s) in a row; last error: {}",
                h.failures,
                h.last_error.as_deref().unwrap_or("none recorded")
            ),
        ))
    } else {
        None
    }
}

/// Brings `state.notifier_alerts` to `failing`: raises the new ones, updates the others,
/// resolves those no longer failing; returns the transitions.
fn apply_failing(
    state: &mut NotifyState,
    failing: BTreeMap<String, (f64, String)>,
    severity: Severity,
    now: Timestamp,
) -> Vec<AlertTransitionRecord> {
    let record = |state: &str, id: &str, value: f64, reason: &str| AlertTransitionRecord {
        at: now,
        rule: NOTIFIER_FAILING.into(),
        tenant: String::new(),
        source: String::new(),
        channel: String::new(),
        destination: String::new(),
        severity: severity.as_str().into(),
        state: state.into(),
        value,
        reason: if reason.contains(id) {
            reason.to_string()
        } else {
            format!("notifier `{id}`: {reason}")
        },
    };
    let mut transitions = Vec::new();
    let gone: Vec<String> = state
        .notifier_alerts
        .keys()
        .filter(|k| !failing.contains_key(*k))
        .cloned()
        .collect();
    for id in gone {
        if let Some(a) = state.notifier_alerts.remove(&id) {
            tracing::info!(notifier = %id, "notifier recovered");
            transitions.push(record("resolved", &id, a.value, "delivering again"));
        }
    }
    for (id, (value, reason)) in failing {
        match state.notifier_alerts.get_mut(&id) {
            Some(a) => {
                a.value = value;
                a.reason = reason;
                a.severity = severity;
            }
            None => {
                tracing::warn!(notifier = %id, "notifier failing: {reason}");
                transitions.push(record("firing", &id, value, &reason));
                state.notifier_alerts.insert(
                    id,
                    NotifierAlert {
                        since: now,
                        reason,
                        value,
                        severity,
                    },
                );
            }
        }
    }
    transitions
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn health(undelivered: u64, attempts: u32, waiting_secs: u64) -> NotifierHealth {
        NotifierHealth {
            notifier: "slack".into(),
            undelivered,
            oldest_undelivered: (undelivered > 0)
                .then(|| NOW.minus(Duration::from_secs(waiting_secs))),
            failed_attempts: attempts,
            last_error: Some("HTTP 503".into()),
            last_sent_at: Some(NOW.minus(Duration::from_secs(3600))),
            last_dead_at: None,
        }
    }

    #[test]
    fn a_notifier_fails_after_attempts_or_age_or_one_refusal() {
        let cases = [
            ("nothing waits", health(0, 0, 0), false),
            ("one failed attempt, fresh", health(2, 1, 10), false),
            ("three failed attempts", health(2, 3, 10), true),
            ("waiting five minutes", health(1, 1, 300), true),
            (
                "one refused for good since the last send",
                NotifierHealth {
                    last_dead_at: Some(NOW),
                    ..health(0, 0, 0)
                },
                true,
            ),
        ];
        for (name, h, want) in cases {
            let got = failing_notifiers(&[h], NOW).contains_key("slack");
            assert_eq!(got, want, "{name}");
        }
        let ping = |failures, since_secs| PingHealth {
            failures,
            failing_since: Some(NOW.minus(Duration::from_secs(since_secs))),
            last_error: Some("timed out".into()),
        };
        assert!(watchdog_failing(&PingHealth::default(), NOW).is_none());
        assert!(watchdog_failing(&ping(1, 10), NOW).is_none());
        assert!(watchdog_failing(&ping(3, 10), NOW).is_some());
        assert!(watchdog_failing(&ping(1, 300), NOW).is_some());
    }

    #[test]
    fn notifier_failing_fires_once_updates_then_resolves() {
        let mut state = NotifyState::default();
        let failing = failing_notifiers(&[health(2, 3, 10)], NOW);
        let t = apply_failing(&mut state, failing.clone(), Severity::Critical, NOW);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].state.as_str(), t[0].rule.as_str()),
            ("firing", NOTIFIER_FAILING)
        );
        // Still failing: updated in place, no new transition, `since` kept.
        let later = NOW.plus(Duration::from_secs(60));
        let t = apply_failing(&mut state, failing, Severity::Warning, later);
        assert!(t.is_empty());
        assert_eq!(state.notifier_alerts["slack"].since, NOW);
        assert_eq!(state.notifier_alerts["slack"].severity, Severity::Warning);
        // Delivering again: resolved.
        let t = apply_failing(&mut state, BTreeMap::new(), Severity::Warning, later);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].state, "resolved");
        assert!(state.notifier_alerts.is_empty());
    }
}
