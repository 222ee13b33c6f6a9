//! A fake Zendesk Support account, written from Zendesk's developer documentation.
//!
//! Webhooks: event-subscribed webhooks (`zen:event-type:ticket.created`,
//! `ticket.comment_added`, `ticket.status_changed`) in Zendesk's event envelope
//! (<https://developer.zendesk.com/api-reference/webhooks/event-types/webhook-event-types/>),
//! signed as <https://developer.zendesk.com/documentation/webhooks/verifying/> describes:
//! `X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, timestamp + body))` with the
//! timestamp in `X-Zendesk-Webhook-Signature-Timestamp`.
//!
//! The world's conversations become tickets: a ticket is created `new` with its first
//! (customer) comment; every agent reply sets it `pending`, every later customer reply `open`,
//! each with a `ticket.status_changed` webhook at the comment's time.
//!
//! API:
//! * `GET /api/v2/incremental/tickets/cursor.json?start_time=…|cursor=…[&per_page=…]`: tickets
//!   updated at or after `start_time`, in update order, each once in its current state, up to a
//!   minute before now; `after_cursor`, `end_of_stream`; 10 requests a minute by default.
//!   (<https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/>)
//! * `GET /api/v2/tickets/{id}/comments?page[size]=…&page[after]=…`: cursor pagination with
//!   `meta.has_more` / `meta.after_cursor` and `links.next`, at most 100 a page.
//!   (<https://developer.zendesk.com/documentation/developer-tools/pagination/paginating-through-lists-using-cursor-pagination/>)
//!
//! Authentication is basic, `{email}/token:{api token}`; `401` otherwise. Over a limit: `429`
//! with `Retry-After` (seconds), as <https://developer.zendesk.com/api-reference/introduction/rate-limits/>
//! describes, with `X-Rate-Limit` / `X-Rate-Limit-Remaining` and `ratelimit-*` on every answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use intake_core::Timestamp;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::{Clock, FakeSor, FixedWindow, RequestLog, Verdict, Webhook};
use crate::world::{rfc3339_millis, rfc3339_secs, Conversation, Direction, Medium, World};

/// The account id the fake writes into webhooks.
pub const ACCOUNT_ID: u64 = 9_242_270;
/// The webhook id (one webhook subscribed to ticket events).
pub const WEBHOOK_ID: &str = "01GK8E6BKWMJZD2T8Y5AXJQMG5";

/// A fake Zendesk account over a [`World`].
pub struct ZendeskFake {
    world: World,
    clock: Clock,
    /// The agent e-mail the API token belongs to.
    pub email: String,
    /// The API token.
    pub token: String,
    /// The largest export page (`per_page` is capped to it; Zendesk's is 1000).
    pub export_page_cap: usize,
    /// Requests a minute to the incremental export (Zendesk: 10).
    export_limit: FixedWindow,
    /// Requests a minute to the rest of the API (Zendesk: 200 to 2500 by plan).
    api_limit: FixedWindow,
    /// Every request served.
    pub log: RequestLog,
    tickets: HashMap<u64, usize>,
}

impl std::fmt::Debug for ZendeskFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskFake").finish_non_exhaustive()
    }
}

/// The ticket id of a world conversation.
pub fn ticket_id(c: &Conversation) -> u64 {
    35_000 + c.seq
}

/// The comment id of a world message.
pub fn comment_id(message_seq: u64) -> u64 {
    30_064_117_810_000 + message_seq
}

/// Zendesk's `via.channel` for a medium; a few media have several real channel names.
pub fn via_channel(c: &Conversation) -> &'static str {
    let pick = |names: &'static [&'static str]| names[(c.seq as usize) % names.len()];
    match c.medium {
        Medium::Email => "email",
        Medium::Chat => pick(&["chat", "native_messaging"]),
        Medium::Sms => pick(&["sms", "whatsapp"]),
        Medium::Voice => "voice",
        Medium::Social => pick(&["facebook", "twitter", "instagram_dm"]),
        Medium::Web => "web",
    }
}

fn uuid_like(kind: u8, a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (a as u32) ^ 0x5a5a_0000,
        kind as u16,
        (b >> 12) & 0xfff,
        b & 0xfff,
        a.wrapping_mul(0x9e37_79b9) & 0xffff_ffff_ffff
    )
}

fn hmac_b64(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    for p in parts {
        mac.update(p);
    }
    B64.encode(mac.finalize().into_bytes())
}

