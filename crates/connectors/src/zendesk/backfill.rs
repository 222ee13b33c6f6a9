//! Zendesk backfill: the cursor-based incremental ticket export, then each ticket's comments.
//!
//! * `GET /api/v2/incremental/tickets/cursor.json?start_time=<unix>` (then `?cursor=<after_cursor>`)
//!   lists every ticket updated at or after `start_time`, each once in its latest state, in
//!   update order, until `end_of_stream`. A ticket created inside the window but updated after
//!   it appears late in that stream, so the export is read to its end, not to the window's end.
//!   Zendesk leaves out what changed in the minute before a request, so the client waits until
//!   the window's end is more than a minute old. Limit: 10 requests a minute, `429` with
//!   `Retry-After` beyond. (<https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/>)
//! * `GET /api/v2/tickets/{id}/comments?page[size]=100` (then `page[after]=<after_cursor>`
//!   while `meta.has_more`) for every ticket that can have a comment in the window.
//!   (<https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/>)
//!
//! Authentication is basic: `{api.username}/token:{api.token}`, the username being the agent's
//! e-mail address.
//!
//! **What backfill reproduces**: `ticket.created` for every ticket created in the window and
//! `ticket.comment_added` for every comment created in it, with the same dedupe keys as the
//! webhooks. The export returns tickets as they are now, not their history, so other events
//! (status, priority, tag, assignment changes) are not reproduced. The rebuilt envelopes carry
//! the ticket's current state in `detail`, no Zendesk event `id` or `account_id` (the API has
//! neither), and the comment's author as `{"id"}` only.
//!
//! The export's 10-a-minute budget is separate from the rest of the API's (the source's
//! `api.rate_limit_per_minute`), so two paced clients are used: comments are fetched at the
//! account's pace, not the export's.

use std::collections::VecDeque;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use intake_core::clock::SharedClock;
use intake_core::config::ApiConfig;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::backfill::{
    exact_values, ApiClient, ApiStats, Backfill, BackfillError, Cursor, Page, Recovered, Window,
    DEFAULT_PER_MINUTE,
};

/// Zendesk's documented limit on the incremental export endpoints.
pub const EXPORT_PER_MINUTE: u32 = 10;
/// How many tickets' comments one page reads (a recovery job stores its cursor between pages).
const TICKETS_PER_PAGE: usize = 25;
/// Comments per page of the comments endpoint (Zendesk's maximum for cursor pagination).
const COMMENTS_PAGE_SIZE: u32 = 100;
/// What Zendesk leaves out of an export: changes made in the minute before the request.
const EXPORT_LAG: std::time::Duration = std::time::Duration::from_secs(61);
/// The schema version written into rebuilt envelopes.
const EVENT_VERSION: &str = "2022-11-06";

/// The Zendesk backfill client.
pub struct ZendeskBackfill {
    export: ApiClient,
    api: ApiClient,
    base: String,
    authorization: String,
    export_page_size: Option<u32>,
}

impl std::fmt::Debug for ZendeskBackfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskBackfill")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Where a Zendesk backfill is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// The export's next cursor; `None` before the first export request.
    #[serde(default)]
    after_cursor: Option<String>,
    /// The export reached `end_of_stream`.
    #[serde(default)]
    exported: bool,
    /// Tickets read from the export whose comments are still to be read.
    #[serde(default)]
    queue: VecDeque<Queued>,
}

/// A ticket waiting for its comments to be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    id: String,
    created_at: String,
    /// The webhook `detail` object rebuilt from the API ticket.
    detail: Value,
}

#[derive(Deserialize)]
struct ExportPage {
    #[serde(default, deserialize_with = "exact_values")]
    tickets: Vec<Value>,
    #[serde(default)]
    after_cursor: Option<String>,
    #[serde(default)]
    end_of_stream: bool,
}

#[derive(Deserialize)]
struct CommentsPage {
    #[serde(default, deserialize_with = "exact_values")]
    comments: Vec<Value>,
    #[serde(default)]
    meta: Option<CommentsMeta>,
}

#[derive(Deserialize)]
struct CommentsMeta {
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    after_cursor: Option<String>,
}

