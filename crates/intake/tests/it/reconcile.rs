//! Continuous reconciliation end to end: a real server on its manual clock, a fake Kustomer
//! org that keeps creating conversations on the same clock (its REST API lists them), and its
//! webhooks sent to the server as the test moves the clock — until the org stops sending.
//!
//! * A system of record that stops sending raises `source_gap` after the lag and an
//!   interval, with the missing events counted by channel; late webhooks close the gap and
//!   the alert resolves. With `auto_backfill` a job is started per gap, the missing events
//!   reach the handler, and the alert resolves.
//! * No false gap while every webhook arrives, across several intervals and a restart, whose
//!   windows are contiguous (nothing skipped, nothing checked twice).
//! * The listing is paced to `budget_share` of the source's API budget (requests counted at
//!   the fake per simulated minute), and a source with a backfill job running is skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use intake_core::event::NormalizedEvent;
use intake_core::{ManualClock, Timestamp};
use intake_fake_sors::kustomer::{self, KustomerFake};
use intake_fake_sors::world::Medium;
use intake_fake_sors::{send_webhooks, FakeSor, Served, Webhook, World, WorldSpec};
use intake_testkit::{CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::{json, Value};

use crate::cluster::TestDb;
use crate::recovery::{parse_webhook, t, Backend, API_KEY};
use crate::PATIENCE;

/// The server's clock at the start of every test.
const START: &str = "2026-11-28T10:00:00Z";

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// A world of email and chat conversations between `from` and `to`.
fn world(seed: u64, from: &str, to: &str, email: f64, chat: f64) -> World {
    World::generate(&WorldSpec {
        seed,
        start: t(from),
        end: t(to),
        per_hour: vec![(Medium::Email, email), (Medium::Chat, chat)],
        messages: (1, 3),
        reply_within: minutes(4),
    })
}

/// A configuration with one reconciled Kustomer source (its API allowing `per_minute`
/// requests) and one without API credentials, of another tenant.
fn config(storage: &str, handler: &str, api: &str, per_minute: u32, extra: &str) -> String {
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

# The clock jumps: the duties' leases must outlive the jumps.
[cluster]
duty_lease = "24h"

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
api = {{ base_url = "{api}", token = "{API_KEY}", rate_limit_per_minute = {per_minute} }}

[[sources]]
id = "other-kustomer"
tenant = "other"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]

[[destinations]]
id = "handler"
url = "{handler}"
secret = "{DESTINATION_SECRET}"

{extra}
"#
    )
}

/// A server, a handler, and a Kustomer org whose webhooks are sent as the clock passes their
/// time, except while the org is stopped.
struct Live {
    server: Option<TestServer>,
    clock: ManualClock,
    handler: CaptureHandler,
    fake: Arc<KustomerFake>,
    _api: Served,
    hooks: Vec<Webhook>,
    /// `hooks[..next]` were sent or held.
    next: usize,
    /// Webhooks the org did not send (it was stopped), in time order.
    held: Vec<Webhook>,
    /// While set, webhooks of `(from, to]` are held, not sent.
    stopped: Option<(Timestamp, Timestamp)>,
    /// The PostgreSQL database the server stores in, if not SQLite.
    db: Option<TestDb>,
}

impl Live {
    async fn start(world: World, per_minute: u32, extra: &str) -> Live {
        Live::start_on(Backend::Sqlite, world, per_minute, extra).await
    }

