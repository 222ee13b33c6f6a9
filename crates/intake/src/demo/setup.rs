//! The stage: a temporary embedded store, a fake Kustomer org (its signed webhooks and its
//! REST API, from `intake-fake-sors`), the demo tenant's status page (where its incident
//! notices arrive), intake itself in this process with the built-in demo handler and
//! notification receiver, and the live traffic — all on loopback, all on the pace's clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use intake_core::config::Config;
use intake_core::Timestamp;
use intake_fake_sors::kustomer::KustomerFake;
use intake_fake_sors::world::Medium;
use intake_fake_sors::{FakeSor, Served, World, WorldSpec};
use intake_server::{RunningServer, Server};
use serde_json::Value;

use super::admin::Admin;
use super::pace::Pace;
use super::traffic::Traffic;

/// The operator token of the demo: the embedded set-up's own, so that what `intake serve`
/// prints and what the demo prints agree.
pub const TOKEN: &str = "dev-admin-token";
/// The demo's tenant.
pub const TENANT: &str = "demo";
/// The demo's Kustomer source.
pub const SOURCE: &str = "demo-kustomer";
/// The source's webhook signing secret (the embedded set-up's).
const SECRET: &str = "demo-kustomer-secret";
/// The fake Kustomer org's API key.
const API_KEY: &str = "demo-kustomer-api-key";
/// The world's seed: every run tells the same traffic.
const SEED: u64 = 14;
/// How long the world's traffic lasts; longer than any run of the demo.
const WORLD: Duration = Duration::from_secs(3 * 3600);

/// Everything the acts play with. Dropping it stops the traffic and the fakes; the server is
/// stopped by [`Stage::stop`].
pub struct Stage {
    /// The pace, and its clock.
    pub pace: Pace,
    /// intake, in this process.
    pub server: RunningServer,
    /// Its base URL.
    pub url: String,
    /// Its admin API, with the operator token.
    pub admin: Admin,
    /// The fake Kustomer's webhooks, as they go.
    pub traffic: Traffic,
    /// What the tenant's status page received: its incident notices, newest last.
    pub tenant_page: Arc<Mutex<Vec<Value>>>,
    _kustomer: Served,
    _status_page: Served,
    /// The temporary store's directory, removed when dropped.
    dir: tempfile::TempDir,
}

impl Stage {
    /// Sets the stage on `port` (0: any free port).
    pub async fn set(pace: Pace, port: u16) -> anyhow::Result<Stage> {
        let clock = pace.clock();
        let dir = tempfile::Builder::new()
            .prefix("intake-demo-")
            .tempdir()
            .context("cannot make a temporary directory for the demo's store")?;
        let world = World::generate(&world_spec(pace.now()));
        let fake = Arc::new(KustomerFake::new(world, clock.clone(), API_KEY));
        let kustomer = Served::start(fake.clone().api())
            .await
            .context("cannot start the fake Kustomer")?;
        let tenant_page = Arc::new(Mutex::new(Vec::new()));
        let status_page = Served::start(status_page(tenant_page.clone()))
            .await
            .context("cannot start the tenant's status page")?;
        let port = match port {
            0 => free_port()?,
            p => p,
        };
        let text = config_text(
            port,
            &dir.path().display().to_string(),
            &kustomer.url(),
            &format!("{}/hooks/intake", status_page.url()),
        );
        let config = Config::from_toml_str(&text)
            .map_err(|e| anyhow::anyhow!("the demo's configuration is invalid (a bug): {e}"))?;
        let server = Server::new(config, clock.clone())
            .start()
            .await
            .with_context(|| {
                format!("cannot start intake on 127.0.0.1:{port} (choose another with --port)")
            })?;
        let url = server.url();
        let traffic = Traffic::start(
            format!("{url}/ingest/{SOURCE}"),
            fake.webhooks(SECRET),
            clock,
        )?;
        Ok(Stage {
            pace,
            admin: Admin::new(&url, TOKEN)?,
            url,
            server,
            traffic,
            tenant_page,
            _kustomer: kustomer,
            _status_page: status_page,
            dir,
        })
    }

    /// Stops the traffic, then intake (gracefully), then the fakes; the store's directory is
    /// removed.
    pub async fn stop(self) -> anyhow::Result<()> {
        drop(self.traffic);
        self.server
            .shutdown()
            .await
            .context("intake did not stop cleanly")?;
        Ok(())
    }

    /// The temporary store's URL.
    pub fn store_url(&self) -> String {
        format!("sqlite://{}/intake.db", self.dir.path().display())
    }

