//! The admin API under `/api/v1`: the router, bearer-token authentication and [`Scope`]; one
//! file per resource, each exporting its own `routes()`, merged here; errors are RFC 7807
//! [`problem::Problem`]s.
//!
//! **Rule of this room:** a handler only translates: HTTP in (path, query, body, token scope),
//! calls on the store or on what [`crate::duties`] exposes, JSON or a problem out. It may
//! import `state` and `duties`, never `runtime` nor another door; it starts no task and
//! decides nothing a duty decides. Adding an endpoint means documenting its handler with
//! `#[utoipa::path]` and adding it to its resource's `routes()` (or a new resource file listed
//! in [`openapi`]'s `resources()`): the router and the OpenAPI document come from that one list.
//!
//! Tokens are either the operator's (`admin.token`, sees everything) or a tenant's
//! (`tenants[].api_token`, sees only that tenant), or minted ones (`intake token create`,
//! [`tokens`]) of either scope, found in the store by their hash on every request. A tenant token asking for another tenant's
//! event gets 404, not 403, so it cannot learn which ids exist.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use intake_core::config::Config;
use intake_core::signature::constant_time_eq;
use serde::Deserialize;

use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::state::AppState;
use problem::Problem;

pub(crate) mod alerts;
mod audit;
pub(crate) mod canaries;
mod cluster;
pub(crate) mod deliveries;
pub(crate) mod drills;
pub(crate) mod events;
pub(crate) mod flows;
pub(crate) mod incidents;
mod notifiers;
pub mod openapi;
pub mod problem;
pub(crate) mod queue;
mod reconciliation;
pub(crate) mod recoveries;
mod rejections;
mod rules;
pub mod silences;
pub mod tokens;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The operator: everything.
    Operator,
    /// One tenant: its own data only.
    Tenant(String),
}

impl Scope {
    /// The tenant a listing is restricted to: the token's own for a tenant token (asking for
    /// another is 404), whatever was asked for the operator.
    pub(crate) fn tenant_filter(&self, asked: Option<String>) -> Result<Option<String>, Problem> {
        match (self, asked) {
            (Scope::Tenant(own), Some(asked)) if *own != asked => Err(Problem::not_found(
                "no-such-tenant",
                format!("no tenant `{asked}` is visible to this token"),
            )),
            (Scope::Tenant(own), _) => Ok(Some(own.clone())),
            (Scope::Operator, asked) => Ok(asked),
        }
    }

    /// Whether this token may see data of `tenant`.
    pub(crate) fn sees(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
        }
    }
}

/// The routes of one resource, each registered together with its `#[utoipa::path]`
/// documentation. It deliberately has no way to add a plain axum route: every admin route is
/// in the document.
pub(crate) struct Resource(OpenApiRouter<Arc<AppState>>);

impl Resource {
    /// No routes yet.
    pub(crate) fn new() -> Self {
        Resource(OpenApiRouter::default())
    }

    /// Adds the handlers of one path, given as `routes!(handler, …)`; each handler's method and
    /// path come from its `#[utoipa::path]`.
    pub(crate) fn route(self, handlers: UtoipaMethodRouter<Arc<AppState>>) -> Self {
        Resource(self.0.routes(handlers))
    }

    /// Adds the routes of `other`.
    pub(crate) fn merge(self, other: Resource) -> Self {
        Resource(self.0.merge(other.0))
    }

    /// The routes and their documentation, for [`openapi::assemble`].
    fn into_router(self) -> OpenApiRouter<Arc<AppState>> {
        self.0
    }
}

/// The admin API: every resource's routes under `/api/v1`, behind the bearer token, and the
/// OpenAPI document, open (it describes the API, not this server's data).
pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let (router, _document) = openapi::assemble(|api| {
        api.fallback(api_not_found)
            .layer(middleware::from_fn_with_state(state, authenticate))
    })
    .split_for_parts();
    router
}

async fn api_not_found(req: Request) -> Problem {
    Problem::not_found(
        "no-such-route",
        format!("no admin API route {} {}", req.method(), req.uri().path()),
    )
}

async fn authenticate(State(app): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = presented else {
        // A handler confirming its work signs with its destination's secret instead; the
        // completion handlers check that signature themselves.
        if deliveries::is_signed_confirmation(req.uri().path(), req.headers()) {
            return next.run(req).await;
        }
        return Problem::unauthorized(
            "missing-token",
            "send `Authorization: Bearer <token>` (admin.token, or a tenant's api_token)",
        )
        .into_response();
    };
    let scope = match scope_of_token(&app, token).await {
        Ok(scope) => scope,
        Err(problem) => return problem.into_response(),
    };
    match scope {
        Some(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        None => Problem::unauthorized(
            "bad-token",
            "the bearer token is not admin.token, a tenant's api_token, nor a valid token \
             created with `intake token create` (it may have been revoked or have expired)",
        )
        .into_response(),
    }
}

/// The scope of a presented token — the operator's `admin.token`, a tenant's `api_token`, or
/// a minted `itk_…` token — or `None` when it is none of them. The bearer authentication and
/// the dashboard's login both ask this, so both accept exactly the same tokens.
pub(crate) async fn scope_of_token(app: &AppState, token: &str) -> Result<Option<Scope>, Problem> {
    let configured = configured_scope(&app.config, |t| {
        constant_time_eq(t.as_bytes(), token.as_bytes())
    });
    if configured.is_some() || !intake_core::token::is_minted(token) {
        return Ok(configured);
    }
    minted_scope(app, &intake_core::token::hash(token)).await
}

/// The scope of a configured token that `matches` recognises (in constant time): the
/// operator's `admin.token`, then each tenant's `api_token` (a later match wins).
pub(crate) fn configured_scope(config: &Config, matches: impl Fn(&str) -> bool) -> Option<Scope> {
    let mut scope = None;
    if config.admin.token.as_deref().is_some_and(&matches) {
        scope = Some(Scope::Operator);
    }
    for t in &config.tenants {
        if t.api_token.as_deref().is_some_and(&matches) {
            scope = Some(Scope::Tenant(t.id.clone()));
        }
    }
    scope
}

/// The scope of the minted token whose hash is `hash` (`itk_…`), read from the store on every
/// request so that a revocation holds at once on every node. `None` when it is unknown,
/// revoked, expired, or of a tenant no longer in the configuration.
pub(crate) async fn minted_scope(app: &AppState, hash: &str) -> Result<Option<Scope>, Problem> {
    let Some(stored) = app.store.find_token(hash).await? else {
        return Ok(None);
    };
    if !stored.is_valid(app.clock.now()) {
        return Ok(None);
    }
    Ok(match stored.tenant {
        None => Some(Scope::Operator),
        Some(t) if app.config.tenants.iter().any(|c| c.id == t) => Some(Scope::Tenant(t)),
        Some(_) => None,
    })
}

/// The `limit` of a listing: 100 by default, 1 to 1000.
pub(crate) fn page_size(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        _ => Err(Problem::bad_request(
            "invalid-parameter",
            "`limit` must be between 1 and 1000",
        )),
    }
}

/// A listing's query parameters, or a 400 problem saying what is wrong with them.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(q)| q)
        .map_err(|e| Problem::bad_request("invalid-parameter", e.body_text()))
}

/// `GET /api/v1/flows`, `/queue` and `/reconciliation` query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScopeQuery {
    /// Only this tenant (a tenant token: its own; another one is 404).
    tenant: Option<String>,
    /// Only this source.
    source: Option<String>,
}
