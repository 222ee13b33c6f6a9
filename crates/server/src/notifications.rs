//! The notification pipeline: from the alert book to people.
//!
//! It runs inside the monitor duty (see [`crate::monitoring`]), right after each evaluation,
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
//! Everything one evaluation decides — the notifications and the new group state — is
//! committed in one transaction ([`Store::enqueue_notifications`]); a separate sender loop
//! delivers the outbox, with retries, one notification per notifier at a time, in order.
//!
//! [`Store::enqueue_notifications`]: intake_store::Store::enqueue_notifications

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_core::config::{NotifierConfig, Severity};
use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, AlertState};
use intake_notify::{
    AlertItem, AlertStatus, LinkBuilder, Notice, Notifier, NotifyContext, NotifyError, SilenceInfo,
    SilenceStatus, WatchdogPing,
};
use intake_store::{
    AlertTransitionRecord, NewNotification, NotificationBatch, NotificationOutcome, Silence,
    StoreError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runtime::AppState;

/// The state document holding what was notified, per group, and the `notifier_failing`
/// alerts.
pub const NOTIFY_STATE: &str = "notifications";

/// Rules no silence can mute: the watchdog proves alerting is alive, and a failed canary is
/// the one proof that the whole path works end to end.
pub const UNSILENCEABLE: [&str; 2] = ["watchdog", "canary_failed"];

/// The rule raised when a notifier keeps failing.
pub const NOTIFIER_FAILING: &str = "notifier_failing";

/// The pseudo-notifier id under which watchdog ping failures count.
pub const WATCHDOG_NOTIFIER: &str = "watchdog";

/// Consecutive failed attempts after which a notifier is failing.
pub const FAILING_AFTER_ATTEMPTS: u32 = 3;
/// Age of the oldest undelivered notification after which its notifier is failing.
pub const FAILING_AFTER_AGE: Duration = Duration::from_secs(5 * 60);
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

/// What was notified for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// The rule.
    pub rule: String,
    /// The group's labels (`tenant`, or `notifier`).
    pub labels: BTreeMap<String, String>,
    /// The severity last notified.
    pub severity: Severity,
    /// The members last notified as firing, by their labels' key.
    pub members: BTreeMap<String, Member>,
    /// The status last sent.
    pub last_status: AlertStatus,
    /// When it was sent.
    pub last_sent_at: Timestamp,
    /// Where it went (a resolution goes to the same notifiers).
    pub notifiers: Vec<String>,
}

/// One alert of a group, as last notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// All its labels.
    pub labels: BTreeMap<String, String>,
    /// When its condition started.
    pub started_at: Timestamp,
    /// Its value.
    pub value: f64,
    /// Its reason.
    pub reason: String,
}

/// A `notifier_failing` alert: the pipeline raises and resolves these itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifierAlert {
    /// Since when the notifier is failing.
    pub since: Timestamp,
    /// The numbers: how many wait, since when, after how many attempts, the last error.
    pub reason: String,
    /// Failed attempts of the oldest waiting notification.
    pub value: f64,
    /// The severity in force.
    pub severity: Severity,
}

/// The pipeline's stored state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotifyState {
    /// By group key.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupState>,
    /// Failing notifiers, by id.
    #[serde(default)]
    pub notifier_alerts: BTreeMap<String, NotifierAlert>,
}

/// Reads the pipeline's state (empty before the first evaluation).
pub(crate) async fn load_state(app: &AppState) -> Result<NotifyState, StoreError> {
    match app.store.get_state(NOTIFY_STATE).await? {
        None => Ok(NotifyState::default()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("the notification state is unreadable: {e}"))),
    }
}

/// An alert that may be notified: from the book, or a `notifier_failing` alert.
#[derive(Debug, Clone)]
struct Candidate {
    rule: String,
    labels: BTreeMap<String, String>,
    severity: Severity,
    started_at: Timestamp,
    value: f64,
    reason: String,
}

/// A group that fires now: its rule, its labels and its unmuted members.
type Desired = (String, BTreeMap<String, String>, Vec<Candidate>);