    async fn start_on(backend: Backend, world: World, per_minute: u32, extra: &str) -> Live {
        let clock = ManualClock::new(t(START));
        let fake = Arc::new(KustomerFake::new(world, Arc::new(clock.clone()), API_KEY));
        let api = Served::start(fake.clone().api()).await.unwrap();
        let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (storage, db) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/intake.db", dir.path().display()), None),
            Backend::Postgres(db) => (db.url.clone(), Some(*db)),
        };
        let text = config(&storage, &handler.url(), &api.url(), per_minute, extra);
        let server = TestServer::start_with_clock(dir, &text, clock.clone())
            .await
            .unwrap();
        let hooks = fake.webhooks(SOURCE_SECRET);
        Live {
            server: Some(server),
            clock,
            handler,
            fake,
            _api: api,
            hooks,
            next: 0,
            held: Vec::new(),
            stopped: None,
            db,
        }
    }

    /// Stops the server and drops its PostgreSQL database, if it has one.
    async fn finish(mut self) {
        if let Some(db) = self.db.take() {
            if let Some(server) = self.server.take() {
                server.server.shutdown().await.unwrap();
            }
            db.drop_db().await;
        }
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().expect("a running server")
    }

    fn now(&self) -> Timestamp {
        use intake_core::Clock;
        self.clock.now()
    }

    /// Sends the webhooks whose time has come, holding those of the stopped stretch.
    async fn feed(&mut self) {
        let now = self.now();
        let mut batch = Vec::new();
        while let Some(w) = self.hooks.get(self.next).filter(|w| w.at <= now) {
            match self.stopped {
                Some((from, to)) if from < w.at && w.at <= to => self.held.push(w.clone()),
                _ => batch.push(w.clone()),
            }
            self.next += 1;
        }
        self.send(&batch).await;
    }

    /// The org sends what it held back: its webhook was re-enabled and it redelivers.
    async fn flush(&mut self) {
        self.stopped = None;
        let held = std::mem::take(&mut self.held);
        self.send(&held).await;
    }

    async fn send(&self, hooks: &[Webhook]) {
        if hooks.is_empty() {
            return;
        }
        let url = format!("{}/ingest/maelys-kustomer", self.server().url());
        let sent = send_webhooks(&url, hooks, &[]).await.unwrap();
        assert!(sent.failed.is_empty(), "{:?}", sent.failed);
    }

    /// Moves the clock by `step`, sends what is due, and gives the server's tasks real time.
    async fn step(&mut self, step: Duration, pause: Duration) {
        self.clock.advance(step);
        self.feed().await;
        tokio::time::sleep(pause).await;
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.server().api(path, token).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn alerts(&self) -> Value {
        self.get("/api/v1/alerts", ADMIN_TOKEN).await
    }

    async fn reconciliation(&self) -> Value {
        self.get("/api/v1/reconciliation", ADMIN_TOKEN).await
    }

    /// Steps the clock by `step` until `done` holds for (now, alerts, reconciliation), at
    /// most `limit` of simulated time; each step also calls `each`.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        step: Duration,
        mut each: impl FnMut(&Value, &Value),
        done: impl Fn(Timestamp, &Value, &Value) -> bool,
    ) -> (Value, Value) {
        let deadline = self.now().plus(limit);
        loop {
            let alerts = self.alerts().await;
            let rec = self.reconciliation().await;
            each(&alerts, &rec);
            if done(self.now(), &alerts, &rec) {
                return (alerts, rec);
            }
            assert!(
                self.now() < deadline,
                "{what}: not reached by {}\nalerts: {alerts:#}\nreconciliation: {rec:#}",
                self.now()
            );
            self.step(step, Duration::from_millis(15)).await;
        }
    }
}

fn source_gap(alerts: &Value, list: &str) -> Option<Value> {
    alerts[list]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == "source_gap")
        .cloned()
}

fn resolved(alerts: &Value) -> bool {
    source_gap(alerts, "firing").is_none()
        && alerts["recent"].as_array().is_some_and(|r| {
            r.iter()
                .any(|t| t["rule"] == "source_gap" && t["state"] == "resolved")
        })
}

/// The maelys source's entry of the reconciliation.
fn maelys(rec: &Value) -> &Value {
    rec["data"]
        .as_array()
        .and_then(|d| d.iter().find(|s| s["source"] == "maelys-kustomer"))
        .unwrap_or_else(|| panic!("no maelys-kustomer in {rec:#}"))
}

