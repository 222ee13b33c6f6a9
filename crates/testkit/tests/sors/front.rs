//! Front: the fake's application and rule webhooks through a real server, the setup challenge,
//! and the backfill client against the fake's `GET /events`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::{ApiClient, Backfill, Cursor, Recovered, Window};
use intake_connectors::front::FrontBackfill;
use intake_connectors::{Connector, FrontConnector, Incoming};
use intake_core::config::ApiConfig;
use intake_core::{Clock, ManualClock, Timestamp};
use intake_fake_sors::front::{FakeFront, API_TOKEN};
use intake_fake_sors::harness::send_webhooks;
use intake_fake_sors::{FakeSor, Served, Webhook, World, WorldSpec};
use intake_testkit::{config_toml, CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET};
use serde_json::Value;

const APP_SECRET: &str = "front-app-secret";
const API_SECRET: &str = "front-api-secret";
const SOURCE: &str = "maelys-front";
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap()
}

fn world(hours: u64) -> World {
    World::generate(&WorldSpec::mixed(11, start(), hours))
}

fn config(dir: &std::path::Path, handler: &str, api_url: &str, tolerance: &str) -> String {
    // The common test configuration (tenant `maelys`, destination `handler`) plus this source.
    config_toml(
        dir,
        handler,
        &format!(
            r#"
[[sources]]
id = "{SOURCE}"
tenant = "maelys"
kind = "front"
secrets = ["{APP_SECRET}", "{API_SECRET}"]
destinations = ["handler"]
tolerance = "{tolerance}"
api = {{ base_url = "{api_url}", token = "{API_TOKEN}" }}
"#
        ),
    )
}

async fn server(handler: &CaptureHandler, tolerance: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &handler.url(), "http://127.0.0.1:9", tolerance);
    TestServer::start_with(dir, &text).await.unwrap()
}

