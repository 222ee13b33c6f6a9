//! Zendesk: the fake's webhooks through a real intake server, and the backfill client against
//! the fake's incremental export and comments API.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::{Backfill, BackfillError, Cursor, Recovered, Window};
use intake_connectors::zendesk::{self, backfill::ZendeskBackfill};
use intake_core::config::{ApiConfig, Config};
use intake_core::event::Origin;
use intake_core::{Clock, DeliveryId, EventId, ManualClock, Timestamp};
use intake_fake_sors::harness::Webhook;
use intake_fake_sors::zendesk::ZendeskFake;
use intake_fake_sors::{send_webhooks, FakeSor, Served, World, WorldSpec};
use intake_store::NewEvent;
use intake_testkit::{config_toml, CaptureHandler, TestServer, DESTINATION_SECRET};

const SECRET: &str = "zendesk-signing-secret";
const SOURCE: &str = "maelys-zendesk";

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// A zendesk source appended to the test configuration (after the destination's keys).
fn source_toml(tolerance: &str, api: Option<&str>) -> String {
    let api = api.map_or(String::new(), |a| format!("api = {a}\n"));
    format!(
        r#"
[[sources]]
id = "{SOURCE}"
tenant = "maelys"
kind = "zendesk"
secrets = ["previous-secret", "{SECRET}"]
destinations = ["handler"]
tolerance = "{tolerance}"
{api}"#
    )
}

async fn server(handler: &CaptureHandler, tolerance: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let text = config_toml(dir.path(), &handler.url(), &source_toml(tolerance, None));
    TestServer::start_with(dir, &text).await.unwrap()
}

fn body_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// What intake should call each of the fake's `via.channel` names (written here, not taken
/// from the connector).
fn expected_channel(via: &str) -> &'static str {
    match via {
        "email" => "email",
        "chat" | "native_messaging" => "chat",
        "sms" | "whatsapp" => "sms",
        "voice" => "voice",
        "facebook" | "twitter" | "instagram_dm" => "social",
        "web" => "other",
        other => panic!("the fake sent an unexpected channel {other}"),
    }
}

/// The dedupe key of a webhook, by the connector, and whether backfill can reproduce it.
fn key(w: &Webhook) -> (String, bool) {
    let e = zendesk::parse_body(&w.body).unwrap();
    let reproducible = matches!(
        e.event_type.as_str(),
        "zen:event-type:ticket.created" | "zen:event-type:ticket.comment_added"
    );
    (e.dedupe_key, reproducible)
}

/// The keys backfill must find for `window`: reproducible webhooks sent inside it. Zendesk's
/// API writes times to the second, so windows here start on a second and end on its last
/// millisecond, where the webhook's millisecond time and the API's second agree.
fn reproducible_in(hooks: &[Webhook], window: &Window) -> BTreeSet<String> {
    hooks
        .iter()
        .filter(|w| window.contains(w.at))
        .map(key)
        .filter(|(_, r)| *r)
        .map(|(k, _)| k)
        .collect()
}

fn window(from: Timestamp, to_second: Timestamp) -> Window {
    Window {
        from,
        to: Timestamp(to_second.as_millis() + 999),
    }
}

#[tokio::test]
async fn webhooks_flow_end_to_end_with_channels_and_duplicates_collapsed() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // The server's clock stays at 10:00 (moving it while attempts are in flight would expire
    // their leases and deliver them twice, as at-least-once allows); the world's hour ends
    // before it, inside a two-hour tolerance.
    let server = server(&handler, "2h").await;
    let world = World::generate(&WorldSpec::mixed(5, at("2026-11-28T08:45:00Z"), 1));
    let fake = ZendeskFake::new(world, Arc::new(server.clock.clone()));
    let hooks = fake.webhooks(SECRET);
    assert!(hooks.len() > 40, "{} webhooks", hooks.len());
    let url = format!("{}/ingest/{SOURCE}", server.url());
    let report = send_webhooks(&url, &hooks, &[]).await.unwrap();
    assert_eq!(report.failed, vec![]);
    assert_eq!(report.delivered.len(), hooks.len());

    // Zendesk retries a webhook it thinks failed: same body, new timestamp and signature.
    let send = |body: Vec<u8>, ts: String| {
        server
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-zendesk-webhook-signature-timestamp", &ts)
            .header(
                "x-zendesk-webhook-signature",
                zendesk::sign(SECRET, &ts, &body),
            )
            .body(body)
            .send()
    };
    let now = server.clock.now();
    for w in hooks.iter().take(5) {
        let resp = send(w.body.clone(), now.to_rfc3339()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["duplicate"], true);
    }
    // A request signed more than the tolerance ago (a replay) is refused.
    let stale = now
        .minus(hours(2))
        .minus(Duration::from_secs(1))
        .to_rfc3339();
    let resp = send(hooks[0].body.clone(), stale).await.unwrap();
    assert_eq!(resp.status(), 401);

    let got = handler.wait_for(hooks.len(), Duration::from_secs(30)).await;
    assert_eq!(got.len(), hooks.len(), "every webhook delivered once");
    let ids: HashSet<_> = got.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), hooks.len());
    let bodies: HashSet<_> = got.iter().map(|c| c.body.to_vec()).collect();
    let sent: HashSet<_> = hooks.iter().map(|w| w.body.clone()).collect();
    assert_eq!(bodies, sent);
    for c in &got {
        assert!(c.signature_valid);
        let b = body_json(&c.body);
        assert_eq!(c.header("intake-event-type"), b["type"].as_str().unwrap());
        let via = b["detail"]["via"]["channel"].as_str().unwrap();
        assert_eq!(c.header("intake-channel"), expected_channel(via), "{via}");
        assert_eq!(c.header("intake-origin"), "webhook");
    }
    let channels: HashSet<_> = got.iter().map(|c| c.header("intake-channel")).collect();
    assert!(channels.len() >= 4, "a realistic mix: {channels:?}");
}

