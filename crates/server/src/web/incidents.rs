//! `/incidents`: the open incidents first, then the recently resolved ones; declare one; each
//! incident's page (`/incidents/{id}`, where on-call's incident notices link) with its
//! timeline — alerts, the notices sent to on-call and to each tenant's contacts with whether
//! they were delivered, people's updates, recovery jobs — its response times, the update and
//! resolve forms, and its postmortem draft.
//!
//! Every read and write goes through the admin API's own functions
//! (`api::incidents::{declare_incident, update_incident, resolve_incident, list_incidents,
//! incident_detail, postmortem_draft}`), so the scope rules are the API's: a tenant session
//! reads its own incidents (its slice of them) and may not declare, update or resolve; a
//! refusal comes back on the form with the API's reason.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use intake_core::incident::{IncidentSeverity, IncidentState};
use intake_core::Timestamp;

use super::page::{
    ago, duration, html, options, query_string, render, render_with, segment, when, Chrome, Opt,
    PageError, PageResult, Viewer,
};
use crate::api::incidents::{
    declare_incident, incident_detail, list_incidents, postmortem_draft, resolve_incident,
    update_incident,
};
use crate::api::problem::Problem;
use crate::api::Scope;
use crate::duties::incidents::lifecycle::{DeclareRequest, ResolveRequest, UpdateRequest};
use crate::duties::incidents::view::{TimelineItem, Times};
use crate::duties::incidents::{IncidentDetail, IncidentView};
use crate::state::AppState;

/// How many incidents the list reads (open ones are never many; the rest are the recent).
const LISTED: usize = 200;
/// How many resolved incidents the list shows.
const RECENT: usize = 30;

/// One incident as a line of a list (this page's and the overview's).
pub(crate) struct IncidentLine {
    pub id: String,
    pub href: String,
    pub title: String,
    pub status: String,
    /// The status badge's class: the severity's colour while open, `ok` once resolved.
    pub class: &'static str,
    pub severity: String,
    pub tenants: String,
    /// How long the impact has lasted (or lasted).
    pub impact: String,
    pub declared: String,
    pub commander: String,
    pub resolved: String,
}

/// The colour (and shape) of a severity.
fn severity_class(s: IncidentSeverity) -> &'static str {
    match s {
        IncidentSeverity::Critical => "critical",
        IncidentSeverity::Major => "warning",
        IncidentSeverity::Minor => "info",
    }
}

/// `v` as a line, at `now`.
pub(crate) fn line(v: &IncidentView, now: Timestamp) -> IncidentLine {
    let open = v.status != IncidentState::Resolved;
    IncidentLine {
        href: format!("/incidents/{}", segment(&v.id)),
        id: v.id.clone(),
        title: v.title.clone(),
        status: v.status.as_str().into(),
        class: if open {
            severity_class(v.severity)
        } else {
            "ok"
        },
        severity: v.severity.as_str().into(),
        tenants: v.tenants.join(", "),
        impact: duration(v.impact_seconds),
        declared: format!("{} ago by {}", ago(now, v.declared_at), v.declared_by),
        commander: v.commander.clone().unwrap_or_else(|| "—".into()),
        resolved: v.resolved_at.map(when).unwrap_or_default(),
    }
}

/// The open incidents, the most severe first and then the newest, and the resolved ones, the
/// most recently resolved first (at most [`RECENT`]).
pub(crate) fn open_first(all: Vec<IncidentView>) -> (Vec<IncidentView>, Vec<IncidentView>) {
    let (mut open, mut resolved): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|i| i.status != IncidentState::Resolved);
    let rank = |s: IncidentSeverity| IncidentSeverity::ALL.iter().position(|x| *x == s);
    open.sort_by(|a, b| {
        (rank(a.severity), std::cmp::Reverse(a.declared_at), &a.id).cmp(&(
            rank(b.severity),
            std::cmp::Reverse(b.declared_at),
            &b.id,
        ))
    });
    resolved.sort_by_key(|i| std::cmp::Reverse((i.resolved_at, i.declared_at)));
    resolved.truncate(RECENT);
    (open, resolved)
}

/// The open incidents `viewer` may see, as lines, for the overview.
pub(crate) async fn open_lines(
    app: &AppState,
    viewer: &Viewer,
) -> Result<Vec<IncidentLine>, PageError> {
    let all = list_incidents(app, &viewer.scope, None, true, LISTED).await?;
    let now = app.clock.now();
    let (open, _) = open_first(all);
    Ok(open.iter().map(|v| line(v, now)).collect())
}

