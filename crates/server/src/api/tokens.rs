//! Minted API tokens: `POST /api/v1/tokens`, `GET /api/v1/tokens`,
//! `DELETE /api/v1/tokens/{id}`.
//!
//! * A token is `itk_` + 256 random bits; only its SHA-256 is stored
//!   ([`intake_core::token`]). The plaintext is in the creation response and nowhere else:
//!   listings show ids, names and states, never a token or its hash.
//! * Scope `operator` sees everything; scope `tenant` (with `tenant`) sees that tenant only,
//!   exactly like a `tenants[].api_token`.
//! * Only an operator token (the configured `admin.token` or a minted operator token) creates
//!   tokens. A tenant token may list and revoke its own tenant's tokens, and nothing else: a
//!   leaked tenant token cannot mint itself a successor that outlives its revocation.
//! * An expiry is optional (`expires_at`, RFC 3339, or `expires_in`, e.g. `"90d"`), and in the
//!   future.
//! * Revocation is immediate on every node: every request presenting a minted token reads it
//!   from the store (no cache).
//!
//! The configuration's tokens are not listed here and cannot be revoked through the API; they
//! change with the configuration.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use intake_core::config::Config;
use intake_core::{token, Timestamp, TokenId};
use intake_store::ApiToken;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{BadRequest, Forbidden, NotFound, Problem, Unauthorized, Unavailable};
use super::{Resource, Scope};
use crate::state::AppState;

/// The tokens' routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(list, create))
        .route(routes!(revoke))
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `operator` or `tenant` (required).
    #[serde(default)]
    #[schema(pattern = "^(operator|tenant)$")]
    pub scope: Option<String>,
    /// The tenant of a `tenant` token.
    #[serde(default)]
    pub tenant: Option<String>,
    /// What the token is for (required; alias `comment`).
    #[serde(default, alias = "comment")]
    pub name: Option<String>,
    /// When it stops working (RFC 3339); or give `expires_in`, or neither.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Or how long it works (`"90d"`).
    #[serde(default)]
    pub expires_in: Option<String>,
}

fn bad(slug: &str, detail: impl Into<String>) -> Problem {
    Problem::bad_request(slug, detail)
}

/// Checks a request and makes the token record it asks for, with its hash of `secret`. A pure
/// decision: the first check that fails is the answer.
pub fn validate(
    req: TokenRequest,
    config: &Config,
    scope: &Scope,
    secret: &str,
    now: Timestamp,
) -> Result<ApiToken, Problem> {
    if *scope != Scope::Operator {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "token-create-forbidden",
            "Forbidden",
            "only an operator token creates tokens; a tenant token may list and revoke its \
             own tenant's tokens",
        ));
    }
    let tenant = match (req.scope.as_deref(), req.tenant) {
        (Some("operator"), None) => None,
        (Some("operator"), Some(_)) => {
            return Err(bad(
                "token-bad-scope",
                "an operator token has no `tenant`; for a tenant's token use scope `tenant`",
            ))
        }
        (Some("tenant"), Some(t)) => {
            if !config.tenants.iter().any(|c| c.id == t) {
                return Err(Problem::not_found(
                    "no-such-tenant",
                    format!("no tenant `{t}` in the configuration"),
                ));
            }
            Some(t)
        }
        (Some("tenant"), None) => {
            return Err(bad("token-bad-scope", "a `tenant` token needs `tenant`"))
        }
        _ => {
            return Err(bad(
                "token-bad-scope",
                "`scope` is required: `operator` or `tenant`",
            ))
        }
    };
    let name = req.name.unwrap_or_default().trim().to_string();
    if name.is_empty() {
        return Err(bad(
            "token-needs-name",
            "`name` is required: say what the token is for, so it can be found and revoked",
        ));
    }
    let expires_at = expiry(req.expires_at.as_deref(), req.expires_in.as_deref(), now)?;
    Ok(ApiToken {
        id: TokenId::generate(now).to_string(),
        hash: token::hash(secret),
        tenant,
        name,
        created_by: "operator".into(),
        created_at: now,
        expires_at,
        revoked_at: None,
    })
}