/// One event of a ticket, before it is put in its envelope.
struct Event {
    at: Timestamp,
    event_type: &'static str,
    event_id: String,
    detail: Value,
    event: Value,
    about: String,
}

/// A ticket's status after its `n`-th message (0-based): `new`, then `pending` after an agent
/// reply and `open` after a customer reply.
fn status_after(c: &Conversation, n: usize) -> &'static str {
    if n == 0 {
        return "new";
    }
    match c.messages[n].direction {
        Direction::Outbound => "pending",
        Direction::Inbound => "open",
    }
}

impl ZendeskFake {
    /// A fake serving `world` on `clock`, with Zendesk's limits: 10 export requests and 700
    /// other requests a minute, export pages of up to 1000 tickets.
    pub fn new(world: World, clock: Clock) -> Self {
        let tickets = world
            .conversations
            .iter()
            .enumerate()
            .map(|(i, c)| (ticket_id(c), i))
            .collect();
        ZendeskFake {
            world,
            clock,
            email: "agent@maelys.example".into(),
            token: "zendesk-api-token".into(),
            export_page_cap: 1000,
            export_limit: FixedWindow::new(10, Duration::from_secs(60)),
            api_limit: FixedWindow::new(700, Duration::from_secs(60)),
            log: RequestLog::default(),
            tickets,
        }
    }

    /// Sets the per-minute limits (export, rest of the API).
    pub fn with_limits(mut self, export_per_minute: u32, api_per_minute: u32) -> Self {
        self.export_limit = FixedWindow::new(export_per_minute, Duration::from_secs(60));
        self.api_limit = FixedWindow::new(api_per_minute, Duration::from_secs(60));
        self
    }

    /// Caps export pages at `n` tickets.
    pub fn with_export_page_cap(mut self, n: usize) -> Self {
        self.export_page_cap = n.max(1);
        self
    }

    /// The world it serves.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The ticket as the API returns it at `now`: only what had happened by then.
    fn ticket_json(&self, c: &Conversation, now: Timestamp) -> Option<(Timestamp, Value)> {
        let seen = c.messages.iter().filter(|m| m.created_at <= now).count();
        if seen == 0 {
            return None;
        }
        let updated = c.messages[seen - 1].created_at;
        let id = ticket_id(c);
        let assignee = c.messages[..seen]
            .iter()
            .any(|m| m.direction == Direction::Outbound)
            .then_some(8_447_388_090_495u64);
        Some((
            updated,
            json!({
                "url": format!("https://maelys.zendesk.com/api/v2/tickets/{id}.json"),
                "id": id,
                "external_id": null,
                "via": { "channel": via_channel(c), "source": { "from": {}, "to": {}, "rel": null } },
                "created_at": rfc3339_secs(c.created_at),
                "updated_at": rfc3339_secs(updated),
                "generated_timestamp": updated.as_secs(),
                "type": "question",
                "subject": c.subject,
                "raw_subject": c.subject,
                "description": c.messages[0].preview,
                "priority": "normal",
                "status": status_after(c, seen - 1),
                "recipient": null,
                "requester_id": 20_978_000 + c.customer,
                "submitter_id": 20_978_000 + c.customer,
                "assignee_id": assignee,
                "organization_id": null,
                "group_id": 98_738,
                "brand_id": 123,
                "ticket_form_id": 6_876_543,
                "tags": [],
                "is_public": true,
            }),
        ))
    }

    /// The webhook `detail` of a ticket at its `n`-th message.
    fn detail(c: &Conversation, n: usize) -> Value {
        let updated = c.messages[n].created_at;
        json!({
            "actor_id": if c.messages[n].direction == Direction::Outbound { "8447388090495".to_string() } else { (20_978_000 + c.customer).to_string() },
            "assignee_id": c.messages[..=n].iter().any(|m| m.direction == Direction::Outbound).then_some("8447388090495"),
            "brand_id": "123",
            "created_at": rfc3339_secs(c.created_at),
            "custom_status": "8447388688638",
            "description": c.messages[0].preview,
            "external_id": null,
            "form_id": "6876543",
            "group_id": "98738",
            "id": ticket_id(c).to_string(),
            "is_public": true,
            "organization_id": null,
            "priority": "NORMAL",
            "requester_id": (20_978_000 + c.customer).to_string(),
            "status": status_after(c, n).to_ascii_uppercase(),
            "subject": c.subject,
            "submitter_id": (20_978_000 + c.customer).to_string(),
            "tags": [],
            "type": "QUESTION",
            "updated_at": rfc3339_secs(updated),
            "via": { "channel": via_channel(c) },
        })
    }

