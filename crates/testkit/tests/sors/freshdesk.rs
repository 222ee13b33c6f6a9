//! Freshdesk: the fake's automation-rule webhooks through intake, and the backfill client
//! against the fake's `GET /api/v2/tickets`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::{Backfill, BackfillError, Cursor, Recovered, Window};
use intake_connectors::freshdesk::{FreshdeskBackfill, FreshdeskConnector};
use intake_connectors::{Connector, Incoming};
use intake_core::clock::{Clock, ManualClock, SharedClock};
use intake_core::config::{ApiConfig, SharedSecretAuth};
use intake_core::Timestamp;
use intake_fake_sors::freshdesk::{to_second, FakeFreshdesk, WebhookAuth, API_KEY};
use intake_fake_sors::world::{rfc3339_secs, Medium, World, WorldSpec};
use intake_fake_sors::{send_webhooks, FakeSor, Served, Webhook};
use intake_testkit::{config_toml, CaptureHandler, TestServer, DESTINATION_SECRET};

const SECRET: &str = "fd-shared-secret-8c1d2e";
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap()
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

fn world(hours: u64) -> World {
    World::generate(&WorldSpec::mixed(11, start(), hours))
}

/// A clock after the world's end, jumping to every deadline it is asked to sleep until.
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
id = "maelys-freshdesk"
tenant = "maelys"
kind = "freshdesk"
secrets = ["old-secret:rotated", "{secret}"]
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
    format!("{}/ingest/maelys-freshdesk", s.url())
}

fn parse(body: &[u8]) -> intake_core::event::NormalizedEvent {
    let h = http::HeaderMap::new();
    FreshdeskConnector::default()
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

/// What backfill of `window` must find, computed from the world alone: every ticket created in
/// it, and the final state of every ticket last updated in it.
fn reproducible(world: &World, window: &Window) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for c in &world.conversations {
        let created = to_second(c.created_at);
        let updated = to_second(c.updated_at());
        if window.contains(created) {
            keys.insert(format!("ticket:{}:created", c.seq));
        }
        if updated != created && window.contains(updated) {
            keys.insert(format!(
                "ticket:{}:updated:{}",
                c.seq,
                rfc3339_secs(updated)
            ));
        }
    }
    keys
}

fn api(base_url: &str, token: &str, per_minute: u32) -> ApiConfig {
    ApiConfig {
        base_url: base_url.to_string(),
        token: token.to_string(),
        username: None,
        rate_limit_per_minute: Some(per_minute),
    }
}

