//! The dashboard in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver) with fantoccini. Each test starts its own server, driver and browser, clicks
//! through a page as on-call would, and saves screenshots under
//! `$CARGO_TARGET_DIR/screenshots/` (never into the repository).
//!
//! `scripts/test` installs `chromium` and `chromium-driver` when they are missing; these tests
//! fail, never skip, without them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use intake_testkit::{
    CaptureHandler, NotifierCapture, Reply, TestServer, ADMIN_TOKEN, DESTINATION_SECRET,
};
use serde_json::json;
use tokio::process::{Child, Command};

use super::dashboard::{incident_server, send, stall, stalling_server};
use crate::PATIENCE;

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium behind its own chromedriver.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    name: &'static str,
}

impl Browser {
    /// Starts chromedriver on a free port and a 1280×800 headless Chromium through it.
    pub async fn start(name: &'static str) -> Self {
        let port = intake_testkit::process::free_port().unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {CHROMEDRIVER} ({e}): apt-get install chromium chromium-driver"
                )
            });
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--hide-scrollbars", "--force-device-scale-factor=1"],
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            _driver: driver,
            name,
        }
    }

    /// Saves a screenshot as `<test>-<what>.png`.
    pub async fn shot(&self, what: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}-{what}.png", self.name)), png).unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Types into the field `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Waits until the page's HTML contains `text` (htmx refreshes parts of it).
    pub async fn wait_for_text(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let html = self.source().await;
            if html.contains(text) {
                return html;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw {text:?} in:\n{html}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Logs in on the login page the browser is on.
    pub async fn log_in(&self, token: &str) {
        self.fill("#token", token).await;
        self.click("#login").await;
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `$CARGO_TARGET_DIR/screenshots`, else one under the system's temporary directory.
fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("intake-target"))
        .join("screenshots")
}

async fn server() -> (CaptureHandler, TestServer) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    (handler, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_loads_the_overview_and_opens_a_tenant_and_an_event() {
    let (handler, server) = server().await;
    let id = send(&server, "maelys-kustomer", "b-1").await;
    send(&server, "other-kustomer", "b-2").await;
    handler.wait_for(2, PATIENCE).await;
    crate::wait_delivery(&server, &id, "delivered", 1).await;
    let b = Browser::start("overview").await;
    b.goto(&server.url()).await;
    // Not logged in: the login page, which refuses a bad token with its reason.
    assert!(b.path().await.starts_with("/login"));
    b.log_in("wrong").await;
    b.wait_for_text("is not admin.token").await;
    b.shot("login-refused").await;
    b.log_in(ADMIN_TOKEN).await;
    let html = b.wait_for_text("Inbound flows").await;
    assert!(html.contains("maelys-kustomer") && html.contains("other-kustomer"));
    b.shot("overview").await;
    // The tenant, from its link; its charts are drawn by uPlot.
    b.click("#flows a[href='/tenants/maelys']").await;
    b.wait_for_text("class=\"uplot").await;
    assert_eq!(b.path().await, "/tenants/maelys");
    b.shot("tenant").await;
    // An event from the recent events, with its delivery and attempt.
    b.click(&format!("#events a[href='/events/{id}']")).await;
    let html = b.wait_for_text("Every attempt").await;
    assert!(html.contains("delivered"));
    b.shot("event").await;
    // Log out: back to the login, and the pages are closed again.
    b.click("header form button").await;
    b.wait_for_text("id=\"token\"").await;
    b.goto(&format!("{}/alerts", server.url())).await;
    assert!(b.path().await.starts_with("/login"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_follows_an_alert_link_from_a_notification() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let hook = NotifierCapture::start().await.unwrap();
    let server = stalling_server(&handler, &hook).await;
    let notice = stall(&server, &hook).await;
    let link = notice["alerts"][0]["links"]["dashboard"]
        .as_str()
        .unwrap()
        .to_string();
    let b = Browser::start("alert-link").await;
    // The link as on-call clicks it: through the login, then the alert.
    b.goto(&link).await;
    assert!(b.path().await.starts_with("/login?next="));
    b.log_in(ADMIN_TOKEN).await;
    let html = b.wait_for_text("id=\"filter\"").await;
    assert!(b
        .path()
        .await
        .starts_with("/alerts?rule=queue_stalled&tenant=maelys"));
    let firing = html.split("id=\"firing\"").nth(1).unwrap_or("");
    assert!(
        firing.contains("queue_stalled") && firing.contains("threshold"),
        "{html}"
    );
    b.shot("alerts").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_creates_and_expires_a_silence() {
    let (_h, server) = server().await;
    let b = Browser::start("silence").await;
    b.goto(&format!("{}/silences", server.url())).await;
    b.log_in(ADMIN_TOKEN).await;
    b.wait_for_text("New silence").await;
    // A refusal first, with the API's reason: longer than monitor.max_silence.
    b.fill("#tenant", "maelys").await;
    b.fill("#for", "48h").await;
    b.fill("#author", "alice").await;
    b.fill("#comment", "handler deploy").await;
    b.click("#create-silence").await;
    b.wait_for_text("id=\"refusal\"").await;
    assert!(b.source().await.contains("longer than monitor.max_silence"));
    b.shot("silence-refused").await;
    b.fill("#for", "2h").await;
    b.click("#create-silence").await;
    b.wait_for_text("id=\"expire\"").await;
    assert!(b.path().await.starts_with("/silences/sil_"));
    b.shot("silence").await;
    b.click("#expire").await;
    b.wait_for_text(">expired<").await;
    let (_, api) = server.api("/api/v1/silences", ADMIN_TOKEN).await.unwrap();
    assert_eq!(api["data"], json!([]), "still active in the API");
    b.goto(&format!("{}/silences", server.url())).await;
    b.wait_for_text("Ended in the last week").await;
    b.shot("silences").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_starts_a_dry_run_recovery_and_runs_it() {
    let (handler, server) = server().await;
    let id = send(&server, "maelys-kustomer", "r-1").await;
    handler.wait_for(1, PATIENCE).await;
    crate::wait_delivery(&server, &id, "delivered", 1).await;
    // A window that ends a second after the event, which is no longer the future.
    server.clock.advance(Duration::from_secs(2));
    let b = Browser::start("recovery").await;
    b.goto(&format!("{}/recoveries", server.url())).await;
    b.log_in(ADMIN_TOKEN).await;
    b.wait_for_text("Start a job").await;
    let kind = b.client.find(Locator::Css("#kind")).await.unwrap();
    kind.select_by_value("replay").await.unwrap();
    b.fill("#from", "2026-11-28T09:00:00Z").await;
    b.fill("#to", "2026-11-28T10:00:01Z").await;
    b.click("#start-job").await;
    // The dry run's page follows the job (htmx) until it has its report.
    b.wait_for_text("id=\"run-job\"").await;
    let html = b.source().await;
    assert!(
        html.contains("(dry run)") && html.contains(">succeeded<"),
        "{html}"
    );
    assert_eq!(handler.received().len(), 1, "a dry run delivered something");
    b.shot("recovery-dry-run").await;
    b.click("#run-job").await;
    b.wait_for_text(">succeeded<").await;
    handler.wait_for(2, PATIENCE).await;
    b.shot("recovery").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tenant_login_cannot_see_another_tenant() {
    let (_h, server) = server().await;
    let theirs = send(&server, "other-kustomer", "t-1").await;
    let b = Browser::start("tenant-scope").await;
    b.goto(&server.url()).await;
    b.log_in("maelys-token").await;
    let html = b.wait_for_text("Inbound flows").await;
    assert!(html.contains("maelys-kustomer"));
    assert!(
        !html.contains("other-kustomer"),
        "the overview shows the other tenant"
    );
    assert!(
        html.contains("Tenant maelys"),
        "no link to its own tenant page"
    );
    // After a refresh of the live part (asked for now rather than waited for), still only
    // its own.
    b.client
        .execute(
            "document.querySelector('#live').setAttribute('data-stale', '1'); \
             htmx.ajax('GET', '/_/overview', {target: '#live', swap: 'outerHTML'});",
            vec![],
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b.source().await.contains("data-stale") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live part never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!b.source().await.contains("other-kustomer"));
    b.shot("tenant-overview").await;
    for path in [
        "/tenants/other".to_string(),
        format!("/events/{theirs}"),
        "/alerts?tenant=other".into(),
    ] {
        b.goto(&format!("{}{path}", server.url())).await;
        let html = b.wait_for_text("404").await;
        assert!(!html.contains("other-kustomer"), "{path}");
    }
    b.shot("tenant-404").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_declares_an_incident_and_posts_an_update() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = incident_server(&handler, &hook).await;
    let b = Browser::start("incident").await;
    b.goto(&format!("{}/incidents", server.url())).await;
    b.log_in(ADMIN_TOKEN).await;
    b.wait_for_text("Declare an incident").await;
    b.fill("#title", "Chat conversations are not reaching the handler")
        .await;
    b.click("input[name='tenant'][value='maelys']").await;
    b.click("input[name='source'][value='maelys-kustomer']")
        .await;
    let severity = b.client.find(Locator::Css("#severity")).await.unwrap();
    severity.select_by_value("critical").await.unwrap();
    b.fill("#commander", "alice").await;
    b.fill(
        "#message",
        "New chat conversations are delayed; we are on it.",
    )
    .await;
    b.shot("incident-declare").await;
    b.click("#declare").await;
    let html = b.wait_for_text("id=\"timeline\"").await;
    assert!(b.path().await.starts_with("/incidents/inc_"));
    assert!(html.contains("Chat conversations are not reaching the handler"));
    // The notices to on-call and to maelys's contact arrive; the timeline shows them
    // delivered at its next refresh.
    b.wait_for_text("notice delivered").await;
    b.shot("incident").await;
    // An update from the page.
    let status = b.client.find(Locator::Css("#status")).await.unwrap();
    status.select_by_value("identified").await.unwrap();
    b.fill(
        "#u-message",
        "Cause found: a deploy skipped the queue step.",
    )
    .await;
    b.click("#post-update").await;
    b.wait_for_text("Cause found: a deploy skipped the queue step.")
        .await;
    let (_, list) = server.api("/api/v1/incidents", ADMIN_TOKEN).await.unwrap();
    assert_eq!(list["data"][0]["status"], "identified", "{list}");
    b.shot("incident-updated").await;
    // The overview lists it on top, linking to it.
    b.goto(&server.url()).await;
    b.wait_for_text("Open incidents").await;
    b.click("#incidents .alertbar a").await;
    b.wait_for_text("id=\"timeline\"").await;
    assert!(b.path().await.starts_with("/incidents/inc_"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_opens_the_drills_page_starts_and_cancels_a_drill() {
    let (_h, server) = server().await;
    let b = Browser::start("drills").await;
    b.goto(&format!("{}/drills", server.url())).await;
    b.log_in(ADMIN_TOKEN).await;
    b.wait_for_text("Start a drill").await;
    let scenario = b.client.find(Locator::Css("#scenario")).await.unwrap();
    scenario.select_by_value("queue-stall").await.unwrap();
    let source = b.client.find(Locator::Css("#source")).await.unwrap();
    source.select_by_value("maelys-kustomer").await.unwrap();
    // Sent from the keyboard: Enter in the last field submits the form.
    b.fill("#for", "10m\u{E007}").await;
    b.wait_for_text("id=\"cancel-drill\"").await;
    assert!(b.path().await.starts_with("/drills/drl_"));
    assert!(b.source().await.contains(">running<"));
    b.shot("drill-running").await;
    b.click("#cancel-drill").await;
    b.wait_for_text(">cancelled<").await;
    b.shot("drill-cancelled").await;
    b.goto(&format!("{}/drills", server.url())).await;
    let html = b.wait_for_text("id=\"drills\"").await;
    assert!(html.contains(">cancelled<"), "{html}");
    b.shot("drills").await;
    b.close().await;
}

/// The screenshots of docs/dashboard.md, from a server with fifteen days of realistic traffic
/// (enough for the seasonal baseline):
/// three tenants, email and chat with a working-day profile, one tenant's chat stopping for
/// the last 90 minutes, one destination failing for the last half hour, a silence, a dry-run
/// recovery, a fire drill in the morning, an open incident with an update and a resolved one. Run by hand (it writes into the repository) with
/// `INTAKE_DOCS_SCREENSHOTS=docs/dashboard cargo nextest run -p intake --test it --run-ignored only docs_screenshots`;
/// the PNGs are then optimised with `optipng -o2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/dashboard/*.png; run by hand"]
async fn docs_screenshots() {
    let Some(out) = std::env::var_os("INTAKE_DOCS_SCREENSHOTS").map(PathBuf::from) else {
        panic!("set INTAKE_DOCS_SCREENSHOTS to the folder the screenshots go to");
    };
    let ok = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let failing = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // On-call's webhook and the tenants' contacts: incidents notify them, drills need a
    // notification to pass.
    let hook = NotifierCapture::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tenants = [
        ("maelys", "Maelys"),
        ("nordlys", "Nordlys Travel"),
        ("pinecone", "Pinecone Home"),
    ];
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "2s"
[storage]
url = "sqlite://{}/intake.db"
[admin]
token = "{ADMIN_TOKEN}"
[canary]
interval = "30d"
deadline = "60d"
[cluster]
duty_lease = "24h"
[[destinations]]
id = "handler"
url = "{}"
secret = "{DESTINATION_SECRET}"
[[destinations]]
id = "crm-sync"
url = "{}"
secret = "{DESTINATION_SECRET}"
max_attempts = 50
[[notifiers]]
id = "oncall"
kind = "webhook"
url = "{}"
"#,
        dir.path().display(),
        ok.url(),
        failing.url(),
        hook.url("/oncall")
    );
    for (id, name) in tenants {
        let extra = if id == "nordlys" {
            ", \"crm-sync\""
        } else {
            ""
        };
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\napi_token = \"{id}-token\"\n\
             contacts = [{{ kind = \"webhook\", url = \"{}\" }}]\n\
             [[sources]]\nid = \"{id}-kustomer\"\ntenant = \"{id}\"\nkind = \"kustomer\"\n\
             secrets = [\"{}\"]\ndestinations = [\"handler\"{extra}]\n",
            hook.url(&format!("/contacts/{id}")),
            intake_testkit::SOURCE_SECRET
        ));
    }
    let start = intake_core::Timestamp::parse_rfc3339("2026-11-13T00:00:00Z").unwrap();
    let clock = intake_core::ManualClock::new(start);
    let server = TestServer::start_with_clock(dir, &text, clock)
        .await
        .unwrap();
    // Events per hour at each hour of the day (UTC), for a scale of 1.
    const PROFILE: [u32; 24] = [
        2, 1, 1, 1, 2, 4, 9, 16, 24, 28, 30, 29, 26, 27, 28, 27, 24, 20, 14, 10, 8, 6, 4, 3,
    ];
    let scale = [
        ("maelys", 1.6, 1.0),
        ("nordlys", 1.0, 0.5),
        ("pinecone", 0.7, 1.2),
    ];
    let end = intake_core::Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
    let outage = end.minus(Duration::from_secs(90 * 60));
    let failure = end.minus(Duration::from_secs(40 * 60));
    // A fire drill in the morning rush: pinecone's queue held until its alert is notified.
    let drill_at = end.minus(Duration::from_secs(150 * 60));
    let mut drill = None;
    // Yesterday's incident of pinecone, declared and resolved while it happened.
    let yesterday = intake_core::Timestamp::parse_rfc3339("2026-11-27T14:10:00Z").unwrap();
    let mut old = String::new();
    let post = |path: String, body: serde_json::Value| {
        let server = &server;
        async move {
            let (status, v) = server
                .api_send(reqwest::Method::POST, &path, ADMIN_TOKEN, Some(body))
                .await
                .unwrap();
            assert!(status < 300, "{path}: {v}");
            v
        }
    };
    let mut n = 0u64;
    let mut now = start;
    while now < end {
        let hour = ((now.as_millis() / 3_600_000) % 24) as usize;
        for (tenant, email, chat) in scale {
            for (channel, k) in [("email", email), ("chat", chat)] {
                if tenant == "maelys" && channel == "chat" && now >= outage {
                    continue;
                }
                // Events in these 5 minutes: the hour's rate, with a little wobble.
                let rate = PROFILE[hour] as f64 * k / 12.0;
                let wobble = ((n as f64 * 0.37).sin() + 1.0) * 0.5;
                let count = (rate + wobble).floor() as u64;
                for _ in 0..count {
                    n += 1;
                    let body = intake_testkit::kustomer::message_create(&format!("m{n}"), channel);
                    let r = server
                        .send_kustomer(
                            &format!("{tenant}-kustomer"),
                            &body,
                            intake_testkit::SOURCE_SECRET,
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }
        }
        if now >= failure {
            failing.set_default(Reply::Status(503));
        }
        if now == yesterday {
            let v = post(
                "/api/v1/incidents".into(),
                json!({"title": "E-mail conversations delayed during an inbox migration", "tenants": ["pinecone"],
                       "severity": "minor", "impact_start": "2026-11-27T14:05:00Z", "commander": "bob", "author": "bob",
                       "message": "New e-mail conversations arrive up to 20 minutes late while your inboxes move."}),
            )
            .await;
            old = v["id"].as_str().unwrap_or_default().to_string();
        }
        if now == yesterday.plus(Duration::from_secs(35 * 60)) {
            post(
                format!("/api/v1/incidents/{old}/resolve"),
                json!({"message": "The migration is over; every delayed conversation was delivered.", "author": "bob"}),
            )
            .await;
        }
        if now == drill_at {
            let (status, d) = server
                .api_send(
                    reqwest::Method::POST,
                    "/api/v1/drills",
                    ADMIN_TOKEN,
                    Some(json!({"scenario": "queue-stall", "source": "pinecone-kustomer", "for": "15m"})),
                )
                .await
                .unwrap();
            assert_eq!(status, 201, "{d}");
            drill = d["id"].as_str().map(str::to_string);
        }
        if now >= drill_at && now < drill_at.plus(Duration::from_secs(15 * 60)) {
            // Seconds at a time while the drill runs, so its timings are its own.
            for _ in 0..60 {
                server.clock.advance(Duration::from_secs(5));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        } else {
            server.clock.advance(Duration::from_secs(300));
        }
        now = now.plus(Duration::from_secs(300));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the monitor catch up with the last minutes and notice.
    for _ in 0..12 {
        server.clock.advance(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A silence and a dry-run replay, made through the API as someone would.
    server
        .api_send(
            reqwest::Method::POST,
            "/api/v1/silences",
            ADMIN_TOKEN,
            Some(json!({"matchers": {"rule": "inbound_drop", "tenant": "pinecone"}, "for": "4h",
                        "created_by": "alice", "comment": "Pinecone is migrating its inboxes until noon"})),
        )
        .await
        .unwrap();
    let (_, job) = server
        .api_send(
            reqwest::Method::POST,
            "/api/v1/recoveries",
            ADMIN_TOKEN,
            Some(json!({"kind": "replay", "source": "nordlys-kustomer", "destination": "crm-sync",
                        "from": "2026-11-28T09:00:00Z", "to": "2026-11-28T10:00:00Z", "dry_run": true})),
        )
        .await
        .unwrap();
    let job = job["id"].as_str().unwrap().to_string();
    let drill = drill.expect("the drill started");
    // Maelys's chat outage, declared and updated.
    let inc = post(
        "/api/v1/incidents".into(),
        json!({"title": "New chat conversations are not reaching your helpdesk", "tenants": ["maelys"],
               "sources": ["maelys-kustomer"], "channels": ["chat"], "severity": "critical",
               "impact_start": "2026-11-28T08:30:00Z", "commander": "alice", "author": "alice",
               "message": "Chat webhooks stopped arriving at 08:30 UTC. We are investigating and will recover every missed conversation."}),
    )
    .await;
    let inc = inc["id"].as_str().unwrap().to_string();
    server.clock.advance(Duration::from_secs(240));
    post(
        format!("/api/v1/incidents/{inc}/updates"),
        json!({"status": "identified", "author": "alice",
               "message": "The system of record paused chat webhooks for this account. We asked it to resume them and will backfill 08:30 onwards from its API."}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let b = Browser::start("docs").await;
    let shot = |name: &'static str| {
        let out = out.clone();
        let b = &b;
        async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let png = b.client.screenshot().await.unwrap();
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join(format!("{name}.png")), png).unwrap();
        }
    };
    b.goto(&format!("{}/login", server.url())).await;
    shot("login").await;
    b.log_in(ADMIN_TOKEN).await;
    b.wait_for_text("Inbound flows").await;
    shot("overview").await;
    b.goto(&format!("{}/tenants/maelys", server.url())).await;
    b.wait_for_text("class=\"uplot").await;
    shot("tenant").await;
    let html = b.source().await;
    let event = html
        .split("href=\"/events/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    b.goto(&format!("{}/events/{event}", server.url())).await;
    b.wait_for_text("Every attempt").await;
    shot("event").await;
    b.goto(&format!(
        "{}/alerts?rule=inbound_stopped&tenant=maelys",
        server.url()
    ))
    .await;
    b.wait_for_text("id=\"filter\"").await;
    shot("alerts").await;
    b.goto(&format!("{}/silences", server.url())).await;
    b.wait_for_text("New silence").await;
    shot("silences").await;
    b.goto(&format!("{}/recoveries/{job}", server.url())).await;
    b.wait_for_text(">succeeded<").await;
    shot("recovery").await;
    b.goto(&format!(
        "{}/audit?source=nordlys-kustomer&from=2026-11-27T10:00:00Z&to=2026-11-28T10:00:00Z",
        server.url()
    ))
    .await;
    b.wait_for_text("id=\"verdict\"").await;
    shot("audit").await;
    b.goto(&format!("{}/incidents", server.url())).await;
    b.wait_for_text("Recently resolved").await;
    shot("incidents").await;
    b.goto(&format!("{}/incidents/{inc}", server.url())).await;
    b.wait_for_text("notice delivered").await;
    shot("incident").await;
    b.goto(&format!("{}/drills", server.url())).await;
    b.wait_for_text("id=\"drills\"").await;
    shot("drills").await;
    b.goto(&format!("{}/drills/{drill}", server.url())).await;
    b.wait_for_text(">passed<").await;
    shot("drill").await;
    b.close().await;
}
