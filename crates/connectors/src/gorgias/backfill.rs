//! Gorgias backfill: `GET /api/tickets?order_by=updated_datetime:desc&limit=100&cursor=…`
//! (cursor pagination, `meta.next_cursor`), and for every ticket that existed during the window
//! `GET /api/tickets/{id}/messages?limit=100&cursor=…`. Basic authentication: the account's
//! e-mail (`api.username`) and an API key (`api.token`).
//!
//! The ticket list has no date filter, so it is read newest-updated first and stops at the first
//! ticket last updated before the window: every ticket after it is older still. Reading from
//! the present down (rather than from the window up) is required anyway, because a ticket
//! created in the window may have been updated since.
//!
//! What it reproduces: every ticket created in the window (`ticket-created`), the latest state
//! of every ticket updated in the window (`ticket-updated`), and every message created in the
//! window (`ticket-message-created`). Intermediate `ticket-updated` events are gone: the API
//! returns current tickets. Bodies are the documented template's: `{"event", "ticket",
//! "message"}` with the objects as the API returns them.
//!
//! Gorgias limits API keys with a leaky bucket (40 requests per 20 s) and answers `429` with
//! `Retry-After`; [`ApiClient`] paces to `api.rate_limit_per_minute` and waits out 429s. One
//! [`Backfill::page`] reads one page of tickets and the messages of those tickets.

use async_trait::async_trait;
use intake_core::clock::SharedClock;
use intake_core::config::ApiConfig;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{GorgiasConnector, TICKET_CREATED, TICKET_MESSAGE_CREATED, TICKET_UPDATED};
use crate::backfill::{
    exact_values, ApiClient, ApiStats, Backfill, BackfillError, Cursor, Page, Recovered, Window,
};
use crate::unsigned::parse_time;
use crate::{Connector, Incoming};

/// Gorgias' largest page.
pub const MAX_LIMIT: u32 = 100;

/// The Gorgias backfill client.
pub struct GorgiasBackfill {
    client: ApiClient,
    base_url: String,
    username: String,
    api_key: String,
    tickets_per_page: u32,
    messages_per_page: u32,
    connector: GorgiasConnector,
}

impl std::fmt::Debug for GorgiasBackfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GorgiasBackfill")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// Gorgias' cursor of the next ticket page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct List {
    #[serde(deserialize_with = "exact_values")]
    data: Vec<Value>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    next_cursor: Option<String>,
}

fn decode(what: &str, why: impl Into<String>) -> BackfillError {
    BackfillError::Decode {
        what: what.to_string(),
        why: why.into(),
    }
}

fn time_of(v: &Value, field: &str, what: &str) -> Result<Timestamp, BackfillError> {
    v.get(field)
        .and_then(Value::as_str)
        .and_then(parse_time)
        .ok_or_else(|| decode(what, format!("an object without a readable `{field}`")))
}

fn id_of(v: &Value, what: &str) -> Result<String, BackfillError> {
    match v.get("id") {
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(decode(what, "an object without an `id`")),
    }
}

