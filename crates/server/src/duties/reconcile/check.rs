//! One window's check: list what the system of record has through the source's backfill
//! client (paced to reconciliation's share of the API budget), keep the events that happened
//! inside the window, and ask the store which of their dedupe keys it has never seen.
//!
//! The listing reads the system of record's pages one after the other and compares each page
//! before reading the next, so only keys and the missing events are held, never the bodies of
//! a whole window.

use std::collections::HashSet;

use intake_connectors::backfill::{ApiStats, Backfill, Window};
use intake_store::Store;

use super::state::Missing;
use super::window::Span;

/// The most keys one dedupe lookup asks about.
const LOOKUP_CHUNK: usize = 500;
/// The most pages one window's listing reads: a client that keeps answering with a next page
/// is a bug, and must not hold the duty forever.
const MAX_PAGES: u32 = 10_000;

/// What a window's listing found.
#[derive(Debug, Default)]
pub struct Found {
    /// Events inside the window, each dedupe key once.
    pub listed: u64,
    /// Those intake has no event for, in the listing's order.
    pub missing: Vec<Missing>,
    /// Requests sent to the API for this window.
    pub requests: u64,
}

/// Why a window could not be checked. It is checked again at the next tick.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The system of record's API failed or refused.
    #[error("{0}")]
    Api(#[from] intake_connectors::backfill::BackfillError),
    /// The store could not be read.
    #[error("{0}")]
    Store(#[from] intake_store::StoreError),
    /// The listing never ended.
    #[error("the listing of the window was still offering pages after {MAX_PAGES}")]
    Endless,
}

/// Lists `window` with `client` and compares it with what `store` received from `source`.
pub async fn check(
    client: &dyn Backfill,
    store: &dyn Store,
    source: &str,
    window: Span,
) -> Result<Found, CheckError> {
    let before = client.stats();
    // The client's windows are inclusive at both ends; the start belongs to the previous
    // window, so events exactly at `from` are left out below.
    let listed = Window {
        from: window.from,
        to: window.to,
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut found = Found::default();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = client.page(&listed, cursor.as_ref()).await;
        found.requests = requests(before, client.stats());
        let page = page?;
        let inside: Vec<_> = page
            .events
            .into_iter()
            .filter(|r| r.event.occurred_at.is_some_and(|t| window.contains(t)))
            .filter(|r| seen.insert(r.event.dedupe_key.clone()))
            .map(|r| r.event)
            .collect();
        found.listed += inside.len() as u64;
        let mut known = HashSet::new();
        for chunk in inside.chunks(LOOKUP_CHUNK) {
            let keys = chunk.iter().map(|e| e.dedupe_key.clone()).collect();
            known.extend(store.known_dedupe_keys(source, keys).await?);
        }
        found.missing.extend(
            inside
                .iter()
                .filter(|e| !known.contains(&e.dedupe_key))
                .map(Missing::of),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
    Err(CheckError::Endless)
}

fn requests(before: ApiStats, after: ApiStats) -> u64 {
    after.requests.saturating_sub(before.requests)
}
