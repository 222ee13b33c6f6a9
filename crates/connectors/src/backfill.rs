//! Backfill: reading a system of record's REST API for the objects created or updated in a time
//! window, and turning them into the events its webhooks would have produced.
//!
//! Every connector's backfill client implements [`Backfill`]: one call reads one page of the
//! SOR's own pagination and returns the events it implies plus an opaque [`Cursor`] for the next
//! page. A recovery job stores the cursor after each page, so a crash resumes where it stopped.
//!
//! Each recovered event carries both its [`NormalizedEvent`] and a body in the SOR's own webhook
//! envelope: the handler receives a backfilled event exactly as it would have received the
//! webhook, and the dedupe key is the one the webhook path derives from the same object, so
//! backfill never duplicates what was received.
//!
//! All requests go through [`ApiClient`], which paces them to the source's per-minute budget,
//! honours the SOR's rate-limit headers, and waits out `429`s on the injected clock.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use intake_core::clock::SharedClock;
use intake_core::config::ApiConfig;
use intake_core::event::NormalizedEvent;
use intake_core::rate::{parse_retry_after, TokenBucket};
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

/// The time window a backfill covers: objects created or updated at or after `from` and at or
/// before `to`. Callers add their own overlap margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Start, inclusive.
    pub from: Timestamp,
    /// End, inclusive.
    pub to: Timestamp,
}

impl Window {
    /// Whether `t` falls inside the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t <= self.to
    }
}

/// Where the next page starts, in the SOR's own terms (a page number, a cursor, a shrunk
/// window). Opaque to callers, who store it to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor(pub serde_json::Value);

/// One event recovered from the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// What the connector's `parse` returns for `body` (same dedupe key as the webhook's).
    pub event: NormalizedEvent,
    /// The event in the SOR's webhook envelope, as the handler would have received it.
    pub body: Vec<u8>,
    /// Headers the webhook would have carried and intake keeps (e.g. the event-name header).
    pub headers: Vec<(String, String)>,
}

/// One page of a backfill.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events the page's objects imply, inside the window.
    pub events: Vec<Recovered>,
    /// The next page, or `None` when the window is exhausted.
    pub next: Option<Cursor>,
}

/// Why a backfill page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The source has no `api` configuration, or it is unusable.
    #[error("backfill is not configured for this source: {0}")]
    NotConfigured(String),
    /// The API refused the credentials.
    #[error("the API refused the credentials (HTTP {0}); check the source's `api.token`")]
    Unauthorized(u16),
    /// The API answered with an unexpected status.
    #[error("the API answered HTTP {status} to {what}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// Which request.
        what: String,
        /// The start of the response body.
        body: String,
    },
    /// Still rate limited after the allowed number of waits.
    #[error("still rate limited by the API after {0} waits")]
    RateLimited(u32),
    /// The request could not be sent or its response read.
    #[error("request to the API failed: {0}")]
    Transport(String),
    /// The response was not what the SOR's documentation describes.
    #[error("unexpected API response to {what}: {why}")]
    Decode {
        /// Which request.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// The cursor was not produced by this client.
    #[error("invalid backfill cursor: {0}")]
    BadCursor(String),
}

/// A system of record's backfill client.
#[async_trait]
pub trait Backfill: Send + Sync {
    /// Reads the page at `cursor` (the first page when `None`) of the objects created or updated
    /// in `window`.
    async fn page(&self, window: &Window, cursor: Option<&Cursor>) -> Result<Page, BackfillError>;
}

/// How many times one request waits out a `429` before giving up.
const MAX_RATE_LIMIT_WAITS: u32 = 20;
/// How many times one request is retried after a transport error or a `5xx`.
const MAX_SERVER_RETRIES: u32 = 4;
/// The wait after a `429` that says nothing about when to come back.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The budget when the source configures none.
pub const DEFAULT_PER_MINUTE: u32 = 60;

/// What the client has done so far (for progress reports and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// Requests sent, including retried ones.
    pub requests: u64,
    /// `429` answers received.
    pub throttled: u64,
    /// Retries after transport errors or `5xx`.
    pub retried: u64,
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its body.
    pub body: bytes::Bytes,
}

impl ApiResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON of type `T`; `what` names the request in the error.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, BackfillError> {
        serde_json::from_slice(&self.body).map_err(|e| BackfillError::Decode {
            what: what.to_string(),
            why: e.to_string(),
        })
    }
}

