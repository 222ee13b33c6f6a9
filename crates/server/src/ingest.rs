//! The SOR-facing door: `POST /ingest/{source_id}`.
//!
//! The order of checks is the order of cost and of trust: find the source (404), read the body
//! within the limit (413), verify the signature (401: nothing of an unauthenticated request is
//! stored), parse (400: the body is kept with the reason), then commit the event and its
//! deliveries in one durable transaction. Only a successful commit answers 200; a store that
//! cannot commit answers 503 so the system of record retries.
//!
//! A `flow-stop` fire drill of a source refuses its requests here, first, with 503 and a
//! problem naming the drill (`urn:intake:problem:drill-flow-stop`, `Retry-After` until the
//! drill's bound): nothing is stored, the system of record retries later, and the requests
//! are counted as `unavailable`, as when the store cannot commit. Canaries are refused too:
//! that is how the drill is detected.
//!
//! intake's own canaries come through this door like any webhook, signed by the source's
//! scheme. What tells them apart is intake's mark, the `intake-canary` header, checked under
//! the canary key (`intake_core::canary`): a request that carries a valid mark is stored with
//! origin `canary` (and kept out of `intake_events_total`); any other request is a webhook,
//! whatever its body says.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use intake_connectors::{Handshake, Incoming};
use intake_core::drill::Scenario;
use intake_core::event::{NormalizedEvent, Origin};
use intake_core::{DeliveryId, EventId, Timestamp};
use intake_store::{NewEvent, Rejection, RejectionKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::problem::Problem;
use crate::metrics::{Outcome, REQUESTS};
use crate::state::{AppState, SourceRuntime};

/// The most of a rejected body kept for diagnosis.
const KEPT_REJECTED_BODY: usize = 64 * 1024;

/// The ingest route.
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
        return unknown_source(&source_id);
    };
    let now = app.clock.now();
    if let Some(f) = app.faults.find(Scenario::FlowStop, &source_id, now) {
        source
            .metrics
            .request(Outcome::Unavailable, started.elapsed());
        return Problem::drill(
            format!(
                "fire drill {}: flow-stop on source `{source_id}` refuses its webhooks until {} at the latest; nothing was acknowledged, retry later",
                f.drill, f.expires_at
            ),
            f.expires_at.since(now),
        )
        .into_response();
    }
    let call = Call {
        app: &app,
        source,
        source_id: &source_id,
        started,
        now,
    };
    match call.handle(&headers, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

/// A request for a source that is not configured: 404.
fn unknown_source(source_id: &str) -> Response {
    // Counted without the name it was called by: a label per arbitrary path would let any
    // client grow the metrics without bound.
    metrics::counter!(REQUESTS, "outcome" => "unknown_source", "tenant" => "", "source" => "")
        .increment(1);
    tracing::debug!(source = %source_id, "request for an unknown source");
    Problem::not_found(
        "unknown-source",
        format!(
            "no source `{source_id}` is configured; check the URL the system of record posts to"
        ),
    )
    .into_response()
}

/// One ingest request for a configured source. Each step either hands on to the next or
/// ends the request with its problem (`Err`), having counted it.
struct Call<'a> {
    app: &'a Arc<AppState>,
    source: &'a SourceRuntime,
    source_id: &'a str,
    started: Instant,
    now: Timestamp,
}

