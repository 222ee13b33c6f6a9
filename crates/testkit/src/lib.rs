//! Test support for intake, used by the integration tests, benchmarks and (later) the demo —
//! never by the server itself.
//!
//! * [`CaptureHandler`]: a real HTTP server on a loopback port that plays the operator's
//!   handler: it records every delivery, verifies its Standard Webhooks signature, and answers
//!   from a script (500 twice, then 200; 503 with `Retry-After`; …).
//! * [`kustomer`]: Kustomer-shaped webhook bodies and their signatures.
//! * [`TestServer`]: an intake server on port 0 with its own data directory and a manual clock.
//! * [`NotifierCapture`]: a receiver for notifications (Slack, webhook, PagerDuty,
//!   Alertmanager, a dead-man's switch) whose status a test can switch between up and down.
//! * [`SmtpCapture`]: a plain-text SMTP relay on loopback that records every mail, and can be
//!   down (`421`), for e-mail notifications end to end.
//! * [`story`]: the events a backfill of the story's outage must deliver, and the tally of
//!   what a handler received against them (the recovery benchmark's arithmetic).

mod notifier_capture;
pub mod process;
mod smtp_capture;
pub mod story;
pub use notifier_capture::{NotifierCapture, NotifierRequest};
pub use smtp_capture::{Mail, SmtpCapture};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use intake_core::signature::SigningKey;
use tokio::sync::Notify;

/// One request the capture handler received.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `webhook-id`
    pub id: String,
    /// All headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
    /// Whether `webhook-signature` verified with the handler's secret.
    pub signature_valid: bool,
}

impl Captured {
    /// Whether this is one of intake's canaries (`intake-origin: canary`), which a handler
    /// answers 2xx and otherwise ignores.
    pub fn is_canary(&self) -> bool {
        self.header("intake-origin") == "canary"
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How the capture handler answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with `Retry-After: <value>`.
    RetryAfter(u16, String),
    /// Wait this long, then 200 (to make attempts time out).
    Slow(Duration),
    /// Wait this long, then this status (a handler failing slowly).
    SlowStatus(Duration, u16),
}

struct CaptureState {
    key: SigningKey,
    received: Mutex<Vec<Captured>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    arrived: Notify,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Mutex<(usize, usize)>,
}

/// A handler on a loopback port that records what intake delivers.
#[derive(Clone)]
pub struct CaptureHandler {
    addr: SocketAddr,
    state: Arc<CaptureState>,
}

impl CaptureHandler {
    /// Starts a handler that verifies signatures with `secret` and answers 200 unless scripted.
    pub async fn start(secret: &str) -> anyhow::Result<Self> {
        let state = Arc::new(CaptureState {
            key: SigningKey::from_secret(secret)?,
            received: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Status(200)),
            arrived: Notify::new(),
            in_flight: Mutex::new((0, 0)),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(capture).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(CaptureHandler { addr, state })
    }

    /// The URL to configure as a destination.
    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    /// Answers the next requests with these replies, in order, then with the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut s) = self.state.script.lock() {
            s.extend(replies);
        }
    }

    /// Sets the reply used when the script is empty.
    pub fn set_default(&self, reply: Reply) {
        if let Ok(mut d) = self.state.default.lock() {
            *d = reply;
        }
    }

