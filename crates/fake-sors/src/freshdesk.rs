//! A fake Freshdesk, written from Freshdesk's documentation:
//!
//! * webhooks: automation rules ("Ticket creation" and "Ticket updates" / Observer) with the
//!   "Trigger webhook" action, JSON content in the legacy `freshdesk_webhook` envelope built
//!   from placeholders (`{{ticket.id}}`, `{{triggered_event}}`, …). `{{triggered_event}}`
//!   renders as `{ticket_action:created}` or `{status:{from:2,to:3}}` (see Zulip's Freshdesk
//!   fixtures). Freshdesk signs nothing: the rule sends a secret in a custom header or as Basic
//!   authentication, whichever the fake is told. Every ticket creation sends one webhook; every
//!   later message changes the ticket's status (an agent's reply makes it Pending, a customer's
//!   reply Open again), which an Observer rule on "Status is changed" reports.
//! * API (<https://developers.freshdesk.com/api/#list_all_tickets>): `GET /api/v2/tickets` with
//!   `updated_since`, `order_by=updated_at|created_at`, `order_type=asc|desc`, `per_page` (at
//!   most 100), `page` (at most 300: beyond, `400`), a `Link: <…>; rel="next"` header while more
//!   remain, Basic authentication with the API key as user and any password (`401` otherwise),
//!   and a per-minute rate limit per account (`X-RateLimit-Total`, `X-RateLimit-Remaining`,
//!   `X-RateLimit-Used-CurrentRequest`; `429` with `Retry-After` in seconds).
//!
//! Freshdesk keeps times to the second, so every time the fake shows (API and webhooks alike)
//! is the world's time truncated to its second, and so is each webhook's `at`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use intake_core::Timestamp;
use serde::Deserialize;
use serde_json::json;

use crate::harness::{Clock, FakeSor, FixedWindow, RequestLog, Verdict, Webhook};
use crate::world::{rfc3339_secs, Conversation, Direction, Medium, World};

/// How the fake's automation rules prove they are Freshdesk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    /// A custom header carrying the secret.
    Header(String),
    /// "Requires authentication": Basic, the secret being `user:password`.
    Basic,
}

/// A fake Freshdesk account serving one world.
pub struct FakeFreshdesk {
    world: World,
    domain: String,
    api_key: String,
    auth: WebhookAuth,
    clock: Clock,
    limiter: FixedWindow,
    page_cap: u32,
    log: RequestLog,
}

impl std::fmt::Debug for FakeFreshdesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFreshdesk")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// The API key the fake accepts unless told otherwise.
pub const API_KEY: &str = "fd-api-key-1234567890";

impl FakeFreshdesk {
    /// A fake serving `world`, limiting its API on `clock` to Freshdesk's Growth-plan 200
    /// requests a minute, 300 pages per listing, webhooks authenticated by `X-Intake-Secret`.
    pub fn new(world: World, clock: Clock) -> Self {
        FakeFreshdesk {
            world,
            domain: "maelys.freshdesk.com".into(),
            api_key: API_KEY.into(),
            auth: WebhookAuth::Header("X-Intake-Secret".into()),
            clock,
            limiter: FixedWindow::new(200, Duration::from_secs(60)),
            page_cap: 300,
            log: RequestLog::default(),
        }
    }

    /// Accepts this API key.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = key.into();
        self
    }

    /// Allows `per_minute` API requests a minute.
    pub fn with_rate_limit(mut self, per_minute: u32) -> Self {
        self.limiter = FixedWindow::new(per_minute, Duration::from_secs(60));
        self
    }

    /// Serves at most `pages` pages per listing.
    pub fn with_page_cap(mut self, pages: u32) -> Self {
        self.page_cap = pages.max(1);
        self
    }

    /// Authenticates webhooks this way.
    pub fn with_webhook_auth(mut self, auth: WebhookAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The requests the API served (`"GET /api/v2/tickets?…"`, `"429 GET …"`, `"401 GET …"`).
    pub fn requests(&self) -> Vec<String> {
        self.log.all()
    }

    /// The world it serves.
    pub fn world(&self) -> &World {
        &self.world
    }
}

/// Freshdesk's `source` code for a world medium.
pub fn source_code(m: Medium) -> u32 {
    match m {
        Medium::Email => 1,
        Medium::Web => 2,
        Medium::Voice => 3,
        Medium::Social => 6,
        Medium::Chat => 7,
        // Freshdesk has no SMS source; messaging arrives through WhatsApp.
        Medium::Sms => 13,
    }
}

