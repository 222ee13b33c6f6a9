//! A fake Kustomer org, written from Kustomer's documentation:
//!
//! * Outbound webhooks (<https://developer.kustomer.com/docs/events>,
//!   <https://developer.kustomer.com/docs/events/event-catalog>): a JSON "event" envelope
//!   (`id`, `name`, `org`, `partition`, `orgName`, `data` = the full resource as the API returns
//!   it, `createdAt`, `persist`, `client`, `dataId`, `changes` — `null` on creates — `meta`,
//!   `snsFilters`), `POST`ed with `Content-Type: application/json`,
//!   `X-Kustomer-Webhook-Event: <name>` and `X-Kustomer-Webhook-Signature` = lowercase hex
//!   HMAC-SHA256 of the raw body keyed with the webhook's token. There is no timestamp header.
//!   For each conversation of the world it sends `kustomer.conversation.create` (before any
//!   message: `channels: []`), then per message `kustomer.message.create` and a
//!   `kustomer.conversation.update` (counters, `channels`, `updatedAt`; with its `changes`)
//!   200 ms later, as Kustomer updates the conversation once the message is stored.
//! * The REST API (<https://developer.kustomer.com/docs/concepts/pagination>,
//!   <https://developer.kustomer.com/docs/concepts/rate-limits>):
//!   `POST /v1/customers/search?page&pageSize` (`queryContext: "conversation"`, `and` of
//!   `conversation_updated_at` / `conversation_created_at` comparisons, `sort`), answering
//!   `{data, meta: {page, pageSize, total, totalPages}, links: {self, first, prev, next}}` with
//!   at most 100 pages per query (`links.next` is `null` on the last servable page, and a
//!   later page is refused with 400); `GET /v1/conversations/{id}/messages?page&pageSize`
//!   (newest first); `Authorization: Bearer <API key>` (401 otherwise); an org-wide per-minute
//!   budget plus a separate per-minute budget for searches by API keys, with
//!   `x-ratelimit-limit` / `x-ratelimit-remaining` / `x-ratelimit-reset` (epoch seconds) on every
//!   answer and `429 Too Many Requests` over the limit.
//!
//! Ids are 24 hex characters, like Kustomer's (MongoDB object ids: creation second first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use intake_core::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::{Clock, FakeSor, FixedWindow, RequestLog, Verdict, Webhook};
use crate::world::{rfc3339_millis, Conversation, Direction, Medium, Message, World};

/// Kustomer's limits, all adjustable so tests can make them tight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KustomerLimits {
    /// Org-wide requests per minute (Enterprise plan: 1,000).
    pub per_minute: u32,
    /// Search requests per minute by API keys (100).
    pub search_per_minute: u32,
    /// Pages one search query serves (100).
    pub page_cap: u32,
    /// Largest `pageSize` of a search (500).
    pub max_search_page_size: u32,
    /// Largest `pageSize` of other lists (100).
    pub max_page_size: u32,
}

impl Default for KustomerLimits {
    fn default() -> Self {
        KustomerLimits {
            per_minute: 1000,
            search_per_minute: 100,
            page_cap: 100,
            max_search_page_size: 500,
            max_page_size: 100,
        }
    }
}

/// How long after a message Kustomer's conversation update follows.
const UPDATE_LAG: Duration = Duration::from_millis(200);

/// A fake Kustomer org serving one world.
pub struct KustomerFake {
    world: World,
    clock: Clock,
    token: String,
    limits: KustomerLimits,
    org: String,
    org_window: FixedWindow,
    search_window: FixedWindow,
    by_id: HashMap<String, usize>,
    /// Whether the last answer asked the client to wait (a `429`, or no request remaining in
    /// the window): a test driving a manual clock moves it only while the client waits.
    asked_to_wait: AtomicBool,
    /// Every request the API answered.
    pub log: RequestLog,
}

