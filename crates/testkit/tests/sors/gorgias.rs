//! Gorgias: the fake's HTTP-integration webhooks through intake, and the backfill client
//! against the fake's `GET /api/tickets` and `GET /api/tickets/{id}/messages`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::{Backfill, BackfillError, Cursor, Recovered, Window};
use intake_connectors::gorgias::{GorgiasBackfill, GorgiasConnector};
use intake_connectors::{Connector, Incoming};
use intake_core::clock::{Clock, ManualClock, SharedClock};
use intake_core::config::{ApiConfig, SharedSecretAuth};
use intake_core::Timestamp;
use intake_fake_sors::gorgias::{
    message_id, ticket_id, FakeGorgias, WebhookAuth, API_KEY, USERNAME,
};
use intake_fake_sors::world::{rfc3339_millis, Medium, World, WorldSpec};
use intake_fake_sors::{send_webhooks, FakeSor, Served, Webhook};
use intake_testkit::{config_toml, CaptureHandler, TestServer, DESTINATION_SECRET};

const SECRET: &str = "gorgias-shared-secret-4f9a";
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap()
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

fn world(hours: u64) -> World {
    World::generate(&WorldSpec::mixed(23, start(), hours))
}

fn sim_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::simulated(start().plus(hours(30))))
}

fn config(dir: &std::path::Path, handler_url: &str, auth: &str, secret: &str) -> String {
    // The common test configuration (tenant `maelys`, destination `handler`) plus this source.
    config_toml(
        dir,
        handler_url,
        &format!(
            r#"
[[sources]]
id = "maelys-gorgias"
tenant = "maelys"
kind = "gorgias"
secrets = ["{secret}", "previous:secret"]
destinations = ["handler"]
{auth}
"#
        ),
    )
}

async fn server(handler: &CaptureHandler, auth: &str, secret: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &handler.url(), auth, secret);
    TestServer::start_with(dir, &text).await.unwrap()
}

fn ingest_url(s: &TestServer) -> String {
    format!("{}/ingest/maelys-gorgias", s.url())
}

fn parse(body: &[u8]) -> intake_core::event::NormalizedEvent {
    let h = http::HeaderMap::new();
    GorgiasConnector::default()
        .parse(&Incoming {
            headers: &h,
            body,
            now: Timestamp(0),
        })
        .unwrap()
}

fn expected_channel(m: Medium) -> &'static str {
    match m {
        Medium::Email => "email",
        Medium::Chat => "chat",
        Medium::Sms => "sms",
        Medium::Voice => "voice",
        Medium::Social => "social",
        Medium::Web => "other",
    }
}

/// What backfill of `window` must find, from the world alone: tickets created in it, the final
/// state of tickets last updated in it, and messages written in it.
fn reproducible(world: &World, window: &Window) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for c in &world.conversations {
        let id = ticket_id(c.seq);
        if window.contains(c.created_at) {
            keys.insert(format!("ticket:{id}:created"));
        }
        let updated = c.updated_at();
        if updated != c.created_at && window.contains(updated) {
            keys.insert(format!("ticket:{id}:updated:{}", rfc3339_millis(updated)));
        }
        for m in &c.messages {
            if window.contains(m.created_at) {
                keys.insert(format!("message:{}:created", message_id(m.seq)));
            }
        }
    }
    keys
}

fn api(base_url: &str, token: &str, per_minute: u32) -> ApiConfig {
    ApiConfig {
        base_url: base_url.to_string(),
        token: token.to_string(),
        username: Some(USERNAME.to_string()),
        rate_limit_per_minute: Some(per_minute),
    }
}

fn client(api: &ApiConfig, clock: SharedClock) -> GorgiasBackfill {
    GorgiasBackfill::new(api, clock).unwrap()
}

async fn run_all(
    client: &GorgiasBackfill,
    window: &Window,
) -> Result<(Vec<Recovered>, usize), BackfillError> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = client.page(window, cursor.as_ref()).await?;
        pages += 1;
        out.extend(page.events);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok((out, pages)),
        }
        assert!(pages < 10_000, "the backfill does not end");
    }
}