    fn webhook(&self, secret: &str, c: &Conversation, e: Event) -> Webhook {
        let Event {
            at,
            event_type,
            event_id,
            detail,
            event,
            about,
        } = e;
        let body = json!({
            "type": event_type,
            "account_id": ACCOUNT_ID,
            "id": event_id,
            "time": rfc3339_millis(at),
            "zendesk_event_version": "2022-11-06",
            "subject": format!("zen:ticket:{}", ticket_id(c)),
            "detail": detail,
            "event": event,
        })
        .to_string()
        .into_bytes();
        let timestamp = rfc3339_secs(at);
        let signature = hmac_b64(secret, &[timestamp.as_bytes(), &body]);
        Webhook {
            at,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), "Zendesk Webhook".into()),
                ("X-Zendesk-Account-Id".into(), ACCOUNT_ID.to_string()),
                ("X-Zendesk-Webhook-Id".into(), WEBHOOK_ID.into()),
                (
                    "X-Zendesk-Webhook-Invocation-Id".into(),
                    uuid_like(9, at.as_millis() as u64, ticket_id(c)),
                ),
                ("X-Zendesk-Webhook-Signature".into(), signature),
                ("X-Zendesk-Webhook-Signature-Timestamp".into(), timestamp),
            ],
            body,
            about,
        }
    }

    /// Counts a request against the account's limit and, for the export, the export's own.
    /// Every answer carries the account's `X-Rate-Limit*` / `ratelimit-*` headers; the
    /// export's 10-a-minute limit shows only as a `429` with `Retry-After`, as Zendesk's
    /// endpoint-specific limits do.
    fn limited(
        &self,
        endpoint: Option<&FixedWindow>,
        line: String,
    ) -> Result<HeaderMap, Box<Response>> {
        let now = self.clock.now();
        let refused = |h: &mut HeaderMap, retry_after: Duration| {
            let secs = retry_after.as_secs_f64().ceil() as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert("retry-after", v);
            }
        };
        let mut headers = match self.api_limit.check(now) {
            Verdict::Allowed {
                limit,
                remaining,
                reset,
            } => rate_headers(limit, remaining, reset.since(now)),
            Verdict::Limited {
                limit,
                reset,
                retry_after,
            } => {
                let mut h = rate_headers(limit, 0, reset.since(now));
                refused(&mut h, retry_after);
                self.log.push(format!("429 {line}"));
                return Err(Box::new(too_many(h)));
            }
        };
        if let Some(Verdict::Limited { retry_after, .. }) = endpoint.map(|e| e.check(now)) {
            refused(&mut headers, retry_after);
            self.log.push(format!("429 {line}"));
            return Err(Box::new(too_many(headers)));
        }
        self.log.push(line);
        Ok(headers)
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let expected = format!(
            "Basic {}",
            B64.encode(format!("{}/token:{}", self.email, self.token))
        );
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given == expected {
            Ok(())
        } else {
            Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({ "error": "Couldn't authenticate you" })),
                )
                    .into_response(),
            ))
        }
    }
}

fn too_many(headers: HeaderMap) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        headers,
        Json(json!({ "error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded" })),
    )
        .into_response()
}

fn rate_headers(limit: u32, remaining: u32, reset_in: Duration) -> HeaderMap {
    let mut h = HeaderMap::new();
    let reset = reset_in.as_secs_f64().ceil() as u64;
    for (k, v) in [
        ("x-rate-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("ratelimit-limit", limit.to_string()),
        ("ratelimit-remaining", remaining.to_string()),
        ("ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    h
}

fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    // Parsed as axum's `Query` does (form-urlencoded); an unreadable query is an empty one.
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{}", raw.unwrap_or(""))
            .parse()
            .unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

fn bad_request(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "InvalidValue", "description": description })),
    )
        .into_response()
}

/// An export cursor: the (updated, id) position of the last ticket returned.
fn export_cursor(updated: Timestamp, id: u64) -> String {
    B64.encode(format!("{}|{}", updated.as_millis(), id))
}