impl std::fmt::Debug for KustomerFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KustomerFake")
            .field("conversations", &self.world.conversations.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A Kustomer-style id: creation second, a kind byte, a fixed "machine", a counter.
fn kid(kind: u8, t: Timestamp, n: u64) -> String {
    format!(
        "{:08x}{kind:02x}{:08x}{:06x}",
        t.as_secs().clamp(0, i64::from(u32::MAX)),
        0x6b75_7374u32,
        n & 0xff_ffff
    )
}

/// The conversation's id.
pub fn conversation_id(c: &Conversation) -> String {
    kid(0xc0, c.created_at, c.seq)
}

/// A message's id.
pub fn message_id(m: &Message) -> String {
    kid(0x3e, m.created_at, m.seq)
}

fn customer_id(c: &Conversation) -> String {
    kid(0xcc, Timestamp(1_700_000_000_000), c.customer)
}

/// Kustomer's name for the channel a conversation came in on.
pub fn channel_name(c: &Conversation) -> &'static str {
    match c.medium {
        Medium::Email => "email",
        Medium::Chat => "chat",
        Medium::Sms => match c.seq % 3 {
            0 => "whatsapp",
            _ => "sms",
        },
        Medium::Voice => "voice",
        Medium::Social => match c.seq % 3 {
            0 => "facebook",
            1 => "instagram",
            _ => "twitter-dm",
        },
        Medium::Web => "form",
    }
}

fn app_of(channel: &str) -> &'static str {
    match channel {
        "email" => "postmark",
        "chat" => "chat",
        "sms" | "whatsapp" => "twilio",
        "voice" => "voice",
        "facebook" | "instagram" => "facebook",
        "twitter-dm" => "twitter",
        _ => "api",
    }
}

fn t(ts: Timestamp) -> String {
    rfc3339_millis(ts)
}

/// When the conversation was last updated after its `k`-th message (0: at creation).
fn updated_after(c: &Conversation, k: usize) -> Timestamp {
    match k.checked_sub(1).and_then(|i| c.messages.get(i)) {
        Some(m) => m.created_at.plus(UPDATE_LAG),
        None => c.created_at,
    }
}

/// When the API says the conversation was last updated: at its creation, or
/// [`UPDATE_LAG`] after its last message (the time of its last `kustomer.conversation.update`
/// webhook, and the `updatedAt` its search results carry).
pub fn updated_at(c: &Conversation) -> Timestamp {
    updated_after(c, c.messages.len())
}

impl KustomerFake {
    /// A fake org serving `world`, accepting the API key `token`, with Kustomer's own limits.
    pub fn new(world: World, clock: Clock, token: &str) -> Self {
        Self::with_limits(world, clock, token, KustomerLimits::default())
    }

    /// A fake org with chosen limits.
    pub fn with_limits(world: World, clock: Clock, token: &str, limits: KustomerLimits) -> Self {
        let by_id = world
            .conversations
            .iter()
            .enumerate()
            .map(|(i, c)| (conversation_id(c), i))
            .collect();
        let org_start = world
            .conversations
            .first()
            .map_or(Timestamp(1_600_000_000_000), |c| c.created_at);
        KustomerFake {
            org: kid(0x0a, org_start, 1),
            org_window: FixedWindow::new(limits.per_minute, Duration::from_secs(60)),
            search_window: FixedWindow::new(limits.search_per_minute, Duration::from_secs(60)),
            world,
            clock,
            token: token.to_string(),
            limits,
            by_id,
            asked_to_wait: AtomicBool::new(false),
            log: RequestLog::default(),
        }
    }

    /// Whether its last answer asked the client to wait until a rate-limit window resets: a
    /// `429`, or `x-ratelimit-remaining: 0`.
    pub fn asked_to_wait(&self) -> bool {
        self.asked_to_wait.load(Ordering::SeqCst)
    }

    /// The world it serves.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The conversation as the API shows it after its first `k` messages.
    fn conversation_json(&self, c: &Conversation, k: usize) -> Value {
        let id = conversation_id(c);
        let cust = customer_id(c);
        let seen = &c.messages[..k.min(c.messages.len())];
        let channel = channel_name(c);
        let updated = t(updated_after(c, seen.len()));
        let inbound = seen
            .iter()
            .filter(|m| m.direction == Direction::Inbound)
            .count();
        let first_in = seen
            .iter()
            .find(|m| m.direction == Direction::Inbound)
            .map_or(json!({}), |m| {
                json!({ "id": message_id(m), "channel": channel, "createdAt": t(m.created_at) })
            });
        json!({
            "type": "conversation",
            "id": id,
            "attributes": {
                "name": c.subject,
                "channels": if seen.is_empty() { json!([]) } else { json!([channel]) },
                "status": "open",
                "messageCount": seen.len(),
                "inboundMessageCount": inbound,
                "outboundMessageCount": seen.len() - inbound,
                "noteCount": 0,
                "preview": seen.last().map(|m| m.preview.clone()),
                "createdAt": t(c.created_at),
                "updatedAt": updated,
                "modifiedAt": updated,
                "lastActivityAt": updated,
                "firstMessageIn": first_in,
                "direction": "in",
                "priority": 3,
                "spam": false,
                "ended": false,
                "tags": [],
                "assignedUsers": [],
                "assignedTeams": [],
                "rev": seen.len() + 1,
            },
            "relationships": {
                "customer": {
                    "data": { "type": "customer", "id": cust },
                    "links": { "self": format!("/v1/customers/{cust}") }
                },
                "messages": { "links": { "self": format!("/v1/conversations/{id}/messages") } }
            },
            "links": { "self": format!("/v1/conversations/{id}") }
        })
    }

