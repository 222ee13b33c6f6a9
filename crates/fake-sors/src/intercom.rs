//! A fake Intercom workspace, written from Intercom's developer documentation.
//!
//! Webhooks: `notification_event`s (<https://developers.intercom.com/docs/references/webhooks/webhook-models>)
//! on the topics `conversation.user.created`, `conversation.user.replied`,
//! `conversation.admin.replied` and `conversation.admin.closed`, signed with
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1(client_secret, body)>`
//! (<https://developers.intercom.com/docs/webhooks/setting-up-webhooks>). The world's first
//! message is the conversation's `source`; every later one a `comment` part; a conversation
//! whose last message is the agent's is closed two minutes later (a `close` part).
//!
//! API (<https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations>):
//! * `POST /conversations/search` with a `query` of `AND`/`OR` over `created_at` /
//!   `updated_at` (`=`, `!=`, `>`, `<`) and `pagination: {per_page ≤ 150, starting_after}`;
//!   answers `{"type":"conversation.list","conversations","total_count","pages":{…,"next":
//!   {"page","starting_after"}}}`, conversations without their parts.
//! * `GET /conversations/{id}`: the conversation with `conversation_parts`.
//!
//! `Authorization: Bearer <token>` or `401`. Rate limits
//! (<https://developers.intercom.com/docs/references/rest-api/errors/rate-limiting>): the app's
//! per-minute limit, reported on every answer in `X-RateLimit-Limit` / `-Remaining` / `-Reset`
//! (epoch seconds), and the workspace's, shared with the workspace's other apps, which shows only
//! as a `429`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use intake_core::Timestamp;
use serde_json::{json, Value};
use sha1::Sha1;

use crate::harness::{Clock, FakeSor, FixedWindow, RequestLog, Verdict, Webhook};
use crate::world::{Conversation, Direction, Medium, World};

/// The app id written into notifications.
pub const APP_ID: &str = "ja43hiec";
/// When an agent's last reply is followed by a close.
const CLOSE_AFTER: Duration = Duration::from_secs(120);
/// The admin who answers.
const ADMIN_ID: &str = "274";

/// A fake Intercom workspace over a [`World`].
pub struct IntercomFake {
    world: World,
    clock: Clock,
    /// The access token.
    pub token: String,
    /// The largest search page (Intercom's is 150).
    pub page_cap: usize,
    app_limit: FixedWindow,
    workspace_limit: FixedWindow,
    /// Every request served.
    pub log: RequestLog,
    by_id: HashMap<String, usize>,
}

impl std::fmt::Debug for IntercomFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntercomFake").finish_non_exhaustive()
    }
}

/// The conversation id of a world conversation.
pub fn conversation_id(c: &Conversation) -> String {
    (147_000_000_000u64 + c.seq).to_string()
}

/// The part id of a world message (the first message is the conversation's source, not a part).
pub fn part_id(message_seq: u64) -> String {
    (20_000_000_000u64 + message_seq).to_string()
}

fn close_part_id(c: &Conversation) -> String {
    (30_000_000_000u64 + c.seq).to_string()
}

/// The conversation's `source.type` for a medium.
pub fn source_type(c: &Conversation) -> &'static str {
    let pick = |names: &'static [&'static str]| names[(c.seq as usize) % names.len()];
    match c.medium {
        Medium::Email => "email",
        Medium::Chat | Medium::Web => "conversation",
        Medium::Sms => pick(&["sms", "whatsapp"]),
        Medium::Voice => "phone_call",
        Medium::Social => pick(&["facebook", "instagram", "twitter"]),
    }
}

fn secs(t: Timestamp) -> i64 {
    t.as_secs()
}

fn contact_id(c: &Conversation) -> String {
    format!("6329bd9ffe4e2e91{:08x}", c.customer)
}

/// When the conversation is closed, if it is: two minutes after an agent's last reply.
fn closed_at(c: &Conversation) -> Option<Timestamp> {
    let last = c.messages.last()?;
    (c.messages.len() > 1 && last.direction == Direction::Outbound)
        .then(|| last.created_at.plus(CLOSE_AFTER))
}

fn hmac_sha1_hex(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut m) => {
            m.update(body);
            hex::encode(m.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn error_list(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "type": "error.list",
            "request_id": "000on1fk0q8gbcvkjbq0",
            "errors": [{ "code": code, "message": message }],
        })),
    )
        .into_response()
}

