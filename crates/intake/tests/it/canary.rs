//! Canaries through the front door, on the server's manual clock: a signed synthetic webhook
//! per source every interval, POSTed to the server's own address, delivered to the capture
//! handler with `intake-origin: canary`; `canary_failed` when the destination is down or when
//! ingest accepts without queueing (the story's bug, made with a store fault), naming the
//! stage, notified within the deadline; canaries kept out of the tenants' flows; and the
//! always-firing watchdog alert reaching an Alertmanager at every evaluation.

use std::time::Duration;

use intake_core::Timestamp;
use intake_store::StoreFault;
use intake_testkit::{
    config_toml, kustomer, with_canaries, CaptureHandler, NotifierCapture, NotifierRequest, Reply,
    TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::Value;

/// The clock moves this much per step; the server's tasks get real time in between.
const STEP: Duration = Duration::from_secs(5);
/// The default deadline, and the product's target for alerting a total stop.
const DEADLINE: Duration = Duration::from_secs(120);
const TARGET: Duration = Duration::from_secs(180);

/// A server with production canary timings (60 s, 2 min), a webhook notifier `hook` and
/// `extra` appended.
async fn server(handler: &CaptureHandler, hook: &NotifierCapture, extra: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut text = with_canaries(&config_toml(dir.path(), &handler.url(), ""), "60s", "2m");
    text.push_str(&format!(
        r#"
[[notifiers]]
id = "hook"
kind = "webhook"
url = "{}"

[cluster]
duty_lease = "24h"
{extra}
"#,
        hook.url("/hook")
    ));
    TestServer::start_with(dir, &text).await.unwrap()
}

/// Steps the clock until `done` says yes (async checks welcome), failing after `simulated`.
async fn step_until<F, Fut>(server: &TestServer, simulated: Duration, what: &str, mut done: F)
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
        server.clock.advance(STEP);
        elapsed += STEP;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn canaries(server: &TestServer) -> Value {
    let (status, body) = server.api("/api/v1/canaries", ADMIN_TOKEN).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn entry<'a>(canaries: &'a Value, source: &str) -> &'a Value {
    canaries["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["source"] == source))
        .unwrap_or_else(|| panic!("no canary entry for {source}: {canaries:#}"))
}

fn time(v: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

/// Steps until `source` has had a successful canary; returns when it was delivered.
async fn first_success(server: &TestServer, source: &str) -> Timestamp {
    step_until(
        server,
        Duration::from_secs(5 * 60),
        "a first canary",
        || async { !entry(&canaries(server).await, source)["last_success_at"].is_null() },
    )
    .await;
    time(&entry(&canaries(server).await, source)["last_success_at"])
}

/// The webhook notices about `canary_failed` for `tenant` with `status`.
fn canary_notices(hook: &NotifierCapture, status: &str, tenant: &str) -> Vec<Value> {
    let key = format!(r#"canary_failed{{tenant="{tenant}"}}"#);
    hook.accepted()
        .iter()
        .map(NotifierRequest::json)
        .filter(|n| n["kind"] == "alert" && n["status"] == status && n["key"] == key)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_canary_goes_through_the_front_door_to_the_handler_as_a_canary() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = server(&handler, &hook, "").await;

    let delivered = first_success(&server, "maelys-kustomer").await;
    let got: Vec<_> = handler
        .received()
        .into_iter()
        .filter(|c| c.header("intake-source") == "maelys-kustomer")
        .collect();
    assert!(!got.is_empty());
    let c = &got[0];
    assert!(c.is_canary(), "{:?}", c.headers);
    assert!(
        c.signature_valid,
        "delivered like any event: signed for the handler"
    );
    assert_eq!(c.header("intake-event-type"), "intake.canary");
    assert_eq!(c.header("intake-tenant"), "maelys");
    // The body is the SOR's envelope as Kustomer would send it, with the marker on top.
    let body: Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(body["name"], "intake.canary");
    assert_eq!(body["intake_canary"]["source"], "maelys-kustomer");
    assert!(body["intake_canary"]["id"]
        .as_str()
        .unwrap()
        .starts_with("cny_"));

    // The API says where it stands and how long each stage took.
    let all = canaries(&server).await;
    let e = entry(&all, "maelys-kustomer");
    assert_eq!(e["interval_seconds"], 60);
    assert_eq!(e["deadline_seconds"], 120);
    assert_eq!(e["last"]["stage"], "delivered", "{e:#}");
    assert_eq!(time(&e["last_success_at"]), delivered);
    let latency = &e["last_success_latency"];
    for stage in ["ack", "queue", "delivery", "total"] {
        assert!(latency[stage].as_f64().is_some(), "{stage}: {e:#}");
    }
    assert!(e["failure"].is_null(), "{e:#}");
    // The event is stored as a canary, through the real ingest path.
    let event_id = e["last"]["event"].as_str().unwrap();
    let (_, event) = server
        .api(&format!("/api/v1/events/{event_id}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(event["origin"], "canary", "{event:#}");
    assert_eq!(event["deliveries"][0]["state"], "delivered");
    // A tenant token sees its own sources only.
    let (_, mine) = server
        .api("/api/v1/canaries", "maelys-token")
        .await
        .unwrap();
    let sources: Vec<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["maelys-kustomer"]);

    // The metrics: the last success and the stage latencies.
    let page = server.metrics().await.unwrap();
    let last = page
        .lines()
        .find(|l| {
            l.starts_with("intake_canary_last_success_timestamp_seconds{")
                && l.contains(r#"source="maelys-kustomer""#)
        })
        .unwrap_or_else(|| panic!("no last-success gauge:\n{page}"));
    let value: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, delivered.as_millis() as f64 / 1000.0, "{last}");
    assert!(
        page.contains(r#"intake_canary_latency_seconds_count{tenant="maelys",source="maelys-kustomer",stage="total"}"#),
        "{page}"
    );
    // Nothing was notified: all is well.
    assert!(canary_notices(&hook, "firing", "maelys").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_down_fires_canary_failed_within_the_deadline_naming_the_stage() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = server(&handler, &hook, "").await;
    let last_success = first_success(&server, "maelys-kustomer").await;

    handler.set_default(Reply::Status(503));
    let down_at = Timestamp(server.clock_now_secs() * 1000);
    step_until(&server, TARGET * 2, "canary_failed notified", || async {
        !canary_notices(&hook, "firing", "maelys").is_empty()
    })
    .await;
    let n = &canary_notices(&hook, "firing", "maelys")[0];
    let at = time(&n["at"]);
    eprintln!(
        "destination down: notified {:?} after the fault, {:?} after the last success",
        at.since(down_at),
        at.since(last_success)
    );
    assert!(
        at.since(last_success) <= DEADLINE + STEP,
        "notified {:?} after the last success",
        at.since(last_success)
    );
    assert!(
        at.since(down_at) <= TARGET,
        "notified {:?} after the destination went down",
        at.since(down_at)
    );
    assert_eq!(n["severity"], "critical");
    let reason = n["alerts"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("delivery failing: destination `handler` answered HTTP 503"),
        "{reason}"
    );
    assert_eq!(n["alerts"][0]["labels"]["source"], "maelys-kustomer");
    // The API names the stage too.
    let e = entry(&canaries(&server).await, "maelys-kustomer").clone();
    assert_eq!(e["failure"]["state"], "firing", "{e:#}");
    // The API shows the newest canary: the test steps the manual clock faster than the real
    // dispatcher, so the one sent a step ago may not have been attempted yet ("pending").
    assert!(
        ["failing", "pending"].contains(&e["failure"]["stage"].as_str().unwrap_or("")),
        "{e:#}"
    );
    assert!(
        e["failure"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("destination `handler`")),
        "{e:#}"
    );

    // The handler is back: the next canary gets through and the alert resolves.
    handler.set_default(Reply::Status(200));
    step_until(&server, Duration::from_secs(5 * 60), "resolved", || async {
        !canary_notices(&hook, "resolved", "maelys").is_empty()
    })
    .await;
    assert_eq!(canary_notices(&hook, "firing", "maelys").len(), 1);
    assert!(entry(&canaries(&server).await, "maelys-kustomer")["failure"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_accepting_without_queueing_fires_canary_failed_naming_the_stage() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = server(&handler, &hook, "").await;
    let last_success = first_success(&server, "maelys-kustomer").await;

    // The story's bug: 200 for every webhook, nothing queued, no error anywhere.
    server
        .server
        .store
        .inject_fault(Some(StoreFault::AcceptWithoutQueueing))
        .await
        .unwrap();
    let broken_at = Timestamp(server.clock_now_secs() * 1000);
    let r = server
        .send_kustomer(
            "maelys-kustomer",
            &kustomer::message_create("lost-1", "chat"),
            SOURCE_SECRET,
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the door still says all is well");

    step_until(&server, TARGET * 2, "canary_failed notified", || async {
        !canary_notices(&hook, "firing", "maelys").is_empty()
    })
    .await;
    let n = &canary_notices(&hook, "firing", "maelys")[0];
    let at = time(&n["at"]);
    eprintln!(
        "accepted without queueing: notified {:?} after the fault, {:?} after the last success",
        at.since(broken_at),
        at.since(last_success)
    );
    assert!(at.since(last_success) <= DEADLINE + STEP, "{n:#}");
    assert!(at.since(broken_at) <= TARGET, "{n:#}");
    let reason = n["alerts"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("accepted but not delivered: nothing queued"),
        "{reason}"
    );
    let e = entry(&canaries(&server).await, "maelys-kustomer").clone();
    assert_eq!(e["failure"]["stage"], "not_queued", "{e:#}");

    // Fixed: the next canary is delivered, and the alert resolves.
    server.server.store.inject_fault(None).await.unwrap();
    step_until(&server, Duration::from_secs(5 * 60), "resolved", || async {
        !canary_notices(&hook, "resolved", "maelys").is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_stay_out_of_flows_and_detectors_and_cannot_be_forged() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = server(&handler, &hook, "").await;
    // Six minutes of canaries and no traffic at all.
    step_until(
        &server,
        Duration::from_secs(7 * 60),
        "five canaries",
        || async {
            handler
                .received()
                .iter()
                .filter(|c| c.is_canary() && c.header("intake-source") == "maelys-kustomer")
                .count()
                >= 5
        },
    )
    .await;
    assert!(handler.received().iter().all(|c| c.is_canary()));

    // No inbound traffic in the flows, and no event counted as the tenant's.
    let (_, flows) = server.api("/api/v1/flows", ADMIN_TOKEN).await.unwrap();
    for f in flows["data"].as_array().unwrap() {
        assert_eq!(f["last_hour"], 0, "{f:#}");
        assert!(f["last_event_minute"].is_null(), "{f:#}");
    }
    let page = server.metrics().await.unwrap();
    assert!(
        !page.contains(r#"origin="canary""#),
        "canaries are not in intake_events_total:\n{page}"
    );
    // No detector took them for traffic (nor for a drop of it), and nothing fires.
    let (_, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
    assert_eq!(
        alerts["firing"].as_array().map(Vec::len),
        Some(0),
        "{alerts:#}"
    );
    assert!(hook.accepted().is_empty());

    // Someone who holds the source's secret copies a canary's body and marks it as one: the
    // mark does not verify, so it is an ordinary webhook, counted and delivered as such.
    let canary = &handler.received()[0];
    let body = String::from_utf8(canary.body.to_vec())
        .unwrap()
        .replace("cny_", "fake_");
    let forged = server
        .http
        .post(format!("{}/ingest/maelys-kustomer", server.url()))
        .header("content-type", "application/json")
        .header(
            "x-kustomer-webhook-signature",
            kustomer::sign(SOURCE_SECRET, &body),
        )
        .header("intake-canary", format!("v1={}", "ab".repeat(32)))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let got = handler
        .wait_for(handler.received().len() + 1, crate::PATIENCE)
        .await;
    let last = got.last().unwrap();
    assert_eq!(last.header("intake-origin"), "webhook");
    step_until(
        &server,
        Duration::from_secs(2 * 60),
        "the flow counts it",
        || async {
            let (_, flows) = server.api("/api/v1/flows", ADMIN_TOKEN).await.unwrap();
            flows["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["source"] == "maelys-kustomer" && f["last_hour"] == 1)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_alert_reaches_alertmanager_at_every_evaluation() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let am = NotifierCapture::start().await.unwrap();
    let extra = format!(
        "\n[[notifiers]]\nid = \"am\"\nkind = \"alertmanager\"\nurl = \"{}\"\n",
        am.url("")
    );
    let server = server(&handler, &hook, &extra).await;
    let watchdogs = |am: &NotifierCapture| -> Vec<Value> {
        am.accepted()
            .iter()
            .filter(|r| r.uri == "/api/v2/alerts")
            .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == "watchdog")
            .collect()
    };
    // Five evaluations (one a minute, the first a few seconds after the next minute).
    let started = server.clock_now_secs();
    step_until(
        &server,
        Duration::from_secs(6 * 60),
        "five watchdog alerts",
        || async { watchdogs(&am).len() >= 5 },
    )
    .await;
    // One per evaluation: each alert is dated by its evaluation, and the evaluations are a
    // minute apart; read from the alerts themselves, not from how long the test took to see
    // them (a loaded machine sees them later on the stepping clock).
    let sent = watchdogs(&am);
    let mut starts: Vec<i64> = sent
        .iter()
        .map(|a| time(&a["startsAt"]).as_millis())
        .collect();
    starts.sort_unstable();
    let all = starts.len();
    starts.dedup();
    assert_eq!(
        starts.len(),
        all,
        "two watchdog alerts for one evaluation: {sent:#?}"
    );
    // Each evaluation is due a few seconds after a minute begins, and runs when the stepping
    // clock has reached it: on a loaded machine the clock may have gone a few steps further,
    // so an alert is dated within its evaluation's minute, not on its exact second. One alert
    // per evaluation: their minutes follow each other.
    for pair in starts.windows(2) {
        assert_eq!(
            pair[1].div_euclid(60_000) - pair[0].div_euclid(60_000),
            1,
            "an evaluation without its watchdog alert: {starts:?}"
        );
    }
    assert!(
        server.clock_now_secs() - started <= 6 * 60,
        "{all} watchdog alerts"
    );
    for a in &sent {
        let starts = time(&a["startsAt"]);
        let ends = time(&a["endsAt"]);
        // Valid for two intervals from its evaluation's due time: one lost alert does not end
        // it in Alertmanager. (`startsAt` is when it was sent, which on a loaded machine is a
        // few steps of the stepping clock after the due time.)
        let valid = ends.since(starts);
        assert!(
            valid > Duration::from_secs(60) && valid <= Duration::from_secs(120),
            "{a:#}"
        );
    }
    // Never through the outbox or to the other notifiers.
    assert!(hook
        .accepted()
        .iter()
        .all(|r| r.json()["kind"] != "watchdog"));

    // An Alertmanager that refuses it is a failing notifier, said elsewhere.
    am.set_status(503);
    step_until(
        &server,
        Duration::from_secs(10 * 60),
        "notifier_failing",
        || async {
            hook.accepted().iter().map(NotifierRequest::json).any(|n| {
                n["kind"] == "alert"
                    && n["status"] == "firing"
                    && n["rule"] == "notifier_failing"
                    && n["alerts"][0]["labels"]["notifier"] == "am"
            })
        },
    )
    .await;
}

/// A load balancer of one: forwards every connection to the node it is pointed at, and
/// counts them.
struct Balancer {
    addr: std::net::SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Balancer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = std::sync::Arc::new(std::sync::Mutex::new(None));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (t, n) = (target.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(to) = *t.lock().unwrap() else {
                    continue;
                };
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer {
            addr,
            target,
            connections,
        }
    }
}

/// Two nodes on one PostgreSQL database: the node holding the `canary` duty sends its
/// canaries to `public_url`, a load balancer that leads to the other node, which ingests them;
/// they reach the handler all the same and the first node's book says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_canary_crosses_the_balancer_to_the_other_node() {
    use std::sync::Arc;

    let db = crate::cluster::TestDb::create().await;
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let balancer = Balancer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = with_canaries(&config_toml(dir.path(), &handler.url(), ""), "60s", "2m")
        .replace(
            &format!("url = \"sqlite://{}/intake.db\"", dir.path().display()),
            &format!("url = \"{}\"", db.url),
        )
        .replace(
            "shutdown_timeout = \"2s\"",
            &format!(
                "shutdown_timeout = \"2s\"\npublic_url = \"http://{}\"",
                balancer.addr
            ),
        );
    let node = |id: &str| {
        let text = format!("{base}\n[cluster]\nnode_id = \"{id}\"\nduty_lease = \"24h\"\n");
        intake_core::config::Config::from_toml_str(&text).unwrap()
    };
    let clock =
        intake_core::ManualClock::new(Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap());
    // The first node takes every duty's lease; the second holds none.
    let a = intake_server::Server::new(node("node-a"), Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let cluster = |url: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{url}/api/v1/cluster"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + crate::PATIENCE;
    while !cluster(a.url()).await["duties"]
        .as_array()
        .is_some_and(|d| {
            d.iter()
                .any(|d| d["duty"] == "canary" && d["holder"] == "node-a")
        })
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-a never took the canary duty"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = intake_server::Server::new(node("node-b"), Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    *balancer.target.lock().unwrap() = Some(b.addr);

    let mut elapsed = Duration::ZERO;
    let delivered = loop {
        let r = http
            .get(format!("{}/api/v1/canaries", a.url()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let all: Value = r.json().await.unwrap();
        let e = entry(&all, "maelys-kustomer").clone();
        if e["last"]["stage"] == "delivered" {
            break e;
        }
        assert!(
            elapsed < Duration::from_secs(5 * 60),
            "no canary delivered: {all:#}"
        );
        clock.advance(STEP);
        elapsed += STEP;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        balancer
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1,
        "the canary did not go through the balancer"
    );
    assert!(handler
        .received()
        .iter()
        .any(|c| c.is_canary() && c.header("intake-source") == "maelys-kustomer"));
    assert!(!delivered["last_success_at"].is_null(), "{delivered:#}");
    // The other node answers the same from the store.
    let r = http
        .get(format!("{}/api/v1/canaries", b.url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let seen_by_b: Value = r.json().await.unwrap();
    assert_eq!(
        entry(&seen_by_b, "maelys-kustomer")["last_success_at"],
        delivered["last_success_at"]
    );
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    db.drop_db().await;
}