/// The labels of a monitor alert, without the empty ones.
pub(crate) fn alert_labels(a: &ActiveAlert) -> BTreeMap<String, String> {
    let l = &a.key.labels;
    [
        ("tenant", &l.tenant),
        ("source", &l.source),
        ("channel", &l.channel),
        ("destination", &l.destination),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect()
}

/// The silence muting an alert of `rule` with `labels` at `now`, if any. A silence matches
/// when every one of its matchers equals the alert's label (`rule` included); `watchdog` and
/// `canary_failed` are never muted, whatever a silence says.
pub(crate) fn silenced_by<'a>(
    rule: &str,
    labels: &BTreeMap<String, String>,
    silences: &'a [Silence],
    now: Timestamp,
) -> Option<&'a Silence> {
    if UNSILENCEABLE.contains(&rule) {
        return None;
    }
    silences.iter().find(|s| {
        s.is_active(now)
            && !s.matchers.is_empty()
            && s.matchers.iter().all(|(k, v)| match k.as_str() {
                "rule" => v == rule,
                _ => labels.get(k) == Some(v),
            })
    })
}

fn group_labels(rule: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut g = BTreeMap::new();
    if rule == NOTIFIER_FAILING {
        if let Some(n) = labels.get("notifier") {
            g.insert("notifier".to_string(), n.clone());
        }
    } else if let Some(t) = labels.get("tenant") {
        g.insert("tenant".to_string(), t.clone());
    }
    g
}

fn member_key(labels: &BTreeMap<String, String>) -> String {
    intake_notify::group_key("", labels)
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Critical => 3,
        Severity::Warning => 2,
        Severity::Info => 1,
    }
}

