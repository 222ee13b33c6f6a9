//! The monitor duty: feeds the committed counters and queue gauges to the detectors of
//! `intake-monitor` every `monitor.interval`, records the alert transitions they produce, and
//! keeps the alert book in the store, so any node's API shows the same alerts and a restart
//! (or a fail-over to another node) neither forgets nor re-raises them.
//!
//! It is a singleton duty (see [`super`]): one node evaluates at a time. A node that
//! takes the duty rebuilds the detectors' history from the store (hourly counters for the
//! baselines, minute counters for the last hours), so nothing is lost when the duty moves.
//!
//! After each evaluation it runs the notification pipeline ([`super::notify`], which also
//! decides what incidents need), pings the watchdog and sends the watchdog alert to every
//! Alertmanager. It takes the configuration, the clock, the store and the outbox sender's
//! wake-up (shared with the admin API), nothing else.
//!
//! `drill_failed` is decided here too, at every evaluation, from the last verdict of each
//! `[[drills]]` schedule ([`super::drill::schedule::failed_findings`]).
//!
//! `canary_failed` is decided here too, from the canary book the canary duty keeps
//! ([`super::canary::decide::findings`]), at every evaluation and also between two, at the
//! very instant a source's deadline runs out: the monitor sleeps until then, judges the
//! canaries again, and runs the notification pipeline at once. A stop of the whole pipeline is
//! then notified at most one deadline after the last canary that got through (2 minutes by
//! default), not up to an evaluation interval later.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use intake_core::config::Config;
use intake_core::{SharedClock, Timestamp};
use intake_monitor::history::{QueueMinute, QueueSnapshot, RequestMinute};
use intake_monitor::CompletionSnapshot;
use intake_monitor::{
    ActiveAlert, AlertBook, CanaryHealth, Finding, FlowKey, Monitor, MonitorSettings, QueueKey,
    QuietDays, RuleBook, SourceKey, Transition,
};
use intake_store::{AlertTransitionRecord, CounterQuery, Resolution, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::book::{
    self, StoredFlows, ALERTS_STATE, BAND_HOURS, FLOWS_STATE, FLOW_BANDS_STATE, FLOW_PREFIX,
};
use super::canary::{self, decide::CANARY_FAILED};
use super::drill;
use super::notify::{self, Pipeline};
use super::reconcile;
use crate::state::{DrillFaults, QueueView};

/// The monitor's duty name.
pub const MONITOR: &str = "monitor";

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// How long after a minute ends it is evaluated: its counters are committed by then.
const SETTLE: Duration = Duration::from_secs(5);
/// How long to wait before trying again after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(5);

/// The metrics the monitor reads, per minute. Not `deliveries.rerouted`: a requeue closing a
/// delivery to a destination no longer routed is neither a failed attempt nor a dead letter.
const METRICS: [&str; 14] = [
    "events.webhook",
    "requests.accepted",
    "requests.duplicate",
    "requests.rejected_signature",
    "requests.rejected_invalid",
    "deliveries.created",
    "deliveries.delivered",
    "deliveries.failed",
    "deliveries.dead",
    "events.backfill",
    "events.replay",
    "events.canary",
    "deliveries.completed",
    "deliveries.completion_failed",
];

/// The rule book of a configuration (already validated by [`crate::Server::check`]).
pub(crate) fn rule_book(config: &Config) -> RuleBook {
    RuleBook::new(&config.rules).unwrap_or_default()
}

/// The monitor duty's body.
pub(crate) async fn run(
    config: Arc<Config>,
    clock: SharedClock,
    store: Arc<dyn Store>,
    queue: QueueView,
    faults: Arc<DrillFaults>,
    notices: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let started = clock.now();
    let mut duty = MonitorDuty {
        monitor: Monitor::new(rule_book(&config), MonitorSettings::default()),
        fed_until: 0,
        bands_hour: None,
        rules: rule_book(&config),
        started,
        canary_check: None,
        stored_flows: None,
        config,
        clock,
        store,
        queue,
    };
    // Rebuild the history; the store may be briefly unavailable.
    loop {
        match duty.warm_up().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "the monitor cannot read its history yet");
                if duty
                    .sleep(duty.clock.now().plus(STORE_BACKOFF), &stop)
                    .await
                {
                    return;
                }
            }
        }
    }
    let interval = duty.config.monitor.interval.0.max(Duration::from_secs(1));
    // Notifications: decided after each evaluation, sent by their own loop, and the watchdog
    // pinged from this loop, so a heartbeat proves that this loop is evaluating.
    let mut pipeline = Pipeline::new(
        duty.config.clone(),
        duty.clock.clone(),
        duty.store.clone(),
        faults.clone(),
        notices,
    );
    let sender = tokio::spawn(notify::send::send_loop(
        duty.clock.clone(),
        duty.store.clone(),
        pipeline.senders.clone(),
        pipeline.wake.clone(),
        faults,
        stop.clone(),
    ));
    let mut next = first_tick(duty.clock.now(), interval);
    let mut last_ok: Option<Timestamp> = None;
    loop {
        let wake = [pipeline.watchdog_due(), duty.canary_check]
            .into_iter()
            .flatten()
            .fold(next, Timestamp::min);
        if duty.sleep(wake, &stop).await {
            break;
        }
        let now = duty.clock.now();
        if now < next && duty.canary_check.is_some_and(|c| now >= c) {
            // A source's canary deadline ran out between two evaluations: judge the canaries
            // and notify now, not at the next tick.
            match duty.check_canaries(now).await {
                Ok(()) => {
                    if let Err(e) = pipeline.evaluate(now).await {
                        tracing::warn!(error = %e, "notification evaluation failed; retrying at the next tick");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "canary evaluation failed; retrying at the next tick");
                    duty.canary_check = None;
                }
            }
        }
        if now >= next {
            let evaluated = match duty.tick(now).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "monitor evaluation failed; retrying at the next tick");
                    false
                }
            };
            // The pipeline reads what is stored, so it runs even after a failed tick (the
            // store may have recovered in between).
            match pipeline.evaluate(now).await {
                Ok(()) if evaluated => last_ok = Some(now),
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "notification evaluation failed; retrying at the next tick")
                }
            }
            next = next.plus(interval);
            if next <= now {
                next = first_tick(now, interval);
            }
        }
        // Alive: the last evaluation succeeded within two intervals (and a few seconds of
        // settling), or the duty started that recently (its first tick is still to come).
        let alive = now.since(last_ok.unwrap_or(started)) <= interval * 2 + SETTLE * 2;
        pipeline.ping_watchdog(now, alive).await;
        if last_ok == Some(now) {
            // The always-firing watchdog alert, to every Alertmanager, at every evaluation
            // that succeeded: a dead-man's switch routed in Alertmanager alarms when it stops.
            pipeline.send_watchdog_alerts(now, next).await;
        }
    }
    let _ = sender.await;
}

