//! A fake Front, written from Front's documentation:
//!
//! * events: <https://dev.frontapp.com/reference/events> (the event resource: `id`, `type`,
//!   `emitted_at` in seconds with decimals, `conversation`, `source`, `target` with `_meta`);
//! * application webhooks: <https://dev.frontapp.com/docs/application-webhooks> (`{"type",
//!   "authorization": {"id"}, "payload": <event>}`, `X-Front-Request-Timestamp` in
//!   milliseconds, `X-Front-Signature` = base64 HMAC-SHA256 of `"{timestamp}:" + body`);
//! * rule webhooks: <https://dev.frontapp.com/docs/rule-webhooks> (the event itself,
//!   `X-Front-Signature` = base64 HMAC-SHA1 of the body);
//! * `GET /events` with `q[after]`, `q[before]`, `q[types][]`, `limit` (at most 100) and
//!   `page_token`, newest first, `_pagination.next` a link or `null`; `GET /me`; bearer tokens;
//!   <https://dev.frontapp.com/docs/rate-limiting>: a per-minute limit with `x-ratelimit-limit`,
//!   `x-ratelimit-remaining`, `x-ratelimit-reset` on every answer and `429` + `Retry-After`.
//!
//! Every conversation of the world yields an `inbound` or `outbound` event per message, some a
//! teammate `comment`, some an `archive` after their last message.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use intake_core::Timestamp;
use serde_json::{json, Value};

use crate::harness::{Clock, FakeSor, FixedWindow, RequestLog, Verdict, Webhook};
use crate::world::{Direction, Medium, World};

/// The API token the fake accepts unless told otherwise.
pub const API_TOKEN: &str = "front-api-token";
/// The company id the fake reports (`GET /me`, webhooks' `authorization.id`).
pub const COMPANY_ID: &str = "cmp_4f1c9";

/// One event of the fake's log.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontEvent {
    /// `evt_…`
    pub id: String,
    /// `inbound`, `outbound`, `comment`, `archive`.
    pub kind: &'static str,
    /// When it was emitted.
    pub at: Timestamp,
    /// The event resource, as the API and webhooks carry it.
    pub resource: Value,
}

/// A fake Front serving one world.
pub struct FakeFront {
    events: Vec<FrontEvent>,
    clock: Clock,
    token: String,
    max_page_size: usize,
    limiter: FixedWindow,
    log: RequestLog,
}

impl std::fmt::Debug for FakeFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFront")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