/// The declaration form. Its tenants and sources are checkboxes (repeated fields), which
/// `axum::Form` cannot read into lists, so it is read from the pairs of the body.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeclareForm {
    title: String,
    tenants: Vec<String>,
    sources: Vec<String>,
    severity: String,
    impact_start: String,
    commander: String,
    message: String,
    author: String,
}

/// A form's value, trimmed; empty is not given.
fn given(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|v| !v.is_empty())
}

impl DeclareForm {
    /// The form as posted (unknown fields, `_csrf` among them, are ignored).
    fn parse(body: &[u8]) -> Self {
        let mut f = DeclareForm::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let v = v.into_owned();
            match k.as_ref() {
                "title" => f.title = v,
                "tenant" => f.tenants.push(v),
                "source" => f.sources.push(v),
                "severity" => f.severity = v,
                "impact_start" => f.impact_start = v,
                "commander" => f.commander = v,
                "message" => f.message = v,
                "author" => f.author = v,
                _ => {}
            }
        }
        f
    }

    /// The API request this form asks for.
    fn request(&self) -> DeclareRequest {
        let list = |l: &[String]| l.iter().filter_map(|v| given(v)).collect();
        DeclareRequest {
            title: given(&self.title),
            tenants: list(&self.tenants),
            sources: list(&self.sources),
            channels: Vec::new(),
            severity: given(&self.severity),
            impact_start: given(&self.impact_start),
            commander: given(&self.commander),
            message: given(&self.message),
            author: given(&self.author),
        }
    }
}

/// A checkbox of the form.
pub(crate) struct Check {
    pub value: String,
    pub note: String,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    chrome: Chrome,
    operator: bool,
    form: DeclareForm,
    tenants: Vec<Check>,
    sources: Vec<Check>,
    severities: Vec<Opt>,
    error: Option<String>,
    live: String,
}

#[derive(Template)]
#[template(path = "incidents_live.html")]
struct IncidentsLive {
    open: Vec<IncidentLine>,
    recent: Vec<IncidentLine>,
    as_of: String,
}

async fn incidents_live(app: &AppState, viewer: &Viewer) -> Result<IncidentsLive, PageError> {
    let all = list_incidents(app, &viewer.scope, None, false, LISTED).await?;
    let now = app.clock.now();
    let (open, recent) = open_first(all);
    Ok(IncidentsLive {
        open: open.iter().map(|v| line(v, now)).collect(),
        recent: recent.iter().map(|v| line(v, now)).collect(),
        as_of: when(now),
    })
}

async fn incidents_page(
    app: &AppState,
    viewer: &Viewer,
    form: DeclareForm,
    error: Option<String>,
) -> Result<IncidentsPage, PageError> {
    let live = html(&incidents_live(app, viewer).await?)?;
    let tenant = viewer.tenant();
    let tenants = app
        .config
        .tenants
        .iter()
        .filter(|t| tenant.as_ref().is_none_or(|own| *own == t.id))
        .map(|t| Check {
            checked: form.tenants.contains(&t.id),
            note: t.name.clone().filter(|n| *n != t.id).unwrap_or_default(),
            value: t.id.clone(),
        })
        .collect();
    let sources = app
        .config
        .sources
        .iter()
        .filter(|s| tenant.as_ref().is_none_or(|own| *own == s.tenant))
        .map(|s| Check {
            checked: form.sources.contains(&s.id),
            note: s.tenant.clone(),
            value: s.id.clone(),
        })
        .collect();
    let chosen = if form.severity.is_empty() {
        IncidentSeverity::Major.as_str()
    } else {
        form.severity.as_str()
    };
    Ok(IncidentsPage {
        chrome: Chrome::new(viewer, "/incidents", "Incidents"),
        operator: matches!(viewer.scope, Scope::Operator),
        severities: options(
            IncidentSeverity::ALL.map(|s| s.as_str().to_string()),
            chosen,
        ),
        tenants,
        sources,
        form,
        error,
        live,
    })
}

/// `GET /incidents`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let form = DeclareForm::default();
    Ok(render(&incidents_page(&app, &viewer, form, None).await?))
}

