//! `GET /metrics` as Prometheus' own tooling reads it: after traffic that gives every family
//! samples, `promtool check metrics` finds nothing to say (every family has HELP text, names
//! and types follow the conventions). And `metrics.token`: when set, a scrape needs it.
//!
//! promtool comes from Debian's `prometheus` package; `scripts/install-promtool` puts it on
//! the PATH (`scripts/test` runs it when promtool is missing). The test fails, never skips,
//! without it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use intake_server::metrics::FAMILIES;
use intake_testkit::{
    config_toml, kustomer, CaptureHandler, NotifierCapture, TestServer, ADMIN_TOKEN,
    DESTINATION_SECRET, SOURCE_SECRET,
};

use crate::{wait_delivery, PATIENCE};

/// The promtool to run: `$INTAKE_PROMTOOL`, else `promtool` on the PATH.
fn promtool() -> String {
    let candidate = std::env::var("INTAKE_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&candidate).arg("--version").output() {
        Ok(out) if out.status.success() => candidate,
        _ => panic!(
            "promtool is not installed (tried `{candidate}`): run scripts/install-promtool, \
             which takes it from Debian's prometheus package, or set INTAKE_PROMTOOL"
        ),
    }
}

/// Runs `promtool check metrics` on `text`; returns whether it passed and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the page");
    let out = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Steps the manual clock until `done`, giving the server's tasks real time in between.
async fn step_until(server: &TestServer, what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        server.clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not reached after 1000 s of simulated time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_is_clean_after_traffic_in_every_family() {
    // Fail at once, before any traffic, when promtool is missing.
    promtool();
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let switch = NotifierCapture::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // On completion receipts, so that the completion families have samples too.
    let text = format!(
        "{}\n[monitor]\ninterval = \"60s\"\nwatchdog_url = \"{}\"\n",
        config_toml(dir.path(), &handler.url(), "completion = \"receipt\"\n"),
        switch.url("/ping/metrics-test")
    );
    let server = TestServer::start_with(dir, &text).await.unwrap();

    // Every ingest outcome a client can cause, and a delivery.
    let body = kustomer::message_create("metrics-1", "email");
    let r = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dup = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(dup.status(), 200);
    let forged = server
        .send_kustomer("maelys-kustomer", &body, "not-the-secret")
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let invalid = server
        .send_kustomer("maelys-kustomer", "{not json", SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let unknown = server
        .send_kustomer("no-such-source", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    wait_delivery(&server, &id, "delivered", 1).await;
    // The handler confirms its work (intake_completions_total).
    let (_, event) = server
        .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
        .await
        .unwrap();
    let delivery = event["deliveries"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = server
        .api_send(
            reqwest::Method::POST,
            &format!("/api/v1/deliveries/{delivery}/complete"),
            ADMIN_TOKEN,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // The watchdog's ping is counted in intake_notifications_total.
    step_until(&server, "the first watchdog ping", || {
        !switch.all().is_empty()
    })
    .await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let page = loop {
        let page = server.metrics().await.unwrap();
        if page.contains("intake_notifications_total{") || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (name, _, _) in FAMILIES {
        assert!(
            page.contains(&format!("# HELP {name} ")),
            "{name} has no HELP text or no samples:\n{page}"
        );
    }
    // Nothing is exported that FAMILIES does not describe.
    for line in page.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap_or("");
        assert!(
            FAMILIES.iter().any(|(f, _, _)| *f == name),
            "{name} is exported but not in FAMILIES"
        );
    }
    let (clean, said) = promtool_check(&page);
    assert!(
        clean && said.trim().is_empty(),
        "promtool check metrics: {said}\n{page}"
    );
}

#[test]
fn promtool_refuses_a_family_without_help() {
    // The check above can fail: promtool does find what this page lacks.
    let (clean, said) =
        promtool_check("# TYPE intake_example_total counter\nintake_example_total 1\n");
    assert!(!clean, "promtool accepted a family without HELP: {said}");
    assert!(said.contains("no help text"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_is_required_when_set() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[metrics]\ntoken = \"scrape-t0ken\"\n",
        config_toml(dir.path(), &handler.url(), "")
    );
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let url = format!("{}/metrics", server.url());
    let scrape = |token: Option<&'static str>| {
        let mut req = server.http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    for token in [None, Some("wrong"), Some(ADMIN_TOKEN), Some("maelys-token")] {
        let r = scrape(token).await.unwrap();
        assert_eq!(r.status(), 401, "token {token:?}");
        assert!(
            r.headers()
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Bearer")),
            "{:?}",
            r.headers()
        );
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("intake_"),
            "a refused scrape shows nothing: {body}"
        );
    }
    let r = scrape(Some("scrape-t0ken")).await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("# HELP intake_requests_total"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_open_without_a_token() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    let r = server
        .http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