fn hmac_sha256(key: &[u8], msg: &[&[u8]]) -> Vec<u8> {
    let mut mac = match <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    for part in msg {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = match <Hmac<sha1::Sha1> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Front's instants: seconds since the epoch with (up to) three decimals.
fn front_time(t: Timestamp) -> Value {
    serde_json::Number::from_f64(t.as_millis() as f64 / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The Front message type of a conversation on this medium (Front names the channel a message
/// came through in the message's `type`).
fn message_type(medium: Medium, seq: u64) -> &'static str {
    match medium {
        Medium::Email => "email",
        Medium::Chat if seq & 1 == 0 => "front_chat",
        Medium::Chat => "intercom",
        Medium::Sms if seq & 1 == 0 => "sms",
        Medium::Sms => "whatsapp",
        Medium::Voice => "call",
        Medium::Social if seq & 1 == 0 => "facebook",
        Medium::Social => "tweet_dm",
        Medium::Web => "custom",
    }
}

impl FakeFront {
    /// A fake serving `world`, reading time from `clock` (for rate limits), accepting
    /// [`API_TOKEN`], 100 requests a minute, pages of at most 100 events.
    pub fn new(world: &World, clock: Clock) -> Self {
        FakeFront {
            events: Self::log_of(world),
            clock,
            token: API_TOKEN.to_string(),
            max_page_size: 100,
            limiter: FixedWindow::new(100, Duration::from_secs(60)),
            log: RequestLog::default(),
        }
    }

    /// Accepts this API token instead.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_string();
        self
    }

    /// Allows `n` requests a minute (Front: 50, 100 or 200 by plan).
    pub fn with_rate_limit(mut self, n: u32) -> Self {
        self.limiter = FixedWindow::new(n, Duration::from_secs(60));
        self
    }

    /// Serves at most `n` events a page, whatever `limit` asks (Front: 100).
    pub fn with_max_page_size(mut self, n: usize) -> Self {
        self.max_page_size = n.max(1);
        self
    }

    /// Counts `n` requests against this minute's budget, as another integration of the same
    /// company would (Front's limits are per company, not per token).
    pub fn spend_budget(&self, n: u32) {
        for _ in 0..n {
            self.limiter.check(self.clock.now());
        }
    }

    /// The event log, oldest first.
    pub fn events(&self) -> &[FrontEvent] {
        &self.events
    }

    /// The requests served so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.all()
    }

    fn log_of(world: &World) -> Vec<FrontEvent> {
        let teammate = json!({
            "_links": {"self": "https://api2.frontapp.com/teammates/tea_2ok8"},
            "id": "tea_2ok8", "email": "leela@maelys.example", "username": "leela",
            "first_name": "Leela", "last_name": "Turanga", "is_admin": false,
            "is_available": true, "is_blocked": false
        });
        let inbox = json!({"_meta": {"type": "inboxes"}, "data": [{
            "_links": {"self": "https://api2.frontapp.com/inboxes/inb_1b7m"},
            "id": "inb_1b7m", "name": "Support", "is_private": false
        }]});
        // (time, order within the conversation, kind, conversation index, message index)
        let mut raw: Vec<(Timestamp, u64, &'static str, usize, Option<usize>)> = Vec::new();
        for (ci, c) in world.conversations.iter().enumerate() {
            for (mi, m) in c.messages.iter().enumerate() {
                let kind = match m.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                };
                raw.push((m.created_at, m.seq, kind, ci, Some(mi)));
            }
            if c.seq % 4 == 0 {
                let at = c.created_at.plus(Duration::from_secs(45));
                raw.push((at, u64::MAX - 1, "comment", ci, None));
            }
            if c.seq % 3 == 0 {
                let at = c.updated_at().plus(Duration::from_secs(120));
                raw.push((at, u64::MAX, "archive", ci, None));
            }
        }
        raw.sort_by_key(|(at, order, _, ci, _)| (*at, *ci, *order));
        let mut events = Vec::with_capacity(raw.len());
        for (n, (at, _, kind, ci, mi)) in raw.into_iter().enumerate() {
            let c = &world.conversations[ci];
            let channel = message_type(c.medium, c.seq);
            let conversation_id = format!("cnv_{:x}", 0x1_0000 + c.seq);
            let message_json = |mi: usize| {
                let m = &c.messages[mi];
                let id = format!("msg_{:x}", 0x10_0000 + m.seq);
                json!({
                    "_links": {
                        "self": format!("https://api2.frontapp.com/messages/{id}"),
                        "related": {"conversation": format!("https://api2.frontapp.com/conversations/{conversation_id}")}
                    },
                    "id": id,
                    "type": channel,
                    "is_inbound": m.direction == Direction::Inbound,
                    "is_draft": false,
                    "created_at": front_time(m.created_at),
                    "blurb": m.preview,
                    "body": format!("<p>{}</p>", m.preview),
                    "text": m.preview,
                    "attachments": [],
                    "metadata": {}
                })
            };
            // The conversation's last message at the time of the event (the deprecated
            // `last_message` field the events routes still return).
            let last = c.messages.iter().rposition(|m| m.created_at <= at);
            let conversation = json!({
                "_links": {"self": format!("https://api2.frontapp.com/conversations/{conversation_id}")},
                "id": conversation_id,
                "subject": c.subject,
                "status": if kind == "archive" { "archived" } else { "unassigned" },
                "created_at": front_time(c.created_at),
                "is_private": false,
                "tags": [],
                "last_message": last.map_or(Value::Null, message_json),
            });
            let id = format!("evt_{:x}", 0x100_0000 + n);
            let mut resource = json!({
                "_links": {"self": format!("https://api2.frontapp.com/events/{id}")},
                "id": id,
                "type": kind,
                "emitted_at": front_time(at),
                "conversation": conversation,
            });
            match (kind, mi) {
                ("inbound" | "outbound", Some(mi)) => {
                    resource["source"] = inbox.clone();
                    resource["target"] =
                        json!({"_meta": {"type": "message"}, "data": message_json(mi)});
                }
                ("comment", _) => {
                    resource["source"] = json!({"_meta": {"type": "teammate"}, "data": teammate});
                    resource["target"] = json!({"_meta": {"type": "comment"}, "data": {
                        "_links": {"self": format!("https://api2.frontapp.com/comments/com_{:x}", 0x2000 + c.seq)},
                        "id": format!("com_{:x}", 0x2000 + c.seq),
                        "author": teammate,
                        "body": "Checking with the warehouse",
                        "posted_at": front_time(at),
                    }});
                }
                _ => {
                    resource["source"] = json!({"_meta": {"type": "teammate"}, "data": teammate});
                }
            }
            events.push(FrontEvent {
                id,
                kind,
                at,
                resource,
            });
        }
        events
    }

    /// Every rule webhook Front sends for the world: the bare event, signed with SHA-1 and no
    /// timestamp.
    pub fn rule_webhooks(&self, secret: &str) -> Vec<Webhook> {
        self.events
            .iter()
            .map(|e| {
                let body = serde_json::to_vec(&e.resource).unwrap_or_default();
                let signature = BASE64.encode(hmac_sha1(secret.as_bytes(), &body));
                Webhook {
                    at: e.at,
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        ("x-front-signature".into(), signature),
                    ],
                    body,
                    about: e.id.clone(),
                }
            })
            .collect()
    }

    /// The setup request Front sends when an application webhook is saved, at `at`.
    pub fn challenge(&self, secret: &str, challenge: &str, at: Timestamp) -> Webhook {
        let body =
            serde_json::to_vec(&json!({"type": "sync", "authorization": {"id": COMPANY_ID}}))
                .unwrap_or_default();
        Webhook {
            at,
            headers: application_headers(secret, at, &body)
                .into_iter()
                .chain([("x-front-challenge".to_string(), challenge.to_string())])
                .collect(),
            body,
            about: "sync".into(),
        }
    }
}

fn application_headers(secret: &str, at: Timestamp, body: &[u8]) -> Vec<(String, String)> {
    let ts = at.as_millis().to_string();
    let signature = BASE64.encode(hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), b":", body]));
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-front-request-timestamp".into(), ts),
        ("x-front-signature".into(), signature),
    ]
}

