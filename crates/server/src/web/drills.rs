//! `/drills`: fire drills — the running ones first, then the recent ones, each with its
//! scenario, target, state and timings (fault → alert → notification → healed) and its
//! verdict; start one; each drill's page (`/drills/{id}`, followed every 2 s while it runs)
//! with its report, and a button that cancels it.
//!
//! Drills are started, listed, read and cancelled through the admin API's own functions
//! (`api::drills::{start_drill, list_drills, visible, cancel_drill}`): starting and cancelling
//! are the operator's, as through the API; a tenant session reads the drills of its own
//! sources. The `drills` duty, on whichever node holds it, watches and heals them.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use intake_core::drill::Scenario;
use intake_core::Timestamp;
use intake_store::{Drill, DrillState};
use serde::Deserialize;

use super::page::{
    ago, duration, html, labels_text, options, query_string, render, render_with, segment, when,
    Chrome, Opt, PageError, PageResult, Viewer,
};
use crate::api::drills::{cancel_drill, list_drills, start_drill, visible};
use crate::api::Scope;
use crate::duties::drill::decide::DrillReport;
use crate::duties::drill::params::DrillRequest;
use crate::state::AppState;

/// How many drills the list shows.
const LISTED: usize = 100;

/// The colour (and shape) of a drill's state, and the word for its verdict.
fn state_class(s: DrillState) -> &'static str {
    match s {
        DrillState::Running => "info",
        DrillState::Passed => "ok",
        DrillState::Failed => "critical",
        DrillState::Cancelled => "learning",
    }
}

/// `+1m 5s` after the fault started, or `—` when it has not happened.
fn after(start: Timestamp, t: Option<Timestamp>) -> String {
    t.map(|t| format!("+{}", duration(t.since(start).as_secs())))
        .unwrap_or_else(|| "—".into())
}

/// One drill as a line of the list.
pub(crate) struct DrillLine {
    pub id: String,
    pub href: String,
    pub scenario: String,
    pub target: String,
    pub target_kind: String,
    pub state: String,
    pub class: &'static str,
    pub running: bool,
    pub started: String,
    pub started_ago: String,
    pub detected: String,
    pub notified: String,
    pub healed: String,
    pub trigger: String,
    pub summary: String,
}

fn line(d: &Drill, now: Timestamp) -> DrillLine {
    let report = DrillReport::of(d);
    DrillLine {
        href: format!("/drills/{}", segment(&d.id)),
        id: d.id.clone(),
        scenario: d.scenario.as_str().into(),
        target: d.target.clone(),
        target_kind: d.scenario.target_kind().as_str().into(),
        state: d.state.as_str().into(),
        class: state_class(d.state),
        running: d.state == DrillState::Running,
        started: when(d.started_at),
        started_ago: format!("{} ago", ago(now, d.started_at)),
        detected: after(d.started_at, d.detected_at),
        notified: after(d.started_at, d.notified_at),
        healed: after(d.started_at, d.healed_at),
        trigger: match &d.schedule {
            Some(s) => format!("scheduled ({s})"),
            None => format!("{} by {}", d.trigger.as_str(), d.created_by),
        },
        summary: report.summary,
    }
}

/// The running drills first (the newest first), then the others, newest first.
pub(crate) fn running_first(mut drills: Vec<Drill>) -> Vec<Drill> {
    drills.sort_by(|a, b| {
        let key = |d: &Drill| {
            (
                d.state != DrillState::Running,
                std::cmp::Reverse(d.started_at),
            )
        };
        key(a).cmp(&key(b)).then_with(|| b.id.cmp(&a.id))
    });
    drills
}

/// The form that starts a drill.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct DrillForm {
    #[serde(default)]
    scenario: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
    #[serde(default)]
    notifier: String,
    #[serde(default, rename = "for")]
    duration: String,
}

impl DrillForm {
    /// The API request: the scenario, the one target field its scenario takes (the others
    /// are left out, so a form with every select filled still means one drill), the bound.
    fn request(&self) -> DrillRequest {
        let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let scenario = Scenario::parse(self.scenario.trim());
        let takes = |kind: &str| scenario.is_none_or(|s| s.target_kind().as_str() == kind);
        DrillRequest {
            scenario: self.scenario.trim().to_string(),
            source: given(&self.source).filter(|_| takes("source")),
            destination: given(&self.destination).filter(|_| takes("destination")),
            notifier: given(&self.notifier).filter(|_| takes("notifier")),
            for_: given(&self.duration),
        }
    }
}

#[derive(Template)]
#[template(path = "drills.html")]
struct DrillsPage {
    chrome: Chrome,
    operator: bool,
    form: DrillForm,
    scenarios: Vec<(Opt, String)>,
    sources: Vec<Opt>,
    destinations: Vec<Opt>,
    notifiers: Vec<Opt>,
    error: Option<String>,
    live: String,
}

