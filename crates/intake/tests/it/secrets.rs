//! Secrets are never in any output: the `serve` banner, the logs (at debug level) and the
//! admin API of a real server configured with a secret in every key that can hold one, on
//! PostgreSQL with a password in `storage.url`; and the error of a failed delivery to a
//! destination whose URL carries a credential. (`check-config`'s output and a store that
//! cannot be opened are tested in `cli`.)

use std::path::Path;
use std::process::Stdio;

use intake_testkit::{
    config_toml, kustomer, CaptureHandler, NotifierCapture, TestServer, ADMIN_TOKEN,
    DESTINATION_SECRET, SOURCE_SECRET,
};
use tokio::process::Command;

use crate::cluster::TestDb;
use crate::crash::{free_port, wait_healthy};
use crate::{wait_delivery, PATIENCE};

/// The secrets of the configuration `secret_config` writes. None may appear in any output.
const SECRETS: [&str; 10] = [
    ADMIN_TOKEN,
    "maelys-token",
    SOURCE_SECRET,
    DESTINATION_SECRET,
    "S3CR3T-metrics",
    "S3CR3T-dest-query",
    "S3CR3T-slack",
    "S3CR3T-watchdog",
    "S3CR3T-routing-key",
    "S3CR3T-smtp",
];

/// The test configuration with a secret in every key that can hold one (storage comes from
/// the environment).
fn secret_config(dir: &Path, port: u16, handler: &str, capture: &NotifierCapture) -> String {
    let mut text = config_toml(dir, &format!("{handler}?token=S3CR3T-dest-query"), "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    text.push_str(&format!(
        r#"
[metrics]
token = "S3CR3T-metrics"

[monitor]
watchdog_url = "{watchdog}"

[[notifiers]]
id = "slack"
kind = "slack"
url = "{slack}"

[[notifiers]]
id = "pager"
kind = "pagerduty"
routing_key = "S3CR3T-routing-key"
url = "{pager}"

[[notifiers]]
id = "mail"
kind = "email"
to = ["oncall@example.com"]
smtp_url = "smtp://alerts:S3CR3T-smtp@127.0.0.1:1"
"#,
        watchdog = capture.url("/ping/S3CR3T-watchdog"),
        slack = capture.url("/services/T000/B000/S3CR3T-slack"),
        pager = capture.url("/v2/enqueue"),
    ));
    text
}

fn assert_no_secret(what: &str, text: &str, extra: &[&str]) {
    for secret in SECRETS.iter().chain(extra) {
        assert!(
            !text.contains(secret),
            "{what} contains the secret {secret:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shows_no_secret_in_its_banner_logs_or_api() {
    let db = TestDb::create().await;
    // Trust authentication ignores the password, so the server starts with it in its URL.
    let pg_url = db.url.replacen(
        "postgres://postgres@",
        "postgres://postgres:S3CR3T-pg-password@",
        1,
    );
    assert_ne!(
        pg_url, db.url,
        "the test database URL has the expected form"
    );
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let capture = NotifierCapture::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("intake.toml");
    std::fs::write(
        &config,
        secret_config(dir.path(), port, &handler.url(), &capture),
    )
    .unwrap();
    let stdout = dir.path().join("stdout.log");
    let stderr = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("INTAKE_STORAGE_URL", &pg_url)
        .env("INTAKE_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &base, &mut child).await;

    // An event, delivered; a forged one; every API resource read with the operator token.
    let body = kustomer::message_create("secret-1", "email");
    let r = http
        .post(format!("{base}/ingest/maelys-kustomer"))
        .header(
            "x-kustomer-webhook-signature",
            kustomer::sign(SOURCE_SECRET, &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let forged = http
        .post(format!("{base}/ingest/maelys-kustomer"))
        .header("x-kustomer-webhook-signature", "forged")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_no_secret("a refused ingest", &forged.text().await.unwrap(), &[]);
    assert_eq!(handler.wait_for(1, PATIENCE).await.len(), 1);
    let mut api = String::new();
    for path in [
        "/api/v1/events",
        "/api/v1/rejections",
        "/api/v1/flows",
        "/api/v1/queue",
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v1/silences",
        "/api/v1/notifiers",
        "/api/v1/cluster",
        "/api/v1/no-such-route",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        api.push_str(&format!("{path}: {}\n", r.text().await.unwrap()));
    }
    let refused = http
        .get(format!("{base}/api/v1/events"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    api.push_str(&refused.text().await.unwrap());
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth("S3CR3T-metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("intake stops after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");

    let banner = std::fs::read_to_string(&stdout).unwrap();
    let logs = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        banner.contains("postgres://postgres:***@127.0.0.1:5432/"),
        "the banner shows the store, masked:\n{banner}"
    );
    assert!(logs.lines().count() > 5, "debug logs were written:\n{logs}");
    assert_no_secret("the banner", &banner, &["S3CR3T-pg-password"]);
    assert_no_secret("the logs", &logs, &["S3CR3T-pg-password"]);
    assert_no_secret("the admin API", &api, &["S3CR3T-pg-password"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_records_no_credential_of_the_destination_url() {
    // Nothing listens there: every attempt fails to connect, and the error is recorded.
    let port = free_port();
    let url = format!("http://ops:S3CR3T-password@127.0.0.1:{port}/hooks?token=S3CR3T-query");
    let dir = tempfile::tempdir().unwrap();
    let text = config_toml(dir.path(), &url, "timeout = \"2s\"");
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let body = kustomer::message_create("unreachable-1", "chat");
    let r = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = wait_delivery(&server, &id, "retrying", 1).await;
    let shown = event.to_string();
    assert!(
        shown.contains("cannot connect"),
        "the attempt's error is recorded: {shown}"
    );
    assert!(!shown.contains("S3CR3T"), "{shown}");
    let (_, queue) = server.api("/api/v1/queue", ADMIN_TOKEN).await.unwrap();
    assert!(!queue.to_string().contains("S3CR3T"), "{queue}");
}
