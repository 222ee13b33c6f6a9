//! The invariant: nothing returns 200 without a committed event. A store that cannot commit
//! makes ingest answer 503 (so the system of record retries) and delivers nothing.

use intake_store::StoreFault;
use intake_testkit::{
    kustomer, CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::Value;

use crate::PATIENCE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_that_cannot_commit_answers_503_and_nothing_is_delivered() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    server
        .server
        .store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();

    let lost = kustomer::message_create("msg-during-outage", "email");
    let resp = server
        .send_kustomer("maelys-kustomer", &lost, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "urn:intake:problem:store-unavailable");

    let ready = server
        .http
        .get(format!("{}/readyz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "a store that cannot commit is not ready"
    );

    // Let the delivery dispatcher's safety poll fire during the outage: its claim fails too,
    // and it must not stay stuck in its back-off once the store is back.
    server.clock.advance(std::time::Duration::from_secs(6));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    server.server.store.inject_fault(None).await.unwrap();
    let ready = server
        .http
        .get(format!("{}/readyz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // The sender retries after the outage: now it is accepted, as a new event (nothing of the
    // failed attempt was kept to make it a duplicate), and delivered exactly once.
    let resp = server
        .send_kustomer("maelys-kustomer", &lost, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ack: Value = resp.json().await.unwrap();
    assert_eq!(ack["duplicate"], false);
    let got = handler.wait_for(1, PATIENCE).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, ack["id"].as_str().unwrap());
    let (_, list) = server.api("/api/v1/events", ADMIN_TOKEN).await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let m = server.metrics().await.unwrap();
    assert!(m.contains(r#"intake_requests_total{outcome="unavailable",tenant="maelys",source="maelys-kustomer"} 1"#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_every_request_of_its_batch() {
    // Many concurrent requests while the store refuses writes: each one is 503, none is 200.
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = std::sync::Arc::new(TestServer::start(&handler.url(), "").await.unwrap());
    server
        .server
        .store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = server.clone();
        tasks.push(tokio::spawn(async move {
            let body = kustomer::message_create(&format!("msg-f{i}"), "email");
            s.send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 503);
    }
    server.server.store.inject_fault(None).await.unwrap();
    let (_, list) = server.api("/api/v1/events", ADMIN_TOKEN).await.unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
    assert!(handler.received().is_empty());
}
