//! Incidents end to end (issue 13), on SQLite and PostgreSQL: a declaration reaches every
//! contact of every affected tenant once — by webhook and by e-mail through a real SMTP relay
//! on loopback — each with its own tenant's data and nothing of the other's, and on-call; an
//! update and the resolution reach them again; a contact that is down is retried until it
//! takes the notice; a critical alert declares by itself and tells the tenant when its hold
//! ends, on the manual clock, and a second alert of the tenant joins that incident; a tenant
//! token reads only its own slice; the postmortem draft of a scripted incident with a backfill
//! is a snapshot; and the CLI verbs, with their errors.

use std::time::Duration;

use intake_fake_sors::kustomer::KustomerLimits;
use intake_testkit::{
    config_toml, kustomer, CaptureHandler, NotifierCapture, Reply, SmtpCapture, TestServer,
    ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::{json, Value};

use crate::cluster::TestDb;
use crate::recovery::{Backend, Scenario};
use crate::recovery_support::{intake_cli, Admin};
use crate::PATIENCE;

/// The clock moves this much per step; the server's tasks get real time in between.
const STEP: Duration = Duration::from_secs(5);

/// The receivers of one test: each tenant's webhook contact, on-call's webhook, and one SMTP
/// relay for every e-mail (the tenants' e-mail contacts and on-call's `mail` notifier).
struct Receivers {
    maelys: NotifierCapture,
    other: NotifierCapture,
    oncall: NotifierCapture,
    smtp: SmtpCapture,
}

impl Receivers {
    async fn start() -> Self {
        Receivers {
            maelys: NotifierCapture::start().await.unwrap(),
            other: NotifierCapture::start().await.unwrap(),
            oncall: NotifierCapture::start().await.unwrap(),
            smtp: SmtpCapture::start().await.unwrap(),
        }
    }

    /// The tenants' names and contacts, and on-call's notifiers.
    fn config(&self, text: &str) -> String {
        let tenant = |id: &str, name: &str, hook: &NotifierCapture| {
            format!(
                "api_token = \"{id}-token\"\nname = \"{name}\"\ncontacts = [\n  {{ kind = \"webhook\", url = \"{}\" }},\n  {{ kind = \"email\", to = \"support@{id}.example\" }},\n]",
                hook.url(&format!("/hooks/{id}"))
            )
        };
        let mut text = text
            .replace(
                "api_token = \"maelys-token\"",
                &tenant("maelys", "Maelys", &self.maelys),
            )
            .replace(
                "api_token = \"other-token\"",
                &tenant("other", "Globex", &self.other),
            );
        text.push_str(&format!(
            r#"
[[notifiers]]
id = "oncall"
kind = "webhook"
url = "{}"

[[notifiers]]
id = "mail"
kind = "email"
smtp_url = "{}"
tls = "none"
from = "intake <intake@ops.example>"
to = ["oncall@ops.example"]

[cluster]
duty_lease = "24h"
"#,
            self.oncall.url("/oncall"),
            self.smtp.url()
        ));
        text
    }

    /// The JSON notices a webhook receiver accepted, of `status`.
    fn hooks(&self, r: &NotifierCapture, status: &str) -> Vec<Value> {
        r.accepted()
            .iter()
            .map(|q| q.json())
            .filter(|n| n["kind"] == "incident" && n["status"] == status)
            .collect()
    }

    /// The mails to `rcpt`.
    fn mails_to(&self, rcpt: &str) -> Vec<intake_testkit::Mail> {
        self.smtp
            .mails()
            .into_iter()
            .filter(|m| m.rcpt.iter().any(|r| r.contains(rcpt)))
            .collect()
    }
}

/// A server on `backend` with the base test configuration edited by `edit`, `extra` after the
/// destination.
async fn start(
    backend: Backend,
    handler_url: &str,
    extra: &str,
    edit: impl Fn(&str) -> String,
) -> (TestServer, Option<TestDb>) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = edit(&config_toml(dir.path(), handler_url, extra));
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(db) => {
            let db = *db;
            let sqlite = format!("url = \"sqlite://{}/intake.db\"", dir.path().display());
            text = text.replace(&sqlite, &format!("url = \"{}\"", db.url));
            Some(db)
        }
    };
    (TestServer::start_with(dir, &text).await.unwrap(), db)
}

