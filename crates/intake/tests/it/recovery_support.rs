//! What the recovery tests share: the admin API of a running intake (in this process or a
//! child), job helpers, and the conservation check run after every scenario.

use std::path::Path;
use std::time::Duration;

use intake_core::Timestamp;
use intake_testkit::{config_toml, kustomer, TestServer, ADMIN_TOKEN, SOURCE_SECRET};
use serde_json::Value;

use crate::cluster::{pg_connect, TestDb};
use crate::recovery::{count, Backend};
use crate::PATIENCE;

/// A test server on `backend` with [`config_toml`] (`extra` after its destination), and the
/// PostgreSQL database to drop at the end. Its configuration text is `server.config`'s source.
pub(crate) async fn server_on(
    backend: Backend,
    handler_url: &str,
    extra: &str,
) -> (TestServer, String, Option<TestDb>) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_toml(dir.path(), handler_url, extra);
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(db) => {
            let db = *db;
            let sqlite = format!("url = \"sqlite://{}/intake.db\"", dir.path().display());
            assert!(text.contains(&sqlite));
            text = text.replace(&sqlite, &format!("url = \"{}\"", db.url));
            Some(db)
        }
    };
    let server = TestServer::start_with(dir, &text).await.unwrap();
    (server, text, db)
}

/// Stops a test server's node and drops its PostgreSQL database, if it has one.
pub(crate) async fn finish(server: TestServer, db: Option<TestDb>) {
    if let Some(db) = db {
        server.server.shutdown().await.unwrap();
        db.drop_db().await;
    }
}

/// Puts the delivery of `event` in flight under the lease of a node that is gone, a lease that
/// ended at `ended`, by SQL on a server's own database: the SQLite file in its directory `dir`,
/// or its PostgreSQL database `db`.
pub(crate) async fn stale_lease(dir: &Path, db: Option<&TestDb>, event: &str, ended: Timestamp) {
    let changed = match db {
        None => {
            let c = rusqlite::Connection::open(dir.join("intake.db")).unwrap();
            c.busy_timeout(Duration::from_secs(5)).unwrap();
            c.execute(
                "UPDATE deliveries SET state = 'in_flight', lease_id = 'ghost-lease',
                     lease_node = 'ghost-node', due_at = ?1
                 WHERE event_id = ?2",
                rusqlite::params![ended.as_millis(), event],
            )
            .unwrap() as u64
        }
        Some(db) => pg_connect(&db.url)
            .await
            .execute(
                "UPDATE deliveries SET state = 'in_flight', lease_id = 'ghost-lease',
                     lease_node = 'ghost-node', due_at = $1
                 WHERE event_id = $2",
                &[&ended.as_millis(), &event],
            )
            .await
            .unwrap(),
    };
    assert_eq!(changed, 1, "no delivery of {event}");
}

/// The admin API of a running intake (in this process or a child process), with one token.
#[derive(Clone)]
pub(crate) struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub(crate) fn new(base: &str, token: &str) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    /// The operator's view of a test server.
    pub(crate) fn of(server: &TestServer) -> Admin {
        Admin::new(&server.url(), ADMIN_TOKEN)
    }

    /// The same API seen with another token.
    pub(crate) fn with_token(&self, token: &str) -> Admin {
        Admin::new(&self.base, token)
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await.unwrap()
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap()
    }

    /// Creates a job, which must be accepted (201, queued); its id.
    pub(crate) async fn create(&self, body: Value) -> String {
        let (status, job) = self.post("/api/v1/recoveries", body).await;
        assert_eq!(status, 201, "{job:#}");
        assert_eq!(job["state"], "queued");
        job["id"].as_str().unwrap().to_string()
    }

    pub(crate) async fn job(&self, id: &str) -> Value {
        let (status, job) = self.get(&format!("/api/v1/recoveries/{id}")).await;
        assert_eq!(status, 200, "{job:#}");
        job
    }

    /// Polls the job until `done` holds of it (a liveness bound, not a speed assertion).
    pub(crate) async fn wait_job(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE * 3;
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the job never {what}: {job:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn wait_final(&self, id: &str) -> Value {
        self.wait_job(id, "ended", is_final).await
    }

    /// Creates a job and waits for its end.
    pub(crate) async fn run(&self, body: Value) -> Value {
        let id = self.create(body).await;
        self.wait_final(&id).await
    }

    /// Every event of `source`, newest first, through the API's pages.
    pub(crate) async fn events(&self, source: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/events?source={source}&limit=1000");
            if let Some(b) = &before {
                path.push_str(&format!("&before={b}"));
            }
            let (status, page) = self.get(&path).await;
            assert_eq!(status, 200, "{page:#}");
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_before"].as_str() {
                Some(b) => before = Some(b.to_string()),
                None => return out,
            }
        }
    }

    /// The check after every scenario: nothing of `source` is left pending in the queue
    /// (waited for), and every event of the source has exactly one delivery of its own (not
    /// a replay) to each destination of `routes`, so events = deliveries per destination;
    /// every delivery is final. Returns the events.
    pub(crate) async fn audit(&self, source: &str, routes: &[&str]) -> Vec<Value> {
        self.drained(source).await;
        let events = self.events(source).await;
        for e in &events {
            let deliveries = e["deliveries"].as_array().unwrap();
            for route in routes {
                let own = deliveries
                    .iter()
                    .filter(|d| d["destination"] == *route && d["origin"] != "replay")
                    .count();
                assert_eq!(own, 1, "{own} deliveries of its own to {route}: {e:#}");
            }
            for d in deliveries {
                assert!(
                    d["state"] == "delivered" || d["state"] == "dead",
                    "not final: {e:#}"
                );
            }
        }
        events
    }

    /// Waits until nothing of `source` is pending in the queue: every attempt made has been
    /// recorded (a handler that received a delivery does not mean its result is stored yet;
    /// moving the manual clock before it is would expire the attempt's lease under it).
    pub(crate) async fn drained(&self, source: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (status, q) = self.get(&format!("/api/v1/queue?source={source}")).await;
            assert_eq!(status, 200, "{q:#}");
            let pending: u64 = q["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| count(&e["pending"]))
                .sum();
            if pending == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries of {source} are still pending: {q:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) fn is_final(job: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or(""))
}

/// A finished run of `intake …`.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub(crate) fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the real binary with `args`, no terminal (stdin from /dev/null, output captured) and
/// no `INTAKE_…` variable from the outer environment. Async, so a server in this process keeps
/// answering meanwhile.
pub(crate) async fn intake_cli(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args).stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INTAKE_") {
            cmd.env_remove(k);
        }
    }
    let out = tokio::time::timeout(PATIENCE * 3, cmd.output())
        .await
        .expect("intake did not exit")
        .expect("the intake binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `n` signed Kustomer messages (`{prefix}-0`, …) to `maelys-kustomer`; their event ids.
pub async fn ingest(server: &TestServer, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = kustomer::message_create(&format!("{prefix}-{i}"), "email");
        let r = server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        out.push(v["id"].as_str().unwrap().to_string());
    }
    out
}
