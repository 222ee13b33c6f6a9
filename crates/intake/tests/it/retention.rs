//! Retention (`storage.retention`) end to end, on SQLite and PostgreSQL: events delivered a
//! month and a day ago are deleted by the retention duty on the manual clock, and everything
//! that reads them says they expired — `GET /api/v1/events/{id}` (404
//! `expired-by-retention`), the audit and replay and backfill jobs over a window retention cut
//! (400 `expired-by-retention`, naming from when to ask), the dashboard's event page (404, the
//! same words), while a requeue and an audit of a window after the mark still run; `/metrics` counts what was deleted; a copy of a deleted
//! event arriving later is accepted as new.

use std::time::Duration;

use intake_core::{Clock, Timestamp};
use intake_testkit::{config_toml, kustomer, CaptureHandler, TestServer, ADMIN_TOKEN};
use intake_testkit::{DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::{json, Value};

use crate::cluster::TestDb;
use crate::dashboard::Web;
use crate::{wait_delivery, PATIENCE};

const SOURCE: &str = "maelys-kustomer";

async fn server(handler: &CaptureHandler, pg: Option<&TestDb>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_toml(dir.path(), &handler.url(), "");
    if let Some(db) = pg {
        let sqlite = format!("sqlite://{}/intake.db", dir.path().display());
        text = text.replace(&sqlite, &db.url);
    }
    TestServer::start_with(dir, &text).await.unwrap()
}

async fn send(server: &TestServer, message: &str) -> Value {
    let body = kustomer::message_create(message, "email");
    let resp = server
        .send_kustomer(SOURCE, &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Polls until `GET /api/v1/events/{id}` answers 404; returns the problem.
async fn wait_expired(server: &TestServer, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = server
            .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        if status == 404 {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event {id} never expired: {status} {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn window(kind: &str, from: Timestamp, to: Timestamp) -> Value {
    json!({"kind": kind, "source": SOURCE, "from": from.to_rfc3339(), "to": to.to_rfc3339(),
           "dry_run": true})
}

async fn delivered_events_expire_and_readers_say_so(pg: Option<TestDb>) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, pg.as_ref()).await;
    let start = server.clock.now();
    let mut ids = Vec::new();
    for m in ["m1", "m2"] {
        let id = send(&server, m).await["id"].as_str().unwrap().to_string();
        wait_delivery(&server, &id, "delivered", 1).await;
        ids.push(id);
    }

    // A month and a day later: the pass that wakes deletes both.
    server.clock.advance(Duration::from_secs(31 * 86_400));
    for id in &ids {
        let problem = wait_expired(&server, id).await;
        assert_eq!(problem["type"], "urn:intake:problem:expired-by-retention");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("storage.retention"), "{detail}");
    }
    // The dashboard's event page says the same, as a page.
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;
    let page = web.get(&format!("/events/{}", ids[0])).await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(
        page.body
            .contains("storage.retention has removed the events received before"),
        "{}",
        page.body
    );
    // An id from after the mark that does not exist is simply unknown.
    let unknown = intake_core::EventId::generate(server.clock.now());
    let (status, body) = server
        .api(&format!("/api/v1/events/{unknown}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("urn:intake:problem:no-such-event"))
    );

    // The audit of the cut window is refused, with the instant to ask from.
    let hour = Duration::from_secs(3600);
    let (from, to) = (start.minus(hour), start.plus(hour));
    let (status, body) = server
        .api(
            &format!("/api/v1/audit?source={SOURCE}&from={from}&to={to}"),
            ADMIN_TOKEN,
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["type"], "urn:intake:problem:expired-by-retention");
    let mark = start.plus(Duration::from_secs(86_400));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&mark.to_rfc3339()),
        "{body:#}"
    );
    // A window after the mark adds up.
    let now = server.clock.now();
    let (status, body) = server
        .api(
            &format!(
                "/api/v1/audit?source={SOURCE}&from={}&to={now}",
                now.minus(hour)
            ),
            ADMIN_TOKEN,
        )
        .await
        .unwrap();
    assert_eq!((status, &body["adds_up"]), (200, &json!(true)), "{body:#}");

    // Replay of the cut window: refused. Requeue acts on unfinished work, which retention
    // keeps: allowed.
    let (status, body) = server
        .api_send(
            reqwest::Method::POST,
            "/api/v1/recoveries",
            ADMIN_TOKEN,
            Some(window("replay", from, to)),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["type"], "urn:intake:problem:expired-by-retention");
    let (status, body) = server
        .api_send(
            reqwest::Method::POST,
            "/api/v1/recoveries",
            ADMIN_TOKEN,
            Some(window("requeue", from, to)),
        )
        .await
        .unwrap();
    assert!(
        status == 200 || status == 201 || status == 202,
        "{status} {body:#}"
    );

    // What was deleted is on /metrics, from the stored mark: our two events (and a canary
    // sent at start, if the canary duty sent one then), each with its one delivery.
    let metrics = server.metrics().await.unwrap();
    let line = |needle: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{metrics}"))
            .to_string()
    };
    let value = |needle: &str| -> f64 {
        let l = line(needle);
        l.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let events = value("intake_retention_deleted_total{kind=\"events\"}");
    assert!(events >= 2.0, "{events}");
    assert_eq!(
        value("intake_retention_deleted_total{kind=\"deliveries\"}"),
        events
    );
    let last = line("intake_retention_last_pass_timestamp_seconds");
    assert_ne!(
        last, "intake_retention_last_pass_timestamp_seconds 0",
        "{last}"
    );

    // The deleted event's dedupe key went with it: the same webhook now is a new event.
    let again = send(&server, "m1").await;
    assert_eq!(again["duplicate"], json!(false), "{again:#}");
    assert_ne!(again["id"].as_str(), Some(ids[0].as_str()));

    server.server.shutdown().await.unwrap();
    if let Some(db) = pg {
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_delivered_events_expire_and_readers_say_so() {
    delivered_events_expire_and_readers_say_so(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_delivered_events_expire_and_readers_say_so() {
    delivered_events_expire_and_readers_say_so(Some(TestDb::create().await)).await;
}
