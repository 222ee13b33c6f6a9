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

    /// What the client has sent so far: requests, `429`s, retries (for a job's progress and
    /// its report of the SOR requests a recovery needs).
    fn stats(&self) -> ApiStats;
}

/// How many times one request waits out a `429` before giving up.
const MAX_RATE_LIMIT_WAITS: u32 = 20;
/// How many times one request is retried after a transport error or a `5xx`.
const MAX_SERVER_RETRIES: u32 = 4;
/// The wait after a `429` that says nothing about when to come back.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait a rate-limit header can impose on one request.
const MAX_HEADER_WAIT: Duration = Duration::from_secs(86_400);
/// The budget when the source configures none.
pub const DEFAULT_PER_MINUTE: u32 = 60;

/// What the client has done so far (for progress reports and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStats {
    /// Requests sent, including retried ones.
    pub requests: u64,
    /// `429` answers received.
    pub throttled: u64,
    /// Retries after transport errors or `5xx`.
    pub retried: u64,
}

impl ApiStats {
    /// The sum of two clients' statistics (a connector with two budgets, like Zendesk's).
    pub fn plus(self, other: ApiStats) -> ApiStats {
        ApiStats {
            requests: self.requests + other.requests,
            throttled: self.throttled + other.throttled,
            retried: self.retried + other.retried,
        }
    }
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

/// A JSON value from a system of record's API, read so that an integer beyond 64 bits (an id)
/// becomes a string of its exact digits instead of a rounded float. serde_json, building a
/// [`serde_json::Value`], would round `18446744073709551617` to `1.8446744073709552e19`; the
/// backfilled envelope would then carry another id than the webhook did, and the same object
/// would get two dedupe keys (see the connectors' input policy in [`crate::input`]). Integers
/// within 64 bits, fractions, and everything else are read as serde_json reads them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExactValue(pub(crate) serde_json::Value);

impl<'de> Deserialize<'de> for ExactValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        exact(&raw, 0)
            .map(ExactValue)
            .map_err(serde::de::Error::custom)
    }
}

/// `#[serde(deserialize_with = "exact_values")]` for a list of API objects read as
/// [`ExactValue`]s.
pub(crate) fn exact_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(Vec::<ExactValue>::deserialize(d)?
        .into_iter()
        .map(|v| v.0)
        .collect())
}

/// The first byte of a JSON object and of a JSON array.
const OBJECT_START: u8 = b'{';
const ARRAY_START: u8 = b'[';