    fn message_json(&self, c: &Conversation, i: usize, m: &Message) -> Value {
        let id = message_id(m);
        let conv = conversation_id(c);
        let cust = customer_id(c);
        let channel = channel_name(c);
        let (direction, direction_type, status) = match (m.direction, i) {
            (Direction::Inbound, 0) => ("in", "initial-in", "received"),
            (Direction::Inbound, _) => ("in", "response-in", "received"),
            (Direction::Outbound, _) => ("out", "response-out", "sent"),
        };
        json!({
            "type": "message",
            "id": id,
            "attributes": {
                "channel": channel,
                "app": app_of(channel),
                "size": m.preview.len(),
                "direction": direction,
                "directionType": direction_type,
                "preview": m.preview,
                "status": status,
                "auto": false,
                "sentAt": t(m.created_at),
                "createdAt": t(m.created_at),
                "updatedAt": t(m.created_at),
                "modifiedAt": t(m.created_at),
                "redacted": false,
                "rev": 1,
            },
            "relationships": {
                "conversation": {
                    "data": { "type": "conversation", "id": conv },
                    "links": { "self": format!("/v1/conversations/{conv}") }
                },
                "customer": {
                    "data": { "type": "customer", "id": cust },
                    "links": { "self": format!("/v1/customers/{cust}") }
                }
            },
            "links": { "self": format!("/v1/messages/{id}") }
        })
    }

    fn envelope(
        &self,
        event_id: String,
        name: &str,
        data: Value,
        at: Timestamp,
        changes: Value,
    ) -> Value {
        let data_id = data.get("id").cloned().unwrap_or(Value::Null);
        json!({
            "id": event_id,
            "name": name,
            "org": self.org,
            "partition": self.org,
            "orgName": "maelys",
            "data": data,
            "createdAt": t(at.plus(Duration::from_millis(14))),
            "persist": true,
            "client": "kustomer-fake",
            "dataId": data_id,
            "changes": changes,
            "meta": { "customChanged": false },
            "snsFilters": []
        })
    }

    fn check_token(&self, headers: &HeaderMap) -> bool {
        let expected = format!("Bearer {}", self.token);
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
    }

