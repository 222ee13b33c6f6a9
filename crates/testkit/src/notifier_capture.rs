//! [`NotifierCapture`]: a loopback HTTP server that plays a notifier's receiver (a Slack
//! incoming webhook, a JSON webhook, PagerDuty's Events API, Alertmanager, a dead-man's
//! switch). It records every request and answers with a status that a test can change, so
//! "the notifier is down, then up" is one call each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request a notifier capture received.
#[derive(Debug, Clone)]
pub struct NotifierRequest {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The status it was answered with.
    pub answered: u16,
}

impl NotifierRequest {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Shared {
    received: Mutex<Vec<NotifierRequest>>,
    status: AtomicU16,
}

/// A recording receiver on 127.0.0.1, port 0.
#[derive(Clone)]
pub struct NotifierCapture {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl NotifierCapture {
    /// Starts a receiver that answers 200 (or what [`NotifierCapture::set_status`] says).
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(capture).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(NotifierCapture { addr, shared })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status every later request is answered with (e.g. 503 while "down").
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every request received so far, answered with any status.
    pub fn all(&self) -> Vec<NotifierRequest> {
        self.shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The requests that were accepted (answered 2xx): what the receiver really got.
    pub fn accepted(&self) -> Vec<NotifierRequest> {
        self.all()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

async fn capture(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let status = s.status.load(Ordering::SeqCst);
    if let Ok(mut r) = s.received.lock() {
        r.push(NotifierRequest {
            method,
            uri: uri.to_string(),
            headers,
            body,
            answered: status,
        });
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, "").into_response()
}