/// The first evaluation instant: a few seconds after the next interval boundary.
fn first_tick(now: Timestamp, interval: Duration) -> Timestamp {
    let step = interval.as_millis().max(1) as i64;
    let boundary = now.as_millis().div_euclid(step) * step;
    Timestamp(boundary).plus(interval).plus(SETTLE)
}

struct MonitorDuty {
    config: Arc<Config>,
    clock: SharedClock,
    store: Arc<dyn Store>,
    /// The queue's gauges: a count that a scrape or the dashboard started meanwhile is shared
    /// rather than made again (millions queued take seconds to count).
    queue: QueueView,
    monitor: Monitor,
    /// Minutes before this instant (ms) have been fed to the detectors.
    fed_until: i64,
    /// The rules' parameters (for `canary_failed`'s severity and `for`).
    rules: RuleBook,
    /// When this duty started: the deadline of a source the canary book does not know yet
    /// counts from here.
    started: Timestamp,
    /// The next instant a source's canary deadline runs out, if one is healthy now.
    canary_check: Option<Timestamp>,
    /// The hour whose flow bands are stored (see [`MonitorDuty::store_bands`]).
    bands_hour: Option<i64>,
    /// The flows' expectation documents as stored, by key: read at the first evaluation,
    /// then kept in step with what is written (see [`MonitorDuty::store_expectations`]).
    stored_flows: Option<StoredFlows>,
}