/// `GET /_/incidents`: the lists, polled.
pub(crate) async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    Ok(render(&incidents_live(&app, &viewer).await?))
}

/// A refusal (< 500) is shown on its form with the API's reason and status; anything else
/// (the store failing) is an error page.
fn refusal(p: Problem) -> Result<(StatusCode, String), PageError> {
    if p.status >= 500 {
        return Err(p.into());
    }
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    Ok((status, p.detail))
}

/// `page` answered with `status`.
fn with_status(mut page: axum::response::Response, status: StatusCode) -> PageResult {
    *page.status_mut() = status;
    Ok(page)
}

/// `POST /incidents`: declared, the browser goes to its page; refused, the form comes back
/// with the API's reason.
pub(crate) async fn declare(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    body: Bytes,
) -> PageResult {
    let form = DeclareForm::parse(&body);
    match declare_incident(&app, &viewer.scope, &form.request()).await {
        Ok(d) => Ok(to_incident(&d.incident.id)),
        Err(p) => {
            let (status, why) = refusal(p)?;
            let page = incidents_page(&app, &viewer, form, Some(why)).await?;
            Ok(render_with(status, &page))
        }
    }
}

fn to_incident(id: &str) -> axum::response::Response {
    Redirect::to(&format!("/incidents/{}", segment(id))).into_response()
}

/// One thing of a timeline, for people.
pub(crate) struct TimelineRow {
    pub at: String,
    pub kind: String,
    pub class: &'static str,
    pub text: String,
    pub author: String,
    /// Where to read more (the alert, the recovery job), if anywhere.
    pub href: Option<String>,
}

/// The colour (and shape) of a timeline item: what happened, and for a notice whether it
/// arrived.
fn item_class(t: &TimelineItem) -> &'static str {
    match t.kind.as_str() {
        "alert_firing" => "critical",
        "alert_resolved" | "recovery_finished" | "resolved" => "ok",
        "tenant_notice_held" => "pending",
        "notice" => match t.detail["state"].as_str() {
            Some("sent") => "ok",
            Some("dead") => "critical",
            _ if t.detail["attempts"].as_u64().unwrap_or(0) > 0 => "warning",
            _ => "pending",
        },
        _ => "info",
    }
}

/// The word shown for a timeline item's kind.
fn item_word(t: &TimelineItem) -> String {
    match t.kind.as_str() {
        "notice" => match t.detail["state"].as_str() {
            Some("sent") => "notice delivered".into(),
            Some("dead") => "notice failed".into(),
            _ => "notice pending".into(),
        },
        other => other.replace('_', " "),
    }
}

fn item_href(t: &TimelineItem) -> Option<String> {
    match t.kind.as_str() {
        "alert_firing" | "alert_resolved" => {
            let rule = t.detail["rule"].as_str()?;
            let labels: std::collections::BTreeMap<String, String> =
                serde_json::from_value(t.detail["labels"].clone()).unwrap_or_default();
            let mut pairs = vec![("rule", rule)];
            pairs.extend(
                ["tenant", "source", "channel", "destination"]
                    .iter()
                    .filter_map(|k| labels.get(*k).map(|v| (*k, v.as_str()))),
            );
            Some(format!("/alerts{}", query_string(&pairs)))
        }
        "recovery_started" | "recovery_finished" => t.detail["recovery"]
            .as_str()
            .map(|id| format!("/recoveries/{}", segment(id))),
        _ => None,
    }
}

/// What a timeline item says. A notice is said from its numbers (the badge already says
/// whether it arrived; its time is in its own column); the rest as the API words it.
fn item_text(t: &TimelineItem) -> String {
    if t.kind != "notice" {
        return t.text.clone();
    }
    let d = &t.detail;
    let step = d["step"].as_str().unwrap_or("incident");
    let to = d["recipient"].as_str().unwrap_or("?");
    let error = d["last_error"].as_str().unwrap_or("no answer");
    match (d["state"].as_str(), d["attempts"].as_u64().unwrap_or(0)) {
        (Some("sent"), _) => format!("The {step} notice to {to}"),
        (Some("dead"), _) => format!("The {step} notice to {to}, given up: {error}"),
        (_, 0) => format!("The {step} notice to {to}, waiting to be sent"),
        (_, n) => format!("The {step} notice to {to}, {n} attempt(s) so far; last: {error}"),
    }
}

