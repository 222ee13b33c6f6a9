//! Logs under a flood: a store outage or a stream of forged requests writes the first line in
//! full and then one summary per interval, not a line per request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_store::StoreFault;
use intake_testkit::{kustomer, CaptureHandler, TestServer, DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::Value;

use crate::PATIENCE;

/// Every log line the process writes, as JSON.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Captures the logs of the whole process (each test runs in a process of its own).
    fn install() -> CapturedLogs {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("this test must run in a process of its own (cargo nextest)");
        logs
    }

    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The lines whose message contains `text`.
    fn matching(&self, text: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            })
            .collect()
    }

    /// Waits until a line containing `text` was written.
    async fn wait_for(&self, text: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self.matching(text);
            if !found.is_empty() {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no line contains {text:?}: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_writes_a_line_and_a_summary_not_a_line_each() {
    let logs = CapturedLogs::install();
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    let body = kustomer::message_create("msg-flood", "email");
    const N: u64 = 300;

    // Forged requests: 401 each, one warning.
    for _ in 0..N {
        let r = server
            .send_kustomer("maelys-kustomer", &body, "not-the-secret")
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(logs.matching("bad or missing signature (401)").len(), 1);

    // A store outage: 503 each, one error line from the door.
    server
        .server
        .store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    for _ in 0..N {
        let r = server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    assert_eq!(logs.matching("ingest could not commit").len(), 1);
    // The store's writer limits its own line for failed batches (on the wall clock, so a
    // slow machine may have written a summary too).
    let batches = logs.matching("answering every request of the batch with an error");
    assert!(batches.len() <= 1, "{batches:#?}");

    // After the interval, the burst is summarised with its count, once.
    server.clock.advance(Duration::from_secs(10));
    let refused = logs
        .wait_for("requests in the last 10 s: store unavailable")
        .await;
    let rejected = logs
        .wait_for("requests in the last 10 s: bad or missing signature")
        .await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(refused[0]["fields"]["count"], N - 1, "{refused:#?}");
    assert_eq!(rejected[0]["fields"]["count"], N - 1, "{rejected:#?}");
    assert_eq!(
        refused[0]["fields"]["message"],
        format!(
            "refused {} requests in the last 10 s: store unavailable",
            N - 1
        )
    );

    // The lines of the start (one per schema migration) and of each singleton duty (taken,
    // then stopped when the outage keeps its lease from being renewed) grow with the schema
    // and the duties, not with the requests: they are left out of the count.
    const LIFECYCLE: [&str; 4] = [
        "applied SQLite migration",
        "took the duty's lease; running it",
        "cannot renew the duty's lease",
        "stopping the duty",
    ];
    let counted: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| {
            let m = l["fields"]["message"].as_str().unwrap_or("");
            !LIFECYCLE.contains(&m)
        })
        .collect();
    let total = counted.len();
    assert!(
        total < 25,
        "{} requests made {total} log lines: {counted:#?}",
        2 * N
    );

    // What is only counted when the server stops is said as it stops.
    for _ in 0..5 {
        let r = server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    server.server.store.inject_fault(None).await.unwrap();
    server.server.shutdown().await.unwrap();
    let last = logs.matching("refused 5 requests in the last");
    assert_eq!(last.len(), 1, "{:#?}", logs.lines());
}