/// The notifiers, the links and the sender's wake-up: what the monitor duty builds once.
pub(crate) struct Pipeline {
    pub notifiers: Arc<Vec<(NotifierConfig, Arc<dyn Notifier>)>>,
    pub links: LinkBuilder,
    pub wake: Arc<Notify>,
    pub watchdog: Option<Watchdog>,
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

/// Builds every configured notifier. A notifier that cannot be built is logged and left
/// out; [`crate::Server::check`] refuses such configurations before start.
pub(crate) fn build_notifiers(app: &AppState) -> Vec<(NotifierConfig, Arc<dyn Notifier>)> {
    let ctx = NotifyContext::new(app.clock.clone());
    app.config
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
pub(crate) fn link_builder(app: &AppState) -> LinkBuilder {
    LinkBuilder::new(app.config.server.public_url.as_deref()).unwrap_or_default()
}

impl Pipeline {
    pub(crate) fn new(app: &AppState) -> Self {
        let notifiers = Arc::new(build_notifiers(app));
        let ctx = NotifyContext::new(app.clock.clone());
        let watchdog = app.config.monitor.watchdog_url.as_deref().and_then(|url| {
            match WatchdogPing::new(WATCHDOG_NOTIFIER, url, Default::default(), &ctx) {
                Ok(ping) => Some(Watchdog {
                    ping,
                    every: app.config.monitor.watchdog_every(),
                    next: app.clock.now(),
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
            links: link_builder(app),
            wake: Arc::new(Notify::new()),
            watchdog,
        }
    }

    /// One evaluation: decides what to notify and commits it with the new state.
    pub(crate) async fn evaluate(&self, app: &AppState, now: Timestamp) -> Result<(), StoreError> {
        let mut state = load_state(app).await?;
        let book = crate::alerts::alert_book(app)
            .await
            .map_err(|p| StoreError::Corrupt(p.detail))?;
        let silences = app
            .store
            .list_silences(now.minus(Duration::from_secs(7 * 86_400)))
            .await?;
        let mut batch = NotificationBatch::default();
        let mut transitions = Vec::new();

        self.update_notifier_alerts(app, &mut state, now, &mut transitions)
            .await?;

        // What fires now, and is not muted.
        let mut candidates: Vec<Candidate> = book
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| Candidate {
                rule: a.key.rule.clone(),
                labels: alert_labels(a),
                severity: a.severity,
                started_at: a.active_since,
                value: a.value,
                reason: a.reason.clone(),
            })
            .collect();
        for (notifier, alert) in &state.notifier_alerts {
            candidates.push(Candidate {
                rule: NOTIFIER_FAILING.into(),
                labels: BTreeMap::from([("notifier".to_string(), notifier.clone())]),
                severity: alert.severity,
                started_at: alert.since,
                value: alert.value,
                reason: alert.reason.clone(),
            });
        }
        // Members still in the book (firing or pending again), silenced or not: a member that
        // leaves a group without being in here has resolved.
        let mut present: BTreeSet<(String, String)> = candidates
            .iter()
            .map(|c| (c.rule.clone(), member_key(&c.labels)))
            .collect();
        for a in book.iter() {
            present.insert((a.key.rule.clone(), member_key(&alert_labels(a))));
        }
        let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
        for c in candidates {
            if let Some(s) = silenced_by(&c.rule, &c.labels, &silences, now) {
                tracing::debug!(rule = %c.rule, silence = %s.id, "alert silenced; not notified");
                continue;
            }
            let g = group_labels(&c.rule, &c.labels);
            let key = intake_notify::group_key(&c.rule, &g);
            desired
                .entry(key)
                .or_insert_with(|| (c.rule.clone(), g, Vec::new()))
                .2
                .push(c);
        }

        let repeat = app.config.monitor.repeat_interval.0;
        let mut next_groups = BTreeMap::new();
        let keys: BTreeSet<String> = desired.keys().chain(state.groups.keys()).cloned().collect();
        for key in keys {
            let prev = state.groups.remove(&key);
            let now_firing = desired.remove(&key);
            match (prev, now_firing) {
                (prev, Some((rule, labels, members))) => {
                    let severity = members
                        .iter()
                        .map(|m| m.severity)
                        .max_by_key(|s| rank(*s))
                        .unwrap_or(Severity::Warning);
                    let current: BTreeMap<String, Member> = members
                        .iter()
                        .map(|c| {
                            (
                                member_key(&c.labels),
                                Member {
                                    labels: c.labels.clone(),
                                    started_at: c.started_at,
                                    value: c.value,
                                    reason: c.reason.clone(),
                                },
                            )
                        })
                        .collect();
                    let (status, resolved) = match &prev {
                        None => (Some(AlertStatus::Firing), Vec::new()),
                        Some(p) => {
                            let joined = current.keys().any(|k| !p.members.contains_key(k));
                            let resolved: Vec<Member> = p
                                .members
                                .iter()
                                .filter(|(k, _)| {
                                    !current.contains_key(*k)
                                        && !present.contains(&(rule.clone(), (*k).clone()))
                                })
                                .map(|(_, m)| m.clone())
                                .collect();
                            let status = if joined || !resolved.is_empty() {
                                Some(AlertStatus::Firing)
                            } else if now >= p.last_sent_at.plus(repeat) {
                                Some(AlertStatus::Repeat)
                            } else {
                                None
                            };
                            (status, resolved)
                        }
                    };
                    let mut group = GroupState {
                        rule: rule.clone(),
                        labels: labels.clone(),
                        severity,
                        members: current,
                        last_status: prev.as_ref().map_or(AlertStatus::Firing, |p| p.last_status),
                        last_sent_at: prev.as_ref().map_or(now, |p| p.last_sent_at),
                        notifiers: prev
                            .as_ref()
                            .map(|p| p.notifiers.clone())
                            .unwrap_or_default(),
                    };
                    if let Some(status) = status {
                        let mut items = self.items(&group.members);
                        items.extend(resolved.iter().map(|m| item(m).resolved_at(now)));
                        let notice = Notice::alert(
                            status,
                            &rule,
                            severity,
                            labels.clone(),
                            items,
                            now,
                            &self.links,
                        )
                        .repeat_at(now.plus(repeat));
                        let route = self.route(app, &rule, &members, severity, &notice);
                        if route.is_empty() {
                            tracing::error!(rule = %rule, group = %key, "no notifier accepts this alert; configure [[notifiers]]");
                        }
                        push(&mut batch, &notice, &route, now);
                        group.last_status = status;
                        group.last_sent_at = now;
                        // A later resolution goes to everyone who heard of the group.
                        let mut all: BTreeSet<String> = group.notifiers.iter().cloned().collect();
                        all.extend(route);
                        group.notifiers = all.into_iter().collect();
                    }
                    next_groups.insert(key, group);
                }
                (Some(p), None) => {
                    // Nothing of the group fires unmuted any more. Members that left the book
                    // resolved; members still in it are muted by a silence.
                    let resolved: Vec<Member> = p
                        .members
                        .iter()
                        .filter(|(k, _)| !present.contains(&(p.rule.clone(), (*k).clone())))
                        .map(|(_, m)| m.clone())
                        .collect();
                    if !resolved.is_empty() {
                        let items = resolved.iter().map(|m| item(m).resolved_at(now)).collect();
                        let notice = Notice::alert(
                            AlertStatus::Resolved,
                            &p.rule,
                            p.severity,
                            p.labels.clone(),
                            items,
                            now,
                            &self.links,
                        );
                        let route: Vec<String> = p
                            .notifiers
                            .iter()
                            .filter(|id| self.accepts(id, &notice))
                            .cloned()
                            .collect();
                        push(&mut batch, &notice, &route, now);
                    }
                }
                (None, None) => {}
            }
        }
        state.groups = next_groups;

        // Silences that ended by time are announced once.
        for s in silences
            .iter()
            .filter(|s| s.ends_at <= now && !s.expiry_announced)
        {
            let notice = Notice::silence(SilenceStatus::Expired, silence_info(s), now, &self.links);
            let route = self.announcement_route(&notice);
            push(&mut batch, &notice, &route, now);
            batch.announced_expiries.push(s.id.clone());
        }

        let json = serde_json::to_string(&state).map_err(|e| {
            StoreError::Corrupt(format!("cannot encode the notification state: {e}"))
        })?;
        batch.state.push((NOTIFY_STATE.to_string(), json));
        app.store.record_alert_transitions(transitions).await?;
        let any = !batch.notifications.is_empty();
        app.store.enqueue_notifications(batch).await?;
        if any {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn items(&self, members: &BTreeMap<String, Member>) -> Vec<AlertItem> {
        members.values().map(item).collect()
    }

    fn accepts(&self, id: &str, notice: &Notice) -> bool {
        self.notifiers
            .iter()
            .any(|(c, n)| c.id == id && n.accepts(notice))
    }

    /// Silence announcements go to every notifier that takes them, whatever its severities:
    /// nobody mutes alerts unseen.
    pub(crate) fn announcement_route(&self, notice: &Notice) -> Vec<String> {
        self.notifiers
            .iter()
            .filter(|(_, n)| n.accepts(notice))
            .map(|(c, _)| c.id.clone())
            .collect()
    }

    /// Where a group's notice goes (see the module documentation).
    fn route(
        &self,
        app: &AppState,
        rule: &str,
        members: &[Candidate],
        severity: Severity,
        notice: &Notice,
    ) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        let mut by_severity = false;
        for m in members {
            let tenant = m.labels.get("tenant");
            let source = m.labels.get("source");
            let explicit = app
                .config
                .rules
                .iter()
                .filter(|o| o.rule == rule && !o.notifiers.is_empty())
                .filter(|o| o.tenant.as_ref().is_none_or(|t| Some(t) == tenant))
                .filter(|o| o.source.as_ref().is_none_or(|s| Some(s) == source))
                .max_by_key(|o| (o.source.is_some(), o.tenant.is_some()));
            match explicit {
                Some(o) => out.extend(o.notifiers.iter().cloned()),
                None => by_severity = true,
            }
        }
        if by_severity {
            out.extend(
                self.notifiers
                    .iter()
                    .filter(|(c, _)| c.severities.is_empty() || c.severities.contains(&severity))
                    .map(|(c, _)| c.id.clone()),
            );
        }
        let failing: Vec<&String> = if rule == NOTIFIER_FAILING {
            members
                .iter()
                .filter_map(|m| m.labels.get("notifier"))
                .collect()
        } else {
            Vec::new()
        };
        out.into_iter()
            .filter(|id| !failing.contains(&id))
            .filter(|id| self.accepts(id, notice))
            .collect()
    }

    /// Raises, updates and resolves `notifier_failing` from the outbox numbers and the
    /// watchdog's pings.
    async fn update_notifier_alerts(
        &self,
        app: &AppState,
        state: &mut NotifyState,
        now: Timestamp,
        transitions: &mut Vec<AlertTransitionRecord>,
    ) -> Result<(), StoreError> {
        let severity = app
            .config
            .rules
            .iter()
            .filter(|o| o.rule == NOTIFIER_FAILING && o.tenant.is_none() && o.source.is_none())
            .find_map(|o| o.severity)
            .unwrap_or(Severity::Critical);
        let mut failing: BTreeMap<String, (f64, String)> = BTreeMap::new();
        for h in app.store.notifier_health().await? {
            let stale = h
                .oldest_undelivered
                .is_some_and(|t| now.since(t) >= FAILING_AFTER_AGE);
            let refused = h
                .last_dead_at
                .is_some_and(|d| h.last_sent_at.is_none_or(|s| d > s));
            if (h.undelivered > 0 && (h.failed_attempts >= FAILING_AFTER_ATTEMPTS || stale))
                || refused
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
        if let Some(w) = &self.watchdog {
            let h = w.health.lock().map(|h| h.clone()).unwrap_or_default();
            let stale = h
                .failing_since
                .is_some_and(|t| now.since(t) >= FAILING_AFTER_AGE);
            if h.failures >= FAILING_AFTER_ATTEMPTS || (h.failures > 0 && stale) {
                failing.insert(
                    WATCHDOG_NOTIFIER.to_string(),
                    (
                        f64::from(h.failures),
                        format!(
                            "the watchdog ping to monitor.watchdog_url failed {} time(s) in a row; last error: {}",
                            h.failures,
                            h.last_error.as_deref().unwrap_or("none recorded")
                        ),
                    ),
                );
            }
        }
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
        Ok(())
    }

    /// Pings the dead-man's switch if its time has come. `alive` says whether the last
    /// evaluation succeeded recently: a monitor that cannot evaluate sends no heartbeat, so
    /// the switch alarms.
    pub(crate) async fn ping_watchdog(&mut self, now: Timestamp, alive: bool) {
        let links = self.links.clone();
        let Some(w) = self.watchdog.as_mut() else {
            return;
        };
        if now < w.next {
            return;
        }
        w.next = now.plus(w.every);
        if !alive {
            tracing::error!("the monitor has not evaluated recently; withholding the watchdog heartbeat so the dead-man's switch alarms");
            return;
        }
        let notice = Notice::watchdog(now, w.next, &links);
        let result = w.ping.send(&notice).await;
        let outcome = match &result {
            Ok(()) => "sent",
            Err(_) => "retry",
        };
        metrics::counter!(NOTIFICATIONS, "notifier" => WATCHDOG_NOTIFIER, "outcome" => outcome)
            .increment(1);
        if let Ok(mut h) = w.health.lock() {
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

    /// The next instant the watchdog must ping, if there is one.
    pub(crate) fn watchdog_due(&self) -> Option<Timestamp> {
        self.watchdog.as_ref().map(|w| w.next)
    }
}

fn item(m: &Member) -> AlertItem {
    AlertItem::new(m.labels.clone(), m.reason.clone(), m.started_at).value(m.value)
}

pub(crate) fn silence_info(s: &Silence) -> SilenceInfo {
    SilenceInfo {
        id: s.id.clone(),
        matchers: s.matchers.clone(),
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
    }
}

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
        })
        .collect()
}

fn push(batch: &mut NotificationBatch, notice: &Notice, route: &[String], now: Timestamp) {
    batch.notifications.extend(outbox_items(notice, route, now));
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
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
    app: Arc<AppState>,
    notifiers: Arc<Vec<(NotifierConfig, Arc<dyn Notifier>)>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let by_id: HashMap<String, Arc<dyn Notifier>> = notifiers
        .iter()
        .map(|(c, n)| (c.id.clone(), n.clone()))
        .collect();
    loop {
        let now = app.clock.now();
        let claimed = match app.store.claim_notifications(now, SEND_LEASE, 64).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification outbox");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            let next = match app.store.next_notification_due().await {
                Ok(Some(t)) => t.min(now.plus(SENDER_POLL)),
                _ => now.plus(SENDER_POLL),
            };
            tokio::select! {
                _ = app.clock.sleep_until(next.max(now.plus(Duration::from_millis(1)))) => {}
                _ = wake.notified() => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let sends = claimed.into_iter().map(|item| {
            let app = app.clone();
            let notifier = by_id.get(&item.notifier).cloned();
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
                    (Some(n), Ok(notice)) => match n.send(&notice).await {
                        Ok(()) => NotificationOutcome::Sent,
                        Err(e) => failed(&item.notifier, item.attempts, &e, app.clock.now()),
                    },
                };
                let label = match &outcome {
                    NotificationOutcome::Sent => "sent",
                    NotificationOutcome::Retry { .. } => "retry",
                    NotificationOutcome::Dead { .. } => "dead",
                };
                metrics::counter!(NOTIFICATIONS, "notifier" => item.notifier.clone(), "outcome" => label)
                    .increment(1);
                if let Err(e) = app
                    .store
                    .finish_notification(item.id, outcome, app.clock.now())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn silence(matchers: &[(&str, &str)], ends: i64) -> Silence {
        Silence {
            id: "sil_1".into(),
            matchers: labels(matchers),
            starts_at: Timestamp(0),
            ends_at: Timestamp(ends),
            created_by: "a".into(),
            comment: "c".into(),
            created_at: Timestamp(0),
            expiry_announced: false,
        }
    }

    #[test]
    fn silences_match_every_matcher_and_never_the_watchdog_or_canary() {
        let l = labels(&[("tenant", "maelys"), ("source", "s1")]);
        let s = [silence(&[("tenant", "maelys")], 1000)];
        assert!(silenced_by("queue_stalled", &l, &s, Timestamp(10)).is_some());
        assert!(
            silenced_by("queue_stalled", &l, &s, Timestamp(1000)).is_none(),
            "ended"
        );
        assert!(silenced_by("canary_failed", &l, &s, Timestamp(10)).is_none());
        assert!(silenced_by("watchdog", &l, &s, Timestamp(10)).is_none());
        let other = labels(&[("tenant", "other")]);
        assert!(silenced_by("queue_stalled", &other, &s, Timestamp(10)).is_none());
        let by_rule = [silence(
            &[("rule", "inbound_drop"), ("tenant", "maelys")],
            1000,
        )];
        assert!(silenced_by("inbound_drop", &l, &by_rule, Timestamp(10)).is_some());
        assert!(silenced_by("queue_stalled", &l, &by_rule, Timestamp(10)).is_none());
        // A label the alert does not carry never matches.
        let by_channel = [silence(&[("tenant", "maelys"), ("channel", "chat")], 1000)];
        assert!(silenced_by("queue_stalled", &l, &by_channel, Timestamp(10)).is_none());
    }

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

    #[test]
    fn groups_are_per_rule_and_tenant_or_notifier() {
        let a = labels(&[("tenant", "maelys"), ("source", "s1"), ("channel", "chat")]);
        assert_eq!(
            group_labels("inbound_stopped", &a),
            labels(&[("tenant", "maelys")])
        );
        let n = labels(&[("notifier", "slack")]);
        assert_eq!(group_labels(NOTIFIER_FAILING, &n), n);
    }
}
