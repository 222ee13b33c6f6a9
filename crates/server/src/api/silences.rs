//! Silences: `POST /api/v1/silences`, `GET /api/v1/silences`, `DELETE /api/v1/silences/{id}`.
//!
//! A silence mutes the *notifications* of the alerts it matches, for a bounded time; the
//! alerts are still evaluated and shown (with `silenced_by`). The rules below exist because of
//! the day all alerts were switched off to stop false positives, and an outage went unnoticed:
//!
//! * matchers are exact label values among `rule`, `tenant`, `source`, `channel`,
//!   `destination`, and must name at least a rule, a tenant or a source — a silence is never
//!   "everything";
//! * `severity` cannot be matched: "mute all warnings" or "mute all criticals" is a global
//!   switch by another name;
//! * `ends_at` (or `for`) is required, in the future, and at most `monitor.max_silence`;
//! * `created_by` and `comment` are required: someone answers for it;
//! * `watchdog` and `canary_failed` cannot be silenced; a silence without a `rule` matcher
//!   never applies to them either;
//! * a tenant token may only silence its own tenant;
//! * creation and expiry (by hand or by time) are announced to on-call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use intake_core::config::{Config, RULE_IDS};
use intake_core::{SilenceId, Timestamp};
use intake_notify::{Notice, SilenceStatus};
use intake_store::{Silence, SilenceExpiry};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::problem::{
    BadRequest, Conflict, Forbidden, NotFound, Problem, Unauthorized, Unavailable,
};
use super::{Resource, Scope};
use crate::duties::notify::decide::{announcement_route, silence_info};
use crate::duties::notify::send::outbox_items;
use crate::duties::notify::{build_notifiers, link_builder, UNSILENCEABLE};
use crate::state::AppState;

/// The silences' routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(list, create))
        .route(routes!(expire))
}

/// The labels a silence may match.
pub const MATCHER_LABELS: [&str; 5] = ["rule", "tenant", "source", "channel", "destination"];

const WHY_SCOPED: &str = "a silence must name at least a `rule`, a `tenant` or a `source`: a \
    silence that matches everything (or every tenant's `channel`/`destination`) would be a \
    global off switch, and intake has none — the day all alerts were switched off is the day \
    an outage went unnoticed. Narrow it, e.g. --match tenant=maelys or --match rule=inbound_drop";

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Label → exact value; labels `rule`, `tenant`, `source`, `channel`, `destination`, at
    /// least one of `rule`, `tenant`, `source`.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// When it ends (RFC 3339); or give `for`.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// How long it lasts (`"2h"`), at most `monitor.max_silence`; or give `ends_at`.
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    /// Who creates it (required; alias `author`).
    #[serde(default, alias = "author")]
    pub created_by: Option<String>,
    /// Why (required).
    #[serde(default)]
    pub comment: Option<String>,
}

/// Where a silence is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// It mutes now.
    Active,
    /// It starts later.
    Pending,
    /// It has ended.
    Expired,
}

/// A silence as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceView {
    /// `sil_…`
    pub id: String,
    /// Label → exact value.
    pub matchers: BTreeMap<String, String>,
    /// When it starts muting.
    pub starts_at: Timestamp,
    /// When it ends.
    pub ends_at: Timestamp,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// Where it is in its life.
    pub state: SilenceState,
    /// The notifiers its announcement was queued for (on creation and expiry only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub announced_to: Option<Vec<String>>,
}

/// Silences, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Silences {
    /// The silences.
    pub data: Vec<SilenceView>,
}

fn bad(slug: &str, detail: impl Into<String>) -> Problem {
    Problem::bad_request(slug, detail)
}

/// Checks a request and makes the silence it asks for (see the module documentation). A pure
/// decision: the checks run in a fixed order and the first that fails is the answer.
pub fn validate(
    req: SilenceRequest,
    config: &Config,
    scope: &Scope,
    now: Timestamp,
) -> Result<Silence, Problem> {
    check_matchers(&req.matchers)?;
    if let Some(rule) = req.matchers.get("rule") {
        check_rule(rule)?;
    }
    let source_tenant = check_targets(&req.matchers, config)?;
    check_scope(&req.matchers, source_tenant, scope)?;
    let ends_at = expiry(
        req.ends_at.as_deref(),
        req.for_.as_deref(),
        config.monitor.max_silence.0,
        now,
    )?;
    let created_by = req.created_by.unwrap_or_default().trim().to_string();
    if created_by.is_empty() {
        return Err(bad(
            "silence-needs-author",
            "`created_by` is required: say who is muting these alerts (--author)",
        ));
    }
    let comment = req.comment.unwrap_or_default().trim().to_string();
    if comment.is_empty() {
        return Err(bad(
            "silence-needs-comment",
            "`comment` is required: say why these alerts are muted (--comment)",
        ));
    }
    Ok(Silence {
        id: SilenceId::generate(now).to_string(),
        matchers: req.matchers,
        starts_at: now,
        ends_at,
        created_by,
        comment,
        created_at: now,
        expiry_announced: false,
    })
}