/// The events of `lost` that the API still shows, keyed by dedupe key: every creation, and a
/// conversation's update only when it is its last (the API shows current objects).
fn reproducible(all: &[Webhook], lost: &[Webhook]) -> BTreeMap<String, NormalizedEvent> {
    let mut last_update: HashMap<String, Timestamp> = HashMap::new();
    for e in all.iter().map(parse_webhook) {
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

/// Events counted by the channel of their conversation as the API shows it: a conversation's
/// creation webhook names no channel yet (it has no message), its listing does.
fn by_channel<'a>(
    fake: &KustomerFake,
    events: impl Iterator<Item = &'a NormalizedEvent>,
) -> BTreeMap<String, u64> {
    let channel: HashMap<String, &str> = fake
        .world()
        .conversations
        .iter()
        .map(|c| (kustomer::conversation_id(c), kustomer::channel_name(c)))
        .collect();
    let mut out = BTreeMap::new();
    for e in events {
        let c = e
            .conversation_id
            .as_ref()
            .and_then(|c| channel.get(c))
            .unwrap();
        *out.entry(c.to_string()).or_default() += 1;
    }
    out
}

fn window_of(v: &Value) -> (Timestamp, Timestamp) {
    (t(v["from"].as_str().unwrap()), t(v["to"].as_str().unwrap()))
}

/// The org stops sending at 10:00 and keeps creating conversations: the window that ends a lag
/// before the 10:20 tick holds events never received. `source_gap` fires with the exact count
/// by channel; the org then redelivers what it held (no backfill: `auto_backfill` is off), the
/// next tick finds every missing key in the store, the gap closes and the alert resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sor_that_stops_sending_raises_source_gap_by_channel_and_late_webhooks_close_it() {
    let mut live = Live::start(
        world(
            7,
            "2026-11-28T09:00:00Z",
            "2026-11-28T11:30:00Z",
            40.0,
            30.0,
        ),
        600,
        "",
    )
    .await;
    live.stopped = Some((t(START), t("2026-11-28T23:00:00Z")));
    live.feed().await;
    assert!(live.next > 50, "only {} webhooks sent", live.next);

    let (alerts, rec) = live
        .until(
            "source_gap fires",
            minutes(30),
            Duration::from_secs(10),
            |_, _| {},
            |_, a, _| source_gap(a, "firing").is_some(),
        )
        .await;
    assert!(live.now() >= t("2026-11-28T10:20:00Z"), "{}", live.now());
    let fired_at = live.now();
    let gap_window = (t("2026-11-28T09:55:00Z"), t("2026-11-28T10:05:00Z"));
    let lost: Vec<Webhook> = live
        .held
        .iter()
        .filter(|w| gap_window.0 < w.at && w.at <= gap_window.1)
        .cloned()
        .collect();
    let expected = reproducible(&live.hooks, &lost);
    assert!(expected.len() >= 5, "only {} missing", expected.len());
    let channels = by_channel(&live.fake, expected.values());
    assert!(channels.len() >= 2, "{channels:?}");

    let alert = source_gap(&alerts, "firing").unwrap();
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["labels"]["tenant"], "maelys");
    assert_eq!(alert["labels"]["source"], "maelys-kustomer");
    assert_eq!(alert["value"], expected.len() as f64, "{alert:#}");
    let reason = alert["reason"].as_str().unwrap();
    let mut parts: Vec<(u64, &String)> = channels.iter().map(|(c, n)| (*n, c)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let counts: Vec<String> = parts.iter().map(|(n, c)| format!("{n} {c}")).collect();
    let want = format!(
        "{} events missing compared with Kustomer's API in 09:55–10:05 UTC: {}; first: ",
        expected.len(),
        counts.join(", ")
    );
    assert!(reason.starts_with(&want), "{reason}\nwanted: {want}");
    assert!(!reason.contains("auto-backfill"), "{reason}");

    let m = maelys(&rec);
    let gaps = m["open_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{m:#}");
    assert_eq!(window_of(&gaps[0]["window"]), gap_window);
    assert_eq!(gaps[0]["missing"], expected.len());
    let got: BTreeMap<String, u64> =
        serde_json::from_value(gaps[0]["missing_by_channel"].clone()).unwrap();
    assert_eq!(got, channels);
    let first = gaps[0]["first"].as_array().unwrap();
    assert_eq!(first.len(), 10.min(expected.len()), "reconcile.sample");
    for item in first {
        assert!(
            expected.contains_key(item["key"].as_str().unwrap()),
            "{item}"
        );
    }
    let check = &m["last_check"];
    assert_eq!(window_of(&check["window"]), gap_window);
    assert!(
        check["listed"].as_u64().unwrap() > expected.len() as u64,
        "{check}"
    );
    assert!(check["requests"].as_u64().unwrap() > 1, "{check}");
    assert_eq!(m["requests_per_minute"], 120);
    assert_eq!(rec["settings"]["interval_seconds"], 600);
    assert_eq!(rec["settings"]["lag_seconds"], 900);
    // A tenant token sees its own sources only; the other tenant's has no API credentials.
    let own = live.get("/api/v1/reconciliation", "maelys-token").await;
    assert_eq!(own["data"].as_array().unwrap().len(), 1);
    let theirs = live.get("/api/v1/reconciliation", "other-token").await;
    assert!(theirs["data"].as_array().unwrap().is_empty(), "{theirs}");
    let (status, _) = live
        .server()
        .api("/api/v1/reconciliation?tenant=maelys", "other-token")
        .await
        .unwrap();
    assert_eq!(status, 404);

    // The org redelivers: the next tick closes the gap, the alert resolves.
    live.flush().await;
    let flushed = live.now();
    let (_, rec) = live
        .until(
            "the gap closes and source_gap resolves",
            minutes(20),
            Duration::from_secs(10),
            |_, _| {},
            |_, a, _| resolved(a),
        )
        .await;
    let m = maelys(&rec);
    assert!(m["open_gaps"].as_array().unwrap().is_empty(), "{m:#}");
    let closed = &m["recently_closed"][0];
    assert_eq!(window_of(&closed["window"]), gap_window);
    assert_eq!(closed["found"], expected.len());
    assert!(closed.get("backfill").is_none(), "{closed}");
    let jobs = live.get("/api/v1/recoveries", ADMIN_TOKEN).await;
    assert!(jobs["data"].as_array().unwrap().is_empty(), "{jobs:#}");
    eprintln!(
        "reconcile stop: sending stopped at {START}; source_gap firing by {fired_at} with {} \
         missing {channels:?}; late webhooks at {flushed}; resolved by {}",
        expected.len(),
        live.now()
    );
}

