//! One source's canaries, one after the other: every interval, sign a canary as the source's
//! system would, POST it to the front door (`server.public_url` + `/ingest/{source}`, a real
//! HTTP request that may cross a load balancer to any node), then follow its event in the
//! store until it is delivered or the next canary is due. Each change of where it stands is
//! reported to the duty (`super::run`), which keeps the canary book.

use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_connectors::{CanarySpec, Connector};
use intake_core::canary::{CanaryKey, HEADER};
use intake_core::config::CanaryTiming;
use intake_core::{EventId, SharedClock, Timestamp};
use intake_store::Store;
use metrics::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::book::{CanaryRun, SourceCanary, Stage};
use super::decide;
use super::LATENCY;

/// The first look at an accepted canary's event is at once; then the waits double up to this.
const MAX_POLL: Duration = Duration::from_secs(2);
/// The longest a POST to the front door may take (also bounded by half the deadline).
const MAX_POST: Duration = Duration::from_secs(30);
/// The most of a refusal's answer kept in the canary's detail.
const KEPT_ANSWER: usize = 300;

/// Everything one source's canaries need.
pub(crate) struct Probe {
    /// The source, and its tenant.
    pub source: String,
    pub tenant: String,
    /// The secret its system signs with (the first of the source's secrets).
    pub secret: Option<String>,
    pub connector: Box<dyn Connector>,
    pub timing: CanaryTiming,
    /// `…/ingest/{source}` at the front door.
    pub url: String,
    pub http: reqwest::Client,
    pub key: CanaryKey,
    pub clock: SharedClock,
    pub store: Arc<dyn Store>,
}

/// `intake_canary_latency_seconds` of one source, by stage.
struct Latencies {
    ack: Histogram,
    queue: Histogram,
    delivery: Histogram,
    total: Histogram,
}

impl Latencies {
    fn new(tenant: &str, source: &str) -> Self {
        let h = |stage: &'static str| {
            metrics::histogram!(LATENCY, "tenant" => tenant.to_string(),
                "source" => source.to_string(), "stage" => stage)
        };
        Latencies {
            ack: h("ack"),
            queue: h("queue"),
            delivery: h("delivery"),
            total: h("total"),
        }
    }
}

/// Where one source's canaries report, and what stops them.
struct Reporting {
    latencies: Latencies,
    reports: mpsc::Sender<SourceCanary>,
    stop: CancellationToken,
}

impl Reporting {
    async fn report(&self, record: &SourceCanary) {
        // The duty only stops listening when it stops, which stops this too.
        let _ = self.reports.send(record.clone()).await;
    }
}

/// How one canary's POST ended.
enum Sent {
    Accepted(EventId, Duration),
    Refused(Option<u16>, String),
    Stopped,
}

impl Probe {
    /// Sends a canary every interval, the first one an interval after `record.watching_since`,
    /// reporting `record` after every change, until `stop`.
    pub(crate) async fn run(
        self,
        mut record: SourceCanary,
        reports: mpsc::Sender<SourceCanary>,
        stop: CancellationToken,
    ) {
        let to = Reporting {
            latencies: Latencies::new(&self.tenant, &self.source),
            reports,
            stop,
        };
        let interval = self.timing.interval.max(Duration::from_secs(1));
        let mut next = record.watching_since.plus(interval);
        loop {
            if self.sleep_until(next, &to.stop).await {
                return;
            }
            let sent_at = self.clock.now();
            // The schedule follows the sends: a slow send delays the next one, never doubles it.
            next = sent_at.plus(interval);
            let mut run = CanaryRun::sending(canary_id(sent_at), sent_at);
            record.previous = record.last.replace(run.clone());
            to.report(&record).await;
            let ack = match self.send(&run, &to.stop).await {
                Sent::Stopped => return,
                Sent::Refused(status, detail) => {
                    run.stage = Stage::Refused;
                    run.status = status;
                    run.detail = Some(detail);
                    None
                }
                Sent::Accepted(event, ack) => {
                    run.stage = Stage::Accepted;
                    run.event = Some(event);
                    Some(ack)
                }
            };
            record.last = Some(run.clone());
            to.report(&record).await;
            if let Some(ack) = ack {
                if self.follow(&mut record, run, ack, next, &to).await {
                    return;
                }
            }
        }
    }

