//! A fake Gorgias, written from Gorgias' documentation:
//!
//! * webhooks: HTTP integrations (<https://developers.gorgias.com/reference/integrations>), one
//!   per trigger (`ticket-created`, `ticket-updated`, `ticket-message-created`), each POSTing
//!   the body template `{"event": "<trigger>", "ticket": {{ticket}}, "message": {{message}}}`
//!   with a custom header (or Basic authentication) carrying a shared secret: Gorgias signs
//!   nothing. A new ticket fires `ticket-created` and `ticket-message-created` for its first
//!   message; every later message fires `ticket-message-created` and `ticket-updated`.
//! * API: `GET /api/tickets` (`limit` ≤ 100, `order_by` `created_datetime|updated_datetime`
//!   `:asc|:desc`, `cursor`) and `GET /api/tickets/{id}/messages` (`limit`, `cursor`), both
//!   answering `{"data": […], "meta": {"prev_cursor", "next_cursor"}, "object": "list", "uri"}`
//!   (cursor pagination, <https://developers.gorgias.com/reference/pagination>); Basic
//!   authentication with the account e-mail and an API key (`401` otherwise); a leaky bucket of
//!   40 requests per 20 s (`X-Gorgias-Account-Api-Call-Limit: used/40`, `429` with
//!   `Retry-After` in seconds).
//!
//! Times are written as Gorgias writes them: `2024-02-14T21:30:50.201000+00:00`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use intake_core::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::harness::{Clock, FakeSor, LeakyBucket, RequestLog, Verdict, Webhook};
use crate::world::{rfc3339_millis, Conversation, Direction, Medium, Message, World};

/// How the fake's HTTP integrations prove they are Gorgias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    /// A custom header carrying the secret.
    Header(String),
    /// `Authorization: Basic …`, the secret being `user:password`.
    Basic,
}

/// The account e-mail the fake accepts unless told otherwise.
pub const USERNAME: &str = "ops@maelys.example";
/// The API key the fake accepts unless told otherwise.
pub const API_KEY: &str = "gorgias-api-key-0123456789";

/// A fake Gorgias account serving one world.
pub struct FakeGorgias {
    world: World,
    username: String,
    api_key: String,
    auth: WebhookAuth,
    clock: Clock,
    bucket: LeakyBucket,
    log: RequestLog,
}

impl std::fmt::Debug for FakeGorgias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGorgias").finish_non_exhaustive()
    }
}

/// The Gorgias id of world conversation `seq`.
pub fn ticket_id(seq: u64) -> u64 {
    86_000_000 + seq
}

/// The Gorgias id of world message `seq`.
pub fn message_id(seq: u64) -> u64 {
    208_000_000 + seq
}

/// The Gorgias channel of a conversation.
pub fn channel_of(c: &Conversation) -> &'static str {
    match c.medium {
        Medium::Email => "email",
        Medium::Chat => "chat",
        Medium::Sms => "sms",
        Medium::Voice => "phone",
        Medium::Social if c.seq.is_multiple_of(2) => "instagram-direct-message",
        Medium::Social => "facebook-messenger",
        Medium::Web => "contact_form",
    }
}

/// A time as Gorgias writes it (microseconds, `+00:00`).
pub fn gorgias_time(t: Timestamp) -> String {
    let ms = rfc3339_millis(t);
    match ms.strip_suffix('Z') {
        Some(s) => format!("{s}000+00:00"),
        None => ms,
    }
}

impl FakeGorgias {
    /// A fake serving `world`, with Gorgias' API-key limit (40 requests per 20 s) on `clock`,
    /// webhooks authenticated by `X-Intake-Secret`.
    pub fn new(world: World, clock: Clock) -> Self {
        FakeGorgias {
            world,
            username: USERNAME.into(),
            api_key: API_KEY.into(),
            auth: WebhookAuth::Header("X-Intake-Secret".into()),
            clock,
            bucket: LeakyBucket::new(40, Duration::from_secs(20)),
            log: RequestLog::default(),
        }
    }