fn timeline_row(t: &TimelineItem) -> TimelineRow {
    TimelineRow {
        at: when(t.at),
        kind: item_word(t),
        class: item_class(t),
        text: item_text(t),
        author: t.author.clone().unwrap_or_default(),
        href: item_href(t),
    }
}

/// The response times as (what, how long from the impact start) pairs, those known.
fn times_rows(t: &Times) -> Vec<(String, String)> {
    let d = |s: Option<u64>| s.map(duration).unwrap_or_else(|| "—".into());
    vec![
        ("time to detect".into(), d(t.time_to_detect)),
        ("time to notify tenants".into(), d(t.time_to_notify)),
        (
            "declared → first tenant notice".into(),
            d(t.declared_to_first_tenant_notice),
        ),
        ("time to mitigate".into(), d(t.time_to_mitigate)),
        ("time to resolve".into(), d(t.time_to_resolve)),
    ]
}

#[derive(Template)]
#[template(path = "incident_live.html")]
struct IncidentLive {
    i: IncidentLine,
    facts: Vec<(String, String)>,
    times: Vec<(String, String)>,
    timeline: Vec<TimelineRow>,
    refresh: String,
    as_of: String,
}

fn incident_live(d: &IncidentDetail, now: Timestamp) -> IncidentLive {
    let v = &d.incident;
    let all = |l: &[String], none: &str| {
        if l.is_empty() {
            none.to_string()
        } else {
            l.join(", ")
        }
    };
    let mut facts = vec![
        ("severity".to_string(), v.severity.as_str().to_string()),
        ("tenants".into(), all(&v.tenants, "—")),
        ("sources".into(), all(&v.sources, "all of the tenants'")),
        ("channels".into(), all(&v.channels, "all")),
        (
            "lead".into(),
            v.commander.clone().unwrap_or_else(|| "nobody named".into()),
        ),
        ("impact since".into(), when(v.impact_start)),
        (
            "declared".into(),
            format!("{} by {}", when(v.declared_at), v.declared_by),
        ),
    ];
    match (v.resolved_at, v.next_update_at) {
        (Some(r), _) => facts.push(("resolved".into(), when(r))),
        (None, Some(n)) => facts.push((
            "next update promised".into(),
            if n < now {
                format!("{} (overdue by {})", when(n), ago(now, n))
            } else {
                when(n)
            },
        )),
        (None, None) => {}
    }
    if let Some(drill) = &v.drill {
        facts.push((
            "fire drill".into(),
            format!("{drill}: declared by the drill's alert, not a real outage"),
        ));
    }
    IncidentLive {
        refresh: format!("/_/incidents/{}", segment(&v.id)),
        i: line(v, now),
        facts,
        times: times_rows(&d.times),
        // Newest first: on-call reads what just happened.
        timeline: d.timeline.iter().rev().map(timeline_row).collect(),
        as_of: when(now),
    }
}

/// What the update and resolve forms hold (pre-filled, or as sent when refused).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct StepForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    commander: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    author: String,
}

/// Which form a refusal belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Update,
    Resolve,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    chrome: Chrome,
    id: String,
    href: String,
    open: bool,
    operator: bool,
    statuses: Vec<Opt>,
    severities: Vec<Opt>,
    form: StepForm,
    update_error: Option<String>,
    resolve_error: Option<String>,
    live: String,
}

async fn incident_page(
    app: &AppState,
    viewer: &Viewer,
    id: &str,
    form: StepForm,
    error: Option<(Step, String)>,
) -> PageResult {
    let d = incident_detail(app, &viewer.scope, id).await?;
    let now = app.clock.now();
    let v = &d.incident;
    let status = if form.status.is_empty() {
        v.status.as_str()
    } else {
        &form.status
    };
    let severity = if form.severity.is_empty() {
        v.severity.as_str()
    } else {
        &form.severity
    };
    let (update_error, resolve_error) = match error {
        Some((Step::Update, e)) => (Some(e), None),
        Some((Step::Resolve, e)) => (None, Some(e)),
        None => (None, None),
    };
    let page = IncidentPage {
        chrome: Chrome::new(viewer, "/incidents", format!("Incident {}", v.title)),
        id: v.id.clone(),
        href: format!("/incidents/{}", segment(&v.id)),
        open: v.status != IncidentState::Resolved,
        operator: matches!(viewer.scope, Scope::Operator),
        statuses: options(
            IncidentState::ALL
                .iter()
                .filter(|s| **s != IncidentState::Resolved)
                .map(|s| s.as_str().to_string()),
            status,
        ),
        severities: options(
            IncidentSeverity::ALL.map(|s| s.as_str().to_string()),
            severity,
        ),
        form,
        update_error,
        resolve_error,
        live: html(&incident_live(&d, now))?,
    };
    Ok(render(&page))
}