/// The time as Freshdesk keeps it: truncated to the second.
pub fn to_second(t: Timestamp) -> Timestamp {
    Timestamp(t.as_secs() * 1000)
}

/// Status codes: 2 Open, 3 Pending.
fn status_after(d: Direction) -> u32 {
    match d {
        Direction::Inbound => 2,
        Direction::Outbound => 3,
    }
}

fn status_name(code: u32) -> &'static str {
    match code {
        3 => "Pending",
        4 => "Resolved",
        5 => "Closed",
        _ => "Open",
    }
}

fn ticket_json(c: &Conversation) -> serde_json::Value {
    let status = c.messages.last().map_or(2, |m| status_after(m.direction));
    json!({
        "id": c.seq,
        "subject": c.subject,
        "description_text": c.messages.first().map(|m| m.preview.clone()),
        "status": status,
        "priority": 1,
        "source": source_code(c.medium),
        "type": "Question",
        "requester_id": 80_000_000 + c.customer,
        "responder_id": null,
        "group_id": null,
        "company_id": null,
        "cc_emails": [],
        "fwd_emails": [],
        "reply_cc_emails": [],
        "fr_escalated": false,
        "spam": false,
        "is_escalated": false,
        "tags": [],
        "custom_fields": {},
        "created_at": rfc3339_secs(to_second(c.created_at)),
        "updated_at": rfc3339_secs(to_second(c.updated_at())),
        "due_by": rfc3339_secs(to_second(c.created_at).plus(Duration::from_secs(3 * 86_400))),
        "fr_due_by": rfc3339_secs(to_second(c.created_at).plus(Duration::from_secs(86_400))),
    })
}

impl FakeSor for FakeFreshdesk {
    fn kind(&self) -> &'static str {
        "freshdesk"
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
        let mut out = Vec::new();
        for c in &self.world.conversations {
            let created = to_second(c.created_at);
            let mut status = 2;
            for (i, m) in c.messages.iter().enumerate() {
                let at = to_second(m.created_at);
                let (triggered, about) = if i == 0 {
                    (
                        "{ticket_action:created}".to_string(),
                        format!("ticket:{}:created", c.seq),
                    )
                } else {
                    let to = status_after(m.direction);
                    let ev = format!("{{status:{{from:{status},to:{to}}}}}");
                    status = to;
                    (ev, format!("ticket:{}:message:{}", c.seq, m.seq))
                };
                // The placeholders of intake's documented rule, as Freshdesk renders them:
                // every value a string, status and priority by name, the source by number.
                let body = json!({
                    "freshdesk_webhook": {
                        "triggered_event": triggered,
                        "ticket_id": c.seq.to_string(),
                        "ticket_subject": c.subject,
                        "ticket_status": status_name(status),
                        "ticket_priority": "Low",
                        "ticket_source": source_code(c.medium).to_string(),
                        "ticket_type": "Question",
                        "ticket_url": format!("https://{}/helpdesk/tickets/{}", self.domain, c.seq),
                        "ticket_created_at": rfc3339_secs(created),
                        "ticket_updated_at": rfc3339_secs(at),
                        "requester_email": format!("customer{}@example.com", c.customer),
                    }
                });
                out.push(Webhook {
                    at,
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        (auth_name.clone(), auth_value.clone()),
                    ],
                    body: body.to_string().into_bytes(),
                    about,
                });
            }
        }
        out.sort_by_key(|w| w.at);
        out
    }

    fn api(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v2/tickets", get(list_tickets))
            .with_state(self)
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    updated_since: Option<String>,
    order_by: Option<String>,
    order_type: Option<String>,
    per_page: Option<String>,
    page: Option<String>,
}

fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn validation(field: &str, message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        json!({
            "description": "Validation failed",
            "errors": [{ "field": field, "message": message, "code": "invalid_value" }]
        }),
    )
}

fn authorized(fd: &FakeFreshdesk, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    // The API key is the user name; the password is ignored ("X" by convention).
    text.split_once(':')
        .is_some_and(|(user, _)| user == fd.api_key)
}

