//! Live traffic: the fake Kustomer's webhooks, each sent to intake's real ingest route when
//! the demo's clock reaches the instant Kustomer sends it — except inside a *lost* window,
//! where Kustomer's webhooks never reach intake (the demo's way of reproducing the story's
//! loss, which intake's own ingest cannot commit: a 200 is only ever sent after the event
//! and its delivery are stored).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_core::{SharedClock, Timestamp};
use intake_fake_sors::Webhook;

/// How often the sender looks at the clock for webhooks that are due.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// What the traffic has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sent and answered 200 (accepted or duplicate).
    pub accepted: u64,
    /// Sent and answered something else, or not answered.
    pub failed: u64,
    /// Not sent: inside a lost window.
    pub lost: u64,
}

/// What becomes of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not due yet: its instant is after now.
    NotYet,
    /// Due, inside a lost window: never reaches intake.
    Lost,
    /// Due: sent.
    Send,
}

/// The fate of the webhook sent at `at`, at `now`, with these lost windows (bounds included).
pub fn fate(at: Timestamp, now: Timestamp, lost: &[(Timestamp, Timestamp)]) -> Fate {
    if at > now {
        Fate::NotYet
    } else if lost.iter().any(|(from, to)| *from <= at && at <= *to) {
        Fate::Lost
    } else {
        Fate::Send
    }
}

/// The shared state of the sender: its tally and the lost windows.
#[derive(Debug, Default)]
struct Shared {
    tally: Tally,
    lost: Vec<(Timestamp, Timestamp)>,
}

/// The running sender. Dropping it stops the traffic.
pub struct Traffic {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// Starts sending `hooks` (in time order) to `url` as `clock` reaches them.
    pub fn start(url: String, hooks: Vec<Webhook>, clock: SharedClock) -> anyhow::Result<Traffic> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn(send_all(http, url, hooks, clock, shared.clone()));
        Ok(Traffic { shared, task })
    }

    /// From now on, the webhooks of `[from, to]` never reach intake.
    pub fn lose(&self, from: Timestamp, to: Timestamp) {
        self.lock().lost.push((from, to));
    }

    /// What the traffic has done so far.
    pub fn tally(&self) -> Tally {
        self.lock().tally.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send_all(
    http: reqwest::Client,
    url: String,
    hooks: Vec<Webhook>,
    clock: SharedClock,
    shared: Arc<Mutex<Shared>>,
) {
    let mut next = 0;
    while next < hooks.len() {
        let now = clock.now();
        while let Some(w) = hooks.get(next) {
            let lost = shared.lock().map(|s| s.lost.clone()).unwrap_or_default();
            let outcome = match fate(w.at, now, &lost) {
                Fate::NotYet => break,
                Fate::Lost => Outcome::Lost,
                Fate::Send => send(&http, &url, w).await,
            };
            if let Ok(mut s) = shared.lock() {
                match outcome {
                    Outcome::Lost => s.tally.lost += 1,
                    Outcome::Accepted => s.tally.accepted += 1,
                    Outcome::Failed => s.tally.failed += 1,
                }
            }
            next += 1;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

enum Outcome {
    Lost,
    Accepted,
    Failed,
}

async fn send(http: &reqwest::Client, url: &str, w: &Webhook) -> Outcome {
    let mut req = http.post(url).body(w.body.clone());
    for (k, v) in &w.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Outcome::Accepted,
        Ok(r) => {
            tracing::warn!(status = %r.status(), about = %w.about, "the demo's webhook was refused");
            Outcome::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, about = %w.about, "the demo's webhook was not answered");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_waits_for_its_instant_and_is_lost_inside_a_window_bounds_included() {
        let t = |s: i64| Timestamp(1_800_000_000_000 + s * 1000);
        let lost = [(t(10), t(20))];
        let cases = [
            (t(5), t(4), Fate::NotYet),
            (t(5), t(5), Fate::Send),
            (t(10), t(30), Fate::Lost),
            (t(15), t(30), Fate::Lost),
            (t(20), t(30), Fate::Lost),
            (t(21), t(30), Fate::Send),
            (t(31), t(30), Fate::NotYet),
        ];
        for (at, now, want) in cases {
            assert_eq!(fate(at, now, &lost), want, "at {at:?} now {now:?}");
        }
        assert_eq!(fate(t(15), t(30), &[]), Fate::Send);
    }
}
