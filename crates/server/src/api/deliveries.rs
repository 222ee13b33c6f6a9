//! Completion receipts: `POST /api/v1/deliveries/{id}/complete` and
//! `POST /api/v1/deliveries/complete` (a batch). A handler whose destination has
//! `completion = "receipt"` says here that its own work on a delivery is done (or that its
//! business logic failed); until then the delivery is `received`, not `completed`.
//!
//! A confirmation is authenticated either by a bearer token (the operator's, or a tenant's
//! for its own tenant's deliveries) or, for handlers that hold no token, as a Standard
//! Webhooks message signed with the destination's own secret: `webhook-id` (the delivery id;
//! for a batch, any id of the handler's and `intake-destination` naming the destination),
//! `webhook-timestamp` (within 5 minutes) and `webhook-signature` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`. The bearer middleware lets such a request
//! through only on these routes ([`is_signed_confirmation`]); the handlers here check it.
//!
//! Refusals: 401 `bad-receipt-signature` / `stale-receipt` (forged or stale), 404
//! `no-such-delivery`, 409 `not-on-receipts` (its destination counts a 2xx as done) or
//! `not-received` (never sent yet), 422 `invalid-outcome`. Confirming twice is harmless: the
//! first outcome stands and the repeat answers 200 with `duplicate: true`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use intake_core::delivery::{CompletionOutcome, CompletionState, Confirmation};
use intake_core::signature::{verify_message, MessageRefusal};
use intake_core::DeliveryId;
use intake_store::{CompletionReply, CompletionRequest, DeliveryRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::problem::{Conflict, NotFound, Problem, Unauthorized, Unavailable, Unprocessable};
use super::{Resource, Scope};
use crate::state::AppState;

/// The most confirmations one batch carries.
pub const MAX_BATCH: usize = 1000;

/// The longest `detail` kept; a longer one is cut (a note for people, not a payload).
const MAX_DETAIL: usize = 4096;

/// The completion routes.
pub(crate) fn routes() -> Resource {
    Resource::new()
        .route(routes!(complete_one))
        .route(routes!(complete_batch))
}

/// Whether a request without a bearer token may reach these handlers: a signed confirmation
/// (it carries `webhook-signature`) to one of the completion routes.
pub(crate) fn is_signed_confirmation(path: &str, headers: &HeaderMap) -> bool {
    let path = path.trim_end_matches('/');
    path.ends_with("/complete")
        && path.contains("deliveries/")
        && headers.contains_key("webhook-signature")
}

/// What a handler says about its work.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionBody {
    /// `ok` (the default) or `failed` (the business logic failed).
    #[serde(default)]
    outcome: Option<String>,
    /// A note for people (at most 4 KiB are kept).
    #[serde(default)]
    detail: Option<String>,
}

/// One confirmation of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// The delivery (`dlv_…`, the `intake-delivery-id` header of the delivery).
    id: String,
    /// `ok` (the default) or `failed`.
    #[serde(default)]
    outcome: Option<String>,
    /// A note for people.
    #[serde(default)]
    detail: Option<String>,
}

/// A batch of confirmations.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// At most 1000 confirmations.
    items: Vec<BatchItem>,
}

/// The answer to one confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CompletionResult {
    /// The delivery.
    pub id: String,
    /// The HTTP status this confirmation alone would have had (200, 404, 409, 422).
    pub status: u16,
    /// Where the handler's work stands now (with 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<CompletionState>,
    /// Whether it was confirmed before (the first outcome stands).
    pub duplicate: bool,
    /// The problem's `type`, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answers to a batch, in the order of its items.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// One result per item.
    pub results: Vec<CompletionResult>,
}

