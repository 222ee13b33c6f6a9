//! `GET /api/v1/rejections`: requests refused for an unparseable body.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::problem::Problem;
use super::{page_size, query, Scope};
use crate::state::AppState;

/// The rejections' route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/rejections", get(list_rejections))
}

/// `GET /api/v1/rejections` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionQuery {
    tenant: Option<String>,
    limit: Option<usize>,
}

/// Requests refused for an unparseable body, newest first, with the reason and the body as
/// received (text when it is UTF-8), so a sender's bad deploy can be diagnosed.
async fn list_rejections(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    q: Result<Query<RejectionQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let q = query(q)?;
    let tenant = scope.tenant_filter(q.tenant)?;
    let limit = page_size(q.limit)?;
    let rows = app.store.list_rejections(tenant, limit).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut v = json!({
                "at": r.at, "tenant": r.tenant, "source": r.source,
                "outcome": r.outcome, "reason": r.reason,
            });
            if let (Some(body), Value::Object(map)) = (&r.body, &mut v) {
                map.insert(
                    "body".into(),
                    Value::String(String::from_utf8_lossy(body).into_owned()),
                );
            }
            v
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}
