//! Intercom backfill: conversation search, then each conversation with its parts.
//!
//! * `POST /conversations/search` with `updated_at > window start − 1 s` AND
//!   `created_at < window end + 1 s` (Intercom's search has no `≥`/`≤`; times are unix
//!   seconds): every conversation that can hold a creation or a part inside the window, including
//!   one created in it and updated since. Pages of up to 150, followed with
//!   `pagination.starting_after` from `pages.next`.
//!   (<https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/searchconversations>)
//! * `GET /conversations/{id}`: the conversation with its `conversation_parts` (up to 500).
//!   (<https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/retrieveconversation>)
//!
//! Authentication: `Authorization: Bearer <access token>`, with `Intercom-Version: 2.11`.
//! Rate limits: `X-RateLimit-Limit` / `-Remaining` / `-Reset` (epoch seconds) and `429`, read by
//! [`ApiClient`]. (<https://developers.intercom.com/docs/references/rest-api/errors/rate-limiting>)
//!
//! **What backfill reproduces**: `conversation.user.created` (or
//! `conversation.admin.single.created` when the conversation was not customer-initiated) for
//! conversations created in the window, and `conversation.user.replied` /
//! `conversation.admin.replied` / `conversation.admin.noted` for comment and note parts created in
//! it, with the webhook path's dedupe keys. Assignments, closes, snoozes and other state changes
//! are not reproduced (the API returns the conversation as it is now). The rebuilt envelopes carry
//! the conversation's current state, only the reproduced part in `conversation_parts`, and no
//! notification `id` or `app_id`.

use async_trait::async_trait;
use intake_core::clock::SharedClock;
use intake_core::config::ApiConfig;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::backfill::{
    exact_values, ApiClient, ApiStats, Backfill, BackfillError, Cursor, ExactValue, Page,
    Recovered, Window, DEFAULT_PER_MINUTE,
};

/// The API version requested.
pub const API_VERSION: &str = "2.11";
/// Intercom's largest search page.
pub const MAX_PAGE_SIZE: u32 = 150;

/// The Intercom backfill client.
pub struct IntercomBackfill {
    api: ApiClient,
    base: String,
    token: String,
    page_size: u32,
}

impl std::fmt::Debug for IntercomBackfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntercomBackfill")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    starting_after: Option<String>,
}

#[derive(Deserialize)]
struct SearchPage {
    #[serde(default, deserialize_with = "exact_values")]
    conversations: Vec<Value>,
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<Next>,
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    starting_after: Option<String>,
}

impl IntercomBackfill {
    /// A client for the source's `api`: `base_url` is `https://api.intercom.io` (or the EU /
    /// AU region's), `token` an access token.
    pub fn new(clock: SharedClock, api: &ApiConfig) -> Self {
        IntercomBackfill {
            api: ApiClient::new(
                clock,
                api.rate_limit_per_minute.unwrap_or(DEFAULT_PER_MINUTE),
            ),
            base: api.base_url.trim_end_matches('/').to_string(),
            token: api.token.clone(),
            page_size: MAX_PAGE_SIZE,
        }
    }

    /// Asks for search pages of `n` conversations (at most 150).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ApiStats {
        self.api.stats()
    }

    async fn search(&self, window: &Window, state: &State) -> Result<SearchPage, BackfillError> {
        let mut pagination = json!({ "per_page": self.page_size });
        if let Some(after) = &state.starting_after {
            pagination["starting_after"] = Value::String(after.clone());
        }
        let body = json!({
            "query": {
                "operator": "AND",
                "value": [
                    { "field": "updated_at", "operator": ">", "value": window.from.as_secs() - 1 },
                    { "field": "created_at", "operator": "<", "value": window.to.as_secs() + 1 },
                ],
            },
            "pagination": pagination,
        });
        let url = format!("{}/conversations/search", self.base);
        let what = "POST /conversations/search";
        let response = self
            .api
            .send(what, |http| {
                http.post(&url)
                    .bearer_auth(&self.token)
                    .header("intercom-version", API_VERSION)
                    .header("accept", "application/json")
                    .json(&body)
            })
            .await?;
        response.json(what)
    }

    async fn conversation(&self, id: &str) -> Result<Value, BackfillError> {
        let url = format!("{}/conversations/{id}", self.base);
        let what = format!("GET /conversations/{id}");
        let response = self
            .api
            .send(&what, |http| {
                http.get(&url)
                    .bearer_auth(&self.token)
                    .header("intercom-version", API_VERSION)
                    .header("accept", "application/json")
            })
            .await?;
        // Read exactly, so that an id beyond 64 bits keeps its digits (see `ExactValue`).
        response.json::<ExactValue>(&what).map(|v| v.0)
    }
}

