//! Intercom: the fake's notifications through a real intake server, and the backfill client
//! against the fake's conversation search and retrieval.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use intake_connectors::backfill::{Backfill, BackfillError, Cursor, Recovered, Window};
use intake_connectors::intercom::{self, backfill::IntercomBackfill};
use intake_core::config::{ApiConfig, Config};
use intake_core::event::Origin;
use intake_core::{Clock, DeliveryId, EventId, ManualClock, Timestamp};
use intake_fake_sors::harness::Webhook;
use intake_fake_sors::intercom::IntercomFake;
use intake_fake_sors::{send_webhooks, FakeSor, Served, World, WorldSpec};
use intake_store::NewEvent;
use intake_testkit::{config_toml, CaptureHandler, TestServer, DESTINATION_SECRET};

const SECRET: &str = "intercom-client-secret";
const SOURCE: &str = "maelys-intercom";
const T0: &str = "2026-11-27T00:00:00Z";

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn source_toml(api: Option<&str>) -> String {
    let api = api.map_or(String::new(), |a| format!("api = {a}\n"));
    format!(
        r#"
[[sources]]
id = "{SOURCE}"
tenant = "maelys"
kind = "intercom"
secrets = ["previous-client-secret", "{SECRET}"]
destinations = ["handler"]
{api}"#
    )
}

/// What intake should call each of the fake's `source.type` names (written here, not taken
/// from the connector).
fn expected_channel(source_type: &str) -> &'static str {
    match source_type {
        "email" => "email",
        "conversation" => "chat",
        "sms" | "whatsapp" => "sms",
        "phone_call" => "voice",
        "facebook" | "instagram" | "twitter" => "social",
        other => panic!("the fake sent an unexpected source type {other}"),
    }
}

/// The dedupe key of a notification, by the connector, and whether backfill can reproduce it.
fn key(w: &Webhook) -> (String, bool) {
    let e = intercom::parse_body(&w.body).unwrap();
    let reproducible = matches!(
        e.event_type.as_str(),
        "conversation.user.created" | "conversation.user.replied" | "conversation.admin.replied"
    );
    (e.dedupe_key, reproducible)
}

/// Intercom's times are unix seconds: windows start on a second and end on its last millisecond.
fn window(from: Timestamp, to_second: Timestamp) -> Window {
    Window {
        from,
        to: Timestamp(to_second.as_millis() + 999),
    }
}

fn reproducible_in(hooks: &[Webhook], w: &Window) -> BTreeSet<String> {
    hooks
        .iter()
        .filter(|h| w.contains(h.at))
        .map(key)
        .filter(|(_, r)| *r)
        .map(|(k, _)| k)
        .collect()
}

fn keys(events: &[Recovered]) -> BTreeSet<String> {
    let set: BTreeSet<_> = events.iter().map(|r| r.event.dedupe_key.clone()).collect();
    assert_eq!(set.len(), events.len(), "backfill returned a key twice");
    set
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

struct Rig {
    fake: Arc<IntercomFake>,
    served: Served,
    clock: ManualClock,
}

async fn rig(spec: WorldSpec, tune: impl FnOnce(IntercomFake) -> IntercomFake) -> Rig {
    let clock = ManualClock::simulated(at("2026-11-28T10:00:00Z"));
    let fake = Arc::new(tune(IntercomFake::new(
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

fn client(rig: &Rig, token: &str, per_minute: u32) -> IntercomBackfill {
    let api = ApiConfig {
        base_url: rig.served.url(),
        token: token.into(),
        username: None,
        rate_limit_per_minute: Some(per_minute),
    };
    IntercomBackfill::new(Arc::new(rig.clock.clone()), &api)
}

#[tokio::test]
async fn notifications_flow_end_to_end_with_channels_and_duplicates_collapsed() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_toml(dir.path(), &handler.url(), &source_toml(None));
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let world = World::generate(&WorldSpec::mixed(6, at("2026-11-28T08:00:00Z"), 2));
    let fake = IntercomFake::new(world, Arc::new(server.clock.clone()));
    let hooks = fake.webhooks(SECRET);
    assert!(hooks.len() > 40, "{} notifications", hooks.len());
    let url = format!("{}/ingest/{SOURCE}", server.url());
    let report = send_webhooks(&url, &hooks, &[]).await.unwrap();
    assert_eq!(report.failed, vec![]);

    // Intercom retries a notification it thinks failed with the same body and signature.
    for w in &hooks[..5] {
        let mut req = server.http.post(&url).body(w.body.clone());
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        let answer: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["duplicate"], true);
    }
    // Signed with another app's secret: refused.
    let forged = server
        .http
        .post(&url)
        .header(
            "x-hub-signature",
            intercom::sign("someone-else", &hooks[0].body),
        )
        .body(hooks[0].body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let got = handler.wait_for(hooks.len(), Duration::from_secs(30)).await;
    assert_eq!(got.len(), hooks.len(), "every notification delivered once");
    let ids: HashSet<_> = got.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), hooks.len());
    let bodies: HashSet<_> = got.iter().map(|c| c.body.to_vec()).collect();
    let sent: HashSet<_> = hooks.iter().map(|w| w.body.clone()).collect();
    assert_eq!(bodies, sent);
    for c in &got {
        assert!(c.signature_valid);
        let b: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(c.header("intake-event-type"), b["topic"].as_str().unwrap());
        let source = b["data"]["item"]["source"]["type"].as_str().unwrap();
        assert_eq!(
            c.header("intake-channel"),
            expected_channel(source),
            "{source}"
        );
    }
    let channels: HashSet<_> = got.iter().map(|c| c.header("intake-channel")).collect();
    assert!(channels.len() >= 4, "a realistic mix: {channels:?}");
}

#[tokio::test]
async fn lost_notifications_are_recovered_exactly_and_received_ones_are_duplicates() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let start = at(T0);
    let rig = rig(WorldSpec::mixed(22, start, 6), |f| f).await;
    let dir = tempfile::tempdir().unwrap();
    let api = format!(
        r#"{{ base_url = "{}", token = "{}" }}"#,
        rig.served.url(),
        rig.fake.token
    );
    let text = config_toml(dir.path(), &handler.url(), &source_toml(Some(&api)));
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
        assert_eq!(intercom::parse_body(&r.body).unwrap(), r.event);
        assert!(lost.contains(r.event.occurred_at.unwrap()));
    }

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
    let b = client(&rig, &rig.fake.token, 6000);
    let c = &rig.fake.world().conversations[20];
    let created = Timestamp(c.created_at.as_millis() / 1000 * 1000);
    let created_key = format!(
        "conversation:{}:created",
        intake_fake_sors::intercom::conversation_id(c)
    );
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
        assert_eq!(found.contains(&created_key), inside, "{w:?}");
        assert_eq!(found, reproducible_in(&rig.fake.webhooks("s"), &w), "{w:?}");
    }
}