/// `POST /api/v1/deliveries/{id}/complete`.
#[utoipa::path(
    post,
    path = "/deliveries/{id}/complete",
    operation_id = "complete_delivery",
    tag = "deliveries",
    summary = "Confirm a delivery's work (completion receipt)",
    description = "For a destination with `completion = \"receipt\"`: the handler's work on \
        this delivery is done (`outcome: ok`, the default; an empty body is fine) or its \
        business logic failed (`failed`). Authenticated by a bearer token, or signed with the \
        destination's secret as a Standard Webhooks message whose `webhook-id` is the delivery \
        id. The first outcome stands; a repeat answers 200 with `duplicate: true`.",
    params(("id" = String, Path, description = "The delivery id (`dlv_…`).")),
    request_body(content = Option<CompletionBody>, description = "Optional outcome and detail."),
    responses(
        (status = 200, description = "Recorded, or recorded before.", body = CompletionResult),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ()),
)]
async fn complete_one(
    State(app): State<Arc<AppState>>,
    scope: Option<Extension<Scope>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CompletionResult>, Problem> {
    let body_text: CompletionBody = if body.iter().all(u8::is_ascii_whitespace) {
        CompletionBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            unprocessable(
                "invalid-body",
                format!(
                    "the body must be empty or a JSON object with `outcome` and `detail` ({e})"
                ),
            )
        })?
    };
    let outcome = outcome_of(body_text.outcome.as_deref())?;
    let record = find(&app, &id).await?;
    match scope {
        Some(Extension(scope)) if scope.sees(&record.tenant) => {}
        Some(_) => return Err(no_such_delivery(&id)),
        None => check_signature(&app, &record.destination, &id, &headers, &body)?,
    }
    check_on_receipts(&app, &record)?;
    let request = CompletionRequest {
        id: record.id.clone(),
        outcome,
        detail: body_text.detail.map(cut),
        at: app.clock.now(),
    };
    let reply = app
        .store
        .complete_deliveries(vec![request])
        .await?
        .pop()
        .unwrap_or(CompletionReply::NotFound);
    count(&record, reply);
    match reply {
        CompletionReply::Confirmed(c) => Ok(Json(confirmed(&id, c))),
        CompletionReply::NotFound => Err(no_such_delivery(&id)),
        CompletionReply::NotReceived => Err(not_received(&id)),
    }
}