/// With `auto_backfill`, each gap starts a backfill job of its window (`created_by =
/// "reconcile"`, one per gap), the alert says so, the missing events reach the handler with
/// origin `backfill`, once each, the gaps close and the alert resolves. The org stops for
/// eight minutes, then sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_auto_backfill_starts_one_job_per_gap_and_source_gap_resolves_once_delivered() {
    auto_backfill_closes_every_gap(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_auto_backfill_starts_one_job_per_gap_and_source_gap_resolves_once_delivered() {
    auto_backfill_closes_every_gap(Backend::postgres().await).await;
}

async fn auto_backfill_closes_every_gap(backend: Backend) {
    let mut live = Live::start_on(
        backend,
        world(
            11,
            "2026-11-28T09:00:00Z",
            "2026-11-28T11:30:00Z",
            40.0,
            30.0,
        ),
        600,
        "[reconcile]\nauto_backfill = true\n",
    )
    .await;
    live.stopped = Some((t(START), t("2026-11-28T10:08:00Z")));
    live.feed().await;

    let mut reasons = BTreeSet::new();
    let (alerts, _) = live
        .until(
            "source_gap fires naming its backfill",
            minutes(30),
            Duration::from_secs(10),
            |a, _| {
                if let Some(f) = source_gap(a, "firing") {
                    reasons.insert(f["reason"].as_str().unwrap_or("").to_string());
                }
            },
            |_, a, _| {
                source_gap(a, "firing")
                    .is_some_and(|f| f["reason"].as_str().unwrap_or("").contains("auto-backfill"))
            },
        )
        .await;
    let fired_at = live.now();
    let reason = source_gap(&alerts, "firing").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("auto-backfill started rec_"), "{reason}");
    // The job is named from the first time the gap can be read.
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("auto-backfill started rec_")),
        "{reasons:#?}"
    );

    let (_, rec) = live
        .until(
            "the gaps close and source_gap resolves",
            minutes(40),
            Duration::from_secs(10),
            |_, _| {},
            |_, a, _| resolved(a),
        )
        .await;
    let expected = reproducible(&live.hooks, &live.held);
    assert!(expected.len() >= 5, "only {} missing", expected.len());
    // The gaps closed once the events were committed; their deliveries follow.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let backfilled: Vec<NormalizedEvent> = loop {
        let got: Vec<NormalizedEvent> = live
            .handler
            .received()
            .iter()
            .filter(|c| c.header("intake-origin") == "backfill")
            .map(|c| crate::recovery::parse(&c.headers, &c.body))
            .collect();
        if got.len() >= expected.len() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let keys: BTreeSet<&String> = backfilled.iter().map(|e| &e.dedupe_key).collect();
    assert_eq!(
        keys.len(),
        backfilled.len(),
        "an event was backfilled twice"
    );
    let want: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(keys, want);

    let m = maelys(&rec);
    assert!(m["open_gaps"].as_array().unwrap().is_empty(), "{m:#}");
    let closed = m["recently_closed"].as_array().unwrap();
    let jobs = live.get("/api/v1/recoveries", ADMIN_TOKEN).await;
    let jobs = jobs["data"].as_array().unwrap();
    assert_eq!(jobs.len(), closed.len(), "one job per gap: {jobs:#?}");
    assert!(!jobs.is_empty());
    for gap in closed {
        let id = gap["backfill"].as_str().unwrap();
        let job = jobs.iter().find(|j| j["id"] == id).unwrap();
        assert_eq!(job["created_by"], "reconcile");
        assert_eq!(job["kind"], "backfill");
        assert_eq!(job["state"], "succeeded", "{job:#}");
        assert_eq!(job["dry_run"], false);
    }
    eprintln!(
        "reconcile auto-backfill: stopped {START}–10:08; firing by {fired_at} ({reason}); \
         {} gap(s), {} job(s), {} events backfilled; resolved by {}",
        closed.len(),
        jobs.len(),
        backfilled.len(),
        live.now()
    );
    live.finish().await;
}

