//! What every page shares: the viewer a session resolved to, the frame around a page (title,
//! navigation, who is logged in, the CSRF token its forms carry), rendering a template into a
//! response, errors as pages, and the few ways the dashboard writes times and labels (pure
//! functions, tested below).

use std::collections::BTreeMap;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use intake_core::Timestamp;

use super::NAV;
use crate::api::problem::Problem;
use crate::api::Scope;

/// Who is looking: the scope their session resolved to, with the admin API's rules, and the
/// CSRF token of that session.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// What they may see.
    pub scope: Scope,
    /// The `_csrf` value their forms carry.
    pub csrf: String,
}

impl Viewer {
    /// The tenant a listing is restricted to (the viewer's own, for a tenant session).
    pub fn tenant(&self) -> Option<String> {
        match &self.scope {
            Scope::Operator => None,
            Scope::Tenant(t) => Some(t.clone()),
        }
    }
}

/// One link of the navigation.
pub(crate) struct NavLink {
    pub href: String,
    pub label: String,
    pub current: bool,
}

/// The frame of a page: what `base.html` needs.
pub(crate) struct Chrome {
    /// The page's title (also the `<title>`).
    pub title: String,
    /// The navigation, with the current page marked.
    pub nav: Vec<NavLink>,
    /// Who is logged in, in words.
    pub who: String,
    /// The CSRF token of the logout form (and of the page's own forms).
    pub csrf: String,
}

impl Chrome {
    /// The frame of the page at `path` (the navigation entry it belongs to is marked).
    pub fn new(viewer: &Viewer, path: &str, title: impl Into<String>) -> Self {
        let mut nav: Vec<NavLink> = NAV
            .iter()
            .map(|p| NavLink {
                href: p.path.to_string(),
                label: p.label.to_string(),
                current: p.path == path,
            })
            .collect();
        // A tenant's own page is its overview's next step: one link, in the navigation.
        if let Scope::Tenant(t) = &viewer.scope {
            let href = format!("/tenants/{t}");
            nav.insert(
                1,
                NavLink {
                    current: path == href,
                    href,
                    label: format!("Tenant {t}"),
                },
            );
        }
        Chrome {
            title: title.into(),
            nav,
            who: match &viewer.scope {
                Scope::Operator => "operator".to_string(),
                Scope::Tenant(t) => format!("tenant {t}"),
            },
            csrf: viewer.csrf.clone(),
        }
    }
}

/// A template rendered into a 200 page (or a 500 page if it cannot be rendered, which a
/// compile-time checked template only does on a formatting error).
pub(crate) fn render(t: &impl Template) -> Response {
    render_with(StatusCode::OK, t)
}

/// A template rendered into a page with `status`.
pub(crate) fn render_with(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => PageError(Problem::internal(format!(
            "the page could not be rendered: {e}"
        )))
        .into_response(),
    }
}

/// A template rendered into a string, to be placed inside a page (a live fragment).
pub(crate) fn html(t: &impl Template) -> Result<String, PageError> {
    t.render().map_err(|e| {
        PageError(Problem::internal(format!(
            "the page could not be rendered: {e}"
        )))
    })
}

/// An error shown as a page: the problem's status, title and detail, the same words the admin
/// API would answer with.
#[derive(Debug)]
pub(crate) struct PageError(pub Problem);

impl From<Problem> for PageError {
    fn from(p: Problem) -> Self {
        PageError(p)
    }
}

impl From<intake_store::StoreError> for PageError {
    fn from(e: intake_store::StoreError) -> Self {
        PageError(Problem::from(e))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    detail: &'a str,
    kind: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let p = &self.0;
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let page = ErrorPage {
            status: p.status,
            title: p.title,
            detail: &p.detail,
            kind: &p.type_,
        };
        let html = page
            .render()
            .unwrap_or_else(|_| format!("{} {}: {}", p.status, p.title, p.detail));
        let mut r = (status, Html(html)).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// A page's query parameters: none is the default, malformed ones are a 400 page naming them.
pub(crate) fn query<T: Default>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, PageError> {
    match q {
        Ok(axum::extract::Query(t)) => Ok(t),
        Err(e) => Err(PageError(Problem::bad_request(
            "invalid-parameter",
            e.body_text(),
        ))),
    }
}

/// A page or an error page.
pub(crate) type PageResult = Result<Response, PageError>;

/// One option of a `<select>`.
pub(crate) struct Opt {
    pub value: String,
    pub selected: bool,
}

/// The options of a `<select>`, the chosen one marked.
pub(crate) fn options(values: impl IntoIterator<Item = String>, chosen: &str) -> Vec<Opt> {
    values
        .into_iter()
        .map(|value| Opt {
            selected: value == chosen,
            value,
        })
        .collect()
}

/// How long ago `t` was, in the largest two units: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub(crate) fn ago(now: Timestamp, t: Timestamp) -> String {
    duration(now.since(t).as_secs())
}

/// A number of seconds in the largest two units.
pub(crate) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) if s == 0 => format!("{m}m"),
        (0, 0, m) => format!("{m}m {s}s"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// An instant as people read it on the dashboard: `2026-11-28 10:04:05Z` (UTC, to the second).
pub(crate) fn when(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    // RFC 3339 with milliseconds: `2026-11-28T10:04:05.123Z`.
    match (s.get(..10), s.get(11..19)) {
        (Some(day), Some(time)) => format!("{day} {time}Z"),
        _ => s,
    }
}

/// Labels as one line: `tenant=maelys source=maelys-kustomer` (empty values left out).
pub(crate) fn labels_text(labels: &BTreeMap<String, String>) -> String {
    const ORDER: [&str; 6] = [
        "tenant",
        "source",
        "channel",
        "destination",
        "notifier",
        "rule",
    ];
    let mut out: Vec<String> = ORDER
        .iter()
        .filter_map(|k| {
            labels
                .get(*k)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={v}"))
        })
        .collect();
    out.extend(
        labels
            .iter()
            .filter(|(k, v)| !ORDER.contains(&k.as_str()) && !v.is_empty())
            .map(|(k, v)| format!("{k}={v}")),
    );
    out.join(" ")
}

/// A query string from pairs, each value encoded (`?a=1&b=x%20y`); empty values left out.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

/// A path segment, percent-encoded (ids are plain, but a path is built from what was stored).
pub(crate) fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_two_units() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (192, "3m 12s"),
            (3600, "1h"),
            (7500, "2h 5m"),
            (86_400, "1d"),
            (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
        ];
        for (secs, want) in cases {
            assert_eq!(duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn times_labels_and_queries_are_written_for_people() {
        let t = Timestamp::parse_rfc3339("2026-11-28T10:04:05.123Z").unwrap();
        assert_eq!(when(t), "2026-11-28 10:04:05Z");
        let labels: BTreeMap<String, String> = [
            ("channel", "chat"),
            ("tenant", "maelys"),
            ("destination", ""),
            ("zone", "eu"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels_text(&labels), "tenant=maelys channel=chat zone=eu");
        assert_eq!(
            query_string(&[
                ("rule", "inbound_stopped"),
                ("tenant", "a b"),
                ("source", "")
            ]),
            "?rule=inbound_stopped&tenant=a+b"
        );
        assert_eq!(query_string(&[("source", "")]), "");
    }
}