impl Call<'_> {
    /// The checks in order of cost and of trust, then the commit.
    async fn handle(&self, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
        // The budget's permits (`_held`) live as long as the body does: to the answer.
        let (body, _held) = self.read_body(body).await?;
        let origin = self.origin(headers, &body);
        let incoming = Incoming {
            headers,
            body: &body,
            now: self.now,
        };
        self.verify(&incoming)?;
        if let Some(h) = self.source.connector.handshake(&incoming) {
            return Ok(self.handshake(h));
        }
        let normalized = self.parse(&incoming, &body)?;
        Ok(self.commit(headers, &body, normalized, origin).await)
    }

    /// `Canary` when the request carries intake's own mark, valid for this source and body;
    /// `Webhook` otherwise.
    fn origin(&self, headers: &HeaderMap, body: &[u8]) -> Origin {
        let marked = headers
            .get(intake_core::canary::HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|mark| self.app.canary_key.verify(self.source_id, body, mark));
        if marked {
            Origin::Canary
        } else {
            Origin::Webhook
        }
    }

    fn count(&self, outcome: Outcome) {
        self.source.metrics.request(outcome, self.started.elapsed());
    }

    fn tenant(&self) -> &str {
        self.source.config.tenant.as_str()
    }

    /// Reads the body within `server.max_body_size` (413 over it), within
    /// `server.body_timeout` (408 past it), and within the memory budget of the bodies in
    /// flight, `server.body_budget` (503 with `Retry-After` over it). The budget's permits are
    /// held until the request ends, with the body.
    async fn read_body(
        &self,
        body: Body,
    ) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Problem> {
        let limit = usize::try_from(self.app.config.server.max_body_size.0).unwrap_or(usize::MAX);
        let deadline = self.app.config.server.body_timeout.0;
        let read = read_within(body, limit, &self.app.body_budget);
        let failure = match tokio::time::timeout(deadline, read).await {
            Ok(Ok(read)) => return Ok(read),
            Ok(Err(failure)) => failure,
            Err(_) => BodyFailure::TimedOut,
        };
        Err(self.body_problem(failure, limit))
    }

    /// Counts a body that could not be read and says why.
    fn body_problem(&self, failure: BodyFailure, limit: usize) -> Problem {
        match failure {
            BodyFailure::TooLarge => {
                self.count(Outcome::TooLarge);
                record(
                    self.app,
                    self.tenant(),
                    self.source_id,
                    RejectionKind::TooLarge,
                    format!("body over {limit} bytes"),
                    None,
                );
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "Payload too large",
                    format!("the body is over the limit of {limit} bytes (server.max_body_size)"),
                )
            }
            BodyFailure::OverBudget => {
                self.count(Outcome::Shed);
                if self.app.logs.shed.hit(self.now) {
                    tracing::warn!(source = %self.source_id, "refused a request: bodies in flight over server.body_budget (503)");
                }
                Problem::overloaded(
                    "too many request bodies are being received at once (server.body_budget); nothing was acknowledged, retry later",
                )
            }
            BodyFailure::TimedOut => {
                self.count(Outcome::RejectedInvalid);
                Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    "Request timeout",
                    "the body was not received within server.body_timeout; nothing was acknowledged",
                )
            }
            BodyFailure::Broken(e) => {
                // The client went away or sent a broken body: nothing to acknowledge.
                self.count(Outcome::RejectedInvalid);
                Problem::bad_request("unreadable-body", format!("could not read the body: {e}"))
            }
        }
    }

    /// Verifies the signature (401: nothing of an unauthenticated request is stored).
    fn verify(&self, incoming: &Incoming<'_>) -> Result<(), Problem> {
        let Err(e) = self
            .source
            .connector
            .verify(incoming, &self.source.config.secrets)
        else {
            return Ok(());
        };
        self.count(Outcome::RejectedSignature);
        // A flood of forged requests must not become a flood of lines: the first is written,
        // then a summary per interval (the metrics count each one).
        if self.app.logs.bad_signature.hit(self.now) {
            tracing::warn!(source = %self.source_id, error = %e, "rejected a request: bad or missing signature (401)");
        }
        record(
            self.app,
            self.tenant(),
            self.source_id,
            RejectionKind::Signature,
            e.to_string(),
            None,
        );
        Err(Problem::unauthorized("bad-signature", e.to_string()))
    }

    /// Answers the system of record's setup handshake, storing nothing.
    fn handshake(&self, h: Handshake) -> Response {
        self.count(Outcome::Handshake);
        tracing::info!(source = %self.source_id, "answered the system of record's setup handshake");
        let status = StatusCode::from_u16(h.status).unwrap_or(StatusCode::OK);
        (
            status,
            [(axum::http::header::CONTENT_TYPE, h.content_type)],
            h.body,
        )
            .into_response()
    }

    /// Parses the body (400: the body is kept with the reason).
    fn parse(&self, incoming: &Incoming<'_>, body: &Bytes) -> Result<NormalizedEvent, Problem> {
        self.source.connector.parse(incoming).map_err(|e| {
            self.count(Outcome::RejectedInvalid);
            let kept = body[..body.len().min(KEPT_REJECTED_BODY)].to_vec();
            record(
                self.app,
                self.tenant(),
                self.source_id,
                RejectionKind::Invalid,
                e.to_string(),
                Some(kept),
            );
            Problem::bad_request("unparseable-body", e.to_string())
        })
    }

    /// Commits the event and its deliveries: 200 only once committed, 503 if the store cannot.
    async fn commit(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
        normalized: NormalizedEvent,
        origin: Origin,
    ) -> Response {
        let source = self.source;
        let channel = normalized.channel;
        let event = self.event(headers, body, normalized, origin);
        match self.app.store.ingest(event).await {
            Ok(accepted) => {
                if accepted.duplicate {
                    self.count(Outcome::Duplicate);
                } else {
                    for wake in &source.wakers {
                        wake.notify_one();
                    }
                    self.count(Outcome::Accepted);
                    // A canary is not the tenant's traffic: it has its own metrics.
                    if origin == Origin::Webhook {
                        source.metrics.event(channel);
                    }
                }
                (StatusCode::OK, Json(accepted)).into_response()
            }
            Err(e) => {
                self.count(Outcome::Unavailable);
                // One line per refused request wrote 217k lines in 40 s during an outage: the
                // first is written, then one summary per interval.
                if self.app.logs.unavailable.hit(self.now) {
                    tracing::error!(source = %self.source_id, error = %e, "ingest could not commit; answered 503");
                }
                Problem::unavailable(format!(
                    "the event was not stored ({e}); nothing was acknowledged, retry later"
                ))
                .into_response()
            }
        }
    }

    /// The event to store, with one delivery per destination of the source.
    fn event(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
        normalized: NormalizedEvent,
        origin: Origin,
    ) -> NewEvent {
        let now = self.now;
        let kept_headers = self
            .source
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
        NewEvent {
            id: EventId::generate(now),
            tenant: self.tenant().to_string(),
            source: self.source_id.to_string(),
            origin,
            normalized,
            received_at: now,
            headers: kept_headers,
            body: body.to_vec(),
            deliveries: self
                .source
                .config
                .destinations
                .iter()
                .map(|d| (DeliveryId::generate(now), d.clone()))
                .collect(),
        }
    }
}

