//! Kustomer backfill: the conversations a window touched, read through Kustomer's search, and
//! the webhooks they imply.
//!
//! **Listing.** `POST /v1/customers/search?page=N&pageSize=M` with
//! `queryContext: "conversation"`, sorted by `conversation_updated_at` ascending, following
//! `links.next` (a path) until it is `null`
//! (<https://developer.kustomer.com/docs/concepts/pagination>). The query is
//! `conversation_updated_at >= from AND conversation_created_at <= to`: every event of a
//! conversation happens between its creation and its last update, so these are exactly the
//! conversations that can have an event inside `[from, to]`. (Bounding `updated_at` by `to`
//! instead would miss a conversation created or written to inside the window and updated again
//! after it.)
//!
//! **The 100-page cap.** Kustomer's search serves at most 100 pages of one query
//! (<https://developer.kustomer.com/docs/guides/search-recipes>, "exporting beyond the 100-page
//! limit"). At the cap — or whenever the API stops offering `links.next` while `meta` says more
//! pages exist — the search starts again at page 1 with `gte` moved to the last `updatedAt`
//! seen; conversations already read at exactly that instant are skipped. The cursor records the
//! window start, the page and its `links.next`, and those skipped ids.
//!
//! **Children.** For each conversation, `GET /v1/conversations/{id}/messages?page&pageSize`
//! (following `links.next`) lists its messages.
//!
//! **What is reproduced** (events inside the window only):
//! * `kustomer.conversation.create` for each conversation created in the window;
//! * `kustomer.message.create` for each message created in the window;
//! * `kustomer.conversation.update` for the conversation's *latest* state, when its
//!   `updatedAt` is in the window and later than its creation: the API returns current objects,
//!   not the intermediate updates (nor their `changes`, which backfilled bodies carry empty).
//!
//! Customer, user, team and tag events are not reproduced. Each body is Kustomer's own
//! envelope around the object exactly as the API returned it (a backfilled
//! `conversation.create` therefore carries the conversation's current attributes, channels
//! included), without the webhook's own `id` and `org`, which the API does not return; its
//! event is what [`KustomerConnector::parse`] derives from it, so the dedupe key is the
//! webhook's.

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};
use intake_core::config::ApiConfig;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{KustomerConnector, EVENT_HEADER};
use crate::backfill::{
    ApiClient, ApiStats, Backfill, BackfillError, Cursor, Page, Recovered, Window,
};
use crate::{Connector, Incoming};

/// Kustomer serves at most this many pages of one search.
pub const SEARCH_PAGE_CAP: u32 = 100;
/// Conversations per search page (Kustomer allows up to 500; 100 keeps each page's message
/// fetches, and the work redone after a crash, small).
pub const SEARCH_PAGE_SIZE: u32 = 100;
/// Messages per page of a conversation's messages (the usual maximum of Kustomer's lists).
pub const MESSAGE_PAGE_SIZE: u32 = 100;

/// Reads a Kustomer org's conversations and messages for a window.
#[derive(Debug)]
pub struct KustomerBackfill {
    client: ApiClient,
    base_url: String,
    token: String,
    page_size: u32,
    page_cap: u32,
    message_page_size: u32,
}

/// Where the next search page starts. Serialized into the opaque [`Cursor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SearchCursor {
    /// The current search's lower bound on `updatedAt` (milliseconds since the epoch).
    gte: i64,
    /// The page to read next, counted from 1 within the current search.
    page: u32,
    /// The path `links.next` gave for that page, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    /// Conversations already read whose `updatedAt` equals `gte` (read before a re-window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skip: Vec<String>,
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default)]
    meta: Option<Meta>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default, rename = "totalPages")]
    total_pages: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

impl KustomerBackfill {
    /// A client for the org at `api.base_url` (e.g. `https://maelys.api.kustomerapp.com`),
    /// authenticated with `api.token` as a bearer token, sending through `client`.
    pub fn new(client: ApiClient, api: &ApiConfig) -> Self {
        KustomerBackfill {
            client,
            base_url: api.base_url.trim_end_matches('/').to_string(),
            token: api.token.clone(),
            page_size: SEARCH_PAGE_SIZE,
            page_cap: SEARCH_PAGE_CAP,
            message_page_size: MESSAGE_PAGE_SIZE,
        }
    }

