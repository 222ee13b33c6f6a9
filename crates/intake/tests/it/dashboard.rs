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

    /// A form post whose values are owned strings.
    pub async fn post_owned(&self, path: &str, form: &[(&str, String)]) -> Page {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.post(path, &pairs).await
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
    let p = web
        .post(
            "/incidents",
            &[
                ("title", "Late events"),
                ("tenant", "maelys"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 503, "{}", p.body);
    let p = web
        .post(
            "/drills",
            &[
                ("scenario", "flow-stop"),
                ("source", "maelys-kustomer"),
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
    for path in ["/api/v1/incidents", "/api/v1/drills"] {
        let (_, list) = server.api(path, ADMIN_TOKEN).await.unwrap();
        assert_eq!(list["data"], json!([]), "{path}");
    }
    // Once the store writes again, the same form works.
    assert_eq!(web.post("/silences", &silence).await.status, 303);
}

/// [`stalling_server`]'s configuration (a webhook notifier `hook` at `/hooks/intake`,
/// `queue_stalled` after 2 minutes for maelys, `public_url` set) with a working handler, and a
/// webhook contact for each tenant at `/contacts/<tenant>` of the same capture.
pub async fn incident_server(handler: &CaptureHandler, hook: &NotifierCapture) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let port = intake_testkit::process::free_port().unwrap();
    let mut text = config_toml(dir.path(), &handler.url(), "");
    text = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\""),
    );
    for tenant in ["maelys", "other"] {
        text = text.replace(
            &format!("api_token = \"{tenant}-token\""),
            &format!(
                "api_token = \"{tenant}-token\"\ncontacts = [{{ kind = \"webhook\", url = \"{}\" }}]",
                hook.url(&format!("/contacts/{tenant}"))
            ),
        );
    }
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

/// The incident notices of `status` that reached `path` of the capture.
fn incident_notices(hook: &NotifierCapture, path: &str, status: &str) -> Vec<Value> {
    hook.accepted()
        .iter()
        .filter(|r| r.uri.starts_with(path))
        .map(NotifierRequest::json)
        .filter(|n| n["kind"] == "incident" && n["status"] == status)
        .collect()
}

/// Waits in real time (the clock left alone) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_declared_updated_and_resolved_from_the_pages() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = incident_server(&handler, &hook).await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;
    let p = web.get("/incidents").await;
    assert_eq!(p.status, 200);
    assert!(
        p.body.contains("no open incident") && p.body.contains("id=\"declare\""),
        "{}",
        p.body
    );
    let csrf = csrf_of(&p.body);
    let declare = |csrf: &str| {
        vec![
            (
                "title",
                "Webhooks are accepted but not delivered".to_string(),
            ),
            ("tenant", "maelys".into()),
            ("severity", "critical".into()),
            ("commander", "alice".into()),
            ("message", "We are looking into late conversations.".into()),
            ("author", "alice".into()),
            ("_csrf", csrf.to_string()),
        ]
    };
    // Without this session's CSRF token: refused, nothing declared, nobody told.
    let no_csrf: Vec<(&str, String)> = declare("")
        .into_iter()
        .filter(|(k, _)| *k != "_csrf")
        .collect();
    let p = web.post_owned("/incidents", &no_csrf).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let p = web.post_owned("/incidents", &declare("forged")).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let (_, list) = server.api("/api/v1/incidents", ADMIN_TOKEN).await.unwrap();
    assert_eq!(list["data"], json!([]));

    // The API's refusals come back on the form, with what was filled in.
    let mut untitled = declare(&csrf);
    untitled.retain(|(k, _)| *k != "title");
    let p = web.post_owned("/incidents", &untitled).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body.contains("Refused:") && p.body.contains("`title` is required"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("value=\"maelys\" checked"),
        "the form lost its tenant"
    );
    let mut future = declare(&csrf);
    future.push(("impact_start", "2030-01-01T00:00:00Z".into()));
    let p = web.post_owned("/incidents", &future).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("is after now"), "{}", p.body);

    // Declared: the browser goes to its page; on-call and the tenant's contact are told, and
    // the page shows both notices delivered.
    let p = web.post_owned("/incidents", &declare(&csrf)).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = p.location().to_string();
    let id = page.strip_prefix("/incidents/").unwrap().to_string();
    assert!(id.starts_with("inc_"), "{page}");
    let (_, api) = server
        .api(&format!("/api/v1/incidents/{id}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        (
            api["severity"].as_str(),
            api["commander"].as_str(),
            api["declared_by"].as_str()
        ),
        (Some("critical"), Some("alice"), Some("alice")),
        "{api}"
    );
    wait_until("both declared notices", || {
        incident_notices(&hook, "/hooks/intake", "declared").len() == 1
            && incident_notices(&hook, "/contacts/maelys", "declared").len() == 1
    })
    .await;
    // The sender records a notice sent just after the receiver took it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let p = loop {
        let p = web.fragment(&format!("/_/incidents/{id}")).await;
        assert_eq!(p.status, 200);
        if p.body.matches("notice delivered").count() == 2 {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "on-call's and the contact's notices never both shown delivered: {}",
            p.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let timeline = p.body.split("id=\"timeline\"").nth(1).unwrap_or("");
    assert!(timeline.contains("We are looking into late conversations."));
    assert!(timeline.contains("maelys&#39;s contact"), "{timeline}");
    let p = web.get(&page).await;
    assert!(p.body.contains("Webhooks are accepted but not delivered"));
    assert!(p.body.contains("hx-get=\"/_/incidents/"), "no live part");
    assert!(p.body.contains("id=\"post-update\"") && p.body.contains("id=\"resolve\""));

    // On-call's notice links to this page; the overview and the list lead to it too.
    let oncall = incident_notices(&hook, "/hooks/intake", "declared").remove(0);
    let link = oncall["links"]["dashboard"].as_str().unwrap();
    assert_eq!(link, format!("{}{page}", server.url()));
    assert_eq!(web.get(&page).await.status, 200);
    let anon = Web::new(&server.url()).get(&page).await;
    assert_eq!(anon.status, 303, "a notice's link without a session");
    assert!(anon
        .location()
        .starts_with("/login?next=%2Fincidents%2Finc_"));
    let p = web.get("/").await;
    let top = p.body.split("id=\"h-alerts\"").next().unwrap_or("");
    assert!(top.contains(&format!("href=\"{page}\"")), "{top}");
    let p = web.fragment("/_/incidents").await;
    let open = p.body.split("id=\"h-recent\"").next().unwrap_or("");
    assert!(open.contains(&format!("href=\"{page}\"")), "{}", p.body);

    // An update: refused without a message; then told to everyone, and on the page.
    let p = web
        .post(
            &format!("{page}/updates"),
            &[("status", "identified"), ("message", ""), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body.contains("Refused:") && p.body.contains("message"),
        "{}",
        p.body
    );
    let p = web
        .post(
            &format!("{page}/updates"),
            &[
                ("status", "identified"),
                ("severity", "critical"),
                ("message", "A deploy dropped the queue step; rolling back."),
                ("author", "bob"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), page);
    let (_, api) = server
        .api(&format!("/api/v1/incidents/{id}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(api["status"], "identified");
    wait_until("the update told", || {
        incident_notices(&hook, "/contacts/maelys", "updated").len() == 1
    })
    .await;
    let p = web.get(&page).await;
    assert!(p
        .body
        .contains("A deploy dropped the queue step; rolling back."));
    assert!(p.body.contains(">identified<"), "{}", p.body);

    // Resolved: told, the forms gone, a second resolution is the API's conflict on the page.
    let p = web
        .post(
            &format!("{page}/resolve"),
            &[
                ("message", "Rolled back; every event was delivered."),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    wait_until("the resolution told", || {
        incident_notices(&hook, "/contacts/maelys", "resolved").len() == 1
    })
    .await;
    let p = web.get(&page).await;
    assert!(p.body.contains(">resolved<"), "{}", p.body);
    assert!(
        !p.body.contains("id=\"post-update\""),
        "an update form on a resolved incident"
    );
    let p = web
        .post(
            &format!("{page}/resolve"),
            &[("message", "again"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("Refused:"), "{}", p.body);
    let p = web.get("/").await;
    assert!(
        !p.body.contains(&format!("href=\"{page}\"")),
        "a resolved incident on top"
    );
    let p = web.get("/incidents").await;
    let recent = p.body.split("id=\"h-recent\"").nth(1).unwrap_or("");
    assert!(recent.contains(&id), "{}", p.body);

    // The postmortem draft, as the API drafts it.
    let p = web.get(&format!("{page}/postmortem")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let md = server
        .http
        .get(format!("{}/api/v1/incidents/{id}/postmortem", server.url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = md.lines().next().unwrap_or("");
    assert!(first.starts_with('#'), "{md}");
    assert!(p.body.contains("id=\"markdown\""), "{}", p.body);
    assert!(
        p.body.contains("Rolled back; every event was delivered."),
        "{}",
        p.body
    );
    assert_eq!(web.get("/incidents/inc_nope").await.status, 404);
    assert_eq!(web.get("/incidents/inc_nope/postmortem").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_session_reads_only_its_own_incidents_and_cannot_act_on_them() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = incident_server(&handler, &hook).await;
    let declare = |tenant: &str, title: &str| json!({"title": title, "tenants": [tenant], "sources": [format!("{tenant}-kustomer")]});
    let mut ids = Vec::new();
    for (tenant, title) in [
        ("maelys", "Late chat for us"),
        ("other", "Globex mail is stuck"),
    ] {
        let (status, d) = server
            .api_send(
                Method::POST,
                "/api/v1/incidents",
                ADMIN_TOKEN,
                Some(declare(tenant, title)),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{d}");
        ids.push(d["id"].as_str().unwrap().to_string());
    }
    let (mine, theirs) = (&ids[0], &ids[1]);
    let mut web = Web::new(&server.url());
    web.login("maelys-token").await;
    for path in [
        "/",
        "/incidents",
        "/_/incidents",
        &format!("/incidents/{mine}"),
    ] {
        let p = web.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert!(
            !p.body.contains("Globex")
                && !p.body.contains("other-kustomer")
                && !p.body.contains(theirs.as_str()),
            "{path} shows the other tenant's incident"
        );
    }
    let p = web.get("/incidents").await;
    assert!(p.body.contains("Late chat for us"), "{}", p.body);
    assert!(
        !p.body.contains("id=\"declare\""),
        "a declare form for a tenant"
    );
    let p = web.get(&format!("/incidents/{mine}")).await;
    assert!(!p.body.contains("id=\"post-update\"") && !p.body.contains("id=\"postmortem\""));
    // Another tenant's incident, as if it did not exist.
    for path in [
        format!("/incidents/{theirs}"),
        format!("/_/incidents/{theirs}"),
    ] {
        assert_eq!(web.get(&path).await.status, 404, "{path}");
    }
    // Its forms are refused with the API's reason, for its own tenant as for the other;
    // nothing is written and nobody is told.
    let csrf = web.csrf().await;
    for tenant in ["maelys", "other"] {
        let p = web
            .post(
                "/incidents",
                &[("title", "Ours"), ("tenant", tenant), ("_csrf", &csrf)],
            )
            .await;
        assert_eq!(p.status, 403, "{}", p.body);
        assert!(
            p.body.contains("needs the operator&#39;s token")
                || p.body.contains("needs the operator's token"),
            "{}",
            p.body
        );
    }
    // Its own incident: the API's refusal on the page. The other tenant's: refused too, and
    // the page that would show the refusal is not found, as the incident is to this session.
    for (id, status) in [(mine, 403), (theirs, 404)] {
        let p = web
            .post(
                &format!("/incidents/{id}/updates"),
                &[("status", "identified"), ("message", "x"), ("_csrf", &csrf)],
            )
            .await;
        assert_eq!(p.status, status, "{id}: {}", p.body);
        assert!(!p.body.contains("Globex"), "{}", p.body);
        let p = web
            .post(&format!("/incidents/{id}/resolve"), &[("_csrf", &csrf)])
            .await;
        assert_eq!(p.status, status, "{id}: {}", p.body);
        assert_eq!(
            web.get(&format!("/incidents/{id}/postmortem")).await.status,
            403
        );
    }
    let (_, list) = server.api("/api/v1/incidents", ADMIN_TOKEN).await.unwrap();
    let list = list["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|i| i["status"] == "investigating"),
        "{list:?}"
    );
    // Drills: read only, and only its own sources'.
    let (status, d) = server
        .api_send(
            Method::POST,
            "/api/v1/drills",
            ADMIN_TOKEN,
            Some(json!({"scenario": "flow-stop", "source": "other-kustomer", "for": "1m"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{d}");
    let drill = d["id"].as_str().unwrap();
    let p = web.get("/drills").await;
    assert_eq!(p.status, 200);
    assert!(
        !p.body.contains(drill) && !p.body.contains("id=\"start-drill\""),
        "{}",
        p.body
    );
    assert_eq!(web.get(&format!("/drills/{drill}")).await.status, 404);
    assert_eq!(web.get(&format!("/_/drills/{drill}")).await.status, 404);
    let p = web
        .post(
            "/drills",
            &[
                ("scenario", "flow-stop"),
                ("source", "maelys-kustomer"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(
        web.post(&format!("/drills/{drill}/cancel"), &[("_csrf", &csrf)])
            .await
            .status,
        403
    );
    let (_, d) = server
        .api(&format!("/api/v1/drills/{drill}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(d["state"], "running", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_are_started_cancelled_and_show_their_result() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let hook = NotifierCapture::start().await.unwrap();
    let server = incident_server(&handler, &hook).await;
    let mut web = Web::new(&server.url());
    web.login(ADMIN_TOKEN).await;
    let p = web.get("/drills").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("No drill yet") && p.body.contains("id=\"start-drill\""));
    let csrf = csrf_of(&p.body);
    let stall = |csrf: &str| -> Vec<(&'static str, String)> {
        vec![
            ("scenario", "queue-stall".into()),
            ("source", "maelys-kustomer".into()),
            ("destination", "handler".into()),
            ("for", "10m".into()),
            ("_csrf", csrf.to_string()),
        ]
    };
    // Without CSRF: nothing started.
    assert_eq!(web.post_owned("/drills", &stall("nope")).await.status, 403);
    let (_, list) = server.api("/api/v1/drills", ADMIN_TOKEN).await.unwrap();
    assert_eq!(list["data"], json!([]));
    // The API's refusals, on the form.
    for (form, status, why) in [
        (vec![("scenario", "meteor")], 400, "unknown scenario"),
        (
            vec![("scenario", "queue-stall"), ("source", "nope")],
            404,
            "nope",
        ),
        (
            vec![
                ("scenario", "queue-stall"),
                ("source", "maelys-kustomer"),
                ("for", "3d"),
            ],
            400,
            "for",
        ),
    ] {
        let mut form = form;
        form.push(("_csrf", &csrf));
        let p = web.post("/drills", &form).await;
        assert_eq!(p.status, status, "{why}: {}", p.body);
        assert!(
            p.body.contains("Refused:") && p.body.contains(why),
            "{why}: {}",
            p.body
        );
    }

    // Started, then cancelled from its page: healed at once, the verdict `cancelled`.
    let p = web.post_owned("/drills", &stall(&csrf)).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = p.location().to_string();
    assert!(page.starts_with("/drills/drl_"), "{page}");
    let p = web.get(&page).await;
    assert!(
        p.body.contains(">running<") && p.body.contains("id=\"cancel-drill\""),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("hx-get=\"/_/drills/"),
        "a running drill's page is not followed"
    );
    let p = web.fragment("/_/drills").await;
    assert!(p.body.contains("class=\"running\""), "{}", p.body);
    let p = web
        .post(&format!("{page}/cancel"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = web.get(&page).await;
    assert!(
        p.body.contains(">cancelled<") && !p.body.contains("id=\"cancel-drill\""),
        "{}",
        p.body
    );
    assert!(
        !p.body.contains("hx-get=\"/_/drills/"),
        "an ended drill's page still polls"
    );
    let p = web
        .post(&format!("{page}/cancel"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(p.status, 409, "{}", p.body);

    // Another, run to its verdict: the stalled queue alerts, on-call is told, it heals; its
    // page tells the course from the fault, the alert and the notifier.
    server.clock.advance(Duration::from_secs(1));
    let p = web.post_owned("/drills", &stall(&csrf)).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = p.location().to_string();
    let id = page.trim_start_matches("/drills/").to_string();
    send(&server, "maelys-kustomer", "drill-1").await;
    let mut elapsed = Duration::ZERO;
    loop {
        let (_, d) = server
            .api(&format!("/api/v1/drills/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        if d["state"] != "running" {
            assert_eq!(d["state"], "passed", "{d:#}");
            break;
        }
        assert!(
            elapsed < Duration::from_secs(15 * 60),
            "the drill never ended: {d:#}"
        );
        let step = if d["report"]["alert"].is_object() {
            1
        } else {
            5
        };
        server.clock.advance(Duration::from_secs(step));
        tokio::time::sleep(Duration::from_millis(40)).await;
        elapsed += Duration::from_secs(step);
    }
    let p = web.get(&page).await;
    assert_eq!(p.status, 200);
    let course = p.body.split("id=\"course\"").nth(1).unwrap_or("");
    for want in [
        ">passed<",
        "queue_stalled",
        "sent through hook",
        "alert fired",
        "healed",
    ] {
        assert!(
            p.body.contains(want),
            "the drill's page lacks {want}: {}",
            p.body
        );
    }
    assert_eq!(
        course.matches("s-ok").count(),
        3,
        "alert, notification, heal: {course}"
    );
    let p = web.get("/drills").await;
    let rows = p.body.split("id=\"drills\"").nth(1).unwrap_or("");
    let (passed, cancelled) = (rows.find(">passed<"), rows.find(">cancelled<"));
    assert!(
        passed.is_some() && cancelled.is_some() && passed < cancelled,
        "the newest first: {rows}"
    );
}
