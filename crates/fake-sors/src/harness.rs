//! What every fake shares: serving its API on a loopback port, sending its webhooks (and
//! "losing" those in chosen windows), and the rate limiters vendors use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use intake_core::clock::SharedClock;
use intake_core::Timestamp;

/// One webhook as the vendor would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// When the vendor sends it (the change's time).
    pub at: Timestamp,
    /// Its headers, signature included.
    pub headers: Vec<(String, String)>,
    /// Its raw body.
    pub body: Vec<u8>,
    /// The object it is about, in the vendor's words (`message:123`), for tests' bookkeeping.
    pub about: String,
}

/// A fake system of record.
pub trait FakeSor: Send + Sync + 'static {
    /// The source kind it fakes (`kustomer`, `zendesk`, …).
    fn kind(&self) -> &'static str;

    /// Every webhook the vendor sends for its world, in time order, signed with `secret`.
    fn webhooks(&self, secret: &str) -> Vec<Webhook>;

    /// Its REST API (what backfill reads), rate limits and pagination included.
    fn api(self: Arc<Self>) -> Router;
}

/// A router serving on `127.0.0.1:0`. The server stops when the value is dropped.
pub struct Served {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Starts serving `router`.
    pub async fn start(router: Router) -> anyhow::Result<Self> {
        Self::start_at("127.0.0.1:0".parse()?, router).await
    }

