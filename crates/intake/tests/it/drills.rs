//! Fire drills end to end, on the server's manual clock, on SQLite and PostgreSQL: each
//! scenario passes on a healthy system (its alert fires and is notified, the drill heals, the
//! held work flows) and fails, saying so, when its alert is routed nowhere; a drill heals
//! after the server is stopped in the middle of it and started again past its expiry; the
//! notifications of a drill are marked (`[DRILL]`, `drill` in the webhook body and as an
//! Alertmanager label), their resolutions too; a failed scheduled drill raises
//! `drill_failed` and the next passing one resolves it; with `[incidents] auto_declare` a
//! drill's alert declares a drill incident, marked for on-call, told to the tenant only with
//! `drill_tenant_notices` (and then marked); and `intake drill` through the real binary exits
//! by the verdict, prints the timings, and refuses bad input clearly.
//!
//! The servers here run production canary timings (60 s, 2 min). Tenant `other`'s alerts are
//! made informational and no notifier takes that severity: its drills find their alert
//! routed nowhere.

use std::sync::Arc;
use std::time::Duration;

use intake_testkit::{
    kustomer, CaptureHandler, NotifierCapture, NotifierRequest, TestServer, ADMIN_TOKEN,
    DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::{json, Value};

use crate::cluster::TestDb;
use crate::recovery_support::intake_cli;
use crate::PATIENCE;

/// The clock moves this much per step; the server's tasks get real time in between.
const STEP: Duration = Duration::from_secs(5);

/// Where a test server stores.
enum Backend {
    Sqlite,
    Postgres(Box<TestDb>),
}

impl Backend {
    async fn postgres() -> Backend {
        Backend::Postgres(Box::new(TestDb::create().await))
    }
}

/// What a drill test's server is made of.
struct Rig {
    server: TestServer,
    handler: CaptureHandler,
    notifiers: NotifierCapture,
    db: Option<TestDb>,
}

/// The configuration: tenant `maelys` with a webhook contact (`/contact/maelys`, told of
/// incidents), sources `maelys-kustomer` → `handler` and `other-kustomer` →
/// `handler2` (both the same capture handler), webhook notifiers `hook` (critical and
/// warning) and `side` (warning), an Alertmanager `am` (critical and warning) unless
/// `alertmanager` is false, tenant `other`'s alerts at severity info, and `extra`.
fn config(
    storage: &str,
    handler: &str,
    notifiers: &NotifierCapture,
    canaries: (&str, &str),
    alertmanager: bool,
    extra: &str,
) -> String {
    let am = if alertmanager {
        format!(
            "[[notifiers]]\nid = \"am\"\nkind = \"alertmanager\"\nurl = \"{}\"\nseverities = [\"critical\", \"warning\"]\n",
            notifiers.url("/am")
        )
    } else {
        String::new()
    };
    let quiet: String = [
        "canary_failed",
        "queue_stalled",
        "delivery_errors",
        "inbound_stopped",
    ]
    .iter()
    .map(|r| format!("[[rules]]\nrule = \"{r}\"\ntenant = \"other\"\nseverity = \"info\"\n\n"))
    .collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "2s"

[storage]
url = "{storage}"

[admin]
token = "{ADMIN_TOKEN}"

[canary]
interval = "{interval}"
deadline = "{deadline}"

[cluster]
duty_lease = "24h"

[[tenants]]
id = "maelys"
api_token = "maelys-token"
contacts = [{{ kind = "webhook", url = "{contact}" }}]

[[tenants]]
id = "other"
api_token = "other-token"

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]

[[sources]]
id = "other-kustomer"
tenant = "other"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler2"]

[[destinations]]
id = "handler"
url = "{handler}"
secret = "{DESTINATION_SECRET}"

[[destinations]]
id = "handler2"
url = "{handler}"
secret = "{DESTINATION_SECRET}"

[[notifiers]]
id = "hook"
kind = "webhook"
url = "{hook}"
severities = ["critical", "warning"]

[[notifiers]]
id = "side"
kind = "webhook"
url = "{side}"
severities = ["warning"]

{am}
{quiet}
{extra}
"#,
        interval = canaries.0,
        deadline = canaries.1,
        hook = notifiers.url("/hook"),
        side = notifiers.url("/side"),
        contact = notifiers.url("/contact/maelys"),
    )
}