/// A JSON value that is text or a number, as text.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn unix(v: Option<&Value>) -> Option<Timestamp> {
    let secs = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some(Timestamp((secs * 1000.0) as i64))
}

fn part_list(parts: Vec<Value>, total: usize) -> Value {
    json!({
        "type": "conversation_part.list",
        "conversation_parts": parts,
        "total_count": total,
    })
}

fn envelope(
    topic: &str,
    item: Value,
    created_at: Option<&Value>,
) -> Result<Recovered, BackfillError> {
    let body = json!({
        "type": "notification_event",
        "data": { "type": "notification_event_data", "item": item },
        "links": {},
        "topic": topic,
        "created_at": created_at.cloned().unwrap_or(Value::Null),
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| BackfillError::Decode {
        what: "rebuilding an Intercom notification".into(),
        why: e.to_string(),
    })?;
    let event = super::parse_body(&bytes).map_err(|e| BackfillError::Decode {
        what: "rebuilding an Intercom notification".into(),
        why: e.to_string(),
    })?;
    Ok(Recovered {
        event,
        body: bytes,
        headers: vec![("content-type".into(), "application/json".into())],
    })
}

/// The events a conversation implies inside the window.
fn recover(window: &Window, conversation: &Value) -> Result<Vec<Recovered>, BackfillError> {
    let mut out = Vec::new();
    let mut item = conversation.clone();
    let parts: Vec<Value> = conversation
        .get("conversation_parts")
        .and_then(|p| p.get("conversation_parts"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let created = conversation.get("created_at");
    if unix(created).is_some_and(|t| window.contains(t)) {
        let customer = conversation
            .get("source")
            .and_then(|s| s.get("delivered_as"))
            .and_then(Value::as_str)
            .is_none_or(|d| d == "customer_initiated");
        let topic = if customer {
            "conversation.user.created"
        } else {
            "conversation.admin.single.created"
        };
        item["conversation_parts"] = part_list(Vec::new(), 0);
        out.push(envelope(topic, item.clone(), created)?);
    }
    for (i, part) in parts.iter().enumerate() {
        let at = part.get("created_at");
        if !unix(at).is_some_and(|t| window.contains(t)) || text(part.get("id")).is_none() {
            continue;
        }
        let author = part
            .get("author")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let topic = match part.get("part_type").and_then(Value::as_str) {
            Some("note") => "conversation.admin.noted",
            Some("comment") if matches!(author, "user" | "lead" | "contact") => {
                "conversation.user.replied"
            }
            Some("comment") => "conversation.admin.replied",
            // Assignments, closes, snoozes…: state changes, not reproduced.
            _ => continue,
        };
        item["conversation_parts"] = part_list(vec![part.clone()], i + 1);
        out.push(envelope(topic, item.clone(), at)?);
    }
    Ok(out)
}

#[async_trait]
impl Backfill for IntercomBackfill {
    fn stats(&self) -> ApiStats {
        self.api.stats()
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let state: State = match cursor {
            Some(c) => serde_json::from_value(c.0.clone())
                .map_err(|e| BackfillError::BadCursor(e.to_string()))?,
            None => State::default(),
        };
        let page = self.search(window, &state).await?;
        let mut events = Vec::new();
        for found in &page.conversations {
            let Some(id) = text(found.get("id")) else {
                return Err(BackfillError::Decode {
                    what: "POST /conversations/search".into(),
                    why: "a conversation without `id`".into(),
                });
            };
            let conversation = self.conversation(&id).await?;
            events.extend(recover(window, &conversation)?);
        }
        let next = page
            .pages
            .and_then(|p| p.next)
            .and_then(|n| n.starting_after)
            .filter(|s| !s.is_empty() && state.starting_after.as_ref() != Some(s))
            .map(|s| {
                serde_json::to_value(State {
                    starting_after: Some(s),
                })
                .map(Cursor)
            })
            .transpose()
            .map_err(|e| BackfillError::BadCursor(e.to_string()))?;
        Ok(Page { events, next })
    }
}