    /// Accepts these credentials.
    pub fn with_credentials(mut self, username: &str, api_key: &str) -> Self {
        self.username = username.into();
        self.api_key = api_key.into();
        self
    }

    /// A leaky bucket of `capacity` requests per `period`.
    pub fn with_rate_limit(mut self, capacity: u32, period: Duration) -> Self {
        self.bucket = LeakyBucket::new(capacity, period);
        self
    }

    /// Authenticates webhooks this way.
    pub fn with_webhook_auth(mut self, auth: WebhookAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The requests the API served (`"GET /api/tickets?…"`, `"429 GET …"`, `"401 GET …"`).
    pub fn requests(&self) -> Vec<String> {
        self.log.all()
    }
}

fn message_json(c: &Conversation, m: &Message) -> Value {
    let customer = json!({"id": 380_000_000 + c.customer, "email": format!("customer{}@example.com", c.customer), "name": null});
    let agent = json!({"id": 387_654_483u64, "email": "agent@maelys.example", "name": "Agent"});
    let (from_agent, sender, receiver) = match m.direction {
        Direction::Inbound => (false, customer.clone(), agent),
        Direction::Outbound => (true, agent, customer),
    };
    let channel = channel_of(c);
    json!({
        "id": message_id(m.seq),
        "uri": format!("/api/tickets/{}/messages/{}/", ticket_id(c.seq), message_id(m.seq)),
        "ticket_id": ticket_id(c.seq),
        "channel": channel,
        "via": if channel == "email" { "email" } else { "helpdesk" },
        "from_agent": from_agent,
        "public": true,
        "sender": sender,
        "receiver": receiver,
        "subject": c.subject,
        "body_text": m.preview,
        "body_html": format!("<div>{}</div>", m.preview),
        "source": {"type": channel},
        "attachments": [],
        "created_datetime": gorgias_time(m.created_at),
        "sent_datetime": gorgias_time(m.created_at),
        "failed_datetime": null,
        "opened_datetime": null,
    })
}

/// The ticket as it stood after its first `upto` messages (all of them for the API).
fn ticket_json(c: &Conversation, upto: usize, with_messages: bool) -> Value {
    let msgs = &c.messages[..upto.min(c.messages.len())];
    let last = msgs.last();
    let updated = last.map_or(c.created_at, |m| m.created_at);
    let last_received = msgs
        .iter()
        .rev()
        .find(|m| m.direction == Direction::Inbound)
        .map(|m| gorgias_time(m.created_at));
    let mut t = json!({
        "id": ticket_id(c.seq),
        "uri": format!("/api/tickets/{}/", ticket_id(c.seq)),
        "external_id": null,
        "language": "en",
        "status": if last.is_some_and(|m| m.direction == Direction::Outbound) { "closed" } else { "open" },
        "priority": "normal",
        "channel": channel_of(c),
        "via": if c.medium == Medium::Email { "email" } else { "helpdesk" },
        "from_agent": false,
        "customer": {"id": 380_000_000 + c.customer, "email": format!("customer{}@example.com", c.customer)},
        "assignee_user": null,
        "assignee_team": null,
        "subject": c.subject,
        "tags": [],
        "spam": false,
        "created_datetime": gorgias_time(c.created_at),
        "opened_datetime": null,
        "last_received_message_datetime": last_received,
        "last_message_datetime": last.map(|m| gorgias_time(m.created_at)),
        "updated_datetime": gorgias_time(updated),
        "closed_datetime": null,
        "snooze_datetime": null,
        "trashed_datetime": null,
    });
    if with_messages {
        t["messages"] = Value::Array(msgs.iter().map(|m| message_json(c, m)).collect());
    }
    t
}

impl FakeSor for FakeGorgias {
    fn kind(&self) -> &'static str {
        "gorgias"
    }