/// Every webhook arrives: over five intervals and a restart in the middle, no `source_gap`,
/// every window compared finds nothing missing, and the windows are contiguous — the
/// restarted duty continues where the last saved window ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_false_gap_while_every_webhook_arrives_and_windows_stay_contiguous_across_a_restart() {
    let mut live = Live::start(
        world(
            23,
            "2026-11-28T09:00:00Z",
            "2026-11-28T11:30:00Z",
            40.0,
            30.0,
        ),
        600,
        "",
    )
    .await;
    live.feed().await;
    let mut windows: Vec<((Timestamp, Timestamp), u64, u64)> = Vec::new();
    let mut note = |rec: &Value| {
        let c = &maelys(rec)["last_check"];
        if c.is_null() {
            return;
        }
        let w = window_of(&c["window"]);
        if windows.last().is_none_or(|l| l.0 != w) {
            windows.push((
                w,
                c["listed"].as_u64().unwrap(),
                c["missing"].as_u64().unwrap(),
            ));
        }
    };
    let restart_at = t("2026-11-28T10:32:00Z");
    live.until(
        "three windows",
        minutes(40),
        Duration::from_secs(10),
        |_, rec| note(rec),
        |now, _, _| now >= restart_at,
    )
    .await;
    let server = live.server.take().unwrap();
    live.server = Some(server.restart().await.unwrap());
    let (alerts, _) = live
        .until(
            "three more windows",
            minutes(30),
            Duration::from_secs(10),
            |_, rec| note(rec),
            |_, _, rec| maelys(rec)["checked_until"] == json!("2026-11-28T10:45:00.000Z"),
        )
        .await;
    let want: Vec<(Timestamp, Timestamp)> = (0..6)
        .map(|i| {
            let from = t("2026-11-28T09:45:00Z").plus(minutes(10 * i));
            (from, from.plus(minutes(10)))
        })
        .collect();
    let got: Vec<(Timestamp, Timestamp)> = windows.iter().map(|w| w.0).collect();
    assert_eq!(got, want, "{windows:?}");
    for (w, listed, missing) in &windows {
        assert!(*listed > 0, "{w:?} listed nothing");
        assert_eq!(*missing, 0, "{w:?}: a false gap");
    }
    for list in ["firing", "pending", "recent"] {
        assert!(
            alerts[list]
                .as_array()
                .is_none_or(|l| l.iter().all(|a| a["rule"] != "source_gap")),
            "{alerts:#}"
        );
    }
}