#[derive(Template)]
#[template(path = "drills_live.html")]
struct DrillsLive {
    drills: Vec<DrillLine>,
    /// Faster while one runs.
    every: &'static str,
    as_of: String,
}

async fn drills_live(app: &AppState, viewer: &Viewer) -> Result<DrillsLive, PageError> {
    let drills = running_first(list_drills(app, &viewer.scope, Vec::new(), LISTED).await?);
    let now = app.clock.now();
    let running = drills.iter().any(|d| d.state == DrillState::Running);
    Ok(DrillsLive {
        drills: drills.iter().map(|d| line(d, now)).collect(),
        every: if running { "2s" } else { "15s" },
        as_of: when(now),
    })
}

/// The options of a select: none first, then `values`.
fn choice(values: impl Iterator<Item = String>, chosen: &str) -> Vec<Opt> {
    options(std::iter::once(String::new()).chain(values), chosen)
}

async fn drills_page(
    app: &AppState,
    viewer: &Viewer,
    form: DrillForm,
    error: Option<String>,
) -> Result<DrillsPage, PageError> {
    let live = html(&drills_live(app, viewer).await?)?;
    let c = &app.config;
    let scenarios = Scenario::ALL
        .iter()
        .map(|s| {
            let opt = Opt {
                value: s.as_str().to_string(),
                selected: s.as_str() == form.scenario,
            };
            (opt, s.target_kind().as_str().to_string())
        })
        .collect();
    Ok(DrillsPage {
        chrome: Chrome::new(viewer, "/drills", "Fire drills"),
        operator: matches!(viewer.scope, Scope::Operator),
        scenarios,
        sources: choice(c.sources.iter().map(|s| s.id.clone()), &form.source),
        destinations: choice(
            c.destinations.iter().map(|d| d.id.clone()),
            &form.destination,
        ),
        notifiers: choice(c.notifiers.iter().map(|n| n.id.clone()), &form.notifier),
        form,
        error,
        live,
    })
}

/// `GET /drills`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let form = DrillForm {
        duration: "5m".into(),
        ..DrillForm::default()
    };
    Ok(render(&drills_page(&app, &viewer, form, None).await?))
}

/// `GET /_/drills`: the list, polled.
pub(crate) async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    Ok(render(&drills_live(&app, &viewer).await?))
}

/// `POST /drills`: started, the browser follows it on its page; refused, the form comes back
/// with the API's reason.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Form(form): Form<DrillForm>,
) -> PageResult {
    match start_drill(&app, &viewer.scope, &form.request()).await {
        Ok(d) => Ok(Redirect::to(&format!("/drills/{}", segment(&d.id))).into_response()),
        Err(p) if p.status < 500 => {
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            let page = drills_page(&app, &viewer, form, Some(p.detail)).await?;
            Ok(render_with(status, &page))
        }
        Err(p) => Err(p.into()),
    }
}

/// One step of a drill's course: fault, alert, notification, healed.
pub(crate) struct CourseStep {
    pub what: String,
    pub at: String,
    pub after: String,
    pub detail: String,
    pub href: Option<String>,
    pub class: &'static str,
}

fn course(d: &Drill, r: &DrillReport) -> Vec<CourseStep> {
    let step =
        |what: &str, t: Option<Timestamp>, detail: String, href: Option<String>| CourseStep {
            what: what.into(),
            at: t.map(when).unwrap_or_else(|| "not yet".into()),
            after: after(d.started_at, t),
            detail,
            href,
            class: if t.is_some() { "ok" } else { "pending" },
        };
    let fault = CourseStep {
        class: "info",
        after: "+0s".into(),
        ..step(
            "fault injected",
            Some(d.started_at),
            d.scenario.describe(&d.target),
            None,
        )
    };
    let alert_href = r.alert.as_ref().map(|a| {
        let mut pairs = vec![("rule", a.rule.as_str())];
        pairs.extend(
            ["tenant", "source", "channel", "destination"]
                .iter()
                .filter_map(|k| a.labels.get(*k).map(|v| (*k, v.as_str()))),
        );
        format!("/alerts{}", query_string(&pairs))
    });
    let alert = step(
        "alert fired",
        d.detected_at,
        match &r.alert {
            Some(a) => format!("{} ({})", a.rule, labels_text(&a.labels)),
            None => format!("expecting one of {}", r.expected.join(", ")),
        },
        alert_href,
    );
    let notified = step(
        "on-call notified",
        d.notified_at,
        match (&r.notification, &r.routed) {
            (Some(n), _) => format!("sent through {}", n.notifier),
            (None, Some(n)) => format!("queued for {}, not sent yet", n.notifier),
            (None, None) => "no notification queued yet".into(),
        },
        None,
    );
    let healed = step(
        "healed",
        d.healed_at,
        format!("the fault ends by {} at the latest", when(d.expires_at)),
        None,
    );
    vec![fault, alert, notified, healed]
}