    /// Counts the request against the org's budget (and, for a search, the API keys' search
    /// budget): `Err` is the 429. The headers of an accepted request describe the org-wide
    /// budget, as in Kustomer's documentation; the search budget shows only when it refuses.
    fn admit(&self, search: bool) -> Result<[(String, String); 3], ApiError> {
        let now = self.clock.now();
        let epoch = |r: Timestamp| ((r.as_millis() + 999).div_euclid(1000)).to_string();
        let headers = |limit: u32, remaining: u32, reset: Timestamp| {
            [
                ("x-ratelimit-limit".to_string(), limit.to_string()),
                ("x-ratelimit-remaining".to_string(), remaining.to_string()),
                ("x-ratelimit-reset".to_string(), epoch(reset)),
            ]
        };
        let refuse = |limit: u32, reset: Timestamp| ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            title: "Too Many Requests".into(),
            headers: headers(limit, 0, reset).to_vec(),
        };
        let (limit, remaining, reset) = match self.org_window.check(now) {
            Verdict::Limited { limit, reset, .. } => return Err(refuse(limit, reset)),
            Verdict::Allowed {
                limit,
                remaining,
                reset,
            } => (limit, remaining, reset),
        };
        if search {
            if let Verdict::Limited { limit, reset, .. } = self.search_window.check(now) {
                return Err(refuse(limit, reset));
            }
        }
        Ok(headers(limit, remaining, reset))
    }

    fn search(&self, q: &PageQuery, body: &[u8]) -> Result<Value, ApiError> {
        let query: Value = serde_json::from_slice(body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
        if query.get("queryContext").and_then(Value::as_str) != Some("conversation") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "this fake searches queryContext \"conversation\" only",
            ));
        }
        let mut filters: Vec<(&str, &str, Timestamp)> = Vec::new();
        for clause in query
            .get("and")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(obj) = clause.as_object() else {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "each `and` clause is an object",
                ));
            };
            for (attr, cmp) in obj {
                let attr = match attr.as_str() {
                    "conversation_updated_at" => "updated",
                    "conversation_created_at" => "created",
                    other => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            format!("unsupported search attribute `{other}`"),
                        ))
                    }
                };
                for (op, value) in cmp.as_object().into_iter().flatten() {
                    let op = match op.as_str() {
                        "gte" => "gte",
                        "gt" => "gt",
                        "lte" => "lte",
                        "lt" => "lt",
                        other => {
                            return Err(error(
                                StatusCode::BAD_REQUEST,
                                format!("unsupported operator `{other}`"),
                            ))
                        }
                    };
                    let at = value
                        .as_str()
                        .and_then(parse_time)
                        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "invalid date"))?;
                    filters.push((attr, op, at));
                }
            }
        }
        let (sort_attr, descending) = match query
            .get("sort")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .and_then(Value::as_object)
            .and_then(|o| o.iter().next())
        {
            None => ("updated", false),
            Some((attr, dir)) => {
                let attr = match attr.as_str() {
                    "conversation_updated_at" => "updated",
                    "conversation_created_at" => "created",
                    other => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            format!("unsupported sort attribute `{other}`"),
                        ))
                    }
                };
                (attr, dir.as_str() == Some("desc"))
            }
        };

        let page = q.page.unwrap_or(1).max(1);
        let size = q.page_size.unwrap_or(100);
        if size == 0 || size > self.limits.max_search_page_size {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "pageSize must be between 1 and {}",
                    self.limits.max_search_page_size
                ),
            ));
        }
        if page > self.limits.page_cap {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "page must not exceed {}; narrow the query",
                    self.limits.page_cap
                ),
            ));
        }

        let time_of = |c: &Conversation, attr: &str| match attr {
            "created" => c.created_at,
            _ => updated_after(c, c.messages.len()),
        };
        let mut hits: Vec<&Conversation> = self
            .world
            .conversations
            .iter()
            .filter(|c| {
                filters.iter().all(|(attr, op, at)| {
                    let v = time_of(c, attr);
                    match *op {
                        "gte" => v >= *at,
                        "gt" => v > *at,
                        "lte" => v <= *at,
                        _ => v < *at,
                    }
                })
            })
            .collect();
        hits.sort_by_key(|c| (time_of(c, sort_attr), c.seq));
        if descending {
            hits.reverse();
        }
        let total = hits.len();
        let data: Vec<Value> = hits
            .iter()
            .skip((page as usize - 1) * size as usize)
            .take(size as usize)
            .map(|c| self.conversation_json(c, c.messages.len()))
            .collect();
        Ok(list_body(
            "/v1/customers/search",
            data,
            page,
            size,
            total,
            self.limits.page_cap,
        ))
    }

    fn messages(&self, id: &str, q: &PageQuery) -> Result<Value, ApiError> {
        let c = self
            .by_id
            .get(id)
            .and_then(|&i| self.world.conversations.get(i))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "conversation not found"))?;
        let page = q.page.unwrap_or(1).max(1);
        let size = q.page_size.unwrap_or(100);
        if size == 0 || size > self.limits.max_page_size {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "pageSize must be between 1 and {}",
                    self.limits.max_page_size
                ),
            ));
        }
        // Newest first, as a timeline reads.
        let mut all: Vec<(usize, &Message)> = c.messages.iter().enumerate().collect();
        all.reverse();
        let total = all.len();
        let data: Vec<Value> = all
            .iter()
            .skip((page as usize - 1) * size as usize)
            .take(size as usize)
            .map(|(i, m)| self.message_json(c, *i, m))
            .collect();
        Ok(list_body(
            &format!("/v1/conversations/{id}/messages"),
            data,
            page,
            size,
            total,
            u32::MAX,
        ))
    }
}

/// `{data, meta, links}` of one page.
fn list_body(path: &str, data: Vec<Value>, page: u32, size: u32, total: usize, cap: u32) -> Value {
    let total_pages = total.div_ceil(size as usize).max(1) as u32;
    let link = |p: u32| format!("{path}?page={p}&pageSize={size}");
    json!({
        "data": data,
        "meta": { "page": page, "pageSize": size, "total": total, "totalPages": total_pages },
        "links": {
            "self": link(page),
            "first": link(1),
            "prev": if page > 1 { json!(link(page - 1)) } else { Value::Null },
            "next": if page < total_pages && page < cap { json!(link(page + 1)) } else { Value::Null },
        }
    })
}

