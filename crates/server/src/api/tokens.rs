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
use axum::routing::get;
use axum::{Extension, Json, Router};
use intake_core::config::Config;
use intake_core::{token, Timestamp, TokenId};
use intake_store::ApiToken;
use serde::Deserialize;
use serde_json::{json, Value};

use super::problem::Problem;
use super::Scope;
use crate::state::AppState;

/// The tokens' routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", axum::routing::delete(revoke))
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `operator` or `tenant`.
    #[serde(default)]
    pub scope: Option<String>,
    /// The tenant of a `tenant` token.
    #[serde(default)]
    pub tenant: Option<String>,
    /// What the token is for.
    #[serde(default, alias = "comment")]
    pub name: Option<String>,
    /// When it stops working (RFC 3339).
    #[serde(default)]
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

/// A token as the API shows it: never its text nor its hash.
pub fn token_json(t: &ApiToken, now: Timestamp) -> Value {
    let state = if t.revoked_at.is_some() {
        "revoked"
    } else if t.is_valid(now) {
        "active"
    } else {
        "expired"
    };
    json!({
        "id": t.id,
        "scope": if t.tenant.is_some() { "tenant" } else { "operator" },
        "tenant": t.tenant,
        "name": t.name,
        "created_by": t.created_by,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "state": state,
    })
}

async fn create(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
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
    let mut body = token_json(&record, now);
    body["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Value>, Problem> {
    let now = app.clock.now();
    let tenant = match &scope {
        Scope::Operator => None,
        Scope::Tenant(t) => Some(t.clone()),
    };
    let data: Vec<Value> = app
        .store
        .list_tokens(tenant)
        .await?
        .iter()
        .map(|t| token_json(t, now))
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn revoke(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
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
            Ok(Json(token_json(&t, now)))
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
        let shown = token_json(&t, now).to_string();
        assert!(
            !shown.contains(&secret) && !shown.contains(&t.hash),
            "{shown}"
        );
        assert_eq!(token_json(&t, now)["state"], "active");
        assert_eq!(token_json(&t, t.expires_at.unwrap())["state"], "expired");
    }
}
