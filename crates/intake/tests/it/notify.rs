//! Alerts that reach people: the notification pipeline inside a running server, on its
//! manual clock, with local capture servers playing Slack, a JSON webhook, PagerDuty,
//! Alertmanager and a dead-man's switch.
//!
//! A failing handler makes the queue stall (`queue_stalled`, 2 minutes for `maelys`, the
//! default 5 for `other`), which is the easiest way to make an alert fire and, once the
//! handler answers 200 again, resolve.

use std::time::Duration;

use intake_testkit::{
    config_toml, kustomer, CaptureHandler, NotifierCapture, NotifierRequest, Reply, TestServer,
    ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use reqwest::Method;
use serde_json::{json, Value};

/// The clock moves this much per step; the server's tasks get real time to run in between.
const STEP: Duration = Duration::from_secs(5);

struct Receivers {
    slack: NotifierCapture,
    hook: NotifierCapture,
    pager: NotifierCapture,
    am: NotifierCapture,
}

impl Receivers {
    async fn start() -> Self {
        Receivers {
            slack: NotifierCapture::start().await.unwrap(),
            hook: NotifierCapture::start().await.unwrap(),
            pager: NotifierCapture::start().await.unwrap(),
            am: NotifierCapture::start().await.unwrap(),
        }
    }

    fn toml(&self) -> String {
        format!(
            r#"
[[notifiers]]
id = "slack"
kind = "slack"
url = "{}"

[[notifiers]]
id = "hook"
kind = "webhook"
url = "{}"

[[notifiers]]
id = "pager"
kind = "pagerduty"
routing_key = "0123456789abcdef0123456789abcdef"
url = "{}"
severities = ["critical"]

[[notifiers]]
id = "am"
kind = "alertmanager"
url = "{}"
"#,
            self.slack.url("/services/T0/B0/X"),
            self.hook.url("/hooks/intake"),
            self.pager.url(""),
            self.am.url(""),
        )
    }
}

/// A server whose handler fails, with a second source for `maelys`, the tighter
/// `queue_stalled` threshold for `maelys`, and `extra` appended.
async fn server(handler: &CaptureHandler, extra: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_toml(dir.path(), &handler.url(), "");
    text = text.replace(
        "shutdown_timeout = \"2s\"",
        "shutdown_timeout = \"2s\"\npublic_url = \"http://intake.test:8080\"",
    );
    text.push_str(&format!(
        r#"
[[sources]]
id = "maelys-second"
tenant = "maelys"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler"]

[[rules]]
rule = "queue_stalled"
tenant = "maelys"
threshold = "2m"

[cluster]
duty_lease = "24h"
{extra}
"#
    ));
    TestServer::start_with(dir, &text).await.unwrap()
}

async fn send(server: &TestServer, source: &str, id: &str) {
    let r = server
        .send_kustomer(
            source,
            &kustomer::message_create(id, "email"),
            SOURCE_SECRET,
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Steps the clock until `done` holds (or the simulated budget runs out, which fails).
async fn step_until(server: &TestServer, simulated: Duration, what: &str, done: impl Fn() -> bool) {
    let mut elapsed = Duration::ZERO;
    while !done() {
        assert!(
            elapsed < simulated,
            "{what}: not reached after {simulated:?} of simulated time"
        );
        server.clock.advance(STEP);
        elapsed += STEP;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Steps the clock by `d` (in small steps).
async fn step_for(server: &TestServer, d: Duration) {
    let mut elapsed = Duration::ZERO;
    while elapsed < d {
        server.clock.advance(STEP);
        elapsed += STEP;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Webhook notices (the notice JSON itself) of `kind`/`status` whose key starts with `key`.
fn notices(r: &NotifierCapture, kind: &str, status: &str, key: &str) -> Vec<Value> {
    r.accepted()
        .iter()
        .map(NotifierRequest::json)
        .filter(|n| n["kind"] == kind && n["status"] == status)
        .filter(|n| n["key"].as_str().is_some_and(|k| k.starts_with(key)))
        .collect()
}

const MAELYS: &str = r#"queue_stalled{tenant="maelys"}"#;
const OTHER: &str = r#"queue_stalled{tenant="other"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_group_fires_once_repeats_and_resolves_on_every_kind_of_notifier() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let rx = Receivers::start().await;
    let server = server(
        &handler,
        &format!("{}\n[monitor]\nrepeat_interval = \"30m\"\n", rx.toml()),
    )
    .await;
    // Two sources of one tenant stall: one group, one notification.
    send(&server, "maelys-kustomer", "g-1").await;
    send(&server, "maelys-second", "g-2").await;

    step_until(
        &server,
        Duration::from_secs(15 * 60),
        "maelys firing",
        || !notices(&rx.hook, "alert", "firing", MAELYS).is_empty(),
    )
    .await;
    // Let a few more evaluations pass: still exactly one firing notice for the group.
    step_for(&server, Duration::from_secs(3 * 60)).await;
    let firing = notices(&rx.hook, "alert", "firing", MAELYS);
    assert_eq!(firing.len(), 1, "{firing:#?}");
    let n = &firing[0];
    assert_eq!(n["severity"], "critical");
    assert_eq!(n["labels"], json!({"tenant": "maelys"}));
    let alerts = n["alerts"].as_array().unwrap();
    let sources: Vec<&str> = alerts
        .iter()
        .map(|a| a["labels"]["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["maelys-kustomer", "maelys-second"], "{n:#}");
    // The numbers behind it and the links.
    let reason = alerts[0]["reason"].as_str().unwrap();
    assert!(reason.contains("threshold"), "{reason}");
    assert!(alerts[0]["value"].as_f64().unwrap() >= 120.0, "{n:#}");
    assert!(
        alerts[0]["links"]["dashboard"]
            .as_str()
            .unwrap()
            .starts_with("http://intake.test:8080/alerts?rule=queue_stalled&tenant=maelys"),
        "{n:#}"
    );
    assert!(
        alerts[0]["links"]["events"].as_str().unwrap().starts_with(
            "http://intake.test:8080/api/v1/events?tenant=maelys&source=maelys-kustomer"
        ),
        "{n:#}"
    );

    // Slack: one readable message for the group.
    let slack: Vec<String> = rx
        .slack
        .accepted()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or("").to_string())
        .filter(|t| t.contains("Queue stalled") && t.contains("tenant=maelys"))
        .collect();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(slack[0].contains("FIRING"), "{slack:?}");
    // PagerDuty (critical only): one trigger with the group's dedup key.
    let triggers: Vec<Value> = rx
        .pager
        .accepted()
        .iter()
        .map(NotifierRequest::json)
        .filter(|e| e["dedup_key"] == MAELYS)
        .collect();
    assert_eq!(triggers.len(), 1, "{triggers:#?}");
    assert_eq!(triggers[0]["event_action"], "trigger");
    // Alertmanager: one alert per member, as Prometheus posts them.
    let am: Vec<Value> = rx
        .am
        .accepted()
        .iter()
        .filter(|r| r.uri == "/api/v2/alerts")
        .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
        .filter(|a| {
            a["labels"]["alertname"] == "queue_stalled" && a["labels"]["tenant"] == "maelys"
        })
        .collect();
    assert_eq!(am.len(), 2, "{am:#?}");

    // Still firing after the repeat interval: a repeat, no new firing.
    step_until(&server, Duration::from_secs(40 * 60), "repeat", || {
        !notices(&rx.hook, "alert", "repeat", MAELYS).is_empty()
    })
    .await;
    assert_eq!(notices(&rx.hook, "alert", "firing", MAELYS).len(), 1);

    // The handler recovers: one resolution, on every notifier that heard of the group.
    handler.set_default(Reply::Status(200));
    step_until(&server, Duration::from_secs(60 * 60), "resolved", || {
        !notices(&rx.hook, "alert", "resolved", MAELYS).is_empty()
    })
    .await;
    step_for(&server, Duration::from_secs(60)).await;
    let resolved = notices(&rx.hook, "alert", "resolved", MAELYS);
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert!(resolved[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["resolved_at"].is_string()));
    let pd_resolve = rx
        .pager
        .accepted()
        .iter()
        .map(NotifierRequest::json)
        .filter(|e| e["dedup_key"] == MAELYS && e["event_action"] == "resolve")
        .count();
    assert_eq!(pd_resolve, 1);
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"intake_notifications_total{notifier="hook",outcome="sent"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_repages_nor_forgets() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let hook = NotifierCapture::start().await.unwrap();
    let extra = format!(
        "[[notifiers]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/h")
    );
    let server = server(&handler, &extra).await;
    send(&server, "maelys-kustomer", "r-1").await;
    step_until(&server, Duration::from_secs(15 * 60), "firing", || {
        !notices(&hook, "alert", "firing", MAELYS).is_empty()
    })
    .await;

    let server = server.restart().await.unwrap();
    step_for(&server, Duration::from_secs(10 * 60)).await;
    assert_eq!(
        notices(&hook, "alert", "firing", MAELYS).len(),
        1,
        "the restart re-paged"
    );
    assert!(notices(&hook, "alert", "repeat", MAELYS).is_empty());

    // Nor forgets: the resolution still comes after the restart.
    handler.set_default(Reply::Status(200));
    step_until(&server, Duration::from_secs(60 * 60), "resolved", || {
        !notices(&hook, "alert", "resolved", MAELYS).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_that_is_down_gets_its_notification_late_and_notifier_failing_goes_elsewhere() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let down = NotifierCapture::start().await.unwrap();
    let up = NotifierCapture::start().await.unwrap();
    down.set_status(503);
    let extra = format!(
        "[[notifiers]]\nid = \"down\"\nkind = \"webhook\"\nurl = \"{}\"\n\n[[notifiers]]\nid = \"up\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        down.url("/d"),
        up.url("/u")
    );
    let server = server(&handler, &extra).await;
    send(&server, "maelys-kustomer", "d-1").await;

    step_until(
        &server,
        Duration::from_secs(15 * 60),
        "firing on `up`",
        || !notices(&up, "alert", "firing", MAELYS).is_empty(),
    )
    .await;
    // `down` keeps failing; notifier_failing fires for it, through `up` only.
    step_until(
        &server,
        Duration::from_secs(15 * 60),
        "notifier_failing",
        || !notices(&up, "alert", "firing", "notifier_failing").is_empty(),
    )
    .await;
    let nf = &notices(&up, "alert", "firing", "notifier_failing")[0];
    assert_eq!(nf["labels"], json!({"notifier": "down"}));
    assert_eq!(nf["severity"], "critical");
    assert!(
        nf["reason"].as_str().unwrap().contains("HTTP 503"),
        "{nf:#}"
    );
    assert!(down.all().len() >= 3, "it was retried");
    assert!(down.accepted().is_empty());
    let (_, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
    assert!(
        alerts["firing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "notifier_failing" && a["labels"]["notifier"] == "down"),
        "{alerts:#}"
    );
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"intake_alerts_firing{rule="notifier_failing",severity="critical"} 1"#),
        "{metrics}"
    );

    // It comes back: the delayed firing arrives, nothing was dropped, and the failing alert
    // resolves (again through `up`).
    down.set_status(200);
    step_until(
        &server,
        Duration::from_secs(30 * 60),
        "late delivery",
        || !notices(&down, "alert", "firing", MAELYS).is_empty(),
    )
    .await;
    step_until(
        &server,
        Duration::from_secs(15 * 60),
        "notifier_failing resolved",
        || !notices(&up, "alert", "resolved", "notifier_failing").is_empty(),
    )
    .await;
    assert!(
        notices(&down, "alert", "firing", "notifier_failing").is_empty(),
        "a failing notifier is never told about itself"
    );
    let (_, list) = server.api("/api/v1/notifiers", ADMIN_TOKEN).await.unwrap();
    let d = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "down")
        .unwrap();
    assert_eq!(d["undelivered"], 0, "{list:#}");
    assert_eq!(d["failing"], false, "{list:#}");
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"intake_notifications_total{notifier="down",outcome="retry"}"#),
        "{metrics}"
    );
}

async fn post_silence(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    server
        .api_send(Method::POST, "/api/v1/silences", token, Some(body))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_that_could_hide_an_outage_are_refused_with_the_reason() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, "").await;
    let ok = || json!({"matchers": {"tenant": "maelys"}, "for": "1h", "created_by": "alice", "comment": "db migration"});
    let with = |k: &str, v: Value| {
        let mut b = ok();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = ok();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = [
        (
            with("matchers", json!({})),
            "at least a `rule`, a `tenant` or a `source`",
        ),
        (
            with("matchers", json!({"channel": "chat"})),
            "at least a `rule`",
        ),
        (
            with("matchers", json!({"severity": "critical"})),
            "global off switch",
        ),
        (without("for"), "needs an expiry"),
        (with("for", json!("25h")), "monitor.max_silence"),
        (
            with("matchers", json!({"rule": "watchdog"})),
            "cannot be silenced",
        ),
        (
            with(
                "matchers",
                json!({"rule": "canary_failed", "tenant": "maelys"}),
            ),
            "cannot be silenced",
        ),
        (without("comment"), "`comment` is required"),
        (without("created_by"), "`created_by` is required"),
    ];
    for (body, needle) in cases {
        let (status, problem) = post_silence(&server, ADMIN_TOKEN, body.clone()).await;
        assert_eq!(status, 400, "{body} → {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    // A tenant token silences its own tenant only.
    let (status, problem) = post_silence(
        &server,
        "other-token",
        with("matchers", json!({"tenant": "maelys"})),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    let (status, _) = post_silence(&server, "maelys-token", ok()).await;
    assert_eq!(status, 201);
    // Nothing refused was stored.
    let (_, list) = server.api("/api/v1/silences", ADMIN_TOKEN).await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list:#}");
    let (_, theirs) = server.api("/api/v1/silences", "other-token").await.unwrap();
    assert!(theirs["data"].as_array().unwrap().is_empty(), "{theirs:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_silence_mutes_only_its_match_stays_visible_and_its_expiry_renotifies() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let hook = NotifierCapture::start().await.unwrap();
    let extra = format!(
        "[[notifiers]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/h")
    );
    let server = server(&handler, &extra).await;
    let (status, silence) = post_silence(
        &server,
        ADMIN_TOKEN,
        json!({"matchers": {"tenant": "maelys", "rule": "queue_stalled"}, "for": "15m",
               "created_by": "alice", "comment": "handler migration"}),
    )
    .await;
    assert_eq!(status, 201, "{silence}");
    let id = silence["id"].as_str().unwrap().to_string();
    assert_eq!(silence["announced_to"], json!(["hook"]));

    send(&server, "maelys-kustomer", "s-1").await;
    send(&server, "other-kustomer", "s-2").await;
    // The other tenant's alert is notified; maelys' fires too (earlier), but is muted.
    step_until(
        &server,
        Duration::from_secs(12 * 60),
        "other firing",
        || !notices(&hook, "alert", "firing", OTHER).is_empty(),
    )
    .await;
    assert!(notices(&hook, "alert", "firing", MAELYS).is_empty());
    let created = notices(&hook, "silence", "created", "silence:");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["silence"]["created_by"], "alice");
    // Still evaluated and visible, with the silence that mutes it.
    let (_, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
    let muted = alerts["firing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "queue_stalled" && a["labels"]["tenant"] == "maelys")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(muted["silenced_by"], id.as_str(), "{alerts:#}");
    let other = alerts["firing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["tenant"] == "other")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(other["silenced_by"], Value::Null, "{alerts:#}");

    // The silence ends by time: announced, and the alert that still fires is notified then.
    step_until(&server, Duration::from_secs(10 * 60), "re-notified", || {
        !notices(&hook, "alert", "firing", MAELYS).is_empty()
    })
    .await;
    let expired = notices(&hook, "silence", "expired", "silence:");
    assert_eq!(expired.len(), 1, "{expired:#?}");
    assert_eq!(expired[0]["silence"]["id"], id.as_str());

    // Expiry by hand: a new silence, expired through the API, announced once.
    let (_, s2) = post_silence(
        &server,
        ADMIN_TOKEN,
        json!({"matchers": {"source": "other-kustomer"}, "for": "1h",
               "created_by": "bob", "comment": "vendor maintenance"}),
    )
    .await;
    let id2 = s2["id"].as_str().unwrap();
    let (status, gone) = server
        .api_send(
            Method::DELETE,
            &format!("/api/v1/silences/{id2}"),
            ADMIN_TOKEN,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["state"], "expired");
    let (status, _) = server
        .api_send(
            Method::DELETE,
            &format!("/api/v1/silences/{id2}"),
            ADMIN_TOKEN,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 409);
    step_for(&server, Duration::from_secs(2 * 60)).await;
    let expired: Vec<Value> = notices(&hook, "silence", "expired", "silence:")
        .into_iter()
        .filter(|n| n["silence"]["id"] == id2)
        .collect();
    assert_eq!(expired.len(), 1, "announced once: {expired:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_pings_every_interval_and_its_failures_raise_notifier_failing() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let switch = NotifierCapture::start().await.unwrap();
    let extra = format!(
        "[monitor]\ninterval = \"60s\"\nwatchdog_url = \"{}\"\nwatchdog_interval = \"30s\"\n",
        switch.url("/ping/abc")
    );
    let server = server(&handler, &extra).await;
    // The first ping goes out when the duty starts.
    step_until(&server, Duration::from_secs(60), "first ping", || {
        !switch.all().is_empty()
    })
    .await;
    let first = switch.all().len();
    step_for(&server, Duration::from_secs(5 * 60)).await;
    // The ping due at the last step may still be on its way to the switch when stepping ends
    // (the ping is an HTTP request on real sockets): give it real time to land.
    let deadline = tokio::time::Instant::now() + crate::PATIENCE;
    while switch.all().len() - first < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pings = switch.all();
    // One per 30 s of simulated time: 10 in 5 minutes (one more if a step boundary lands on
    // a ping time).
    let new = pings.len() - first;
    assert!((10..=11).contains(&new), "{new} pings in 5 minutes");
    assert!(pings
        .iter()
        .all(|p| p.method == Method::GET && p.uri == "/ping/abc"));
    let (_, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
    assert_eq!(alerts["watchdog"]["state"], "firing", "{alerts:#}");

    // The switch is unreachable: after three failed pings, notifier_failing{notifier=watchdog}.
    switch.set_status(503);
    let failing = || async {
        let (_, a) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
        a["firing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "notifier_failing" && a["labels"]["notifier"] == "watchdog")
    };
    let mut elapsed = Duration::ZERO;
    while !failing().await {
        assert!(
            elapsed < Duration::from_secs(10 * 60),
            "notifier_failing never fired"
        );
        server.clock.advance(STEP);
        elapsed += STEP;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A silence cannot mute the watchdog.
    let (status, _) = post_silence(
        &server,
        ADMIN_TOKEN,
        json!({"matchers": {"rule": "watchdog"}, "for": "1h", "created_by": "a", "comment": "c"}),
    )
    .await;
    assert_eq!(status, 400);
}

fn intake(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .env_remove("INTAKE_URL")
        .env_remove("INTAKE_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_and_expires_silences_and_explains_a_refusal() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = server(&handler, "").await;
    let url = server.url();
    let api = ["--url", url.as_str(), "--token", ADMIN_TOKEN];
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            intake(&refs)
        })
    };
    let args =
        |v: &[&str]| -> Vec<String> { v.iter().chain(api.iter()).map(|s| s.to_string()).collect() };

    let out = run(args(&[
        "silence",
        "add",
        "--match",
        "tenant=maelys",
        "--match",
        "rule=inbound_drop",
        "--for",
        "2h",
        "--comment",
        "backfill running",
        "--author",
        "alice",
    ]))
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("created sil_"), "{stdout}");
    let id = stdout.split_whitespace().nth(1).unwrap().to_string();

    let out = run(args(&["silence", "list"])).await.unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    assert!(
        listed.contains(&id) && listed.contains("backfill running"),
        "{listed}"
    );

    let out = run(args(&["silence", "expire", &id])).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("expired {id}")));
    let out = run(args(&["silence", "list"])).await.unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&id));

    // Refused: unscoped. Non-zero, and the server's reason on stderr.
    let out = run(args(&[
        "silence",
        "add",
        "--match",
        "channel=chat",
        "--for",
        "1h",
        "--comment",
        "noisy",
        "--author",
        "alice",
    ]))
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("at least a `rule`"),
        "{stderr}"
    );
    // Refused: the watchdog.
    let out = run(args(&[
        "silence",
        "add",
        "--match",
        "rule=watchdog",
        "--for",
        "1h",
        "--comment",
        "x",
    ]))
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be silenced"));
}