async fn post(server: &TestServer, w: &Webhook) -> (u16, Value) {
    let mut req = server
        .http
        .post(format!("{}/ingest/{SOURCE}", server.url()))
        .body(w.body.clone());
    for (k, v) in &w.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn wait_delivered(server: &TestServer, id: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, event) = server
            .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        if event["deliveries"][0]["state"] == "delivered" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered: {event:#}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The normalized channel a Front event should be counted under, from the documented message
/// types (written here independently of the connector's table).
fn expected_channel(resource: &Value) -> &'static str {
    let raw = if resource["target"]["_meta"]["type"] == "message" {
        &resource["target"]["data"]["type"]
    } else {
        &resource["conversation"]["last_message"]["type"]
    };
    match raw.as_str() {
        Some("email") => "email",
        Some("front_chat" | "intercom") => "chat",
        Some("sms" | "whatsapp") => "sms",
        Some("call") => "voice",
        Some("facebook" | "tweet_dm") => "social",
        _ => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_webhooks_are_delivered_once_with_their_type_and_channel() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, "5m").await;
    let world = world(2);
    let fake = FakeFront::new(&world, Arc::new(ManualClock::new(start())));
    let hooks = fake.webhooks(APP_SECRET);
    assert!(hooks.len() > 50, "{} webhooks", hooks.len());
    let by_id: BTreeMap<&str, &intake_fake_sors::front::FrontEvent> =
        fake.events().iter().map(|e| (e.id.as_str(), e)).collect();

    for (i, w) in hooks.iter().enumerate() {
        // Each webhook arrives when Front sends it, so its timestamp is fresh.
        server.clock.set(w.at);
        let (status, ack) = post(&server, w).await;
        assert_eq!(status, 200, "{}: {ack}", w.about);
        assert_eq!(ack["duplicate"], false);
        // The clock jumps minutes between webhooks; a delivery still in flight at a jump
        // would see its lease expire and be sent again (at-least-once, correctly). Letting
        // each one finish first keeps "delivered once" a statement about dedupe.
        wait_delivered(&server, ack["id"].as_str().unwrap()).await;
        if i % 10 == 0 {
            // Front retries a request it saw no answer to: the same event is one event.
            let (status, again) = post(&server, w).await;
            assert_eq!(status, 200);
            assert_eq!(again["duplicate"], true);
            assert_eq!(again["id"], ack["id"]);
        }
    }

    let got = handler.wait_for(hooks.len(), PATIENCE).await;
    assert_eq!(got.len(), hooks.len(), "every webhook delivered once");
    let ids: BTreeSet<_> = got.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), hooks.len(), "no event delivered twice");
    let mut channels = BTreeSet::new();
    for d in &got {
        assert!(d.signature_valid);
        let body: Value = serde_json::from_slice(&d.body).unwrap();
        let event = by_id[body["payload"]["id"].as_str().unwrap()];
        assert_eq!(d.header("intake-event-type"), event.kind);
        assert_eq!(
            d.header("intake-channel"),
            expected_channel(&event.resource)
        );
        assert_eq!(d.header("intake-origin"), "webhook");
        assert_eq!(
            d.header("intake-occurred-at"),
            event.at.to_rfc3339(),
            "occurred-at is the event's emitted_at"
        );
        channels.insert(d.header("intake-channel").to_string());
    }
    for c in ["email", "chat", "sms", "voice", "social"] {
        assert!(channels.contains(c), "{c} missing from {channels:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_webhooks_are_accepted_on_the_same_source() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, "5m").await;
    let fake = FakeFront::new(&world(1), Arc::new(ManualClock::new(start())));
    let hooks = fake.rule_webhooks(API_SECRET);
    let report = send_webhooks(&format!("{}/ingest/{SOURCE}", server.url()), &hooks, &[])
        .await
        .unwrap();
    assert_eq!(report.delivered.len(), hooks.len(), "{:?}", report.failed);
    let got = handler.wait_for(hooks.len(), PATIENCE).await;
    assert_eq!(got.len(), hooks.len());
    // The source holds the app secret and the API secret; a rule webhook signed with neither
    // is refused.
    let forged = fake.rule_webhooks("not-a-configured-secret");
    let (status, _) = post(&server, &forged[0]).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_challenge_is_answered_and_nothing_is_stored() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, "5m").await;
    let fake = FakeFront::new(&world(1), Arc::new(ManualClock::new(start())));
    let now = server.clock.now();
    let challenge = fake.challenge(APP_SECRET, "3f9a1c-challenge", now);

    let (status, body) = post(&server, &challenge).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({ "challenge": "3f9a1c-challenge" }));

    // Unsigned, the same request is refused before any handshake.
    let unsigned = Webhook {
        headers: challenge
            .headers
            .iter()
            .filter(|(k, _)| k != "x-front-signature")
            .cloned()
            .collect(),
        ..challenge.clone()
    };
    let (status, _) = post(&server, &unsigned).await;
    assert_eq!(status, 401);
    // Signed with another key, too.
    let forged = fake.challenge("someone-else", "3f9a1c-challenge", now);
    let (status, _) = post(&server, &forged).await;
    assert_eq!(status, 401);

    let (status, events) = server.api("/api/v1/events", ADMIN_TOKEN).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(events["data"].as_array().map(Vec::len), Some(0), "{events}");
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("intake_requests_total")
                && l.contains("outcome=\"handshake\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        handler.received().is_empty(),
        "a handshake is not delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_application_webhooks_are_refused() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, "5m").await;
    let fake = FakeFront::new(&world(1), Arc::new(ManualClock::new(start())));
    let w = &fake.webhooks(APP_SECRET)[0];
    server.clock.set(w.at.plus(Duration::from_secs(301)));
    let (status, body) = post(&server, w).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("timestamp"),
        "{body}"
    );
    server.clock.set(w.at.plus(Duration::from_secs(299)));
    let (status, _) = post(&server, w).await;
    assert_eq!(status, 200);
}

// --- backfill against the fake API ---

struct Api {
    fake: Arc<FakeFront>,
    served: Served,
    clock: ManualClock,
}

async fn api(fake: impl FnOnce(Arc<dyn Clock>) -> FakeFront) -> Api {
    let clock = ManualClock::simulated(Timestamp::parse_rfc3339("2026-11-29T09:00:00Z").unwrap());
    let fake = Arc::new(fake(Arc::new(clock.clone())));
    let served = Served::start(fake.clone().api()).await.unwrap();
    Api {
        fake,
        served,
        clock,
    }
}

impl Api {
    fn client(&self, token: &str, per_minute: u32) -> FrontBackfill {
        let api = ApiConfig {
            base_url: self.served.url(),
            token: token.to_string(),
            username: None,
            rate_limit_per_minute: Some(per_minute),
        };
        FrontBackfill::new(ApiClient::for_api(Arc::new(self.clock.clone()), &api), &api)
    }
}