async fn finish(server: TestServer, db: Option<TestDb>) {
    server.server.shutdown().await.unwrap();
    if let Some(db) = db {
        db.drop_db().await;
    }
}

/// Polls (in real time, the clock left alone) until `done` holds.
async fn wait(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the incident until `done` holds of it.
async fn wait_incident(
    admin: &Admin,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, i) = admin.get(&format!("/api/v1/incidents/{id}")).await;
        assert_eq!(status, 200, "{i:#}");
        if done(&i) {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}: {i:#}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The incident's notice items.
fn notices(i: &Value) -> Vec<Value> {
    i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "notice")
        .cloned()
        .collect()
}

fn all_delivered(i: &Value, n: usize) -> bool {
    let n_items = notices(i);
    n_items.len() == n && n_items.iter().all(|t| t["detail"]["state"] == "sent")
}

/// What one tenant's notice must not hold: anything of the other tenant (its id, name,
/// sources, contacts).
fn assert_only(tenant: &str, text: &str) {
    let (id, name) = if tenant == "maelys" {
        ("other", "globex")
    } else {
        ("maelys", "maelys")
    };
    let lower = text.to_lowercase();
    for needle in [
        format!("\"{id}\""),
        format!("{id}-kustomer"),
        format!("{id}.example"),
        format!("hooks/{id}"),
        name.to_string(),
    ] {
        assert!(
            !lower.contains(&needle),
            "{tenant}'s notice mentions `{needle}`:\n{text}"
        );
    }
}

async fn declare_update_resolve_reach_each_contact_once(backend: Backend) {
    let rx = Receivers::start().await;
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let (server, db) = start(backend, &handler.url(), "", |t| rx.config(t)).await;
    let admin = Admin::of(&server);
    let (status, declared) = admin
        .post(
            "/api/v1/incidents",
            json!({
                "title": "Webhooks delayed",
                "tenants": ["maelys", "other"],
                "sources": ["maelys-kustomer", "other-kustomer"],
                "channels": ["chat", "email"],
                "impact_start": "2026-11-28T09:40:00Z",
                "commander": "alice",
                "message": "Events are received but their processing is delayed.",
                "author": "alice",
            }),
        )
        .await;
    assert_eq!(status, 201, "{declared:#}");
    let id = declared["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("inc_"), "{id}");

    // Each tenant: its webhook contact and its e-mail contact, once; on-call: its webhook
    // and its mail.
    wait("every notice accepted", || {
        rx.hooks(&rx.maelys, "declared").len() == 1
            && rx.hooks(&rx.other, "declared").len() == 1
            && rx.hooks(&rx.oncall, "declared").len() == 1
            && rx.smtp.mails().len() == 3
    })
    .await;
    let i = wait_incident(&admin, &id, "notices recorded as delivered", |i| {
        all_delivered(i, 6)
    })
    .await;
    for (tenant, hook) in [("maelys", &rx.maelys), ("other", &rx.other)] {
        let n = &rx.hooks(hook, "declared")[0];
        assert_eq!(n["version"], 1);
        assert_eq!(n["incident"]["tenants"], json!([tenant]), "{n:#}");
        assert_eq!(
            n["incident"]["sources"],
            json!([format!("{tenant}-kustomer")])
        );
        assert_eq!(n["labels"], json!({"tenant": tenant}));
        assert!(
            n["links"].get("dashboard").is_none(),
            "no operator links: {n:#}"
        );
        let text = n["incident"]["text"].as_str().unwrap();
        let name = if tenant == "maelys" {
            "Maelys"
        } else {
            "Globex"
        };
        assert!(
            text.contains(&format!("webhooks we receive for {name}")),
            "{text}"
        );
        assert!(text.contains("Since: 2026-11-28 09:40 UTC."), "{text}");
        assert!(
            text.contains("Next update: by 2026-11-28 10:30 UTC"),
            "{text}"
        );
        assert!(text.contains("What you need to do: nothing"), "{text}");
        assert_only(tenant, &n.to_string());
        let mails = rx.mails_to(&format!("support@{tenant}.example"));
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].rcpt.len(), 1, "one recipient per mail");
        let subject = mails[0].header("Subject").unwrap();
        assert!(subject.contains("[INCIDENT] Webhooks delayed"), "{subject}");
        let body = mails[0].body();
        assert!(body.starts_with("We are investigating"), "{body}");
        assert_only(tenant, &mails[0].data);
    }
    // On-call's notice names every tenant.
    let oncall = &rx.hooks(&rx.oncall, "declared")[0];
    assert_eq!(oncall["incident"]["tenants"], json!(["maelys", "other"]));
    assert_eq!(rx.mails_to("oncall@ops.example").len(), 1);
    // The time from the declaration to the first tenant notice is recorded (the clock did not
    // move: none).
    assert_eq!(i["times"]["declared_to_first_tenant_notice"], 0, "{i:#}");
    assert_eq!(i["times"]["time_to_notify"], 20 * 60);
    let recipients: Vec<String> = notices(&i)
        .iter()
        .map(|n| n["detail"]["recipient"].as_str().unwrap().to_string())
        .collect();
    assert!(
        recipients.contains(&"maelys's contact (e-mail support@maelys.example)".to_string()),
        "{recipients:?}"
    );

    // An update, then the resolution: every contact again, once each.
    server.clock.advance(Duration::from_secs(600));
    let (status, updated) = admin
        .post(
            &format!("/api/v1/incidents/{id}/updates"),
            json!({"status": "monitoring", "message": "A fix is deployed; delayed events are being processed."}),
        )
        .await;
    assert_eq!(status, 200, "{updated:#}");
    assert_eq!(updated["status"], "monitoring");
    wait("update notices", || {
        rx.hooks(&rx.maelys, "updated").len() == 1
            && rx.hooks(&rx.other, "updated").len() == 1
            && rx.smtp.mails().len() == 6
    })
    .await;
    let text = rx.hooks(&rx.maelys, "updated")[0]["incident"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.starts_with("Update on"), "{text}");
    assert!(text.contains("A fix is deployed"), "{text}");
    wait_incident(&admin, &id, "update notices recorded", |i| {
        all_delivered(i, 12)
    })
    .await;
    server.clock.advance(Duration::from_secs(600));
    let (status, resolved) = admin
        .post(&format!("/api/v1/incidents/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, 200, "{resolved:#}");
    wait("resolution notices", || {
        rx.hooks(&rx.maelys, "resolved").len() == 1
            && rx.hooks(&rx.other, "resolved").len() == 1
            && rx.hooks(&rx.oncall, "resolved").len() == 1
            && rx.smtp.mails().len() == 9
    })
    .await;
    let text = rx.hooks(&rx.other, "resolved")[0]["incident"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("from 2026-11-28 09:40 UTC to 2026-11-28 10:20 UTC (40m)"),
        "{text}"
    );
    assert_only("other", &text);
    let i = wait_incident(&admin, &id, "all recorded", |i| all_delivered(i, 18)).await;
    assert_eq!(i["times"]["time_to_resolve"], 40 * 60);
    assert_eq!(
        i["times"]["time_to_mitigate"],
        30 * 60,
        "monitoring at 10:10"
    );
    // Nothing arrived twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.maelys.accepted().len(), 3);
    assert_eq!(rx.other.accepted().len(), 3);
    assert_eq!(rx.smtp.mails().len(), 9);

    // Resolving twice, and updating a resolved incident, are conflicts that say why.
    let (status, again) = admin
        .post(&format!("/api/v1/incidents/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, 409, "{again:#}");
    assert_eq!(again["type"], "urn:intake:problem:incident-resolved");
    let (status, late) = admin
        .post(
            &format!("/api/v1/incidents/{id}/updates"),
            json!({"message": "more"}),
        )
        .await;
    assert_eq!(status, 409, "{late:#}");
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_declare_update_resolve_reach_each_contact_once() {
    declare_update_resolve_reach_each_contact_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_declare_update_resolve_reach_each_contact_once() {
    declare_update_resolve_reach_each_contact_once(Backend::postgres().await).await;
}

async fn a_contact_that_is_down_is_retried_then_succeeds(backend: Backend) {
    let rx = Receivers::start().await;
    rx.maelys.set_status(503);
    rx.smtp.set_down(true);
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let (server, db) = start(backend, &handler.url(), "", |t| rx.config(t)).await;
    let admin = Admin::of(&server);
    let (status, declared) = admin
        .post(
            "/api/v1/incidents",
            json!({"title": "Webhooks delayed", "tenants": ["maelys"]}),
        )
        .await;
    assert_eq!(status, 201, "{declared:#}");
    let id = declared["id"].as_str().unwrap().to_string();
    // The failed attempts are recorded before the clock moves.
    let attempted = |i: &Value, notifier: &str| {
        notices(i).iter().any(|n| {
            n["detail"]["notifier"] == notifier
                && n["detail"]["state"] == "pending"
                && n["detail"]["attempts"].as_u64().unwrap_or(0) >= 1
        })
    };
    let i = wait_incident(&admin, &id, "failed attempts recorded", |i| {
        attempted(i, "contact:maelys:0") && attempted(i, "contact:maelys:1")
    })
    .await;
    assert!(rx.maelys.accepted().is_empty());
    assert!(rx.smtp.refused() >= 1);
    assert!(i["times"]["first_tenant_notice_at"].is_null(), "{i:#}");
    // Back up; the next attempt (5 s later on the clock) delivers, once.
    rx.maelys.set_status(200);
    rx.smtp.set_down(false);
    let mut moved = Duration::ZERO;
    while rx.maelys.accepted().is_empty() || rx.mails_to("support@maelys.example").is_empty() {
        assert!(
            moved < Duration::from_secs(120),
            "the contacts never got their notice"
        );
        server.clock.advance(STEP);
        moved += STEP;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let i = wait_incident(&admin, &id, "delivered after a retry", |i| {
        notices(i)
            .iter()
            .filter(|n| n["detail"]["tenant"] == "maelys")
            .all(|n| n["detail"]["state"] == "sent" && n["detail"]["attempts"].as_u64() >= Some(2))
    })
    .await;
    assert!(
        i["times"]["declared_to_first_tenant_notice"]
            .as_u64()
            .unwrap()
            >= 5,
        "{i:#}"
    );
    assert!(rx.maelys.all().iter().any(|r| r.answered == 503));
    assert_eq!(rx.maelys.accepted().len(), 1);
    assert_eq!(rx.mails_to("support@maelys.example").len(), 1);
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_contact_that_is_down_is_retried_then_succeeds() {
    a_contact_that_is_down_is_retried_then_succeeds(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_contact_that_is_down_is_retried_then_succeeds() {
    a_contact_that_is_down_is_retried_then_succeeds(Backend::postgres().await).await;
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

/// Steps the clock until `done` holds of the server (checked between steps).
async fn step_until(
    server: &TestServer,
    budget: Duration,
    what: &str,
    done: impl AsyncFn() -> bool,
) {
    let mut moved = Duration::ZERO;
    while !done().await {
        assert!(
            moved < budget,
            "{what}: not after {budget:?} of simulated time"
        );
        server.clock.advance(STEP);
        moved += STEP;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn maelys_incidents(admin: &Admin) -> Vec<Value> {
    let (status, list) = admin.get("/api/v1/incidents?tenant=maelys").await;
    assert_eq!(status, 200, "{list:#}");
    list["data"].as_array().unwrap().clone()
}

async fn a_critical_alert_declares_and_tells_the_tenant_when_the_hold_ends(backend: Backend) {
    let rx = Receivers::start().await;
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let extra = format!(
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
notify_hold = "2m"

[incidents]
auto_declare = true
"#
    );
    let (server, db) = start(backend, &handler.url(), &extra, |t| rx.config(t)).await;
    let admin = Admin::of(&server);
    send(&server, "maelys-kustomer", "a-1").await;
    // Its first attempt is recorded before the clock moves.
    handler.wait_for(1, PATIENCE).await;
    crate::wait_delivery(&server, &first_event(&admin).await, "retrying", 1).await;

    step_until(
        &server,
        Duration::from_secs(15 * 60),
        "an incident declared",
        || async { !maelys_incidents(&admin).await.is_empty() },
    )
    .await;
    let list = maelys_incidents(&admin).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["declared_by"], "rule:queue_stalled");
    assert_eq!(list[0]["severity"], "critical");
    assert!(
        rx.hooks(&rx.maelys, "declared").is_empty(),
        "not before the hold ends"
    );
    wait("on-call told at once", || {
        rx.hooks(&rx.oncall, "declared").len() == 1
    })
    .await;

    step_until(
        &server,
        Duration::from_secs(5 * 60),
        "the tenant told",
        || async { rx.hooks(&rx.maelys, "declared").len() == 1 },
    )
    .await;
    let i = wait_incident(&admin, &id, "the tenant's notice recorded", |i| {
        i["times"]["first_tenant_notice_at"].is_string()
    })
    .await;
    let waited = i["times"]["declared_to_first_tenant_notice"]
        .as_u64()
        .unwrap();
    assert!(
        (120..=190).contains(&waited),
        "told {waited}s after the declaration: {i:#}"
    );
    let text = rx.hooks(&rx.maelys, "declared")[0]["incident"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("processing has stalled"), "{text}");
    assert!(text.contains("maelys-kustomer"), "{text}");

    // A second source of the tenant stalls: its alert joins this incident.
    send(&server, "maelys-second", "a-2").await;
    step_until(
        &server,
        Duration::from_secs(15 * 60),
        "the second alert joins",
        || async {
            let (_, i) = admin.get(&format!("/api/v1/incidents/{id}")).await;
            i["timeline"].as_array().unwrap().iter().any(|t| {
                t["kind"] == "alert_firing" && t["detail"]["labels"]["source"] == "maelys-second"
            })
        },
    )
    .await;
    let list = maelys_incidents(&admin).await;
    assert_eq!(list.len(), 1, "joined, not declared: {list:#?}");
    assert_eq!(
        list[0]["sources"],
        json!(["maelys-kustomer", "maelys-second"])
    );
    assert_eq!(rx.hooks(&rx.oncall, "declared").len(), 1);
    assert_eq!(rx.hooks(&rx.maelys, "declared").len(), 1);
    finish(server, db).await;
}

/// The first webhook event of `maelys-kustomer` (not a canary).
async fn first_event(admin: &Admin) -> String {
    let (_, events) = admin.get("/api/v1/events?source=maelys-kustomer").await;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["origin"] == "webhook")
        .and_then(|e| e["id"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_critical_alert_declares_and_tells_the_tenant_when_the_hold_ends() {
    a_critical_alert_declares_and_tells_the_tenant_when_the_hold_ends(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_critical_alert_declares_and_tells_the_tenant_when_the_hold_ends() {
    a_critical_alert_declares_and_tells_the_tenant_when_the_hold_ends(Backend::postgres().await)
        .await;
}

async fn a_tenant_token_reads_only_its_own_incidents(backend: Backend) {
    let rx = Receivers::start().await;
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let (server, db) = start(backend, &handler.url(), "", |t| rx.config(t)).await;
    let admin = Admin::of(&server);
    let declare = |tenants: Value| {
        let admin = admin.clone();
        async move {
            let (status, i) = admin
                .post(
                    "/api/v1/incidents",
                    json!({"title": "Webhooks delayed", "tenants": tenants}),
                )
                .await;
            assert_eq!(status, 201, "{i:#}");
            i["id"].as_str().unwrap().to_string()
        }
    };
    // A second apart each, so that the newest-first order is theirs.
    let own = declare(json!(["maelys"])).await;
    server.clock.advance(Duration::from_secs(1));
    let theirs = declare(json!(["other"])).await;
    server.clock.advance(Duration::from_secs(1));
    let shared = declare(json!(["maelys", "other"])).await;
    wait("every notice sent", || {
        rx.other.accepted().len() == 2 && rx.maelys.accepted().len() == 2
    })
    .await;
    let maelys = admin.with_token("maelys-token");

    let (status, list) = maelys.get("/api/v1/incidents").await;
    assert_eq!(status, 200, "{list:#}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [shared.as_str(), own.as_str()]);
    assert_eq!(list["data"][0]["tenants"], json!(["maelys"]));
    assert!(!list.to_string().contains("other"), "{list:#}");
    let (status, _) = maelys.get("/api/v1/incidents?tenant=other").await;
    assert_eq!(status, 404);
    let (status, _) = maelys.get(&format!("/api/v1/incidents/{theirs}")).await;
    assert_eq!(status, 404);
    let i = wait_incident(&maelys, &shared, "its own notice delivered", |i| {
        notices(i).iter().any(|n| n["detail"]["state"] == "sent")
    })
    .await;
    assert_eq!(i["tenants"], json!(["maelys"]));
    assert!(
        notices(&i)
            .iter()
            .all(|n| n["detail"]["tenant"] == "maelys"),
        "{i:#}"
    );
    assert!(!i.to_string().contains("other"), "{i:#}");
    // Writing and the postmortem are the operator's.
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/incidents".to_string()),
        (
            reqwest::Method::POST,
            format!("/api/v1/incidents/{own}/updates"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/incidents/{own}/resolve"),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/incidents/{own}/postmortem"),
        ),
    ] {
        let (status, p) = maelys
            .send(
                method,
                &path,
                Some(json!({"title": "x", "tenants": ["maelys"], "message": "x"})),
            )
            .await
            .unwrap();
        assert_eq!(status, 403, "{path}: {p:#}");
        assert_eq!(p["type"], "urn:intake:problem:incident-operator-only");
    }
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_tenant_token_reads_only_its_own_incidents() {
    a_tenant_token_reads_only_its_own_incidents(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_tenant_token_reads_only_its_own_incidents() {
    a_tenant_token_reads_only_its_own_incidents(Backend::postgres().await).await;
}

/// The story, scripted: webhooks of a window acknowledged and lost, an incident declared for
/// it, a dry run and a backfill, a fix, the resolution; the postmortem draft is a snapshot.
async fn the_postmortem_of_a_scripted_incident_with_a_backfill(backend: Backend) {
    let oncall = NotifierCapture::start().await.unwrap();
    let contact = NotifierCapture::start().await.unwrap();
    // Duty leases outlive the clock's jumps and an injected fault (a renewal the store refused
    // would stop the monitor, and its sender, until the clock moves again).
    let extra = format!(
        "\n[[notifiers]]\nid = \"oncall\"\nkind = \"webhook\"\nurl = \"{}\"\n\n[cluster]\nduty_lease = \"24h\"\n",
        oncall.url("/oncall")
    );
    let keys = format!(
        "name = \"Maelys\"\ncontacts = [{{ kind = \"webhook\", url = \"{}\" }}]",
        contact.url("/status")
    );
    let s = Scenario::start_with_tenant_keys(
        backend,
        71,
        6,
        (120, 240),
        KustomerLimits::default(),
        &extra,
        &keys,
    )
    .await;
    let admin = &s.admin;
    let (status, declared) = admin
        .post(
            "/api/v1/incidents",
            json!({
                "title": "Webhooks acknowledged but never processed",
                "tenants": ["maelys"],
                "sources": ["maelys-kustomer"],
                "severity": "critical",
                "impact_start": s.lost.0.to_rfc3339(),
                "commander": "alice",
                "message": "Some of your conversations were received but not processed.",
                "author": "alice",
            }),
        )
        .await;
    assert_eq!(status, 201, "{declared:#}");
    let id = declared["id"].as_str().unwrap().to_string();
    wait_incident(admin, &id, "declared notices delivered", |i| {
        all_delivered(i, 2)
    })
    .await;
    s.server.clock.advance(Duration::from_secs(60));
    let dry = s.run(s.backfill(true)).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    s.server.clock.advance(Duration::from_secs(60));
    let real = s.run(s.backfill(false)).await;
    assert_eq!(real["state"], "succeeded", "{real:#}");
    let backfilled = real["report"]["done"].as_u64().unwrap() as usize;
    s.handler
        .wait_for(s.sent.delivered.len() + backfilled, PATIENCE)
        .await;

    s.server.clock.advance(Duration::from_secs(5 * 60));
    let (status, _) = admin
        .post(
            &format!("/api/v1/incidents/{id}/updates"),
            json!({"status": "monitoring", "message": "The missing conversations are recovered and processed.", "author": "alice"}),
        )
        .await;
    assert_eq!(status, 200);
    wait_incident(admin, &id, "update notices delivered", |i| {
        all_delivered(i, 4)
    })
    .await;
    s.server.clock.advance(Duration::from_secs(5 * 60));
    let (status, _) = admin
        .post(
            &format!("/api/v1/incidents/{id}/resolve"),
            json!({"author": "alice"}),
        )
        .await;
    assert_eq!(status, 200);
    wait_incident(admin, &id, "resolution delivered", |i| all_delivered(i, 6)).await;

    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/incidents/{id}/postmortem",
            s.server.url()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let mut text = resp.text().await.unwrap();
    text = text.replace(&id, "inc_ID");
    for (n, job) in [&dry, &real].iter().enumerate() {
        text = text.replace(job["id"].as_str().unwrap(), &format!("rec_JOB{}", n + 1));
    }
    insta::assert_snapshot!("postmortem_of_a_scripted_incident_with_a_backfill", text);
    if let Some(db) = s.db {
        s.server.server.shutdown().await.unwrap();
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_postmortem_of_a_scripted_incident_with_a_backfill() {
    the_postmortem_of_a_scripted_incident_with_a_backfill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_postmortem_of_a_scripted_incident_with_a_backfill() {
    the_postmortem_of_a_scripted_incident_with_a_backfill(Backend::postgres().await).await;
}

/// `intake incident …` with the real binary: declare prints the id; update, resolve, list,
/// show, postmortem --out and `intake status` work; bad input exits non-zero and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_commands_end_to_end_with_clear_errors() {
    let rx = Receivers::start().await;
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let (server, db) = start(Backend::Sqlite, &handler.url(), "", |t| rx.config(t)).await;
    let url = server.url();
    let cli = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let mut all: Vec<String> = vec!["incident".into()];
            all.extend(args);
            all.extend(["--url".into(), url, "--token".into(), ADMIN_TOKEN.into()]);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            intake_cli(&refs).await
        }
    };
    let args = |s: &str| s.split('|').map(str::to_string).collect::<Vec<_>>();

    let declared = cli(args("declare|--title|Webhooks delayed|--tenant|maelys|--source|maelys-kustomer|--severity|critical|--impact-start|2026-11-28T09:40:00Z|--commander|alice|--message|We are on it.")).await;
    declared.assert_code(0);
    let id = declared.stdout.trim().to_string();
    assert!(id.starts_with("inc_") && !id.contains('\n'), "{declared:?}");
    assert!(declared.stderr.contains("maelys's contact"), "{declared:?}");

    let update = cli(vec![
        "update".into(),
        id.clone(),
        "--status".into(),
        "identified".into(),
        "--message".into(),
        "Found the cause.".into(),
    ])
    .await;
    update.assert_code(0);
    assert!(update.stdout.contains("updated (identified)"), "{update:?}");

    let list = cli(args("list|--open")).await;
    list.assert_code(0);
    assert!(
        list.stdout.contains(&id) && list.stdout.contains("identified"),
        "{list:?}"
    );
    let status = intake_cli(&["status", "--url", &url, "--token", ADMIN_TOKEN]).await;
    status.assert_code(0);
    assert!(
        status.stdout.contains("OPEN INCIDENTS: 1") && status.stdout.contains(&id),
        "{status:?}"
    );

    let show = cli(vec!["show".into(), id.clone()]).await;
    show.assert_code(0);
    for needle in [
        "TIMELINE",
        "declared",
        "update",
        "notice",
        "Found the cause.",
    ] {
        assert!(show.stdout.contains(needle), "{needle}: {show:?}");
    }

    let resolve = cli(vec!["resolve".into(), id.clone()]).await;
    resolve.assert_code(0);
    assert!(
        resolve.stdout.contains("resolved (resolved)"),
        "{resolve:?}"
    );
    // The drafts are read once every notice is recorded, so both below are the same.
    wait_incident(&Admin::of(&server), &id, "every notice delivered", |i| {
        all_delivered(i, 12)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("postmortem.md");
    let pm = cli(vec![
        "postmortem".into(),
        id.clone(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    pm.assert_code(0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("# Postmortem (draft): Webhooks delayed"),
        "{text}"
    );
    assert!(text.contains("## Action items"), "{text}");
    let stdout = cli(vec!["postmortem".into(), id.clone()]).await;
    stdout.assert_code(0);
    assert_eq!(stdout.stdout, text);

    // Bad input: a clear error and a non-zero exit, nothing declared.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            args("declare|--title|x|--tenant|nobody"),
            "unknown tenant `nobody`",
        ),
        (
            args("declare|--title|x|--tenant|maelys|--impact-start|yesterday"),
            "is not an RFC 3339 time",
        ),
        (vec!["resolve".into(), id.clone()], "was resolved at"),
        (
            vec!["update".into(), id.clone(), "--message".into(), "x".into()],
            "was resolved at",
        ),
        (
            args("declare|--title|x|--tenant|maelys|--severity|sev1"),
            "is not one of critical, major, minor",
        ),
        (args("show|inc_01JDNOSUCH0000000000000000"), "no incident"),
    ];
    for (a, want) in cases {
        let run = cli(a.clone()).await;
        assert_ne!(run.code, Some(0), "{a:?}: {run:?}");
        assert!(run.stderr.contains(want), "{a:?}: want {want:?} in {run:?}");
    }
    let open = cli(args("declare|--title|Delayed|--tenant|maelys")).await;
    open.assert_code(0);
    let bad_status = cli(vec![
        "update".into(),
        open.stdout.trim().into(),
        "--status".into(),
        "resolved".into(),
        "--message".into(),
        "x".into(),
    ])
    .await;
    assert_ne!(bad_status.code, Some(0));
    assert!(
        bad_status.stderr.contains("intake incident resolve"),
        "{bad_status:?}"
    );
    finish(server, db).await;
}

/// What cannot be done is said, and nothing is half done: a store that cannot commit refuses
/// the declaration (503) and nobody is told of an incident that was not recorded; an e-mail
/// contact without an SMTP server ends `not delivered`, with the reason in the timeline, and
/// raises `notifier_failing`.
async fn failures_are_refused_or_recorded_never_silent(backend: Backend) {
    let oncall = NotifierCapture::start().await.unwrap();
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // Duty leases outlive the clock's jumps and an injected fault (a renewal the store refused
    // would stop the monitor, and its sender, until the clock moves again).
    let extra = format!(
        "\n[[notifiers]]\nid = \"oncall\"\nkind = \"webhook\"\nurl = \"{}\"\n\n[cluster]\nduty_lease = \"24h\"\n",
        oncall.url("/oncall")
    );
    let (server, db) = start(backend, &handler.url(), &extra, |t| {
        t.replace(
            "api_token = \"maelys-token\"",
            "api_token = \"maelys-token\"\ncontacts = [{ kind = \"email\", to = \"support@maelys.example\" }]",
        )
    })
    .await;
    let admin = Admin::of(&server);
    let body = json!({"title": "Webhooks delayed", "tenants": ["maelys"]});
    // A first incident, delivered to on-call: the monitor duty and its sender are running (on
    // PostgreSQL they take their lease after the server starts; a fault injected before that
    // would keep them from it until the clock moved).
    let (status, declared) = admin.post("/api/v1/incidents", body.clone()).await;
    assert_eq!(status, 201, "{declared:#}");
    let id = declared["id"].as_str().unwrap().to_string();
    wait("on-call told", || oncall.accepted().len() == 1).await;

    server
        .server
        .store
        .inject_fault(Some(intake_store::StoreFault::RejectWrites))
        .await
        .unwrap();
    let (status, p) = admin.post("/api/v1/incidents", body.clone()).await;
    assert_eq!(status, 503, "{p:#}");
    assert_eq!(p["type"], "urn:intake:problem:store-unavailable");
    server.server.store.inject_fault(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        oncall.all().len(),
        1,
        "told of an incident that was not recorded"
    );
    let (_, list) = admin.get("/api/v1/incidents").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list:#}");

    let i = wait_incident(&admin, &id, "the e-mail contact given up", |i| {
        notices(i)
            .iter()
            .any(|n| n["detail"]["tenant"] == "maelys" && n["detail"]["state"] == "dead")
    })
    .await;
    let dead = notices(&i)
        .into_iter()
        .find(|n| n["detail"]["tenant"] == "maelys")
        .unwrap();
    let text = dead["text"].as_str().unwrap();
    assert!(
        text.contains("not delivered") && text.contains("email_via"),
        "{text}"
    );
    // On-call hears of the contact that cannot be reached, at the next evaluation.
    let mut moved = Duration::ZERO;
    while !oncall.accepted().iter().any(|r| {
        let n = r.json();
        n["rule"] == "notifier_failing" && n["labels"]["notifier"] == "contact:maelys:0"
    }) {
        assert!(
            moved < Duration::from_secs(180),
            "notifier_failing never came"
        );
        server.clock.advance(STEP);
        moved += STEP;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The notifiers' page shows the contact's outbox beside the notifiers'.
    let (status, page) = admin.get("/api/v1/notifiers").await;
    assert_eq!(status, 200, "{page:#}");
    let contact = &page["contacts"][0];
    assert_eq!(contact["id"], "contact:maelys:0", "{page:#}");
    assert_eq!(contact["recipient"], "e-mail support@maelys.example");
    assert_eq!(contact["failing"], true, "{page:#}");
    assert!(contact["last_error"]
        .as_str()
        .unwrap()
        .contains("email_via"));
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failures_are_refused_or_recorded_never_silent() {
    failures_are_refused_or_recorded_never_silent(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failures_are_refused_or_recorded_never_silent() {
    failures_are_refused_or_recorded_never_silent(Backend::postgres().await).await;
}