impl Rig {
    async fn start(
        backend: Backend,
        canaries: (&str, &str),
        alertmanager: bool,
        extra: &str,
    ) -> Rig {
        let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
        let notifiers = NotifierCapture::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (storage, db) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/intake.db", dir.path().display()), None),
            Backend::Postgres(db) => (db.url.clone(), Some(*db)),
        };
        let text = config(
            &storage,
            &handler.url(),
            &notifiers,
            canaries,
            alertmanager,
            extra,
        );
        let server = TestServer::start_with(dir, &text).await.unwrap();
        Rig {
            server,
            handler,
            notifiers,
            db,
        }
    }

    /// Stops the server and drops its PostgreSQL database, if it has one.
    async fn finish(self) {
        self.server.server.shutdown().await.unwrap();
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }

    /// Moves the clock one step and gives the server's tasks real time.
    async fn step(&self) {
        self.server.clock.advance(STEP);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    /// Steps the clock until `done`, failing after `simulated`.
    async fn step_until<F, Fut>(&self, simulated: Duration, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut elapsed = Duration::ZERO;
        while !done().await {
            assert!(
                elapsed < simulated,
                "{what}: not reached after {simulated:?} of simulated time"
            );
            self.step().await;
            elapsed += STEP;
        }
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.server
            .api_send(reqwest::Method::POST, path, token, Some(body))
            .await
            .unwrap()
    }

    /// Starts a drill; asserts it was accepted.
    async fn start_drill(&self, body: Value) -> Value {
        let (status, drill) = self.post("/api/v1/drills", ADMIN_TOKEN, body).await;
        assert_eq!(status, 201, "{drill:#}");
        assert_eq!(drill["state"], "running");
        drill
    }

    async fn drill(&self, id: &str) -> Value {
        let (status, d) = self
            .server
            .api(&format!("/api/v1/drills/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        assert_eq!(status, 200, "{d:#}");
        d
    }

    /// Steps until the drill has ended; returns it. Once its alert was seen, the clock moves
    /// by seconds, with more real time between steps: its notification is being sent.
    async fn until_ended(&self, id: &str, simulated: Duration) -> Value {
        let mut elapsed = Duration::ZERO;
        loop {
            let d = self.drill(id).await;
            if d["state"] != "running" {
                return d;
            }
            assert!(
                elapsed < simulated,
                "the drill's end: not reached after {simulated:?} of simulated time: {d:#}"
            );
            let (step, pause) = if d["report"]["alert"].is_object() {
                (Duration::from_secs(1), Duration::from_millis(50))
            } else {
                (STEP, Duration::from_millis(25))
            };
            self.server.clock.advance(step);
            tokio::time::sleep(pause).await;
            elapsed += step;
        }
    }

    /// Waits, without moving the clock, until `done` (real time, bounded by [`PATIENCE`]).
    async fn wait_for<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not reached within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Steps until `source` has had a canary delivered: the system is healthy.
    async fn healthy(&self, source: &str) {
        self.step_until(Duration::from_secs(300), "a first canary", || async {
            let (_, c) = self
                .server
                .api("/api/v1/canaries", ADMIN_TOKEN)
                .await
                .unwrap();
            c["data"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["source"] == source && !e["last_success_at"].is_null())
        })
        .await;
    }

    /// The JSON bodies the notifier at `path` accepted.
    fn received(&self, path: &str) -> Vec<Value> {
        self.notifiers
            .accepted()
            .iter()
            .filter(|r| r.uri.starts_with(path))
            .map(NotifierRequest::json)
            .collect()
    }

    /// Sends a webhook of `source`; returns its event id.
    async fn send(&self, source: &str, message: &str) -> String {
        let body = kustomer::message_create(message, "email");
        let resp = self
            .server
            .send_kustomer(source, &body, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let accepted: Value = resp.json().await.unwrap();
        accepted["id"].as_str().unwrap().to_string()
    }

    async fn event(&self, id: &str) -> Value {
        let (_, e) = self
            .server
            .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        e
    }
}

fn secs(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A drill that passed: its alert fired, its notification was sent, it healed, within the
/// bound; the timings are printed (they are the drill's measurements).
fn assert_passed(d: &Value, rules: &[&str]) {
    assert_eq!(d["state"], "passed", "{d:#}");
    assert_eq!(d["healed"], true);
    let rule = d["report"]["alert"]["rule"].as_str().unwrap_or("");
    assert!(rules.contains(&rule), "{rule}: {d:#}");
    let detect = secs(&d["time_to_detect_seconds"]);
    let notify = secs(&d["time_to_notify_seconds"]);
    assert!(notify >= detect, "{d:#}");
    assert!(!d["healed_at"].is_null());
    eprintln!(
        "{} on {}: passed, {rule} detected after {detect} s, notified through {} after {notify} s",
        d["scenario"], d["target"], d["report"]["notification"]["notifier"]
    );
}

/// A drill that failed because its alert was routed nowhere.
fn assert_routed_nowhere(d: &Value) {
    assert_eq!(d["state"], "failed", "{d:#}");
    assert_eq!(d["report"]["missing"], "not_routed", "{d:#}");
    assert!(d["report"]["alert"].is_object(), "it did fire: {d:#}");
    assert!(d["notified_at"].is_null());
    assert_eq!(d["healed"], true);
    let summary = d["report"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("failed: alert but routed to no notifier"),
        "{summary}"
    );
}

/// The firing webhook notices of the drill `id`.
fn marked(rig: &Rig, id: &str, status: &str) -> Vec<Value> {
    rig.received("/hook")
        .into_iter()
        .filter(|n| n["drill"] == id && n["kind"] == "alert" && n["status"] == status)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The four scenarios: pass on a healthy system, fail when the alert is routed nowhere.

async fn queue_stall(backend: Backend) {
    let rig = Rig::start(backend, ("60s", "2m"), true, "").await;
    rig.healthy("maelys-kustomer").await;
    let started = rig
        .start_drill(json!({"scenario": "queue-stall", "source": "maelys-kustomer", "for": "6m"}))
        .await;
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(started["target_kind"], "source");
    assert_eq!(
        started["report"]["expected"],
        json!(["canary_failed", "queue_stalled"])
    );
    // Accepted as always, queued, not dispatched.
    let held = rig.send("maelys-kustomer", "msg-held").await;
    let free = rig.send("other-kustomer", "msg-free").await;
    rig.wait_for("the other source delivered", || async {
        rig.event(&free).await["deliveries"][0]["state"] == "delivered"
    })
    .await;
    let e = rig.event(&held).await;
    assert_eq!(e["deliveries"][0]["state"], "pending", "{e:#}");
    assert_eq!(e["deliveries"][0]["attempts"], 0);

    let d = rig.until_ended(&id, Duration::from_secs(6 * 60)).await;
    assert_passed(&d, &["canary_failed", "queue_stalled"]);
    // Healed: the held work flows, at once.
    rig.wait_for("the held delivery", || async {
        rig.event(&held).await["deliveries"][0]["state"] == "delivered"
    })
    .await;

    // The same on a source whose alerts no notifier takes.
    let fail = rig
        .start_drill(json!({"scenario": "queue-stall", "source": "other-kustomer", "for": "4m"}))
        .await;
    let d = rig
        .until_ended(fail["id"].as_str().unwrap(), Duration::from_secs(5 * 60))
        .await;
    assert_routed_nowhere(&d);
    assert!(d["report"]["summary"]
        .as_str()
        .unwrap()
        .contains("canary_failed fired"));
    rig.finish().await;
}

async fn handler_down(backend: Backend) {
    let rig = Rig::start(backend, ("60s", "2m"), true, "").await;
    rig.healthy("maelys-kustomer").await;
    let id = rig
        .start_drill(json!({"scenario": "handler-down", "destination": "handler", "for": "6m"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = rig.send("maelys-kustomer", "msg-down").await;
    rig.wait_for("a failed attempt", || async {
        rig.event(&event).await["deliveries"][0]["attempts"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    let e = rig.event(&event).await;
    let error = e["deliveries"][0]["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains(&format!(
            "fire drill {id}: handler-down on destination `handler`"
        )),
        "{e:#}"
    );
    let d = rig.until_ended(&id, Duration::from_secs(6 * 60)).await;
    assert_passed(&d, &["canary_failed", "delivery_errors"]);
    // The handler never saw the failed attempts; after the heal the retry delivers.
    rig.step_until(
        Duration::from_secs(10 * 60),
        "the retried delivery",
        || async { rig.event(&event).await["deliveries"][0]["state"] == "delivered" },
    )
    .await;
    assert!(rig
        .handler
        .received()
        .iter()
        .any(|c| c.id == event && c.header("intake-attempt") != "1"));

    let fail = rig
        .start_drill(json!({"scenario": "handler-down", "destination": "handler2", "for": "4m"}))
        .await;
    let d = rig
        .until_ended(fail["id"].as_str().unwrap(), Duration::from_secs(5 * 60))
        .await;
    assert_routed_nowhere(&d);
    rig.finish().await;
}

async fn flow_stop(backend: Backend) {
    let rig = Rig::start(backend, ("60s", "2m"), true, "").await;
    rig.healthy("maelys-kustomer").await;
    let id = rig
        .start_drill(json!({"scenario": "flow-stop", "source": "maelys-kustomer", "for": "6m"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Refused at the door with 503 naming the drill: the system of record retries.
    let body = kustomer::message_create("msg-refused", "email");
    let resp = rig
        .server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "urn:intake:problem:drill-flow-stop");
    assert!(
        problem["detail"].as_str().unwrap().contains(&id),
        "{problem}"
    );
    let page = rig.server.metrics().await.unwrap();
    assert!(
        page.contains(r#"intake_drill_active{scenario="flow-stop"} 1"#),
        "{page}"
    );

    let d = rig.until_ended(&id, Duration::from_secs(6 * 60)).await;
    assert_passed(&d, &["canary_failed", "inbound_stopped"]);
    // Healed: the same webhook is accepted now.
    let resp = rig
        .server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = rig.server.metrics().await.unwrap();
    assert!(
        page.contains(r#"intake_drill_active{scenario="flow-stop"} 0"#),
        "{page}"
    );

    let fail = rig
        .start_drill(json!({"scenario": "flow-stop", "source": "other-kustomer", "for": "4m"}))
        .await;
    let d = rig
        .until_ended(fail["id"].as_str().unwrap(), Duration::from_secs(5 * 60))
        .await;
    assert_routed_nowhere(&d);
    rig.finish().await;
}

async fn notifier_down(backend: Backend) {
    // No Alertmanager here: `hook` is the only notifier that takes critical alerts.
    let rig = Rig::start(backend, ("30d", "60d"), false, "").await;
    let id = rig
        .start_drill(json!({"scenario": "notifier-down", "notifier": "side", "for": "6m"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = rig.until_ended(&id, Duration::from_secs(6 * 60)).await;
    assert_passed(&d, &["notifier_failing"]);
    assert_eq!(d["report"]["notification"]["notifier"], "hook");
    assert_eq!(d["report"]["alert"]["labels"]["notifier"], "side");
    // Nothing was lost: the probe held back from `side` arrives once healed.
    rig.step_until(
        Duration::from_secs(10 * 60),
        "the probe at side",
        || async {
            rig.received("/side")
                .iter()
                .any(|n| n["kind"] == "drill" && n["drill"] == id)
        },
    )
    .await;
    let failed_sends = rig
        .notifiers
        .all()
        .iter()
        .filter(|r| r.uri.starts_with("/side"))
        .count();
    assert_eq!(
        failed_sends, 1,
        "the drill failed the sends without sending: side got only the final one"
    );

    // `hook` down: notifier_failing(hook) is critical, and `side` takes only warnings.
    let fail = rig
        .start_drill(json!({"scenario": "notifier-down", "notifier": "hook", "for": "4m"}))
        .await;
    let d = rig
        .until_ended(fail["id"].as_str().unwrap(), Duration::from_secs(5 * 60))
        .await;
    assert_routed_nowhere(&d);
    rig.finish().await;
}

/// An Alertmanager gets no probe: the watchdog alert it is sent at every evaluation is what
/// the drill fails, and three failed evaluations make it failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_down_on_an_alertmanager_fails_its_watchdog_alerts() {
    let rig = Rig::start(Backend::Sqlite, ("30d", "60d"), true, "").await;
    let id = rig
        .start_drill(json!({"scenario": "notifier-down", "notifier": "am", "for": "6m"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = rig.until_ended(&id, Duration::from_secs(6 * 60)).await;
    assert_passed(&d, &["notifier_failing"]);
    assert_eq!(d["report"]["notification"]["notifier"], "hook");
    // Nothing was posted to the Alertmanager while the drill ran, and no probe was queued.
    let outbox = rig
        .server
        .server
        .store
        .list_notifications(Some("am".into()), 100)
        .await
        .unwrap();
    assert!(
        outbox.iter().all(|n| !n.key.starts_with("drill:")),
        "no probe in the Alertmanager's outbox: {outbox:#?}"
    );
    let started = d["started_at"].as_str().unwrap();
    let healed = d["healed_at"].as_str().unwrap();
    let during: Vec<Value> = rig
        .received("/am")
        .into_iter()
        .flat_map(|b| b.as_array().cloned().unwrap_or_default())
        .filter(|a| {
            let at = a["startsAt"].as_str().unwrap_or("");
            a["labels"]["alertname"] == "watchdog" && at > started && at < healed
        })
        .collect();
    assert!(during.is_empty(), "{during:#?}");
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stall_passes_when_notified_and_fails_when_routed_nowhere() {
    queue_stall(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_stall_passes_when_notified_and_fails_when_routed_nowhere() {
    queue_stall(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_down_passes_when_notified_and_fails_when_routed_nowhere() {
    handler_down(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_handler_down_passes_when_notified_and_fails_when_routed_nowhere() {
    handler_down(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_stop_passes_when_notified_and_fails_when_routed_nowhere() {
    flow_stop(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flow_stop_passes_when_notified_and_fails_when_routed_nowhere() {
    flow_stop(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_down_passes_when_notified_elsewhere_and_fails_when_routed_nowhere() {
    notifier_down(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifier_down_passes_when_notified_elsewhere_and_fails_when_routed_nowhere() {
    notifier_down(Backend::postgres().await).await;
}

// ---------------------------------------------------------------------------------------
// Healing across a restart.

async fn heals_across_a_restart(backend: Backend) {
    // Canaries a month apart: nothing detects this drill before the server stops.
    let rig = Rig::start(backend, ("30d", "60d"), true, "").await;
    let id = rig
        .start_drill(json!({"scenario": "queue-stall", "source": "maelys-kustomer", "for": "5m"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let held = rig.send("maelys-kustomer", "msg-restart").await;
    rig.step().await;
    assert_eq!(rig.event(&held).await["deliveries"][0]["state"], "pending");

    // Stopped mid-drill; started again after its expiry.
    let Rig {
        server,
        handler,
        notifiers,
        db,
    } = rig;
    let TestServer {
        server: running,
        clock,
        dir,
        http,
        config,
    } = server;
    running.shutdown().await.unwrap();
    clock.advance(Duration::from_secs(6 * 60));
    let running = intake_server::Server::new(config.clone(), Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let rig = Rig {
        server: TestServer {
            server: running,
            clock,
            dir,
            http,
            config,
        },
        handler,
        notifiers,
        db,
    };
    // The fault is not applied: the held delivery goes out at once.
    rig.wait_for("the held delivery after the restart", || async {
        rig.event(&held).await["deliveries"][0]["state"] == "delivered"
    })
    .await;
    // And the drill is recorded as finished, healed at its expiry.
    let d = rig.until_ended(&id, Duration::from_secs(60)).await;
    assert_eq!(d["state"], "failed", "{d:#}");
    assert_eq!(d["healed_at"], d["expires_at"], "{d:#}");
    assert_eq!(d["report"]["missing"], "no_alert");
    let page = rig.server.metrics().await.unwrap();
    assert!(
        page.contains(r#"intake_drill_active{scenario="queue-stall"} 0"#),
        "{page}"
    );
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_heals_after_a_restart_in_the_middle_of_it() {
    heals_across_a_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_drill_heals_after_a_restart_in_the_middle_of_it() {
    heals_across_a_restart(Backend::postgres().await).await;
}

// ---------------------------------------------------------------------------------------
// Marked notifications.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_s_notifications_and_their_resolutions_are_marked() {
    let rig = Rig::start(Backend::Sqlite, ("60s", "2m"), true, "").await;
    rig.healthy("maelys-kustomer").await;
    let id = rig
        .start_drill(json!({"scenario": "queue-stall", "source": "maelys-kustomer"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = rig.until_ended(&id, Duration::from_secs(5 * 60)).await;
    assert_passed(&d, &["canary_failed", "queue_stalled"]);

    // The webhook notice: [DRILL], the drill's id, its own group.
    let firing = marked(&rig, &id, "firing");
    assert!(!firing.is_empty(), "{:#?}", rig.received("/hook"));
    let n = &firing[0];
    assert!(
        n["summary"]
            .as_str()
            .unwrap()
            .starts_with("[DRILL] [FIRING]"),
        "{n:#}"
    );
    assert_eq!(n["labels"]["drill"], id.as_str());
    assert_eq!(n["alerts"][0]["labels"]["drill"], id.as_str());
    assert!(n["key"]
        .as_str()
        .unwrap()
        .contains(&format!("drill=\"{id}\"")));
    // Nothing about this source was notified unmarked.
    assert!(rig
        .received("/hook")
        .iter()
        .filter(|n| n["kind"] == "alert")
        .all(|n| n["drill"] == id.as_str()));

    // Alertmanager: the label `drill`, so routing can send drills to a non-paging receiver.
    let am: Vec<Value> = rig
        .received("/am")
        .into_iter()
        .flat_map(|b| b.as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] != "watchdog")
        .collect();
    assert!(!am.is_empty(), "{:#?}", rig.received("/am"));
    for a in &am {
        assert_eq!(a["labels"]["drill"], id.as_str(), "{a:#}");
        assert!(a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[DRILL] "));
    }

    // Healed, the canaries get through again: the resolution is marked too.
    rig.step_until(
        Duration::from_secs(5 * 60),
        "the marked resolution",
        || async { !marked(&rig, &id, "resolved").is_empty() },
    )
    .await;
    let r = &marked(&rig, &id, "resolved")[0];
    assert!(r["summary"]
        .as_str()
        .unwrap()
        .starts_with("[DRILL] [RESOLVED]"));

    // Tenant tokens read their own tenant's drills, and start none.
    let (status, mine) = rig
        .server
        .api("/api/v1/drills", "maelys-token")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(mine["data"][0]["id"], id.as_str());
    let (_, theirs) = rig
        .server
        .api("/api/v1/drills", "other-token")
        .await
        .unwrap();
    assert_eq!(theirs["data"], json!([]));
    let (status, _) = rig
        .server
        .api(&format!("/api/v1/drills/{id}"), "other-token")
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, p) = rig
        .post(
            "/api/v1/drills",
            "maelys-token",
            json!({"scenario": "queue-stall", "source": "maelys-kustomer"}),
        )
        .await;
    assert_eq!(status, 403, "{p}");
    rig.finish().await;
}

// ---------------------------------------------------------------------------------------
// Drill incidents.

/// The incident the drill `id` declared, read alone, once there is one (real time, bounded
/// by [`PATIENCE`]; the clock does not move).
async fn drill_incident(rig: &Rig, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, list) = rig
            .server
            .api("/api/v1/incidents", ADMIN_TOKEN)
            .await
            .unwrap();
        let found = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["drill"] == id)
            .map(|i| i["id"].as_str().unwrap().to_string());
        if let Some(incident) = found {
            let (status, detail) = rig
                .server
                .api(&format!("/api/v1/incidents/{incident}"), ADMIN_TOKEN)
                .await
                .unwrap();
            assert_eq!(status, 200, "{detail:#}");
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no incident of drill {id} within {PATIENCE:?}: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A queue-stall drill on a server that declares incidents by itself: its alert declares a
/// drill incident, whose impact starts with the drill's fault; on-call is told, marked; the
/// tenant's contact is told only when `tell` (`drill_tenant_notices`), then marked as a drill.
/// Untold, the incident resolves by itself once the drill's alerts resolve.
async fn a_drill_declares_a_drill_incident(backend: Backend, tell: bool) {
    let extra = format!("[incidents]\nauto_declare = true\ndrill_tenant_notices = {tell}\n");
    let rig = Rig::start(backend, ("60s", "2m"), false, &extra).await;
    rig.healthy("maelys-kustomer").await;
    let drill = rig
        .start_drill(json!({"scenario": "queue-stall", "source": "maelys-kustomer", "for": "6m"}))
        .await;
    let id = drill["id"].as_str().unwrap().to_string();
    let d = rig.until_ended(&id, Duration::from_secs(6 * 60)).await;
    assert_passed(&d, &["canary_failed", "queue_stalled"]);

    let i = drill_incident(&rig, &id).await;
    let title = i["title"].as_str().unwrap();
    assert!(title.starts_with("[DRILL] "), "{i:#}");
    assert_eq!(i["tenants"], json!(["maelys"]));
    assert_eq!(
        i["impact_start"], d["started_at"],
        "the drill's fault start"
    );
    let incident = i["id"].as_str().unwrap().to_string();
    // The tenant's token reads of the drill only where the tenant would be told of it.
    let (_, mine) = rig
        .server
        .api("/api/v1/incidents", "maelys-token")
        .await
        .unwrap();
    assert_eq!(
        mine["data"].as_array().unwrap().len(),
        usize::from(tell),
        "{mine:#}"
    );
    let (status, _) = rig
        .server
        .api(&format!("/api/v1/incidents/{incident}"), "maelys-token")
        .await
        .unwrap();
    assert_eq!(status, if tell { 200 } else { 404 });

    // On-call: told at once, marked like the drill's alerts.
    rig.wait_for("on-call's incident notice", || async {
        rig.received("/hook")
            .iter()
            .any(|n| n["kind"] == "incident" && n["incident"]["id"] == incident.as_str())
    })
    .await;
    let oncall: Vec<Value> = rig
        .received("/hook")
        .into_iter()
        .filter(|n| n["kind"] == "incident")
        .collect();
    for n in &oncall {
        assert_eq!(n["drill"], id.as_str(), "{n:#}");
        assert_eq!(n["labels"]["drill"], id.as_str(), "{n:#}");
        assert!(
            n["summary"]
                .as_str()
                .unwrap()
                .starts_with("[DRILL] [INCIDENT"),
            "{n:#}"
        );
    }

    let timeline = i["timeline"].as_array().unwrap();
    let tenant_rows = |t: &Value| t["kind"] == "notice" && t["detail"]["tenant"] == "maelys";
    if tell {
        rig.wait_for("the tenant's notice", || async {
            !rig.received("/contact/maelys").is_empty()
        })
        .await;
        let told = rig.received("/contact/maelys");
        assert_eq!(told.len(), 1, "{told:#?}");
        assert_eq!(told[0]["drill"], id.as_str());
        let text = told[0]["incident"]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!(
                "[DRILL] This is a fire drill ({id}), not a real outage"
            )),
            "{text}"
        );
    } else {
        // Held: recorded as such, and no notice to the tenant exists at all (not merely
        // not delivered yet).
        let held = timeline
            .iter()
            .find(|t| t["kind"] == "tenant_notice_held")
            .unwrap_or_else(|| panic!("{i:#}"));
        assert_eq!(held["detail"]["held_for_drill"], true, "{held:#}");
        assert!(!timeline.iter().any(tenant_rows), "{i:#}");
        // Healed, the canaries get through again: its alerts resolve, and so does it, by
        // itself; the tenant's receiver never got anything.
        rig.step_until(
            Duration::from_secs(6 * 60),
            "the drill incident resolved by itself",
            || async {
                let (_, i) = rig
                    .server
                    .api(&format!("/api/v1/incidents/{incident}"), ADMIN_TOKEN)
                    .await
                    .unwrap();
                i["status"] == "resolved"
            },
        )
        .await;
        assert!(rig.received("/contact/maelys").is_empty());
    }
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_declares_a_drill_incident_the_tenant_hears_of_only_when_asked() {
    a_drill_declares_a_drill_incident(Backend::Sqlite, false).await;
    a_drill_declares_a_drill_incident(Backend::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_drill_declares_a_drill_incident_the_tenant_hears_of_only_when_asked() {
    a_drill_declares_a_drill_incident(Backend::postgres().await, false).await;
    a_drill_declares_a_drill_incident(Backend::postgres().await, true).await;
}

// ---------------------------------------------------------------------------------------
// Scheduled drills and drill_failed.

/// The `drill_failed` webhook notices with `status`.
fn drill_failed(rig: &Rig, status: &str) -> Vec<Value> {
    rig.received("/hook")
        .into_iter()
        .filter(|n| n["rule"] == "drill_failed" && n["status"] == status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scheduled_drill_raises_drill_failed_and_the_next_pass_resolves_it() {
    let schedule = "[[drills]]\nscenario = \"queue-stall\"\nsource = \"other-kustomer\"\nschedule = \"1h\"\nfor = \"3m\"\n";
    let rig = Rig::start(Backend::Sqlite, ("60s", "2m"), false, schedule).await;
    // The schedule's first drill starts at once, and fails: tenant other's alerts go nowhere.
    rig.step_until(Duration::from_secs(60), "the scheduled drill", || async {
        let (_, all) = rig.server.api("/api/v1/drills", ADMIN_TOKEN).await.unwrap();
        all["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let (_, all) = rig.server.api("/api/v1/drills", ADMIN_TOKEN).await.unwrap();
    let first = all["data"][0].clone();
    assert_eq!(first["trigger"], "scheduled");
    assert_eq!(first["schedule"], "queue-stall:other-kustomer");
    assert_eq!(first["created_by"], "schedule");
    let d = rig
        .until_ended(first["id"].as_str().unwrap(), Duration::from_secs(4 * 60))
        .await;
    assert_routed_nowhere(&d);
    rig.step_until(
        Duration::from_secs(3 * 60),
        "drill_failed notified",
        || async { !drill_failed(&rig, "firing").is_empty() },
    )
    .await;
    let n = &drill_failed(&rig, "firing")[0];
    assert_eq!(n["severity"], "critical");
    assert!(n["drill"].is_null(), "drill_failed is a real alert: {n:#}");
    let reason = n["alerts"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("queue-stall") && reason.contains("routed to no notifier"),
        "{reason}"
    );

    // The operator fixes the routing; the next drill of the schedule, an hour after the
    // first, passes, and drill_failed resolves.
    let fixed = config(
        &rig.server.config.storage.url,
        &rig.handler.url(),
        &rig.notifiers,
        ("60s", "2m"),
        false,
        schedule,
    )
    .replace(
        "tenant = \"other\"\nseverity = \"info\"",
        "tenant = \"other\"\nseverity = \"critical\"",
    );
    let Rig {
        server,
        handler,
        notifiers,
        db,
    } = rig;
    let rig = Rig {
        server: server.restart_with(&fixed).await.unwrap(),
        handler,
        notifiers,
        db,
    };
    rig.step_until(
        Duration::from_secs(70 * 60),
        "the next scheduled drill",
        || async {
            let (_, all) = rig.server.api("/api/v1/drills", ADMIN_TOKEN).await.unwrap();
            all["data"].as_array().is_some_and(|d| d.len() >= 2)
        },
    )
    .await;
    let (_, all) = rig.server.api("/api/v1/drills", ADMIN_TOKEN).await.unwrap();
    let second = all["data"][0].clone();
    assert_ne!(second["id"], first["id"]);
    let d = rig
        .until_ended(second["id"].as_str().unwrap(), Duration::from_secs(4 * 60))
        .await;
    assert_passed(&d, &["canary_failed", "queue_stalled"]);
    rig.step_until(
        Duration::from_secs(3 * 60),
        "drill_failed resolved",
        || async { !drill_failed(&rig, "resolved").is_empty() },
    )
    .await;
    rig.finish().await;
}

// ---------------------------------------------------------------------------------------
// The command line.

/// Runs `intake drill <args> --url … --token …` while the clock steps, until it exits.
async fn cli_drill(rig: &Rig, args: &[&str]) -> crate::recovery_support::Run {
    let url = rig.server.url();
    let mut all: Vec<String> = vec!["drill".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--url".into(), url, "--token".into(), ADMIN_TOKEN.into()]);
    let task = tokio::spawn(async move {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        intake_cli(&refs).await
    });
    // The first steps wait for the drill to exist, so the clock never runs ahead of it.
    while !task.is_finished() {
        let (_, list) = rig
            .server
            .api("/api/v1/drills?state=running", ADMIN_TOKEN)
            .await
            .unwrap();
        if list["data"].as_array().is_some_and(|d| !d.is_empty()) {
            rig.step().await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    task.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_drill_exits_by_the_verdict_prints_the_timings_and_refuses_bad_input() {
    let rig = Rig::start(Backend::Sqlite, ("60s", "2m"), false, "").await;
    rig.healthy("maelys-kustomer").await;

    let run = cli_drill(&rig, &["queue-stall", "--source", "maelys-kustomer"]).await;
    run.assert_code(0);
    for needle in [
        "queue-stall on source `maelys-kustomer` (manual): PASSED",
        "(through `hook` at",
        "healed:         yes, at",
    ] {
        assert!(run.stdout.contains(needle), "{needle:?} not in {run:?}");
    }
    for line in ["time to detect: ", "time to notify: "] {
        let timing = run
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(line.trim_start()))
            .unwrap_or_else(|| panic!("no {line:?} in {run:?}"));
        assert!(
            timing.ends_with(')') && !timing.starts_with('-'),
            "{timing}"
        );
    }
    assert!(
        run.stderr
            .contains("waiting for canary_failed or queue_stalled"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("notification sent through `hook`"),
        "{run:?}"
    );
    eprintln!("{}", run.stdout);

    let run = cli_drill(
        &rig,
        &["queue-stall", "--source", "other-kustomer", "--for", "3m"],
    )
    .await;
    run.assert_code(1);
    assert!(run.stdout.contains("FAILED"), "{run:?}");
    assert!(
        run.stdout.contains("alert but routed to no notifier"),
        "{run:?}"
    );
    assert!(run.stdout.contains("time to notify: -"), "{run:?}");

    // `list` and `show` read what happened.
    let url = rig.server.url();
    let list = intake_cli(&["drill", "list", "--url", &url, "--token", ADMIN_TOKEN]).await;
    list.assert_code(0);
    assert_eq!(list.stdout.lines().count(), 2, "{list:?}");
    assert!(
        list.stdout.lines().next().unwrap().contains("failed"),
        "{list:?}"
    );

    // Bad input is refused with a clear error, and no drill starts.
    let unknown = intake_cli(&["drill", "queue-stal", "--url", &url, "--token", ADMIN_TOKEN]).await;
    unknown.assert_code(2);
    assert!(
        unknown
            .stderr
            .contains("unrecognized subcommand 'queue-stal'"),
        "{unknown:?}"
    );
    let missing = intake_cli(&[
        "drill",
        "queue-stall",
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
    ])
    .await;
    missing.assert_code(2);
    assert!(missing.stderr.contains("--source <SOURCE>"), "{missing:?}");
    let nope = intake_cli(&[
        "drill",
        "flow-stop",
        "--source",
        "nope",
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
    ])
    .await;
    nope.assert_code(1);
    assert!(
        nope.stderr
            .contains("no source `nope` (configured: maelys-kustomer, other-kustomer)"),
        "{nope:?}"
    );
    let (_, all) = rig.server.api("/api/v1/drills", ADMIN_TOKEN).await.unwrap();
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    // Cancel: a running drill ends at once, healed.
    let id = rig
        .start_drill(json!({"scenario": "flow-stop", "source": "maelys-kustomer"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel = intake_cli(&[
        "drill",
        "cancel",
        &id,
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
    ])
    .await;
    cancel.assert_code(0);
    let d = rig.drill(&id).await;
    assert_eq!(
        (d["state"].as_str(), d["healed"].as_bool()),
        (Some("cancelled"), Some(true))
    );
    let body = kustomer::message_create("msg-after-cancel", "email");
    let resp = rig
        .server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "healed at once");
    let show = intake_cli(&["drill", "show", &id, "--url", &url, "--token", ADMIN_TOKEN]).await;
    show.assert_code(1);
    assert!(show.stdout.contains("CANCELLED"), "{show:?}");

    // Ctrl-C stops the command, not the drill: the server finishes it and heals.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args([
        "drill",
        "queue-stall",
        "--source",
        "maelys-kustomer",
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let running = || async {
        let (_, list) = rig
            .server
            .api("/api/v1/drills?state=running", ADMIN_TOKEN)
            .await
            .unwrap();
        list["data"][0]["id"].as_str().map(String::from)
    };
    rig.wait_for("the drill started by the command", || async {
        running().await.is_some()
    })
    .await;
    let id = running().await.unwrap();
    let pid = child.id().unwrap().to_string();
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "interrupted: {status:?}");
    let d = rig.until_ended(&id, Duration::from_secs(5 * 60)).await;
    assert_passed(&d, &["canary_failed", "queue_stalled"]);
    rig.finish().await;
}