#[derive(Template)]
#[template(path = "drill.html")]
struct DrillPage {
    chrome: Chrome,
    id: String,
    live: String,
}

#[derive(Template)]
#[template(path = "drill_live.html")]
struct DrillLive {
    d: DrillLine,
    /// Polling stops once the drill has ended.
    refresh: Option<String>,
    course: Vec<CourseStep>,
    missing: Option<String>,
    cancelled_by: Option<String>,
    can_cancel: bool,
    csrf: String,
}

fn drill_live(d: &Drill, viewer: &Viewer, now: Timestamp) -> DrillLive {
    let report = DrillReport::of(d);
    DrillLive {
        refresh: (d.state == DrillState::Running).then(|| format!("/_/drills/{}", segment(&d.id))),
        course: course(d, &report),
        missing: report.missing.map(|m| m.describe(d.scenario)),
        cancelled_by: report.cancelled_by.clone(),
        can_cancel: d.state == DrillState::Running && matches!(viewer.scope, Scope::Operator),
        csrf: viewer.csrf.clone(),
        d: line(d, now),
    }
}

/// `GET /drills/{id}`.
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let d = visible(&app, &viewer.scope, &id).await?;
    Ok(render(&DrillPage {
        chrome: Chrome::new(&viewer, "/drills", format!("Drill {id}")),
        id: d.id.clone(),
        live: html(&drill_live(&d, &viewer, app.clock.now()))?,
    }))
}

/// `GET /_/drills/{id}`: the live part, polled while the drill runs.
pub(crate) async fn fragment_one(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let d = visible(&app, &viewer.scope, &id).await?;
    Ok(render(&drill_live(&d, &viewer, app.clock.now())))
}

/// `POST /drills/{id}/cancel`.
pub(crate) async fn cancel(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let d = cancel_drill(&app, &viewer.scope, &id).await?;
    Ok(Redirect::to(&format!("/drills/{}", segment(&d.id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_store::DrillTrigger;

    fn drill(id: &str, state: DrillState, started: i64) -> Drill {
        Drill {
            id: id.into(),
            scenario: Scenario::QueueStall,
            target: "maelys-kustomer".into(),
            tenant: Some("maelys".into()),
            trigger: DrillTrigger::Manual,
            schedule: None,
            state,
            created_by: "operator".into(),
            started_at: Timestamp(started),
            expires_at: Timestamp(started + 300_000),
            detected_at: None,
            notified_at: None,
            healed_at: None,
            report: serde_json::Value::Null,
        }
    }

    #[test]
    fn running_drills_come_first_then_the_newest() {
        use DrillState::{Cancelled, Failed, Passed, Running};
        let all = vec![
            drill("a", Passed, 5),
            drill("b", Running, 1),
            drill("c", Failed, 9),
            drill("d", Running, 3),
            drill("e", Cancelled, 7),
        ];
        let ids: Vec<String> = running_first(all).into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["d", "b", "c", "e", "a"]);
    }

    #[test]
    fn the_form_sends_only_the_target_its_scenario_takes() {
        let form = |scenario: &str| DrillForm {
            scenario: scenario.into(),
            source: "maelys-kustomer".into(),
            destination: "handler".into(),
            notifier: "".into(),
            duration: " 10m ".into(),
        };
        let r = form("queue-stall").request();
        assert_eq!(
            (r.source.as_deref(), r.destination.as_deref(), r.notifier),
            (Some("maelys-kustomer"), None, None)
        );
        assert_eq!(r.for_.as_deref(), Some("10m"));
        let r = form("handler-down").request();
        assert_eq!(
            (r.source, r.destination.as_deref()),
            (None, Some("handler"))
        );
        // The notifier select left empty: nothing sent, so the API says which target is missing.
        let r = form("notifier-down").request();
        assert_eq!((r.source, r.destination, r.notifier), (None, None, None));
        // An unknown scenario keeps everything: the API's refusal names the scenario.
        let r = form("meteor").request();
        assert_eq!(r.scenario, "meteor");
        assert!(r.source.is_some() && r.destination.is_some());
    }

    #[test]
    fn the_course_of_a_drill_reads_from_the_fault() {
        let mut d = drill("x", DrillState::Passed, 0);
        d.detected_at = Some(Timestamp(125_000));
        d.healed_at = Some(Timestamp(131_000));
        let steps = course(&d, &DrillReport::default());
        let after: Vec<&str> = steps.iter().map(|s| s.after.as_str()).collect();
        assert_eq!(after, ["+0s", "+2m 5s", "—", "+2m 11s"]);
        let classes: Vec<&str> = steps.iter().map(|s| s.class).collect();
        assert_eq!(classes, ["info", "ok", "pending", "ok"]);
    }
}
