//! Delivery workers: one dispatcher per destination leases due deliveries from the store and
//! POSTs them to the handler with Standard Webhooks headers, within the destination's
//! concurrency and rate limits.
//!
//! A dispatcher sleeps until whichever comes first: an ingest waking it (new work is attempted
//! at once, with no polling delay), the next scheduled retry or lease expiry, or a safety-net
//! poll. Every attempt is recorded with its outcome; the retry policy from `intake-core`
//! decides what follows it.
//!
//! The dispatchers take the store, the clock, their destination's handles
//! (`DestinationRuntime`) and the fire-drill faults of this node, nothing else. Two drills
//! act here, and only here: a `queue-stall` of a source leaves its deliveries out of the
//! claims (pending, untouched, until the drill ends), and a `handler-down` of the destination
//! fails each attempt without calling the handler, recorded and retried like any failure.
//!
//! A destination that fails every attempt is *probed*, not hammered: after
//! [`FAILING_AFTER`] failed attempts in a row, its dispatcher keeps at most [`PROBES`]
//! attempts in flight until one succeeds ([`in_flight_limit`]), and starts them a backoff
//! apart ([`probe_spacing`]) rather than back to back. Each failed attempt costs as
//! much as a delivery (a claim, an HTTP exchange, an attempt record) and is followed by its
//! retries, so at full concurrency a handler outage took ingest's share of the cores and of the
//! store's writer; the probes keep the outage visible (attempts keep failing and are counted,
//! so `delivery_errors` still sees them) while the work waits, due, for the handler to return.
//! The first success restores the full concurrency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use intake_core::config::Rate;
use intake_core::delivery::{AttemptOutcome, NextStep, RetryPolicy};
use intake_core::drill::Scenario;
use intake_core::rate::{parse_retry_after, TokenBucket};
use intake_core::{DeliveryId, SharedClock, Timestamp};
use intake_store::{ClaimedDelivery, FinishedAttempt, Store};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::state::{DestinationRuntime, DrillFaults};

/// The longest a dispatcher sleeps without looking at the store. It normally wakes earlier
/// (new work, a due retry); this bounds the damage of a missed wake-up.
const SAFETY_POLL: Duration = Duration::from_secs(5);

/// Added to the destination timeout to make the lease: long enough that a slow but live
/// attempt keeps its lease, short enough that a crashed worker's work comes back soon.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How long to wait before claiming again after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// The most deliveries one claim takes.
const MAX_CLAIM: usize = 64;

/// Failed attempts in a row after which a destination is treated as down and only probed.
/// High enough that a handler failing part of its requests is never mistaken for a down one
/// (at a 50 % failure rate, sixteen failures in a row happen once in 65,536 runs), low enough
/// that a down handler is recognised within its first claim.
const FAILING_AFTER: u32 = 16;

/// Attempts in flight to a destination treated as down. Two rather than one, so that a probe
/// hanging until its timeout does not stop the other from finding the handler back.
const PROBES: usize = 2;

/// The most attempts a dispatcher may have in flight to its destination: its configured
/// `concurrency` while the destination answers, [`PROBES`] once the last [`FAILING_AFTER`]
/// attempts in a row failed.
fn in_flight_limit(concurrency: usize, failures_in_a_row: u32) -> usize {
    if failures_in_a_row >= FAILING_AFTER {
        PROBES.min(concurrency).max(1)
    } else {
        concurrency.max(1)
    }
}

/// The longest pause between two rounds of probes of a destination that is down: a handler
/// that comes back is found within this, however long it was down.
const MAX_PROBE_SPACING: Duration = Duration::from_secs(30);

/// How long a dispatcher waits after starting probes before it claims again, for a
/// destination whose last `failures_in_a_row` attempts failed: nothing while it answers;
/// once it is down, the retry policy's own backoff, one step per failed round of
/// [`PROBES`] probes (5 s, 10 s, 20 s, … with the default policy), at most
/// [`MAX_PROBE_SPACING`]. Back to back, two probes made ~330 attempts a second, each a claim
/// and a finish through the store's writer: the retries of an outage competed with ingest.
fn probe_spacing(policy: &RetryPolicy, failures_in_a_row: u32) -> Duration {
    if failures_in_a_row < FAILING_AFTER {
        return Duration::ZERO;
    }
    let rounds = 1 + (failures_in_a_row - FAILING_AFTER) / PROBES as u32;
    policy.base_delay(rounds).min(MAX_PROBE_SPACING)
}