fn parse_time(s: &str) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(Timestamp(t.as_millisecond()));
    }
    // A bare date, as the search recipes write them, is midnight UTC here.
    let d: jiff::civil::Date = s.parse().ok()?;
    let t = d.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(Timestamp(t.as_millisecond()))
}

/// An error answer: Kustomer's `{"errors": [{status, title}]}` body, and headers.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    title: String,
    headers: Vec<(String, String)>,
}

fn error(status: StatusCode, title: impl Into<String>) -> ApiError {
    ApiError {
        status,
        title: title.into(),
        headers: Vec::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{ "status": self.status.as_u16(), "title": self.title }] });
        let mut r = (self.status, axum::Json(body)).into_response();
        set_headers(r.headers_mut(), &self.headers);
        r
    }
}

fn set_headers(h: &mut HeaderMap, pairs: &[(String, String)]) {
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
}

/// `?page=&pageSize=`
#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<u32>,
    #[serde(rename = "pageSize")]
    page_size: Option<u32>,
}

fn line(method: &str, path: &str, q: &PageQuery) -> String {
    format!(
        "{method} {path}?page={}&pageSize={}",
        q.page.unwrap_or(1),
        q.page_size.unwrap_or(100)
    )
}

async fn search_route(
    State(fake): State<Arc<KustomerFake>>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = line("POST", "/v1/customers/search", &q);
    answer(&fake, &headers, request, true, |f| f.search(&q, &body))
}

async fn messages_route(
    State(fake): State<Arc<KustomerFake>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let request = line("GET", &format!("/v1/conversations/{id}/messages"), &q);
    answer(&fake, &headers, request, false, |f| f.messages(&id, &q))
}

fn answer(
    fake: &KustomerFake,
    headers: &HeaderMap,
    request: String,
    search: bool,
    serve: impl FnOnce(&KustomerFake) -> Result<Value, ApiError>,
) -> Response {
    if !fake.check_token(headers) {
        fake.log.push_at(format!("401 {request}"), fake.clock.now());
        return error(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let rate = match fake.admit(search) {
        Ok(h) => h,
        Err(r) => {
            fake.asked_to_wait.store(true, Ordering::SeqCst);
            fake.log.push_at(format!("429 {request}"), fake.clock.now());
            return r.into_response();
        }
    };
    let exhausted = rate
        .iter()
        .any(|(k, v)| k == "x-ratelimit-remaining" && v == "0");
    fake.asked_to_wait.store(exhausted, Ordering::SeqCst);
    let mut r = match serve(fake) {
        Ok(body) => {
            fake.log.push_at(request, fake.clock.now());
            axum::Json(body).into_response()
        }
        Err(e) => {
            fake.log
                .push_at(format!("{} {request}", e.status.as_u16()), fake.clock.now());
            e.into_response()
        }
    };
    set_headers(r.headers_mut(), &rate);
    r
}

impl FakeSor for KustomerFake {
    fn kind(&self) -> &'static str {
        "kustomer"
    }

    fn webhooks(&self, secret: &str) -> Vec<Webhook> {
        let mut out: Vec<(Timestamp, usize, Webhook)> = Vec::new();
        let mut n: u64 = 0;
        let mut push = |out: &mut Vec<(Timestamp, usize, Webhook)>,
                        name: &str,
                        data: Value,
                        at: Timestamp,
                        changes: Value,
                        about: String| {
            n += 1;
            let body = self.envelope(kid(0xe0, at, n), name, data, at, changes);
            let body = body.to_string().into_bytes();
            let order = out.len();
            out.push((
                at,
                order,
                Webhook {
                    at,
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        ("x-kustomer-webhook-event".into(), name.to_string()),
                        ("x-kustomer-webhook-signature".into(), sign(secret, &body)),
                    ],
                    body,
                    about,
                },
            ));
        };
        for c in &self.world.conversations {
            let cid = conversation_id(c);
            push(
                &mut out,
                "kustomer.conversation.create",
                self.conversation_json(c, 0),
                c.created_at,
                Value::Null,
                format!("conversation:{cid}"),
            );
            for (i, m) in c.messages.iter().enumerate() {
                push(
                    &mut out,
                    "kustomer.message.create",
                    self.message_json(c, i, m),
                    m.created_at,
                    Value::Null,
                    format!("message:{}", message_id(m)),
                );
                let before = self.conversation_json(c, i);
                let after = self.conversation_json(c, i + 1);
                let mut changed = serde_json::Map::new();
                for key in [
                    "channels",
                    "messageCount",
                    "inboundMessageCount",
                    "outboundMessageCount",
                    "preview",
                    "firstMessageIn",
                    "updatedAt",
                    "modifiedAt",
                    "lastActivityAt",
                    "rev",
                ] {
                    let b = &before["attributes"][key];
                    let a = &after["attributes"][key];
                    if a != b {
                        changed.insert(
                            key.into(),
                            json!({ "op": "replace", "before": b, "after": a }),
                        );
                    }
                }
                push(
                    &mut out,
                    "kustomer.conversation.update",
                    after,
                    updated_after(c, i + 1),
                    json!({ "attributes": changed, "relationships": {} }),
                    format!("conversation:{cid}"),
                );
            }
        }
        out.sort_by_key(|(at, order, _)| (*at, *order));
        out.into_iter().map(|(_, _, w)| w).collect()
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/customers/search", post(search_route))
            .route("/v1/conversations/{id}/messages", get(messages_route))
            .with_state(self)
    }
}