/// Matchers are known labels with values, never `severity`, and name a rule, tenant or source.
fn check_matchers(matchers: &BTreeMap<String, String>) -> Result<(), Problem> {
    if matchers.is_empty() {
        return Err(bad("silence-unscoped", WHY_SCOPED));
    }
    for (k, v) in matchers {
        if k == "severity" {
            return Err(bad(
                "silence-by-severity",
                "a silence cannot match `severity`: muting every warning or every critical \
                 alert is a global off switch, and intake has none (the day all alerts were \
                 switched off is the day an outage went unnoticed). Silence one rule, tenant or \
                 source instead; to make a rule quieter for good, override its severity or \
                 threshold in [[rules]]",
            ));
        }
        if !MATCHER_LABELS.contains(&k.as_str()) {
            return Err(bad(
                "silence-unknown-label",
                format!(
                    "unknown matcher label `{k}`; a silence matches {}",
                    MATCHER_LABELS.join(", ")
                ),
            ));
        }
        if v.trim().is_empty() {
            return Err(bad(
                "silence-empty-matcher",
                format!("matcher `{k}` has an empty value; matchers are exact values"),
            ));
        }
    }
    if !["rule", "tenant", "source"]
        .iter()
        .any(|k| matchers.contains_key(*k))
    {
        return Err(bad("silence-unscoped", WHY_SCOPED));
    }
    Ok(())
}

/// The rule matched is a built-in rule that can be silenced.
fn check_rule(rule: &str) -> Result<(), Problem> {
    if UNSILENCEABLE.contains(&rule) {
        return Err(bad(
            "silence-unsilenceable-rule",
            format!(
                "`{rule}` cannot be silenced: {}",
                if rule == "watchdog" {
                    "the watchdog is the heartbeat that proves alerting itself is alive; \
                     muting it would hide the one failure nothing else can report. To stop \
                     its pings, remove monitor.watchdog_url from the configuration"
                } else {
                    "a failed canary means webhooks no longer make it through intake end \
                     to end — the outage every other rule exists to catch. Fix the canary's \
                     path, or change [canary] in the configuration"
                }
            ),
        ));
    }
    if !RULE_IDS.contains(&rule) {
        return Err(bad(
            "silence-unknown-rule",
            format!("unknown rule `{rule}` (rules: {})", RULE_IDS.join(", ")),
        ));
    }
    Ok(())
}

/// The tenant and source matched exist and agree; returns the matched source's tenant.
fn check_targets<'c>(
    matchers: &BTreeMap<String, String>,
    config: &'c Config,
) -> Result<Option<&'c str>, Problem> {
    let m = |k: &str| matchers.get(k).map(String::as_str);
    if let Some(t) = m("tenant") {
        if config.tenant(t).is_none() {
            return Err(bad(
                "silence-unknown-tenant",
                format!("unknown tenant `{t}`"),
            ));
        }
    }
    let source_tenant = match m("source") {
        Some(s) => match config.source(s) {
            Some(src) => Some(src.tenant.as_str()),
            None => {
                return Err(bad(
                    "silence-unknown-source",
                    format!("unknown source `{s}`"),
                ))
            }
        },
        None => None,
    };
    if let (Some(t), Some(st)) = (m("tenant"), source_tenant) {
        if t != st {
            return Err(bad(
                "silence-mismatched-source",
                format!(
                    "source `{}` belongs to tenant `{st}`, not `{t}`",
                    m("source").unwrap_or("")
                ),
            ));
        }
    }
    Ok(source_tenant)
}

/// A tenant token only silences its own tenant (by its `tenant`, or one of its sources).
fn check_scope(
    matchers: &BTreeMap<String, String>,
    source_tenant: Option<&str>,
    scope: &Scope,
) -> Result<(), Problem> {
    let Scope::Tenant(own) = scope else {
        return Ok(());
    };
    let own = own.as_str();
    let tenant = matchers.get("tenant").map(String::as_str);
    let scoped = tenant == Some(own) || (tenant.is_none() && source_tenant == Some(own));
    if scoped {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        "silence-outside-tenant",
        "Forbidden",
        format!("a tenant token may only silence its own tenant: add the matcher tenant={own}"),
    ))
}

