//! A fake "Acme Desk": an in-house ticketing system that is not one of the six vendors and
//! that talks to intake the generic way, written from `docs/connectors/generic.md`.
//!
//! * Webhooks: `X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, bodies
//!   `{"event": {"id", "type", "created_at"}, "data": {"ticket": {"id", "channel", "subject"},
//!   "message": {"id", "direction", "preview"}}}`: `ticket.created` with a ticket's first
//!   message, `message.created` for each further message.
//! * Backfill endpoint (`GET /intake/backfill`): `since`, `until` (RFC 3339, inclusive),
//!   `limit`, `cursor`; bearer token; answers `{"events": [<webhook bodies>], "next_cursor"}`
//!   with at most its own page cap per answer, `429` + `Retry-After` past its per-minute limit,
//!   `401` for a wrong token, `400` for a bad parameter.
//!
//! The field layout a source needs for it is [`FIELDS_TOML`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use intake_core::Timestamp;
use serde_json::{json, Value};

use crate::harness::{Clock, FakeSor, FixedWindow, RequestLog, Verdict, Webhook};
use crate::world::{rfc3339_millis, Direction, Medium, World};

/// The token the backfill endpoint accepts unless told otherwise.
pub const API_TOKEN: &str = "acme-backfill-token";
/// The path of the backfill endpoint.
pub const BACKFILL_PATH: &str = "/intake/backfill";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Signature-256";
/// The source configuration that reads Acme Desk's webhooks (TOML, inside `[[sources]]`).
pub const FIELDS_TOML: &str = r#"signature = { header = "X-Signature-256", algorithm = "sha256", encoding = "hex", prefix = "sha256=" }
fields = { event_id = "/event/id", event_type = "/event/type", occurred_at = "/event/created_at", channel = "/data/ticket/channel", object_id = "/data/message/id", conversation_id = "/data/ticket/id" }"#;

/// One event Acme Desk sends.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeEvent {
    /// Its id.
    pub id: String,
    /// When it happened.
    pub at: Timestamp,
    /// The webhook body.
    pub body: Vec<u8>,
}

/// The fake.
pub struct FakeGeneric {
    events: Vec<AcmeEvent>,
    clock: Clock,
    token: String,
    page_cap: usize,
    limiter: FixedWindow,
    log: RequestLog,
}

impl std::fmt::Debug for FakeGeneric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGeneric")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

fn channel(medium: Medium) -> &'static str {
    match medium {
        Medium::Email => "email",
        Medium::Chat => "chat",
        Medium::Sms => "sms",
        Medium::Voice => "phone",
        Medium::Social => "instagram",
        Medium::Web => "web",
    }
}

impl FakeGeneric {
    /// A fake serving `world`, with 60 requests a minute and pages of at most 50 events.
    pub fn new(world: &World, clock: Clock) -> Self {
        let mut events = Vec::new();
        for (c, m) in world.messages() {
            let first = c.messages.first().is_some_and(|f| f.seq == m.seq);
            let id = format!("evt_{:06}", m.seq);
            let body = serde_json::to_vec(&json!({
                "event": {
                    "id": id,
                    "type": if first { "ticket.created" } else { "message.created" },
                    "created_at": rfc3339_millis(m.created_at),
                },
                "data": {
                    "ticket": {"id": 40_000 + c.seq, "channel": channel(c.medium), "subject": c.subject},
                    "message": {
                        "id": format!("m-{}", m.seq),
                        "direction": if m.direction == Direction::Inbound { "inbound" } else { "outbound" },
                        "preview": m.preview,
                    },
                },
            }))
            .unwrap_or_default();
            events.push(AcmeEvent {
                id,
                at: m.created_at,
                body,
            });
        }
        FakeGeneric {
            events,
            clock,
            token: API_TOKEN.to_string(),
            page_cap: 50,
            limiter: FixedWindow::new(60, Duration::from_secs(60)),
            log: RequestLog::default(),
        }
    }

    /// Accepts this token instead.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_string();
        self
    }

    /// Allows `n` requests a minute.
    pub fn with_rate_limit(mut self, n: u32) -> Self {
        self.limiter = FixedWindow::new(n, Duration::from_secs(60));
        self
    }

    /// Answers with at most `n` events, whatever `limit` asks.
    pub fn with_page_cap(mut self, n: usize) -> Self {
        self.page_cap = n.max(1);
        self
    }

    /// The events, oldest first.
    pub fn events(&self) -> &[AcmeEvent] {
        &self.events
    }

    /// The requests served so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.all()
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    match <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

impl FakeSor for FakeGeneric {
    fn kind(&self) -> &'static str {
        "generic"
    }

    fn webhooks(&self, secret: &str) -> Vec<Webhook> {
        self.events
            .iter()
            .map(|e| Webhook {
                at: e.at,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    (SIGNATURE_HEADER.to_ascii_lowercase(), sign(secret, &e.body)),
                ],
                body: e.body.clone(),
                about: e.id.clone(),
            })
            .collect()
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route(BACKFILL_PATH, get(backfill))
            .with_state(self)
    }
}

#[derive(serde::Deserialize)]
struct Params {
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({"error": detail}))).into_response()
}

async fn backfill(
    State(acme): State<Arc<FakeGeneric>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let line = format!(
        "GET {BACKFILL_PATH} since={} until={} cursor={}",
        p.since.as_deref().unwrap_or("-"),
        p.until.as_deref().unwrap_or("-"),
        p.cursor.as_deref().unwrap_or("-")
    );
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == acme.token);
    if !authorized {
        acme.log.push(format!("401 {line}"));
        return problem(StatusCode::UNAUTHORIZED, "bad token");
    }
    if let Verdict::Limited { retry_after, .. } = acme.limiter.check(acme.clock.now()) {
        acme.log.push(format!("429 {line}"));
        let mut r = problem(StatusCode::TOO_MANY_REQUESTS, "slow down");
        if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    acme.log.push(line);
    let parse = |s: &Option<String>| s.as_deref().map(Timestamp::parse_rfc3339).transpose();
    let (since, until) = match (parse(&p.since), parse(&p.until)) {
        (Ok(Some(s)), Ok(Some(u))) => (s, u),
        _ => return problem(StatusCode::BAD_REQUEST, "since and until must be RFC 3339"),
    };
    // The cursor is the index of the next event among those in the window, written so that
    // clients treat it as opaque.
    let offset = match p.cursor.as_deref() {
        None => 0,
        Some(c) => match c
            .strip_prefix("acme:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return problem(StatusCode::BAD_REQUEST, "unknown cursor"),
        },
    };
    let limit = p.limit.unwrap_or(100).clamp(1, acme.page_cap);
    let matching: Vec<&AcmeEvent> = acme
        .events
        .iter()
        .filter(|e| since <= e.at && e.at <= until)
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|e| serde_json::from_slice(&e.body).ok())
        .collect();
    let next = (offset + limit < matching.len()).then(|| format!("acme:{}", offset + limit));
    Json(json!({"events": page, "next_cursor": next})).into_response()
}