/// The optional expiry: `expires_at` or `expires_in`, never both, in the future.
fn expiry(
    at: Option<&str>,
    within: Option<&str>,
    now: Timestamp,
) -> Result<Option<Timestamp>, Problem> {
    let t = match (at, within) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(bad(
                "token-bad-expiry",
                "give either `expires_at` or `expires_in`, not both",
            ))
        }
        (Some(t), None) => Timestamp::parse_rfc3339(t).map_err(|e| {
            bad(
                "token-bad-expiry",
                format!("`expires_at` `{t}` is not an RFC 3339 time ({e})"),
            )
        })?,
        (None, Some(d)) => {
            let parsed = humantime::parse_duration(d).map_err(|e| {
                bad(
                    "token-bad-expiry",
                    format!("`expires_in` `{d}` is not a duration like \"90d\" ({e})"),
                )
            })?;
            now.plus(parsed)
        }
    };
    if t <= now {
        return Err(bad(
            "token-bad-expiry",
            format!("the expiry {} is not in the future", t.to_rfc3339()),
        ));
    }
    Ok(Some(t))
}

/// Whom a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Everything.
    Operator,
    /// One tenant (`tenant`).
    Tenant,
}

/// Whether a token works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// It works.
    Active,
    /// Its expiry has passed.
    Expired,
    /// It was revoked.
    Revoked,
}

/// A token as the API shows it: never its hash, and its text only in the creation answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// `tok_…`: names the token; not a secret.
    pub id: String,
    /// Whom it speaks for.
    pub scope: TokenScope,
    /// Its tenant, for a `tenant` token.
    pub tenant: Option<String>,
    /// What it is for.
    pub name: String,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Whether it works.
    pub state: TokenState,
    /// The token itself (`itk_…`): in the creation answer, and nowhere else.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub token: Option<String>,
}

/// Tokens, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// The tokens (at most 1000), revoked and expired ones included.
    pub data: Vec<TokenView>,
}

/// A token as the API shows it: never its text nor its hash.
pub fn token_view(t: &ApiToken, now: Timestamp) -> TokenView {
    let state = if t.revoked_at.is_some() {
        TokenState::Revoked
    } else if t.is_valid(now) {
        TokenState::Active
    } else {
        TokenState::Expired
    };
    TokenView {
        id: t.id.clone(),
        scope: if t.tenant.is_some() {
            TokenScope::Tenant
        } else {
            TokenScope::Operator
        },
        tenant: t.tenant.clone(),
        name: t.name.clone(),
        created_by: t.created_by.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        state,
        token: None,
    }
}