/// The fake API and a simulated clock shared by the fake and the client, well after the world.
struct Rig {
    fake: Arc<ZendeskFake>,
    served: Served,
    clock: ManualClock,
}

const T0: &str = "2026-11-27T00:00:00Z";

async fn rig(spec: WorldSpec, tune: impl FnOnce(ZendeskFake) -> ZendeskFake) -> Rig {
    let clock = ManualClock::simulated(at("2026-11-28T10:00:00Z"));
    let fake = Arc::new(tune(ZendeskFake::new(
        World::generate(&spec),
        Arc::new(clock.clone()),
    )));
    let served = Served::start(fake.clone().api()).await.unwrap();
    Rig {
        fake,
        served,
        clock,
    }
}

fn client(rig: &Rig, token: &str, per_minute: u32) -> ZendeskBackfill {
    let api = ApiConfig {
        base_url: rig.served.url(),
        token: token.into(),
        username: Some(rig.fake.email.clone()),
        rate_limit_per_minute: Some(per_minute),
    };
    ZendeskBackfill::new(Arc::new(rig.clock.clone()), &api).unwrap()
}

async fn run(
    b: &dyn Backfill,
    w: &Window,
    mut cursor: Option<Cursor>,
    max_pages: usize,
) -> Result<(Vec<Recovered>, Option<Cursor>, usize), BackfillError> {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = b.page(w, cursor.as_ref()).await?;
        pages += 1;
        all.extend(page.events);
        cursor = page.next;
        if cursor.is_none() || pages == max_pages {
            return Ok((all, cursor, pages));
        }
    }
}

fn keys(events: &[Recovered]) -> BTreeSet<String> {
    let set: BTreeSet<_> = events.iter().map(|r| r.event.dedupe_key.clone()).collect();
    assert_eq!(set.len(), events.len(), "backfill returned a key twice");
    set
}