impl IntercomFake {
    /// A fake serving `world` on `clock`: 10,000 requests a minute for the app, 25,000 for the
    /// workspace, search pages of up to 150.
    pub fn new(world: World, clock: Clock) -> Self {
        let by_id = world
            .conversations
            .iter()
            .enumerate()
            .map(|(i, c)| (conversation_id(c), i))
            .collect();
        IntercomFake {
            world,
            clock,
            token: "intercom-access-token".into(),
            page_cap: 150,
            app_limit: FixedWindow::new(10_000, Duration::from_secs(60)),
            workspace_limit: FixedWindow::new(25_000, Duration::from_secs(60)),
            log: RequestLog::default(),
            by_id,
        }
    }

    /// Sets the app's and the workspace's per-minute limits.
    pub fn with_limits(mut self, app_per_minute: u32, workspace_per_minute: u32) -> Self {
        self.app_limit = FixedWindow::new(app_per_minute, Duration::from_secs(60));
        self.workspace_limit = FixedWindow::new(workspace_per_minute, Duration::from_secs(60));
        self
    }

    /// Caps search pages at `n` conversations.
    pub fn with_page_cap(mut self, n: usize) -> Self {
        self.page_cap = n.max(1);
        self
    }

    /// The world it serves.
    pub fn world(&self) -> &World {
        &self.world
    }

    fn part(c: &Conversation, n: usize) -> Value {
        let m = &c.messages[n];
        let author = match m.direction {
            Direction::Inbound => {
                json!({ "type": "user", "id": contact_id(c), "name": format!("Customer {}", c.customer) })
            }
            Direction::Outbound => json!({ "type": "admin", "id": ADMIN_ID, "name": "Operator" }),
        };
        json!({
            "type": "conversation_part",
            "id": part_id(m.seq),
            "part_type": "comment",
            "body": format!("<p>{}</p>", m.preview),
            "created_at": secs(m.created_at),
            "updated_at": secs(m.created_at),
            "notified_at": secs(m.created_at),
            "assigned_to": null,
            "author": author,
            "attachments": [],
            "external_id": null,
            "redacted": false,
        })
    }

    fn close_part(c: &Conversation, at: Timestamp) -> Value {
        json!({
            "type": "conversation_part",
            "id": close_part_id(c),
            "part_type": "close",
            "body": null,
            "created_at": secs(at),
            "updated_at": secs(at),
            "notified_at": secs(at),
            "assigned_to": null,
            "author": { "type": "admin", "id": ADMIN_ID, "name": "Operator" },
            "attachments": [],
            "external_id": null,
            "redacted": false,
        })
    }

    /// The conversation as it was at `at`, with `parts` as its listed parts.
    fn conversation(c: &Conversation, at: Timestamp, parts: Vec<Value>, total: usize) -> Value {
        let closed = closed_at(c).is_some_and(|t| t <= at);
        let updated = c
            .messages
            .iter()
            .map(|m| m.created_at)
            .chain(closed_at(c))
            .filter(|t| *t <= at)
            .max()
            .unwrap_or(c.created_at);
        let first = &c.messages[0];
        json!({
            "type": "conversation",
            "id": conversation_id(c),
            "title": null,
            "created_at": secs(c.created_at),
            "updated_at": secs(updated),
            "waiting_since": null,
            "snoozed_until": null,
            "open": !closed,
            "state": if closed { "closed" } else { "open" },
            "read": true,
            "priority": "not_priority",
            "admin_assignee_id": null,
            "team_assignee_id": null,
            "tags": { "type": "tag.list", "tags": [] },
            "source": {
                "type": source_type(c),
                "id": (403_900_000u64 + c.seq).to_string(),
                "delivered_as": "customer_initiated",
                "subject": c.subject,
                "body": format!("<p>{}</p>", first.preview),
                "author": { "type": "user", "id": contact_id(c), "name": format!("Customer {}", c.customer) },
                "attachments": [],
                "url": null,
                "redacted": false,
            },
            "contacts": { "type": "contact.list", "contacts": [{ "type": "contact", "id": contact_id(c) }] },
            "conversation_parts": { "type": "conversation_part.list", "conversation_parts": parts, "total_count": total },
        })
    }

    /// Every part visible at `at`.
    fn parts_at(c: &Conversation, at: Timestamp) -> Vec<Value> {
        let mut parts: Vec<Value> = (1..c.messages.len())
            .filter(|&n| c.messages[n].created_at <= at)
            .map(|n| Self::part(c, n))
            .collect();
        if let Some(t) = closed_at(c).filter(|t| *t <= at) {
            parts.push(Self::close_part(c, t));
        }
        parts
    }