/// `POST /api/v1/tokens`.
#[utoipa::path(
    post,
    path = "/tokens",
    operation_id = "create_token",
    tag = "tokens",
    summary = "Create a token",
    description = "Operator token only. Answers the token's record with `token`, its text, \
        shown this once; only its SHA-256 is stored.",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "The token, with `token`.", body = TokenView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn create(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> Result<(StatusCode, Json<TokenView>), Problem> {
    let req: TokenRequest = serde_json::from_slice(&body).map_err(|e| {
        bad(
            "invalid-body",
            format!(
                "the body must be a JSON object with scope, tenant (for scope tenant), name and \
                 optionally expires_at or expires_in ({e})"
            ),
        )
    })?;
    let now = app.clock.now();
    let secret = token::mint();
    let record = validate(req, &app.config, &scope, &secret, now)?;
    app.store.create_token(record.clone()).await?;
    tracing::warn!(
        token = %record.id, tenant = record.tenant.as_deref().unwrap_or("-"),
        name = %record.name, "API token created"
    );
    let mut body = token_view(&record, now);
    body.token = Some(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /api/v1/tokens`.
#[utoipa::path(
    get,
    path = "/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    summary = "List tokens",
    description = "Tokens visible to the caller, newest first, without their text: every \
        token for an operator, its tenant's for a tenant token.",
    responses(
        (status = 200, description = "The tokens.", body = Tokens),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn list(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Tokens>, Problem> {
    let now = app.clock.now();
    let tenant = match &scope {
        Scope::Operator => None,
        Scope::Tenant(t) => Some(t.clone()),
    };
    let data = app
        .store
        .list_tokens(tenant)
        .await?
        .iter()
        .map(|t| token_view(t, now))
        .collect();
    Ok(Json(Tokens { data }))
}

/// `DELETE /api/v1/tokens/{id}`.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    operation_id = "revoke_token",
    tag = "tokens",
    summary = "Revoke a token",
    description = "Revokes the token now, on every node. Revoking it again changes nothing.",
    params(("id" = String, Path, description = "The token's id (`tok_…`), not the token.")),
    responses(
        (status = 200, description = "The token, `revoked`.", body = TokenView),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn revoke(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, Problem> {
    let now = app.clock.now();
    let tenant = match &scope {
        Scope::Operator => None,
        Scope::Tenant(t) => Some(t.clone()),
    };
    match app.store.revoke_token(&id, tenant, now).await? {
        None => Err(Problem::not_found(
            "no-such-token",
            format!("no token `{id}` is visible to this token"),
        )),
        Some(t) => {
            tracing::warn!(token = %t.id, name = %t.name, "API token revoked");
            Ok(Json(token_view(&t, now)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[tenants]]
id = "maelys"
"#,
        )
        .unwrap()
    }

    fn req(scope: Option<&str>, tenant: Option<&str>, name: Option<&str>) -> TokenRequest {
        TokenRequest {
            scope: scope.map(Into::into),
            tenant: tenant.map(Into::into),
            name: name.map(Into::into),
            ..TokenRequest::default()
        }
    }

    fn slug(r: Result<ApiToken, Problem>) -> String {
        match r {
            Ok(t) => format!("ok {}", t.tenant.unwrap_or_else(|| "operator".into())),
            Err(p) => format!(
                "{} {}",
                p.status,
                p.type_.trim_start_matches("urn:intake:problem:")
            ),
        }
    }

    #[test]
    fn who_may_create_which_token() {
        let c = config();
        let now = Timestamp(1_800_000_000_000);
        let op = Scope::Operator;
        let ten = Scope::Tenant("maelys".into());
        let with = |r: TokenRequest, at: Option<&str>, within: Option<&str>| TokenRequest {
            expires_at: at.map(Into::into),
            expires_in: within.map(Into::into),
            ..r
        };
        let table: Vec<(TokenRequest, &Scope, &str)> = vec![
            (req(Some("operator"), None, Some("ci")), &op, "ok operator"),
            (
                req(Some("tenant"), Some("maelys"), Some("ci")),
                &op,
                "ok maelys",
            ),
            (
                req(Some("tenant"), Some("maelys"), Some("ci")),
                &ten,
                "403 token-create-forbidden",
            ),
            (
                req(Some("operator"), None, Some("ci")),
                &ten,
                "403 token-create-forbidden",
            ),
            (
                req(Some("tenant"), Some("nobody"), Some("ci")),
                &op,
                "404 no-such-tenant",
            ),
            (
                req(Some("tenant"), None, Some("ci")),
                &op,
                "400 token-bad-scope",
            ),
            (
                req(Some("operator"), Some("maelys"), Some("ci")),
                &op,
                "400 token-bad-scope",
            ),
            (req(None, None, Some("ci")), &op, "400 token-bad-scope"),
            (
                req(Some("root"), None, Some("ci")),
                &op,
                "400 token-bad-scope",
            ),
            (
                req(Some("operator"), None, None),
                &op,
                "400 token-needs-name",
            ),
            (
                req(Some("operator"), None, Some("  ")),
                &op,
                "400 token-needs-name",
            ),
            (
                with(req(Some("operator"), None, Some("ci")), None, Some("90d")),
                &op,
                "ok operator",
            ),
            (
                with(
                    req(Some("operator"), None, Some("ci")),
                    Some("2020-01-01T00:00:00Z"),
                    None,
                ),
                &op,
                "400 token-bad-expiry",
            ),
            (
                with(req(Some("operator"), None, Some("ci")), Some("soon"), None),
                &op,
                "400 token-bad-expiry",
            ),
            (
                with(
                    req(Some("operator"), None, Some("ci")),
                    None,
                    Some("forever"),
                ),
                &op,
                "400 token-bad-expiry",
            ),
            (
                with(
                    req(Some("operator"), None, Some("ci")),
                    Some("2099-01-01T00:00:00Z"),
                    Some("1h"),
                ),
                &op,
                "400 token-bad-expiry",
            ),
        ];
        for (i, (r, scope, want)) in table.into_iter().enumerate() {
            assert_eq!(slug(validate(r, &c, scope, "itk_x", now)), want, "row {i}");
        }
    }

    #[test]
    fn the_record_holds_the_hash_and_the_json_never_the_token() {
        let now = Timestamp(1_800_000_000_000);
        let secret = token::mint();
        let r = TokenRequest {
            expires_in: Some("1h".into()),
            ..req(Some("tenant"), Some("maelys"), Some("zapier"))
        };
        let t = validate(r, &config(), &Scope::Operator, &secret, now).unwrap();
        assert_eq!(t.hash, token::hash(&secret));
        assert!(t.id.starts_with("tok_"));
        assert_eq!(
            t.expires_at,
            Some(now.plus(std::time::Duration::from_secs(3600)))
        );
        let shown = serde_json::to_string(&token_view(&t, now)).unwrap();
        assert!(
            !shown.contains(&secret) && !shown.contains(&t.hash),
            "{shown}"
        );
        assert_eq!(token_view(&t, now).state, TokenState::Active);
        assert_eq!(
            token_view(&t, t.expires_at.unwrap()).state,
            TokenState::Expired
        );
    }
}
