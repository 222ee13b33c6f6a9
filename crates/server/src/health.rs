//! `/healthz` (the process answers), `/readyz` (the store can commit and every destination has
//! a running dispatcher) and `/metrics` (Prometheus text format).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::{QUEUE_DEAD, QUEUE_IN_FLIGHT, QUEUE_OLDEST, QUEUE_PENDING};
use crate::problem::Problem;
use crate::runtime::AppState;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if let Err(e) = app.store.check_writable().await {
        return Problem::unavailable(format!("not ready: {e}")).into_response();
    }
    let stopped: Vec<&str> = app
        .destinations
        .values()
        .filter(|d| !d.running.load(Ordering::Relaxed))
        .map(|d| d.config.id.as_str())
        .collect();
    if !stopped.is_empty() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "workers-stopped",
            "Workers stopped",
            format!("no delivery worker is running for: {}", stopped.join(", ")),
        )
        .into_response();
    }
    Json(json!({ "status": "ready" })).into_response()
}

/// Renders metrics after refreshing the queue gauges from the store, so that a scrape always
/// sees the queue as it is. Every configured (source, destination) pair has its series, zero
/// when idle: a silent series is zero, never missing.
async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    match app.store.queue_stats().await {
        Ok(stats) => {
            let now = app.clock.now();
            let by_pair: std::collections::HashMap<(&str, &str), &intake_store::QueueStats> = stats
                .iter()
                .map(|q| ((q.source.as_str(), q.destination.as_str()), q))
                .collect();
            for s in &app.config.sources {
                for d in &s.destinations {
                    let labels = [
                        ("tenant", s.tenant.clone()),
                        ("source", s.id.clone()),
                        ("destination", d.clone()),
                    ];
                    let row = by_pair.get(&(s.id.as_str(), d.as_str()));
                    let (pending, in_flight, dead, oldest) = match row {
                        Some(q) => (
                            q.pending,
                            q.in_flight,
                            q.dead,
                            q.oldest_pending_at
                                .map_or(0.0, |t| now.since(t).as_secs_f64()),
                        ),
                        None => (0, 0, 0, 0.0),
                    };
                    metrics::gauge!(QUEUE_PENDING, &labels).set(pending as f64);
                    metrics::gauge!(QUEUE_IN_FLIGHT, &labels).set(in_flight as f64);
                    metrics::gauge!(QUEUE_DEAD, &labels).set(dead as f64);
                    metrics::gauge!(QUEUE_OLDEST, &labels).set(oldest);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "queue gauges not refreshed"),
    }
    match crate::alerts::alert_book(&app).await {
        Ok(book) => {
            // Every built-in rule and severity has a series, zero when nothing fires.
            let mut firing: std::collections::BTreeMap<(&str, &str), f64> = Default::default();
            for rule in intake_core::config::RULE_IDS {
                for severity in ["critical", "warning", "info"] {
                    firing.insert((rule, severity), 0.0);
                }
            }
            for a in book
                .iter()
                .filter(|a| a.state == intake_monitor::AlertState::Firing)
            {
                let severity = a.severity.as_str();
                if let Some(rule) = intake_core::config::RULE_IDS
                    .iter()
                    .find(|r| **r == a.key.rule)
                {
                    *firing.entry((rule, severity)).or_default() += 1.0;
                }
            }
            // The notification pipeline raises `notifier_failing` itself, outside the book.
            if let Ok(state) = crate::notifications::load_state(&app).await {
                for alert in state.notifier_alerts.values() {
                    let severity = alert.severity.as_str();
                    *firing.entry(("notifier_failing", severity)).or_default() += 1.0;
                }
            }
            for ((rule, severity), n) in firing {
                metrics::gauge!(crate::metrics::ALERTS_FIRING, "rule" => rule, "severity" => severity)
                    .set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e.detail, "alert gauges not refreshed"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}