/// The listing is paced to `budget_share` of the source's API budget: 100 requests a minute
/// × 0.2 = 20, in bursts of at most 2 (counted at the fake per simulated minute, in a world
/// dense enough that one window needs over a hundred requests). Then a backfill job of the
/// source is running at the next tick: the source is skipped (its windows are not advanced
/// past), and once the job ends the next tick checks the windows it left, contiguously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_is_paced_to_its_budget_share_and_skips_a_source_while_a_backfill_runs() {
    let mut live = Live::start(
        world(
            31,
            "2026-11-28T09:00:00Z",
            "2026-11-28T10:00:00Z",
            300.0,
            300.0,
        ),
        100,
        "",
    )
    .await;
    // The org sends nothing: only the listing matters here.
    live.stopped = Some((t("2000-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z")));
    let (_, rec) = live
        .until(
            "the first window is checked",
            minutes(20),
            Duration::from_secs(1),
            |_, _| {},
            |_, _, rec| !maelys(rec)["last_check"].is_null(),
        )
        .await;
    let m = maelys(&rec);
    assert_eq!(m["requests_per_minute"], 20);
    let requests = m["last_check"]["requests"].as_u64().unwrap();
    let times: Vec<Timestamp> = live
        .fake
        .log
        .timed()
        .into_iter()
        .map(|(at, _)| at)
        .collect();
    assert_eq!(times.len() as u64, requests, "every request is the check's");
    assert!(
        requests > 100,
        "only {requests} requests: the window is not dense enough"
    );
    let (first, last) = (times[0], times[times.len() - 1]);
    assert!(first >= t("2026-11-28T10:10:00Z"), "{first}");
    // No minute-long stretch saw more than the share plus its burst.
    let busiest = times
        .iter()
        .map(|a| {
            times
                .iter()
                .filter(|b| **b >= *a && b.since(*a) < minutes(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for at in &times {
        *per_minute.entry(at.as_millis() / 60_000).or_default() += 1;
    }
    // The rate while listing: the burst went at once, the rest one every three seconds.
    let rate = (requests - 2) as f64 / last.since(first).as_secs_f64() * 60.0;
    eprintln!(
        "reconcile budget: {requests} requests from {first} to {last}; busiest minute-long \
         stretch {busiest}; per clock minute {:?}; {rate:.1} requests/min against a share of 20",
        per_minute.values().collect::<Vec<_>>()
    );
    assert!(busiest <= 22, "{busiest} requests within a minute");
    assert!(per_minute.values().all(|n| *n <= 22), "{per_minute:?}");
    assert!((18.0..=20.5).contains(&rate), "{rate:.1} requests/min");

    // A backfill of the source starts; the next tick leaves the system of record alone.
    let (status, job) = live
        .server()
        .api_send(
            reqwest::Method::POST,
            "/api/v1/recoveries",
            ADMIN_TOKEN,
            Some(json!({
                "kind": "backfill", "source": "maelys-kustomer",
                "from": "2026-11-28T09:00:00Z", "to": "2026-11-28T10:00:00Z",
            })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{job:#}");
    let id = job["id"].as_str().unwrap().to_string();
    let (_, rec) = live
        .until(
            "the tick skips the source",
            minutes(10),
            Duration::from_secs(5),
            |_, _| {},
            |_, _, rec| maelys(rec)["skipped"]["job"] == json!(id),
        )
        .await;
    let m = maelys(&rec);
    assert!(live.now() >= t("2026-11-28T10:20:00Z"));
    assert_eq!(m["checked_until"], "2026-11-28T09:55:00.000Z", "{m:#}");
    assert!(
        m["skipped"]["message"]
            .as_str()
            .unwrap()
            .contains("backfill job"),
        "{m:#}"
    );
    let running = live
        .get(&format!("/api/v1/recoveries/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(
        running["state"], "running",
        "the job ended before the tick: {running:#}"
    );

    // The job ends (cancelled); the next tick checks the two windows it left, one after the
    // other, from where the last check ended.
    let (status, _) = live
        .server()
        .api_send(
            reqwest::Method::POST,
            &format!("/api/v1/recoveries/{id}/cancel"),
            ADMIN_TOKEN,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, rec) = live
        .until(
            "the windows left are checked",
            minutes(25),
            Duration::from_secs(5),
            |_, _| {},
            |_, _, rec| maelys(rec)["checked_until"] == json!("2026-11-28T10:15:00.000Z"),
        )
        .await;
    let m = maelys(&rec);
    assert!(m["skipped"].is_null(), "{m:#}");
    assert_eq!(
        window_of(&m["last_check"]["window"]),
        (t("2026-11-28T10:05:00Z"), t("2026-11-28T10:15:00Z"))
    );
    let tick = t("2026-11-28T10:30:00Z");
    let log = live.fake.log.timed();
    let searches: Vec<&String> = log
        .iter()
        .filter(|(at, l)| *at >= tick && l.contains("/search?page=1&"))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        searches.len(),
        2,
        "one listing per window left: {searches:?}"
    );
    let job = live
        .get(&format!("/api/v1/recoveries/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(job["state"], "cancelled");
    let between = log
        .iter()
        .filter(|(at, _)| *at > t("2026-11-28T10:22:00Z") && *at < tick)
        .count();
    assert_eq!(between, 0, "requests while nothing should list");
}
