//! `/silences`: create a silence (the admin API's rules, its refusals shown with their
//! reason), list the active and recently ended ones, and expire one. `/silences/{id}` is the
//! page a silence's announcement links to (`LinkBuilder::silence`).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use intake_core::config::RULE_IDS;
use serde::Deserialize;

use super::page::{
    labels_text, options, query, render, render_with, segment, when, Chrome, Opt, PageResult,
    Viewer,
};
use crate::api::silences::{
    create_silence, expire_silence, find_silence, list_silences, SilenceRequest, SilenceState,
    SilenceView,
};
use crate::duties::notify::UNSILENCEABLE;
use crate::state::AppState;

/// The silence form (also its pre-filled query, from an alert's "silence…" link).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct SilenceForm {
    #[serde(default)]
    rule: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    destination: String,
    #[serde(default, rename = "for")]
    duration: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    comment: String,
}

impl SilenceForm {
    /// The API request this form asks for: the matchers it fills in, nothing else.
    fn request(&self) -> SilenceRequest {
        let matchers: BTreeMap<String, String> = [
            ("rule", &self.rule),
            ("tenant", &self.tenant),
            ("source", &self.source),
            ("channel", &self.channel),
            ("destination", &self.destination),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
        let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        SilenceRequest {
            matchers,
            ends_at: None,
            for_: given(&self.duration),
            created_by: given(&self.author),
            comment: given(&self.comment),
        }
    }
}

pub(crate) struct SilenceLine {
    pub id: String,
    pub href: String,
    pub matchers: String,
    pub state: String,
    pub class: &'static str,
    pub ends: String,
    pub by: String,
    pub comment: String,
    pub can_expire: bool,
}

fn line(s: &SilenceView) -> SilenceLine {
    let (state, class, can_expire) = match s.state {
        SilenceState::Active => ("active", "silenced", true),
        SilenceState::Pending => ("not started", "pending", true),
        SilenceState::Expired => ("expired", "learning", false),
    };
    SilenceLine {
        id: s.id.clone(),
        href: format!("/silences/{}", segment(&s.id)),
        matchers: labels_text(&s.matchers),
        state: state.into(),
        class,
        ends: when(s.ends_at),
        by: s.created_by.clone(),
        comment: s.comment.clone(),
        can_expire,
    }
}

#[derive(Template)]
#[template(path = "silences.html")]
struct SilencesPage {
    chrome: Chrome,
    form: SilenceForm,
    rules: Vec<Opt>,
    error: Option<String>,
    active: Vec<SilenceLine>,
    ended: Vec<SilenceLine>,
}

#[derive(Template)]
#[template(path = "silence.html")]
struct SilencePage {
    chrome: Chrome,
    s: SilenceLine,
    created: String,
    starts: String,
}

async fn silences_page(
    app: &AppState,
    viewer: &Viewer,
    form: SilenceForm,
    error: Option<String>,
) -> Result<SilencesPage, super::page::PageError> {
    let all = list_silences(app, &viewer.scope, "all").await?;
    let (active, ended): (Vec<&SilenceView>, Vec<&SilenceView>) = all
        .iter()
        .partition(|s| !matches!(s.state, SilenceState::Expired));
    let rules = options(
        std::iter::once(String::new()).chain(
            RULE_IDS
                .iter()
                .filter(|r| !UNSILENCEABLE.contains(r))
                .map(|r| r.to_string()),
        ),
        &form.rule,
    );
    Ok(SilencesPage {
        chrome: Chrome::new(viewer, "/silences", "Silences"),
        form,
        rules,
        error,
        active: active.into_iter().map(line).collect(),
        ended: ended.into_iter().map(line).collect(),
    })
}

/// `GET /silences` (a query pre-fills the form).
pub(crate) async fn page(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    q: Result<Query<SilenceForm>, QueryRejection>,
) -> PageResult {
    let mut form = query(q)?;
    if form.duration.is_empty() {
        form.duration = "2h".into();
    }
    Ok(render(&silences_page(&app, &viewer, form, None).await?))
}

/// `POST /silences`: created, it goes to its page; refused, the form comes back with the
/// reason, as the API words it.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Form(form): Form<SilenceForm>,
) -> PageResult {
    match create_silence(&app, &viewer.scope, form.request()).await {
        Ok(s) => Ok(Redirect::to(&format!("/silences/{}", segment(&s.id))).into_response()),
        Err(p) if p.status < 500 => {
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            let page = silences_page(&app, &viewer, form, Some(p.detail)).await?;
            Ok(render_with(status, &page))
        }
        Err(p) => Err(p.into()),
    }
}

/// `GET /silences/{id}`.
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let s = find_silence(&app, &viewer.scope, &id).await?;
    Ok(render(&SilencePage {
        chrome: Chrome::new(&viewer, "/silences", format!("Silence {id}")),
        created: when(s.created_at),
        starts: when(s.starts_at),
        s: line(&s),
    }))
}

/// `POST /silences/{id}/expire`.
pub(crate) async fn expire(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> PageResult {
    let s = expire_silence(&app, &viewer.scope, &id).await?;
    Ok(Redirect::to(&format!("/silences/{}", segment(&s.id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_asks_for_the_matchers_it_fills_in() {
        let f = SilenceForm {
            rule: "inbound_drop".into(),
            tenant: " maelys ".into(),
            channel: "".into(),
            duration: "2h".into(),
            author: "alice".into(),
            comment: "".into(),
            ..SilenceForm::default()
        };
        let r = f.request();
        assert_eq!(
            r.matchers.into_iter().collect::<Vec<_>>(),
            vec![
                ("rule".to_string(), "inbound_drop".to_string()),
                ("tenant".to_string(), "maelys".to_string())
            ]
        );
        assert_eq!(r.for_.as_deref(), Some("2h"));
        assert_eq!(r.created_by.as_deref(), Some("alice"));
        // An empty comment is not sent, so the API's own refusal names it.
        assert_eq!(r.comment, None);
    }
}
