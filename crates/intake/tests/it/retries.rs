//! Failed deliveries: exponential backoff on the server's manual clock, `Retry-After`,
//! timeouts, connection errors, and dead letters after the last attempt.

use std::time::Duration;

use intake_core::Timestamp;
use intake_testkit::{
    kustomer, CaptureHandler, Reply, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::Value;

use crate::{wait_delivery, PATIENCE};

/// No jitter, so that scheduled times are exact.
const RETRY: &str = r#"max_attempts = 3
retry = { initial = "10s", max = "1h", multiplier = 2.0, jitter = 0.0 }
timeout = "500ms""#;

const T0: &str = "2026-11-28T10:00:00Z";

fn at(offset_secs: i64) -> String {
    let t0 = Timestamp::parse_rfc3339(T0).unwrap();
    Timestamp(t0.as_millis() + offset_secs * 1000).to_rfc3339()
}

async fn send(server: &TestServer, msg: &str) -> String {
    let body = kustomer::message_create(msg, "email");
    let resp = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_500_then_200_is_retried_on_schedule_and_delivered() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.script([Reply::Status(500)]);
    let server = TestServer::start(&handler.url(), RETRY).await.unwrap();
    let id = send(&server, "msg-retry").await;

    let event = wait_delivery(&server, &id, "retrying", 1).await;
    assert_eq!(
        event["deliveries"][0]["due_at"],
        at(10),
        "first retry 10s after the failure"
    );
    assert_eq!(event["deliveries"][0]["last_status"], 500);

    server.clock.advance(Duration::from_secs(10));
    let got = handler.wait_for(2, PATIENCE).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].id, id, "the retry carries the same webhook-id");
    assert_eq!(got[1].header("intake-attempt"), "2");
    let event = wait_delivery(&server, &id, "delivered", 2).await;
    let statuses: Vec<&Value> = event["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [500, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_always_500_is_dead_after_max_attempts_with_every_attempt_recorded() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(500));
    let server = TestServer::start(&handler.url(), RETRY).await.unwrap();
    let id = send(&server, "msg-dead").await;

    wait_delivery(&server, &id, "retrying", 1).await;
    server.clock.advance(Duration::from_secs(10));
    let event = wait_delivery(&server, &id, "retrying", 2).await;
    assert_eq!(
        event["deliveries"][0]["due_at"],
        at(10 + 20),
        "backoff doubles"
    );
    server.clock.advance(Duration::from_secs(20));
    let event = wait_delivery(&server, &id, "dead", 3).await;
    let attempts = event["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a["status"] == 500));
    assert_eq!(attempts[2]["outcome"], "dead");
    assert_eq!(handler.received().len(), 3);

    let (_, dead) = server
        .api("/api/v1/events?state=dead", ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(dead["data"][0]["id"], id.as_str());
    let m = server.metrics().await.unwrap();
    assert!(
        m.contains(
            r#"intake_queue_dead{tenant="maelys",source="maelys-kustomer",destination="handler"} 1"#
        ),
        "{m}"
    );
    assert!(m.contains(r#"intake_deliveries_total{outcome="dead",tenant="maelys",source="maelys-kustomer",destination="handler"} 1"#), "{m}");

    // A dead delivery is never attempted again, however much time passes.
    server.clock.advance(Duration::from_secs(24 * 3600));
    let later = send(&server, "msg-after-dead").await;
    let got = handler.wait_for(4, PATIENCE).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].id, later);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.script([Reply::RetryAfter(503, "120".into())]);
    let server = TestServer::start(&handler.url(), RETRY).await.unwrap();
    let id = send(&server, "msg-later").await;

    let event = wait_delivery(&server, &id, "retrying", 1).await;
    assert_eq!(
        event["deliveries"][0]["due_at"],
        at(120),
        "Retry-After: 120 beats the 10s backoff"
    );

    server.clock.advance(Duration::from_secs(60));
    let event = wait_delivery(&server, &id, "retrying", 1).await;
    assert_eq!(event["deliveries"][0]["due_at"], at(120));

    server.clock.advance(Duration::from_secs(60));
    wait_delivery(&server, &id, "delivered", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_connection_errors_are_retried() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.script([Reply::Slow(Duration::from_secs(3))]);
    let server = TestServer::start(&handler.url(), RETRY).await.unwrap();
    let id = send(&server, "msg-slow").await;
    let event = wait_delivery(&server, &id, "retrying", 1).await;
    let error = event["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{error}");
    server.clock.advance(Duration::from_secs(10));
    wait_delivery(&server, &id, "delivered", 2).await;

    // Nothing listens on the destination's port: a connection error, recorded and retried.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", closed.local_addr().unwrap());
    drop(closed);
    let server = TestServer::start(&url, RETRY).await.unwrap();
    let id = send(&server, "msg-refused").await;
    let event = wait_delivery(&server, &id, "retrying", 1).await;
    let error = event["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("connect"), "{error}");
    assert!(event["deliveries"][0]["last_status"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_paces_attempts_on_the_clock() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // One attempt per second, burst of one: three events need the clock to move two seconds.
    let server = TestServer::start(&handler.url(), "rate_limit = 1.0")
        .await
        .unwrap();
    for i in 0..3 {
        send(&server, &format!("msg-rate-{i}")).await;
    }
    let got = handler.wait_for(1, PATIENCE).await;
    assert_eq!(got.len(), 1);
    // Without the clock moving, no second attempt can start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handler.received().len(), 1);
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(handler.wait_for(2, PATIENCE).await.len(), 2);
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(handler.wait_for(3, PATIENCE).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_failing_every_attempt_is_probed_two_at_a_time_until_it_answers() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(500));
    let config = r#"concurrency = 32
max_attempts = 10
retry = { initial = "10s", max = "1h", multiplier = 2.0, jitter = 0.0 }
timeout = "5s""#;
    let server = TestServer::start(&handler.url(), config).await.unwrap();
    // Sixteen failures in a row: the destination is treated as down.
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(send(&server, &format!("msg-down-{i}")).await);
    }
    for id in &ids {
        wait_delivery(&server, id, "retrying", 1).await;
    }
    // Still down, and slow about it: new work is attempted at most two at a time, where the
    // destination's 32 slots would take all of it at once.
    handler.set_default(Reply::SlowStatus(Duration::from_millis(200), 503));
    handler.reset_max_in_flight();
    let mut later = Vec::new();
    for i in 0..8 {
        later.push(send(&server, &format!("msg-probed-{i}")).await);
    }
    // The probes go out in rounds a backoff apart: the clock runs on until every new delivery
    // was tried once.
    for id in &later {
        run_clock_until(&server, id, |d| d["attempts"].as_u64() >= Some(1)).await;
    }
    assert_eq!(handler.max_in_flight(), 2, "probes only");
    // The handler is back: the first success restores the full concurrency, and every
    // delivery waiting is delivered.
    handler.set_default(Reply::Status(200));
    for id in ids.iter().chain(&later) {
        run_clock_until(&server, id, |d| d["state"] == "delivered").await;
    }
}

/// Polls the event's delivery until `done` holds, moving the manual clock 5 s on between
/// polls, so work waiting for a backoff (a retry, the next round of probes) becomes due.
async fn run_clock_until(server: &TestServer, id: &str, done: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, event) = server
            .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        if done(&event["deliveries"][0]) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery never got there: {event:#}"
        );
        server.clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_bounds_attempts_in_flight() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Slow(Duration::from_millis(150)));
    let server = TestServer::start(&handler.url(), "concurrency = 2")
        .await
        .unwrap();
    for i in 0..8 {
        send(&server, &format!("msg-conc-{i}")).await;
    }
    let got = handler.wait_for(8, PATIENCE).await;
    assert_eq!(got.len(), 8);
    // Eight slow deliveries with two slots: they overlap, but never more than two at a time.
    assert_eq!(handler.max_in_flight(), 2);
}
