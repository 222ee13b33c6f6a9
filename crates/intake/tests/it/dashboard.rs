//! The dashboard over plain HTTP (no browser): sessions, CSRF, tenant scope, every page and
//! fragment, and the links notifications carry. Cheaper than the browser tests
//! (`dashboard_browser.rs`), so the rules are proven here, each broken on purpose.

use std::time::Duration;

use intake_testkit::{
    config_toml, kustomer, CaptureHandler, NotifierCapture, NotifierRequest, Reply, TestServer,
    ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::Method;
use serde_json::{json, Value};

use crate::PATIENCE;

/// A browser without a browser: one session's cookie, redirects not followed.
pub struct Web {
    base: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

/// What a request answered.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Where it redirects to.
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Web {
    pub fn new(base: &str) -> Self {
        Web {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header(COOKIE, format!("intake_session={c}")),
            None => req,
        };
        let resp = req.send().await.unwrap();
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// A GET as htmx polls a fragment.
    pub async fn fragment(&self, path: &str) -> Page {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .header("hx-request", "true"),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(
            self.http
                .request(Method::POST, format!("{}{path}", self.base))
                .form(form),
        )
        .await
    }

    /// Logs in with `token`; keeps the session cookie it gets.
    pub async fn login(&mut self, token: &str) -> Page {
        let page = self
            .post("/login", &[("token", token), ("next", "/")])
            .await;
        if let Some(v) = page.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()) {
            let value = v
                .split(';')
                .next()
                .and_then(|p| p.strip_prefix("intake_session="))
                .unwrap_or("");
            self.cookie = Some(value.to_string());
        }
        page
    }

    /// The session's CSRF token, as a page's forms carry it.
    pub async fn csrf(&self) -> String {
        let page = self.get("/silences").await;
        csrf_of(&page.body)
    }

    pub fn set_cookie(&mut self, value: Option<String>) {
        self.cookie = value;
    }

    pub fn cookie(&self) -> Option<String> {
        self.cookie.clone()
    }
}

/// The `_csrf` value in a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let start = html.find(marker).map(|i| i + marker.len()).unwrap_or(0);
    html[start..].split('"').next().unwrap_or("").to_string()
}

/// A server whose handler fails (so `queue_stalled` fires for `maelys` after 2 minutes), a
/// webhook notifier, and `public_url` = the server's own address, so the links in its
/// notifications can be followed.
pub async fn stalling_server(handler: &CaptureHandler, hook: &NotifierCapture) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let port = intake_testkit::process::free_port().unwrap();
    let mut text = config_toml(dir.path(), &handler.url(), "");
    text = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\""),
    );
    text.push_str(&format!(
        r#"
[[rules]]
rule = "queue_stalled"
tenant = "maelys"
threshold = "2m"

[cluster]
duty_lease = "24h"

[[notifiers]]
id = "hook"
kind = "webhook"
url = "{}"
"#,
        hook.url("/hooks/intake")
    ));
    TestServer::start_with(dir, &text).await.unwrap()
}