async fn list_tickets(
    State(fd): State<Arc<FakeFreshdesk>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let line = format!(
        "GET /api/v2/tickets?updated_since={}&page={}",
        q.updated_since.as_deref().unwrap_or(""),
        q.page.as_deref().unwrap_or("1")
    );
    if !authorized(&fd, &headers) {
        fd.log.push(format!("401 {line}"));
        return error(
            StatusCode::UNAUTHORIZED,
            json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}),
        );
    }
    let now = fd.clock.now();
    let (limit, remaining) = match fd.limiter.check(now) {
        Verdict::Limited {
            limit, retry_after, ..
        } => {
            fd.log.push(format!("429 {line}"));
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": "You have exceeded the limit of requests per minute"}),
            );
            let h = r.headers_mut();
            h.insert(
                "retry-after",
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            h.insert("x-ratelimit-total", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0));
            return r;
        }
        Verdict::Allowed {
            limit, remaining, ..
        } => (limit, remaining),
    };
    let per_page: usize = match q.per_page.as_deref().map(str::parse::<usize>) {
        None => 30,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => {
            fd.log.push(format!("400 {line}"));
            return validation(
                "per_page",
                "It should be a Positive Integer less than or equal to 100",
            );
        }
    };
    let page: usize = match q.page.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 && n <= fd.page_cap as usize => n,
        _ => {
            fd.log.push(format!("400 {line}"));
            return validation(
                "page",
                &format!(
                    "It should be a Positive Integer less than or equal to {}",
                    fd.page_cap
                ),
            );
        }
    };
    let since = match q.updated_since.as_deref() {
        None => None,
        Some(s) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => Some(Timestamp(t.as_millisecond())),
            Err(_) => {
                fd.log.push(format!("400 {line}"));
                return validation("updated_since", "It should be in the 'valid date' format");
            }
        },
    };
    let by_created = match q.order_by.as_deref() {
        None | Some("created_at") => true,
        Some("updated_at") => false,
        Some(_) => {
            fd.log.push(format!("400 {line}"));
            return validation(
                "order_by",
                "It should be one of these values: 'created_at,due_by,updated_at,status'",
            );
        }
    };
    let ascending = match q.order_type.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            fd.log.push(format!("400 {line}"));
            return validation("order_type", "It should be one of these values: 'asc,desc'");
        }
    };
    fd.log.push(line);

    let mut tickets: Vec<&Conversation> = fd
        .world
        .conversations
        .iter()
        .filter(|c| since.is_none_or(|s| to_second(c.updated_at()) >= s))
        .collect();
    let key = |c: &&Conversation| {
        let t = if by_created {
            c.created_at
        } else {
            c.updated_at()
        };
        (to_second(t), c.seq)
    };
    tickets.sort_by_key(key);
    if !ascending {
        tickets.reverse();
    }
    let start = (page - 1) * per_page;
    let slice: Vec<serde_json::Value> = tickets
        .iter()
        .skip(start)
        .take(per_page)
        .map(|c| ticket_json(c))
        .collect();
    let more = tickets.len() > start + per_page;

    let mut r = Json(slice).into_response();
    let h = r.headers_mut();
    h.insert("x-ratelimit-total", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used-currentrequest", HeaderValue::from(1));
    if more {
        let mut next = format!(
            "https://{}/api/v2/tickets?per_page={per_page}&page={}",
            fd.domain,
            page + 1
        );
        if let Some(s) = &q.updated_since {
            next.push_str(&format!("&updated_since={s}"));
        }
        if let Some(o) = &q.order_by {
            next.push_str(&format!("&order_by={o}"));
        }
        if let Some(o) = &q.order_type {
            next.push_str(&format!("&order_type={o}"));
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            h.insert("link", v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;
    use intake_core::clock::ManualClock;

    #[test]
    fn one_webhook_per_message_in_time_order() {
        let start = Timestamp(1_795_000_000_000);
        let world = World::generate(&WorldSpec::mixed(3, start, 2));
        let messages = world.messages().len();
        let fd = FakeFreshdesk::new(world, Arc::new(ManualClock::new(start)));
        let hooks = fd.webhooks("s3cret");
        assert_eq!(hooks.len(), messages);
        assert!(hooks.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(hooks.iter().all(|w| w.at.as_millis() % 1000 == 0));
        assert!(hooks[0]
            .headers
            .contains(&("X-Intake-Secret".to_string(), "s3cret".to_string())));
        let v: serde_json::Value = serde_json::from_slice(&hooks[0].body).unwrap();
        assert_eq!(
            v["freshdesk_webhook"]["triggered_event"],
            "{ticket_action:created}"
        );
    }
}