    /// The notices the tenant's status page received.
    pub fn tenant_notices(&self) -> Vec<Value> {
        self.tenant_page
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

/// The fake Kustomer org's traffic: about ten conversations a minute (e-mail, chat, SMS,
/// voice, social), one to four messages each, answered within five minutes — a webhook a
/// second or so, since Kustomer sends one when a conversation is created and two per message.
fn world_spec(start: Timestamp) -> WorldSpec {
    WorldSpec {
        seed: SEED,
        start,
        end: start.plus(WORLD),
        per_hour: vec![
            (Medium::Email, 300.0),
            (Medium::Chat, 200.0),
            (Medium::Sms, 50.0),
            (Medium::Voice, 20.0),
            (Medium::Social, 30.0),
        ],
        messages: (1, 4),
        reply_within: Duration::from_secs(5 * 60),
    }
}

/// A free port on loopback, chosen by the system. intake's own URLs (its public URL, the demo
/// handler's and the notifier's) name the port, so it is chosen before the configuration is
/// written; another program could take it in between, and then starting fails saying so.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// The demo's configuration: the embedded set-up's tenant, source, handler and notifier, plus
/// what the story needs — the source's API at the fake Kustomer (for backfill), a contact for
/// the tenant (its status page), automatic incidents, and the store in `data_dir`.
pub fn config_text(port: u16, data_dir: &str, kustomer_url: &str, contact_url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
demo_handler = true

[storage]
url = "sqlite://{data_dir}/intake.db"

[admin]
token = "{TOKEN}"

[[tenants]]
id = "{TENANT}"
name = "Demo tenant"
contacts = [{{ kind = "webhook", url = "{contact_url}" }}]

[[destinations]]
id = "demo-handler"
url = "http://127.0.0.1:{port}/demo/handler"
secret = "whsec_ZGVtby1kZXN0aW5hdGlvbi1zZWNyZXQ="
# The handler is in this process. A long timeout (which is also how long an attempt's lease
# lasts) keeps `--fast`, whose clock jumps 5 s at a time, from taking an attempt still in
# flight for a lost one and sending it twice.
timeout = "10m"
max_attempts = 5

[[sources]]
id = "{SOURCE}"
tenant = "{TENANT}"
kind = "kustomer"
secrets = ["{SECRET}"]
destinations = ["demo-handler"]
api = {{ base_url = "{kustomer_url}", token = "{API_KEY}", rate_limit_per_minute = 600 }}

[[notifiers]]
id = "demo-notifications"
kind = "webhook"
url = "http://127.0.0.1:{port}/demo/notifications"

# A critical alert naming a tenant declares an incident and tells the tenant at once. The
# demo's outage is a fire drill, whose incident tells tenants only when asked to: here it is,
# so the tenant's status page shows its notice (marked as a drill).
[incidents]
auto_declare = true
drill_tenant_notices = true

# The demo's backfill is started by the demo itself; continuous reconciliation (every 10
# minutes, 15 minutes behind) would not look at the story's window before the demo ends.
[reconcile]
enabled = false
"#
    )
}

/// The tenant's status page: it keeps every JSON notice POSTed to `/hooks/intake`.
fn status_page(kept: Arc<Mutex<Vec<Value>>>) -> Router {
    Router::new()
        .route("/hooks/intake", post(receive))
        .with_state(kept)
}

async fn receive(State(kept): State<Arc<Mutex<Vec<Value>>>>, body: Bytes) -> StatusCode {
    let Ok(notice) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if let Ok(mut l) = kept.lock() {
        l.push(notice);
    }
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_configuration_is_valid_and_buildable() {
        let text = config_text(
            18080,
            "/tmp/intake-demo-x",
            "http://127.0.0.1:18081",
            "http://127.0.0.1:18082/hooks/intake",
        );
        let config = Config::from_toml_str(&text).unwrap();
        assert!(Server::check(&config).is_empty());
        assert!(config.server.demo_handler);
        assert!(config.incidents.auto_declare);
        assert!(
            config.incidents.drill_tenant_notices,
            "act 3 shows the tenant's notice"
        );
        let source = config.source(SOURCE).unwrap();
        assert_eq!(source.tenant, TENANT);
        assert!(source.api.is_some());
        assert_eq!(config.tenant(TENANT).unwrap().contacts.len(), 1);
        assert_eq!(config.storage.url, "sqlite:///tmp/intake-demo-x/intake.db");
    }

    #[test]
    fn the_world_sends_about_a_webhook_a_second() {
        let start = Timestamp(1_800_000_000_000);
        let world = World::generate(&world_spec(start));
        let hooks = KustomerFake::new(world, Arc::new(intake_core::ManualClock::new(start)), "k")
            .webhooks(SECRET);
        let first_ten_minutes = hooks
            .iter()
            .filter(|w| w.at <= start.plus(Duration::from_secs(600)))
            .count();
        assert!(
            (300..=1000).contains(&first_ten_minutes),
            "{first_ten_minutes} webhooks in ten minutes"
        );
    }
}