impl GorgiasBackfill {
    /// A client for the API at `api.base_url` (`https://<domain>.gorgias.com`), authenticating
    /// as `api.username` (the account e-mail) with the API key `api.token`.
    pub fn new(api: &ApiConfig, clock: SharedClock) -> Result<Self, BackfillError> {
        let username = api
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                BackfillError::NotConfigured(
                    "Gorgias authenticates API calls with the account's e-mail and an API key: \
                     set `api.username` to the e-mail"
                        .into(),
                )
            })?;
        Ok(GorgiasBackfill {
            client: ApiClient::for_api(clock, api),
            base_url: api.base_url.trim_end_matches('/').to_string(),
            username,
            api_key: api.token.clone(),
            tickets_per_page: MAX_LIMIT,
            messages_per_page: MAX_LIMIT,
            connector: GorgiasConnector::default(),
        })
    }

    /// Reads this many tickets and messages per request (tests use small pages).
    pub fn with_limits(mut self, tickets: u32, messages: u32) -> Self {
        self.tickets_per_page = tickets.clamp(1, MAX_LIMIT);
        self.messages_per_page = messages.clamp(1, MAX_LIMIT);
        self
    }

    /// The HTTP client (for its statistics).
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    async fn get_list(
        &self,
        what: &str,
        path: &str,
        mut query: Vec<(&'static str, String)>,
        cursor: Option<&str>,
    ) -> Result<List, BackfillError> {
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        let url = format!("{}{path}", self.base_url);
        let r = self
            .client
            .send(what, |http| {
                http.get(&url)
                    .query(&query)
                    .basic_auth(&self.username, Some(&self.api_key))
            })
            .await?;
        r.json(what)
    }

    async fn messages(&self, ticket_id: &str) -> Result<Vec<Value>, BackfillError> {
        let what = "GET /api/tickets/{id}/messages";
        let path = format!("/api/tickets/{ticket_id}/messages");
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let list = self
                .get_list(
                    what,
                    &path,
                    vec![("limit", self.messages_per_page.to_string())],
                    cursor.as_deref(),
                )
                .await?;
            let empty = list.data.is_empty();
            all.extend(list.data);
            match list.meta.next_cursor {
                Some(next) if !empty && cursor.as_deref() != Some(next.as_str()) => {
                    cursor = Some(next)
                }
                _ => return Ok(all),
            }
        }
    }

    fn recovered(&self, body: Value) -> Result<Recovered, BackfillError> {
        let what = "a recovered Gorgias event";
        let body = serde_json::to_vec(&body).map_err(|e| decode(what, e.to_string()))?;
        let headers = http::HeaderMap::new();
        let event = self
            .connector
            .parse(&Incoming {
                headers: &headers,
                body: &body,
                now: Timestamp(0),
            })
            .map_err(|e| decode(what, e.to_string()))?;
        Ok(Recovered {
            event,
            body,
            headers: vec![("content-type".into(), "application/json".into())],
        })
    }
}

#[async_trait]
impl Backfill for GorgiasBackfill {
    fn stats(&self) -> ApiStats {
        self.client.stats()
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let state = match cursor {
            Some(c) => serde_json::from_value::<State>(c.0.clone())
                .map_err(|e| BackfillError::BadCursor(e.to_string()))?,
            None => State::default(),
        };
        let what = "GET /api/tickets";
        let list = self
            .get_list(
                what,
                "/api/tickets",
                vec![
                    ("order_by", "updated_datetime:desc".into()),
                    ("limit", self.tickets_per_page.to_string()),
                ],
                state.cursor.as_deref(),
            )
            .await?;

        let mut events = Vec::new();
        let mut done = false;
        for ticket in &list.data {
            let created = time_of(ticket, "created_datetime", what)?;
            let updated = time_of(ticket, "updated_datetime", what)?;
            if updated < window.from {
                // Newest-updated first: every later ticket is older still.
                done = true;
                break;
            }
            if window.contains(created) {
                events.push(self.recovered(json!({"event": TICKET_CREATED, "ticket": ticket}))?);
            }
            if updated != created && window.contains(updated) {
                events.push(self.recovered(json!({"event": TICKET_UPDATED, "ticket": ticket}))?);
            }
            // Messages of a ticket are written between its creation and its last update.
            if created <= window.to {
                let id = id_of(ticket, what)?;
                for message in self.messages(&id).await? {
                    let at = time_of(
                        &message,
                        "created_datetime",
                        "GET /api/tickets/{id}/messages",
                    )?;
                    if window.contains(at) {
                        events.push(self.recovered(json!({
                            "event": TICKET_MESSAGE_CREATED,
                            "ticket": ticket,
                            "message": message,
                        }))?);
                    }
                }
            }
        }
        let next = match list.meta.next_cursor {
            Some(c)
                if !done
                    && !list.data.is_empty()
                    && state.cursor.as_deref() != Some(c.as_str()) =>
            {
                let state = State { cursor: Some(c) };
                Some(Cursor(
                    serde_json::to_value(&state)
                        .map_err(|e| BackfillError::BadCursor(e.to_string()))?,
                ))
            }
            _ => None,
        };
        Ok(Page { events, next })
    }
}
