//! Recovery jobs end to end, against a fake Kustomer org (its webhooks and its REST API with
//! Kustomer's limits), on SQLite and PostgreSQL: a window of webhooks acknowledged and dropped
//! is found by a dry run with exact counts, backfilled through the real pipeline, delivered once
//! each in Kustomer's own envelope, conversation before its messages; a second run does nothing.
//!
//! The [`Scenario`] here (a server, a handler, a fake org whose webhooks were sent but for a
//! lost window) is shared by the other `recovery_*` files: a backfill killed mid-way
//! (`recovery_kill`), 429 storms and page caps (`recovery_limits`), replay
//! (`recovery_replay`), requeue (`recovery_requeue`), cancellation and failures
//! (`recovery_failures`), the API's rules (`recovery_api`) and the CLI (`recovery_cli`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use intake_connectors::{Connector, Incoming, KustomerConnector};
use intake_core::event::NormalizedEvent;
use intake_core::Timestamp;
use intake_fake_sors::kustomer::{KustomerFake, KustomerLimits};
use intake_fake_sors::{send_webhooks, FakeSor, SendReport, Served, Webhook, World, WorldSpec};
use intake_testkit::{
    CaptureHandler, Captured, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::{json, Value};

use crate::cluster::TestDb;
use crate::recovery_support::Admin;
use crate::PATIENCE;

pub(crate) const API_KEY: &str = "kustomer-api-key";

pub(crate) fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("test time")
}

/// The world's start: a day before the test server's clock (2026-11-28T10:00:00Z).
pub(crate) fn world_start() -> Timestamp {
    t("2026-11-27T08:00:00Z")
}

/// A configuration with one Kustomer source whose API is `api_url`, on `storage`.
pub(crate) fn recovery_config(
    storage: &str,
    handler_url: &str,
    api_url: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "2s"

[storage]
url = "{storage}"

[admin]
token = "{ADMIN_TOKEN}"

# Canaries are on by default, every minute; this test counts deliveries exactly on a clock it
# moves by hours, so they are sent a month apart (as in intake_testkit::config_toml).
[canary]
interval = "30d"
deadline = "60d"

[[tenants]]
id = "maelys"
api_token = "maelys-token"

[[tenants]]
id = "other"
api_token = "other-token"

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]
api = {{ base_url = "{api_url}", token = "{API_KEY}", rate_limit_per_minute = 60000 }}

[[sources]]
id = "other-kustomer"
tenant = "other"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]

[[destinations]]
id = "handler"
url = "{handler_url}"
secret = "{DESTINATION_SECRET}"
{extra}
"#
    )
}

/// Where a scenario stores its events. (One value per scenario: its size does not matter.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Sqlite,
    Postgres(Box<TestDb>),
}

impl Backend {
    /// A PostgreSQL database of the test's own.
    pub(crate) async fn postgres() -> Backend {
        Backend::Postgres(Box::new(TestDb::create().await))
    }
}

/// A server, a handler and a fake Kustomer org whose webhooks were sent to the server,
/// except those inside `lost`.
pub(crate) struct Scenario {
    pub handler: CaptureHandler,
    pub server: TestServer,
    pub hooks: Vec<Webhook>,
    pub sent: SendReport,
    pub lost: (Timestamp, Timestamp),
    pub fake: Arc<KustomerFake>,
    pub _api: Served,
    pub db: Option<TestDb>,
    pub admin: Admin,
}

impl Scenario {
    /// A world of `hours` hours; the webhooks of `lost` (offsets in minutes from the world's
    /// start) acknowledged and dropped.
    pub(crate) async fn start(
        backend: Backend,
        seed: u64,
        hours: u64,
        lost: (u64, u64),
        limits: KustomerLimits,
    ) -> Scenario {
        Self::start_with(backend, seed, hours, lost, limits, "").await
    }

    /// [`Scenario::start`] with `extra` at the end of the configuration (more sources; `{API}`
    /// in it stands for the fake's API URL).
    pub(crate) async fn start_with(
        backend: Backend,
        seed: u64,
        hours: u64,
        lost: (u64, u64),
        limits: KustomerLimits,
        extra: &str,
    ) -> Scenario {
        Self::start_with_tenant_keys(backend, seed, hours, lost, limits, extra, "").await
    }