impl FakeSor for FakeFront {
    fn kind(&self) -> &'static str {
        "front"
    }

    /// Application webhooks, sent (and timestamped) when their event is emitted.
    fn webhooks(&self, secret: &str) -> Vec<Webhook> {
        self.events
            .iter()
            .map(|e| {
                let body = serde_json::to_vec(&json!({
                    "type": e.kind,
                    "authorization": {"id": COMPANY_ID},
                    "payload": e.resource,
                }))
                .unwrap_or_default();
                Webhook {
                    at: e.at,
                    headers: application_headers(secret, e.at, &body),
                    body,
                    about: e.id.clone(),
                }
            })
            .collect()
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route("/events", get(list_events))
            .route("/me", get(me))
            .with_state(self)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    (
        status,
        Json(json!({"_error": {"status": status.as_u16(), "title": title, "message": message}})),
    )
        .into_response()
}

impl FakeFront {
    /// Authenticates and counts a request; `Err` is the answer to send instead.
    fn admit(
        &self,
        headers: &HeaderMap,
        line: &str,
    ) -> Result<[(String, String); 3], Box<Response>> {
        let authorized = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.token);
        if !authorized {
            self.log.push(format!("401 {line}"));
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "Invalid or missing API token",
            )));
        }
        let now = self.clock.now();
        match self.limiter.check(now) {
            Verdict::Allowed {
                limit,
                remaining,
                reset,
            } => {
                self.log.push(line.to_string());
                Ok([
                    ("x-ratelimit-limit".into(), limit.to_string()),
                    ("x-ratelimit-remaining".into(), remaining.to_string()),
                    ("x-ratelimit-reset".into(), reset_secs(reset)),
                ])
            }
            Verdict::Limited {
                limit,
                reset,
                retry_after,
            } => {
                self.log.push(format!("429 {line}"));
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
                let h = r.headers_mut();
                for (k, v) in [
                    ("x-ratelimit-limit", limit.to_string()),
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset", reset_secs(reset)),
                    ("retry-after", retry_after.as_secs().max(1).to_string()),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(k, v);
                    }
                }
                Err(Box::new(r))
            }
        }
    }
}