/// `X-Kustomer-Webhook-Signature`: lowercase hex HMAC-SHA256 of the body, keyed with the token.
pub fn sign(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC accepts keys of any length; this arm is never taken.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;
    use intake_core::ManualClock;

    fn fake() -> KustomerFake {
        let start = Timestamp(1_795_000_000_000);
        let world = World::generate(&WorldSpec::mixed(3, start, 2));
        KustomerFake::new(world, Arc::new(ManualClock::new(start)), "key")
    }

    #[test]
    fn ids_look_like_kustomers() {
        let f = fake();
        for c in &f.world.conversations {
            let id = conversation_id(c);
            assert_eq!(id.len(), 24);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }

    #[test]
    fn webhooks_are_signed_time_ordered_and_one_create_per_object() {
        let f = fake();
        let hooks = f.webhooks("tok");
        let messages: usize = f.world.conversations.iter().map(|c| c.messages.len()).sum();
        assert_eq!(hooks.len(), f.world.conversations.len() + 2 * messages);
        assert!(hooks.windows(2).all(|w| w[0].at <= w[1].at));
        for w in &hooks {
            let sig = &w.headers[2].1;
            assert_eq!(sig, &sign("tok", &w.body));
            let v: Value = serde_json::from_slice(&w.body).unwrap();
            assert_eq!(v["name"], w.headers[1].1.as_str());
            assert_eq!(v["id"].as_str().map(str::len), Some(24));
        }
    }

    #[test]
    fn search_pages_stop_at_the_cap_and_report_the_total() {
        let start = Timestamp(1_795_000_000_000);
        let world = World::generate(&WorldSpec::mixed(3, start, 2));
        let n = world.conversations.len();
        let limits = KustomerLimits {
            page_cap: 2,
            ..KustomerLimits::default()
        };
        let f = KustomerFake::with_limits(world, Arc::new(ManualClock::new(start)), "k", limits);
        let body = br#"{"queryContext":"conversation","and":[{"conversation_updated_at":{"gte":"2020-01-01"}}],"sort":[{"conversation_updated_at":"asc"}]}"#;
        let q = |p| PageQuery {
            page: Some(p),
            page_size: Some(5),
        };
        let p1 = f.search(&q(1), body).unwrap();
        assert_eq!(p1["meta"]["total"], n);
        assert_eq!(
            p1["links"]["next"],
            "/v1/customers/search?page=2&pageSize=5"
        );
        let p2 = f.search(&q(2), body).unwrap();
        assert!(p2["links"]["next"].is_null(), "the cap ends the links");
        assert!(f.search(&q(3), body).is_err());
        let times: Vec<&str> = p1["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["attributes"]["updatedAt"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::world::WorldSpec;
    use intake_core::ManualClock;

    #[test]
    fn the_org_budget_refuses_past_its_limit() {
        let start = Timestamp(1_795_000_020_000);
        let world = World::generate(&WorldSpec::mixed(3, start, 1));
        let limits = KustomerLimits {
            per_minute: 3,
            search_per_minute: 1,
            ..KustomerLimits::default()
        };
        let f = KustomerFake::with_limits(world, Arc::new(ManualClock::new(start)), "k", limits);
        let verdicts: Vec<bool> = (0..5).map(|_| f.admit(false).is_ok()).collect();
        assert_eq!(verdicts, [true, true, true, false, false]);
    }
}