    /// [`Scenario::start_with`] with `maelys_keys` added to the `maelys` tenant's table (its
    /// name, its contacts).
    pub(crate) async fn start_with_tenant_keys(
        backend: Backend,
        seed: u64,
        hours: u64,
        lost: (u64, u64),
        limits: KustomerLimits,
        extra: &str,
        maelys_keys: &str,
    ) -> Scenario {
        let world = World::generate(&WorldSpec::mixed(seed, world_start(), hours));
        let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (storage, db) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/intake.db", dir.path().display()), None),
            Backend::Postgres(db) => (db.url.clone(), Some(*db)),
        };
        // The fake and the server read the same manual clock: the fake's rate-limit windows
        // pass when the test moves the server's time.
        let clock = intake_core::ManualClock::new(t("2026-11-28T10:00:00Z"));
        let fake = Arc::new(KustomerFake::with_limits(
            world.clone(),
            Arc::new(clock.clone()),
            API_KEY,
            limits,
        ));
        let api = Served::start(fake.clone().api()).await.unwrap();
        // Attempts get an hour before their lease ends: tests that move the clock by minutes
        // while deliveries are in flight must not see them claimed (and sent) twice.
        let extra = format!("timeout = \"1h\"\n{}", extra.replace("{API}", &api.url()));
        let text = recovery_config(&storage, &handler.url(), &api.url(), &extra).replace(
            "api_token = \"maelys-token\"",
            &format!("api_token = \"maelys-token\"\n{maelys_keys}"),
        );
        let server = TestServer::start_with_clock(dir, &text, clock)
            .await
            .unwrap();
        let hooks = fake.webhooks(SOURCE_SECRET);
        let lost = (
            world_start().plus(minutes(lost.0)),
            world_start().plus(minutes(lost.1)),
        );
        let url = format!("{}/ingest/maelys-kustomer", server.url());
        let sent = send_webhooks(&url, &hooks, &[lost]).await.unwrap();
        assert!(sent.failed.is_empty(), "{:?}", sent.failed);
        assert!(sent.lost.len() > 20, "only {} lost", sent.lost.len());
        handler.wait_for(sent.delivered.len(), PATIENCE).await;
        let admin = Admin::of(&server);
        Scenario {
            handler,
            server,
            hooks,
            sent,
            lost,
            fake,
            _api: api,
            db,
            admin,
        }
    }

    /// Creates a job and waits for its end.
    pub(crate) async fn run(&self, body: Value) -> Value {
        self.admin.run(body).await
    }

    /// Moves the server's (and the fake's) clock forward while the fake has asked the client
    /// to wait for its rate-limit window, and only then: time passes only for the waits the
    /// system of record imposes, so whether two requests share a window never depends on the
    /// machine's speed. Stops when the returned guard is dropped.
    pub(crate) fn tick_while_throttled(&self) -> Ticker {
        let fake = self.fake.clone();
        let clock = self.server.clock.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                if fake.asked_to_wait() {
                    clock.advance(Duration::from_millis(250));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Ticker(stop)
    }

    pub(crate) fn backfill(&self, dry_run: bool) -> Value {
        json!({
            "kind": "backfill", "source": "maelys-kustomer", "dry_run": dry_run,
            "from": self.lost.0.to_rfc3339(), "to": self.lost.1.to_rfc3339(),
        })
    }

    /// The dedupe keys a backfill of the lost window must bring back.
    pub(crate) fn reproducible(&self) -> BTreeMap<String, NormalizedEvent> {
        reproducible(&self.hooks, &self.sent.lost)
    }

    /// The deliveries of origin `origin` the handler has received.
    pub(crate) fn received(&self, origin: &str) -> Vec<Captured> {
        self.handler
            .received()
            .into_iter()
            .filter(|c| c.header("intake-origin") == origin)
            .collect()
    }
}

/// Stops a ticker task when dropped.
pub(crate) struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The dedupe keys a backfill of the window of the `lost` webhooks must bring back: every
/// lost creation, and each conversation's last update when it was lost (the API shows current
/// objects, not the updates before).
pub(crate) fn reproducible(
    hooks: &[Webhook],
    lost: &[Webhook],
) -> BTreeMap<String, NormalizedEvent> {
    let mut last_update: HashMap<String, Timestamp> = HashMap::new();
    for e in hooks.iter().map(parse_webhook) {
        if e.event_type == "kustomer.conversation.update" {
            let slot = last_update
                .entry(e.object_id.clone().unwrap())
                .or_insert(e.occurred_at.unwrap());
            *slot = (*slot).max(e.occurred_at.unwrap());
        }
    }
    lost.iter()
        .map(parse_webhook)
        .filter(|e| {
            e.event_type.ends_with(".create")
                || e.object_id.as_ref().and_then(|id| last_update.get(id)) == e.occurred_at.as_ref()
        })
        .map(|e| (e.dedupe_key.clone(), e))
        .collect()
}

pub(crate) fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
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

pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> NormalizedEvent {
    KustomerConnector
        .parse(&Incoming {
            headers,
            body,
            now: world_start(),
        })
        .unwrap()
}

pub(crate) fn parse_webhook(w: &Webhook) -> NormalizedEvent {
    parse(&headers_of(&w.headers), &w.body)
}