    fn notification(
        &self,
        secret: &str,
        at: Timestamp,
        topic: &str,
        n: u64,
        item: Value,
        about: String,
    ) -> Webhook {
        let id = format!(
            "notif_{:08x}-{:04x}-11e3-a367-{:012x}",
            at.as_secs() as u32,
            (n & 0xffff) as u16,
            n
        );
        let body = json!({
            "type": "notification_event",
            "app_id": APP_ID,
            "data": { "type": "notification_event_data", "item": item },
            "links": {},
            "id": id,
            "topic": topic,
            "delivery_status": "pending",
            "delivery_attempts": 1,
            "delivered_at": 0,
            "first_sent_at": secs(at),
            "created_at": secs(at),
            "self": null,
        })
        .to_string()
        .into_bytes();
        let signature = format!("sha1={}", hmac_sha1_hex(secret, &body));
        Webhook {
            at,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), "Intercom-Webhooks-Robot".into()),
                ("X-Hub-Signature".into(), signature),
            ],
            body,
            about,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given == format!("Bearer {}", self.token) {
            Ok(())
        } else {
            Err(Box::new(error_list(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Access Token Invalid",
            )))
        }
    }

    fn limited(&self, line: String) -> Result<HeaderMap, Box<Response>> {
        let now = self.clock.now();
        let headers = |limit: u32, remaining: u32, reset: Timestamp| {
            let mut h = HeaderMap::new();
            for (k, v) in [
                ("x-ratelimit-limit", limit.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
                ("x-ratelimit-reset", reset.as_secs().to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            h
        };
        let refuse = |h: HeaderMap| {
            self.log.push(format!("429 {line}"));
            let mut r = error_list(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "You have exceeded the rate limit",
            );
            r.headers_mut().extend(h);
            Box::new(r)
        };
        let allowed = match self.app_limit.check(now) {
            Verdict::Allowed {
                limit,
                remaining,
                reset,
            } => headers(limit, remaining, reset),
            Verdict::Limited { limit, reset, .. } => return Err(refuse(headers(limit, 0, reset))),
        };
        if let Verdict::Limited { limit, reset, .. } = self.workspace_limit.check(now) {
            return Err(refuse(headers(limit, 0, reset)));
        }
        self.log.push(line);
        Ok(allowed)
    }
}

/// Whether a conversation's JSON satisfies a search query.
fn matches(q: &Value, conversation: &Value) -> Result<bool, String> {
    let op = q.get("operator").and_then(Value::as_str).unwrap_or("");
    match op {
        "AND" | "OR" => {
            let parts = q
                .get("value")
                .and_then(Value::as_array)
                .ok_or("AND/OR need a list of queries")?;
            let mut results = Vec::with_capacity(parts.len());
            for p in parts {
                results.push(matches(p, conversation)?);
            }
            Ok(if op == "AND" {
                results.iter().all(|r| *r)
            } else {
                results.iter().any(|r| *r)
            })
        }
        "=" | "!=" | ">" | "<" => {
            let field = q
                .get("field")
                .and_then(Value::as_str)
                .ok_or("a query needs a field")?;
            if !matches!(field, "created_at" | "updated_at" | "id") {
                return Err(format!("the fake does not search on {field}"));
            }
            let want = q
                .get("value")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .ok_or("the value must be a number")?;
            let have = conversation
                .get(field)
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(0);
            Ok(match op {
                "=" => have == want,
                "!=" => have != want,
                ">" => have > want,
                _ => have < want,
            })
        }
        other => Err(format!("unsupported operator `{other}`")),
    }
}

async fn search(
    State(fake): State<Arc<IntercomFake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = fake.authorized(&headers) {
        return *r;
    }
    let line = format!(
        "POST /conversations/search {}",
        String::from_utf8_lossy(&body)
    );
    let rate = match fake.limited(line) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_list(StatusCode::BAD_REQUEST, "parameter_invalid", "Invalid JSON");
    };
    let Some(query) = request.get("query") else {
        return error_list(
            StatusCode::BAD_REQUEST,
            "parameter_not_found",
            "query is required",
        );
    };
    let pagination = request.get("pagination");
    let per_page = pagination
        .and_then(|p| p.get("per_page"))
        .and_then(Value::as_u64)
        .unwrap_or(20)
        .clamp(1, fake.page_cap as u64) as usize;
    let start = match pagination
        .and_then(|p| p.get("starting_after"))
        .and_then(Value::as_str)
    {
        Some(s) => match B64
            .decode(s)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.parse::<usize>().ok())
        {
            Some(i) => i,
            None => {
                return error_list(
                    StatusCode::BAD_REQUEST,
                    "parameter_invalid",
                    "starting_after is invalid",
                )
            }
        },
        None => 0,
    };
    let now = fake.clock.now();
    let mut found = Vec::new();
    for c in fake
        .world
        .conversations
        .iter()
        .filter(|c| c.created_at <= now)
    {
        let conv = IntercomFake::conversation(c, now, Vec::new(), 0);
        match matches(query, &conv) {
            Ok(true) => found.push(conv),
            Ok(false) => {}
            Err(why) => return error_list(StatusCode::BAD_REQUEST, "parameter_invalid", &why),
        }
    }
    let total = found.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let page: Vec<Value> = found
        .into_iter()
        .skip(start)
        .take(per_page)
        .map(|mut c| {
            if let Some(o) = c.as_object_mut() {
                o.remove("conversation_parts");
            }
            c
        })
        .collect();
    let end = start + page.len();
    let mut pages = json!({
        "type": "pages",
        "page": start / per_page + 1,
        "per_page": per_page,
        "total_pages": total_pages,
    });
    if end < total {
        pages["next"] =
            json!({ "page": end / per_page + 1, "starting_after": B64.encode(end.to_string()) });
    }
    let answer = json!({
        "type": "conversation.list",
        "pages": pages,
        "total_count": total,
        "conversations": page,
    });
    (StatusCode::OK, rate, Json(answer)).into_response()
}