fn keys(events: &[Recovered]) -> BTreeSet<String> {
    events.iter().map(|r| r.event.dedupe_key.clone()).collect()
}

async fn serve(fake: FakeGorgias) -> (Arc<FakeGorgias>, Served) {
    let fake = Arc::new(fake);
    let served = Served::start(fake.clone().api()).await.unwrap();
    (fake, served)
}

async fn post(s: &TestServer, w: &Webhook) -> (u16, serde_json::Value) {
    let mut req = s.http.post(ingest_url(s)).body(w.body.clone());
    for (k, v) in &w.headers {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_the_handler_once_with_channel_and_event_type() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let s = server(&handler, "", SECRET).await;
    let world = world(2);
    let fake = FakeGorgias::new(world.clone(), sim_clock());
    let hooks = fake.webhooks(SECRET);
    assert!(hooks.len() > 80, "{} webhooks", hooks.len());

    let report = send_webhooks(&ingest_url(&s), &hooks, &[]).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    for w in hooks.iter().rev().take(5) {
        let (status, ack) = post(&s, w).await;
        assert_eq!(status, 200);
        assert_eq!(ack["duplicate"], true, "{}", w.about);
    }
    let mut forged = hooks[0].clone();
    forged.headers = vec![("X-Intake-Secret".into(), "guess".into())];
    assert_eq!(post(&s, &forged).await.0, 401);

    let got = handler.wait_for(hooks.len(), PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(got.len(), hooks.len());
    assert_eq!(
        handler.received().len(),
        hooks.len(),
        "duplicates were delivered"
    );

    let medium: BTreeMap<u64, Medium> = world
        .conversations
        .iter()
        .map(|c| (ticket_id(c.seq), c.medium))
        .collect();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut bodies = BTreeSet::new();
    for d in &got {
        assert!(d.signature_valid);
        let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        let id = v["ticket"]["id"].as_u64().unwrap();
        assert_eq!(
            d.header("intake-channel"),
            expected_channel(medium[&id]),
            "{v}"
        );
        assert_eq!(d.header("intake-event-type"), v["event"].as_str().unwrap());
        assert_eq!(d.header("intake-source"), "maelys-gorgias");
        *by_type
            .entry(d.header("intake-event-type").to_string())
            .or_default() += 1;
        bodies.insert(d.body.to_vec());
    }
    assert_eq!(bodies.len(), hooks.len());
    assert_eq!(by_type["ticket-created"], world.conversations.len());
    assert_eq!(by_type["ticket-message-created"], world.messages().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication_is_accepted_and_a_wrong_password_refused() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let user_pass = "gorgias:correct-horse-battery-staple";
    let s = server(&handler, r#"auth = { scheme = "basic" }"#, user_pass).await;
    let fake = FakeGorgias::new(world(1), sim_clock()).with_webhook_auth(WebhookAuth::Basic);
    let hooks = fake.webhooks(user_pass);
    let (status, ack) = post(&s, &hooks[0]).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(post(&s, &fake.webhooks("gorgias:wrong")[0]).await.0, 401);
    let got = handler.wait_for(1, PATIENCE).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("intake-event-type"), "ticket-created");
}

#[tokio::test]
async fn backfill_window_boundaries_are_inclusive() {
    let world = world(6);
    let clock = sim_clock();
    let (_fake, served) = serve(
        FakeGorgias::new(world.clone(), clock.clone())
            .with_rate_limit(10_000, Duration::from_secs(20)),
    )
    .await;
    let all = world.messages();
    let first_m = all[60].1;
    let last_m = all[all.len() - 60].1;
    let window = Window {
        from: first_m.created_at,
        to: last_m.created_at.minus(Duration::from_millis(1)),
    };
    let c = client(&api(&served.url(), API_KEY, 6000), clock.clone());
    let (events, _) = run_all(&c, &window).await.unwrap();
    let got = keys(&events);
    assert_eq!(got, reproducible(&world, &window));
    assert_eq!(events.len(), got.len(), "no event twice");
    assert!(got.contains(&format!("message:{}:created", message_id(first_m.seq))));
    assert!(!got.contains(&format!("message:{}:created", message_id(last_m.seq))));
    for r in &events {
        assert_eq!(parse(&r.body), r.event);
        assert!(window.contains(r.event.occurred_at.unwrap()));
    }
}

#[tokio::test]
async fn backfill_follows_cursors_of_tickets_and_messages() {
    let world = world(6);
    let clock = sim_clock();
    let (fake, served) = serve(
        FakeGorgias::new(world.clone(), clock.clone())
            .with_rate_limit(10_000, Duration::from_secs(20)),
    )
    .await;
    let window = Window {
        from: start().plus(hours(1)),
        to: start().plus(hours(4)),
    };
    let c = client(&api(&served.url(), API_KEY, 60_000), clock.clone()).with_limits(4, 2);
    let (events, pages) = run_all(&c, &window).await.unwrap();
    assert_eq!(keys(&events), reproducible(&world, &window));
    assert!(pages > 10, "{pages} pages");
    let requests = fake.requests();
    let with_cursor = requests
        .iter()
        .filter(|r| r.contains("/messages?cursor=") && !r.ends_with("cursor="))
        .count();
    assert!(with_cursor > 0, "messages were paginated: {requests:?}");
    // Reading stops at the first ticket updated before the window: tickets older than that are
    // never listed.
    let listed_pages = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/tickets?"))
        .count();
    assert!(
        listed_pages < world.conversations.len() / 4,
        "{listed_pages} ticket pages"
    );
}

#[tokio::test]
async fn backfill_waits_out_the_leaky_bucket_and_paces_to_its_budget() {
    let world = world(3);
    let window = Window {
        from: start(),
        to: start().plus(hours(4)),
    };
    let expected = reproducible(&world, &window);

    let clock = sim_clock();
    let (fake, served) = serve(
        FakeGorgias::new(world.clone(), clock.clone()).with_rate_limit(4, Duration::from_secs(20)),
    )
    .await;
    let c = client(&api(&served.url(), API_KEY, 60_000), clock.clone()).with_limits(10, 100);
    let (events, _) = run_all(&c, &window).await.unwrap();
    assert_eq!(keys(&events), expected);
    let stats = c.client().stats();
    assert!(stats.throttled > 0, "{stats:?}");
    let refused = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("429"))
        .count();
    assert_eq!(refused as u64, stats.throttled);

    // At 30 requests a minute (burst 3) against Gorgias' own 40 per 20 s: never refused, and
    // no faster than the budget on the simulated clock.
    let clock = sim_clock();
    let t0 = clock.now();
    let (_fake, served) = serve(FakeGorgias::new(world.clone(), clock.clone())).await;
    let c = client(&api(&served.url(), API_KEY, 30), clock.clone()).with_limits(10, 100);
    let (events, _) = run_all(&c, &window).await.unwrap();
    assert_eq!(keys(&events), expected);
    let stats = c.client().stats();
    assert_eq!(stats.throttled, 0);
    let elapsed = clock.now().since(t0).as_secs_f64();
    let minimum = (stats.requests as f64 - 3.0) * 2.0;
    assert!(
        elapsed >= minimum - 0.01,
        "{} requests in {elapsed} s, budget implies {minimum} s",
        stats.requests
    );
}

#[tokio::test]
async fn backfill_with_wrong_credentials_is_unauthorized_and_needs_a_username() {
    let clock = sim_clock();
    let (_fake, served) = serve(FakeGorgias::new(world(1), clock.clone())).await;
    let window = Window {
        from: start(),
        to: start().plus(hours(1)),
    };
    let c = client(&api(&served.url(), "not-the-key", 600), clock.clone());
    match c.page(&window, None).await {
        Err(BackfillError::Unauthorized(401)) => {}
        other => panic!("{other:?}"),
    }
    let mut no_user = api(&served.url(), API_KEY, 600);
    no_user.username = None;
    assert!(matches!(
        GorgiasBackfill::new(&no_user, clock),
        Err(BackfillError::NotConfigured(_))
    ));
}

#[tokio::test]
async fn backfill_resumes_from_a_stored_cursor() {
    let world = world(6);
    let clock = sim_clock();
    let (_fake, served) = serve(
        FakeGorgias::new(world.clone(), clock.clone())
            .with_rate_limit(10_000, Duration::from_secs(20)),
    )
    .await;
    let window = Window {
        from: start().plus(hours(1)),
        to: start().plus(hours(5)),
    };
    let shared: SharedClock = clock.clone();
    let first = client(&api(&served.url(), API_KEY, 60_000), shared.clone()).with_limits(5, 100);
    let mut got = Vec::new();
    let mut cursor = None;
    for _ in 0..3 {
        let page = first.page(&window, cursor.as_ref()).await.unwrap();
        got.extend(page.events);
        cursor = page.next;
    }
    let stored = serde_json::to_string(&cursor.unwrap()).unwrap();
    drop(first);
    let second = client(&api(&served.url(), API_KEY, 60_000), shared).with_limits(5, 100);
    let mut cursor: Option<Cursor> = Some(serde_json::from_str(&stored).unwrap());
    while let Some(c) = cursor {
        let page = second.page(&window, Some(&c)).await.unwrap();
        got.extend(page.events);
        cursor = page.next;
    }
    let expected = reproducible(&world, &window);
    assert_eq!(keys(&got), expected);
    assert_eq!(got.len(), expected.len());
    assert!(matches!(
        second
            .page(&window, Some(&Cursor(serde_json::json!(42))))
            .await,
        Err(BackfillError::BadCursor(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_recovers_exactly_the_lost_webhooks_it_can_reproduce() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let s = server(&handler, "", SECRET).await;
    let world = world(6);
    let clock = sim_clock();
    let (fake, served) = serve(
        FakeGorgias::new(world.clone(), clock.clone())
            .with_rate_limit(10_000, Duration::from_secs(20)),
    )
    .await;
    let hooks = fake.webhooks(SECRET);
    let lost_window = Window {
        from: start().plus(hours(2)),
        to: start().plus(hours(3)),
    };
    let report = send_webhooks(
        &ingest_url(&s),
        &hooks,
        &[(lost_window.from, lost_window.to)],
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty());
    assert!(report.lost.len() > 20, "{} lost", report.lost.len());

    let everything = Window {
        from: start(),
        to: start().plus(hours(30)),
    };
    let reproducible_ever = reproducible(&world, &everything);
    let lost_all: BTreeSet<String> = report
        .lost
        .iter()
        .map(|w| parse(&w.body).dedupe_key)
        .collect();
    let lost_reproducible: BTreeSet<String> = lost_all
        .iter()
        .filter(|k| reproducible_ever.contains(*k))
        .cloned()
        .collect();
    assert!(
        lost_reproducible.len() < lost_all.len(),
        "intermediate ticket-updated events are lost for good"
    );

    let c = client(&api(&served.url(), API_KEY, 60_000), clock.clone());
    let (recovered, _) = run_all(&c, &lost_window).await.unwrap();
    assert_eq!(keys(&recovered), lost_reproducible);
    for r in &recovered {
        assert_eq!(parse(&r.body), r.event);
    }

    let wider = Window {
        from: start().plus(hours(1)),
        to: start().plus(hours(4)),
    };
    let (recovered, _) = run_all(&c, &wider).await.unwrap();
    let (auth_name, auth_value) =
        intake_connectors::gorgias::sign(&SharedSecretAuth::default(), SECRET);
    let (mut new, mut duplicate) = (0, 0);
    for r in &recovered {
        let w = Webhook {
            at: Timestamp(0),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (auth_name.clone(), auth_value.clone()),
            ],
            body: r.body.clone(),
            about: r.event.dedupe_key.clone(),
        };
        let (status, ack) = post(&s, &w).await;
        assert_eq!(status, 200, "{ack}");
        let was_lost = lost_reproducible.contains(&r.event.dedupe_key);
        assert_eq!(ack["duplicate"], !was_lost, "{}", r.event.dedupe_key);
        if was_lost {
            new += 1;
        } else {
            duplicate += 1;
        }
    }
    assert_eq!(new, lost_reproducible.len());
    assert!(duplicate > 20, "{duplicate} duplicates");
}
