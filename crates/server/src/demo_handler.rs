//! A handler built into the server for the embedded default configuration only
//! (`server.demo_handler = true`): it verifies the Standard Webhooks signature of what intake
//! delivers to `/demo/handler`, logs it, and lists the last deliveries at `GET /demo/handler`,
//! so a newcomer sees a webhook go all the way through with no other program running. It
//! treats intake's canaries as every handler should: 2xx, and nothing else (not listed).
//! On a destination with `completion = "receipt"` it also confirms each delivery's work at
//! once, signed with the destination's secret, as docs/handlers.md shows a handler doing
//! once its own queue has finished.
//!
//! Beside it, a notification receiver for the embedded set-up's webhook notifier
//! (`demo-notifications`): `POST /demo/notifications` logs and keeps each notice, and
//! `GET /demo/notifications` lists the last ones, so that a newcomer running a fire drill
//! (`intake drill queue-stall --source demo-kustomer`) sees its alert arrive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use intake_core::config::Config;
use intake_core::signature::SigningKey;

use crate::api::deliveries::confirm_delivery;
use crate::state::{AppState, DemoInbox};
pub use crate::state::{DemoNotice, Received};

const KEPT: usize = 100;

/// The demo handler's state: the keys of the destinations pointing at it, nothing received.
pub(crate) fn inbox(config: &Config) -> DemoInbox {
    let keys = config
        .destinations
        .iter()
        .filter(|d| d.url.ends_with("/demo/handler"))
        .filter_map(|d| Some((SigningKey::from_secret(&d.secret).ok()?, d.uses_receipts())))
        .collect();
    DemoInbox {
        keys,
        received: Mutex::new(VecDeque::new()),
        notices: Mutex::new(VecDeque::new()),
    }
}

/// The demo routes, when `server.demo_handler` is on.
pub(crate) fn routes(state: &AppState) -> Router<Arc<AppState>> {
    if !state.config.server.demo_handler {
        return Router::new();
    }
    Router::new()
        .route("/demo/handler", post(receive).get(list))
        .route("/demo/notifications", post(notice).get(notices))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn receive(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = header(&headers, "webhook-id");
    let ts: i64 = header(&headers, "webhook-timestamp").parse().unwrap_or(0);
    let sig = header(&headers, "webhook-signature");
    let signer = app
        .demo
        .keys
        .iter()
        .find(|(k, _)| k.verify(id, ts, &body, sig));
    let valid = signer.is_some();
    // On receipts, the work is done once received: confirmed at once, canaries included,
    // as a handler whose own queue finished would (docs/handlers.md).
    let delivery = header(&headers, "intake-delivery-id");
    if let Some((key, true)) = signer {
        if !delivery.is_empty() {
            tokio::spawn(confirm(app.clone(), key.clone(), delivery.to_string()));
        }
    }
    // What every handler does with intake's canaries: answer 2xx, and nothing else.
    if header(&headers, "intake-origin") == "canary" {
        tracing::debug!(event = %id, "demo handler received a canary");
        return if valid {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
    }
    let r = Received {
        id: id.to_string(),
        event_type: header(&headers, "intake-event-type").to_string(),
        channel: header(&headers, "intake-channel").to_string(),
        attempt: header(&headers, "intake-attempt").to_string(),
        signature_valid: valid,
    };
    tracing::info!(event = %r.id, event_type = %r.event_type, signature_valid = valid, "demo handler received a delivery");
    if let Ok(mut q) = app.demo.received.lock() {
        if q.len() == KEPT {
            q.pop_front();
        }
        q.push_back(r);
    }
    if valid {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// Confirms a delivery's work the way a handler without a token does: a Standard Webhooks
/// message whose id is the delivery id, signed with the destination's secret, handed to the
/// confirmation route's own handler (the same checks as over HTTP, without a socket).
async fn confirm(app: Arc<AppState>, key: SigningKey, delivery: String) {
    let body = Bytes::from_static(br#"{"outcome":"ok"}"#);
    let ts = app.clock.now().as_secs();
    let mut headers = HeaderMap::new();
    let signed = [
        ("webhook-id", delivery.clone()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", key.sign(&delivery, ts, &body)),
    ];
    for (name, value) in signed {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    match confirm_delivery(app, delivery.clone(), headers, body).await {
        Ok(_) => tracing::debug!(delivery = %delivery, "demo handler confirmed its work"),
        Err(p) => {
            tracing::warn!(delivery = %delivery, problem = ?p, "demo handler could not confirm its work")
        }
    }
}

async fn list(State(app): State<Arc<AppState>>) -> Json<Vec<Received>> {
    let list = app
        .demo
        .received
        .lock()
        .map(|q| q.iter().rev().cloned().collect())
        .unwrap_or_default();
    Json(list)
}

/// A webhook notifier's notice: logged and kept.
async fn notice(State(app): State<Arc<AppState>>, body: Bytes) -> StatusCode {
    let Ok(n) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let kept = DemoNotice {
        at: n["at"].clone(),
        kind: n["kind"].clone(),
        status: n["status"].clone(),
        summary: n["summary"].clone(),
        drill: n["drill"].clone(),
    };
    tracing::info!(
        summary = kept.summary.as_str().unwrap_or(""),
        "demo notifier received a notification"
    );
    if let Ok(mut q) = app.demo.notices.lock() {
        if q.len() == KEPT {
            q.pop_front();
        }
        q.push_back(kept);
    }
    StatusCode::OK
}

async fn notices(State(app): State<Arc<AppState>>) -> Json<Vec<DemoNotice>> {
    let list = app
        .demo
        .notices
        .lock()
        .map(|q| q.iter().rev().cloned().collect())
        .unwrap_or_default();
    Json(list)
}