impl MonitorDuty {
    /// Sleeps until `at`; true when the duty must stop instead.
    async fn sleep(&self, at: Timestamp, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = self.clock.sleep_until(at) => false,
            _ = stop.cancelled() => true,
        }
    }

    /// Loads hourly history for the baselines, the alert book, and declares the configured
    /// sources' flows.
    async fn warm_up(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let settings = self.monitor.settings().clone();
        // Minutes cover the last few whole hours; hours before them come from the rollup.
        let minute_hours = (settings.minute_capacity as i64 / 60 - 1).max(1);
        let minutes_from = Resolution::Hour.bucket(now).as_millis() - minute_hours * HOUR;
        let hours_from = minutes_from - settings.baseline.hour_capacity() as i64 * HOUR;
        let hours = self
            .store
            .read_counters(CounterQuery {
                from: Timestamp(hours_from),
                to: Timestamp(minutes_from),
                resolution: Resolution::Hour,
                metrics: vec!["events.webhook".into()],
                tenant: None,
                source: None,
            })
            .await?;
        let mut monitor = Monitor::new(rule_book(&self.config), settings);
        monitor.set_quiet_days(QuietDays::new(&self.config.monitor.calendars));
        for r in &hours {
            if r.channel.is_empty() {
                continue;
            }
            monitor.record_flow_hour(
                &FlowKey {
                    tenant: r.tenant.clone(),
                    source: r.source.clone(),
                    channel: r.channel.clone(),
                },
                r.at,
                u32::try_from(r.count).unwrap_or(u32::MAX),
            );
        }
        if let Some(json) = self.store.get_state(ALERTS_STATE).await? {
            match serde_json::from_str::<Vec<ActiveAlert>>(&json) {
                Ok(alerts) => monitor.restore_alerts(AlertBook::restore(alerts)),
                Err(e) => tracing::error!(
                    error = %e,
                    "the stored alert book is unreadable; alerts start afresh"
                ),
            }
        }
        self.monitor = monitor;
        self.fed_until = minutes_from;
        tracing::info!(
            hours = hours.len(),
            "monitor history loaded; evaluating every {:?}",
            self.config.monitor.interval.0
        );
        Ok(())
    }

    /// Feeds the minutes completed since the last tick, observes the queues, evaluates, and
    /// records what changed.
    async fn tick(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let this_minute = Resolution::Minute.bucket(now).as_millis();
        // The last two minutes are read again: a counter committed right at a minute's end may
        // have landed after the previous read (recording a minute again replaces it).
        let from = (self.fed_until - 2 * MINUTE).min(this_minute);
        let rows = self
            .store
            .read_counters(CounterQuery {
                from: Timestamp(from),
                to: Timestamp(this_minute),
                resolution: Resolution::Minute,
                metrics: METRICS.iter().map(|m| m.to_string()).collect(),
                tenant: None,
                source: None,
            })
            .await?;
        self.feed(&rows);
        self.fed_until = this_minute;

        let reading = self.queue.read().await?;
        let mut seen: HashMap<QueueKey, QueueSnapshot> = HashMap::new();
        for s in &self.config.sources {
            for d in &s.destinations {
                seen.insert(
                    QueueKey {
                        tenant: s.tenant.clone(),
                        source: s.id.clone(),
                        destination: d.clone(),
                    },
                    QueueSnapshot {
                        pending: 0,
                        in_flight: 0,
                        oldest_pending_since: None,
                        dead: 0,
                    },
                );
            }
        }
        for st in &reading.stats {
            seen.insert(
                QueueKey {
                    tenant: st.tenant.clone(),
                    source: st.source.clone(),
                    destination: st.destination.clone(),
                },
                QueueSnapshot {
                    pending: st.pending.saturating_sub(st.in_flight),
                    in_flight: st.in_flight,
                    oldest_pending_since: st.oldest_pending_at,
                    dead: st.dead,
                },
            );
        }
        for (key, snapshot) in seen {
            self.monitor.observe_queue(&key, now, snapshot);
        }
        self.observe_gaps().await?;
        self.observe_completions(now).await?;

        // The canaries are judged first: `inbound_drop`'s grouped warning says whether they
        // pass.
        let canaries = self.canary_findings(now).await?;
        self.monitor.observe_canaries(canary_health(&canaries));
        let mut transitions = self.monitor.evaluate(now);
        transitions.extend(self.monitor.apply_external(CANARY_FAILED, canaries, now));
        transitions.extend(self.judge_drills(now).await?);
        self.save(&transitions).await?;
        self.store_expectations(now).await?;
        self.store_bands(now).await
    }

    /// Stores the expectation of each flow whose expectation changed since it was last
    /// stored (most change once an hour), deletes those of flows no longer watched, and
    /// leaves the others alone ([`book::changes`]).
    async fn store_expectations(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let mut stored = match self.stored_flows.take() {
            Some(stored) => stored,
            None => {
                let mut stored =
                    StoredFlows::from_documents(self.store.states_with_prefix(FLOW_PREFIX).await?);
                // The single document of every flow's status that earlier versions rewrote at
                // every evaluation: gone with the first write.
                stored.add_stray(FLOWS_STATE);
                stored
            }
        };
        let changes = book::changes(&stored, self.monitor.flow_hours(now));
        if !changes.is_empty() {
            let writes = book::encode(&changes)?;
            if let Err(e) = self.store.put_states(writes).await {
                self.stored_flows = Some(stored);
                return Err(e);
            }
            stored.apply(changes);
        }
        self.stored_flows = Some(stored);
        Ok(())
    }

    /// Stores every flow's expected band, once an hour. A band is made of whole hours'
    /// baselines and the dispersion estimated at the hour, so it only changes when an hour
    /// begins; writing it once an hour, not at every evaluation, keeps it off the
    /// evaluation's write path.
    async fn store_bands(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let hour = now.as_millis().div_euclid(HOUR);
        if self.bands_hour == Some(hour) {
            return Ok(());
        }
        let bands = serde_json::to_string(&self.monitor.flow_bands(now, BAND_HOURS))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode flow bands: {e}")))?;
        self.store.put_state(FLOW_BANDS_STATE, bands).await?;
        self.bands_hour = Some(hour);
        Ok(())
    }

    /// Judges the canaries alone (between two evaluations) and records what changed.
    async fn check_canaries(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let transitions = self.judge_canaries(now).await?;
        self.save(&transitions).await
    }

    /// `canary_failed` from the stored canary book, applied to the alert book; plans the next
    /// check at the next deadline of a healthy source.
    async fn judge_canaries(&mut self, now: Timestamp) -> Result<Vec<Transition>, StoreError> {
        let findings = self.canary_findings(now).await?;
        Ok(self.monitor.apply_external(CANARY_FAILED, findings, now))
    }

    /// `canary_failed`'s findings from the stored canary book; plans the next check at the
    /// next deadline of a healthy source.
    async fn canary_findings(&mut self, now: Timestamp) -> Result<Vec<Finding>, StoreError> {
        let book = canary::book::load(&*self.store).await?;
        let (findings, next) =
            canary::decide::findings(&self.config, &self.rules, &book, self.started, now);
        self.canary_check = next;
        Ok(findings)
    }

    /// `drill_failed` from the last verdict of each `[[drills]]` schedule.
    async fn judge_drills(&mut self, now: Timestamp) -> Result<Vec<Transition>, StoreError> {
        let last = drill::last_judged(&*self.store, &self.config).await?;
        let findings = drill::schedule::failed_findings(&self.config, &self.rules, &last);
        Ok(self
            .monitor
            .apply_external(intake_core::drill::DRILL_FAILED, findings, now))
    }

    /// Logs and records transitions, and stores the alert book.
    async fn save(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        for t in transitions {
            log_transition(t);
        }
        let records: Vec<AlertTransitionRecord> = transitions.iter().map(record).collect();
        self.store.record_alert_transitions(records).await?;
        let book = serde_json::to_string(&self.monitor.alerts().snapshot())
            .map_err(|e| StoreError::Corrupt(format!("cannot encode the alert book: {e}")))?;
        self.store.put_state(ALERTS_STATE, book).await
    }

    /// Hands the monitor the open gaps the `reconcile` duty recorded for each reconciled
    /// source (`source_gap`'s input is not a counter). A document that cannot be decoded keeps
    /// what was handed before, so a bug there neither raises nor resolves an alert.
    async fn observe_gaps(&mut self) -> Result<(), StoreError> {
        let sample = self.config.reconcile.sample;
        let mut reconciled = HashSet::new();
        for s in reconcile::reconciled(&self.config) {
            let key = SourceKey {
                tenant: s.tenant.clone(),
                source: s.id.clone(),
            };
            match reconcile::state::load(&*self.store, &s.id).await {
                Ok(st) => self
                    .monitor
                    .observe_gaps(&key, st.report(s.kind.vendor(), sample)),
                Err(StoreError::Corrupt(e)) => {
                    tracing::error!(source = %s.id, error = %e, "source_gap keeps its last verdict")
                }
                Err(e) => return Err(e),
            }
            reconciled.insert(key);
        }
        self.monitor.retain_gaps(|k| reconciled.contains(k));
        Ok(())
    }

    /// Hands the monitor what each queue on receipts holds: the deliveries received and not
    /// confirmed, those past their destination's deadline, and the oldest.
    async fn observe_completions(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let mut on_receipts: HashMap<QueueKey, CompletionSnapshot> = HashMap::new();
        for d in self
            .config
            .destinations
            .iter()
            .filter(|d| d.uses_receipts())
        {
            let deadline = d.completion_deadline.0;
            for s in self
                .config
                .sources
                .iter()
                .filter(|s| s.destinations.contains(&d.id))
            {
                let key = QueueKey {
                    tenant: s.tenant.clone(),
                    source: s.id.clone(),
                    destination: d.id.clone(),
                };
                on_receipts.insert(
                    key,
                    CompletionSnapshot {
                        deadline,
                        ..CompletionSnapshot::default()
                    },
                );
            }
            let cutoff = Timestamp(now.as_millis() - deadline.as_millis() as i64);
            for b in self.store.completion_backlog(&d.id, cutoff).await? {
                let key = QueueKey {
                    tenant: b.tenant,
                    source: b.source,
                    destination: b.destination,
                };
                on_receipts.insert(
                    key,
                    CompletionSnapshot {
                        deadline,
                        awaiting: b.awaiting,
                        overdue: b.overdue,
                        oldest_received_at: b.oldest_received_at,
                        oldest: b.oldest.map(|id| id.to_string()),
                    },
                );
            }
        }
        self.monitor
            .retain_completions(|k| on_receipts.contains_key(k));
        for (key, snapshot) in on_receipts {
            self.monitor.observe_completion(&key, snapshot);
        }
        Ok(())
    }

    fn feed(&mut self, rows: &[intake_store::CounterRow]) {
        let mut flows: BTreeMap<(i64, FlowKey), u32> = BTreeMap::new();
        let mut requests: BTreeMap<(i64, SourceKey), RequestMinute> = BTreeMap::new();
        let mut queues: BTreeMap<(i64, QueueKey), QueueMinute> = BTreeMap::new();
        let mut canaries: BTreeMap<(i64, SourceKey), u32> = BTreeMap::new();
        let n = |c: i64| u32::try_from(c).unwrap_or(u32::MAX);
        for r in rows {
            let minute = r.at.as_millis();
            match r.metric.as_str() {
                "events.webhook" => {
                    let key = FlowKey {
                        tenant: r.tenant.clone(),
                        source: r.source.clone(),
                        channel: r.channel.clone(),
                    };
                    *flows.entry((minute, key)).or_default() += n(r.count);
                }
                // Canaries are accepted requests too, but not the tenant's: taken back out,
                // they neither dilute a rise of rejections nor count as traffic.
                "events.canary" => {
                    let key = SourceKey {
                        tenant: r.tenant.clone(),
                        source: r.source.clone(),
                    };
                    *canaries.entry((minute, key)).or_default() += n(r.count);
                }
                "requests.accepted"
                | "requests.duplicate"
                | "requests.rejected_signature"
                | "requests.rejected_invalid" => {
                    let key = SourceKey {
                        tenant: r.tenant.clone(),
                        source: r.source.clone(),
                    };
                    let e = requests.entry((minute, key)).or_insert(RequestMinute {
                        accepted: 0,
                        rejected: 0,
                    });
                    if r.metric.starts_with("requests.rejected") {
                        e.rejected += n(r.count);
                    } else {
                        e.accepted += n(r.count);
                    }
                }
                m if m.starts_with("deliveries.") && !r.destination.is_empty() => {
                    let key = QueueKey {
                        tenant: r.tenant.clone(),
                        source: r.source.clone(),
                        destination: r.destination.clone(),
                    };
                    let e = queues.entry((minute, key)).or_default();
                    match m {
                        "deliveries.created" => e.created += n(r.count),
                        "deliveries.delivered" => e.delivered += n(r.count),
                        "deliveries.failed" => e.failed += n(r.count),
                        "deliveries.dead" => e.dead += n(r.count),
                        "deliveries.completed" => e.completed += n(r.count),
                        "deliveries.completion_failed" => e.completion_failed += n(r.count),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        for ((minute, key), count) in flows {
            self.monitor.record_flow(&key, Timestamp(minute), count);
        }
        for ((minute, key), mut v) in requests {
            if let Some(c) = canaries.get(&(minute, key.clone())) {
                v.accepted = v.accepted.saturating_sub(*c);
            }
            self.monitor.record_requests(&key, Timestamp(minute), v);
        }
        for ((minute, key), v) in queues {
            self.monitor.record_queue(&key, Timestamp(minute), v);
        }
    }
}

/// What the canaries say, as the detectors take it: the sources whose `canary_failed` holds.
fn canary_health(findings: &[Finding]) -> CanaryHealth {
    CanaryHealth {
        watched: true,
        failing: findings
            .iter()
            .map(|f| f.key.labels.source.clone())
            .collect(),
    }
}

pub(crate) fn record(t: &Transition) -> AlertTransitionRecord {
    AlertTransitionRecord {
        at: t.at,
        rule: t.rule.clone(),
        tenant: t.labels.tenant.clone(),
        source: t.labels.source.clone(),
        channel: t.labels.channel.clone(),
        destination: t.labels.destination.clone(),
        severity: t.severity.as_str().to_string(),
        state: t.state.to_string(),
        value: t.value,
        reason: t.reason.clone(),
    }
}

fn log_transition(t: &Transition) {
    let l = &t.labels;
    match t.state {
        intake_monitor::AlertState::Firing => tracing::warn!(
            rule = %t.rule, severity = t.severity.as_str(), tenant = %l.tenant,
            source = %l.source, channel = %l.channel, destination = %l.destination,
            value = t.value, "alert firing: {}", t.reason
        ),
        state => tracing::info!(
            rule = %t.rule, severity = t.severity.as_str(), tenant = %l.tenant,
            source = %l.source, channel = %l.channel, destination = %l.destination,
            value = t.value, "alert {state}: {}", t.reason
        ),
    }
}
