//! Front backfill: Front keeps an event log and serves it, so a backfill reads the very events
//! its webhooks carry instead of inferring them from objects.
//!
//! `GET {base_url}/events?q[after]=…&q[before]=…&limit=100` (instants in seconds with three
//! decimals, newest first), then the `_pagination.next` link until it is `null`, with
//! `Authorization: Bearer <API token>`. The company id that application webhooks carry in
//! `authorization.id` comes from `GET {base_url}/me`, read once.
//! <https://dev.frontapp.com/reference/list-events>, <https://dev.frontapp.com/reference/events>
//!
//! **What it reproduces:** every event Front logged in the window, of every type (`inbound`,
//! `outbound`, `comment`, `assign`, `archive`, `tag`, …), each as the application webhook
//! `{"type", "authorization": {"id"}, "payload": <event>}` with the event's bytes exactly as
//! the API returned them. The dedupe key is the event id, the same on both paths. A source
//! that receives rule webhooks (the bare event) gets backfilled events in the application
//! envelope; both parse to the same event. `with_types` limits the backfill to the types the
//! webhook subscribes to.
//!
//! Rate limits: Front allows 50 to 200 requests a minute per company and answers `429` with
//! `Retry-After`; every response carries `x-ratelimit-limit`, `x-ratelimit-remaining` and
//! `x-ratelimit-reset`. [`ApiClient`] paces to the configured budget and waits these out.

use std::sync::Mutex;

use async_trait::async_trait;
use intake_core::config::ApiConfig;
use intake_core::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backfill::{
    ApiClient, ApiStats, Backfill, BackfillError, Cursor, Page, Recovered, Window,
};

/// The largest page Front serves (`limit` is capped at 100).
pub const MAX_PAGE_SIZE: u32 = 100;

/// The backfill client of a Front source.
pub struct FrontBackfill {
    client: ApiClient,
    base_url: String,
    token: String,
    page_size: u32,
    types: Vec<String>,
    company: Mutex<Option<String>>,
}

impl std::fmt::Debug for FrontBackfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontBackfill")
            .field("base_url", &self.base_url)
            .field("page_size", &self.page_size)
            .field("types", &self.types)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct EventsPage<'a> {
    #[serde(borrow, default, rename = "_results")]
    results: Vec<&'a RawValue>,
    #[serde(default, rename = "_pagination")]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    id: String,
}

impl FrontBackfill {
    /// A client for the API of `api` (`base_url`, e.g. `https://api2.frontapp.com`, and an API
    /// token), sending through `client`.
    pub fn new(client: ApiClient, api: &ApiConfig) -> Self {
        FrontBackfill {
            client,
            base_url: api.base_url.trim_end_matches('/').to_string(),
            token: api.token.clone(),
            page_size: MAX_PAGE_SIZE,
            types: Vec::new(),
            company: Mutex::new(None),
        }
    }

    /// Only these event types (`q[types][]`); all types when empty.
    pub fn with_types(mut self, types: impl IntoIterator<Item = String>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// Asks for pages of `n` events (Front serves at most 100).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The HTTP client (for its statistics).
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    async fn company_id(&self) -> Result<String, BackfillError> {
        if let Some(id) = self
            .company
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(id);
        }
        let url = format!("{}/me", self.base_url);
        let response = self
            .client
            .send("GET /me", |http| http.get(&url).bearer_auth(&self.token))
            .await?;
        let me: Me = response.json("GET /me")?;
        *self
            .company
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(me.id.clone());
        Ok(me.id)
    }

    /// The query of the first page. Front's `after`/`before` bounds are widened by a
    /// millisecond so that whether Front reads them as inclusive or not, the window's own
    /// inclusive bounds are inside; events outside the window are then dropped here.
    fn first_query(&self, window: &Window) -> String {
        let mut q = format!(
            "q[after]={}&q[before]={}&limit={}",
            seconds(Timestamp(window.from.as_millis().saturating_sub(1))),
            seconds(Timestamp(window.to.as_millis().saturating_add(1))),
            self.page_size
        );
        for t in &self.types {
            q.push_str("&q[types][]=");
            q.push_str(&encode_component(t));
        }
        q
    }
}

/// Seconds with three decimals, as Front writes and reads instants.
fn seconds(t: Timestamp) -> String {
    let ms = t.as_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bad_cursor(why: &str) -> BackfillError {
    BackfillError::BadCursor(format!("{why} (expected {{\"next\": \"<query>\"}})"))
}

#[async_trait]
impl Backfill for FrontBackfill {
    fn stats(&self) -> ApiStats {
        self.client.stats()
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let company = self.company_id().await?;
        let query = match cursor {
            None => self.first_query(window),
            Some(Cursor(v)) => v
                .get("next")
                .and_then(|n| n.as_str())
                .ok_or_else(|| bad_cursor("no `next` query"))?
                .to_string(),
        };
        // Only the query of Front's `next` link is kept and sent to the configured base URL:
        // the API token never goes to a host other than the one configured.
        let url = format!("{}/events?{query}", self.base_url);
        let what = "GET /events";
        let response = self
            .client
            .send(what, |http| http.get(&url).bearer_auth(&self.token))
            .await?;
        let page: EventsPage<'_> =
            serde_json::from_slice(&response.body).map_err(|e| BackfillError::Decode {
                what: what.to_string(),
                why: e.to_string(),
            })?;

        let mut events = Vec::with_capacity(page.results.len());
        for raw in page.results {
            // The event alone parses as a rule webhook would; that gives its type and time.
            let bare =
                super::parse_body(raw.get().as_bytes()).map_err(|e| BackfillError::Decode {
                    what: what.to_string(),
                    why: format!("an event is not a Front event: {e}"),
                })?;
            if !bare.occurred_at.is_some_and(|t| window.contains(t)) {
                continue;
            }
            let body = format!(
                r#"{{"type":{},"authorization":{{"id":{}}},"payload":{}}}"#,
                serde_json::Value::from(bare.event_type.as_str()),
                serde_json::Value::from(company.as_str()),
                raw.get()
            )
            .into_bytes();
            let event = super::parse_body(&body).map_err(|e| BackfillError::Decode {
                what: what.to_string(),
                why: e.to_string(),
            })?;
            events.push(Recovered {
                event,
                body,
                headers: vec![("content-type".into(), "application/json".into())],
            });
        }

        let next = match page.pagination.and_then(|p| p.next) {
            None => None,
            Some(link) => {
                let query = link
                    .split_once('?')
                    .map(|(_, q)| q.to_string())
                    .filter(|q| !q.is_empty())
                    .ok_or_else(|| BackfillError::Decode {
                        what: what.to_string(),
                        why: format!("`_pagination.next` has no query: {link}"),
                    })?;
                Some(Cursor(serde_json::json!({ "next": query })))
            }
        };
        Ok(Page { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_seconds_with_millis() {
        assert_eq!(seconds(Timestamp(1_453_770_984_123)), "1453770984.123");
        assert_eq!(seconds(Timestamp(1_453_770_984_005)), "1453770984.005");
        assert_eq!(encode_component("a b/ü"), "a%20b%2F%C3%BC");
    }
}