/// The most of an error response body kept in the attempt record.
const KEPT_ERROR_BODY: usize = 512;

/// The most of any response body read before the connection is dropped. Only the status
/// decides an attempt and only [`KEPT_ERROR_BODY`] bytes are kept, so reading more serves
/// nothing; reading this much lets a small body end the exchange cleanly (and the connection be
/// reused), while an endless body costs at most this much per attempt in flight, so memory is
/// bounded by `concurrency` × this. A constant, not a setting: no value an operator could pick
/// would change what is recorded.
const MAX_RESPONSE_READ: usize = 64 * 1024;

/// Starts one dispatcher per destination. On shutdown, each waits for its attempts in flight
/// up to `shutdown_timeout`.
pub(crate) fn start_all<'a>(
    destinations: impl Iterator<Item = &'a Arc<DestinationRuntime>>,
    store: Arc<dyn Store>,
    clock: SharedClock,
    faults: Arc<DrillFaults>,
    shutdown_timeout: Duration,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    destinations
        .map(|dest| {
            dest.running.store(true, Ordering::Relaxed);
            let d = Dispatcher {
                store: store.clone(),
                clock: clock.clone(),
                faults: faults.clone(),
                shutdown_timeout,
                dest: dest.clone(),
                http: http.clone(),
                shutdown: shutdown.clone(),
                leases: Arc::new(Mutex::new(HashMap::new())),
                failures_in_a_row: Arc::new(AtomicU32::new(0)),
                limiter: dest
                    .config
                    .rate_limit
                    .map(|Rate(r)| Mutex::new(TokenBucket::new(r, r.max(1.0), clock.now()))),
            };
            tokio::spawn(d.run())
        })
        .collect()
}

struct Dispatcher {
    store: Arc<dyn Store>,
    clock: SharedClock,
    faults: Arc<DrillFaults>,
    shutdown_timeout: Duration,
    dest: Arc<DestinationRuntime>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// Leases of attempts in flight, given back if shutdown interrupts them.
    leases: Arc<Mutex<HashMap<DeliveryId, String>>>,
    /// Attempts that failed since the last success (see [`in_flight_limit`]).
    failures_in_a_row: Arc<AtomicU32>,
    limiter: Option<Mutex<TokenBucket>>,
}