#[tokio::test]
async fn lost_webhooks_are_recovered_exactly_and_received_ones_are_duplicates() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // The server's clock stays at 10:00 while the world's webhooks are from earlier that day:
    // a tolerance of two days lets them be sent in one go.
    let start = at("2026-11-28T03:00:00Z");
    let spec = WorldSpec::mixed(21, start, 6);
    let rig = rig(spec, |f| f).await;
    let dir = tempfile::tempdir().unwrap();
    let api = format!(
        r#"{{ base_url = "{}", token = "{}", username = "{}" }}"#,
        rig.served.url(),
        rig.fake.token,
        rig.fake.email
    );
    let text = config_toml(dir.path(), &handler.url(), &source_toml("48h", Some(&api)));
    let config = Config::from_toml_str(&text).unwrap();
    let server = TestServer::start_with(dir, &text).await.unwrap();

    let hooks = rig.fake.webhooks(SECRET);
    let lost = window(start.plus(hours(2)), start.plus(hours(3)));
    let report = send_webhooks(
        &format!("{}/ingest/{SOURCE}", server.url()),
        &hooks,
        &[(lost.from, lost.to)],
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 0);
    assert!(report.lost.len() > 20, "{} lost", report.lost.len());
    let got = handler
        .wait_for(report.delivered.len(), Duration::from_secs(30))
        .await;
    assert_eq!(got.len(), report.delivered.len());

    let source = config.sources.iter().find(|s| s.id == SOURCE).unwrap();
    let backfill = intake_connectors::backfill_for(source, Arc::new(rig.clock.clone())).unwrap();

    // Exactly the lost reproducible events, no more.
    let lost_keys: BTreeSet<_> = report
        .lost
        .iter()
        .map(key)
        .filter(|(_, r)| *r)
        .map(|(k, _)| k)
        .collect();
    let (recovered, _, _) = run(backfill.as_ref(), &lost, None, 1000).await.unwrap();
    assert_eq!(keys(&recovered), lost_keys);
    assert!(
        report.lost.iter().any(|w| !key(w).1),
        "some lost events are not reproducible"
    );
    for r in &recovered {
        let parsed = zendesk::parse_body(&r.body).unwrap();
        assert_eq!(parsed, r.event);
        assert!(lost.contains(r.event.occurred_at.unwrap()));
    }

    // Over a window that also covers received webhooks, ingesting the recovered events adds
    // exactly the lost ones: the received ones are duplicates.
    let wider = window(start.plus(hours(1)), start.plus(hours(3)));
    let (recovered, _, _) = run(backfill.as_ref(), &wider, None, 1000).await.unwrap();
    let received: HashSet<_> = report.delivered.iter().map(|w| key(w).0).collect();
    let now = server.clock.now();
    let (mut new, mut duplicates) = (BTreeSet::new(), 0);
    for r in recovered {
        let k = r.event.dedupe_key.clone();
        let accepted = server
            .server
            .store
            .ingest(NewEvent {
                id: EventId::generate(now),
                tenant: "maelys".into(),
                source: SOURCE.into(),
                origin: Origin::Backfill,
                normalized: r.event,
                received_at: now,
                headers: r.headers,
                body: r.body,
                deliveries: vec![(DeliveryId::generate(now), "handler".into())],
            })
            .await
            .unwrap();
        assert_eq!(accepted.duplicate, received.contains(&k), "{k}");
        if accepted.duplicate {
            duplicates += 1;
        } else {
            new.insert(k);
        }
    }
    assert!(duplicates > 20, "{duplicates} duplicates");
    assert_eq!(new, lost_keys);
}

#[tokio::test]
async fn window_boundaries_are_inclusive_to_the_second() {
    let start = at(T0);
    let rig = rig(WorldSpec::mixed(8, start, 3), |f| f).await;
    let b = client(&rig, &rig.fake.token, 600);
    let c = &rig.fake.world().conversations[20];
    let created = Timestamp(c.created_at.as_millis() / 1000 * 1000);
    let ticket_key = format!("ticket:{}:created", intake_fake_sors::zendesk::ticket_id(c));
    let second = Duration::from_secs(1);
    let cases = [
        (window(created, created), true),
        (window(created.minus(hours(1)), created), true),
        (window(created, created.plus(hours(1))), true),
        (window(created.plus(second), created.plus(hours(1))), false),
        (
            Window {
                from: created.minus(hours(1)),
                to: Timestamp(created.as_millis() - 1),
            },
            false,
        ),
    ];
    for (w, inside) in cases {
        let (events, _, _) = run(&b, &w, None, 1000).await.unwrap();
        let found = keys(&events);
        assert_eq!(found.contains(&ticket_key), inside, "{w:?}");
        assert_eq!(found, reproducible_in(&rig.fake.webhooks("s"), &w), "{w:?}");
    }
}