    /// Conversations per search page (1 to 500).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, 500);
        self
    }

    /// The last page of one search before it is re-windowed (Kustomer: 100).
    pub fn with_page_cap(mut self, n: u32) -> Self {
        self.page_cap = n.max(1);
        self
    }

    /// Messages per page of a conversation's messages (1 to 100).
    pub fn with_message_page_size(mut self, n: u32) -> Self {
        self.message_page_size = n.clamp(1, 100);
        self
    }

    /// The HTTP client, for its statistics.
    pub fn api_client(&self) -> &ApiClient {
        &self.client
    }

    /// `base_url` + a path the API returned; only paths are followed, so the token is never
    /// sent to another host.
    fn url_of(&self, path: &str) -> Option<String> {
        path.starts_with('/')
            .then(|| format!("{}{}", self.base_url, path))
    }

    async fn search(&self, window: &Window, cur: &SearchCursor) -> Result<ListPage, BackfillError> {
        let path = cur.next.clone().unwrap_or_else(|| {
            format!(
                "/v1/customers/search?page={}&pageSize={}",
                cur.page, self.page_size
            )
        });
        let url = self
            .url_of(&path)
            .ok_or_else(|| BackfillError::BadCursor(path.clone()))?;
        let body = json!({
            "queryContext": "conversation",
            "and": [
                { "conversation_updated_at": { "gte": Timestamp(cur.gte).to_rfc3339() } },
                { "conversation_created_at": { "lte": window.to.to_rfc3339() } }
            ],
            "sort": [ { "conversation_updated_at": "asc" } ]
        });
        let what = format!("POST {path}");
        let response = self
            .client
            .send(&what, |http| {
                http.post(&url)
                    .bearer_auth(&self.token)
                    .header("accept", "application/json")
                    .json(&body)
            })
            .await?;
        response.json(&what)
    }

    /// Every message of a conversation, across its pages.
    async fn messages(&self, conversation_id: &str) -> Result<Vec<Value>, BackfillError> {
        let mut out = Vec::new();
        let mut page = 1u32;
        let mut path = format!(
            "/v1/conversations/{conversation_id}/messages?page=1&pageSize={}",
            self.message_page_size
        );
        loop {
            let url = self.url_of(&path).ok_or_else(|| BackfillError::Decode {
                what: format!("GET /v1/conversations/{conversation_id}/messages"),
                why: format!("links.next `{path}` is not a path"),
            })?;
            let what = format!("GET {path}");
            let response = self
                .client
                .send(&what, |http| {
                    http.get(&url)
                        .bearer_auth(&self.token)
                        .header("accept", "application/json")
                })
                .await?;
            let list: ListPage = response.json(&what)?;
            let got = list.data.len();
            out.extend(list.data);
            let next = list.links.and_then(|l| l.next);
            match next {
                Some(n) if got > 0 && page < 10_000 => {
                    page += 1;
                    path = n;
                }
                _ => return Ok(out),
            }
        }
    }

    /// The events one conversation (as the search returned it) implies inside `window`.
    async fn events_of(
        &self,
        window: &Window,
        conversation: &Value,
        out: &mut Vec<Recovered>,
    ) -> Result<(), BackfillError> {
        let Some(id) = conversation.get("id").and_then(Value::as_str) else {
            return Err(decode("search", "a conversation without an `id`"));
        };
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(decode(
                "search",
                format!("conversation id `{id}` is not an id"),
            ));
        }
        let created = attr_time(conversation, "createdAt");
        let updated = attr_time(conversation, "updatedAt");
        if let Some(created) = created.filter(|t| window.contains(*t)) {
            out.push(recovered(
                "kustomer.conversation.create",
                conversation,
                created,
                None,
            )?);
        }
        // Messages: the conversation's messages endpoint, filtered to the window. A
        // conversation that says it has no messages is not asked.
        let count = conversation
            .pointer("/attributes/messageCount")
            .and_then(Value::as_u64);
        if count != Some(0) {
            let mut messages = self.messages(id).await?;
            messages.retain(|m| attr_time(m, "createdAt").is_some_and(|t| window.contains(t)));
            messages.sort_by_key(|m| attr_time(m, "createdAt"));
            for mut m in messages {
                // The webhook names the message's conversation; make sure the body does too.
                if m.pointer("/relationships/conversation/data/id").is_none() {
                    if let Some(obj) = m.as_object_mut() {
                        let rel = obj.entry("relationships").or_insert_with(|| json!({}));
                        if let Some(rel) = rel.as_object_mut() {
                            rel.insert(
                                "conversation".into(),
                                json!({ "data": { "type": "conversation", "id": id } }),
                            );
                        }
                    }
                }
                let at = attr_time(&m, "createdAt").unwrap_or(window.from);
                out.push(recovered("kustomer.message.create", &m, at, None)?);
            }
        }
        if let (Some(created), Some(updated)) = (created, updated) {
            if updated > created && window.contains(updated) {
                let changes = json!({ "attributes": {}, "relationships": {} });
                out.push(recovered(
                    "kustomer.conversation.update",
                    conversation,
                    updated,
                    Some(changes),
                )?);
            }
        }
        Ok(())
    }
}

