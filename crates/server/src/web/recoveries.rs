//! `/recoveries`: start a recovery job (a dry run by default), read its report, run it for
//! real, watch its progress, cancel it. Jobs are created through the admin API's own
//! `create_job` (the recovery duty's checks, the same tenant rules) and run by the recovery
//! duty on whichever node holds it; these pages only read them back.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use intake_store::{RecoveryFilter, RecoveryJob};
use serde::Deserialize;

use super::page::{
    ago, duration, html, options, render, render_with, segment, when, Chrome, Opt, PageError,
    PageResult, Viewer,
};
use crate::api::problem::Problem;
use crate::api::recoveries::{cancel_job, create_job, visible};
use crate::duties::recovery::params::{JobRequest, Params};
use crate::duties::recovery::report::{Counts, Report};
use crate::state::AppState;

/// The form that starts a job.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct JobForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    dry_run: Option<String>,
}

impl JobForm {
    fn request(&self) -> JobRequest {
        let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        JobRequest {
            kind: given(&self.kind),
            source: given(&self.source),
            from: given(&self.from),
            to: given(&self.to),
            dry_run: self.dry_run.is_some(),
            ..JobRequest::default()
        }
    }
}

/// The request that runs for real what a dry run reported: the same parameters, as stored.
pub(crate) fn real_run(job: &RecoveryJob) -> Result<JobRequest, Problem> {
    let p: Params = serde_json::from_value(job.params.clone()).map_err(|e| {
        Problem::internal(format!("the job's stored parameters are unreadable: {e}"))
    })?;
    Ok(JobRequest {
        kind: Some(job.kind.as_str().to_string()),
        source: Some(job.source.clone()),
        from: Some(p.from.to_rfc3339()),
        to: Some(p.to.to_rfc3339()),
        dry_run: false,
        margin: (p.margin_secs > 0).then(|| format!("{}s", p.margin_secs)),
        state: p.filter.state.map(|s| s.as_str().to_string()),
        destination: p.filter.destination,
        event_type: p.filter.event_type,
        origin: p.filter.origin.map(|o| o.as_str().to_string()),
        channel: p.filter.channel,
        include_retrying: p.include_retrying,
        // A dry run's replay key is its own; the real run keeps the button's meaning
        // ("deliver these again") even if an identical job ran before.
        force: true,
        concurrent: p.concurrent,
        sample: Some(p.sample),
    })
}

pub(crate) struct JobLine {
    pub id: String,
    pub href: String,
    pub kind: String,
    pub source: String,
    pub window: String,
    pub dry_run: bool,
    pub state: String,
    pub class: &'static str,
    pub progress: String,
    pub created: String,
}

fn state_class(job: &RecoveryJob) -> &'static str {
    match job.state.as_str() {
        "succeeded" => "ok",
        "failed" => "critical",
        "cancelled" => "learning",
        "running" => "info",
        _ => "pending",
    }
}

fn window(job: &RecoveryJob) -> String {
    let t = |k: &str| {
        job.params[k]
            .as_i64()
            .map(|ms| when(intake_core::Timestamp(ms)))
            .or_else(|| job.params[k].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    format!("{} → {}", t("from"), t("to"))
}

fn progress_text(job: &RecoveryJob) -> String {
    let n = |k: &str| job.progress[k].as_u64().unwrap_or(0);
    if job.dry_run {
        return format!(
            "would do {} · {} seen · {} pages",
            n("todo"),
            n("seen"),
            n("pages")
        );
    }
    format!(
        "{} done of {} to do · {} seen · {} pages",
        n("done"),
        n("todo"),
        n("seen"),
        n("pages")
    )
}

fn job_line(job: &RecoveryJob, now: intake_core::Timestamp) -> JobLine {
    JobLine {
        href: format!("/recoveries/{}", segment(&job.id)),
        id: job.id.clone(),
        kind: job.kind.as_str().into(),
        source: job.source.clone(),
        window: window(job),
        dry_run: job.dry_run,
        state: job.state.as_str().into(),
        class: state_class(job),
        progress: progress_text(job),
        created: format!("{} ago by {}", ago(now, job.created_at), job.created_by),
    }
}

#[derive(Template)]
#[template(path = "recoveries.html")]
struct RecoveriesPage {
    chrome: Chrome,
    form: JobForm,
    dry_run: bool,
    kinds: Vec<Opt>,
    sources: Vec<Opt>,
    error: Option<String>,
    jobs: Vec<JobLine>,
}

async fn recoveries_page(
    app: &AppState,
    viewer: &Viewer,
    form: JobForm,
    error: Option<String>,
) -> Result<RecoveriesPage, PageError> {
    let jobs = app
        .store
        .list_recoveries(RecoveryFilter {
            tenant: viewer.tenant(),
            limit: 50,
            ..RecoveryFilter::default()
        })
        .await?;
    let now = app.clock.now();
    let tenant = viewer.tenant();
    Ok(RecoveriesPage {
        chrome: Chrome::new(viewer, "/recoveries", "Recovery"),
        dry_run: form.dry_run.is_some() || error.is_none(),
        kinds: options(
            ["backfill", "replay", "requeue"].map(String::from),
            &form.kind,
        ),
        sources: options(
            app.config
                .sources
                .iter()
                .filter(|s| tenant.as_ref().is_none_or(|t| *t == s.tenant))
                .map(|s| s.id.clone()),
            &form.source,
        ),
        form,
        error,
        jobs: jobs.iter().map(|j| job_line(j, now)).collect(),
    })
}

/// `GET /recoveries`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let now = app.clock.now();
    let form = JobForm {
        from: now.minus(std::time::Duration::from_secs(3600)).to_rfc3339(),
        to: now.to_rfc3339(),
        dry_run: Some("on".into()),
        ..JobForm::default()
    };
    Ok(render(&recoveries_page(&app, &viewer, form, None).await?))
}

/// `POST /recoveries`: the job's page once queued, or the form again with the refusal.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Form(form): Form<JobForm>,
) -> PageResult {
    match create_job(&app, &viewer.scope, &form.request()).await {
        Ok(job) => Ok(Redirect::to(&format!("/recoveries/{}", segment(&job.id))).into_response()),
        Err(p) if p.status < 500 => {
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            let page = recoveries_page(&app, &viewer, form, Some(p.detail)).await?;
            Ok(render_with(status, &page))
        }
        Err(p) => Err(p.into()),
    }
}