#[tokio::test]
async fn page_caps_and_long_comment_threads_are_followed_to_the_end() {
    let start = at(T0);
    // Few tickets with long threads (over one page of 100 comments), plus a mixed day.
    let mut spec = WorldSpec::mixed(9, start, 6);
    spec.per_hour = vec![
        (intake_fake_sors::Medium::Email, 8.0),
        (intake_fake_sors::Medium::Chat, 6.0),
    ];
    let long = WorldSpec {
        per_hour: vec![(intake_fake_sors::Medium::Email, 1.0)],
        messages: (120, 140),
        reply_within: Duration::from_secs(60),
        ..spec.clone()
    };
    let mut world = World::generate(&spec);
    let extra = World::generate(&long);
    assert!(!extra.conversations.is_empty());
    world.conversations.extend(extra.conversations);
    world.conversations.sort_by_key(|c| c.created_at);
    let mut seq = 0;
    for (i, c) in world.conversations.iter_mut().enumerate() {
        c.seq = i as u64 + 1;
        for m in &mut c.messages {
            seq += 1;
            m.seq = seq;
        }
    }
    let clock = ManualClock::simulated(at("2026-11-28T10:00:00Z"));
    let fake = Arc::new(ZendeskFake::new(world, Arc::new(clock.clone())).with_export_page_cap(7));
    let served = Served::start(fake.clone().api()).await.unwrap();
    let r = Rig {
        fake,
        served,
        clock,
    };
    let b = client(&r, &r.fake.token, 600);
    let w = window(start, start.plus(hours(6)));
    let (events, _, _) = run(&b, &w, None, 10_000).await.unwrap();
    assert_eq!(keys(&events), reproducible_in(&r.fake.webhooks("s"), &w));

    let log = r.fake.log.all();
    let exports = log
        .iter()
        .filter(|l| l.starts_with("GET /api/v2/incremental"))
        .count();
    let tickets = r.fake.world().conversations.len();
    assert!(
        exports >= tickets / 7,
        "{exports} export pages for {tickets} tickets"
    );
    let second_comment_pages = log.iter().filter(|l| l.contains("page%5Bafter%5D")).count();
    assert!(
        second_comment_pages > 0,
        "long threads need a second comments page"
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_the_budget_is_kept() {
    let start = at(T0);
    let w = window(start, start.plus(hours(4)));

    // A fake whose export allows 2 requests a minute where the client paces to Zendesk's
    // documented 10: 429s with Retry-After, waited out, nothing lost.
    let strict = rig(WorldSpec::mixed(12, start, 4), |f| {
        f.with_limits(2, 1000).with_export_page_cap(10)
    })
    .await;
    let b = client(&strict, &strict.fake.token, 600);
    let (events, _, _) = run(&b, &w, None, 1000).await.unwrap();
    assert_eq!(
        keys(&events),
        reproducible_in(&strict.fake.webhooks("s"), &w)
    );
    assert!(b.stats().throttled > 0, "{:?}", b.stats());
    assert!(strict.fake.log.all().iter().any(|l| l.starts_with("429 ")));

    // A client budget under the fake's limits: paced, never refused, and never above budget.
    let paced = rig(WorldSpec::mixed(12, start, 4), |f| f.with_limits(10, 1000)).await;
    let began = paced.clock.now();
    let b = client(&paced, &paced.fake.token, 30);
    let (events, _, _) = run(&b, &w, None, 1000).await.unwrap();
    assert_eq!(
        keys(&events),
        reproducible_in(&paced.fake.webhooks("s"), &w)
    );
    let stats = b.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    let minutes = paced.clock.now().since(began).as_secs_f64() / 60.0;
    let api_requests = (stats.requests - b.export_stats().requests) as f64;
    // 30 a minute, plus the bucket's initial burst of 3.
    assert!(api_requests > 60.0, "{api_requests} requests");
    assert!(
        api_requests <= 30.0 * minutes + 3.0 + 1.0,
        "{api_requests} requests in {minutes:.1} simulated minutes"
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let rig = rig(WorldSpec::mixed(1, at(T0), 1), |f| f).await;
    let b = client(&rig, "not-the-token", 600);
    let w = window(at(T0), at(T0).plus(hours(1)));
    match b.page(&w, None).await {
        Err(BackfillError::Unauthorized(401)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stored_cursor_resumes_where_the_job_stopped() {
    let start = at(T0);
    let rig = rig(WorldSpec::mixed(14, start, 6), |f| {
        f.with_export_page_cap(40)
    })
    .await;
    let w = window(start, start.plus(hours(6)));
    let whole = {
        let b = client(&rig, &rig.fake.token, 600);
        keys(&run(&b, &w, None, 1000).await.unwrap().0)
    };
    assert_eq!(whole, reproducible_in(&rig.fake.webhooks("s"), &w));

    let first = client(&rig, &rig.fake.token, 600);
    let (before, cursor, pages) = run(&first, &w, None, 3).await.unwrap();
    assert_eq!(pages, 3);
    let stored = serde_json::to_string(&cursor.expect("more pages")).unwrap();
    drop(first);
    // A new process, from the stored cursor.
    let second = client(&rig, &rig.fake.token, 600);
    let cursor: Cursor = serde_json::from_str(&stored).unwrap();
    let (after, next, _) = run(&second, &w, Some(cursor), 1000).await.unwrap();
    assert!(next.is_none());
    let mut all = before;
    all.extend(after);
    assert_eq!(keys(&all), whole);

    assert!(matches!(
        second
            .page(&w, Some(&Cursor(serde_json::json!("garbage"))))
            .await,
        Err(BackfillError::BadCursor(_))
    ));
}