/// A confirmation without a bearer token, signed with the destination's secret: what the
/// route does for a handler, for the built-in demo handler, which runs in this process.
pub(crate) async fn confirm_delivery(
    app: Arc<AppState>,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CompletionResult>, Problem> {
    complete_one(State(app), None, Path(id), headers, body).await
}

/// `POST /api/v1/deliveries/complete`.
#[utoipa::path(
    post,
    path = "/deliveries/complete",
    operation_id = "complete_deliveries",
    tag = "deliveries",
    summary = "Confirm many deliveries' work at once",
    description = "Up to 1000 confirmations, `{\"items\": [{\"id\": \"dlv_…\", \"outcome\": \
        \"ok\"}]}`, answered one result per item in order (each with the status it would have had \
        alone). Signed with a destination's secret, the request names it in \
        `intake-destination` and `webhook-id` is any id of the handler's; items of other \
        destinations are 404.",
    request_body = BatchBody,
    responses(
        (status = 200, description = "One result per item.", body = BatchResult),
        (status = 401, response = Unauthorized),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ()),
)]
async fn complete_batch(
    State(app): State<Arc<AppState>>,
    scope: Option<Extension<Scope>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BatchResult>, Problem> {
    let batch: BatchBody = serde_json::from_slice(&body).map_err(|e| {
        unprocessable(
            "invalid-body",
            format!("the body must be a JSON object `{{\"items\": [{{\"id\": …}}]}}` ({e})"),
        )
    })?;
    if batch.items.len() > MAX_BATCH {
        return Err(unprocessable(
            "batch-too-large",
            format!(
                "{} items; a batch carries at most {MAX_BATCH}",
                batch.items.len()
            ),
        ));
    }
    // Signed: one destination's secret, named by the request, vouches for its items only.
    let signed_for = match &scope {
        Some(_) => None,
        None => {
            let destination = header(&headers, "intake-destination").ok_or_else(|| {
                Problem::unauthorized(
                    "bad-receipt-signature",
                    "a signed batch names its destination in `intake-destination`",
                )
            })?;
            let msg_id = header(&headers, "webhook-id").unwrap_or_default();
            check_signature(&app, &destination, &msg_id, &headers, &body)?;
            Some(destination)
        }
    };
    let mut results: Vec<Option<CompletionResult>> = Vec::with_capacity(batch.items.len());
    let mut requests = Vec::new();
    let mut pending = Vec::new();
    let now = app.clock.now();
    for (i, item) in batch.items.into_iter().enumerate() {
        let checked = check_item(
            &app,
            scope.as_ref().map(|e| &e.0),
            signed_for.as_deref(),
            &item,
        )
        .await;
        match checked {
            Ok((record, outcome)) => {
                let record_labels = record.clone();
                requests.push(CompletionRequest {
                    id: record.id,
                    outcome,
                    detail: item.detail.map(cut),
                    at: now,
                });
                pending.push((i, item.id, record_labels));
                results.push(None);
            }
            Err(p) if p.status == 503 => return Err(p),
            Err(p) => results.push(Some(refused(&item.id, &p))),
        }
    }
    let replies = app.store.complete_deliveries(requests).await?;
    for ((i, id, record), reply) in pending.into_iter().zip(replies) {
        count(&record, reply);
        results[i] = Some(match reply {
            CompletionReply::Confirmed(c) => confirmed(&id, c),
            CompletionReply::NotFound => refused(&id, &no_such_delivery(&id)),
            CompletionReply::NotReceived => refused(&id, &not_received(&id)),
        });
    }
    Ok(Json(BatchResult {
        results: results.into_iter().flatten().collect(),
    }))
}

/// One item of a batch checked as the single route checks it (the signature, if any, was
/// checked for the whole batch).
async fn check_item(
    app: &AppState,
    scope: Option<&Scope>,
    signed_for: Option<&str>,
    item: &BatchItem,
) -> Result<(DeliveryRecord, CompletionOutcome), Problem> {
    let outcome = outcome_of(item.outcome.as_deref())?;
    let record = find(app, &item.id).await?;
    let visible = match (scope, signed_for) {
        (Some(scope), _) => scope.sees(&record.tenant),
        (None, Some(destination)) => record.destination == destination,
        (None, None) => false,
    };
    if !visible {
        return Err(no_such_delivery(&item.id));
    }
    check_on_receipts(app, &record)?;
    Ok((record, outcome))
}

async fn find(app: &AppState, id: &str) -> Result<DeliveryRecord, Problem> {
    let Ok(parsed) = id.parse::<DeliveryId>() else {
        return Err(no_such_delivery(id));
    };
    app.store
        .get_delivery(&parsed)
        .await?
        .ok_or_else(|| no_such_delivery(id))
}

fn outcome_of(asked: Option<&str>) -> Result<CompletionOutcome, Problem> {
    match asked {
        None => Ok(CompletionOutcome::Ok),
        Some(o) => CompletionOutcome::parse(o).ok_or_else(|| {
            unprocessable(
                "invalid-outcome",
                format!("`outcome`: `{o}` is not one of ok, failed"),
            )
        }),
    }
}

fn check_on_receipts(app: &AppState, record: &DeliveryRecord) -> Result<(), Problem> {
    let on_receipts = app
        .destinations
        .get(&record.destination)
        .is_some_and(|d| d.config.uses_receipts());
    if on_receipts {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::CONFLICT,
            "not-on-receipts",
            "Conflict",
            format!(
                "delivery `{}` goes to destination `{}`, which counts a 2xx as done \
                 (`completion = \"ack\"`); set `completion = \"receipt\"` on it to confirm work",
                record.id, record.destination
            ),
        ))
    }
}

