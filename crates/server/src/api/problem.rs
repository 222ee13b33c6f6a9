//! Errors as RFC 7807 problem bodies. Every error any route returns goes through [`Problem`],
//! so every error has a stable `type` that clients can match on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::ToResponse;

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

    /// 503: a `flow-stop` fire drill refuses this source's webhooks; retry once it is over.
    pub fn drill(detail: impl Into<String>, remaining: std::time::Duration) -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "drill-flow-stop",
            "Refused by a fire drill",
            detail,
        );
        p.retry_after = Some(remaining.as_secs().max(1));
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

/// A read retention cut: `expired-by-retention` (400), saying from when to ask instead.
impl From<crate::duties::retention::Cut> for Problem {
    fn from(c: crate::duties::retention::Cut) -> Self {
        match c {
            crate::duties::retention::Cut::Store(e) => Problem::from(e),
            crate::duties::retention::Cut::Expired(why) => {
                Problem::bad_request("expired-by-retention", why)
            }
        }
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

// How problems appear in the OpenAPI document (`api::openapi`): one shared response per
// status, named in the handlers' `#[utoipa::path]` as `(status = 404, response = NotFound)`.

/// A problem response: an RFC 7807 body, `application/problem+json`.
fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// Declares a reusable problem response (`components.responses.<Name>`), named in the
/// handlers' `responses(...)` as `(status = …, response = Name)`.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => $description:literal;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), problem_response($description).build().into())
            }
        }
    )*};
}

problem_responses! {
    /// 400.
    BadRequest => "The request is malformed: `invalid-parameter` (a query parameter is unknown \
        or malformed; `detail` names it), `invalid-body`, or a refusal particular to the \
        route (its `type` says which; see docs/api.md).";
    /// 401.
    Unauthorized => "`missing-token` or `bad-token`: no bearer token, or one that is not \
        valid (unknown, revoked, expired).";
    /// 403.
    Forbidden => "The token may not do this (e.g. a tenant token where the operator's is \
        needed).";
    /// 404.
    NotFound => "No such thing, or not visible to this token (a tenant token asking for \
        another tenant's data gets 404, as if it did not exist).";
    /// 409.
    Conflict => "The request conflicts with the current state (e.g. `silence-already-ended`).";
    /// 422.
    Unprocessable => "The request is well-formed but its content cannot be applied (e.g. \
        `invalid-outcome` of a completion receipt).";
}

/// 503: the store cannot answer; `Retry-After` says when to try again.
pub(crate) struct Unavailable;

impl<'s> ToResponse<'s> for Unavailable {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0));
        let retry_after = HeaderBuilder::new()
            .schema(seconds)
            .description(Some("Seconds to wait before retrying."))
            .build();
        let response = problem_response(
            "`store-unavailable`: the store cannot answer (for a minted `itk_…` token, it could \
             not be checked). Retry after `Retry-After` seconds.",
        )
        .header("Retry-After", retry_after)
        .build();
        ("Unavailable", response.into())
    }
}
