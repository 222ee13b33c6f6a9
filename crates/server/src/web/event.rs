//! `/events/{id}`: one event — what it is, its body and kept headers, each delivery and every
//! attempt — and a replay button, which starts a *dry run* of a replay job for the millisecond
//! the event was received in (the recovery page then shows what it would re-deliver, and runs
//! it for real on a second click).

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use intake_core::Timestamp;

use super::page::{ago, render, segment, when, Chrome, PageResult, Viewer};
use crate::api::events::event_view;
use crate::api::recoveries::create_job;
use crate::duties::recovery::params::JobRequest;
use crate::state::AppState;

pub(crate) struct DeliveryLine {
    pub id: String,
    pub destination: String,
    pub state: String,
    pub class: &'static str,
    pub attempts: u32,
    pub last: String,
    pub origin: String,
}

pub(crate) struct AttemptLine {
    pub delivery: String,
    pub attempt: u32,
    pub started: String,
    pub duration: String,
    pub status: String,
    pub outcome: String,
    pub class: &'static str,
    pub error: String,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    id: String,
    tenant: String,
    tenant_href: String,
    facts: Vec<(String, String)>,
    deliveries: Vec<DeliveryLine>,
    attempts: Vec<AttemptLine>,
    headers: Vec<(String, String)>,
    body: String,
    body_note: String,
}

fn class_of(state: &str) -> &'static str {
    match state {
        "delivered" => "ok",
        "dead" => "critical",
        "retrying" => "warning",
        "superseded" => "info",
        _ => "pending",
    }
}

/// `GET /events/{id}`.
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let view = event_view(&app, &viewer.scope, &id).await?;
    let now = app.clock.now();
    let e = &view.detail.summary;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let facts = vec![
        ("source".to_string(), e.source.clone()),
        ("type".into(), e.event_type.clone()),
        (
            "channel".into(),
            format!("{} (the SOR says {})", e.channel, opt(&e.raw_channel)),
        ),
        ("origin".into(), e.origin.as_str().into()),
        (
            "received".into(),
            format!("{} ({} ago)", when(e.received_at), ago(now, e.received_at)),
        ),
        (
            "occurred".into(),
            e.occurred_at.map(when).unwrap_or_else(|| "—".into()),
        ),
        ("SOR event id".into(), opt(&e.sor_event_id)),
        ("dedupe key".into(), e.dedupe_key.clone()),
        (
            "object".into(),
            format!("{} {}", opt(&e.object_type), opt(&e.object_id)),
        ),
        ("conversation".into(), opt(&e.conversation_id)),
    ];
    let deliveries = e
        .deliveries
        .iter()
        .map(|d| DeliveryLine {
            id: d.id.to_string(),
            destination: d.destination.clone(),
            state: d.state.as_str().into(),
            class: class_of(d.state.as_str()),
            attempts: d.attempts,
            last: match (&d.last_status, &d.last_error) {
                (Some(s), Some(err)) => format!("{s}: {err}"),
                (Some(s), None) => s.to_string(),
                (None, Some(err)) => err.clone(),
                (None, None) => "—".into(),
            },
            origin: d.origin.map(|o| o.as_str().to_string()).unwrap_or_default()
                + &d.recovery
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
        })
        .collect();
    let attempts = view
        .detail
        .attempts
        .iter()
        .map(|a| AttemptLine {
            delivery: a.delivery_id.to_string(),
            attempt: a.attempt,
            started: when(a.started_at),
            duration: format!("{} ms", a.duration_ms),
            status: a
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "—".into()),
            class: class_of(&a.outcome),
            outcome: a.outcome.clone(),
            error: a.error.clone().unwrap_or_default(),
        })
        .collect();
    let (body, body_note) = match (&view.body, &view.body_base64) {
        (Some(text), _) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => (
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.clone()),
                "JSON, indented for reading (the handler receives the raw bytes)".into(),
            ),
            Err(_) => (text.clone(), "as received".into()),
        },
        (None, Some(b64)) => (b64.clone(), "not UTF-8: shown in base64".into()),
        (None, None) => (String::new(), "empty".into()),
    };
    Ok(render(&EventPage {
        chrome: Chrome::new(&viewer, "", format!("Event {id}")),
        tenant_href: format!("/tenants/{}", segment(&e.tenant)),
        tenant: e.tenant.clone(),
        id: e.id.to_string(),
        facts,
        deliveries,
        attempts,
        headers: view.detail.headers.clone(),
        body,
        body_note,
    }))
}

/// `POST /events/{id}/replay`: a dry run of a replay of this event's source over the
/// millisecond it was received in (usually this event alone; the report says what it found).
pub(crate) async fn replay(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let view = event_view(&app, &viewer.scope, &id).await?;
    let e = &view.detail.summary;
    let req = replay_request(&e.source, e.received_at);
    let job = create_job(&app, &viewer.scope, &req).await?;
    Ok(Redirect::to(&format!("/recoveries/{}", segment(&job.id))).into_response())
}

/// The dry-run replay of the millisecond an event of `source` was received at.
fn replay_request(source: &str, received_at: Timestamp) -> JobRequest {
    JobRequest {
        kind: Some("replay".into()),
        source: Some(source.to_string()),
        from: Some(received_at.to_rfc3339()),
        to: Some(received_at.plus(Duration::from_millis(1)).to_rfc3339()),
        dry_run: true,
        force: true,
        ..JobRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_covers_the_millisecond_of_the_event() {
        let at = Timestamp::parse_rfc3339("2026-11-28T10:00:00.123Z").unwrap();
        let r = replay_request("maelys-kustomer", at);
        assert_eq!(r.kind.as_deref(), Some("replay"));
        assert_eq!(r.from.as_deref(), Some("2026-11-28T10:00:00.123Z"));
        assert_eq!(r.to.as_deref(), Some("2026-11-28T10:00:00.124Z"));
        assert!(r.dry_run && r.force);
    }
}