fn decode(what: &str, why: impl Into<String>) -> BackfillError {
    BackfillError::Decode {
        what: what.to_string(),
        why: why.into(),
    }
}

/// `attributes.<name>` of a JSON:API object, as an instant.
fn attr_time(object: &Value, name: &str) -> Option<Timestamp> {
    object
        .get("attributes")?
        .get(name)?
        .as_str()
        .and_then(|s| Timestamp::parse_rfc3339(s).ok())
}

/// Kustomer's webhook envelope around `object`, and the event the connector derives from it.
fn recovered(
    name: &str,
    object: &Value,
    at: Timestamp,
    changes: Option<Value>,
) -> Result<Recovered, BackfillError> {
    let mut envelope = json!({
        "name": name,
        "data": object,
        "createdAt": at.to_rfc3339(),
        "persist": true,
        "changes": changes,
    });
    if let (Some(env), Some(id)) = (envelope.as_object_mut(), object.get("id")) {
        env.insert("dataId".into(), id.clone());
    }
    let body = serde_json::to_vec(&envelope).map_err(|e| decode(name, e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        EVENT_HEADER,
        HeaderValue::from_str(name).map_err(|e| decode(name, e.to_string()))?,
    );
    let event = KustomerConnector
        .parse(&Incoming {
            headers: &headers,
            body: &body,
            now: at,
        })
        .map_err(|e| decode(name, e.to_string()))?;
    Ok(Recovered {
        event,
        body,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (EVENT_HEADER.into(), name.into()),
        ],
    })
}

#[async_trait]
impl Backfill for KustomerBackfill {
    fn stats(&self) -> ApiStats {
        self.client.stats()
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let cur = match cursor {
            None => SearchCursor {
                gte: window.from.as_millis(),
                page: 1,
                next: None,
                skip: Vec::new(),
            },
            Some(c) => serde_json::from_value(c.0.clone())
                .map_err(|e| BackfillError::BadCursor(e.to_string()))?,
        };
        let list = self.search(window, &cur).await?;
        let got = list.data.len();
        let mut events = Vec::new();
        let mut last_updated: Option<Timestamp> = None;
        let mut at_last: Vec<String> = Vec::new();
        for conversation in &list.data {
            let id = conversation
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let updated = attr_time(conversation, "updatedAt");
            // Sorted by `updatedAt` ascending: remember the last instant and who has it.
            match (last_updated, updated) {
                (_, None) => {}
                (Some(l), Some(u)) if u == l => at_last.push(id.to_string()),
                (Some(l), Some(u)) if u < l => {}
                (_, Some(u)) => {
                    last_updated = Some(u);
                    at_last = vec![id.to_string()];
                }
            }
            if updated == Some(Timestamp(cur.gte)) && cur.skip.iter().any(|s| s == id) {
                continue;
            }
            self.events_of(window, conversation, &mut events).await?;
        }

        let next_link = list.links.and_then(|l| l.next);
        let total_pages = list.meta.and_then(|m| m.total_pages);
        let more = got > 0
            && (next_link.is_some() || total_pages.is_some_and(|t| t > u64::from(cur.page)));
        let next = if !more {
            None
        } else if cur.page >= self.page_cap || next_link.is_none() {
            // The search will not serve further pages: search again from the last instant
            // seen, skipping what was read at exactly that instant.
            let Some(last) = last_updated else {
                return Err(decode(
                    "search",
                    "a page of conversations without `updatedAt`",
                ));
            };
            if last.as_millis() <= cur.gte {
                return Err(decode(
                    "search",
                    format!(
                        "more than {} pages of conversations share updatedAt {last}; \
                         the window cannot be narrowed further",
                        cur.page
                    ),
                ));
            }
            Some(SearchCursor {
                gte: last.as_millis(),
                page: 1,
                next: None,
                skip: at_last,
            })
        } else {
            Some(SearchCursor {
                gte: cur.gte,
                page: cur.page + 1,
                next: next_link,
                skip: cur.skip.clone(),
            })
        };
        let next = next
            .map(|c| serde_json::to_value(c).map(Cursor))
            .transpose()
            .map_err(|e| BackfillError::BadCursor(e.to_string()))?;
        Ok(Page { events, next })
    }
}