fn reset_secs(reset: Timestamp) -> String {
    // Whole seconds, rounded up: a client waiting until then is never early.
    (reset.as_millis() + 999).div_euclid(1000).to_string()
}

fn with_headers(mut r: Response, headers: [(String, String); 3]) -> Response {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

async fn me(State(front): State<Arc<FakeFront>>, headers: HeaderMap) -> Response {
    let rl = match front.admit(&headers, "GET /me") {
        Ok(rl) => rl,
        Err(r) => return *r,
    };
    let base = base_url(&headers);
    with_headers(
        Json(json!({"_links": {"self": format!("{base}/me")}, "name": "Maelys", "id": COMPANY_ID}))
            .into_response(),
        rl,
    )
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("api2.frontapp.com");
    format!("http://{host}")
}

/// The query a page token stands for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Query {
    after: Option<f64>,
    before: Option<f64>,
    types: Vec<String>,
    limit: usize,
    offset: usize,
}

async fn list_events(
    State(front): State<Arc<FakeFront>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let rl = match front.admit(&headers, &format!("GET /events?{raw}")) {
        Ok(rl) => rl,
        Err(r) => return *r,
    };
    let mut q = Query {
        after: None,
        before: None,
        types: Vec::new(),
        limit: 50,
        offset: 0,
    };
    let mut token = None;
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let number = || v.parse::<f64>().ok().filter(|f| f.is_finite());
        match k.as_ref() {
            "q[after]" => q.after = number(),
            "q[before]" => q.before = number(),
            "q[types][]" | "q[types]" => q.types.push(v.to_string()),
            "limit" => q.limit = v.parse().unwrap_or(50),
            "page_token" => token = Some(v.to_string()),
            _ => {}
        }
    }
    if let Some(t) = token {
        match URL_SAFE_NO_PAD
            .decode(t.as_bytes())
            .ok()
            .and_then(|b| serde_json::from_slice::<Query>(&b).ok())
        {
            Some(saved) => q = saved,
            None => return with_headers(error(StatusCode::BAD_REQUEST, "Invalid page_token"), rl),
        }
    }
    q.limit = q.limit.clamp(1, front.max_page_size);

    // Newest first, as Front lists events; `after` and `before` are exclusive.
    let matching: Vec<&FrontEvent> = front
        .events
        .iter()
        .rev()
        .filter(|e| {
            let secs = e.at.as_millis() as f64 / 1000.0;
            q.after.is_none_or(|a| secs > a)
                && q.before.is_none_or(|b| secs < b)
                && (q.types.is_empty() || q.types.iter().any(|t| t == e.kind))
        })
        .collect();
    let page: Vec<&Value> = matching
        .iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|e| &e.resource)
        .collect();
    let base = base_url(&headers);
    let next = if q.offset + q.limit < matching.len() {
        let next_q = Query {
            offset: q.offset + q.limit,
            ..q.clone()
        };
        let token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&next_q).unwrap_or_default());
        Value::String(format!("{base}/events?page_token={token}"))
    } else {
        Value::Null
    };
    with_headers(
        Json(json!({
            "_pagination": {"next": next},
            "_links": {"self": format!("{base}/events?{raw}")},
            "_results": page,
        }))
        .into_response(),
        rl,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;
    use intake_core::ManualClock;

    #[test]
    fn every_message_is_an_event_and_webhooks_are_signed() {
        let start = Timestamp(1_795_000_000_000);
        let world = World::generate(&WorldSpec::mixed(3, start, 2));
        let clock: Clock = Arc::new(ManualClock::new(start));
        let front = FakeFront::new(&world, clock);
        let messages = world.messages().len();
        let messages_events = front
            .events()
            .iter()
            .filter(|e| e.kind == "inbound" || e.kind == "outbound")
            .count();
        assert_eq!(messages, messages_events);
        assert!(front.events().windows(2).all(|w| w[0].at <= w[1].at));
        let hooks = front.webhooks("s");
        assert_eq!(hooks.len(), front.events().len());
        let h = &hooks[0];
        let ts = &h.headers[1].1;
        let expected = BASE64.encode(hmac_sha256(b"s", &[ts.as_bytes(), b":", &h.body]));
        assert_eq!(h.headers[2].1, expected);
    }
}