pub(crate) fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The lost window found by a dry run with exact counts, backfilled and delivered once each in
/// Kustomer's envelope with its original time, conversations before their messages; a second
/// run changes nothing.
async fn lost_window_is_recovered_exactly_once(backend: Backend) {
    let s = Scenario::start(backend, 41, 6, (120, 240), KustomerLimits::default()).await;
    let expected = s.reproducible();
    assert!(expected.len() > 20, "{} to recover", expected.len());

    let dry = s.run(s.backfill(true)).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    let r = &dry["report"];
    assert_eq!(count(&r["todo"]["total"]), expected.len() as u64, "{r:#}");
    assert_eq!(count(&r["done"]), 0);
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for e in expected.values() {
        *by_type.entry(e.event_type.clone()).or_default() += 1;
    }
    let got_by_type: BTreeMap<String, u64> =
        serde_json::from_value(r["todo"]["by_event_type"].clone()).unwrap();
    assert_eq!(got_by_type, by_type);
    let by_channel: u64 = r["todo"]["by_channel"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(by_channel, expected.len() as u64);
    let conversations: BTreeSet<&String> = expected
        .values()
        .filter_map(|e| e.conversation_id.as_ref())
        .collect();
    let got_conversations: u64 = r["todo"]["conversations_by_channel"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(got_conversations, conversations.len() as u64);
    let new_conversations: u64 = r["todo"]["new_conversations_by_channel"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(
        new_conversations,
        by_type
            .get("kustomer.conversation.create")
            .copied()
            .unwrap_or(0)
    );
    assert!(count(&r["sor"]["requests"]) > 0, "{r:#}");
    // Every webhook inside the window was lost; what the listing brought from its margin and
    // from conversations spanning the window's edges is outside it, and never injected.
    assert_eq!(count(&r["already_received"]), 0, "{r:#}");
    assert!(count(&r["outside_window"]) > 0, "{r:#}");
    assert!(
        s.received("backfill").is_empty(),
        "a dry run ingested something"
    );

    let real = s.run(s.backfill(false)).await;
    assert_eq!(real["state"], "succeeded", "{real:#}");
    assert_eq!(
        count(&real["report"]["done"]),
        expected.len() as u64,
        "{:#}",
        real["report"]
    );
    let got = s
        .handler
        .wait_for(s.sent.delivered.len() + expected.len(), PATIENCE)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backfilled = s.received("backfill");
    assert_eq!(got.len(), s.sent.delivered.len() + expected.len());
    assert_eq!(
        backfilled.len(),
        expected.len(),
        "delivered more than once?"
    );
    check_backfilled(&s, &backfilled, &expected);
    // Counted like any event, under its origin.
    let metrics = s.server.metrics().await.unwrap();
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("intake_events_total{") && l.contains("origin=\"backfill\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        counted,
        expected.len() as u64,
        "intake_events_total{{origin=backfill}}"
    );

    let again = s.run(s.backfill(false)).await;
    assert_eq!(again["state"], "succeeded");
    assert_eq!(
        count(&again["report"]["todo"]["total"]),
        0,
        "{:#}",
        again["report"]
    );
    assert_eq!(count(&again["report"]["done"]), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.received("backfill").len(),
        expected.len(),
        "a second run delivered again"
    );
    s.admin.audit("maelys-kustomer", &["handler"]).await;
    if let Some(db) = s.db {
        s.server.server.shutdown().await.unwrap();
        db.drop_db().await;
    }
}

/// Every backfilled delivery: signed, in Kustomer's envelope and event type, its original
/// time inside the window, each expected key once, each conversation's creation first.
pub(crate) fn check_backfilled(
    s: &Scenario,
    backfilled: &[Captured],
    expected: &BTreeMap<String, NormalizedEvent>,
) {
    let mut keys = BTreeSet::new();
    let mut first_of: HashMap<String, String> = HashMap::new();
    for d in backfilled {
        assert!(d.signature_valid);
        let e = parse(&d.headers, &d.body);
        assert!(
            expected.contains_key(&e.dedupe_key),
            "not lost: {}",
            e.dedupe_key
        );
        assert!(keys.insert(e.dedupe_key.clone()), "twice: {}", e.dedupe_key);
        assert_eq!(d.header("intake-event-type"), e.event_type);
        let at = t(d.header("intake-occurred-at"));
        assert!(s.lost.0 <= at && at <= s.lost.1, "outside the window: {at}");
        assert_eq!(Some(at), e.occurred_at);
        if let Some(c) = e.conversation_id {
            first_of.entry(c).or_insert(e.event_type);
        }
    }
    for e in expected
        .values()
        .filter(|e| e.event_type == "kustomer.conversation.create")
    {
        let c = e.conversation_id.as_ref().unwrap();
        assert_eq!(
            first_of[c], "kustomer.conversation.create",
            "conversation {c} came after its messages"
        );
    }
}

#[tokio::test]
async fn sqlite_a_lost_window_is_found_backfilled_once_and_a_second_run_does_nothing() {
    lost_window_is_recovered_exactly_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_lost_window_is_found_backfilled_once_and_a_second_run_does_nothing() {
    lost_window_is_recovered_exactly_once(Backend::postgres().await).await;
}