fn read_export_cursor(s: &str) -> Option<(i64, u64)> {
    let text = String::from_utf8(B64.decode(s).ok()?).ok()?;
    let (t, id) = text.split_once('|')?;
    Some((t.parse().ok()?, id.parse().ok()?))
}

async fn export(
    State(fake): State<Arc<ZendeskFake>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(r) = fake.authorized(&headers) {
        return *r;
    }
    let line = format!(
        "GET /api/v2/incremental/tickets/cursor.json?{}",
        raw.as_deref().unwrap_or("")
    );
    let rate = match fake.limited(Some(&fake.export_limit), line) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let q = query_map(raw.as_deref());
    let now = fake.clock.now();
    // Zendesk leaves out what changed in the minute before the request.
    let horizon = now.minus(Duration::from_secs(60));
    let after: (i64, u64) = match (q.get("cursor"), q.get("start_time")) {
        (Some(c), _) => match read_export_cursor(c) {
            Some(pos) => pos,
            None => return bad_request("invalid cursor"),
        },
        (None, Some(t)) => match t.parse::<i64>() {
            Ok(secs) if secs * 1000 > horizon.as_millis() => {
                return bad_request("Too recent start_time. Use a start_time older than 1 minute")
            }
            // "At or after start_time": position just before it.
            Ok(secs) => (secs * 1000 - 1, u64::MAX),
            Err(_) => return bad_request("start_time must be a unix time in seconds"),
        },
        (None, None) => return bad_request("start_time or cursor is required"),
    };
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, fake.export_page_cap);

    let mut stream: Vec<(Timestamp, u64, Value)> = fake
        .world
        .conversations
        .iter()
        .filter_map(|c| {
            let (updated, t) = fake.ticket_json(c, horizon)?;
            Some((updated, ticket_id(c), t))
        })
        .filter(|(u, id, _)| (u.as_millis(), *id) > after)
        .collect();
    stream.sort_by_key(|(u, id, _)| (*u, *id));
    let end_of_stream = stream.len() <= per_page;
    stream.truncate(per_page);
    let after_cursor = match stream.last() {
        Some((u, id, _)) => export_cursor(*u, *id),
        // Nothing new: the next poll starts from the same place.
        None => B64.encode(format!("{}|{}", after.0, after.1)),
    };
    let tickets: Vec<Value> = stream.into_iter().map(|(_, _, t)| t).collect();
    let body = json!({
        "tickets": tickets,
        "after_url": format!("https://maelys.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor={after_cursor}"),
        "after_cursor": after_cursor,
        "before_url": null,
        "before_cursor": null,
        "end_of_stream": end_of_stream,
    });
    (StatusCode::OK, rate, Json(body)).into_response()
}

async fn comments(
    State(fake): State<Arc<ZendeskFake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(r) = fake.authorized(&headers) {
        return *r;
    }
    let line = format!(
        "GET /api/v2/tickets/{id}/comments?{}",
        raw.as_deref().unwrap_or("")
    );
    let rate = match fake.limited(None, line) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "RecordNotFound", "description": "Not found" })),
        )
            .into_response()
    };
    let Some(c) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| fake.tickets.get(&id))
        .and_then(|&i| fake.world.conversations.get(i))
    else {
        return not_found();
    };
    let now = fake.clock.now();
    let q = query_map(raw.as_deref());
    let size = q
        .get("page[size]")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let start = match q.get("page[after]") {
        Some(a) => match B64
            .decode(a)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
        {
            Some(i) => i,
            None => return bad_request("invalid page[after] cursor"),
        },
        None => 0,
    };
    let visible: Vec<_> = c.messages.iter().filter(|m| m.created_at <= now).collect();
    let page: Vec<Value> = visible
        .iter()
        .skip(start)
        .take(size)
        .map(|m| {
            let author = match m.direction {
                Direction::Inbound => 20_978_000 + c.customer,
                Direction::Outbound => 8_447_388_090_495,
            };
            json!({
                "id": comment_id(m.seq),
                "type": "Comment",
                "author_id": author,
                "body": m.preview,
                "html_body": format!("<div class=\"zd-comment\"><p>{}</p></div>", m.preview),
                "plain_body": m.preview,
                "public": true,
                "attachments": [],
                "audit_id": comment_id(m.seq) + 1,
                "via": { "channel": via_channel(c), "source": { "from": {}, "to": {}, "rel": null } },
                "created_at": rfc3339_secs(m.created_at),
                "metadata": { "system": {}, "custom": {} },
            })
        })
        .collect();
    let end = start + page.len();
    let has_more = end < visible.len();
    let after_cursor = B64.encode(end.to_string());
    let next = has_more.then(|| {
        format!("https://maelys.zendesk.com/api/v2/tickets/{id}/comments.json?page[after]={after_cursor}&page[size]={size}")
    });
    let body = json!({
        "comments": page,
        "meta": { "has_more": has_more, "after_cursor": after_cursor, "before_cursor": B64.encode(start.to_string()) },
        "links": { "next": next, "prev": null },
    });
    (StatusCode::OK, rate, Json(body)).into_response()
}