    fn webhooks(&self, secret: &str) -> Vec<Webhook> {
        let (auth_name, auth_value) = match &self.auth {
            WebhookAuth::Header(h) => (h.clone(), secret.to_string()),
            WebhookAuth::Basic => (
                "Authorization".to_string(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(secret)
                ),
            ),
        };
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (auth_name, auth_value),
        ];
        let mut out = Vec::new();
        for c in &self.world.conversations {
            for (i, m) in c.messages.iter().enumerate() {
                let ticket = ticket_json(c, i + 1, true);
                let mut push = |event: &str, body: Value, about: String| {
                    out.push(Webhook {
                        at: m.created_at,
                        headers: headers.clone(),
                        body: body.to_string().into_bytes(),
                        about: format!("{event} {about}"),
                    })
                };
                if i == 0 {
                    push(
                        "ticket-created",
                        json!({"event": "ticket-created", "ticket": ticket}),
                        format!("ticket:{}", ticket_id(c.seq)),
                    );
                }
                push(
                    "ticket-message-created",
                    json!({"event": "ticket-message-created", "ticket": ticket, "message": message_json(c, m)}),
                    format!("message:{}", message_id(m.seq)),
                );
                if i > 0 {
                    push(
                        "ticket-updated",
                        json!({"event": "ticket-updated", "ticket": ticket}),
                        format!("ticket:{}", ticket_id(c.seq)),
                    );
                }
            }
        }
        out.sort_by_key(|w| w.at);
        out
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/tickets", get(list_tickets))
            .route("/api/tickets/{id}/messages", get(list_messages))
            .with_state(self)
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    order_by: Option<String>,
    cursor: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"msg": message}}))).into_response()
}

/// Checks credentials and the bucket; `Err` is the refusal to send.
fn admit(g: &FakeGorgias, headers: &HeaderMap, line: &str) -> Result<HeaderValue, Box<Response>> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .map(|d| String::from_utf8_lossy(&d).into_owned())
        .is_some_and(|cred| cred == format!("{}:{}", g.username, g.api_key));
    if !ok {
        g.log.push(format!("401 {line}"));
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "Unauthorized")));
    }
    match g.bucket.check(g.clock.now()) {
        Verdict::Limited {
            limit, retry_after, ..
        } => {
            g.log.push(format!("429 {line}"));
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            let h = r.headers_mut();
            h.insert(
                "retry-after",
                HeaderValue::from(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{limit}/{limit}")) {
                h.insert("x-gorgias-account-api-call-limit", v);
            }
            Err(Box::new(r))
        }
        Verdict::Allowed {
            limit, remaining, ..
        } => {
            g.log.push(line.to_string());
            HeaderValue::from_str(&format!("{}/{limit}", limit - remaining))
                .map_err(|_| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, "header")))
        }
    }
}

fn limit_of(q: &ListQuery) -> Option<usize> {
    match q.limit.as_deref().map(str::parse::<usize>) {
        None => Some(30),
        Some(Ok(n)) if (1..=100).contains(&n) => Some(n),
        _ => None,
    }
}

fn bad_limit() -> Response {
    error(StatusCode::BAD_REQUEST, "limit: must be between 1 and 100")
}

/// A cursor names the last item of the previous page by its sort key.
fn encode_cursor(key: (i64, u64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{}", key.0, key.1))
}

fn decode_cursor(c: &str) -> Option<(i64, u64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (t, id) = text.split_once('|')?;
    Some((t.parse().ok()?, id.parse().ok()?))
}

/// One page of `items` (sorted by `key`, ascending or not) after `cursor`.
fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> (i64, u64),
    ascending: bool,
    cursor: Option<&str>,
    limit: usize,
    render: impl Fn(&T) -> Value,
    uri: String,
) -> Response {
    items.sort_by_key(&key);
    if !ascending {
        items.reverse();
    }
    let start = match cursor {
        None => 0,
        Some(c) => {
            let Some(after) = decode_cursor(c) else {
                return error(StatusCode::BAD_REQUEST, "cursor: invalid cursor");
            };
            items
                .iter()
                .position(|i| {
                    let k = key(i);
                    if ascending {
                        k > after
                    } else {
                        k < after
                    }
                })
                .unwrap_or(items.len())
        }
    };
    let page: Vec<&T> = items.iter().skip(start).take(limit).collect();
    let next = if start + page.len() < items.len() {
        page.last().map(|i| encode_cursor(key(i)))
    } else {
        None
    };
    let prev = page
        .first()
        .filter(|_| start > 0)
        .map(|i| encode_cursor(key(i)));
    Json(json!({
        "data": page.iter().map(|i| render(i)).collect::<Vec<_>>(),
        "meta": {"prev_cursor": prev, "next_cursor": next},
        "object": "list",
        "uri": uri,
    }))
    .into_response()
}