/// `GET /incidents/{id}`: where on-call's incident notices link.
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    incident_page(&app, &viewer, &id, StepForm::default(), None).await
}

/// `GET /_/incidents/{id}`: the record, the response times and the timeline, polled.
pub(crate) async fn fragment_one(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let d = incident_detail(&app, &viewer.scope, &id).await?;
    Ok(render(&incident_live(&d, app.clock.now())))
}

/// `POST /incidents/{id}/updates`.
pub(crate) async fn update(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<StepForm>,
) -> PageResult {
    let req = UpdateRequest {
        status: given(&form.status),
        message: given(&form.message),
        commander: given(&form.commander),
        severity: given(&form.severity),
        author: given(&form.author),
    };
    match update_incident(&app, &viewer.scope, &id, &req).await {
        Ok(d) => Ok(to_incident(&d.incident.id)),
        Err(p) => {
            let (status, why) = refusal(p)?;
            let page = incident_page(&app, &viewer, &id, form, Some((Step::Update, why))).await?;
            with_status(page, status)
        }
    }
}

/// `POST /incidents/{id}/resolve`.
pub(crate) async fn resolve(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<StepForm>,
) -> PageResult {
    let req = ResolveRequest {
        message: given(&form.message),
        author: given(&form.author),
    };
    match resolve_incident(&app, &viewer.scope, &id, &req).await {
        Ok(d) => Ok(to_incident(&d.incident.id)),
        Err(p) => {
            let (status, why) = refusal(p)?;
            let page = incident_page(&app, &viewer, &id, form, Some((Step::Resolve, why))).await?;
            with_status(page, status)
        }
    }
}

#[derive(Template)]
#[template(path = "postmortem.html")]
struct PostmortemPage {
    chrome: Chrome,
    id: String,
    href: String,
    title: String,
    markdown: String,
}