impl ZendeskBackfill {
    /// A client for the source's `api`: `base_url` is `https://{subdomain}.zendesk.com`,
    /// `username` the agent's e-mail, `token` an API token.
    pub fn new(clock: SharedClock, api: &ApiConfig) -> Result<Self, BackfillError> {
        let username = api
            .username
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                BackfillError::NotConfigured(
                    "zendesk needs `api.username` (the agent's e-mail the API token belongs to)"
                        .into(),
                )
            })?;
        let credentials = format!("{username}/token:{}", api.token);
        Ok(ZendeskBackfill {
            export: ApiClient::new(clock.clone(), EXPORT_PER_MINUTE),
            api: ApiClient::new(
                clock,
                api.rate_limit_per_minute.unwrap_or(DEFAULT_PER_MINUTE),
            ),
            base: api.base_url.trim_end_matches('/').to_string(),
            authorization: format!("Basic {}", BASE64.encode(credentials)),
            export_page_size: None,
        })
    }

    /// Asks the export for pages of `n` tickets (Zendesk's default and maximum is 1000).
    pub fn with_export_page_size(mut self, n: u32) -> Self {
        self.export_page_size = Some(n.max(1));
        self
    }

    /// Requests sent so far by both clients (the export's and the rest of the API's).
    pub fn stats(&self) -> ApiStats {
        let (a, b) = (self.export.stats(), self.api.stats());
        ApiStats {
            requests: a.requests + b.requests,
            throttled: a.throttled + b.throttled,
            retried: a.retried + b.retried,
        }
    }

    /// The export client alone (paced to [`EXPORT_PER_MINUTE`]).
    pub fn export_stats(&self) -> ApiStats {
        self.export.stats()
    }

    async fn export_page(&self, window: &Window, state: &mut State) -> Result<(), BackfillError> {
        // Zendesk leaves out the last minute before each request: wait until the window's end
        // is older than that, or the export would silently miss its last minute.
        let ready = window.to.plus(EXPORT_LAG);
        let clock = self.export.clock();
        if clock.now() < ready {
            clock.sleep_until(ready).await;
        }
        let mut query: Vec<(&str, String)> = match &state.after_cursor {
            Some(c) => vec![("cursor", c.clone())],
            None => vec![("start_time", window.from.as_secs().max(0).to_string())],
        };
        if let Some(n) = self.export_page_size {
            query.push(("per_page", n.to_string()));
        }
        let url = format!("{}/api/v2/incremental/tickets/cursor.json", self.base);
        let what = "GET /api/v2/incremental/tickets/cursor.json";
        let response = self
            .export
            .send(what, |http| {
                http.get(&url)
                    .query(&query)
                    .header("authorization", &self.authorization)
                    .header("accept", "application/json")
            })
            .await?;
        let page: ExportPage = response.json(what)?;
        for ticket in &page.tickets {
            let Some(queued) = queued(ticket) else {
                return Err(BackfillError::Decode {
                    what: what.into(),
                    why: "a ticket without `id`, `created_at` or `updated_at`".into(),
                });
            };
            // Every ticket of the export was updated at or after the window's start; one
            // created after the window's end has nothing in it.
            match Timestamp::parse_rfc3339(&queued.created_at) {
                Ok(created) if created > window.to => {}
                _ => state.queue.push_back(queued),
            }
        }
        // An export ends with `end_of_stream`; a page without a next cursor ends it too.
        match page.after_cursor.filter(|c| !c.is_empty()) {
            Some(c) if !page.end_of_stream => state.after_cursor = Some(c),
            _ => state.exported = true,
        }
        Ok(())
    }

    async fn comments(&self, ticket_id: &str) -> Result<Vec<Value>, BackfillError> {
        let url = format!("{}/api/v2/tickets/{ticket_id}/comments", self.base);
        let what = format!("GET /api/v2/tickets/{ticket_id}/comments");
        let mut after: Option<String> = None;
        let mut all = Vec::new();
        loop {
            let mut query = vec![("page[size]", COMMENTS_PAGE_SIZE.to_string())];
            if let Some(a) = &after {
                query.push(("page[after]", a.clone()));
            }
            let response = self
                .api
                .send(&what, |http| {
                    http.get(&url)
                        .query(&query)
                        .header("authorization", &self.authorization)
                        .header("accept", "application/json")
                })
                .await?;
            let page: CommentsPage = response.json(&what)?;
            all.extend(page.comments);
            match page.meta {
                Some(CommentsMeta {
                    has_more: true,
                    after_cursor: Some(next),
                }) if Some(&next) != after.as_ref() => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    async fn recover(
        &self,
        window: &Window,
        ticket: &Queued,
    ) -> Result<Vec<Recovered>, BackfillError> {
        let mut out = Vec::new();
        let subject = format!("zen:ticket:{}", ticket.id);
        if in_window(window, &ticket.created_at) {
            out.push(recovered(json!({
                "type": "zen:event-type:ticket.created",
                "time": ticket.created_at,
                "zendesk_event_version": EVENT_VERSION,
                "subject": subject,
                "detail": ticket.detail,
                "event": {},
            }))?);
        }
        for comment in self.comments(&ticket.id).await? {
            let Some(created_at) = comment.get("created_at").and_then(Value::as_str) else {
                continue;
            };
            if !in_window(window, created_at) {
                continue;
            }
            let Some(id) = text(comment.get("id")) else {
                continue;
            };
            let mut c = json!({
                "id": id,
                "body": comment.get("body").cloned().unwrap_or(Value::Null),
                "is_public": comment.get("public").cloned().unwrap_or(Value::Bool(true)),
            });
            if let Some(author) = text(comment.get("author_id")) {
                c["author"] = json!({ "id": author });
            }
            out.push(recovered(json!({
                "type": "zen:event-type:ticket.comment_added",
                "time": created_at,
                "zendesk_event_version": EVENT_VERSION,
                "subject": subject,
                "detail": ticket.detail,
                "event": { "comment": c },
            }))?);
        }
        Ok(out)
    }
}

fn in_window(window: &Window, t: &str) -> bool {
    Timestamp::parse_rfc3339(t).is_ok_and(|t| window.contains(t))
}

/// A JSON id (Zendesk's API writes numbers, its webhooks strings) as text.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The webhook `detail` of an API ticket: ids as strings and status, priority and type in
/// capitals, as event webhooks write them.
fn queued(ticket: &Value) -> Option<Queued> {
    let id = text(ticket.get("id"))?;
    let created_at = ticket.get("created_at")?.as_str()?.to_string();
    let updated_at = ticket.get("updated_at")?.as_str()?.to_string();
    let mut detail = serde_json::Map::new();
    for key in [
        "assignee_id",
        "brand_id",
        "group_id",
        "organization_id",
        "requester_id",
        "submitter_id",
        "external_id",
    ] {
        detail.insert(
            key.into(),
            text(ticket.get(key)).map_or(Value::Null, Value::String),
        );
    }
    if let Some(form) = text(ticket.get("ticket_form_id")) {
        detail.insert("form_id".into(), Value::String(form));
    }
    for key in ["status", "priority", "type"] {
        let v = ticket
            .get(key)
            .and_then(Value::as_str)
            .map_or(Value::Null, |s| Value::String(s.to_ascii_uppercase()));
        detail.insert(key.into(), v);
    }
    for key in ["subject", "description", "tags"] {
        if let Some(v) = ticket.get(key) {
            detail.insert(key.into(), v.clone());
        }
    }
    detail.insert("id".into(), Value::String(id.clone()));
    detail.insert("created_at".into(), Value::String(created_at.clone()));
    detail.insert("updated_at".into(), Value::String(updated_at));
    let channel = ticket
        .get("via")
        .and_then(|v| v.get("channel"))
        .cloned()
        .unwrap_or(Value::Null);
    detail.insert("via".into(), json!({ "channel": channel }));
    Some(Queued {
        id,
        created_at,
        detail: Value::Object(detail),
    })
}

fn recovered(envelope: Value) -> Result<Recovered, BackfillError> {
    let body = serde_json::to_vec(&envelope).map_err(|e| BackfillError::Decode {
        what: "rebuilding a Zendesk envelope".into(),
        why: e.to_string(),
    })?;
    let event = super::parse_body(&body).map_err(|e| BackfillError::Decode {
        what: "rebuilding a Zendesk envelope".into(),
        why: e.to_string(),
    })?;
    Ok(Recovered {
        event,
        body,
        headers: vec![("content-type".into(), "application/json".into())],
    })
}

#[async_trait]
impl Backfill for ZendeskBackfill {
    fn stats(&self) -> ApiStats {
        self.export.stats().plus(self.api.stats())
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let mut state: State = match cursor {
            Some(c) => serde_json::from_value(c.0.clone())
                .map_err(|e| BackfillError::BadCursor(e.to_string()))?,
            None => State::default(),
        };
        // Read export pages until one yields tickets to look at, or the export ends.
        while state.queue.is_empty() && !state.exported {
            self.export_page(window, &mut state).await?;
        }
        let mut events = Vec::new();
        for _ in 0..TICKETS_PER_PAGE {
            let Some(ticket) = state.queue.front() else {
                break;
            };
            events.extend(self.recover(window, ticket).await?);
            state.queue.pop_front();
        }
        let next = if state.queue.is_empty() && state.exported {
            None
        } else {
            let v = serde_json::to_value(&state)
                .map_err(|e| BackfillError::BadCursor(e.to_string()))?;
            Some(Cursor(v))
        };
        Ok(Page { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_id_beyond_64_bits_keeps_the_webhooks_dedupe_key() {
        // The export writes ids as numbers; the webhook for the same ticket writes the same
        // digits, and both must give one key.
        let page: ExportPage = serde_json::from_str(
            r#"{"tickets":[{"id":18446744073709551617,"created_at":"2026-11-27T09:15:00Z",
                "updated_at":"2026-11-27T09:15:00Z","via":{"channel":"email"}}],
                "end_of_stream":true}"#,
        )
        .unwrap();
        let ticket = queued(&page.tickets[0]).unwrap();
        assert_eq!(ticket.id, "18446744073709551617");
        let backfilled = recovered(json!({
            "type": "zen:event-type:ticket.created",
            "time": ticket.created_at,
            "subject": format!("zen:ticket:{}", ticket.id),
            "detail": ticket.detail,
        }))
        .unwrap();
        let webhook = super::super::parse_body(
            br#"{"id":"z1","type":"zen:event-type:ticket.created","time":"2026-11-27T09:15:00Z",
                "detail":{"id":18446744073709551617}}"#,
        )
        .unwrap();
        assert_eq!(backfilled.event.dedupe_key, webhook.dedupe_key);
        assert_eq!(webhook.dedupe_key, "ticket:18446744073709551617:created");
    }
}