    /// Sleeps until `at`; true when the duty must stop instead.
    async fn sleep_until(&self, at: Timestamp, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = self.clock.sleep_until(at) => false,
            _ = stop.cancelled() => true,
        }
    }

    /// Signs the canary as the source's system would, marks it as intake's, and POSTs it.
    async fn send(&self, run: &CanaryRun, stop: &CancellationToken) -> Sent {
        let Some(secret) = &self.secret else {
            return Sent::Refused(
                None,
                "the source has no secret to sign a canary with".into(),
            );
        };
        let spec = CanarySpec {
            source: &self.source,
            id: &run.id,
            at: run.sent_at,
        };
        let signed = self.connector.canary(&spec, secret);
        let mark = self.key.sign(&self.source, &signed.body);
        let timeout = MAX_POST
            .min(self.timing.deadline / 2)
            .max(Duration::from_secs(1));
        let mut req = self.http.post(&self.url).timeout(timeout);
        for (name, value) in &signed.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req.header(HEADER, mark).body(signed.body);
        // Wall-clock time: the ack latency is a measurement, not a decision.
        let started = Instant::now();
        let answer = tokio::select! {
            a = req.send() => a,
            _ = stop.cancelled() => return Sent::Stopped,
        };
        let resp = match answer {
            Ok(resp) => resp,
            // Without the URL: it is the operator's own, but errors travel to notifiers.
            Err(e) => return Sent::Refused(None, e.without_url().to_string()),
        };
        let status = resp.status().as_u16();
        let text = tokio::select! {
            t = resp.text() => t.unwrap_or_default(),
            _ = stop.cancelled() => return Sent::Stopped,
        };
        let ack = started.elapsed();
        if status != 200 {
            return Sent::Refused(Some(status), answer_detail(&text));
        }
        let id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["id"].as_str().and_then(|s| s.parse::<EventId>().ok()));
        match id {
            Some(id) => Sent::Accepted(id, ack),
            None => Sent::Refused(
                Some(status),
                format!("200 without an event id: {}", answer_detail(&text)),
            ),
        }
    }

    /// Follows an accepted canary's event until it is delivered (true: stop was asked) or the
    /// next canary is due.
    async fn follow(
        &self,
        record: &mut SourceCanary,
        mut run: CanaryRun,
        ack: Duration,
        next: Timestamp,
        to: &Reporting,
    ) -> bool {
        let Some(event) = run.event.clone() else {
            return false;
        };
        let mut wait = Duration::from_millis(100);
        let mut read_failed = false;
        loop {
            let now = self.clock.now();
            if now >= next {
                return false;
            }
            match self.store.get_event(&event).await {
                Ok(detail) => {
                    read_failed = false;
                    let seen = decide::observe(&run, detail.as_ref());
                    if seen != run {
                        run = seen;
                        record.last = Some(run.clone());
                        if run.stage == Stage::Delivered {
                            let latency = detail
                                .as_ref()
                                .and_then(|d| decide::latency(d, run.sent_at, ack));
                            if let Some(l) = latency {
                                let s = |ms: u64| ms as f64 / 1000.0;
                                to.latencies.ack.record(s(l.ack_ms));
                                to.latencies.queue.record(s(l.queue_ms));
                                to.latencies.delivery.record(s(l.delivery_ms));
                                to.latencies.total.record(s(l.total_ms));
                            }
                            record.last_success_at = run.delivered_at.or(Some(now));
                            record.last_success_latency = latency;
                            to.report(record).await;
                            return false;
                        }
                        to.report(record).await;
                    }
                }
                Err(e) => {
                    if !read_failed {
                        tracing::warn!(source = %self.source, error = %e, "cannot read a canary's event; still following it");
                    }
                    read_failed = true;
                }
            }
            if self.sleep_until(now.plus(wait).min(next), &to.stop).await {
                return true;
            }
            wait = (wait * 2).min(MAX_POLL);
        }
    }
}

/// A canary id: `cny_`, the send time in hex milliseconds, and random bits.
fn canary_id(at: Timestamp) -> String {
    format!("cny_{:012x}{:08x}", at.as_millis(), rand::random::<u32>())
}

/// What a refusal said: a problem's `detail` when it is one, else the start of the text.
fn answer_detail(text: &str) -> String {
    let detail = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    let mut end = detail.len().min(KEPT_ANSWER);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_problem_detail_or_the_start_of_the_answer() {
        let problem = r#"{"type":"urn:intake:problem:unavailable","title":"Service unavailable","status":503,"detail":"the event was not stored"}"#;
        assert_eq!(answer_detail(problem), "the event was not stored");
        assert_eq!(answer_detail("  bad gateway\n"), "bad gateway");
        let long = "é".repeat(400);
        assert!(answer_detail(&long).len() <= KEPT_ANSWER);
        let a = canary_id(Timestamp(1_795_860_000_000));
        assert!(a.starts_with("cny_") && a.len() == 4 + 12 + 8, "{a}");
    }
}
