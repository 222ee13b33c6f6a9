//! `/audit`: the conservation audit of one source's window (received is accepted plus
//! duplicates plus rejected; accepted is stored; per destination, delivered plus pending plus
//! dead is the events), read and judged by `duties::audit`, as `GET /api/v1/audit` and
//! `intake audit` answer it.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Extension;
use intake_core::Timestamp;

use super::page::{options, query, render, when, Chrome, Opt, PageError, PageResult, Viewer};
use crate::api::problem::Problem;
use crate::duties::audit::{self, AuditParams, AuditReport};
use crate::state::AppState;

pub(crate) struct Line {
    pub label: String,
    pub value: String,
}

pub(crate) struct CheckLine {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

pub(crate) struct DestinationLine {
    pub destination: String,
    pub routed: bool,
    pub delivered: u64,
    pub pending: u64,
    pub dead: u64,
    pub missing: u64,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    sources: Vec<Opt>,
    from: String,
    to: String,
    error: Option<String>,
    report: Option<ReportView>,
}

pub(crate) struct ReportView {
    pub adds_up: bool,
    pub title: String,
    pub window: String,
    pub lines: Vec<Line>,
    pub checks: Vec<CheckLine>,
    pub destinations: Vec<DestinationLine>,
}

fn view(r: &AuditReport) -> ReportView {
    let by = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let line = |label: &str, value: String| Line {
        label: label.to_string(),
        value,
    };
    ReportView {
        adds_up: r.adds_up,
        title: format!("{} (tenant {})", r.source, r.tenant),
        window: format!(
            "{} → {} (counted per {}: {} → {}{})",
            when(r.from),
            when(r.to),
            match r.window.resolution {
                intake_store::Resolution::Minute => "minute",
                intake_store::Resolution::Hour => "hour",
            },
            when(r.window.from),
            when(r.window.to),
            if r.window.counters_kept {
                ""
            } else {
                "; counters before it are no longer kept"
            }
        ),
        lines: vec![
            line("requests received", r.received.total.to_string()),
            line("accepted", r.received.accepted.to_string()),
            line("duplicates", r.received.duplicate.to_string()),
            line(
                "rejected",
                format!(
                    "{} (signature {}, unparseable {}, too large {})",
                    r.received.rejected.total,
                    r.received.rejected.signature,
                    r.received.rejected.invalid,
                    r.received.rejected.too_large
                ),
            ),
            line(
                "events counted",
                format!(
                    "{} ({})",
                    r.accepted.counted,
                    by(&r.accepted.counted_by_origin)
                ),
            ),
            line(
                "events stored",
                format!(
                    "{} ({})",
                    r.accepted.stored,
                    by(&r.accepted.stored_by_origin)
                ),
            ),
            line("stored by channel", by(&r.accepted.stored_by_channel)),
        ],
        checks: r
            .checks
            .iter()
            .map(|c| CheckLine {
                name: c.name.clone(),
                ok: c.ok,
                detail: c.detail.clone(),
            })
            .collect(),
        destinations: r
            .destinations
            .iter()
            .map(|d| DestinationLine {
                destination: d.destination.clone(),
                routed: d.routed,
                delivered: d.delivered,
                pending: d.pending,
                dead: d.dead,
                missing: d.missing,
            })
            .collect(),
    }
}

/// `GET /audit?source=S&from=T&to=T` (without a source: the form, over the last 24 hours).
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let now = app.clock.now();
    let tenant = viewer.tenant();
    let (report, error) = match q.source.as_deref().filter(|s| !s.is_empty()) {
        None => (None, None),
        Some(_) => match run(&app, &viewer, &q, now).await {
            Ok(r) => (Some(view(&r)), None),
            Err(PageError(p)) if p.status < 500 => (None, Some(p.detail)),
            Err(e) => return Err(e),
        },
    };
    let default_from = now.minus(Duration::from_secs(24 * 3600)).to_rfc3339();
    Ok(render(&AuditPage {
        chrome: Chrome::new(&viewer, "/audit", "Audit"),
        sources: options(
            app.config
                .sources
                .iter()
                .filter(|s| tenant.as_ref().is_none_or(|t| *t == s.tenant))
                .map(|s| s.id.clone()),
            q.source.as_deref().unwrap_or(""),
        ),
        from: q.from.clone().unwrap_or(default_from),
        to: q.to.clone().unwrap_or_else(|| now.to_rfc3339()),
        error,
        report,
    }))
}

async fn run(
    app: &AppState,
    viewer: &Viewer,
    q: &AuditParams,
    now: Timestamp,
) -> Result<AuditReport, PageError> {
    let req = audit::check(q, &app.config, |t| viewer.scope.sees(t), now).map_err(Problem::from)?;
    Ok(audit::audit(&*app.store, &req, now)
        .await
        .map_err(Problem::from)?)
}
