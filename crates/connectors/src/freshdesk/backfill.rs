//! Freshdesk backfill: `GET /api/v2/tickets?updated_since=…&order_by=updated_at&order_type=asc
//! &per_page=100&page=N`, following pages while the response's `Link` header has
//! `rel="next"`, with Basic authentication `{api key}:X`.
//!
//! The list is capped at 300 pages. At the cap the window is shrunk: the listing starts again
//! at page 1 with `updated_since` set to the last ticket's `updated_at`, skipping the tickets at
//! exactly that second that were already read (the cursor remembers their ids).
//!
//! What it reproduces: the creation of every ticket created in the window
//! (`ticket:{id}:created`) and the latest state of every ticket updated in the window
//! (`ticket:{id}:updated:{updated_at}`). Intermediate updates are gone from the API, which
//! returns current tickets, not past events. Because a ticket created in the window may have
//! been updated since, the listing runs from the window's start to the present, not only to
//! its end. Each event's body is the `freshdesk_webhook` envelope intake documents, with
//! `triggered_event` `{ticket_action:created}` or `{ticket_action:updated}`.
//!
//! Rate limits are per account and per minute (`X-RateLimit-Total`, `X-RateLimit-Remaining`,
//! `Retry-After` on 429); [`ApiClient`] paces and waits them out.

use async_trait::async_trait;
use intake_core::clock::SharedClock;
use intake_core::config::ApiConfig;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::FreshdeskConnector;
use crate::backfill::{
    ApiClient, ApiResponse, ApiStats, Backfill, BackfillError, Cursor, Page, Recovered, Window,
};
use crate::unsigned::{canonical_secs, parse_time};
use crate::{Connector, Incoming};

/// Freshdesk's largest page.
pub const MAX_PER_PAGE: u32 = 100;
/// The last page Freshdesk serves for one listing.
pub const PAGE_CAP: u32 = 300;

/// The Freshdesk backfill client.
pub struct FreshdeskBackfill {
    client: ApiClient,
    base_url: String,
    api_key: String,
    per_page: u32,
    page_cap: u32,
    connector: FreshdeskConnector,
}

impl std::fmt::Debug for FreshdeskBackfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshdeskBackfill")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Where the listing stands, stored between pages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// `updated_since` of the current listing.
    since: String,
    /// The next page to read.
    page: u32,
    /// Tickets at exactly `since` that an earlier listing already returned.
    #[serde(default)]
    skip: Vec<u64>,
    /// The latest `updated_at` read in this listing, and the ids at that second.
    #[serde(default)]
    last: Option<String>,
    #[serde(default)]
    last_ids: Vec<u64>,
}

/// A ticket as the list endpoint returns it (the fields backfill uses).
#[derive(Debug, Deserialize)]
struct ApiTicket {
    id: u64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<serde_json::Value>,
    #[serde(default)]
    priority: Option<serde_json::Value>,
    #[serde(default)]
    source: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    created_at: String,
    updated_at: String,
}

impl FreshdeskBackfill {
    /// A client for the API at `api.base_url` (`https://<domain>.freshdesk.com`) with the API
    /// key in `api.token`, pacing to `api.rate_limit_per_minute`.
    pub fn new(api: &ApiConfig, clock: SharedClock) -> Self {
        FreshdeskBackfill {
            client: ApiClient::for_api(clock, api),
            base_url: api.base_url.trim_end_matches('/').to_string(),
            api_key: api.token.clone(),
            per_page: MAX_PER_PAGE,
            page_cap: PAGE_CAP,
            connector: FreshdeskConnector::default(),
        }
    }

    /// Reads `per_page` tickets a page and at most `page_cap` pages per listing (tests use a
    /// small cap to exercise re-windowing).
    pub fn with_limits(mut self, per_page: u32, page_cap: u32) -> Self {
        self.per_page = per_page.clamp(1, MAX_PER_PAGE);
        self.page_cap = page_cap.max(1);
        self
    }

    /// The HTTP client (for its statistics).
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    async fn list(&self, state: &State) -> Result<ApiResponse, BackfillError> {
        let url = format!("{}/api/v2/tickets", self.base_url);
        let query = [
            ("updated_since", state.since.clone()),
            ("order_by", "updated_at".into()),
            ("order_type", "asc".into()),
            ("per_page", self.per_page.to_string()),
            ("page", state.page.to_string()),
        ];
        self.client
            .send("GET /api/v2/tickets", |http| {
                http.get(&url)
                    .query(&query)
                    .basic_auth(&self.api_key, Some("X"))
            })
            .await
    }