/// Sends one Kustomer webhook to `source`; returns the event id.
pub async fn send(server: &TestServer, source: &str, id: &str) -> String {
    let r = server
        .send_kustomer(
            source,
            &kustomer::message_create(id, "email"),
            SOURCE_SECRET,
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// The firing notices the webhook notifier received for `key`.
pub fn firing(hook: &NotifierCapture, key: &str) -> Vec<Value> {
    hook.accepted()
        .iter()
        .map(NotifierRequest::json)
        .filter(|n| n["kind"] == "alert" && n["status"] == "firing" && n["key"] == key)
        .collect()
}

/// Moves the manual clock 5 s at a time until `done` holds (within `simulated`).
pub async fn step_until(
    server: &TestServer,
    simulated: Duration,
    what: &str,
    done: impl Fn() -> bool,
) {
    let mut elapsed = Duration::ZERO;
    while !done() {
        assert!(
            elapsed < simulated,
            "{what}: not reached after {simulated:?} simulated"
        );
        server.clock.advance(Duration::from_secs(5));
        elapsed += Duration::from_secs(5);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Makes `queue_stalled` fire for maelys and returns its firing notice.
pub async fn stall(server: &TestServer, hook: &NotifierCapture) -> Value {
    let key = r#"queue_stalled{tenant="maelys"}"#;
    send(server, "maelys-kustomer", "stall-1").await;
    step_until(
        server,
        Duration::from_secs(15 * 60),
        "queue_stalled firing",
        || !firing(hook, key).is_empty(),
    )
    .await;
    firing(hook, key).remove(0)
}

async fn plain_server() -> (CaptureHandler, TestServer) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    (handler, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_a_refused_token() {
    let (_h, server) = plain_server().await;
    let mut web = Web::new(&server.url());

    // No session: the page sends the browser to the login, and back afterwards.
    let p = web.get("/alerts?rule=x").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/login?next=%2Falerts%3Frule%3Dx");
    // A fragment asks htmx to go there instead of swapping a redirect in.
    let p = web.fragment("/_/overview").await;
    assert_eq!(p.status, 401);
    assert!(p.headers.get("hx-redirect").is_some());
    assert_eq!(web.get("/login").await.status, 200);

    // A wrong token is refused, saying why; no cookie is set.
    let p = web.login("not-a-token").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("is not admin.token"), "{}", p.body);
    assert!(p.headers.get(SET_COOKIE).is_none());
    assert_eq!(web.get("/").await.status, 303);

    // The operator token: an HttpOnly, SameSite=Strict cookie (no Secure over http) that
    // does not contain the token.
    let p = web.login(ADMIN_TOKEN).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), "/");
    let set = p.headers[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(ADMIN_TOKEN), "{set}");
    let p = web.get("/").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("signed in as <strong>operator</strong>"));

    // A forged or tampered cookie is no session.
    let good = web.cookie();
    web.set_cookie(good.clone().map(|c| c.replace("v1.c", "v1.m")));
    assert_eq!(web.get("/").await.status, 303);
    web.set_cookie(good.clone());

    // Logging out needs the CSRF token too, and deletes the cookie.
    assert_eq!(web.post("/logout", &[]).await.status, 403);
    let csrf = web.csrf().await;
    let p = web.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/login");
    assert!(p.headers[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // A session ends after its lifetime (12 h), read on the injected clock.
    assert_eq!(web.get("/").await.status, 200);
    server.clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(web.get("/").await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_minted_token_ends_its_sessions() {
    let (_h, server) = plain_server().await;
    let (status, made) = server
        .api_send(
            Method::POST,
            "/api/v1/tokens",
            ADMIN_TOKEN,
            Some(json!({"scope": "tenant", "tenant": "maelys", "name": "oncall laptop"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap();
    let mut web = Web::new(&server.url());
    assert_eq!(web.login(token).await.status, 303);
    let p = web.get("/").await;
    assert_eq!(p.status, 200);
    assert!(p
        .body
        .contains("signed in as <strong>tenant maelys</strong>"));
    let (status, _) = server
        .api_send(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", made["id"].as_str().unwrap()),
            ADMIN_TOKEN,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        web.get("/").await.status,
        303,
        "the revoked token's session goes on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_without_the_csrf_token_is_refused() {
    let (_h, server) = plain_server().await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;
    let form = |csrf: &'static str| {
        vec![
            ("tenant", "maelys"),
            ("for", "1h"),
            ("author", "alice"),
            ("comment", "migration"),
            ("_csrf", csrf),
        ]
    };
    // Without the token, with an empty one, with another session's: 403, nothing created.
    let mut other = Web::new(&server.url());
    // Sessions made in the same millisecond are the same cookie: move the clock first.
    server.clock.advance(Duration::from_millis(1));
    other.login(ADMIN_TOKEN).await;
    let foreign = other.csrf().await;
    let no_token: Vec<(&str, &str)> = form("")
        .into_iter()
        .filter(|(k, _)| *k != "_csrf")
        .collect();
    for body in [no_token, form(""), {
        let mut f = form("");
        f.retain(|(k, _)| *k != "_csrf");
        f.push(("_csrf", &foreign));
        f
    }] {
        let p = web.post("/silences", &body).await;
        assert_eq!(p.status, 403, "{}", p.body);
        assert!(p.body.contains("CSRF"), "{}", p.body);
    }
    let (_, silences) = server.api("/api/v1/silences", ADMIN_TOKEN).await.unwrap();
    assert_eq!(silences["data"], json!([]));

    // With it: created, and the browser goes to its page.
    let csrf = web.csrf().await;
    let mut ok = form("");
    ok.retain(|(k, _)| *k != "_csrf");
    ok.push(("_csrf", &csrf));
    let p = web.post("/silences", &ok).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(
        p.location().starts_with("/silences/sil_"),
        "{}",
        p.location()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_session_sees_only_its_tenant() {
    let (_h, server) = plain_server().await;
    let mine = send(&server, "maelys-kustomer", "mine-1").await;
    let theirs = send(&server, "other-kustomer", "theirs-1").await;
    // A recovery job and a silence of the other tenant.
    let (status, job) = server
        .api_send(
            Method::POST,
            "/api/v1/recoveries",
            ADMIN_TOKEN,
            Some(json!({"kind": "replay", "source": "other-kustomer", "from": "2026-11-28T09:00:00Z", "to": "2026-11-28T10:00:00Z", "dry_run": true})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{job}");
    let (status, silence) = server
        .api_send(
            Method::POST,
            "/api/v1/silences",
            ADMIN_TOKEN,
            Some(json!({"matchers": {"tenant": "other"}, "for": "1h", "created_by": "op", "comment": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{silence}");

    let mut web = Web::new(&server.url());
    web.login("maelys-token").await;
    // Its own pages.
    for path in [
        "/",
        "/_/overview",
        "/tenants/maelys",
        "/_/tenants/maelys",
        "/alerts",
        "/silences",
        "/recoveries",
        "/audit",
    ] {
        let p = web.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert!(
            !p.body.contains("other-kustomer"),
            "{path} shows the other tenant"
        );
    }
    assert_eq!(web.get(&format!("/events/{mine}")).await.status, 200);
    // The other tenant's, as if they did not exist.
    let job_id = job["id"].as_str().unwrap();
    let silence_id = silence["id"].as_str().unwrap();
    for path in [
        "/tenants/other".to_string(),
        "/_/tenants/other".to_string(),
        "/alerts?tenant=other".to_string(),
        "/_/alerts?tenant=other".to_string(),
        format!("/events/{theirs}"),
        format!("/recoveries/{job_id}"),
        format!("/_/recoveries/{job_id}"),
        format!("/silences/{silence_id}"),
    ] {
        let p = web.get(&path).await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
    }
    // Its forms cannot reach the other tenant either: refused with the API's reasons.
    let csrf = web.csrf().await;
    let p = web
        .post(
            "/silences",
            &[
                ("tenant", "other"),
                ("for", "1h"),
                ("author", "m"),
                ("comment", "x"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(
        p.body.contains("may only silence its own tenant"),
        "{}",
        p.body
    );
    let p = web
        .post(
            "/recoveries",
            &[
                ("kind", "replay"),
                ("source", "other-kustomer"),
                ("from", "2026-11-28T09:00:00Z"),
                ("to", "2026-11-28T10:00:00Z"),
                ("dry_run", "on"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    for path in [
        format!("/silences/{silence_id}/expire"),
        format!("/recoveries/{job_id}/cancel"),
        format!("/events/{theirs}/replay"),
    ] {
        assert_eq!(
            web.post(&path, &[("_csrf", &csrf)]).await.status,
            404,
            "{path}"
        );
    }
    let p = web
        .get("/audit?source=other-kustomer&from=2026-11-28T09:00:00Z&to=2026-11-28T10:00:00Z")
        .await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("notice error"), "{}", p.body);
    assert!(!p.body.contains("verdict"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_fragment_renders_what_the_api_says() {
    let (handler, server) = plain_server().await;
    let id = send(&server, "maelys-kustomer", "p-1").await;
    handler.wait_for(1, PATIENCE).await;
    crate::wait_delivery(&server, &id, "delivered", 1).await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;

    let p = web.get("/").await;
    assert_eq!(p.status, 200);
    for want in [
        "maelys-kustomer",
        "other-kustomer",
        "<svg class=\"spark\"",
        "Queue per destination",
        "Canaries per source",
        "hx-get=\"/_/overview\"",
    ] {
        assert!(p.body.contains(want), "overview lacks {want}");
    }
    assert_eq!(web.fragment("/_/overview").await.status, 200);
    let p = web.get("/tenants/maelys").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("data-chart="), "no chart");
    assert!(p.body.contains(&id), "the recent events lack {id}");
    // Search by type, state and origin; an id goes to its event.
    let p = web
        .get("/tenants/maelys?type=kustomer.message.create&state=delivered&origin=webhook")
        .await;
    assert!(p.body.contains(&id));
    let p = web.get("/tenants/maelys?state=dead").await;
    assert!(!p.body.contains(&id));
    let p = web.get("/tenants/maelys?state=nonsense").await;
    assert!(p.body.contains("is not one of"), "{}", p.body);
    let p = web.get(&format!("/tenants/maelys?id={id}")).await;
    assert_eq!(p.location(), format!("/events/{id}"));
    // The event: body, headers, delivery, attempt.
    let p = web.get(&format!("/events/{id}")).await;
    assert_eq!(p.status, 200);
    for want in [
        "stall",
        "p-1",
        "x-kustomer-webhook-event",
        "delivered",
        "id=\"attempts\"",
    ] {
        let want = if want == "stall" {
            "Hello, my order has not arrived"
        } else {
            want
        };
        assert!(p.body.contains(want), "event page lacks {want}");
    }
    assert_eq!(web.get("/events/evt_nope").await.status, 404);
    // Its replay button starts a dry run of a replay (a moment later: a replay window never
    // reaches into the future).
    server.clock.advance(Duration::from_secs(1));
    let csrf = web.csrf().await;
    let p = web
        .post(&format!("/events/{id}/replay"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let job = p.location().trim_start_matches("/recoveries/").to_string();
    let (_, j) = server
        .api(&format!("/api/v1/recoveries/{job}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        (j["kind"].as_str(), j["dry_run"].as_bool()),
        (Some("replay"), Some(true)),
        "{j}"
    );
    let p = web.get(p.location()).await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("(dry run)"));
    for path in [
        "/alerts",
        "/_/alerts",
        "/silences",
        "/recoveries",
        &format!("/_/recoveries/{job}"),
        "/audit",
    ] {
        assert_eq!(web.get(path).await.status, 200, "{path}");
    }
    let p = web
        .get("/audit?source=maelys-kustomer&from=2026-11-28T09:00:00Z&to=2026-11-28T10:00:00Z")
        .await;
    assert!(p.body.contains("id=\"verdict\""), "{}", p.body);
    assert!(p.body.contains("adds up"), "{}", p.body);
    let p = web
        .get("/audit?source=maelys-kustomer&from=yesterday")
        .await;
    assert!(p.body.contains("notice error"), "{}", p.body);
    // Unknown parameters of a page are a 400 page, not a silent default.
    assert_eq!(web.get("/audit?sauce=x").await.status, 400);
    // The assets, open to anyone.
    let anon = Web::new(&server.url());
    for (path, kind) in [
        ("/assets/htmx-2.0.11.min.js", "javascript"),
        ("/assets/uPlot-1.6.32.iife.min.js", "javascript"),
        ("/assets/app.css", "css"),
    ] {
        let p = anon.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(p.headers["content-type"].to_str().unwrap().contains(kind));
    }
    assert_eq!(anon.get("/assets/nope.js").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_created_refused_and_expired_with_the_api_rules() {
    let (_h, server) = plain_server().await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;
    let csrf = web.csrf().await;
    // Refusals come back on the form with the API's reason.
    for (form, why) in [
        (
            vec![
                ("rule", "watchdog"),
                ("for", "1h"),
                ("author", "a"),
                ("comment", "c"),
            ],
            "cannot be silenced",
        ),
        (
            vec![
                ("channel", "chat"),
                ("for", "1h"),
                ("author", "a"),
                ("comment", "c"),
            ],
            "must name at least",
        ),
        (
            vec![
                ("tenant", "maelys"),
                ("for", "48h"),
                ("author", "a"),
                ("comment", "c"),
            ],
            "longer than monitor.max_silence",
        ),
        (
            vec![("tenant", "maelys"), ("for", "1h"), ("author", "a")],
            "`comment` is required",
        ),
    ] {
        let mut form = form;
        form.push(("_csrf", &csrf));
        let p = web.post("/silences", &form).await;
        assert_eq!(p.status, 400, "{}", p.body);
        assert!(
            p.body.contains("Refused:") && p.body.contains(why),
            "{why}: {}",
            p.body
        );
    }
    let p = web
        .post(
            "/silences",
            &[
                ("rule", "inbound_drop"),
                ("tenant", "maelys"),
                ("for", "2h"),
                ("author", "alice"),
                ("comment", "migration"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let page = p.location().to_string();
    let p = web.get(&page).await;
    assert!(
        p.body.contains("rule=inbound_drop") && p.body.contains("active"),
        "{}",
        p.body
    );
    let (_, api) = server.api("/api/v1/silences", ADMIN_TOKEN).await.unwrap();
    assert_eq!(api["data"].as_array().unwrap().len(), 1);
    let p = web
        .post(&format!("{page}/expire"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    let p = web.get(&page).await;
    assert!(p.body.contains("expired"), "{}", p.body);
    let (_, api) = server.api("/api/v1/silences", ADMIN_TOKEN).await.unwrap();
    assert_eq!(api["data"], json!([]));
    // Expiring it again is the API's conflict, as a page.
    let p = web
        .post(&format!("{page}/expire"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(p.status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_a_notification_carries_resolves() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let hook = NotifierCapture::start().await.unwrap();
    let server = stalling_server(&handler, &hook).await;
    let notice = stall(&server, &hook).await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;

    // The group's link and each member's: the alert, firing, with its reason.
    let mut links = vec![notice["links"]["dashboard"].as_str().unwrap().to_string()];
    for a in notice["alerts"].as_array().unwrap() {
        links.push(a["links"]["dashboard"].as_str().unwrap().to_string());
    }
    for link in &links {
        let path = link
            .strip_prefix(&server.url())
            .unwrap_or_else(|| panic!("{link} is not under public_url"));
        assert!(path.starts_with("/alerts?rule=queue_stalled"), "{path}");
        let p = web.get(path).await;
        assert_eq!(p.status, 200, "{link}");
        let firing = p.body.split("id=\"firing\"").nth(1).unwrap_or("");
        let firing = firing.split("id=\"pending\"").next().unwrap_or("");
        assert!(
            firing.contains("queue_stalled") && firing.contains("threshold"),
            "{link}: {}",
            p.body
        );
        // Without a session, the link goes through the login and back.
        let anon = Web::new(&server.url()).get(path).await;
        assert_eq!(anon.status, 303);
        assert!(anon
            .location()
            .starts_with("/login?next=%2Falerts%3Frule%3Dqueue_stalled"));
    }
    // A link that names an alert that is not firing says so.
    let p = web.get("/alerts?rule=dead_letters&tenant=maelys").await;
    assert!(p.body.contains("id=\"not-active\""), "{}", p.body);

    // A silence's announcement links to its page.
    let csrf = web.csrf().await;
    web.post(
        "/silences",
        &[
            ("rule", "queue_stalled"),
            ("tenant", "maelys"),
            ("for", "1h"),
            ("author", "alice"),
            ("comment", "handler deploy"),
            ("_csrf", &csrf),
        ],
    )
    .await;
    step_until(
        &server,
        Duration::from_secs(120),
        "silence announced",
        || {
            hook.accepted()
                .iter()
                .any(|r| r.json()["kind"] == "silence")
        },
    )
    .await;
    let announced = hook
        .accepted()
        .iter()
        .map(NotifierRequest::json)
        .find(|n| n["kind"] == "silence")
        .unwrap();
    let link = announced["links"]["dashboard"].as_str().unwrap();
    let p = web.get(link.strip_prefix(&server.url()).unwrap()).await;
    assert_eq!(p.status, 200, "{link}");
    assert!(p.body.contains("handler deploy"));
    // The silenced alert stays visible, marked.
    let p = web.get(links[0].strip_prefix(&server.url()).unwrap()).await;
    assert!(p.body.contains("silenced by"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_is_a_503_page_and_nothing_half_done() {
    use intake_store::StoreFault;
    let (_h, server) = plain_server().await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;
    let csrf = web.csrf().await;
    server
        .server
        .store
        .inject_fault(Some(StoreFault::RejectWrites))
        .await
        .unwrap();
    let silence = [
        ("tenant", "maelys"),
        ("for", "1h"),
        ("author", "alice"),
        ("comment", "migration"),
        ("_csrf", csrf.as_str()),
    ];
    let p = web.post("/silences", &silence).await;
    assert_eq!(p.status, 503, "{}", p.body);
    assert!(p.body.contains("Store unavailable"), "{}", p.body);
    let p = web
        .post(
            "/recoveries",
            &[
                ("kind", "replay"),
                ("source", "maelys-kustomer"),
                ("from", "2026-11-28T09:00:00Z"),
                ("to", "2026-11-28T10:00:00Z"),
                ("dry_run", "on"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 503, "{}", p.body);
    // Reading still works: the pages say what is there (nothing was half made).
    assert_eq!(web.get("/").await.status, 200);
    server.server.store.inject_fault(None).await.unwrap();
    let (_, silences) = server.api("/api/v1/silences", ADMIN_TOKEN).await.unwrap();
    assert_eq!(silences["data"], json!([]));
    let (_, jobs) = server.api("/api/v1/recoveries", ADMIN_TOKEN).await.unwrap();
    assert_eq!(jobs["data"], json!([]));
    // Once the store writes again, the same form works.
    assert_eq!(web.post("/silences", &silence).await.status, 303);
}