    /// The most requests this handler was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.in_flight.lock().map(|f| f.1).unwrap_or(0)
    }

    /// Starts counting [`CaptureHandler::max_in_flight`] again from the requests being
    /// answered now.
    pub fn reset_max_in_flight(&self) {
        if let Ok(mut f) = self.state.in_flight.lock() {
            f.1 = f.0;
        }
    }

    /// Everything received so far (every attempt, duplicates included).
    pub fn received(&self) -> Vec<Captured> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` requests have arrived, or `patience` has passed, and returns
    /// what arrived. Tests then assert on the returned list, so a timeout shows up as a clear
    /// count mismatch rather than a hang.
    pub async fn wait_for(&self, n: usize, patience: Duration) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.state.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }
}

async fn capture(
    State(state): State<Arc<CaptureState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let id = h("webhook-id");
    let ts: i64 = h("webhook-timestamp").parse().unwrap_or(-1);
    let signature_valid = state.key.verify(&id, ts, &body, &h("webhook-signature"));
    let reply = state
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .or_else(|| state.default.lock().ok().map(|d| d.clone()))
        .unwrap_or(Reply::Status(200));
    if let Ok(mut f) = state.in_flight.lock() {
        f.0 += 1;
        f.1 = f.1.max(f.0);
    }
    if let Reply::Slow(d) | Reply::SlowStatus(d, _) = &reply {
        tokio::time::sleep(*d).await;
    }
    if let Ok(mut f) = state.in_flight.lock() {
        f.0 -= 1;
    }
    if let Ok(mut r) = state.received.lock() {
        r.push(Captured {
            id,
            headers: headers.clone(),
            body,
            signature_valid,
        });
    }
    state.arrived.notify_waiters();
    let code = |c: &u16| StatusCode::from_u16(*c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply {
        Reply::Status(c) => code(&c).into_response(),
        Reply::RetryAfter(c, v) => (code(&c), [("retry-after", v)]).into_response(),
        Reply::Slow(_) => StatusCode::OK.into_response(),
        Reply::SlowStatus(_, c) => code(&c).into_response(),
    }
}

/// Kustomer-shaped webhooks.
pub mod kustomer {
    /// A `kustomer.message.create` envelope for message `message_id` on `channel`.
    pub fn message_create(message_id: &str, channel: &str) -> String {
        serde_json::json!({
            "id": format!("whk-{message_id}"),
            "name": "kustomer.message.create",
            "org": "5c0d7e8f9a0b1c2d3e4f5a6b",
            "orgName": "maelys",
            "partition": "5c0d7e8f9a0b1c2d3e4f5a6b",
            "data": {
                "type": "message",
                "id": message_id,
                "attributes": {
                    "channel": channel,
                    "direction": "in",
                    "preview": "Hello, my order has not arrived",
                    "createdAt": "2026-11-27T09:15:00.000Z",
                    "updatedAt": "2026-11-27T09:15:00.000Z",
                    "rev": 1
                },
                "relationships": {
                    "conversation": { "data": { "type": "conversation", "id": format!("conv-{message_id}") } }
                }
            },
            "createdAt": "2026-11-27T09:15:00.120Z"
        })
        .to_string()
    }

    /// The `X-Kustomer-Webhook-Signature` of `body` under `secret`.
    pub fn sign(secret: &str, body: &str) -> String {
        intake_connectors::kustomer::sign(secret, body.as_bytes())
    }
}

/// The secret test destinations sign with.
pub const DESTINATION_SECRET: &str = "whsec_dGVzdC1kZXN0aW5hdGlvbi1zZWNyZXQ=";
/// The secret test Kustomer sources verify with.
pub const SOURCE_SECRET: &str = "kustomer-test-token";
/// The operator token of test servers.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A minimal configuration: tenant `maelys`, Kustomer source `maelys-kustomer`, one destination
/// `handler` at `handler_url`, storage in `data_dir`, listening on port 0. `extra` is appended
/// (more tables, or keys for the last table).
pub fn config_toml(
    data_dir: &std::path::Path,
    handler_url: &str,
    destination_extra: &str,
) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "2s"

[storage]
url = "sqlite://{data}/intake.db"

[admin]
token = "{ADMIN_TOKEN}"

# Canaries are on by default, every minute. Tests count deliveries, events and alerts exactly
# on a clock they move by hours, so the shared configuration sends canaries a month apart;
# the canary tests set their own timings (`with_canaries`).
[canary]
interval = "30d"
deadline = "60d"

[[tenants]]
id = "maelys"
api_token = "maelys-token"

[[tenants]]
id = "other"
api_token = "other-token"

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]

[[sources]]
id = "other-kustomer"
tenant = "other"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]

[[destinations]]
id = "handler"
url = "{handler_url}"
secret = "{DESTINATION_SECRET}"
{destination_extra}
"#,
        data = data_dir.display()
    )
}

/// `config` (from [`config_toml`]) with canaries sent every `interval` and a `deadline`, as in
/// production (the shared test configuration sends them a month apart).
pub fn with_canaries(config: &str, interval: &str, deadline: &str) -> String {
    config.replace(
        "[canary]\ninterval = \"30d\"\ndeadline = \"60d\"",
        &format!("[canary]\ninterval = \"{interval}\"\ndeadline = \"{deadline}\""),
    )
}

/// An intake server for a test: port 0, a temporary data directory, a manual clock.
pub struct TestServer {
    /// The running server.
    pub server: intake_server::RunningServer,
    /// The clock it reads.
    pub clock: intake_core::ManualClock,
    /// Its data directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The configuration it runs with.
    pub config: intake_core::config::Config,
}

impl TestServer {
    /// Starts a server with [`config_toml`] and the clock at 2026-11-28T10:00:00Z.
    pub async fn start(handler_url: &str, destination_extra: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let text = config_toml(dir.path(), handler_url, destination_extra);
        Self::start_with(dir, &text).await
    }

    /// Starts a server with this configuration text in `dir`.
    pub async fn start_with(dir: tempfile::TempDir, config_text: &str) -> anyhow::Result<Self> {
        let clock = intake_core::ManualClock::new(intake_core::Timestamp::parse_rfc3339(
            "2026-11-28T10:00:00Z",
        )?);
        Self::start_with_clock(dir, config_text, clock).await
    }

    /// Starts a server with this configuration text in `dir`, reading `clock` (shared with a
    /// fake system of record, so its rate-limit windows and the server's waits agree).
    pub async fn start_with_clock(
        dir: tempfile::TempDir,
        config_text: &str,
        clock: intake_core::ManualClock,
    ) -> anyhow::Result<Self> {
        let config = intake_core::config::Config::from_toml_str(config_text)?;
        let server = intake_server::Server::new(config.clone(), Arc::new(clock.clone()))
            .start()
            .await?;
        Ok(TestServer {
            server,
            clock,
            dir,
            http: fresh_connections(),
            config,
        })
    }

    /// Shuts the server down gracefully and starts it again on the same data directory,
    /// configuration and clock (which keeps its time): a restart.
    pub async fn restart(self) -> anyhow::Result<Self> {
        let TestServer {
            server,
            clock,
            dir,
            http,
            config,
        } = self;
        server.shutdown().await?;
        let server = intake_server::Server::new(config.clone(), Arc::new(clock.clone()))
            .start()
            .await?;
        Ok(TestServer {
            server,
            clock,
            dir,
            http,
            config,
        })
    }

    /// Shuts the server down gracefully and starts it again on the same data directory and
    /// clock with another configuration (a new route, a removed destination): a restart after
    /// the operator edited the file.
    pub async fn restart_with(self, config_text: &str) -> anyhow::Result<Self> {
        let config = intake_core::config::Config::from_toml_str(config_text)?;
        let TestServer {
            server,
            clock,
            dir,
            http,
            ..
        } = self;
        server.shutdown().await?;
        let server = intake_server::Server::new(config.clone(), Arc::new(clock.clone()))
            .start()
            .await?;
        Ok(TestServer {
            server,
            clock,
            dir,
            http,
            config,
        })
    }

    /// Sends an admin API request with a JSON body and returns status and JSON.
    pub async fn api_send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    /// `http://127.0.0.1:port`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The manual clock's time in unix seconds.
    pub fn clock_now_secs(&self) -> i64 {
        use intake_core::Clock;
        self.clock.now().as_secs()
    }

    /// Sends a Kustomer webhook signed with `secret` to `source`.
    pub async fn send_kustomer(
        &self,
        source: &str,
        body: &str,
        secret: &str,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}/ingest/{source}", self.url()))
            .header("content-type", "application/json")
            .header("x-kustomer-webhook-event", "kustomer.message.create")
            .header("x-kustomer-webhook-signature", kustomer::sign(secret, body))
            .body(body.to_string())
            .send()
            .await?)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await?
            .text()
            .await?)
    }

    /// GETs an admin API path with a token and returns status and JSON.
    pub async fn api(&self, path: &str, token: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url()))
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}

/// The tests' HTTP client: a new connection per request. A pooled keep-alive connection that the
/// server closes (after an answer, or at its restart) can be taken for the next request just as
/// the close arrives, and that request then fails with "connection closed before message
/// completed" — a race of HTTP/1.1 itself, which real clients retry, not something a test is
/// about. Loopback connections cost nothing that matters here.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