/// The HTTP client every backfill client sends through: paces requests to a per-minute budget
/// on the injected clock, waits out `429`s (`Retry-After`, or the `x-ratelimit-reset` /
/// `ratelimit-reset` epoch second), pauses when the SOR says no requests remain, and retries
/// transport errors and `5xx` a few times with back-off.
pub struct ApiClient {
    http: reqwest::Client,
    clock: SharedClock,
    bucket: Mutex<TokenBucket>,
    /// The SOR told us to wait until then before the next request.
    hold_until: Mutex<Option<Timestamp>>,
    stats: Mutex<ApiStats>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client allowing itself `per_minute` requests per minute (bursts of up to a tenth of
    /// that, at least one).
    pub fn new(clock: SharedClock, per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let rate = f64::from(per_minute) / 60.0;
        let burst = (f64::from(per_minute) / 10.0).max(1.0);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION"), " (backfill)"))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let now = clock.now();
        ApiClient {
            http,
            clock,
            bucket: Mutex::new(TokenBucket::new(rate, burst, now)),
            hold_until: Mutex::new(None),
            stats: Mutex::new(ApiStats::default()),
        }
    }

    /// A client with the budget of a source's `api` configuration.
    pub fn for_api(clock: SharedClock, api: &ApiConfig) -> Self {
        ApiClient::new(
            clock,
            api.rate_limit_per_minute.unwrap_or(DEFAULT_PER_MINUTE),
        )
    }

    /// The underlying client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The clock requests are paced on.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ApiStats {
        *lock(&self.stats)
    }

    /// Sends the request `build` makes (called again for each retry), and returns the first
    /// answer that is neither a `429` nor a `5xx`. `what` names the request in errors.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<ApiResponse, BackfillError> {
        let mut waits = 0;
        let mut retries = 0;
        loop {
            self.pace().await;
            lock(&self.stats).requests += 1;
            let sent = build(&self.http).send().await;
            let response = match sent {
                Ok(r) => read(r).await,
                Err(e) => Err(e),
            };
            let response = match response {
                Ok(r) => r,
                Err(e) if retries < MAX_SERVER_RETRIES => {
                    tracing::debug!(what, error = %e, "backfill request failed; retrying");
                    retries += 1;
                    lock(&self.stats).retried += 1;
                    self.wait(backoff(retries)).await;
                    continue;
                }
                Err(e) => return Err(BackfillError::Transport(error_chain(&e))),
            };
            self.note_remaining(&response);
            match response.status {
                429 => {
                    lock(&self.stats).throttled += 1;
                    if waits >= MAX_RATE_LIMIT_WAITS {
                        return Err(BackfillError::RateLimited(waits));
                    }
                    waits += 1;
                    let wait = self.rate_limit_wait(&response);
                    tracing::debug!(what, wait_s = wait.as_secs(), "rate limited by the API");
                    self.hold(wait);
                }
                500..=599 if retries < MAX_SERVER_RETRIES => {
                    retries += 1;
                    lock(&self.stats).retried += 1;
                    self.wait(backoff(retries)).await;
                }
                401 | 403 => return Err(BackfillError::Unauthorized(response.status)),
                200..=299 => return Ok(response),
                status => {
                    let body = String::from_utf8_lossy(&response.body);
                    return Err(BackfillError::Status {
                        status,
                        what: what.to_string(),
                        body: body.chars().take(300).collect(),
                    });
                }
            }
        }
    }

    async fn pace(&self) {
        let hold = *lock(&self.hold_until);
        if let Some(until) = hold {
            if until > self.clock.now() {
                self.clock.sleep_until(until).await;
            }
        }
        let at = lock(&self.bucket).reserve(self.clock.now());
        if at > self.clock.now() {
            self.clock.sleep_until(at).await;
        }
    }

    async fn wait(&self, d: Duration) {
        let until = self.clock.now().plus(d);
        self.clock.sleep_until(until).await;
    }

    fn hold(&self, d: Duration) {
        let until = self.clock.now().plus(d);
        let mut hold = lock(&self.hold_until);
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
    }

    /// When the SOR says no requests remain in its window, hold until its reset.
    fn note_remaining(&self, r: &ApiResponse) {
        let remaining = ["x-ratelimit-remaining", "ratelimit-remaining"]
            .iter()
            .find_map(|h| r.header(h))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if remaining.is_some_and(|n| n < 1.0) {
            if let Some(wait) = self.reset_wait(r) {
                self.hold(wait);
            }
        }
    }

    fn rate_limit_wait(&self, r: &ApiResponse) -> Duration {
        r.header("retry-after")
            .and_then(|v| parse_retry_after(v, self.clock.now()))
            .or_else(|| self.reset_wait(r))
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT)
            .max(Duration::from_millis(100))
    }

    /// `x-ratelimit-reset` is an epoch second (Kustomer, Intercom) or, when small, seconds from
    /// now (`ratelimit-reset`, Front's `x-ratelimit-reset` in seconds); both forms are read.
    fn reset_wait(&self, r: &ApiResponse) -> Option<Duration> {
        let v = ["x-ratelimit-reset", "ratelimit-reset"]
            .iter()
            .find_map(|h| r.header(h))?
            .trim()
            .parse::<f64>()
            .ok()?;
        if !v.is_finite() || v < 0.0 {
            return None;
        }
        let now = self.clock.now();
        // Anything after 2001-09-09 is an epoch second, not a delay.
        if v > 1_000_000_000.0 {
            let at = Timestamp((v * 1000.0) as i64);
            Some(at.since(now))
        } else {
            Some(Duration::from_secs_f64(v.min(86_400.0)))
        }
    }
}

async fn read(r: reqwest::Response) -> Result<ApiResponse, reqwest::Error> {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await?;
    Ok(ApiResponse {
        status,
        headers,
        body,
    })
}

fn backoff(retry: u32) -> Duration {
    Duration::from_secs(1u64 << retry.min(6))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