#[tokio::test]
async fn page_caps_are_followed_with_starting_after() {
    let start = at(T0);
    let rig = rig(WorldSpec::mixed(9, start, 6), |f| f.with_page_cap(7)).await;
    let b = client(&rig, &rig.fake.token, 6000);
    let w = window(start, start.plus(hours(6)));
    let (events, _, pages) = run(&b, &w, None, 10_000).await.unwrap();
    assert_eq!(keys(&events), reproducible_in(&rig.fake.webhooks("s"), &w));
    let conversations = rig.fake.world().conversations.len();
    assert!(
        pages >= conversations / 7,
        "{pages} pages for {conversations}"
    );
    let searches = rig
        .fake
        .log
        .all()
        .iter()
        .filter(|l| l.starts_with("POST /conversations/search") && l.contains("starting_after"))
        .count();
    assert!(searches >= conversations / 7 - 1, "{searches}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_the_budget_is_kept() {
    let start = at(T0);
    let w = window(start, start.plus(hours(3)));

    // The workspace's limit, shared with other apps, is hit without warning: 429s, waited out
    // until X-RateLimit-Reset, nothing lost.
    let strict = rig(WorldSpec::mixed(12, start, 3), |f| f.with_limits(10_000, 8)).await;
    let b = client(&strict, &strict.fake.token, 6000);
    let (events, _, _) = run(&b, &w, None, 1000).await.unwrap();
    assert_eq!(
        keys(&events),
        reproducible_in(&strict.fake.webhooks("s"), &w)
    );
    assert!(b.stats().throttled > 0, "{:?}", b.stats());

    // The app's limit is announced in X-RateLimit-Remaining: the client pauses until the reset
    // instead of being refused.
    let announced = rig(WorldSpec::mixed(12, start, 3), |f| f.with_limits(8, 25_000)).await;
    let b = client(&announced, &announced.fake.token, 6000);
    let (events, _, _) = run(&b, &w, None, 1000).await.unwrap();
    assert_eq!(
        keys(&events),
        reproducible_in(&announced.fake.webhooks("s"), &w)
    );
    assert_eq!(b.stats().throttled, 0, "{:?}", b.stats());

    // A client budget under the fake's limits: paced and never above budget.
    let paced = rig(WorldSpec::mixed(12, start, 3), |f| f).await;
    let began = paced.clock.now();
    let b = client(&paced, &paced.fake.token, 30);
    let (events, _, _) = run(&b, &w, None, 1000).await.unwrap();
    assert_eq!(
        keys(&events),
        reproducible_in(&paced.fake.webhooks("s"), &w)
    );
    let stats = b.stats();
    assert_eq!(stats.throttled, 0);
    let minutes = paced.clock.now().since(began).as_secs_f64() / 60.0;
    assert!(stats.requests > 60, "{stats:?}");
    assert!(
        stats.requests as f64 <= 30.0 * minutes + 3.0 + 1.0,
        "{} requests in {minutes:.1} simulated minutes",
        stats.requests
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
    let rig = rig(WorldSpec::mixed(14, start, 6), |f| f).await;
    let w = window(start, start.plus(hours(6)));
    let whole = {
        let b = client(&rig, &rig.fake.token, 6000).with_page_size(20);
        keys(&run(&b, &w, None, 1000).await.unwrap().0)
    };
    assert_eq!(whole, reproducible_in(&rig.fake.webhooks("s"), &w));
    let first = client(&rig, &rig.fake.token, 6000).with_page_size(20);
    let (before, cursor, pages) = run(&first, &w, None, 3).await.unwrap();
    assert_eq!(pages, 3);
    let stored = serde_json::to_string(&cursor.expect("more pages")).unwrap();
    drop(first);
    let second = client(&rig, &rig.fake.token, 6000).with_page_size(20);
    let cursor: Cursor = serde_json::from_str(&stored).unwrap();
    let (after, next, _) = run(&second, &w, Some(cursor), 1000).await.unwrap();
    assert!(next.is_none());
    let mut all = before;
    all.extend(after);
    assert_eq!(keys(&all), whole);
    assert!(matches!(
        second.page(&w, Some(&Cursor(serde_json::json!([1])))).await,
        Err(BackfillError::BadCursor(_))
    ));
}