/// The value of `raw`, `depth` levels down. Deeper than the input policy's limit it is left to
/// serde_json, whose own recursion limit then refuses it, so this never recurses without bound.
fn exact(
    raw: &serde_json::value::RawValue,
    depth: usize,
) -> Result<serde_json::Value, serde_json::Error> {
    use serde_json::value::RawValue;
    use serde_json::Value;
    let text = raw.get();
    let nested = depth < crate::input::MAX_DEPTH;
    match text.as_bytes().first() {
        Some(&OBJECT_START) if nested => {
            // A `BTreeMap`, like `serde_json::Map`: the last of duplicate keys wins.
            let members: std::collections::BTreeMap<String, &RawValue> =
                serde_json::from_str(text)?;
            let mut object = serde_json::Map::new();
            for (key, value) in members {
                object.insert(key, exact(value, depth + 1)?);
            }
            Ok(Value::Object(object))
        }
        Some(&ARRAY_START) if nested => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            let items: Result<Vec<Value>, _> =
                items.into_iter().map(|v| exact(v, depth + 1)).collect();
            Ok(Value::Array(items?))
        }
        Some(b'-' | b'0'..=b'9') if text.bytes().all(|b| b == b'-' || b.is_ascii_digit()) => {
            let n: Value = serde_json::from_str(text)?;
            Ok(if n.is_i64() || n.is_u64() {
                n
            } else {
                Value::String(text.to_string())
            })
        }
        _ => serde_json::from_str(text),
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
                // A request that could not even be built (a bad URL) will not get better.
                Err(e) if e.is_builder() => return Err(BackfillError::Transport(error_chain(&e))),
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
                    // Never less than a back-off that doubles with each refusal: a reset the
                    // SOR dates in the past (its clock behind ours) would otherwise have every
                    // wait be the 100 ms minimum, and the request give up within seconds while
                    // the SOR's window is still closed.
                    let floor = backoff(waits - 1);
                    let wait = self.rate_limit_wait(&response).max(floor);
                    tracing::debug!(what, wait_s = wait.as_secs(), "rate limited by the API");
                    self.hold(wait);
                }
                500..=599 if retries < MAX_SERVER_RETRIES => {
                    retries += 1;
                    lock(&self.stats).retried += 1;
                    // A 503 may say when to come back.
                    let wait = response
                        .header("retry-after")
                        .and_then(|v| parse_retry_after(v, self.clock.now()))
                        .map_or(backoff(retries), |ra| {
                            ra.min(MAX_HEADER_WAIT).max(backoff(retries))
                        });
                    self.wait(wait).await;
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
        // Anything after 2001-09-09 is an epoch second, not a delay; anything past the year
        // 5138 in seconds is an epoch millisecond. However written, a wait is capped: a
        // misread header must not park a recovery for years.
        let wait = if v > 100_000_000_000.0 {
            Timestamp(v as i64).since(now)
        } else if v > 1_000_000_000.0 {
            Timestamp((v * 1000.0) as i64).since(now)
        } else {
            Duration::from_secs_f64(v.min(MAX_HEADER_WAIT.as_secs_f64()))
        };
        Some(wait.min(MAX_HEADER_WAIT))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_integers_beyond_64_bits_are_kept_as_their_exact_digits() {
        let text = r#"{"id":18446744073709551617,"dup":1,"dup":2,"list":[1,-2,9007199254740993,
            1.5,"s",null,true,-18446744073709551617,{"id":340282366920938463463374607431768211457}]}"#;
        let ExactValue(v) = serde_json::from_str(text).unwrap();
        let expected = serde_json::json!({
            "id": "18446744073709551617",
            "dup": 2,
            "list": [1, -2, 9007199254740993_u64, 1.5, "s", null, true,
                "-18446744073709551617", {"id": "340282366920938463463374607431768211457"}],
        });
        assert_eq!(v, expected);
        // Lists of objects, as the clients' pages hold them.
        #[derive(Deserialize)]
        struct Page {
            #[serde(deserialize_with = "exact_values")]
            data: Vec<serde_json::Value>,
        }
        let page: Page =
            serde_json::from_slice(br#"{"data":[{"id":18446744073709551616}]}"#).unwrap();
        assert_eq!(page.data[0]["id"], "18446744073709551616");
        // Nesting far beyond the limit is refused by serde_json, not a stack overflow.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(serde_json::from_str::<ExactValue>(&deep).is_err());
    }
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use intake_core::clock::{Clock, ManualClock};
    use std::collections::VecDeque;
    use std::sync::Arc;

    /// One scripted answer: a status and headers; `{reset+N}` in a value becomes the epoch
    /// second N seconds after the request arrived.
    type Reply = (u16, Vec<(&'static str, String)>);

    struct Script {
        clock: ManualClock,
        replies: Mutex<VecDeque<Reply>>,
        arrivals: Mutex<Vec<Timestamp>>,
    }

    async fn answer(State(s): State<Arc<Script>>) -> Response {
        let now = s.clock.now();
        lock(&s.arrivals).push(now);
        let (status, headers) = lock(&s.replies).pop_front().unwrap_or((200, Vec::new()));
        let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), "{}").into_response();
        for (k, v) in headers {
            let v = match v.strip_prefix("{reset+").and_then(|x| x.strip_suffix('}')) {
                Some(n) => (now.as_secs() + n.parse::<i64>().unwrap_or(0)).to_string(),
                None => v,
            };
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    }

    /// A scripted server on a loopback port, a client on the same simulated clock.
    async fn setup(replies: Vec<Reply>, per_minute: u32) -> (Arc<Script>, ApiClient, String) {
        let clock =
            ManualClock::simulated(Timestamp::parse_rfc3339("2026-11-28T10:00:20Z").unwrap());
        let script = Arc::new(Script {
            clock: clock.clone(),
            replies: Mutex::new(replies.into()),
            arrivals: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/thing", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = ApiClient::new(Arc::new(clock), per_minute);
        (script, client, url)
    }

    async fn get(client: &ApiClient, url: &str) -> Result<ApiResponse, BackfillError> {
        client.send("GET /v1/thing", |h| h.get(url)).await
    }

    fn arrivals(s: &Script) -> Vec<Timestamp> {
        lock(&s.arrivals).clone()
    }

    #[tokio::test]
    async fn waits_out_a_429_with_retry_after_then_succeeds() {
        let (s, client, url) = setup(vec![(429, vec![("retry-after", "7".into())])], 600).await;
        let r = get(&client, &url).await.unwrap();
        assert_eq!(r.status, 200);
        let at = arrivals(&s);
        assert_eq!(at.len(), 2);
        assert!(at[1].since(at[0]) >= Duration::from_secs(7), "{at:?}");
        assert!(at[1].since(at[0]) < Duration::from_secs(8), "{at:?}");
        assert_eq!(
            client.stats(),
            ApiStats {
                requests: 2,
                throttled: 1,
                retried: 0
            }
        );
    }

    #[tokio::test]
    async fn a_429_with_only_an_epoch_reset_waits_until_that_second() {
        let (s, client, url) = setup(
            vec![(
                429,
                vec![
                    ("x-ratelimit-limit", "100".into()),
                    ("x-ratelimit-reset", "{reset+40}".into()),
                ],
            )],
            600,
        )
        .await;
        assert_eq!(get(&client, &url).await.unwrap().status, 200);
        let at = arrivals(&s);
        assert_eq!(at.len(), 2);
        let reset = Timestamp((at[0].as_secs() + 40) * 1000);
        assert!(
            at[1] >= reset,
            "retried at {} before the reset {reset}",
            at[1]
        );
        assert!(at[1].since(reset) < Duration::from_secs(1));
        assert_eq!(client.stats().throttled, 1);
    }

    #[tokio::test]
    async fn no_remaining_requests_holds_the_next_one_until_the_reset() {
        let (s, client, url) = setup(
            vec![(
                200,
                vec![
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", "{reset+25}".into()),
                ],
            )],
            600,
        )
        .await;
        get(&client, &url).await.unwrap();
        get(&client, &url).await.unwrap();
        let at = arrivals(&s);
        let reset = Timestamp((at[0].as_secs() + 25) * 1000);
        assert!(at[1] >= reset, "sent at {} before the reset {reset}", at[1]);
        // Not a 429: nothing was refused.
        assert_eq!(client.stats().throttled, 0);
    }

    #[tokio::test]
    async fn a_429_whose_reset_is_already_past_backs_off_instead_of_hammering() {
        // The SOR's clock is behind ours: its reset second is already over here. The client
        // must still space its retries out (1 s, 2 s, 4 s, …) rather than retry every 100 ms
        // and exhaust its waits within two seconds while the SOR's window is still closed.
        let past = vec![(429, vec![("x-ratelimit-reset", "{reset+-30}".to_string())]); 6];
        let (s, client, url) = setup(past, 600).await;
        assert_eq!(get(&client, &url).await.unwrap().status, 200);
        let at = arrivals(&s);
        assert_eq!(at.len(), 7);
        for (i, pair) in at.windows(2).enumerate() {
            let gap = pair[1].since(pair[0]);
            assert!(
                gap >= Duration::from_secs(1 << i),
                "retry {i} after {gap:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_503_with_retry_after_is_honoured() {
        let (s, client, url) = setup(vec![(503, vec![("retry-after", "30".into())])], 600).await;
        assert_eq!(get(&client, &url).await.unwrap().status, 200);
        let at = arrivals(&s);
        assert!(at[1].since(at[0]) >= Duration::from_secs(30), "{at:?}");
    }

    #[tokio::test]
    async fn an_epoch_millisecond_reset_is_not_read_as_seconds() {
        let (s, client, url) = setup(vec![], 600).await;
        let reset_ms = (client.clock().now().as_millis() + 10_000).to_string();
        lock(&s.replies).push_back((429, vec![("x-ratelimit-reset", reset_ms)]));
        get(&client, &url).await.unwrap();
        let at = arrivals(&s);
        let gap = at[1].since(at[0]);
        assert!(
            gap >= Duration::from_secs(10) && gap < Duration::from_secs(11),
            "{gap:?}"
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_succeed() {
        let (s, client, url) = setup(vec![(500, vec![]), (503, vec![])], 600).await;
        assert_eq!(get(&client, &url).await.unwrap().status, 200);
        assert_eq!(arrivals(&s).len(), 3);
        assert_eq!(client.stats().retried, 2);
    }

    #[tokio::test]
    async fn server_errors_give_up_after_a_few_retries() {
        let (s, client, url) = setup(vec![(502, vec![]); 10], 600).await;
        match get(&client, &url).await {
            Err(BackfillError::Status { status: 502, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(arrivals(&s).len(), 1 + MAX_SERVER_RETRIES as usize);
    }

    #[tokio::test]
    async fn unauthorized_is_not_retried() {
        let (s, client, url) = setup(vec![(401, vec![])], 600).await;
        assert!(matches!(
            get(&client, &url).await,
            Err(BackfillError::Unauthorized(401))
        ));
        assert_eq!(arrivals(&s).len(), 1);
    }

    #[tokio::test]
    async fn requests_are_paced_to_the_per_minute_budget() {
        // 60 a minute: a burst of 6, then one a second. 26 requests need 20 s at least.
        let (s, client, url) = setup(vec![], 60).await;
        let start = client.clock().now();
        for _ in 0..26 {
            get(&client, &url).await.unwrap();
        }
        let elapsed = client.clock().now().since(start);
        assert!(elapsed >= Duration::from_secs(20), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(21),
            "waited longer than needed: {elapsed:?}"
        );
        // And no minute-long window ever saw more than the budget plus the burst.
        let at = arrivals(&s);
        for (i, t) in at.iter().enumerate() {
            let within = at[i..]
                .iter()
                .filter(|u| u.since(*t) < Duration::from_secs(60))
                .count();
            assert!(within <= 66, "{within} requests in the minute from {t}");
        }
    }
}