async fn retrieve(
    State(fake): State<Arc<IntercomFake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = fake.authorized(&headers) {
        return *r;
    }
    let rate = match fake.limited(format!("GET /conversations/{id}")) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let now = fake.clock.now();
    let Some(c) = fake
        .by_id
        .get(&id)
        .and_then(|&i| fake.world.conversations.get(i))
        .filter(|c| c.created_at <= now)
    else {
        return error_list(StatusCode::NOT_FOUND, "not_found", "Resource Not Found");
    };
    let parts = IntercomFake::parts_at(c, now);
    let total = parts.len();
    (
        StatusCode::OK,
        rate,
        Json(IntercomFake::conversation(c, now, parts, total)),
    )
        .into_response()
}

impl FakeSor for IntercomFake {
    fn kind(&self) -> &'static str {
        "intercom"
    }

    fn webhooks(&self, secret: &str) -> Vec<Webhook> {
        let mut out = Vec::new();
        for c in &self.world.conversations {
            let cid = conversation_id(c);
            out.push(self.notification(
                secret,
                c.created_at,
                "conversation.user.created",
                c.seq << 8,
                Self::conversation(c, c.created_at, Vec::new(), 0),
                format!("conversation:{cid}"),
            ));
            for n in 1..c.messages.len() {
                let m = &c.messages[n];
                let topic = match m.direction {
                    Direction::Inbound => "conversation.user.replied",
                    Direction::Outbound => "conversation.admin.replied",
                };
                out.push(self.notification(
                    secret,
                    m.created_at,
                    topic,
                    (c.seq << 8) + n as u64,
                    Self::conversation(c, m.created_at, vec![Self::part(c, n)], n),
                    format!("conversation_part:{}", part_id(m.seq)),
                ));
            }
            if let Some(t) = closed_at(c) {
                out.push(self.notification(
                    secret,
                    t,
                    "conversation.admin.closed",
                    (c.seq << 8) + 255,
                    Self::conversation(c, t, vec![Self::close_part(c, t)], c.messages.len()),
                    format!("conversation:{cid}:closed"),
                ));
            }
        }
        out.sort_by_key(|w| w.at);
        out
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route("/conversations/search", post(search))
            .route("/conversations/{id}", get(retrieve))
            .with_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;

    #[test]
    fn notifications_are_signed_and_searches_filter() {
        let start = Timestamp(1_795_000_000_000);
        let world = World::generate(&WorldSpec::mixed(4, start, 2));
        let fake = IntercomFake::new(world, Arc::new(intake_core::ManualClock::new(start)));
        let hooks = fake.webhooks("s");
        assert!(hooks
            .iter()
            .any(|w| String::from_utf8_lossy(&w.body).contains("admin.closed")));
        for w in &hooks {
            let sig = &w
                .headers
                .iter()
                .find(|(k, _)| k == "X-Hub-Signature")
                .unwrap()
                .1;
            assert_eq!(sig, &format!("sha1={}", hmac_sha1_hex("s", &w.body)));
        }
        let conv = json!({ "created_at": 10, "updated_at": 20 });
        let q = json!({ "operator": "AND", "value": [
            { "field": "updated_at", "operator": ">", "value": 19 },
            { "field": "created_at", "operator": "<", "value": 11 } ] });
        assert_eq!(matches(&q, &conv), Ok(true));
        let q = json!({ "field": "updated_at", "operator": ">", "value": 20 });
        assert_eq!(matches(&q, &conv), Ok(false));
        assert!(matches(&json!({ "operator": "~" }), &conv).is_err());
    }
}