/// Why a body could not be read.
enum BodyFailure {
    /// Over `server.max_body_size`.
    TooLarge,
    /// The bodies in flight would go over `server.body_budget`.
    OverBudget,
    /// Not received within `server.body_timeout`.
    TimedOut,
    /// The client went away or sent a broken body.
    Broken(axum::Error),
}

/// Reads `body` frame by frame: over `limit` bytes it stops (nothing more is read), and the
/// bytes come out of `budget` first; when the budget has no room left it stops too. A
/// declared `Content-Length` is refused over the limit, and taken from the budget whole,
/// before anything is read: a flood of large bodies is refused without allocating them.
async fn read_within(
    mut body: Body,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyFailure> {
    let declared = http_body::Body::size_hint(&body).lower();
    if declared > limit as u64 {
        return Err(BodyFailure::TooLarge);
    }
    // `declared` ≤ `limit`, a usize.
    let declared = usize::try_from(declared).unwrap_or(limit);
    let mut held = take(budget, declared)?;
    let mut reserved = declared;
    let mut buf = bytes::BytesMut::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyFailure::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len().saturating_add(data.len());
        if len > limit {
            return Err(BodyFailure::TooLarge);
        }
        if len > reserved {
            let more = take(budget, len - reserved)?;
            reserved = len;
            match (held.as_mut(), more) {
                (Some(h), Some(m)) => h.merge(m),
                (None, m) => held = m,
                (Some(_), None) => {}
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), held))
}

/// `n` bytes of the budget (none for 0), or `OverBudget` when they are not free now.
fn take(budget: &Arc<Semaphore>, n: usize) -> Result<Option<OwnedSemaphorePermit>, BodyFailure> {
    if n == 0 {
        return Ok(None);
    }
    let n = u32::try_from(n).map_err(|_| BodyFailure::TooLarge)?;
    budget
        .clone()
        .try_acquire_many_owned(n)
        .map(Some)
        .map_err(|_| BodyFailure::OverBudget)
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
    let logs = app.logs.clone();
    let clock = app.clock.clone();
    tokio::spawn(async move {
        if let Err(e) = store.record_rejection(rejection).await {
            if logs.rejection_not_recorded.hit(clock.now()) {
                tracing::warn!(error = %e, "could not record a rejected request");
            }
        }
        drop(permit);
    });
}
