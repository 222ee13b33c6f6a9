//! `GET /api/v1/flows` and `GET /api/v1/queue`: every configured source and pair is present,
//! silent ones as zeros; counts come from the counters committed with the events; tenant tokens
//! see only their own.

use std::time::Duration;

use intake_testkit::{
    kustomer, CaptureHandler, Reply, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::Value;

fn find<'a>(data: &'a Value, source: &str) -> &'a Value {
    data["data"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["source"] == source))
        .unwrap_or_else(|| panic!("no entry for {source} in {data}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_count_per_channel_and_show_silent_sources_as_zero() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    for (i, channel) in ["email", "email", "chat"].iter().enumerate() {
        let body = kustomer::message_create(&format!("m{i}"), channel);
        let r = server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        server.clock.advance(Duration::from_secs(61));
    }
    // A forged request counts as a rejection, not as flow.
    let forged = server
        .send_kustomer(
            "maelys-kustomer",
            &kustomer::message_create("x", "email"),
            "wrong",
        )
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Rejections are recorded in the background; give them a moment to commit.
    let mut flows = Value::Null;
    for _ in 0..200 {
        let (status, body) = server.api("/api/v1/flows", ADMIN_TOKEN).await.unwrap();
        assert_eq!(status, 200, "{body}");
        flows = body;
        if find(&flows, "maelys-kustomer")["rejected_last_hour"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let maelys = find(&flows, "maelys-kustomer");
    assert_eq!(maelys["kind"], "kustomer");
    assert_eq!(maelys["last_hour"], 3, "{maelys}");
    assert_eq!(maelys["last_24h"], 3);
    assert_eq!(maelys["rejected_last_hour"], 1);
    let channels = maelys["channels"].as_array().unwrap();
    let email = channels.iter().find(|c| c["channel"] == "email").unwrap();
    let chat = channels.iter().find(|c| c["channel"] == "chat").unwrap();
    assert_eq!(email["last_hour"], 2);
    assert_eq!(chat["last_hour"], 1);
    let per_minute: Vec<i64> = email["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(per_minute.len(), 60);
    assert_eq!(per_minute.iter().sum::<i64>(), 2);

    // The other tenant's source has sent nothing: present, zero.
    let other = find(&flows, "other-kustomer");
    assert_eq!(other["last_24h"], 0);
    assert_eq!(other["last_event_minute"], Value::Null);

    // A day later, the hour is empty but the source is still listed.
    server.clock.advance(Duration::from_secs(25 * 3600));
    let (_, later) = server.api("/api/v1/flows", ADMIN_TOKEN).await.unwrap();
    assert_eq!(find(&later, "maelys-kustomer")["last_24h"], 0);

    // A tenant token sees its own flows only, and is refused another tenant's.
    let (_, own) = server.api("/api/v1/flows", "maelys-token").await.unwrap();
    assert_eq!(own["data"].as_array().unwrap().len(), 1);
    let (status, _) = server
        .api("/api/v1/flows?tenant=other", "maelys-token")
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, body) = server
        .api("/api/v1/flows?tenat=maelys", ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_shows_pending_work_and_its_age_while_the_handler_fails() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(500));
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    let body = kustomer::message_create("q1", "email");
    let r = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    handler.wait_for(1, Duration::from_secs(20)).await;
    server.clock.advance(Duration::from_secs(90));

    let (status, queue) = server.api("/api/v1/queue", ADMIN_TOKEN).await.unwrap();
    assert_eq!(status, 200, "{queue}");
    let maelys = find(&queue, "maelys-kustomer");
    assert_eq!(maelys["destination"], "handler");
    assert_eq!(maelys["pending"], 1, "{maelys}");
    assert!(
        maelys["oldest_pending_seconds"].as_u64().unwrap() >= 90,
        "{maelys}"
    );
    let other = find(&queue, "other-kustomer");
    assert_eq!(other["pending"], 0);
    assert_eq!(other["oldest_pending_at"], Value::Null);
}