/// `GET /incidents/{id}/postmortem`: the Markdown draft, to copy into the postmortem
/// document (the operator's, as through the API).
pub(crate) async fn postmortem(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let markdown = postmortem_draft(&app, &viewer.scope, &id).await?;
    let d = incident_detail(&app, &viewer.scope, &id).await?;
    Ok(render(&PostmortemPage {
        chrome: Chrome::new(&viewer, "/incidents", format!("Postmortem {id}")),
        href: format!("/incidents/{}", segment(&id)),
        title: d.incident.title,
        id,
        markdown,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn incident(
        id: &str,
        sev: IncidentSeverity,
        declared: i64,
        resolved: Option<i64>,
    ) -> IncidentView {
        IncidentView {
            id: id.into(),
            title: format!("incident {id}"),
            severity: sev,
            status: if resolved.is_some() {
                IncidentState::Resolved
            } else {
                IncidentState::Investigating
            },
            tenants: vec!["maelys".into()],
            sources: Vec::new(),
            channels: Vec::new(),
            commander: None,
            impact_start: Timestamp(declared),
            declared_at: Timestamp(declared),
            declared_by: "operator".into(),
            updated_at: Timestamp(declared),
            resolved_at: resolved.map(Timestamp),
            next_update_at: None,
            impact_seconds: 0,
            drill: None,
        }
    }

    #[test]
    fn open_incidents_come_first_the_most_severe_then_the_newest() {
        use IncidentSeverity::{Critical, Major, Minor};
        let all = vec![
            incident("a", Minor, 5, None),
            incident("b", Major, 1, Some(10)),
            incident("c", Major, 3, None),
            incident("d", Critical, 1, None),
            incident("e", Major, 4, None),
            incident("f", Critical, 2, Some(20)),
        ];
        let (open, recent) = open_first(all);
        let ids = |l: &[IncidentView]| l.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&open), ["d", "e", "c", "a"]);
        assert_eq!(ids(&recent), ["f", "b"], "the most recently resolved first");
    }

    #[test]
    fn a_line_is_coloured_by_severity_while_open_and_ok_once_resolved() {
        let now = Timestamp(3_600_000);
        let cases = [
            (IncidentSeverity::Critical, None, "critical"),
            (IncidentSeverity::Major, None, "warning"),
            (IncidentSeverity::Minor, None, "info"),
            (IncidentSeverity::Critical, Some(1), "ok"),
        ];
        for (sev, resolved, class) in cases {
            let l = line(&incident("x", sev, 0, resolved), now);
            assert_eq!(l.class, class, "{sev:?} {resolved:?}");
            assert_eq!(l.href, "/incidents/x");
        }
    }

    #[test]
    fn timeline_items_say_what_happened_and_whether_a_notice_arrived() {
        let item = |kind: &str, detail: serde_json::Value| TimelineItem {
            at: Timestamp(0),
            kind: kind.into(),
            author: None,
            text: String::new(),
            detail,
        };
        let cases = [
            (item("alert_firing", json!({})), "critical", "alert firing"),
            (item("alert_resolved", json!({})), "ok", "alert resolved"),
            (item("declared", json!({})), "info", "declared"),
            (
                item("notice", json!({"state": "sent", "attempts": 1})),
                "ok",
                "notice delivered",
            ),
            (
                item("notice", json!({"state": "pending", "attempts": 0})),
                "pending",
                "notice pending",
            ),
            (
                item("notice", json!({"state": "pending", "attempts": 3})),
                "warning",
                "notice pending",
            ),
            (
                item("notice", json!({"state": "dead", "attempts": 400})),
                "critical",
                "notice failed",
            ),
            (
                item("tenant_notice_held", json!({})),
                "pending",
                "tenant notice held",
            ),
        ];
        for (t, class, word) in cases {
            assert_eq!(
                (item_class(&t), item_word(&t).as_str()),
                (class, word),
                "{}",
                t.kind
            );
        }
        let alert = item(
            "alert_firing",
            json!({"rule": "queue_stalled", "labels": {"tenant": "maelys", "source": "a b"}}),
        );
        assert_eq!(
            item_href(&alert).as_deref(),
            Some("/alerts?rule=queue_stalled&tenant=maelys&source=a+b")
        );
        let notice = |state: &str, attempts: u64| {
            item(
                "notice",
                json!({"step": "declared", "recipient": "on-call (hook)", "state": state,
                       "attempts": attempts, "last_error": "503 Service Unavailable"}),
            )
        };
        let said: Vec<String> = [
            notice("sent", 1),
            notice("pending", 0),
            notice("pending", 2),
            notice("dead", 400),
        ]
        .iter()
        .map(item_text)
        .collect();
        assert_eq!(
            said,
            [
                "The declared notice to on-call (hook)",
                "The declared notice to on-call (hook), waiting to be sent",
                "The declared notice to on-call (hook), 2 attempt(s) so far; last: 503 Service Unavailable",
                "The declared notice to on-call (hook), given up: 503 Service Unavailable",
            ]
        );
        let job = item("recovery_finished", json!({"recovery": "rec_1"}));
        assert_eq!(item_href(&job).as_deref(), Some("/recoveries/rec_1"));
        assert_eq!(item_href(&item("update", json!({}))), None);
    }

    #[test]
    fn the_declaration_form_reads_its_checkboxes_into_lists() {
        let body = b"_csrf=x&title=+Late+events+&tenant=maelys&tenant=other&source=&severity=critical&impact_start=&message=We+know&author=alice&unknown=1";
        let r = DeclareForm::parse(body).request();
        assert_eq!(r.title.as_deref(), Some("Late events"));
        assert_eq!(r.tenants, ["maelys", "other"]);
        assert!(r.sources.is_empty(), "an empty value is not a source");
        assert_eq!(r.severity.as_deref(), Some("critical"));
        assert_eq!(r.impact_start, None, "empty: now, as the API decides");
        assert_eq!(r.message.as_deref(), Some("We know"));
        assert_eq!(r.author.as_deref(), Some("alice"));
        assert_eq!(r.commander, None);
        // Nothing filled in: nothing asked, so the API's own refusal names what is missing.
        let r = DeclareForm::parse(b"").request();
        assert_eq!((r.title, r.tenants.len()), (None, 0));
    }
}