async fn list_tickets(
    State(g): State<Arc<FakeGorgias>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let line = format!(
        "GET /api/tickets?order_by={}&cursor={}",
        q.order_by.as_deref().unwrap_or(""),
        q.cursor.as_deref().unwrap_or("")
    );
    let used = match admit(&g, &headers, &line) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(limit) = limit_of(&q) else {
        return bad_limit();
    };
    let (by_updated, ascending) = match q.order_by.as_deref().unwrap_or("created_datetime:desc") {
        "created_datetime:asc" => (false, true),
        "created_datetime:desc" => (false, false),
        "updated_datetime:asc" => (true, true),
        "updated_datetime:desc" => (true, false),
        _ => return error(StatusCode::BAD_REQUEST, "order_by: invalid value"),
    };
    let tickets: Vec<&Conversation> = g.world.conversations.iter().collect();
    let key = |c: &&Conversation| {
        let t = if by_updated {
            c.updated_at()
        } else {
            c.created_at
        };
        (t.as_millis(), ticket_id(c.seq))
    };
    let render = |c: &&Conversation| ticket_json(c, c.messages.len(), false);
    let mut r = paginate(
        tickets,
        key,
        ascending,
        q.cursor.as_deref(),
        limit,
        render,
        "/api/tickets".into(),
    );
    r.headers_mut()
        .insert("x-gorgias-account-api-call-limit", used);
    r
}

async fn list_messages(
    State(g): State<Arc<FakeGorgias>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let line = format!(
        "GET /api/tickets/{id}/messages?cursor={}",
        q.cursor.as_deref().unwrap_or("")
    );
    let used = match admit(&g, &headers, &line) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(limit) = limit_of(&q) else {
        return bad_limit();
    };
    let Some(c) = g
        .world
        .conversations
        .iter()
        .find(|c| ticket_id(c.seq) == id)
    else {
        return error(StatusCode::NOT_FOUND, "Resource not found");
    };
    let messages: Vec<&Message> = c.messages.iter().collect();
    let mut r = paginate(
        messages,
        |m| (m.created_at.as_millis(), message_id(m.seq)),
        true,
        q.cursor.as_deref(),
        limit,
        |m| message_json(c, m),
        format!("/api/tickets/{id}/messages"),
    );
    r.headers_mut()
        .insert("x-gorgias-account-api-call-limit", used);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;
    use intake_core::clock::ManualClock;

    #[test]
    fn webhooks_per_message_and_gorgias_times() {
        let start = Timestamp(1_795_000_000_123);
        assert_eq!(gorgias_time(start), "2026-11-18T11:06:40.123000+00:00");
        let world = World::generate(&WorldSpec::mixed(5, start, 2));
        let messages = world.messages().len();
        let tickets = world.conversations.len();
        let g = FakeGorgias::new(world, Arc::new(ManualClock::new(start)));
        let hooks = g.webhooks("s");
        // created per ticket, message-created per message, updated per later message.
        assert_eq!(hooks.len(), tickets + messages + (messages - tickets));
        assert!(hooks.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor((17, 4))), Some((17, 4)));
        assert_eq!(decode_cursor("%%"), None);
    }
}
