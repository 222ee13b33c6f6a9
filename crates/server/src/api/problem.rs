//! Errors as RFC 7807 problem bodies. Every error any route returns goes through [`Problem`],
//! so every error has a stable `type` that clients can match on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An RFC 7807 problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable URN naming the kind of problem, e.g. `urn:intake:problem:bad-signature`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short, stable summary.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this case, and what to do about it.
    pub detail: String,
    /// Seconds after which a retry may succeed (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of kind `slug` (the end of its `type`).
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            type_: format!("urn:intake:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(slug: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    /// 401: missing or wrong credentials.
    pub fn unauthorized(slug: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, slug, "Unauthorized", detail)
    }

    /// 404: no such thing (or not visible to this token).
    pub fn not_found(slug: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, slug, "Not found", detail)
    }

    /// 503: the store cannot commit; the client should retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Store unavailable",
            detail,
        );
        p.retry_after = Some(5);
        p
    }

    /// 503: refused for load (the connection caps or the body budget); retry in a second.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            detail,
        );
        p.retry_after = Some(1);
        p
    }

    /// 500: a bug.
    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<intake_store::StoreError> for Problem {
    fn from(e: intake_store::StoreError) -> Self {
        match e {
            intake_store::StoreError::Unavailable(_) | intake_store::StoreError::Closed => {
                Problem::unavailable(e.to_string())
            }
            other => Problem::internal(other.to_string()),
        }
    }
}