async fn run(client: &FrontBackfill, window: &Window) -> Vec<Recovered> {
    let mut all = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..10_000 {
        let page = client.page(window, cursor.as_ref()).await.unwrap();
        all.extend(page.events);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
    panic!("backfill did not finish");
}

fn ids(recovered: &[Recovered]) -> BTreeSet<String> {
    recovered
        .iter()
        .map(|r| r.event.sor_event_id.clone().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_window_bounds_are_inclusive_and_exact() {
    let w = world(3);
    let api = api(|clock| FakeFront::new(&w, clock)).await;
    let events = api.fake.events();
    let (from, to) = (events[40].at, events[events.len() - 40].at);
    let window = Window { from, to };
    let got = ids(&run(&api.client(API_TOKEN, 6000), &window).await);
    let expected: BTreeSet<String> = events
        .iter()
        .filter(|e| window.contains(e.at))
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(got, expected);
    assert!(got.contains(&events[40].id) && got.contains(&events[events.len() - 40].id));
    // The neighbours just outside (one millisecond or more away) are not recovered.
    for e in events {
        if e.at < from || e.at > to {
            assert!(!got.contains(&e.id), "{} at {} is outside", e.id, e.at);
        }
    }
    let tight = Window {
        from: from.plus(Duration::from_millis(1)),
        to: to.minus(Duration::from_millis(1)),
    };
    let inner = ids(&run(&api.client(API_TOKEN, 6000), &tight).await);
    assert!(!inner.contains(&events[40].id));
    assert!(!inner.contains(&events[events.len() - 40].id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_follows_pages_capped_small() {
    let w = world(3);
    let api = api(|clock| FakeFront::new(&w, clock).with_max_page_size(7)).await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(4 * 3600)),
    };
    let got = run(&api.client(API_TOKEN, 6000), &window).await;
    assert_eq!(got.len(), api.fake.events().len(), "every event found");
    assert_eq!(ids(&got).len(), got.len(), "no event twice");
    let pages = api
        .fake
        .requests()
        .iter()
        .filter(|l| l.starts_with("GET /events"))
        .count();
    assert_eq!(pages, api.fake.events().len().div_ceil(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_waits_out_429s_and_paces_to_its_budget() {
    let w = world(3);
    // Front allows 5 a minute; the client thinks it may send 600. Front's limit is per
    // company, and another integration has just spent this minute's budget, so the first
    // request is refused; after it the client follows `x-ratelimit-remaining` and waits for
    // `x-ratelimit-reset` instead of being refused again.
    let api = api(|clock| {
        FakeFront::new(&w, clock)
            .with_rate_limit(5)
            .with_max_page_size(20)
    })
    .await;
    api.fake.spend_budget(5);
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(4 * 3600)),
    };
    let client = api.client(API_TOKEN, 600);
    let got = run(&client, &window).await;
    assert_eq!(got.len(), api.fake.events().len());
    let stats = client.client().stats();
    assert!(stats.throttled > 0, "{stats:?}");
    let refused = api
        .fake
        .requests()
        .iter()
        .filter(|l| l.starts_with("429"))
        .count();
    assert_eq!(stats.throttled, refused as u64);
    // Never more than Front's 5 a minute: the pages took (requests / 5) minutes at least.
    let served = stats.requests - stats.throttled;
    assert!(
        api.clock.now().since(start_of(&api)) >= Duration::from_secs(60 * ((served - 1) / 5)),
        "{stats:?} in {:?}",
        api.clock.now().since(start_of(&api))
    );

    // With a budget below Front's limit, the client never hits a 429 and spaces its requests
    // by its budget on the (simulated) clock: 10 a minute is one every 6 s after a burst of 1.
    let api = api_with(&w, 100, 20).await;
    let begun = api.clock.now();
    let client = api.client(API_TOKEN, 10);
    let got = run(&client, &window).await;
    assert_eq!(got.len(), api.fake.events().len());
    let stats = client.client().stats();
    assert_eq!(stats.throttled, 0);
    let elapsed = api.clock.now().since(begun);
    // A burst of one, then one every 6 s.
    let min = Duration::from_secs(6 * (stats.requests - 1));
    assert!(elapsed >= min, "{} requests in {elapsed:?}", stats.requests);
}

fn start_of(_: &Api) -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-29T09:00:00Z").unwrap()
}

async fn api_with(w: &World, per_minute: u32, page: usize) -> Api {
    api(|clock| {
        FakeFront::new(w, clock)
            .with_rate_limit(per_minute)
            .with_max_page_size(page)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_with_a_wrong_token_is_unauthorized() {
    let w = world(1);
    let api = api(|clock| FakeFront::new(&w, clock)).await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(3600)),
    };
    let err = api
        .client("wrong-token", 600)
        .page(&window, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            intake_connectors::backfill::BackfillError::Unauthorized(401)
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resumes_from_a_stored_cursor() {
    let w = world(3);
    let api = api_with(&w, 6000, 10).await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(4 * 3600)),
    };
    let whole = ids(&run(&api.client(API_TOKEN, 6000), &window).await);

    // Two pages, then the process "dies": only the cursor survives, as JSON text.
    let first = api.client(API_TOKEN, 6000);
    let mut seen = BTreeSet::new();
    let p1 = first.page(&window, None).await.unwrap();
    seen.extend(ids(&p1.events));
    let p2 = first.page(&window, p1.next.as_ref()).await.unwrap();
    seen.extend(ids(&p2.events));
    let stored = serde_json::to_string(&p2.next.unwrap()).unwrap();
    drop(first);

    let cursor: Cursor = serde_json::from_str(&stored).unwrap();
    let second = api.client(API_TOKEN, 6000);
    let mut cursor = Some(cursor);
    while let Some(c) = cursor {
        let page = second.page(&window, Some(&c)).await.unwrap();
        seen.extend(ids(&page.events));
        cursor = page.next;
    }
    assert_eq!(seen, whole);
    assert!(matches!(
        second
            .page(&window, Some(&Cursor(serde_json::json!(42))))
            .await,
        Err(intake_connectors::backfill::BackfillError::BadCursor(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_recovers_exactly_the_lost_webhooks() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let w = world(4);
    let api = api_with(&w, 100, 100).await;
    // The webhooks are replayed long after they were sent, so the test source accepts any
    // timestamp age; freshness is tested above.
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &handler.url(), &api.served.url(), "3650d");
    let server = TestServer::start_with(dir, &text).await.unwrap();

    let hooks = api.fake.webhooks(APP_SECRET);
    let lost_from = start().plus(Duration::from_secs(3600 + 17 * 60));
    let lost_to = start().plus(Duration::from_secs(2 * 3600 + 3 * 60));
    let report = send_webhooks(
        &format!("{}/ingest/{SOURCE}", server.url()),
        &hooks,
        &[(lost_from, lost_to)],
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.lost.len() > 10, "{} lost", report.lost.len());

    // Every Front event is reproducible: the API serves the event log itself.
    let lost: BTreeSet<String> = report
        .lost
        .iter()
        .map(|w| format!("event:{}", w.about))
        .collect();
    let exact = Window {
        from: lost_from,
        to: lost_to,
    };
    let client = api.client(API_TOKEN, 600);
    let recovered = run(&client, &exact).await;
    let keys: BTreeSet<String> = recovered
        .iter()
        .map(|r| r.event.dedupe_key.clone())
        .collect();
    assert_eq!(keys, lost, "backfill finds exactly the lost events");

    // Each recovered body is a Front webhook that parses to its recovered event.
    let connector = FrontConnector::default();
    let no_headers = http::HeaderMap::new();
    for r in &recovered {
        let parsed = connector
            .parse(&Incoming {
                headers: &no_headers,
                body: &r.body,
                now: start(),
            })
            .unwrap();
        assert_eq!(parsed, r.event);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body["authorization"]["id"],
            intake_fake_sors::front::COMPANY_ID
        );
        assert_eq!(body["type"], body["payload"]["type"]);
    }

    // With an overlap margin the backfill also finds received events; ingesting what it found
    // stores the lost ones and is a duplicate for every received one.
    let margin = Window {
        from: lost_from.minus(Duration::from_secs(600)),
        to: lost_to.plus(Duration::from_secs(600)),
    };
    let wider = run(&client, &margin).await;
    assert!(wider.len() > recovered.len());
    let now = start().plus(Duration::from_secs(5 * 3600));
    server.clock.set(now);
    for r in &wider {
        let signature = intake_connectors::front::sign(APP_SECRET, now.as_millis(), &r.body);
        let replay = Webhook {
            at: now,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "x-front-request-timestamp".into(),
                    now.as_millis().to_string(),
                ),
                ("x-front-signature".into(), signature),
            ],
            body: r.body.clone(),
            about: r.event.dedupe_key.clone(),
        };
        let (status, ack) = post(&server, &replay).await;
        assert_eq!(status, 200);
        let was_lost = lost.contains(&r.event.dedupe_key);
        assert_eq!(ack["duplicate"], !was_lost, "{}", r.event.dedupe_key);
    }
}