/// When the silence ends: from `ends_at` or `for` (exactly one), in the future, at most
/// `max` from now.
fn expiry(
    ends_at: Option<&str>,
    for_: Option<&str>,
    max: Duration,
    now: Timestamp,
) -> Result<Timestamp, Problem> {
    let max_text = humantime::format_duration(max).to_string();
    let ends_at = match (ends_at, for_) {
        (None, None) => {
            return Err(bad(
                "silence-needs-expiry",
                format!(
                    "a silence needs an expiry: give `ends_at` (RFC 3339) or `for` (e.g. \"2h\"), \
                     at most monitor.max_silence = {max_text}. Silences that never end are how \
                     alerts get switched off and forgotten"
                ),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                "silence-ambiguous-expiry",
                "give either `ends_at` or `for`, not both",
            ))
        }
        (Some(t), None) => Timestamp::parse_rfc3339(t).map_err(|e| {
            bad(
                "silence-bad-expiry",
                format!("`ends_at` `{t}` is not an RFC 3339 time ({e})"),
            )
        })?,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d).map_err(|e| {
                bad(
                    "silence-bad-expiry",
                    format!("`for` `{d}` is not a duration like \"30m\" or \"2h\" ({e})"),
                )
            })?;
            now.plus(d)
        }
    };
    if ends_at <= now {
        return Err(bad(
            "silence-expiry-in-past",
            format!("the silence would end at {ends_at}, which is not in the future (now: {now})"),
        ));
    }
    if ends_at.since(now) > max {
        return Err(bad(
            "silence-too-long",
            format!(
                "the silence would last {}, longer than monitor.max_silence = {max_text}; \
                 create a shorter one and renew it if the cause is still there",
                humantime::format_duration(Duration::from_secs(ends_at.since(now).as_secs()))
            ),
        ));
    }
    Ok(ends_at)
}

/// A silence as the API shows it.
pub(crate) fn silence_view(s: &Silence, now: Timestamp) -> SilenceView {
    let state = if s.is_active(now) {
        SilenceState::Active
    } else if now < s.starts_at {
        SilenceState::Pending
    } else {
        SilenceState::Expired
    };
    SilenceView {
        id: s.id.clone(),
        matchers: s.matchers.clone(),
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
        created_at: s.created_at,
        state,
        announced_to: None,
    }
}

/// Whether a tenant token sees this silence: it names the tenant, or one of its sources.
fn visible(s: &Silence, scope: &Scope, config: &Config) -> bool {
    match scope {
        Scope::Operator => true,
        Scope::Tenant(own) => {
            s.matchers.get("tenant") == Some(own)
                || s.matchers
                    .get("source")
                    .and_then(|src| config.source(src))
                    .is_some_and(|src| src.tenant == *own)
        }
    }
}

/// The announcement of a silence's creation or end: the notifiers it goes to, and the outbox
/// items committed with the silence.
fn announce(
    app: &AppState,
    status: SilenceStatus,
    silence: &Silence,
    now: Timestamp,
) -> (Vec<String>, Vec<intake_store::NewNotification>) {
    let notifiers = build_notifiers(&app.config, app.clock.clone());
    let links = link_builder(&app.config);
    let notice = Notice::silence(status, silence_info(silence), now, &links);
    let route = announcement_route(&notifiers, &notice);
    let outbox = outbox_items(&notice, &route, now);
    (route, outbox)
}