    /// Starts serving `router` at `addr` (a port a test chose before: a system of record
    /// that was down and comes back at the address intake was configured with).
    pub async fn start_at(addr: SocketAddr, router: Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "fake SOR server stopped");
            }
        });
        Ok(Served { addr, task })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` (no trailing slash): the `api.base_url` to configure.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What sending webhooks did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    /// Sent and answered 2xx.
    pub delivered: Vec<Webhook>,
    /// Deliberately not sent: inside a lost window.
    pub lost: Vec<Webhook>,
    /// Sent and answered something else (status, or 0 for a transport error).
    pub failed: Vec<(Webhook, u16)>,
}

/// Posts `webhooks` to `url`, except those whose time falls in one of `lost` (inclusive
/// bounds): the vendor "sent" them but they never arrived, as in an outage that returned 200
/// and dropped the work. Backfill over those windows must find exactly the lost ones.
pub async fn send_webhooks(
    url: &str,
    webhooks: &[Webhook],
    lost: &[(Timestamp, Timestamp)],
) -> anyhow::Result<SendReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut report = SendReport::default();
    for w in webhooks {
        if lost.iter().any(|(from, to)| *from <= w.at && w.at <= *to) {
            report.lost.push(w.clone());
            continue;
        }
        let mut req = client.post(url).body(w.body.clone());
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => report.delivered.push(w.clone()),
            Ok(r) => report.failed.push((w.clone(), r.status().as_u16())),
            Err(_) => report.failed.push((w.clone(), 0)),
        }
    }
    Ok(report)
}

/// The verdict of a rate limiter on one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Allowed; this many remain in the current window, which resets at `reset`.
    Allowed {
        /// The limit.
        limit: u32,
        /// Requests left.
        remaining: u32,
        /// When the window resets.
        reset: Timestamp,
    },
    /// Refused (429); come back after `retry_after`.
    Limited {
        /// The limit.
        limit: u32,
        /// When the window resets.
        reset: Timestamp,
        /// How long to wait.
        retry_after: Duration,
    },
}

/// A fixed-window limiter on the injected clock: `limit` requests per `window`, counted from
/// the window's start (Kustomer, Zendesk, Freshdesk, Intercom, Front count per minute).
#[derive(Debug)]
pub struct FixedWindow {
    limit: u32,
    window: Duration,
    state: Mutex<(Timestamp, u32)>,
}

impl FixedWindow {
    /// `limit` requests per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        FixedWindow {
            limit,
            window,
            state: Mutex::new((Timestamp(i64::MIN), 0)),
        }
    }

    /// Counts one request at `now`.
    pub fn check(&self, now: Timestamp) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window_ms = self.window.as_millis() as i64;
        if s.0 == Timestamp(i64::MIN) || now.as_millis() >= s.0.as_millis() + window_ms {
            // Windows are aligned to the clock, as vendors' per-minute counters are.
            *s = (
                Timestamp(now.as_millis() - now.as_millis().rem_euclid(window_ms)),
                0,
            );
        }
        let reset = Timestamp(s.0.as_millis() + window_ms);
        if s.1 >= self.limit {
            return Verdict::Limited {
                limit: self.limit,
                reset,
                retry_after: reset.since(now).max(Duration::from_secs(1)),
            };
        }
        s.1 += 1;
        Verdict::Allowed {
            limit: self.limit,
            remaining: self.limit - s.1,
            reset,
        }
    }
}

/// A leaky bucket (Gorgias: 40 requests per 20 s): each request adds one; the bucket drains at
/// `capacity / period`; a request that would overflow is refused.
#[derive(Debug)]
pub struct LeakyBucket {
    capacity: f64,
    period: Duration,
    state: Mutex<(Timestamp, f64)>,
}

impl LeakyBucket {
    /// `capacity` requests per `period`.
    pub fn new(capacity: u32, period: Duration) -> Self {
        LeakyBucket {
            capacity: f64::from(capacity),
            period,
            state: Mutex::new((Timestamp(i64::MIN), 0.0)),
        }
    }

    /// Counts one request at `now`.
    pub fn check(&self, now: Timestamp) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rate = self.capacity / self.period.as_secs_f64();
        if s.0 != Timestamp(i64::MIN) {
            let drained = now.since(s.0).as_secs_f64() * rate;
            s.1 = (s.1 - drained).max(0.0);
        }
        s.0 = now;
        let limit = self.capacity as u32;
        if s.1 + 1.0 > self.capacity {
            let wait = Duration::from_secs_f64((s.1 + 1.0 - self.capacity) / rate);
            return Verdict::Limited {
                limit,
                reset: now.plus(wait),
                retry_after: wait.max(Duration::from_secs(1)),
            };
        }
        s.1 += 1.0;
        Verdict::Allowed {
            limit,
            remaining: (self.capacity - s.1).floor() as u32,
            reset: now.plus(Duration::from_secs_f64(s.1 / rate)),
        }
    }
}

/// Records the requests a fake API served, for tests that count pages and calls (and, for
/// fakes that stamp them, when each arrived on the injected clock).
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Mutex<Vec<(Option<Timestamp>, String)>>,
}

impl RequestLog {
    /// Records one request (`"GET /api/v2/...?..."`, or `"429 GET ..."` for refused ones).
    pub fn push(&self, line: String) {
        self.lock().push((None, line));
    }

    /// Records one request that arrived at `at`.
    pub fn push_at(&self, line: String, at: Timestamp) {
        self.lock().push((Some(at), line));
    }

    /// Everything recorded so far.
    pub fn all(&self) -> Vec<String> {
        self.lock().iter().map(|(_, l)| l.clone()).collect()
    }

    /// The stamped requests, with when each arrived.
    pub fn timed(&self) -> Vec<(Timestamp, String)> {
        self.lock()
            .iter()
            .filter_map(|(at, l)| at.map(|t| (t, l.clone())))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Option<Timestamp>, String)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The clock a fake reads (share the one the code under test uses, so rate-limit windows and
/// back-off waits agree).
pub type Clock = SharedClock;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_refuses_past_the_limit_until_reset() {
        let w = FixedWindow::new(2, Duration::from_secs(60));
        let t = Timestamp(1_795_000_040_000); // 20 s into a minute
        assert!(matches!(w.check(t), Verdict::Allowed { remaining: 1, .. }));
        assert!(matches!(w.check(t), Verdict::Allowed { remaining: 0, .. }));
        match w.check(t) {
            Verdict::Limited { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(40))
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            w.check(t.plus(Duration::from_secs(40))),
            Verdict::Allowed { remaining: 1, .. }
        ));
    }

    #[test]
    fn leaky_bucket_drains_over_its_period() {
        let b = LeakyBucket::new(40, Duration::from_secs(20));
        let t = Timestamp(1_795_000_000_000);
        for _ in 0..40 {
            assert!(matches!(b.check(t), Verdict::Allowed { .. }));
        }
        assert!(matches!(b.check(t), Verdict::Limited { .. }));
        // Two per second drain.
        assert!(matches!(
            b.check(t.plus(Duration::from_secs(1))),
            Verdict::Allowed { .. }
        ));
    }
}