impl Dispatcher {
    async fn run(self) {
        let concurrency = self.dest.config.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut attempts = JoinSet::new();
        let lease = self.dest.config.timeout.0 + LEASE_MARGIN;
        let clock = self.clock.clone();
        let policy = self.dest.config.retry_policy();
        // When a destination that is down may be probed again (see `probe_spacing`).
        let mut next_probe: Option<Timestamp> = None;
        loop {
            while attempts.try_join_next().is_some() {}
            let failures = self.failures_in_a_row.load(Ordering::Relaxed);
            let limit = in_flight_limit(concurrency, failures);
            if attempts.len() >= limit {
                // A destination that is down: wait for a probe to end before the next claim.
                tokio::select! {
                    _ = attempts.join_next() => {}
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            let spacing = probe_spacing(&policy, failures);
            if let Some(at) = next_probe.filter(|at| !spacing.is_zero() && clock.now() < *at) {
                // Down: the next probes wait their turn, unless a probe in flight succeeds
                // (the loop then finds the destination back at full concurrency).
                tokio::select! {
                    _ = clock.sleep_until(at) => {}
                    Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = self.shutdown.cancelled() => break,
            };
            let mut permits = vec![first];
            // With a rate limit, claim no more than about a second's worth: claimed deliveries
            // hold a lease while they wait for their turn, and must not outwait it.
            let max_claim = self
                .dest
                .config
                .rate_limit
                .map_or(MAX_CLAIM, |Rate(r)| (r.ceil() as usize).clamp(1, MAX_CLAIM))
                .min(limit.saturating_sub(attempts.len()).max(1));
            while permits.len() < max_claim {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let now = clock.now();
            // A queue-stall drill's source: its deliveries are not claimed until it ends.
            let (held, held_until) = self.faults.held(now);
            let claimed = match self
                .store
                .claim_due_holding(&self.dest.config.id, now, lease, permits.len(), &held)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    if self.dest.logs.claim_failed.hit(now) {
                        tracing::warn!(destination = %self.dest.config.id, error = %e, "cannot claim deliveries; retrying");
                    }
                    drop(permits);
                    // New work means an ingest just committed: the store is back, so a
                    // wake-up ends the back-off early.
                    tokio::select! {
                        _ = clock.sleep_until(now.plus(STORE_BACKOFF)) => {}
                        _ = self.dest.wake.notified() => {}
                        _ = self.shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            let claimed = self.give_back_newly_held(claimed, &held).await;
            if claimed.is_empty() {
                drop(permits);
                let next = self
                    .store
                    .next_due_at_holding(&self.dest.config.id, &held)
                    .await
                    .ok()
                    .flatten();
                // A hold that ends by its expiry releases its deliveries then.
                let ceiling =
                    held_until.map_or(now.plus(SAFETY_POLL), |t| t.min(now.plus(SAFETY_POLL)));
                let wake_at = next.map_or(ceiling, |t| t.min(ceiling));
                tokio::select! {
                    _ = self.dest.wake.notified() => {}
                    _ = self.faults.changed.notified() => {}
                    _ = clock.sleep_until(wake_at) => {}
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            next_probe = (!spacing.is_zero()).then(|| now.plus(spacing));
            for (delivery, permit) in claimed.into_iter().zip(permits) {
                if let Some(limiter) = &self.limiter {
                    let at = match limiter.lock() {
                        Ok(mut b) => b.reserve(clock.now()),
                        Err(p) => p.into_inner().reserve(clock.now()),
                    };
                    if at > clock.now() {
                        tokio::select! {
                            _ = clock.sleep_until(at) => {}
                            _ = self.shutdown.cancelled() => {
                                // Not attempted: give the lease back right away.
                                let _ = self.store
                                    .release(vec![(delivery.id.clone(), delivery.lease_id.clone())], clock.now())
                                    .await;
                                continue;
                            }
                        }
                    }
                }
                if let Ok(mut l) = self.leases.lock() {
                    l.insert(delivery.id.clone(), delivery.lease_id.clone());
                }
                let attempt = Attempt {
                    store: self.store.clone(),
                    clock: self.clock.clone(),
                    faults: self.faults.clone(),
                    dest: self.dest.clone(),
                    http: self.http.clone(),
                    leases: self.leases.clone(),
                    failures_in_a_row: self.failures_in_a_row.clone(),
                };
                attempts.spawn(async move {
                    attempt.run(delivery).await;
                    drop(permit);
                });
            }
        }
        self.drain(attempts).await;
    }

    /// Gives back, unattempted, what this claim took from a source that a queue-stall drill
    /// began to hold while the claim was on its way (the holds were read before it). A drill
    /// answers only once its fault is in force on the node that started it, so a delivery
    /// ingested after that answer is either left alone by the claim or given back here.
    async fn give_back_newly_held(
        &self,
        claimed: Vec<ClaimedDelivery>,
        held_before: &[String],
    ) -> Vec<ClaimedDelivery> {
        let (held_now, _) = self.faults.held(self.clock.now());
        let (back, keep) = split_newly_held(claimed, held_before, &held_now);
        if !back.is_empty() {
            let leases = back.into_iter().map(|d| (d.id, d.lease_id)).collect();
            if let Err(e) = self.store.release(leases, self.clock.now()).await {
                // Not attempted either way: their leases expire and the next claim, which
                // reads the hold first, leaves them alone.
                tracing::warn!(destination = %self.dest.config.id, error = %e, "cannot give back deliveries of a source a drill now holds; they wait for their leases to expire");
            }
        }
        keep
    }

    /// Waits for attempts in flight up to the shutdown timeout, then gives back the leases of
    /// those that did not finish so they are due again at once after a restart.
    async fn drain(&self, mut attempts: JoinSet<()>) {
        let timeout = self.shutdown_timeout;
        let waited = tokio::time::timeout(timeout, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if waited.is_err() {
            attempts.abort_all();
            while attempts.join_next().await.is_some() {}
        }
        let leases: Vec<(DeliveryId, String)> = match self.leases.lock() {
            Ok(mut l) => l.drain().collect(),
            Err(p) => p.into_inner().drain().collect(),
        };
        if !leases.is_empty() {
            tracing::info!(destination = %self.dest.config.id, count = leases.len(), "releasing unfinished deliveries");
            if let Err(e) = self.store.release(leases, self.clock.now()).await {
                tracing::warn!(error = %e, "could not release leases; they will expire on their own");
            }
        }
        self.dest.running.store(false, Ordering::Relaxed);
    }
}

/// Splits a claim into what a hold read after it covers but the one read before it did not
/// (given back) and the rest (attempted).
fn split_newly_held(
    claimed: Vec<ClaimedDelivery>,
    held_before: &[String],
    held_now: &[String],
) -> (Vec<ClaimedDelivery>, Vec<ClaimedDelivery>) {
    if held_now.iter().all(|s| held_before.contains(s)) {
        return (Vec::new(), claimed);
    }
    claimed
        .into_iter()
        .partition(|d| held_now.contains(&d.source) && !held_before.contains(&d.source))
}

struct Attempt {
    store: Arc<dyn Store>,
    clock: SharedClock,
    faults: Arc<DrillFaults>,
    dest: Arc<DestinationRuntime>,
    http: reqwest::Client,
    leases: Arc<Mutex<HashMap<DeliveryId, String>>>,
    failures_in_a_row: Arc<AtomicU32>,
}

impl Attempt {
    async fn run(self, d: ClaimedDelivery) {
        let clock = &self.clock;
        let started_at = clock.now();
        let wall = Instant::now();
        let outcome = self.send(&d, started_at).await;
        let finished_at = clock.now();
        let policy = self.dest.config.retry_policy();
        let next = policy.next_step(d.attempt, &outcome, finished_at, rand::random::<f64>());
        let (status, error) = match &outcome {
            AttemptOutcome::Success { status } => {
                self.failures_in_a_row.store(0, Ordering::Relaxed);
                (Some(*status), None)
            }
            AttemptOutcome::Failure { status, error, .. } => {
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
                (*status, Some(error.clone()))
            }
        };
        let dest = self.dest.config.id.as_str();
        self.dest
            .attempt_duration
            .record(wall.elapsed().as_secs_f64());
        // A handler that is down fails every attempt of its queue: the first failure is
        // written, then a summary per interval (the metrics and the attempt records have each).
        let logs = &self.dest.logs;
        match &next {
            NextStep::Delivered => {}
            NextStep::RetryAt(at) => {
                if logs.retrying.hit(finished_at) {
                    tracing::info!(delivery = %d.id, event = %d.event_id, destination = dest,
                    attempt = d.attempt, error = error.as_deref().unwrap_or(""), retry_at = %at, "delivery attempt failed; will retry")
                }
            }
            NextStep::Dead => {
                if logs.dead.hit(finished_at) {
                    tracing::warn!(delivery = %d.id, event = %d.event_id, destination = dest,
                    attempt = d.attempt, error = error.as_deref().unwrap_or(""), "delivery is dead: no attempts left")
                }
            }
        }
        let finished = FinishedAttempt {
            delivery_id: d.id.clone(),
            lease_id: d.lease_id.clone(),
            attempt: d.attempt,
            next,
            started_at,
            finished_at,
            status,
            error,
            tenant: d.tenant.clone(),
            source: d.source.clone(),
            channel: d.channel.clone(),
            destination: d.destination.clone(),
            received_at: d.received_at,
            awaits_completion: self.dest.config.uses_receipts(),
        };
        match self.store.finish_attempt(finished).await {
            Ok(()) => {
                if let Some(m) = self.dest.metrics.get(&d.source) {
                    match next {
                        NextStep::Delivered => m.delivered.increment(1),
                        NextStep::RetryAt(_) => m.failed.increment(1),
                        NextStep::Dead => m.dead.increment(1),
                    }
                }
                if next == NextStep::Delivered {
                    self.dest
                        .latency
                        .record(finished_at.since(d.received_at).as_secs_f64());
                }
                if let Ok(mut l) = self.leases.lock() {
                    l.remove(&d.id);
                }
            }
            Err(e) => {
                // The lease stays recorded: shutdown will try to release it, and otherwise it
                // expires and the delivery is attempted again (at-least-once, never zero).
                if logs.not_recorded.hit(clock.now()) {
                    tracing::error!(delivery = %d.id, error = %e, "could not record the attempt; the delivery will be retried when its lease expires");
                }
            }
        }
        // A retry that is due sooner than anything the dispatcher is sleeping towards must wake it.
        if let NextStep::RetryAt(_) = next {
            self.dest.wake.notify_one();
        }
    }

    async fn send(&self, d: &ClaimedDelivery, now: Timestamp) -> AttemptOutcome {
        let cfg = &self.dest.config;
        // A handler-down drill: the attempt fails as if the handler were down, without
        // calling it, and is recorded and retried like any failed attempt.
        if let Some(f) = self.faults.find(Scenario::HandlerDown, &cfg.id, now) {
            return AttemptOutcome::Failure {
                status: None,
                retry_after: None,
                error: format!(
                    "fire drill {}: handler-down on destination `{}` (no request was sent)",
                    f.drill, cfg.id
                ),
            };
        }
        let ts = now.as_secs();
        let signature = self.dest.key.sign(d.event_id.as_str(), ts, &d.body);
        // Connectors refuse times RFC 3339 cannot write; one stored before they did falls back
        // to the arrival time, so the header is always valid RFC 3339.
        let occurred = d
            .occurred_at
            .filter(|t| t.is_rfc3339())
            .unwrap_or(d.received_at)
            .to_rfc3339();
        let mut req = self
            .http
            .post(&cfg.url)
            .timeout(cfg.timeout.0)
            .header("content-type", "application/json")
            .header("webhook-id", d.event_id.as_str())
            // The delivery's own id: what a handler on receipts confirms
            // (`POST /api/v1/deliveries/{id}/complete`); sent to every destination.
            .header("intake-delivery-id", d.id.as_str())
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("intake-attempt", d.attempt.to_string())
            .header("intake-origin", d.origin.as_str())
            .header("intake-occurred-at", occurred);
        for (name, value) in [
            ("intake-tenant", &d.tenant),
            ("intake-source", &d.source),
            ("intake-event-type", &d.event_type),
            ("intake-channel", &d.channel),
        ] {
            // Values come from configuration and parsed bodies; one that cannot be a header
            // value (a control character in an event type) is replaced by a placeholder rather
            // than failing the delivery for ever.
            let v = HeaderValue::from_str(value)
                .unwrap_or_else(|_| HeaderValue::from_static("invalid-header-value"));
            req = req.header(HeaderName::from_static(name), v);
        }
        match req.body(d.body.clone()).send().await {
            Ok(resp) if resp.status().is_success() => {
                let status = resp.status().as_u16();
                // The status decides: whatever the body does after it (endless, stalled, cut)
                // the attempt delivered. A short body of announced length is read so that the
                // connection can be reused; any other is dropped unread, closing it.
                if resp
                    .content_length()
                    .is_some_and(|n| n <= MAX_RESPONSE_READ as u64)
                {
                    read_capped(resp, 0, MAX_RESPONSE_READ).await;
                }
                AttemptOutcome::Success { status }
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now));
                let body = read_capped(resp, KEPT_ERROR_BODY, MAX_RESPONSE_READ).await;
                let excerpt = String::from_utf8_lossy(&body).to_string();
                let error = if excerpt.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {excerpt}")
                };
                AttemptOutcome::Failure {
                    status: Some(status),
                    retry_after,
                    error,
                }
            }
            Err(e) => {
                // reqwest quotes the URL in its errors, and a destination URL may carry a
                // credential (`?token=…`): the error is recorded and shown by the API without it.
                let e = e.without_url();
                let error = if e.is_timeout() {
                    format!(
                        "timed out after {}",
                        humantime::format_duration(cfg.timeout.0)
                    )
                } else if e.is_connect() {
                    format!("cannot connect: {}", error_chain(&e))
                } else {
                    error_chain(&e)
                };
                AttemptOutcome::Failure {
                    status: None,
                    retry_after: None,
                    error,
                }
            }
        }
    }
}

/// Reads a response body as it streams, keeping its first `keep` bytes, and stops after
/// `max` bytes, at its end, or at an error (a timeout, a reset): the body is a courtesy of the
/// handler, never a condition of the attempt. Dropping the response before its end closes the
/// connection instead of returning it to the pool, so an endless body is cut off after `max`.
async fn read_capped(mut resp: reqwest::Response, keep: usize, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    kept
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::event::Origin;
    use intake_core::EventId;

    fn claimed(source: &str) -> ClaimedDelivery {
        let at = Timestamp::from_millis(1_000);
        ClaimedDelivery {
            id: DeliveryId::generate(at),
            lease_id: "lease".into(),
            attempt: 1,
            destination: "handler".into(),
            event_id: EventId::generate(at),
            tenant: "t".into(),
            source: source.into(),
            event_type: "message.create".into(),
            channel: "email".into(),
            origin: Origin::Webhook,
            occurred_at: None,
            received_at: at,
            body: Vec::new(),
        }
    }

    #[test]
    fn only_a_hold_that_began_during_the_claim_gives_deliveries_back() {
        // (sources claimed, held before the claim, held after it, sources given back)
        type Sources = &'static [&'static str];
        let table: [(Sources, Sources, Sources, Sources); 6] = [
            (&["a", "b"], &[], &[], &[]),
            (&["a", "b"], &[], &["a"], &["a"]),
            (&["a", "a", "b"], &[], &["a", "b"], &["a", "a", "b"]),
            // Held before: the claim already left it alone, whatever it took is not its.
            (&["b"], &["a"], &["a"], &[]),
            (&["b", "c"], &["a"], &["a", "c"], &["c"]),
            // A hold that ended during the claim gives nothing back.
            (&["a"], &["a"], &[], &[]),
        ];
        for (sources, before, now, want_back) in table {
            let claim = sources.iter().map(|s| claimed(s)).collect();
            let before: Vec<String> = before.iter().map(|s| s.to_string()).collect();
            let now: Vec<String> = now.iter().map(|s| s.to_string()).collect();
            let (back, keep) = split_newly_held(claim, &before, &now);
            let back: Vec<&str> = back.iter().map(|d| d.source.as_str()).collect();
            assert_eq!(
                back, want_back,
                "claimed {sources:?}, held {before:?} → {now:?}"
            );
            assert_eq!(back.len() + keep.len(), sources.len());
        }
    }

    #[test]
    fn probes_of_a_destination_that_is_down_are_spaced_by_the_backoff() {
        let secs = Duration::from_secs;
        let default = RetryPolicy::default();
        let schedule = RetryPolicy {
            schedule: vec![Duration::from_millis(100), secs(1)],
            ..RetryPolicy::default()
        };
        let first_down_round = FAILING_AFTER;
        let rounds_later = |n: u32| FAILING_AFTER + n * PROBES as u32;
        // (policy, failures in a row, spacing)
        let cases = [
            // Answering, or failing less than a down destination: no pause.
            (&default, 0, Duration::ZERO),
            (&default, FAILING_AFTER - 1, Duration::ZERO),
            // Down: the policy's backoff, one step per failed round of probes.
            (&default, first_down_round, secs(5)),
            (&default, first_down_round + 1, secs(5)),
            (&default, rounds_later(1), secs(10)),
            (&default, rounds_later(2), secs(20)),
            // Capped, so that a handler back after a long outage is found soon.
            (&default, rounds_later(3), MAX_PROBE_SPACING),
            (&default, rounds_later(1_000), MAX_PROBE_SPACING),
            (&default, u32::MAX, MAX_PROBE_SPACING),
            // An explicit schedule is followed, its last step repeating.
            (&schedule, first_down_round, Duration::from_millis(100)),
            (&schedule, rounds_later(1), secs(1)),
            (&schedule, rounds_later(50), secs(1)),
        ];
        for (policy, failures, spacing) in cases {
            assert_eq!(
                probe_spacing(policy, failures),
                spacing,
                "{failures} failures in a row"
            );
        }
    }

    #[test]
    fn a_destination_is_probed_only_after_enough_failures_in_a_row() {
        // (concurrency, failures in a row, limit)
        let cases = [
            (128, 0, 128),
            (128, 1, 128),
            (128, FAILING_AFTER - 1, 128),
            (128, FAILING_AFTER, PROBES),
            (128, 10_000, PROBES),
            // A destination configured below the probe count keeps its own limit.
            (1, 0, 1),
            (1, FAILING_AFTER, 1),
            // A concurrency of zero still lets one attempt through, as the dispatcher does.
            (0, 0, 1),
            (0, FAILING_AFTER, 1),
        ];
        for (concurrency, failures, limit) in cases {
            assert_eq!(
                in_flight_limit(concurrency, failures),
                limit,
                "concurrency {concurrency}, {failures} failures in a row"
            );
        }
    }
}
