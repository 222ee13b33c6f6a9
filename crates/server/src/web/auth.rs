//! Logging in and out, and the gate every other page is behind: a session cookie resolved to
//! a [`Scope`] with the admin API's rules on every request, and the CSRF check on every form
//! post. Handlers behind the gate find the [`Viewer`] in the request's extensions and never
//! see a request that failed either check.

use std::sync::Arc;

use askama::Template;
use axum::body::{to_bytes, Body};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use intake_core::signature::constant_time_eq;
use serde::Deserialize;

use super::page::{render_with, PageError, Viewer};
use super::session::{self, Credential, Session};
use crate::api::problem::Problem;
use crate::api::{self, Scope};
use crate::state::AppState;

/// The largest form the dashboard reads (its forms are a few short fields).
const FORM_LIMIT: usize = 64 * 1024;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    next: &'a str,
    error: Option<&'a str>,
}

/// `GET /login` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`.
pub(crate) async fn login_page(q: Result<Query<LoginQuery>, QueryRejection>) -> Response {
    let next = q.ok().and_then(|Query(q)| q.next);
    render_with(
        StatusCode::OK,
        &LoginPage {
            next: session::safe_next(next.as_deref()),
            error: None,
        },
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

const BAD_TOKEN: &str = "That token is not admin.token, a tenant's api_token, nor a valid \
    token made with `intake token create` (it may have been revoked or have expired).";

/// `POST /login`: the token is checked exactly as the admin API checks a bearer token; the
/// session remembers a fingerprint of it, never the token.
pub(crate) async fn login(
    State(app): State<Arc<AppState>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = session::safe_next(form.next.as_deref()).to_string();
    let token = form.token.trim();
    let scope = match api::scope_of_token(&app, token).await {
        Ok(scope) => scope,
        Err(p) => return PageError(p).into_response(),
    };
    let Some(scope) = scope else {
        tracing::info!("dashboard login refused: unknown token");
        let page = LoginPage {
            next: &next,
            error: Some(BAD_TOKEN),
        };
        return render_with(StatusCode::UNAUTHORIZED, &page);
    };
    let configured = api::configured_scope(&app.config, |t| {
        constant_time_eq(t.as_bytes(), token.as_bytes())
    });
    let credential = match configured {
        Some(_) => Credential::Configured(session::fingerprint(&app.web_key, token)),
        None => Credential::Minted(intake_core::token::hash(token)),
    };
    let value = session::encode(
        &app.web_key,
        &Session {
            credential,
            expires: app.clock.now().plus(session::LIFETIME),
        },
    );
    tracing::info!(scope = ?scope, "dashboard login");
    let cookie = session::set_cookie(&value, session::LIFETIME, secure(&app));
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

/// `POST /logout` (behind the gate, so it needs the CSRF token too): the cookie is deleted.
pub(crate) async fn logout(State(app): State<Arc<AppState>>) -> Response {
    let cookie = session::set_cookie("", std::time::Duration::ZERO, secure(&app));
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

fn secure(app: &AppState) -> bool {
    app.config
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The gate: no valid session, and a page redirects to the login (an htmx fragment asks
/// htmx to do so); a form post without this session's CSRF token is refused with 403.
pub(crate) async fn require_session(
    State(app): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::cookie_value)
        .map(str::to_string);
    let now = app.clock.now();
    let Some((value, s)) =
        cookie.and_then(|v| session::decode(&app.web_key, &v, now).ok().map(|s| (v, s)))
    else {
        return to_login(&req);
    };
    let scope = match resolve(&app, &s.credential).await {
        Ok(Some(scope)) => scope,
        Ok(None) => return to_login(&req),
        Err(p) => return PageError(p).into_response(),
    };
    let viewer = Viewer {
        scope,
        csrf: session::csrf_token(&app.web_key, &value),
    };
    let mut req = if req.method() == Method::POST {
        match check_csrf(&app, &value, req).await {
            Ok(req) => req,
            Err(refused) => return refused,
        }
    } else {
        req
    };
    req.extensions_mut().insert(viewer);
    next.run(req).await
}

/// The scope a session's credential has now, by the admin API's rules.
async fn resolve(app: &AppState, credential: &Credential) -> Result<Option<Scope>, Problem> {
    match credential {
        Credential::Configured(fp) => Ok(api::configured_scope(&app.config, |t| {
            constant_time_eq(
                session::fingerprint(&app.web_key, t).as_bytes(),
                fp.as_bytes(),
            )
        })),
        Credential::Minted(hash) => api::minted_scope(app, hash).await,
    }
}

/// Where a request without a session goes: a page to the login, coming back afterwards.
fn to_login(req: &Request) -> Response {
    let here = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let login = format!("/login{}", super::page::query_string(&[("next", here)]));
    if is_htmx(req.headers()) {
        // htmx follows `HX-Redirect` with a full page load; a plain 303 would be swapped in.
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&login) {
            r.headers_mut().insert("hx-redirect", v);
        }
        return r;
    }
    if req.method() != Method::GET {
        return PageError(Problem::unauthorized(
            "no-session",
            "this form needs a dashboard session: log in again and resend it",
        ))
        .into_response();
    }
    Redirect::to(&login).into_response()
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// Reads a form post's body to find `_csrf` (or the `x-csrf-token` header) and puts the body
/// back for the handler; a missing or wrong token is a 403 page.
async fn check_csrf(app: &AppState, cookie: &str, req: Request) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        PageError(Problem::bad_request(
            "form-too-large",
            format!("a dashboard form is at most {FORM_LIMIT} bytes"),
        ))
        .into_response()
    })?;
    let from_form = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == session::CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    let from_header = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let presented = from_form.or(from_header);
    if !session::csrf_ok(&app.web_key, cookie, presented.as_deref()) {
        tracing::warn!(path = %parts.uri.path(), "dashboard form refused: missing or wrong CSRF token");
        return Err(PageError(Problem::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "Forbidden",
            "this form did not carry this session's CSRF token (it may come from another \
             site, or from a page loaded before you logged in again): reload the page and \
             send it again",
        ))
        .into_response());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