impl FakeSor for ZendeskFake {
    fn kind(&self) -> &'static str {
        "zendesk"
    }

    fn webhooks(&self, secret: &str) -> Vec<Webhook> {
        let mut out = Vec::new();
        for c in &self.world.conversations {
            let tid = ticket_id(c);
            out.push(self.webhook(
                secret,
                c,
                Event {
                    at: c.created_at,
                    event_type: "zen:event-type:ticket.created",
                    event_id: uuid_like(1, tid, 0),
                    detail: Self::detail(c, 0),
                    event: json!({ "current": { "status": "NEW" } }),
                    about: format!("ticket:{tid}:created"),
                },
            ));
            for (n, m) in c.messages.iter().enumerate() {
                let (author_id, is_staff, name) = match m.direction {
                    Direction::Inbound => (
                        20_978_000 + c.customer,
                        false,
                        format!("Customer {}", c.customer),
                    ),
                    Direction::Outbound => (8_447_388_090_495, true, "Support Agent".to_string()),
                };
                let cid = comment_id(m.seq);
                out.push(self.webhook(
                    secret,
                    c,
                    Event {
                        at: m.created_at,
                        event_type: "zen:event-type:ticket.comment_added",
                        event_id: uuid_like(2, cid, tid),
                        detail: Self::detail(c, n),
                        event: json!({ "comment": {
                        "id": cid.to_string(),
                        "body": m.preview,
                        "is_public": true,
                        "author": { "id": author_id.to_string(), "is_staff": is_staff, "name": name },
                    }}),
                        about: format!("comment:{cid}"),
                    },
                ));
                if n > 0 && status_after(c, n) != status_after(c, n - 1) {
                    out.push(self.webhook(
                        secret,
                        c,
                        Event {
                            at: m.created_at,
                            event_type: "zen:event-type:ticket.status_changed",
                            event_id: uuid_like(3, cid, tid),
                            detail: Self::detail(c, n),
                            event: json!({
                                "current": status_after(c, n).to_ascii_uppercase(),
                                "previous": status_after(c, n - 1).to_ascii_uppercase(),
                            }),
                            about: format!("ticket:{tid}:status:{}", m.seq),
                        },
                    ));
                }
            }
        }
        // Stable: a ticket's creation comes before its first comment at the same instant.
        out.sort_by_key(|w| w.at);
        out
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v2/incremental/tickets/cursor.json", get(export))
            .route("/api/v2/tickets/{id}/comments", get(comments))
            .route("/api/v2/tickets/{id}/comments.json", get(comments))
            .with_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;

    #[test]
    fn webhooks_are_signed_over_timestamp_and_body() {
        let start = Timestamp(1_795_000_000_000);
        let world = World::generate(&WorldSpec::mixed(3, start, 2));
        let fake = ZendeskFake::new(world, Arc::new(intake_core::ManualClock::new(start)));
        let hooks = fake.webhooks("s");
        assert!(hooks.len() > 50);
        for w in hooks.iter().take(20) {
            let h = |n: &str| {
                w.headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let ts = h("X-Zendesk-Webhook-Signature-Timestamp");
            assert_eq!(
                h("X-Zendesk-Webhook-Signature"),
                hmac_b64("s", &[ts.as_bytes(), &w.body])
            );
        }
        assert!(hooks.windows(2).all(|p| p[0].at <= p[1].at));
    }

    #[test]
    fn query_strings_are_decoded() {
        let q = query_map(Some("page%5Bsize%5D=100&cursor=YWI%3D"));
        assert_eq!(q.get("page[size]").map(String::as_str), Some("100"));
        assert_eq!(q.get("cursor").map(String::as_str), Some("YWI="));
    }
}
