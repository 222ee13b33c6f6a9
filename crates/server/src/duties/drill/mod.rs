//! Fire drills: a named fault injected on purpose for a bounded time, to prove that the alert
//! path works — the expected alert fires and its notification reaches a person — then healed,
//! with pass or fail, time to detect and time to notify recorded.
//!
//! * **The fault is the drill's row** (`drills`, running, with `expires_at`). Every node
//!   applies the faults of the running drills ([`faults`]: read every second, at start, and at
//!   once when this node starts or ends one), each only until its expiry, so a drill holds on
//!   every node, survives a restart, and heals by itself even when nobody finishes it. Where
//!   each applies is small: `queue-stall` in the dispatcher's claim (the source's deliveries
//!   are not claimed and stay pending), `handler-down` as a failed attempt, `flow-stop` in the
//!   ingest door (503), `notifier-down` in the outbox sender (a retried failure).
//! * **The `drills` singleton duty** ([`run`]) watches the running drills: it looks for the
//!   expected alert and its notification ([`observe`]), decides ([`decide::verdict`]), and
//!   heals (ends the row) as soon as the drill passed, or at its bound, saying what was
//!   missing. It also starts the `[[drills]]` schedules when due ([`schedule::due`]).
//! * **Drill-marked notifications:** the notification pipeline marks every alert the drill
//!   caused (`intake_core::drill::DrillScope::causes`, fed by [`scopes`]) with the label
//!   `drill`, so their notices say `[DRILL]` and page nobody; `drill_failed` is decided by the
//!   monitor from the schedules' last verdicts ([`schedule::failed_findings`]).
//!
//! | module | its one job |
//! |---|---|
//! | [`params`] | a request (API or schedule) checked into a new drill (pure) |
//! | [`decide`] | the report, the verdict, the summary (pure) |
//! | [`schedule`] | which schedules are due; `drill_failed` (pure) |
//! | [`observe`] | what a running drill finds in the store |
//! | [`faults`] | this node's copy of the stored faults |

pub mod decide;
pub mod faults;
mod observe;
pub mod params;
pub mod schedule;

use std::collections::HashMap;
use std::time::Duration;

