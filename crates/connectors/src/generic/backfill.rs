//! The backfill protocol of generic sources: one endpoint that any system can implement to let
//! intake recover the webhooks it lost (full guide in `docs/connectors/generic.md`).
//!
//! ```text
//! GET {api.base_url}?since=<RFC 3339>&until=<RFC 3339>&limit=<n>[&cursor=<opaque>]
//! Authorization: Bearer <api.token>
//! Accept: application/json
//!
//! 200 {"events": [<webhook body>, …], "next_cursor": "<opaque>" | null}
//! ```
//!
//! * `since` and `until` are inclusive bounds on when each event happened (when its webhook
//!   was, or would have been, sent). They are sent with every request, cursor or not.
//! * `limit` is the most events intake wants in one answer; the endpoint may return fewer (its
//!   own page cap) and says where to continue in `next_cursor`, or `null`/absent at the end.
//! * Each element of `events` is the JSON body the webhook carries, exactly. intake keeps each
//!   element's bytes as the endpoint wrote them and parses them with the source's own `fields`,
//!   so the dedupe key (`event:{id}`) is the webhook's. Without an event id the key is the
//!   SHA-256 of the body, which only matches if the endpoint writes the same bytes the webhook
//!   carried.
//! * `401`/`403` for a wrong token; `429` with `Retry-After` (seconds or an HTTP date) when the
//!   caller must slow down; `5xx` is retried a few times.
//!
//! **What it reproduces:** whatever the endpoint returns; intake drops events whose
//! `fields.occurred_at` is known and outside the window.

use async_trait::async_trait;
use intake_core::config::ApiConfig;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backfill::{
    ApiClient, ApiStats, Backfill, BackfillError, Cursor, Page, Recovered, Window,
};
use crate::{Connector, Incoming};

use super::GenericConnector;

/// How many events intake asks for per request by default.
pub const DEFAULT_LIMIT: u32 = 100;

/// The backfill client of a generic source.
pub struct GenericBackfill {
    client: ApiClient,
    url: String,
    token: String,
    connector: GenericConnector,
    limit: u32,
}

impl std::fmt::Debug for GenericBackfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericBackfill")
            .field("url", &self.url)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl GenericBackfill {
    /// A client for the endpoint `api.base_url` (the full URL of the backfill endpoint),
    /// parsing events with `connector` (the source's own field pointers).
    pub fn new(client: ApiClient, api: &ApiConfig, connector: GenericConnector) -> Self {
        GenericBackfill {
            client,
            url: api.base_url.clone(),
            token: api.token.clone(),
            connector,
            limit: DEFAULT_LIMIT,
        }
    }

    /// Asks for at most `n` events per request.
    pub fn with_limit(mut self, n: u32) -> Self {
        self.limit = n.max(1);
        self
    }

    /// The HTTP client (for its statistics).
    pub fn client(&self) -> &ApiClient {
        &self.client
    }
}

#[async_trait]
impl Backfill for GenericBackfill {
    fn stats(&self) -> ApiStats {
        self.client.stats()
    }

    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError> {
        let cursor = match cursor {
            None => None,
            Some(Cursor(v)) => Some(
                v.get("cursor")
                    .and_then(|c| c.as_str())
                    .ok_or_else(|| {
                        BackfillError::BadCursor("expected {\"cursor\": \"<opaque>\"}".to_string())
                    })?
                    .to_string(),
            ),
        };
        let mut query = vec![
            ("since", window.from.to_rfc3339()),
            ("until", window.to.to_rfc3339()),
            ("limit", self.limit.to_string()),
        ];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let what = "GET backfill endpoint";
        let response = self
            .client
            .send(what, |http| {
                http.get(&self.url)
                    .query(&query)
                    .bearer_auth(&self.token)
                    .header("accept", "application/json")
            })
            .await?;
        let answer: Answer<'_> =
            serde_json::from_slice(&response.body).map_err(|e| BackfillError::Decode {
                what: what.to_string(),
                why: format!("expected {{\"events\": [...], \"next_cursor\": …}}: {e}"),
            })?;

        let headers = http::HeaderMap::new();
        let mut events = Vec::with_capacity(answer.events.len());
        for raw in answer.events {
            let body = raw.get().as_bytes().to_vec();
            let event = self
                .connector
                .parse(&Incoming {
                    headers: &headers,
                    body: &body,
                    now: self.client.clock().now(),
                })
                .map_err(|e| BackfillError::Decode {
                    what: what.to_string(),
                    why: format!("an event does not parse as this source's webhooks: {e}"),
                })?;
            if event.occurred_at.is_some_and(|t| !window.contains(t)) {
                continue;
            }
            events.push(Recovered {
                event,
                body,
                headers: vec![("content-type".into(), "application/json".into())],
            });
        }
        let next = answer
            .next_cursor
            .filter(|c| !c.is_empty())
            .map(|c| Cursor(serde_json::json!({ "cursor": c })));
        Ok(Page { events, next })
    }
}