fn check_signature(
    app: &AppState,
    destination: &str,
    msg_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Problem> {
    let Some(dest) = app.destinations.get(destination) else {
        return Err(Problem::unauthorized(
            "bad-receipt-signature",
            format!("no destination `{destination}` is configured to vouch for this confirmation"),
        ));
    };
    let signed_id = header(headers, "webhook-id").unwrap_or_default();
    if signed_id != msg_id {
        return Err(Problem::unauthorized(
            "bad-receipt-signature",
            "`webhook-id` must be the delivery id being confirmed",
        ));
    }
    let timestamp = header(headers, "webhook-timestamp").unwrap_or_default();
    let signatures = header(headers, "webhook-signature").unwrap_or_default();
    let now = app.clock.now().as_secs();
    verify_message(
        std::slice::from_ref(&dest.key),
        msg_id,
        &timestamp,
        now,
        body,
        &signatures,
    )
    .map_err(|r| match r {
        MessageRefusal::Stale => Problem::unauthorized("stale-receipt", r.to_string()),
        _ => Problem::unauthorized("bad-receipt-signature", r.to_string()),
    })
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// Counts a recorded confirmation in `intake_completions_total` (a repeat is not counted).
fn count(record: &DeliveryRecord, reply: CompletionReply) {
    if let CompletionReply::Confirmed(Confirmation::Recorded(state)) = reply {
        metrics::counter!(
            crate::metrics::COMPLETIONS,
            "outcome" => state.as_str(),
            "tenant" => record.tenant.clone(),
            "source" => record.source.clone(),
            "destination" => record.destination.clone(),
        )
        .increment(1);
    }
}

fn confirmed(id: &str, c: Confirmation) -> CompletionResult {
    CompletionResult {
        id: id.to_string(),
        status: 200,
        completion: Some(c.state()),
        duplicate: matches!(c, Confirmation::Duplicate(_)),
        error: None,
    }
}

fn refused(id: &str, p: &Problem) -> CompletionResult {
    CompletionResult {
        id: id.to_string(),
        status: p.status,
        completion: None,
        duplicate: false,
        error: Some(p.type_.clone()),
    }
}

fn no_such_delivery(id: &str) -> Problem {
    Problem::not_found(
        "no-such-delivery",
        format!("no delivery `{id}` is visible to this request"),
    )
}

fn not_received(id: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not-received",
        "Conflict",
        format!("delivery `{id}` has not been sent to the handler yet"),
    )
}

fn unprocessable(slug: &str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        slug,
        "Unprocessable",
        detail,
    )
}

/// A detail cut to [`MAX_DETAIL`] bytes, at a character boundary.
fn cut(mut s: String) -> String {
    if s.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_requests_to_the_completion_routes_skip_the_bearer_token() {
        let mut signed = HeaderMap::new();
        signed.insert("webhook-signature", "v1,abc".parse().unwrap());
        let cases = [
            ("/deliveries/dlv_1/complete", true, true),
            ("/api/v1/deliveries/dlv_1/complete", true, true),
            ("/api/v1/deliveries/complete", true, true),
            ("/api/v1/deliveries/dlv_1/complete", false, false),
            ("/api/v1/events", true, false),
            ("/api/v1/deliveries/dlv_1", true, false),
            ("/api/v1/tokens/complete", true, false),
        ];
        for (path, with_signature, want) in cases {
            let headers = if with_signature {
                signed.clone()
            } else {
                HeaderMap::new()
            };
            assert_eq!(is_signed_confirmation(path, &headers), want, "{path}");
        }
    }

    #[test]
    fn outcomes_default_to_ok_and_unknown_ones_are_refused() {
        assert_eq!(outcome_of(None).ok(), Some(CompletionOutcome::Ok));
        assert_eq!(
            outcome_of(Some("failed")).ok(),
            Some(CompletionOutcome::Failed)
        );
        let p = outcome_of(Some("done")).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.type_, "urn:intake:problem:invalid-outcome");
    }

    #[test]
    fn details_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_DETAIL);
        let cut = cut(long);
        assert!(cut.len() <= MAX_DETAIL && cut.chars().all(|c| c == 'é'));
        assert_eq!(super::cut("short".into()), "short");
    }
}
