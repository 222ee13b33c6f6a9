//! The SOR-facing door: `POST /ingest/{source_id}`.
//!
//! The order of checks is the order of cost and of trust: find the source (404), read the body
//! within the limit (413), verify the signature (401: nothing of an unauthenticated request is
//! stored), parse (400: the body is kept with the reason), then commit the event and its
//! deliveries in one durable transaction. Only a successful commit answers 200; a store that
//! cannot commit answers 503 so the system of record retries.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use intake_connectors::Incoming;
use intake_core::event::Origin;
use intake_core::{DeliveryId, EventId};
use intake_store::{NewEvent, Rejection, RejectionKind};

use crate::metrics::{Outcome, REQUESTS};
use crate::problem::Problem;
use crate::runtime::AppState;

/// The most of a rejected body kept for diagnosis.
const KEPT_REJECTED_BODY: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/ingest/{source_id}", post(ingest))
}

async fn ingest(
    State(app): State<Arc<AppState>>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(source) = app.sources.get(&source_id) else {
        // Counted without the name it was called by: a label per arbitrary path would let any
        // client grow the metrics without bound.
        metrics::counter!(REQUESTS, "outcome" => "unknown_source", "tenant" => "", "source" => "")
            .increment(1);
        tracing::debug!(source = %source_id, "request for an unknown source");
        return Problem::not_found(
            "unknown-source",
            format!("no source `{source_id}` is configured; check the URL the system of record posts to"),
        )
        .into_response();
    };
    let tenant = source.config.tenant.as_str();
    let now = app.clock.now();

    let limit = usize::try_from(app.config.server.max_body_size.0).unwrap_or(usize::MAX);
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            source.metrics.request(Outcome::TooLarge, started.elapsed());
            record(
                &app,
                tenant,
                &source_id,
                RejectionKind::TooLarge,
                format!("body over {limit} bytes"),
                None,
            );
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                format!("the body is over the limit of {limit} bytes (server.max_body_size)"),
            )
            .into_response();
        }
        Err(e) => {
            // The client went away or sent a broken body: nothing to acknowledge.
            source
                .metrics
                .request(Outcome::RejectedInvalid, started.elapsed());
            return Problem::bad_request(
                "unreadable-body",
                format!("could not read the body: {e}"),
            )
            .into_response();
        }
    };

    let incoming = Incoming {
        headers: &headers,
        body: &body,
        now,
    };
    if let Err(e) = source.connector.verify(&incoming, &source.config.secrets) {
        source
            .metrics
            .request(Outcome::RejectedSignature, started.elapsed());
        record(
            &app,
            tenant,
            &source_id,
            RejectionKind::Signature,
            e.to_string(),
            None,
        );
        return Problem::unauthorized("bad-signature", e.to_string()).into_response();
    }

    if let Some(h) = source.connector.handshake(&incoming) {
        source
            .metrics
            .request(Outcome::Handshake, started.elapsed());
        tracing::info!(source = %source_id, "answered the system of record's setup handshake");
        let status = StatusCode::from_u16(h.status).unwrap_or(StatusCode::OK);
        return (
            status,
            [(axum::http::header::CONTENT_TYPE, h.content_type)],
            h.body,
        )
            .into_response();
    }

    let normalized = match source.connector.parse(&incoming) {
        Ok(n) => n,
        Err(e) => {
            source
                .metrics
                .request(Outcome::RejectedInvalid, started.elapsed());
            let kept = body[..body.len().min(KEPT_REJECTED_BODY)].to_vec();
            record(
                &app,
                tenant,
                &source_id,
                RejectionKind::Invalid,
                e.to_string(),
                Some(kept),
            );
            return Problem::bad_request("unparseable-body", e.to_string()).into_response();
        }
    };

    let kept_headers = source
        .connector
        .kept_headers()
        .iter()
        .filter_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect();
    let channel = normalized.channel;
    let event = NewEvent {
        id: EventId::generate(now),
        tenant: tenant.to_string(),
        source: source_id.clone(),
        origin: Origin::Webhook,
        normalized,
        received_at: now,
        headers: kept_headers,
        body: body.to_vec(),
        deliveries: source
            .config
            .destinations
            .iter()
            .map(|d| (DeliveryId::generate(now), d.clone()))
            .collect(),
    };

    match app.store.ingest(event).await {
        Ok(accepted) => {
            if accepted.duplicate {
                source
                    .metrics
                    .request(Outcome::Duplicate, started.elapsed());
            } else {
                for wake in &source.wakers {
                    wake.notify_one();
                }
                source.metrics.request(Outcome::Accepted, started.elapsed());
                source.metrics.event(channel);
            }
            (StatusCode::OK, Json(accepted)).into_response()
        }
        Err(e) => {
            source
                .metrics
                .request(Outcome::Unavailable, started.elapsed());
            tracing::error!(source = %source_id, error = %e, "ingest could not commit; answered 503");
            Problem::unavailable(format!(
                "the event was not stored ({e}); nothing was acknowledged, retry later"
            ))
            .into_response()
        }
    }
}

/// Counts a rejection in the store without holding up the answer: the answer does not
/// acknowledge any work, so it need not wait for a commit.
fn record(
    app: &Arc<AppState>,
    tenant: &str,
    source: &str,
    kind: RejectionKind,
    reason: String,
    body: Option<Vec<u8>>,
) {
    let rejection = Rejection {
        at: app.clock.now(),
        tenant: tenant.to_string(),
        source: source.to_string(),
        kind,
        reason,
        body,
    };
    // A flood of forged or broken requests must not queue unbounded work for the store: past
    // a bound, rejections are only counted in the metrics (already done by the caller). They
    // acknowledge nothing, so dropping their record loses nothing that was promised.
    let Ok(permit) = app.rejection_slots.clone().try_acquire_owned() else {
        tracing::debug!("too many rejections being recorded; this one is only counted");
        return;
    };
    let store = app.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.record_rejection(rejection).await {
            tracing::warn!(error = %e, "could not record a rejected request");
        }
        drop(permit);
    });
}
