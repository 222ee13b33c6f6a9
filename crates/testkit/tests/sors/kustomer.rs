//! Kustomer: the fake org's webhooks through a real intake server, and the backfill client
//! against the fake org's API (search, 100-page cap, messages, rate limits).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use intake_connectors::backfill::{ApiClient, Backfill, BackfillError, Cursor, Recovered, Window};
use intake_connectors::kustomer::backfill::KustomerBackfill;
use intake_connectors::{Connector, Incoming, KustomerConnector};
use intake_core::config::{ApiConfig, SourceConfig};
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::{Clock, ManualClock, Timestamp};
use intake_fake_sors::kustomer::{self as fake, KustomerFake, KustomerLimits};
use intake_fake_sors::{send_webhooks, FakeSor, Served, Webhook, World, WorldSpec};
use intake_testkit::{CaptureHandler, TestServer, DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(30);
const API_KEY: &str = "kustomer-api-key";

fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T08:00:00Z").unwrap()
}

fn world(seed: u64, hours: u64) -> World {
    World::generate(&WorldSpec::mixed(seed, start(), hours))
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// A simulated clock after the world's end (a backfill runs after the outage).
fn sim_clock() -> ManualClock {
    ManualClock::simulated(Timestamp::parse_rfc3339("2026-11-28T09:00:20Z").unwrap())
}

async fn serve(fake: KustomerFake) -> (Arc<KustomerFake>, Served) {
    let fake = Arc::new(fake);
    let served = Served::start(fake.clone().api()).await.unwrap();
    (fake, served)
}

fn api(url: &str, token: &str, per_minute: u32) -> ApiConfig {
    ApiConfig {
        base_url: url.to_string(),
        token: token.to_string(),
        username: None,
        rate_limit_per_minute: Some(per_minute),
    }
}

fn client(url: &str, token: &str, per_minute: u32, clock: &ManualClock) -> KustomerBackfill {
    let api = api(url, token, per_minute);
    KustomerBackfill::new(ApiClient::for_api(Arc::new(clock.clone()), &api), &api)
}

/// Reads every page of a window.
async fn backfill_all(b: &dyn Backfill, w: &Window) -> Result<Vec<Recovered>, BackfillError> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..10_000 {
        let page = b.page(w, cursor.as_ref()).await?;
        out.extend(page.events);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
    panic!("backfill did not finish");
}

fn keys(events: &[Recovered]) -> BTreeSet<String> {
    events.iter().map(|r| r.event.dedupe_key.clone()).collect()
}

fn assert_unique(events: &[Recovered]) {
    let keys = keys(events);
    assert_eq!(
        keys.len(),
        events.len(),
        "a backfill recovered some event twice"
    );
}

fn headers_of(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn parse(headers: &[(String, String)], body: &[u8]) -> NormalizedEvent {
    let h = headers_of(headers);
    KustomerConnector
        .parse(&Incoming {
            headers: &h,
            body,
            now: start(),
        })
        .unwrap()
}

fn parse_webhook(w: &Webhook) -> NormalizedEvent {
    parse(&w.headers, &w.body)
}

/// The webhooks a backfill can reproduce: every creation, and the last update of each
/// conversation (the API shows current objects only).
fn reproducible(all: &[Webhook], some: &[Webhook]) -> BTreeSet<String> {
    let mut last_update: HashMap<String, Timestamp> = HashMap::new();
    for w in all {
        let e = parse_webhook(w);
        if e.event_type == "kustomer.conversation.update" {
            let at = e.occurred_at.unwrap();
            let id = e.object_id.unwrap();
            let slot = last_update.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        }
    }
    some.iter()
        .map(parse_webhook)
        .filter(|e| {
            e.event_type.ends_with(".create")
                || e.object_id.as_ref().and_then(|id| last_update.get(id)) == e.occurred_at.as_ref()
        })
        .map(|e| e.dedupe_key)
        .collect()
}

/// The channel intake should report for a webhook, read from the fake's body with core's
/// normalization (not the connector's parsing).
fn expected_channel(w: &Webhook) -> &'static str {
    let v: Value = serde_json::from_slice(&w.body).unwrap();
    let attrs = &v["data"]["attributes"];
    let raw = attrs["channel"]
        .as_str()
        .or_else(|| attrs["channels"][0].as_str());
    raw.map_or(Channel::Other, Channel::normalize).as_str()
}

async fn intake() -> (CaptureHandler, TestServer) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    (handler, server)
}