async fn run_all(
    client: &FreshdeskBackfill,
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

async fn serve(fake: FakeFreshdesk) -> (Arc<FakeFreshdesk>, Served) {
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
    let s = server(
        &handler,
        r#"auth = { scheme = "header", header = "X-Freshdesk-Secret" }"#,
        SECRET,
    )
    .await;
    let world = world(2);
    let fake = FakeFreshdesk::new(world.clone(), sim_clock())
        .with_webhook_auth(WebhookAuth::Header("X-Freshdesk-Secret".into()));
    let hooks = fake.webhooks(SECRET);
    assert!(hooks.len() > 40, "{} webhooks", hooks.len());

    let report = send_webhooks(&ingest_url(&s), &hooks, &[]).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    assert_eq!(report.delivered.len(), hooks.len());

    // Freshdesk retries: the same webhooks again are duplicates, acknowledged and not queued.
    for w in hooks.iter().take(5) {
        let (status, ack) = post(&s, w).await;
        assert_eq!(status, 200);
        assert_eq!(ack["duplicate"], true, "{}", w.about);
    }
    // A wrong secret is refused.
    let mut forged = hooks[0].clone();
    forged.headers = vec![("X-Freshdesk-Secret".into(), "guess".into())];
    assert_eq!(post(&s, &forged).await.0, 401);

    let got = handler.wait_for(hooks.len(), PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got_again = handler.received();
    assert_eq!(got.len(), hooks.len());
    assert_eq!(got_again.len(), hooks.len(), "duplicates were delivered");

    let medium: BTreeMap<String, Medium> = world
        .conversations
        .iter()
        .map(|c| (c.seq.to_string(), c.medium))
        .collect();
    let mut bodies = BTreeSet::new();
    for d in &got {
        assert!(d.signature_valid);
        let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        let f = &v["freshdesk_webhook"];
        let id = f["ticket_id"].as_str().unwrap();
        assert_eq!(
            d.header("intake-channel"),
            expected_channel(medium[id]),
            "{v}"
        );
        let expected_type = if f["triggered_event"] == "{ticket_action:created}" {
            "ticket.created"
        } else {
            "ticket.status_changed"
        };
        assert_eq!(d.header("intake-event-type"), expected_type);
        assert_eq!(d.header("intake-origin"), "webhook");
        assert_eq!(d.header("intake-source"), "maelys-freshdesk");
        bodies.insert(d.body.to_vec());
    }
    assert_eq!(
        bodies.len(),
        hooks.len(),
        "every webhook delivered exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication_is_accepted_and_a_wrong_password_refused() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let user_pass = "freshdesk:hunter2-long-password";
    let s = server(&handler, r#"auth = { scheme = "basic" }"#, user_pass).await;
    let fake = FakeFreshdesk::new(world(1), sim_clock()).with_webhook_auth(WebhookAuth::Basic);
    let hooks = fake.webhooks(user_pass);
    let (status, ack) = post(&s, &hooks[0]).await;
    assert_eq!(status, 200, "{ack}");
    let wrong = fake.webhooks("freshdesk:wrong");
    assert_eq!(post(&s, &wrong[0]).await.0, 401);
    let got = handler.wait_for(1, PATIENCE).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("intake-event-type"), "ticket.created");
}

#[tokio::test]
async fn backfill_window_boundaries_are_inclusive_to_the_second() {
    let world = world(6);
    let clock = sim_clock();
    let (_fake, served) = serve(FakeFreshdesk::new(world.clone(), clock.clone())).await;
    // From exactly one ticket's creation second to one second before another ticket's last
    // update: the first is inside, the second just outside.
    let inside = &world.conversations[40];
    let outside = world
        .conversations
        .iter()
        .filter(|c| c.messages.len() > 1 && c.created_at > inside.created_at.plus(hours(1)))
        .nth(5)
        .unwrap();
    let window = Window {
        from: to_second(inside.created_at),
        to: to_second(outside.updated_at()).minus(Duration::from_millis(1)),
    };
    let client = FreshdeskBackfill::new(&api(&served.url(), API_KEY, 600), clock.clone());
    let (events, _) = run_all(&client, &window).await.unwrap();
    let got = keys(&events);
    assert_eq!(got, reproducible(&world, &window));
    assert!(got.contains(&format!("ticket:{}:created", inside.seq)));
    assert!(!got.contains(&format!(
        "ticket:{}:updated:{}",
        outside.seq,
        rfc3339_secs(to_second(outside.updated_at()))
    )));
    // A ticket created before the window is not re-created by it.
    let before = world
        .conversations
        .iter()
        .find(|c| to_second(c.created_at) < window.from)
        .unwrap();
    assert!(!got.contains(&format!("ticket:{}:created", before.seq)));
    for r in &events {
        assert_eq!(
            parse(&r.body),
            r.event,
            "a recovered body parses to its event"
        );
        assert!(window.contains(r.event.occurred_at.unwrap()));
    }
}

#[tokio::test]
async fn backfill_rewindows_at_the_page_cap_and_still_finds_everything() {
    let world = world(6);
    let clock = sim_clock();
    let (fake, served) = serve(
        FakeFreshdesk::new(world.clone(), clock.clone())
            .with_page_cap(3)
            .with_rate_limit(100_000),
    )
    .await;
    let window = Window {
        from: start(),
        to: start().plus(hours(7)),
    };
    let client =
        FreshdeskBackfill::new(&api(&served.url(), API_KEY, 6000), clock.clone()).with_limits(7, 3);
    let (events, pages) = run_all(&client, &window).await.unwrap();
    let expected = reproducible(&world, &window);
    assert_eq!(keys(&events), expected);
    // Re-windowing never returns a ticket's event twice.
    assert_eq!(events.len(), expected.len());
    let tickets = world.conversations.len();
    assert!(pages >= tickets / 7, "{pages} pages for {tickets} tickets");
    let requests = fake.requests();
    let first_pages = requests.iter().filter(|r| r.ends_with("&page=1")).count();
    assert!(
        first_pages >= tickets / 21,
        "{first_pages} listings: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r.starts_with("GET")),
        "no page past the cap was asked for"
    );
}

#[tokio::test]
async fn backfill_waits_out_429s_and_paces_to_its_budget() {
    let world = world(3);
    let window = Window {
        from: start(),
        to: start().plus(hours(4)),
    };
    let expected = reproducible(&world, &window);

    // The client allows itself far more than the account's limit: Freshdesk refuses with 429
    // and Retry-After, and the client waits on the (simulated) clock.
    let clock = sim_clock();
    let (fake, served) =
        serve(FakeFreshdesk::new(world.clone(), clock.clone()).with_rate_limit(4)).await;
    let client = FreshdeskBackfill::new(&api(&served.url(), API_KEY, 6000), clock.clone())
        .with_limits(5, 300);
    let (events, pages) = run_all(&client, &window).await.unwrap();
    assert_eq!(keys(&events), expected);
    let stats = client.client().stats();
    assert!(stats.throttled > 0, "{stats:?}");
    assert_eq!(stats.requests as usize, pages + stats.throttled as usize);
    // Served requests per minute never passed the limit: the fake's window allows 4, and every
    // page was eventually served.
    let served_ok = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET"))
        .count();
    assert_eq!(served_ok, pages);

    // A client paced to 12 requests a minute against a generous account is never refused and
    // takes at least the time its budget implies, on the simulated clock.
    let clock = sim_clock();
    let t0 = clock.now();
    let (_fake, served) = serve(FakeFreshdesk::new(world.clone(), clock.clone())).await;
    let client =
        FreshdeskBackfill::new(&api(&served.url(), API_KEY, 12), clock.clone()).with_limits(5, 300);
    let (events, pages) = run_all(&client, &window).await.unwrap();
    assert_eq!(keys(&events), expected);
    assert_eq!(client.client().stats().throttled, 0);
    let elapsed = clock.now().since(t0).as_secs_f64();
    // A burst of 1.2 requests (a tenth of the budget, at least one), then one every 5 s.
    let minimum = (pages as f64 - 1.2) * 5.0;
    assert!(
        elapsed >= minimum - 0.01,
        "{pages} requests in {elapsed} s, budget implies {minimum} s"
    );
}

#[tokio::test]
async fn backfill_with_a_wrong_api_key_is_unauthorized() {
    let clock = sim_clock();
    let (_fake, served) = serve(FakeFreshdesk::new(world(1), clock.clone())).await;
    let client = FreshdeskBackfill::new(&api(&served.url(), "not-the-key", 600), clock);
    let window = Window {
        from: start(),
        to: start().plus(hours(1)),
    };
    match client.page(&window, None).await {
        Err(BackfillError::Unauthorized(401)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn backfill_resumes_from_a_stored_cursor() {
    let world = world(6);
    let clock = sim_clock();
    let (_fake, served) = serve(
        FakeFreshdesk::new(world.clone(), clock.clone())
            .with_page_cap(2)
            .with_rate_limit(100_000),
    )
    .await;
    let window = Window {
        from: start().plus(hours(1)),
        to: start().plus(hours(5)),
    };
    let shared: SharedClock = clock.clone();
    let first = FreshdeskBackfill::new(&api(&served.url(), API_KEY, 6000), shared.clone())
        .with_limits(6, 2);
    let mut got = Vec::new();
    let mut cursor = None;
    // Read three pages (across one re-windowing), then "crash": only the stored text survives.
    for _ in 0..3 {
        let page = first.page(&window, cursor.as_ref()).await.unwrap();
        got.extend(page.events);
        cursor = page.next;
    }
    let stored = serde_json::to_string(&cursor.unwrap()).unwrap();
    drop(first);
    let second =
        FreshdeskBackfill::new(&api(&served.url(), API_KEY, 6000), shared).with_limits(6, 2);
    let mut cursor: Option<Cursor> = Some(serde_json::from_str(&stored).unwrap());
    while let Some(c) = cursor {
        let page = second.page(&window, Some(&c)).await.unwrap();
        got.extend(page.events);
        cursor = page.next;
    }
    assert_eq!(keys(&got), reproducible(&world, &window));
    assert_eq!(got.len(), reproducible(&world, &window).len());
    // A cursor from elsewhere is refused.
    assert!(matches!(
        second
            .page(&window, Some(&Cursor(serde_json::json!("page 2"))))
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
    let (fake, served) =
        serve(FakeFreshdesk::new(world.clone(), clock.clone()).with_rate_limit(100_000)).await;
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
    assert!(report.lost.len() > 10, "{} lost", report.lost.len());

    // What could ever be recovered: creations, and each ticket's final state.
    let everything = Window {
        from: start(),
        to: start().plus(hours(30)),
    };
    let reproducible_ever = reproducible(&world, &everything);
    let lost_reproducible: BTreeSet<String> = report
        .lost
        .iter()
        .map(|w| parse(&w.body).dedupe_key)
        .filter(|k| reproducible_ever.contains(k))
        .collect();
    let lost_all: BTreeSet<String> = report
        .lost
        .iter()
        .map(|w| parse(&w.body).dedupe_key)
        .collect();
    assert!(
        lost_reproducible.len() < lost_all.len(),
        "some intermediate updates are lost for good"
    );

    let client = FreshdeskBackfill::new(&api(&served.url(), API_KEY, 6000), clock.clone());
    let (recovered, _) = run_all(&client, &lost_window).await.unwrap();
    assert_eq!(keys(&recovered), lost_reproducible);
    for r in &recovered {
        assert_eq!(parse(&r.body), r.event);
    }

    // Ingesting the recovery of a wider window: what was lost is new, what was received is a
    // duplicate.
    let wider = Window {
        from: start().plus(hours(1)),
        to: start().plus(hours(4)),
    };
    let (recovered, _) = run_all(&client, &wider).await.unwrap();
    let (auth_name, auth_value) =
        intake_connectors::freshdesk::sign(&SharedSecretAuth::default(), SECRET);
    let mut new = 0;
    let mut duplicate = 0;
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
    assert!(duplicate > 10, "{duplicate} duplicates");
}