/// A table of counts by one key.
pub(crate) struct CountTable {
    pub title: String,
    pub rows: Vec<(String, u64)>,
}

fn count_tables(c: &Counts) -> Vec<CountTable> {
    let t = |title: &str, m: &BTreeMap<String, u64>| CountTable {
        title: title.to_string(),
        rows: m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    };
    [
        t("by channel", &c.by_channel),
        t("by event type", &c.by_event_type),
        t(
            "new conversations by channel",
            &c.new_conversations_by_channel,
        ),
    ]
    .into_iter()
    .filter(|t| !t.rows.is_empty())
    .collect()
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    chrome: Chrome,
    id: String,
    live: String,
}

#[derive(Template)]
#[template(path = "recovery_live.html")]
struct RecoveryLive {
    job: JobLine,
    /// Polling stops once the job has ended.
    refresh: Option<String>,
    percent: u64,
    facts: Vec<(String, String)>,
    tables: Vec<CountTable>,
    items: Vec<String>,
    error: Option<String>,
    can_run: bool,
    can_cancel: bool,
    csrf: String,
    raw: String,
}

fn live(job: &RecoveryJob, viewer: &Viewer, now: intake_core::Timestamp) -> RecoveryLive {
    let report: Option<Report> = serde_json::from_value(job.report.clone()).ok();
    let todo = job.progress["todo"].as_u64().unwrap_or(0);
    let done = job.progress["done"].as_u64().unwrap_or(0);
    let mut facts = vec![
        ("state".to_string(), job.state.as_str().to_string()),
        (
            "started".into(),
            job.started_at.map(when).unwrap_or_else(|| "not yet".into()),
        ),
        (
            "finished".into(),
            job.finished_at.map(when).unwrap_or_else(|| "—".into()),
        ),
    ];
    if let Some(r) = &report {
        facts.push(("looked at".into(), r.seen.to_string()));
        facts.push((
            if job.dry_run { "would do" } else { "to do" }.into(),
            r.todo.total.to_string(),
        ));
        facts.push(("done".into(), r.done.to_string()));
        if r.already_received > 0 {
            facts.push(("already received".into(), r.already_received.to_string()));
        }
        if let Some(sor) = &r.sor {
            facts.push((
                "system of record".into(),
                format!(
                    "{} requests, {} throttled; about {} at {}/min",
                    sor.requests,
                    sor.throttled,
                    duration(sor.estimated_seconds.max(0.0) as u64),
                    sor.rate_limit_per_minute
                ),
            ));
        }
    }
    RecoveryLive {
        refresh: (!job.state.is_final()).then(|| format!("/_/recoveries/{}", segment(&job.id))),
        percent: (done * 100).checked_div(todo).unwrap_or(0).min(100),
        facts,
        tables: report
            .as_ref()
            .map(|r| count_tables(&r.todo))
            .unwrap_or_default(),
        items: report
            .as_ref()
            .map(|r| {
                r.items
                    .iter()
                    .map(|i| format!("{} {} {}", i.key, i.event_type, i.channel))
                    .collect()
            })
            .unwrap_or_default(),
        error: job.error.clone(),
        can_run: job.dry_run && job.state.as_str() == "succeeded",
        can_cancel: !job.state.is_final(),
        csrf: viewer.csrf.clone(),
        raw: serde_json::to_string_pretty(&job.report).unwrap_or_default(),
        job: job_line(job, now),
    }
}

/// `GET /recoveries/{id}`.
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let job = visible(&app, &viewer.scope, &id).await?;
    let live = live(&job, &viewer, app.clock.now());
    Ok(render(&RecoveryPage {
        chrome: Chrome::new(&viewer, "/recoveries", format!("Recovery {id}")),
        id: job.id.clone(),
        live: html(&live)?,
    }))
}

/// `GET /_/recoveries/{id}`: the live part, polled while the job runs.
pub(crate) async fn fragment(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let job = visible(&app, &viewer.scope, &id).await?;
    Ok(render(&live(&job, &viewer, app.clock.now())))
}

/// `POST /recoveries/{id}/run`: the real run of a dry run's parameters.
pub(crate) async fn run(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let job = visible(&app, &viewer.scope, &id).await?;
    if !job.dry_run {
        return Err(Problem::bad_request(
            "not-a-dry-run",
            format!("recovery job `{id}` is not a dry run: it already ran for real"),
        )
        .into());
    }
    let new = create_job(&app, &viewer.scope, &real_run(&job)?).await?;
    Ok(Redirect::to(&format!("/recoveries/{}", segment(&new.id))).into_response())
}

/// `POST /recoveries/{id}/cancel`.
pub(crate) async fn cancel(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let job = cancel_job(&app, &viewer.scope, &id).await?;
    Ok(Redirect::to(&format!("/recoveries/{}", segment(&job.id))).into_response())
}