#[tokio::test]
async fn webhooks_are_delivered_once_each_with_their_channel_and_type() {
    let fake = KustomerFake::new(world(11, 1), Arc::new(sim_clock()), API_KEY);
    let hooks = fake.webhooks(SOURCE_SECRET);
    assert!(hooks.len() > 50, "{} webhooks", hooks.len());
    let (handler, server) = intake().await;
    let url = format!("{}/ingest/maelys-kustomer", server.url());

    let sent = send_webhooks(&url, &hooks, &[]).await.unwrap();
    assert_eq!(sent.delivered.len(), hooks.len(), "{:?}", sent.failed);
    // Kustomer retries and may send an event twice: the second copy is a duplicate.
    let again = send_webhooks(&url, &hooks[..20], &[]).await.unwrap();
    assert_eq!(again.delivered.len(), 20);

    let got = handler.wait_for(hooks.len(), PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_now = handler.received();
    assert_eq!(got.len(), hooks.len());
    assert_eq!(got_now.len(), hooks.len(), "duplicates were delivered");

    let by_body: HashMap<&[u8], &Webhook> = hooks.iter().map(|w| (w.body.as_slice(), w)).collect();
    let mut seen = BTreeSet::new();
    for d in &got_now {
        assert!(d.signature_valid);
        let w = by_body
            .get(d.body.as_ref())
            .expect("the handler receives the webhook's own body");
        assert!(seen.insert(d.body.clone()), "delivered twice");
        let event = &w.headers[1].1;
        assert_eq!(d.header("intake-event-type"), event);
        assert_eq!(d.header("intake-channel"), expected_channel(w), "{event}");
        assert_eq!(d.header("intake-origin"), "webhook");
    }
    // The mix is realistic: several channels, and all three event types.
    let channels: BTreeSet<&str> = got_now.iter().map(|d| d.header("intake-channel")).collect();
    assert!(channels.len() >= 4, "{channels:?}");
}

#[tokio::test]
async fn backfill_recovers_exactly_the_lost_webhooks_and_the_rest_are_duplicates() {
    let clock = sim_clock();
    let world = world(21, 3);
    let (_fake, api_server) = serve(KustomerFake::new(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
    ))
    .await;
    let hooks = KustomerFake::new(world, Arc::new(clock.clone()), API_KEY).webhooks(SOURCE_SECRET);
    let (handler, server) = intake().await;
    let url = format!("{}/ingest/maelys-kustomer", server.url());

    // 40 minutes of webhooks acknowledged and dropped, as in the story.
    let lost_from = start().plus(minutes(70));
    let lost_to = start().plus(minutes(110));
    let sent = send_webhooks(&url, &hooks, &[(lost_from, lost_to)])
        .await
        .unwrap();
    assert!(sent.failed.is_empty());
    assert!(sent.lost.len() > 20, "{} lost", sent.lost.len());

    // The backfill client as a recovery job would build it, from the source's configuration.
    let source: SourceConfig = serde_json::from_value(serde_json::json!({
        "id": "maelys-kustomer", "tenant": "maelys", "kind": "kustomer",
        "secrets": [SOURCE_SECRET], "destinations": ["handler"],
        "api": { "base_url": api_server.url(), "token": API_KEY, "rate_limit_per_minute": 600 }
    }))
    .unwrap();
    let backfill = intake_connectors::backfill_for(&source, Arc::new(clock.clone())).unwrap();
    let window = Window {
        from: lost_from.minus(minutes(1)),
        to: lost_to.plus(minutes(1)),
    };
    let recovered = backfill_all(backfill.as_ref(), &window).await.unwrap();
    assert_unique(&recovered);

    for r in &recovered {
        assert_eq!(
            parse(&r.headers, &r.body),
            r.event,
            "body and event disagree"
        );
        assert!(window.contains(r.event.occurred_at.unwrap()));
        assert!(r.event.conversation_id.is_some());
    }
    let received: BTreeSet<String> = sent
        .delivered
        .iter()
        .map(|w| parse_webhook(w).dedupe_key)
        .collect();
    let lost = reproducible(&hooks, &sent.lost);
    let new: BTreeSet<String> = keys(&recovered).difference(&received).cloned().collect();
    assert_eq!(
        new, lost,
        "recovered minus received must be exactly the lost reproducible webhooks"
    );
    // Some lost updates were intermediate ones: not reproducible, and not claimed.
    assert!(lost.len() < sent.lost.len());

    // Ingesting what was recovered: the lost ones are new, everything else a duplicate.
    let before = handler.wait_for(sent.delivered.len(), PATIENCE).await.len();
    assert_eq!(before, sent.delivered.len());
    for r in &recovered {
        let mut req = server
            .http
            .post(&url)
            .header(
                "x-kustomer-webhook-signature",
                intake_connectors::kustomer::sign(SOURCE_SECRET, &r.body),
            )
            .body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ack: Value = resp.json().await.unwrap();
        assert_eq!(
            ack["duplicate"].as_bool(),
            Some(received.contains(&r.event.dedupe_key)),
            "{}",
            r.event.dedupe_key
        );
    }
    let after = handler.wait_for(before + lost.len(), PATIENCE).await;
    assert_eq!(after.len(), before + lost.len());
}

#[tokio::test]
async fn window_bounds_are_inclusive_to_the_millisecond() {
    let clock = sim_clock();
    let world = world(31, 2);
    // A message in the middle of the world, after its conversation's first.
    let (c, m) = world
        .conversations
        .iter()
        .filter(|c| c.messages.len() >= 2 && c.created_at > start().plus(minutes(30)))
        .map(|c| (c, &c.messages[1]))
        .next()
        .expect("a conversation with a reply");
    let key = format!("message:{}:create", fake::message_id(m));
    let (_f, served) = serve(KustomerFake::new(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
    ))
    .await;
    let b = client(&served.url(), API_KEY, 6000, &clock);
    let ms = Duration::from_millis(1);
    let hour = minutes(60);
    let has = |events: Vec<Recovered>| keys(&events).contains(&key);

    let from_exact = Window {
        from: m.created_at,
        to: m.created_at.plus(hour),
    };
    assert!(
        has(backfill_all(&b, &from_exact).await.unwrap()),
        "starts at the message"
    );
    let from_after = Window {
        from: m.created_at.plus(ms),
        to: m.created_at.plus(hour),
    };
    assert!(
        !has(backfill_all(&b, &from_after).await.unwrap()),
        "starts just after it"
    );
    let to_exact = Window {
        from: m.created_at.minus(hour),
        to: m.created_at,
    };
    assert!(
        has(backfill_all(&b, &to_exact).await.unwrap()),
        "ends at the message"
    );
    let to_before = Window {
        from: m.created_at.minus(hour),
        to: m.created_at.minus(ms),
    };
    assert!(
        !has(backfill_all(&b, &to_before).await.unwrap()),
        "ends just before it"
    );

    // The conversation's creation, likewise.
    let create = format!("conversation:{}:create", fake::conversation_id(c));
    let at = Window {
        from: c.created_at,
        to: c.created_at,
    };
    assert!(keys(&backfill_all(&b, &at).await.unwrap()).contains(&create));
    let after = Window {
        from: c.created_at.plus(ms),
        to: c.created_at.plus(hour),
    };
    assert!(!keys(&backfill_all(&b, &after).await.unwrap()).contains(&create));
}

/// What a generous fake and a one-page-per-search client agree the window holds.
async fn reference(world: &World, w: &Window) -> BTreeSet<String> {
    let clock = sim_clock();
    let (_f, served) = serve(KustomerFake::new(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
    ))
    .await;
    let b = client(&served.url(), API_KEY, 6000, &clock).with_page_size(500);
    let all = backfill_all(&b, w).await.unwrap();
    assert_unique(&all);
    keys(&all)
}

#[tokio::test]
async fn the_page_cap_is_passed_by_searching_again_from_the_last_update() {
    let world = world(41, 4);
    let w = Window {
        from: start(),
        to: start().plus(minutes(240)),
    };
    let expected = reference(&world, &w).await;
    assert!(expected.len() > 200, "{}", expected.len());

    // The fake serves 2 pages per search and the client reads 5 conversations a page: it must
    // search again many times (and notice the cap from `meta` alone).
    let clock = sim_clock();
    let limits = KustomerLimits {
        page_cap: 2,
        ..KustomerLimits::default()
    };
    let (f, served) = serve(KustomerFake::with_limits(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
        limits,
    ))
    .await;
    let b = client(&served.url(), API_KEY, 6000, &clock).with_page_size(5);
    let got = backfill_all(&b, &w).await.unwrap();
    assert_unique(&got);
    assert_eq!(keys(&got), expected);
    let searches: Vec<String> = f
        .log
        .all()
        .into_iter()
        .filter(|l| l.contains("/search"))
        .collect();
    assert!(
        searches.iter().all(|l| l.starts_with("POST")),
        "a search was refused: {searches:?}"
    );
    let restarts = searches.iter().filter(|l| l.contains("page=1&")).count();
    assert!(restarts > 5, "{restarts} searches");

    // A client that knows the cap re-windows without being told.
    let clock = sim_clock();
    let (f, served) = serve(KustomerFake::new(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
    ))
    .await;
    let b = client(&served.url(), API_KEY, 6000, &clock)
        .with_page_size(5)
        .with_page_cap(3);
    let got = backfill_all(&b, &w).await.unwrap();
    assert_unique(&got);
    assert_eq!(keys(&got), expected);
    assert!(f.log.all().iter().all(|l| !l.contains("page=4&")));
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_the_budget_paces_requests() {
    let world = world(51, 2);
    let w = Window {
        from: start(),
        to: start().plus(minutes(120)),
    };
    let expected = reference(&world, &w).await;

    // A client allowing itself far more than the org's tight limits: it meets 429s and waits
    // them out on the simulated clock.
    let clock = sim_clock();
    let limits = KustomerLimits {
        per_minute: 40,
        search_per_minute: 2,
        ..KustomerLimits::default()
    };
    let (f, served) = serve(KustomerFake::with_limits(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
        limits,
    ))
    .await;
    let b = client(&served.url(), API_KEY, 6000, &clock).with_page_size(10);
    let got = backfill_all(&b, &w).await.unwrap();
    assert_eq!(keys(&got), expected);
    let stats = b.api_client().stats();
    assert!(stats.throttled > 0, "{stats:?}");
    assert!(f.log.all().iter().any(|l| l.starts_with("429 ")));

    // A client within its budget (20 a minute: a burst of 2, then one every 3 s) is never
    // refused and takes at least the time its budget implies.
    let clock = sim_clock();
    let (f, served) = serve(KustomerFake::with_limits(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
        limits,
    ))
    .await;
    let b = client(&served.url(), API_KEY, 20, &clock).with_page_size(10);
    let t0 = clock.now();
    let got = backfill_all(&b, &w).await.unwrap();
    let elapsed = clock.now().since(t0);
    assert_eq!(keys(&got), expected);
    let stats = b.api_client().stats();
    assert!(stats.requests > 20);
    assert!(
        elapsed >= Duration::from_secs(3 * (stats.requests - 2)),
        "{} requests in {elapsed:?}",
        stats.requests
    );
    // Searches are capped at 2 a minute by the fake: those 429s are the only ones allowed.
    let refused: Vec<String> = f
        .log
        .all()
        .into_iter()
        .filter(|l| l.starts_with("429 "))
        .collect();
    assert!(refused.iter().all(|l| l.contains("/search")), "{refused:?}");
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let clock = sim_clock();
    let (f, served) = serve(KustomerFake::new(
        world(61, 1),
        Arc::new(clock.clone()),
        API_KEY,
    ))
    .await;
    let b = client(&served.url(), "not-the-key", 600, &clock);
    let w = Window {
        from: start(),
        to: start().plus(minutes(60)),
    };
    match backfill_all(&b, &w).await {
        Err(BackfillError::Unauthorized(401)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(f.log.all().len(), 1, "a refused key is not retried");
}

#[tokio::test]
async fn a_job_resumes_from_its_stored_cursor() {
    let world = world(71, 3);
    let w = Window {
        from: start(),
        to: start().plus(minutes(180)),
    };
    let expected = reference(&world, &w).await;

    let clock = sim_clock();
    let limits = KustomerLimits {
        page_cap: 3,
        ..KustomerLimits::default()
    };
    let (_f, served) = serve(KustomerFake::with_limits(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
        limits,
    ))
    .await;
    let mut got = Vec::new();
    // Four pages, then the process "crashes": only the cursor, as stored text, survives.
    let stored: String = {
        let b = client(&served.url(), API_KEY, 6000, &clock).with_page_size(5);
        let mut cursor: Option<Cursor> = None;
        for _ in 0..4 {
            let page = b.page(&w, cursor.as_ref()).await.unwrap();
            got.extend(page.events);
            cursor = page.next;
        }
        serde_json::to_string(&cursor.expect("more pages").0).unwrap()
    };
    let b = client(&served.url(), API_KEY, 6000, &clock).with_page_size(5);
    let mut cursor = Some(Cursor(serde_json::from_str(&stored).unwrap()));
    while let Some(c) = cursor {
        let page = b.page(&w, Some(&c)).await.unwrap();
        got.extend(page.events);
        cursor = page.next;
    }
    assert_unique(&got);
    assert_eq!(keys(&got), expected);

    // A cursor from elsewhere is refused, not misread.
    let bad = Cursor(serde_json::json!({ "after": "xyz" }));
    assert!(matches!(
        b.page(&w, Some(&bad)).await,
        Err(BackfillError::BadCursor(_))
    ));
}

/// The recovery benchmark's expectations (`intake_testkit::story`) are exactly what the
/// backfill client reproduces for the story's outage, under Kustomer's real limits: the
/// benchmark then measures intake, not a disagreement between itself and the connector.
#[tokio::test]
async fn the_story_backfill_reproduces_exactly_the_benchmarks_expected_events() {
    use intake_fake_sors::world::STORY_WINDOW;
    use intake_testkit::story::{count_requests, expected_backfill, EventKey};

    let from = Timestamp::parse_rfc3339("2026-11-27T02:00:00Z").unwrap();
    let to = from.plus(STORY_WINDOW);
    let world = World::story(1, from);
    let clock = ManualClock::simulated(to.plus(minutes(7 * 60)));
    let (fake, served) = serve(KustomerFake::with_limits(
        world.clone(),
        Arc::new(clock.clone()),
        API_KEY,
        KustomerLimits::default(),
    ))
    .await;
    let b = client(&served.url(), API_KEY, 1000, &clock);
    let recovered = backfill_all(&b, &Window { from, to }).await.unwrap();
    assert_unique(&recovered);
    let got: BTreeSet<EventKey> = recovered
        .iter()
        .map(|r| EventKey {
            event_type: r.event.event_type.clone(),
            object_id: r.event.object_id.clone().unwrap(),
            occurred_at: r.event.occurred_at.unwrap(),
        })
        .collect();
    assert_eq!(got.len(), recovered.len());
    assert_eq!(got, expected_backfill(&world, from, to));

    // One search page per 100 conversations the window touches, one message list each.
    let requests = count_requests(&fake.log.all());
    let touched = world
        .conversations
        .iter()
        .filter(|c| fake::updated_at(c) >= from && c.created_at <= to)
        .count();
    assert_eq!(requests.message_lists - requests.throttled, touched);
    assert_eq!(requests.searches, touched.div_ceil(100));
}
