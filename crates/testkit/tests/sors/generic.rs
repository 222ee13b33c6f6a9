//! Generic sources: "Acme Desk" (a system that is not one of the six) signing like GitHub,
//! through a real server, and the generic backfill protocol against its endpoint.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::{ApiClient, Backfill, BackfillError, Cursor, Recovered, Window};
use intake_connectors::generic::GenericBackfill;
use intake_connectors::Incoming;
use intake_core::config::{ApiConfig, Config};
use intake_core::{Clock, ManualClock, Timestamp};
use intake_fake_sors::generic::{FakeGeneric, API_TOKEN, BACKFILL_PATH, FIELDS_TOML};
use intake_fake_sors::harness::send_webhooks;
use intake_fake_sors::{FakeSor, Served, World, WorldSpec};
use intake_testkit::{config_toml, CaptureHandler, TestServer, DESTINATION_SECRET};
use serde_json::Value;

const SECRET: &str = "acme-webhook-secret";
const SOURCE: &str = "maelys-acme";
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap()
}

fn world(hours: u64) -> World {
    World::generate(&WorldSpec::mixed(23, start(), hours))
}

fn config(dir: &std::path::Path, handler: &str, api_url: &str) -> String {
    // The common test configuration (tenant `maelys`, destination `handler`) plus this source.
    config_toml(
        dir,
        handler,
        &format!(
            r#"
[[sources]]
id = "{SOURCE}"
tenant = "maelys"
kind = "generic"
secrets = ["{SECRET}"]
destinations = ["handler"]
api = {{ base_url = "{api_url}{BACKFILL_PATH}", token = "{API_TOKEN}" }}
{FIELDS_TOML}
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_delivered_once_with_their_type_and_channel() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &handler.url(), "http://127.0.0.1:9");
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let fake = FakeGeneric::new(&world(2), Arc::new(ManualClock::new(start())));
    let hooks = fake.webhooks(SECRET);
    let url = format!("{}/ingest/{SOURCE}", server.url());
    let report = send_webhooks(&url, &hooks, &[]).await.unwrap();
    assert_eq!(report.delivered.len(), hooks.len(), "{:?}", report.failed);
    // Sent again, every one is a duplicate.
    let again = send_webhooks(&url, &hooks[..10], &[]).await.unwrap();
    assert_eq!(again.delivered.len(), 10);

    let got = handler.wait_for(hooks.len(), PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got_after = handler.received();
    assert_eq!(got.len(), hooks.len());
    assert_eq!(got_after.len(), hooks.len(), "duplicates are not delivered");
    let mut channels = BTreeSet::new();
    for d in &got {
        let body: Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(
            d.header("intake-event-type"),
            body["event"]["type"].as_str().unwrap()
        );
        let expected = match body["data"]["ticket"]["channel"].as_str().unwrap() {
            "email" => "email",
            "chat" => "chat",
            "sms" => "sms",
            "phone" => "voice",
            "instagram" => "social",
            _ => "other",
        };
        assert_eq!(d.header("intake-channel"), expected);
        assert_eq!(
            d.header("intake-occurred-at"),
            body["event"]["created_at"].as_str().unwrap()
        );
        channels.insert(expected);
    }
    assert!(channels.len() >= 5, "{channels:?}");

    // A webhook signed with another secret is refused.
    let forged = fake.webhooks("someone-else");
    let report = send_webhooks(&url, &forged[..1], &[]).await.unwrap();
    assert_eq!(report.failed[0].1, 401);
}

// --- the backfill protocol ---

struct Api {
    fake: Arc<FakeGeneric>,
    served: Served,
    clock: ManualClock,
}

async fn api(make: impl FnOnce(Arc<dyn Clock>) -> FakeGeneric) -> Api {
    let clock = ManualClock::simulated(Timestamp::parse_rfc3339("2026-11-29T09:00:00Z").unwrap());
    let fake = Arc::new(make(Arc::new(clock.clone())));
    let served = Served::start(fake.clone().api()).await.unwrap();
    Api {
        fake,
        served,
        clock,
    }
}

impl Api {
    /// The backfill client exactly as `backfill_for` builds it from a source's configuration.
    fn client(&self, token: &str, per_minute: u32) -> Box<dyn Backfill> {
        let dir = std::path::Path::new("/nonexistent");
        let text = config(dir, "http://127.0.0.1:9/h", &self.served.url()).replace(
            &format!("token = \"{API_TOKEN}\""),
            &format!("token = \"{token}\", rate_limit_per_minute = {per_minute}"),
        );
        let config = Config::from_toml_str(&text).unwrap();
        let source = config.sources.iter().find(|s| s.id == SOURCE).unwrap();
        intake_connectors::backfill_for(source, Arc::new(self.clock.clone())).unwrap()
    }

    /// A client whose statistics the test reads.
    fn direct(&self, per_minute: u32, limit: u32) -> GenericBackfill {
        let dir = std::path::Path::new("/nonexistent");
        let config =
            Config::from_toml_str(&config(dir, "http://127.0.0.1:9/h", &self.served.url()))
                .unwrap();
        let source = config.sources.iter().find(|s| s.id == SOURCE).unwrap();
        let connector = intake_connectors::GenericConnector::new(
            source.signature.clone().unwrap(),
            source.fields.clone().unwrap(),
        );
        let api = ApiConfig {
            rate_limit_per_minute: Some(per_minute),
            ..source.api.clone().unwrap()
        };
        GenericBackfill::new(
            ApiClient::for_api(Arc::new(self.clock.clone()), &api),
            &api,
            connector,
        )
        .with_limit(limit)
    }
}

async fn run(client: &dyn Backfill, window: &Window) -> Vec<Recovered> {
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

fn keys(recovered: &[Recovered]) -> BTreeSet<String> {
    recovered
        .iter()
        .map(|r| r.event.dedupe_key.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_window_bounds_are_inclusive_and_exact() {
    let w = world(3);
    let api = api(|clock| FakeGeneric::new(&w, clock)).await;
    let events = api.fake.events();
    let window = Window {
        from: events[25].at,
        to: events[events.len() - 25].at,
    };
    let got = keys(&run(api.client(API_TOKEN, 6000).as_ref(), &window).await);
    let expected: BTreeSet<String> = events
        .iter()
        .filter(|e| window.contains(e.at))
        .map(|e| format!("event:{}", e.id))
        .collect();
    assert_eq!(got, expected);
    assert!(got.contains(&format!("event:{}", events[25].id)));
    let tight = Window {
        from: window.from.plus(Duration::from_millis(1)),
        to: window.to.minus(Duration::from_millis(1)),
    };
    let inner = keys(&run(api.client(API_TOKEN, 6000).as_ref(), &tight).await);
    assert!(!inner.contains(&format!("event:{}", events[25].id)));
    assert!(!inner.contains(&format!("event:{}", events[events.len() - 25].id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_continues_past_the_endpoint_page_cap() {
    let w = world(3);
    let api = api(|clock| FakeGeneric::new(&w, clock).with_page_cap(7)).await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(4 * 3600)),
    };
    let got = run(api.client(API_TOKEN, 6000).as_ref(), &window).await;
    assert_eq!(got.len(), api.fake.events().len());
    assert_eq!(keys(&got).len(), got.len());
    let served = api
        .fake
        .requests()
        .iter()
        .filter(|l| l.starts_with("GET"))
        .count();
    assert_eq!(served, api.fake.events().len().div_ceil(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_waits_out_429s_and_paces_to_its_budget() {
    let w = world(3);
    let api = api(|clock| {
        FakeGeneric::new(&w, clock)
            .with_rate_limit(4)
            .with_page_cap(10)
    })
    .await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(4 * 3600)),
    };
    let client = api.direct(600, 100);
    let got = run(&client, &window).await;
    assert_eq!(got.len(), api.fake.events().len());
    let stats = client.client().stats();
    assert!(stats.throttled > 0, "{stats:?}");

    let api = api_at(&w, 1000, 10).await;
    let begun = api.clock.now();
    let client = api.direct(12, 100);
    let got = run(&client, &window).await;
    assert_eq!(got.len(), api.fake.events().len());
    let stats = client.client().stats();
    assert_eq!(stats.throttled, 0);
    // 12 a minute: one every 5 s after a burst of 1.2 (a tenth of the budget).
    let min = Duration::from_secs_f64(5.0 * (stats.requests as f64 - 1.2) - 0.001);
    assert!(api.clock.now().since(begun) >= min, "{stats:?}");
}

async fn api_at(w: &World, per_minute: u32, cap: usize) -> Api {
    api(|clock| {
        FakeGeneric::new(w, clock)
            .with_rate_limit(per_minute)
            .with_page_cap(cap)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_with_a_wrong_token_is_unauthorized() {
    let w = world(1);
    let api = api(|clock| FakeGeneric::new(&w, clock)).await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(3600)),
    };
    let err = api
        .client("wrong", 600)
        .page(&window, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::Unauthorized(401)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resumes_from_a_stored_cursor() {
    let w = world(3);
    let api = api_at(&w, 6000, 9).await;
    let window = Window {
        from: start(),
        to: start().plus(Duration::from_secs(4 * 3600)),
    };
    let whole = keys(&run(api.client(API_TOKEN, 6000).as_ref(), &window).await);
    let first = api.client(API_TOKEN, 6000);
    let p1 = first.page(&window, None).await.unwrap();
    let mut seen = keys(&p1.events);
    let stored = serde_json::to_string(&p1.next.unwrap()).unwrap();
    drop(first);
    let second = api.client(API_TOKEN, 6000);
    let mut cursor = Some(serde_json::from_str::<Cursor>(&stored).unwrap());
    while let Some(c) = cursor {
        let page = second.page(&window, Some(&c)).await.unwrap();
        seen.extend(keys(&page.events));
        cursor = page.next;
    }
    assert_eq!(seen, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_recovers_exactly_the_lost_webhooks() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let w = world(4);
    let api = api_at(&w, 600, 25).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &handler.url(), &api.served.url());
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let url = format!("{}/ingest/{SOURCE}", server.url());

    let hooks = api.fake.webhooks(SECRET);
    let lost_from = start().plus(Duration::from_secs(3600 + 11 * 60));
    let lost_to = start().plus(Duration::from_secs(2 * 3600 + 29 * 60));
    let report = send_webhooks(&url, &hooks, &[(lost_from, lost_to)])
        .await
        .unwrap();
    assert!(report.failed.is_empty());
    assert!(report.lost.len() > 10);
    // Every event is reproducible: the endpoint returns the events themselves.
    let lost: BTreeSet<String> = report
        .lost
        .iter()
        .map(|w| format!("event:{}", w.about))
        .collect();

    let client = api.client(API_TOKEN, 600);
    let exact = run(
        client.as_ref(),
        &Window {
            from: lost_from,
            to: lost_to,
        },
    )
    .await;
    assert_eq!(keys(&exact), lost);

    let connector = intake_connectors::for_source(
        Config::from_toml_str(&text)
            .unwrap()
            .sources
            .iter()
            .find(|s| s.id == SOURCE)
            .unwrap(),
    )
    .unwrap();
    let no_headers = http::HeaderMap::new();
    let wider = run(
        client.as_ref(),
        &Window {
            from: lost_from.minus(Duration::from_secs(600)),
            to: lost_to.plus(Duration::from_secs(600)),
        },
    )
    .await;
    assert!(wider.len() > exact.len());
    for r in &wider {
        let parsed = connector
            .parse(&Incoming {
                headers: &no_headers,
                body: &r.body,
                now: start(),
            })
            .unwrap();
        assert_eq!(parsed, r.event);
        // Re-ingested (signed as Acme Desk signs), a received event is a duplicate and a lost
        // one is stored.
        let hook = intake_fake_sors::Webhook {
            at: start(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-signature-256".into(), sign(&r.body)),
            ],
            body: r.body.clone(),
            about: r.event.dedupe_key.clone(),
        };
        let resp = server
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-signature-256", &hook.headers[1].1)
            .body(hook.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ack: Value = resp.json().await.unwrap();
        assert_eq!(ack["duplicate"], !lost.contains(&r.event.dedupe_key));
    }
}

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