use intake_core::config::{Config, NotifierKind};
use intake_core::drill::{DrillScope, Scenario};
use intake_core::Timestamp;
use intake_notify::Notice;
use intake_store::{Drill, DrillFilter, DrillState, NotificationBatch, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::Handles;
use super::{book, notify};
use crate::state::DrillFaults;
use decide::{DrillReport, Verdict};

/// The duty's name.
pub const DRILLS: &str = "drills";

/// `intake_drills_total`: drills that ended, by `scenario` and `result` (`passed`, `failed`,
/// `cancelled`).
pub const DRILLS_TOTAL: &str = "intake_drills_total";
/// `intake_drill_active`: drills whose fault this node applies now, by `scenario`.
pub const DRILL_ACTIVE: &str = "intake_drill_active";

/// How often the duty looks at the running drills (at once when this node's API started or
/// cancelled one, and at the next bound).
const TICK: Duration = Duration::from_secs(2);
/// How far back drills are read to mark the alerts they caused (an alert keeps its mark until
/// it resolves).
const MARK_LOOKBACK: Duration = Duration::from_secs(7 * 86_400);

/// Where `drill`'s fault applies and since when, as the notification pipeline and the duty
/// judge alerts by (see [`DrillScope`]): from its start to its heal (or, while it runs, its
/// bound), plus `grace` (one evaluation: the alerts of the first evaluation after the heal
/// are the drill's; rules judged over a window get the window).
pub fn scope_of(config: &Config, drill: &Drill, grace: Duration) -> DrillScope {
    DrillScope {
        id: drill.id.clone(),
        scenario: drill.scenario,
        target: drill.target.clone(),
        routed_sources: params::routed_sources(config, drill.scenario, &drill.target),
        from: drill.started_at,
        until: Some(drill.healed_at.unwrap_or(drill.expires_at)),
        grace,
    }
}

/// The scopes of the drills of the last week, newest first, for the notification pipeline.
pub(crate) async fn scopes(
    store: &dyn Store,
    config: &Config,
    now: Timestamp,
) -> Result<Vec<DrillScope>, StoreError> {
    let since = now.minus(MARK_LOOKBACK);
    let grace = config.monitor.interval.0;
    Ok(store
        .list_drills(DrillFilter {
            limit: 200,
            ..DrillFilter::default()
        })
        .await?
        .iter()
        .filter(|d| d.started_at >= since || d.state == DrillState::Running)
        .map(|d| scope_of(config, d, grace))
        .collect())
}

/// The alerts active now (pending or firing, `notifier_failing` included): a drill whose
/// expected alert is among them cannot prove it (see [`params::check`]).
pub(crate) async fn active_alerts(
    store: &dyn Store,
) -> Result<Vec<params::ActiveAlert>, StoreError> {
    let mut active: Vec<params::ActiveAlert> = book::alert_book(store)
        .await?
        .iter()
        .map(|a| (a.key.rule.clone(), notify::decide::alert_labels(a)))
        .collect();
    for id in notify::load_state(store).await?.notifier_alerts.into_keys() {
        active.push((
            notify::NOTIFIER_FAILING.to_string(),
            std::collections::BTreeMap::from([("notifier".to_string(), id)]),
        ));
    }
    Ok(active)
}

/// The last drill of each configured schedule that passed or failed, by schedule key.
pub(crate) async fn last_judged(
    store: &dyn Store,
    config: &Config,
) -> Result<HashMap<String, Drill>, StoreError> {
    let mut last = HashMap::new();
    for s in &config.drills {
        let found = store
            .list_drills(DrillFilter {
                schedule: Some(s.key()),
                states: vec![DrillState::Passed, DrillState::Failed],
                limit: 1,
                ..DrillFilter::default()
            })
            .await?;
        if let Some(d) = found.into_iter().next() {
            last.insert(s.key(), d);
        }
    }
    Ok(last)
}

/// Starts a checked drill: stores it (its row is its fault), sends a `notifier-down` drill's
/// probe to the notifier it makes fail, and makes this node apply it at once (the others
/// within a second).
pub(crate) async fn start(
    store: &dyn Store,
    config: &Config,
    faults: &DrillFaults,
    drill: Drill,
) -> Result<(), StoreError> {
    store.create_drill(drill.clone()).await?;
    apply_now(store, faults, drill.started_at).await;
    // An Alertmanager takes no such notice: the watchdog alert it gets at every evaluation,
    // which the drill fails too, is what fails there.
    let takes_probe = config
        .notifier(&drill.target)
        .is_some_and(|n| n.kind != NotifierKind::Alertmanager);
    if drill.scenario == Scenario::NotifierDown && takes_probe {
        let links = notify::link_builder(config);
        let probe = Notice::drill_probe(
            &drill.id,
            &drill.target,
            drill.started_at,
            drill.expires_at,
            &links,
        );
        let batch = NotificationBatch {
            notifications: notify::send::outbox_items(
                &probe,
                std::slice::from_ref(&drill.target),
                drill.started_at,
            ),
            ..NotificationBatch::default()
        };
        store.enqueue_notifications(batch).await?;
    }
    tracing::warn!(
        drill = %drill.id,
        scenario = drill.scenario.as_str(),
        target = %drill.target,
        trigger = drill.trigger.as_str(),
        until = %drill.expires_at,
        "fire drill started: {}",
        drill.scenario.describe(&drill.target)
    );
    Ok(())
}

/// Makes this node apply the stored faults as they are now (after it started or ended a
/// drill); if the store cannot be read, the background reader tries again.
pub(crate) async fn apply_now(store: &dyn Store, faults: &DrillFaults, now: Timestamp) {
    if let Err(e) = faults::load(store, faults, now).await {
        tracing::warn!(error = %e, "cannot read the fire drill faults; the background reader retries");
        faults.reread.notify_one();
    }
}

/// The duty's body: starts the schedules that are due and watches the running drills, until
/// `stop`. The drills it leaves running when it stops keep their faults until their expiry;
/// whichever node takes the duty next finishes them.
pub(crate) async fn run(h: Handles, stop: CancellationToken) {
    // The schedules that could not start, with why (said once).
    let mut waiting = HashMap::new();
    loop {
        let now = h.clock.now();
        let next = match tick(&h, &mut waiting, now).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "the drill duty cannot read or write the store; retrying");
                None
            }
        };
        let wake = next.map_or(now.plus(TICK), |t| t.min(now.plus(TICK)));
        tokio::select! {
            _ = h.clock.sleep_until(wake.max(now.plus(Duration::from_millis(1)))) => {}
            _ = h.drills.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One look: schedules first, then every running drill. Returns the next instant something
/// is due (a schedule, or a running drill's bound).
async fn tick(
    h: &Handles,
    waiting: &mut HashMap<String, String>,
    now: Timestamp,
) -> Result<Option<Timestamp>, StoreError> {
    let running = h
        .store
        .list_drills(DrillFilter {
            states: vec![DrillState::Running],
            ..DrillFilter::default()
        })
        .await?;
    let mut next = start_scheduled(h, &running, waiting, now).await?;
    for drill in running {
        let bound = drill.expires_at;
        if let Err(e) = watch(h, drill, now).await {
            tracing::warn!(error = %e, "cannot follow a fire drill; retrying");
        }
        if bound > now {
            next = Some(next.map_or(bound, |n| n.min(bound)));
        }
    }
    Ok(next)
}

/// Starts the `[[drills]]` that are due; the next instant one will be.
async fn start_scheduled(
    h: &Handles,
    running: &[Drill],
    waiting: &mut HashMap<String, String>,
    now: Timestamp,
) -> Result<Option<Timestamp>, StoreError> {
    if h.config.drills.is_empty() {
        return Ok(None);
    }
    let mut last = HashMap::new();
    for s in &h.config.drills {
        let found = h
            .store
            .list_drills(DrillFilter {
                schedule: Some(s.key()),
                limit: 1,
                ..DrillFilter::default()
            })
            .await?;
        if let Some(d) = found.into_iter().next() {
            last.insert(s.key(), d);
        }
    }
    let (due, next) = schedule::due(&h.config.drills, &last, running, now);
    if due.is_empty() {
        return Ok(next);
    }
    let active = active_alerts(&*h.store).await?;
    // Two schedules on one target (a queue-stall and a flow-stop of a source) falling due
    // together: the second waits for the first, as with any drill running on its target.
    let mut running = running.to_vec();
    for entry in due {
        let origin = params::Origin {
            trigger: intake_store::DrillTrigger::Scheduled,
            schedule: Some(entry.key()),
            by: "schedule",
        };
        let req = params::scheduled(entry);
        match params::check(&req, &h.config, &running, &active, origin, now) {
            Ok(drill) => {
                waiting.remove(&entry.key());
                start(&*h.store, &h.config, &h.faults, drill.clone()).await?;
                running.push(drill);
            }
            // Its alert is already active (a real problem, most likely): the drill waits until
            // it resolves, and says so once.
            Err(r) => {
                if waiting.get(&entry.key()) != Some(&r.detail) {
                    tracing::warn!(schedule = %entry.key(), "a scheduled drill waits: {}", r.detail);
                    waiting.insert(entry.key(), r.detail);
                }
            }
        }
    }
    Ok(next)
}

/// Looks for a running drill's alert and notification, records what it saw, and ends it
/// (healed) when it passed or reached its bound.
async fn watch(h: &Handles, drill: Drill, now: Timestamp) -> Result<(), StoreError> {
    let scope = scope_of(&h.config, &drill, h.config.monitor.interval.0);
    let before = DrillReport::of(&drill);
    let seen = observe::observe(&*h.store, &drill, &scope, before.alert.is_some()).await?;
    let mut report = decide::merge(before.clone(), seen);
    let (state, result) = match decide::verdict(&report, now, drill.expires_at) {
        Verdict::Running => {
            if report != before {
                h.store
                    .update_drill(decide::progress(&drill, report))
                    .await?;
            }
            return Ok(());
        }
        Verdict::Passed => (DrillState::Passed, "passed"),
        Verdict::Failed(missing) => {
            report.missing = Some(missing);
            (DrillState::Failed, "failed")
        }
    };
    let update = decide::ending(&drill, report, state, now);
    let summary = update.report["summary"].as_str().unwrap_or("").to_string();
    let stored = h.store.update_drill(update).await?;
    apply_now(&*h.store, &h.faults, now).await;
    if stored.is_some_and(|d| d.state == state) {
        metrics::counter!(DRILLS_TOTAL, "scenario" => drill.scenario.as_str(), "result" => result)
            .increment(1);
        if state == DrillState::Passed {
            tracing::info!(drill = %drill.id, "fire drill {summary}");
        } else {
            tracing::error!(drill = %drill.id, "fire drill {summary}");
        }
    }
    Ok(())
}
