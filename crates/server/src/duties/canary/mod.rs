//! The canary duty: for every source, every `canary.interval` (or the source's own), a
//! synthetic webhook signed as the source's system would sign it, POSTed to the front door
//! (`server.public_url` + `/ingest/{source}`) and followed through the real queue until the
//! handler answers 2xx — proof that the whole path works, at any hour and for any tenant size.
//!
//! * [`probe`]: one source's canaries, one after the other (IO: HTTP and store reads).
//! * [`decide`]: the pure decisions — where a canary stands given its event, its stage
//!   latencies, and `canary_failed` — table-tested.
//! * [`book`]: the canary book, the state document every node reads (the monitor for
//!   `canary_failed`, the API, `/metrics`).
//!
//! It is a singleton duty (see [`super`]): one node sends the canaries, and each one still
//! enters through `public_url`, so it crosses the load balancer to any node. A node that takes
//! the duty over keeps the last successes it finds in the book, and gives every source a full
//! deadline from the moment it starts watching (a restart is not an outage of the path; the
//! watchdog covers a dead process).
//!
//! intake recognises its own canaries at the door by the `intake-canary` header, an HMAC
//! under a key only intake knows ([`key`], kept in the store): they are stored with origin
//! `canary`, counted in `events.canary`, and kept out of the tenants' flows, the flow
//! detectors and `intake_events_total`.

pub mod book;
pub mod decide;
mod probe;

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::canary::{CanaryKey, KEY_STATE};
use intake_core::Timestamp;
use intake_store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Handles;
use book::{CanaryBook, SourceCanary};
use probe::Probe;

/// The canary duty's name.
pub const CANARY: &str = "canary";

/// `intake_canary_latency_seconds`: seconds each stage of a successful canary took, by
/// `tenant`, `source` and `stage` (`ack`, `queue`, `delivery`, `total`).
pub const LATENCY: &str = "intake_canary_latency_seconds";
/// `intake_canary_last_success_timestamp_seconds`: unix time of each source's last successful
/// canary, by `tenant` and `source` (0 before the first).
pub const LAST_SUCCESS: &str = "intake_canary_last_success_timestamp_seconds";

/// The book is written at most this often (on the clock): every change of every source's
/// canary would otherwise be a write.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before trying the store again.
const STORE_BACKOFF: Duration = Duration::from_secs(5);

/// The key that marks canaries, made once for the whole cluster and kept in the store.
pub(crate) async fn key(store: &dyn Store) -> Result<CanaryKey, StoreError> {
    let stored = store
        .init_state(KEY_STATE, CanaryKey::generate().to_hex())
        .await?;
    CanaryKey::from_hex(&stored)
        .ok_or_else(|| StoreError::Corrupt("the stored canary key is unreadable".into()))
}

/// The canary duty's body.
pub(crate) async fn run(h: Handles, stop: CancellationToken) {
    let previous = loop {
        match book::load(&*h.store).await {
            Ok(b) => break b,
            Err(e) => {
                tracing::warn!(error = %e, "the canary duty cannot read its book yet");
                tokio::select! {
                    _ = h.clock.sleep_until(h.clock.now().plus(STORE_BACKOFF)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    let now = h.clock.now();
    let mut book = starting_book(&h, previous, now);
    let http = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the canary duty cannot build its HTTP client; no canary is sent");
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<SourceCanary>(256);
    let probes_stop = stop.child_token();
    let mut probes = JoinSet::new();
    for s in &h.config.sources {
        let Some(record) = book.get(&s.id).cloned() else {
            continue;
        };
        let connector = match intake_connectors::for_source(s) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(source = %s.id, error = %e, "no canary for this source");
                continue;
            }
        };
        let probe = Probe {
            source: s.id.clone(),
            tenant: s.tenant.clone(),
            secret: s.secrets.first().cloned(),
            connector,
            timing: h.config.canary.timing(&s.id),
            url: format!("{}/ingest/{}", h.front_door, s.id),
            http: http.clone(),
            key: h.canary_key.clone(),
            clock: h.clock.clone(),
            store: h.store.clone(),
        };
        probes.spawn(probe.run(record, tx.clone(), probes_stop.clone()));
    }
    drop(tx);
    tracing::info!(
        sources = book.len(),
        front_door = %h.front_door,
        "sending canaries"
    );

    let mut dirty = true;
    let mut written_at: Option<Timestamp> = None;
    loop {
        let now = h.clock.now();
        if dirty && written_at.is_none_or(|w| now >= w.plus(WRITE_EVERY)) {
            match book::save(&*h.store, &book).await {
                Ok(()) => dirty = false,
                Err(e) => tracing::warn!(error = %e, "cannot store the canary book; retrying"),
            }
            written_at = Some(now);
        }
        let write_at = written_at.map_or(now, |w| w.plus(WRITE_EVERY));
        tokio::select! {
            r = rx.recv() => match r {
                Some(record) => {
                    book.insert(record.source.clone(), record);
                    dirty = true;
                }
                None => break,
            },
            _ = h.clock.sleep_until(write_at), if dirty => {}
            _ = stop.cancelled() => break,
        }
    }
    probes_stop.cancel();
    while probes.join_next().await.is_some() {}
    while let Ok(record) = rx.try_recv() {
        book.insert(record.source.clone(), record);
        dirty = true;
    }
    if dirty {
        if let Err(e) = book::save(&*h.store, &book).await {
            tracing::warn!(error = %e, "cannot store the canary book at the end of the duty");
        }
    }
}

/// The book a new holder of the duty starts from: every configured source with the timings
/// in force, watched from `now`, with what the previous holder recorded (last success, last
/// canary) kept.
fn starting_book(h: &Handles, mut previous: CanaryBook, now: Timestamp) -> CanaryBook {
    let mut book = BTreeMap::new();
    for s in &h.config.sources {
        let timing = h.config.canary.timing(&s.id);
        let before = previous.remove(&s.id);
        book.insert(
            s.id.clone(),
            SourceCanary {
                tenant: s.tenant.clone(),
                source: s.id.clone(),
                interval_seconds: timing.interval.as_secs(),
                deadline_seconds: timing.deadline.as_secs(),
                watching_since: now,
                last_success_at: before.as_ref().and_then(|b| b.last_success_at),
                last_success_latency: before.as_ref().and_then(|b| b.last_success_latency),
                previous: before.as_ref().and_then(|b| b.previous.clone()),
                last: before.and_then(|b| b.last),
            },
        );
    }
    book
}