    fn recovered(&self, body: serde_json::Value) -> Result<Recovered, BackfillError> {
        let body = serde_json::to_vec(&body).map_err(|e| BackfillError::Decode {
            what: "a recovered Freshdesk event".into(),
            why: e.to_string(),
        })?;
        let headers = http::HeaderMap::new();
        let event = self
            .connector
            .parse(&Incoming {
                headers: &headers,
                body: &body,
                now: Timestamp(0),
            })
            .map_err(|e| BackfillError::Decode {
                what: "a recovered Freshdesk event".into(),
                why: e.to_string(),
            })?;
        Ok(Recovered {
            event,
            body,
            headers: vec![("content-type".into(), "application/json".into())],
        })
    }
}

/// The `freshdesk_webhook` envelope of a ticket, as the documented rule would have sent it.
fn envelope(t: &ApiTicket, triggered_event: &str) -> serde_json::Value {
    json!({
        "freshdesk_webhook": {
            "triggered_event": triggered_event,
            "ticket_id": t.id,
            "ticket_subject": t.subject,
            "ticket_status": t.status,
            "ticket_priority": t.priority,
            "ticket_source": t.source,
            "ticket_type": t.type_,
            "ticket_created_at": t.created_at,
            "ticket_updated_at": t.updated_at,
        }
    })
}

fn has_next(r: &ApiResponse) -> bool {
    r.header("link").is_some_and(|link| {
        link.split(',').any(|part| {
            part.split(';')
                .skip(1)
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
        })
    })
}

fn bad_time(what: &str, s: &str) -> BackfillError {
    BackfillError::Decode {
        what: "GET /api/v2/tickets".into(),
        why: format!("`{what}` is not a time: `{s}`"),
    }
}

#[async_trait]
impl Backfill for FreshdeskBackfill {
    fn stats(&self) -> ApiStats {
        self.client.stats()
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let mut state = match cursor {
            Some(c) => serde_json::from_value::<State>(c.0.clone())
                .map_err(|e| BackfillError::BadCursor(e.to_string()))?,
            None => State {
                since: canonical_secs(window.from),
                page: 1,
                ..State::default()
            },
        };
        let response = self.list(&state).await?;
        let tickets: Vec<ApiTicket> = response.json("GET /api/v2/tickets")?;
        let since_at = parse_time(&state.since).ok_or_else(|| bad_time("since", &state.since))?;

        let mut events = Vec::new();
        for t in &tickets {
            let created =
                parse_time(&t.created_at).ok_or_else(|| bad_time("created_at", &t.created_at))?;
            let updated =
                parse_time(&t.updated_at).ok_or_else(|| bad_time("updated_at", &t.updated_at))?;
            // Tickets at the shrunk window's first second that the previous listing returned.
            if updated == since_at && state.skip.contains(&t.id) {
                continue;
            }
            if window.contains(created) {
                events.push(self.recovered(envelope(t, "{ticket_action:created}"))?);
            }
            if updated != created && window.contains(updated) {
                events.push(self.recovered(envelope(t, "{ticket_action:updated}"))?);
            }
            match state.last.as_deref().and_then(parse_time) {
                Some(last) if last == updated => state.last_ids.push(t.id),
                _ => {
                    state.last = Some(canonical_secs(updated));
                    state.last_ids = vec![t.id];
                }
            }
        }

        if !has_next(&response) || tickets.is_empty() {
            return Ok(Page { events, next: None });
        }
        if state.page >= self.page_cap {
            // The cap: list again from the last ticket's second.
            let Some(last) = state.last.clone() else {
                return Ok(Page { events, next: None });
            };
            if last == state.since {
                return Err(BackfillError::Decode {
                    what: "GET /api/v2/tickets".into(),
                    why: format!(
                        "more than {} tickets were updated at {last}: the listing cannot move \
                         past the page cap",
                        u64::from(self.page_cap) * u64::from(self.per_page)
                    ),
                });
            }
            let mut skip = std::mem::take(&mut state.last_ids);
            skip.sort_unstable();
            state = State {
                since: last.clone(),
                page: 1,
                skip,
                last: Some(last),
                last_ids: Vec::new(),
            };
            // Ids at the new `since` are still "at the last second" of the new listing.
            state.last_ids = state.skip.clone();
        } else {
            state.page += 1;
        }
        let next =
            serde_json::to_value(&state).map_err(|e| BackfillError::BadCursor(e.to_string()))?;
        Ok(Page {
            events,
            next: Some(Cursor(next)),
        })
    }
}