/// `POST /api/v1/silences`.
#[utoipa::path(
    post,
    path = "/silences",
    operation_id = "create_silence",
    tag = "silences",
    summary = "Create a silence",
    description = "Mutes the notifications of matching alerts until it ends, and announces it. \
        Refusals are `silence-…` problems (docs/api.md lists them); a tenant token may only \
        silence its own tenant (403 `silence-outside-tenant`).",
    request_body = SilenceRequest,
    responses(
        (status = 201, description = "The silence, with `announced_to`.", body = SilenceView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn create(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> Result<(StatusCode, Json<SilenceView>), Problem> {
    let req: SilenceRequest = serde_json::from_slice(&body).map_err(|e| {
        bad(
            "invalid-body",
            format!(
                "the body must be a JSON object with matchers, ends_at or for, created_by and comment ({e})"
            ),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(create_silence(&app, &scope, req).await?),
    ))
}

/// Checks a request ([`validate`]), stores the silence with its announcement and answers it
/// with `announced_to`: what `POST /api/v1/silences` and the dashboard's form both do.
pub(crate) async fn create_silence(
    app: &AppState,
    scope: &Scope,
    req: SilenceRequest,
) -> Result<SilenceView, Problem> {
    let now = app.clock.now();
    let silence = validate(req, &app.config, scope, now)?;
    let (route, outbox) = announce(app, SilenceStatus::Created, &silence, now);
    app.store.create_silence(silence.clone(), outbox).await?;
    tracing::warn!(
        silence = %silence.id, created_by = %silence.created_by, ends_at = %silence.ends_at,
        matchers = ?silence.matchers, "silence created: {}", silence.comment
    );
    let mut body = silence_view(&silence, now);
    body.announced_to = Some(route);
    Ok(body)
}

/// `GET /api/v1/silences` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SilenceQuery {
    /// `active` (default: active and not yet started), `expired` (ended within a week), `all`.
    #[param(value_type = Option<String>, pattern = "^(active|expired|all)$")]
    state: Option<String>,
}

/// `GET /api/v1/silences`.
#[utoipa::path(
    get,
    path = "/silences",
    operation_id = "list_silences",
    tag = "silences",
    summary = "List silences",
    description = "Silences visible to the token, newest first.",
    params(SilenceQuery),
    responses(
        (status = 200, description = "The silences.", body = Silences),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn list(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    query: Result<Query<SilenceQuery>, QueryRejection>,
) -> Result<Json<Silences>, Problem> {
    let Query(q) = query.map_err(|e| bad("invalid-parameter", e.body_text()))?;
    let state = q.state.as_deref().unwrap_or("active");
    Ok(Json(Silences {
        data: list_silences(&app, &scope, state).await?,
    }))
}

/// The silences visible to `scope` in `state` (`active`, `expired` or `all`), newest first.
pub(crate) async fn list_silences(
    app: &AppState,
    scope: &Scope,
    state: &str,
) -> Result<Vec<SilenceView>, Problem> {
    let now = app.clock.now();
    let since = match state {
        "active" => now,
        "expired" | "all" => now.minus(Duration::from_secs(7 * 86_400)),
        other => {
            return Err(bad(
                "invalid-parameter",
                format!("state `{other}`: use active, expired or all"),
            ))
        }
    };
    Ok(app
        .store
        .list_silences(since)
        .await?
        .iter()
        .filter(|s| visible(s, scope, &app.config))
        .filter(|s| state != "expired" || s.ends_at <= now)
        .map(|s| silence_view(s, now))
        .collect())
}

/// `DELETE /api/v1/silences/{id}`.
#[utoipa::path(
    delete,
    path = "/silences/{id}",
    operation_id = "expire_silence",
    tag = "silences",
    summary = "Expire a silence",
    description = "Ends the silence now and announces it.",
    params(("id" = String, Path, description = "The silence id (`sil_…`).")),
    responses(
        (status = 200, description = "The silence, `expired`, with `announced_to`.", body = SilenceView),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn expire(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, Problem> {
    Ok(Json(expire_silence(&app, &scope, &id).await?))
}

/// Ends silence `id` now, if `scope` sees it, with its announcement: what
/// `DELETE /api/v1/silences/{id}` and the dashboard's button both do.
pub(crate) async fn expire_silence(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<SilenceView, Problem> {
    let now = app.clock.now();
    let not_found = || Problem::not_found("no-such-silence", format!("no silence `{id}`"));
    let existing = app
        .store
        .list_silences(Timestamp(i64::MIN))
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .filter(|s| visible(s, scope, &app.config))
        .ok_or_else(not_found)?;
    let mut ended = existing.clone();
    ended.ends_at = now;
    let (route, outbox) = announce(app, SilenceStatus::Expired, &ended, now);
    match app.store.expire_silence(id, now, outbox).await? {
        SilenceExpiry::NotFound => Err(not_found()),
        SilenceExpiry::AlreadyEnded(s) => Err(Problem::new(
            StatusCode::CONFLICT,
            "silence-already-ended",
            "Conflict",
            format!("silence `{}` already ended at {}", s.id, s.ends_at),
        )),
        SilenceExpiry::Expired(s) => {
            tracing::warn!(silence = %s.id, "silence expired by hand");
            let mut body = silence_view(&s, now);
            body.announced_to = Some(route);
            Ok(body)
        }
    }
}

/// Silence `id` as `scope` sees it (any state), or 404.
pub(crate) async fn find_silence(
    app: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<SilenceView, Problem> {
    let now = app.clock.now();
    app.store
        .list_silences(Timestamp(i64::MIN))
        .await?
        .iter()
        .find(|s| s.id == id && visible(s, scope, &app.config))
        .map(|s| silence_view(s, now))
        .ok_or_else(|| Problem::not_found("no-such-silence", format!("no silence `{id}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[monitor]
max_silence = "24h"
[[tenants]]
id = "maelys"
[[tenants]]
id = "other"
[[destinations]]
id = "h"
url = "http://127.0.0.1:9/"
secret = "whsec_dGVzdC1kZXN0aW5hdGlvbi1zZWNyZXQ="
[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["x"]
destinations = ["h"]
"#,
        )
        .unwrap()
    }

    fn req(matchers: &[(&str, &str)], for_: Option<&str>) -> SilenceRequest {
        SilenceRequest {
            matchers: matchers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ends_at: None,
            for_: for_.map(str::to_string),
            created_by: Some("alice".into()),
            comment: Some("migration".into()),
        }
    }

    fn slug(r: Result<Silence, Problem>) -> String {
        match r {
            Ok(s) => format!("ok {}", s.id),
            Err(p) => p
                .type_
                .trim_start_matches("urn:intake:problem:")
                .to_string(),
        }
    }

    #[test]
    fn a_silence_must_be_scoped_bounded_and_signed() {
        let c = config();
        let now = Timestamp(1_800_000_000_000);
        let op = Scope::Operator;
        let ok = validate(req(&[("tenant", "maelys")], Some("2h")), &c, &op, now).unwrap();
        assert!(ok.id.starts_with("sil_"));
        assert_eq!(ok.ends_at, now.plus(Duration::from_secs(7200)));
        let cases: Vec<(SilenceRequest, &str)> = vec![
            (req(&[], Some("2h")), "silence-unscoped"),
            (req(&[("channel", "chat")], Some("2h")), "silence-unscoped"),
            (
                req(&[("severity", "critical")], Some("2h")),
                "silence-by-severity",
            ),
            (req(&[("tenant", "maelys")], None), "silence-needs-expiry"),
            (
                req(&[("tenant", "maelys")], Some("25h")),
                "silence-too-long",
            ),
            (
                req(&[("rule", "watchdog")], Some("1h")),
                "silence-unsilenceable-rule",
            ),
            (
                req(
                    &[("rule", "canary_failed"), ("tenant", "maelys")],
                    Some("1h"),
                ),
                "silence-unsilenceable-rule",
            ),
            (req(&[("rule", "nope")], Some("1h")), "silence-unknown-rule"),
            (
                req(&[("tenant", "ghost")], Some("1h")),
                "silence-unknown-tenant",
            ),
            (
                req(
                    &[("tenant", "other"), ("source", "maelys-kustomer")],
                    Some("1h"),
                ),
                "silence-mismatched-source",
            ),
            (req(&[("team", "x")], Some("1h")), "silence-unknown-label"),
            (
                SilenceRequest {
                    created_by: None,
                    ..req(&[("tenant", "maelys")], Some("1h"))
                },
                "silence-needs-author",
            ),
            (
                SilenceRequest {
                    comment: Some("  ".into()),
                    ..req(&[("tenant", "maelys")], Some("1h"))
                },
                "silence-needs-comment",
            ),
            (
                SilenceRequest {
                    ends_at: Some("2020-01-01T00:00:00Z".into()),
                    ..req(&[("tenant", "maelys")], None)
                },
                "silence-expiry-in-past",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(slug(validate(r, &c, &op, now)), want);
        }
    }

    #[test]
    fn a_tenant_token_silences_only_its_own_tenant() {
        let c = config();
        let now = Timestamp(1_800_000_000_000);
        let t = Scope::Tenant("maelys".into());
        assert!(validate(req(&[("tenant", "maelys")], Some("1h")), &c, &t, now).is_ok());
        assert!(validate(
            req(&[("source", "maelys-kustomer")], Some("1h")),
            &c,
            &t,
            now
        )
        .is_ok());
        assert_eq!(
            slug(validate(
                req(&[("tenant", "other")], Some("1h")),
                &c,
                &t,
                now
            )),
            "silence-outside-tenant"
        );
        assert_eq!(
            slug(validate(
                req(&[("rule", "inbound_drop")], Some("1h")),
                &c,
                &t,
                now
            )),
            "silence-outside-tenant"
        );
    }
}
