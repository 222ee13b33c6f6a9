//! The conservation audit (`GET /api/v1/audit`, `intake audit`) end to end, against a fake
//! Kustomer org whose webhooks arrive as the server's clock moves with them, so that receipt
//! times follow the system of record's times as they do in production.
//!
//! * After real traffic — duplicates, refusals of every kind, deliveries delivered and dead,
//!   and a window of webhooks acknowledged and dropped — what intake received adds up, with
//!   exact numbers, on SQLite and PostgreSQL; the system of record, asked through a dry-run
//!   backfill, has more: `intake audit` exits 1 with its count and the missing by channel,
//!   until `intake recover backfill --yes` of the lost window, after which it exits 0. The
//!   backfilled events are counted where they were received, by origin.
//! * An event stored but never queued (inserted with SQL, as the story's bug left them) fails
//!   the audit until the requeue it names is run; an acceptance counted without its event
//!   fails `accepted_stored`.
//!
//! The command line is the real binary.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use intake_core::{Clock, EventId, ManualClock, Timestamp};
use intake_fake_sors::kustomer::{KustomerFake, KustomerLimits};
use intake_fake_sors::{FakeSor, Served, Webhook, World, WorldSpec};
use intake_testkit::{
    kustomer, CaptureHandler, Reply, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::Value;

use crate::cluster::TestDb;
use crate::recovery::{minutes, parse_webhook, t, Backend, API_KEY};
use crate::PATIENCE;

const SOURCE: &str = "maelys-kustomer";

/// How many deliveries to `flaky` fail (it allows one attempt, so they are dead).
const FLAKY_FAILURES: usize = 5;

/// The server's clock at start, and the world's start.
fn start() -> Timestamp {
    t("2026-11-28T10:00:00Z")
}

fn config(storage: &str, handler: &str, flaky: &str, api: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "2s"
max_body_size = "64KiB"

[storage]
url = "{storage}"

[admin]
token = "{ADMIN_TOKEN}"

# Canaries are on by default, every minute; this test counts deliveries exactly on a clock it
# moves by hours, so they are sent a month apart (as in intake_testkit::config_toml).
[canary]
interval = "30d"
deadline = "60d"

[[tenants]]
id = "maelys"
api_token = "maelys-token"

[[tenants]]
id = "other"
api_token = "other-token"

[[sources]]
id = "{SOURCE}"
tenant = "maelys"
kind = "kustomer"
secrets = ["{SOURCE_SECRET}"]
destinations = ["handler", "flaky"]
api = {{ base_url = "{api}", token = "{API_KEY}", rate_limit_per_minute = 60000 }}

# The clock jumps with the webhooks: a lease (timeout + margin) longer than any jump keeps each
# attempt its own, so that no lease expires on the manual clock under an attempt in flight and
# each delivery is attempted exactly once.
[[destinations]]
id = "handler"
url = "{handler}"
secret = "{DESTINATION_SECRET}"
timeout = "1h"

[[destinations]]
id = "flaky"
url = "{flaky}"
secret = "{DESTINATION_SECRET}"
timeout = "1h"
max_attempts = 1
"#
    )
}

/// A server that received a fake Kustomer org's webhooks, each when it happened, except those
/// of a lost window; then duplicates and refused requests.
struct Traffic {
    server: TestServer,
    handler: CaptureHandler,
    flaky: CaptureHandler,
    hooks: Vec<Webhook>,
    lost: Vec<Webhook>,
    /// The events stored (each answered 200 with `duplicate: false`), by channel.
    stored_by_channel: BTreeMap<String, u64>,
    /// The audited window: the world's start to a minute after its end.
    from: Timestamp,
    to: Timestamp,
    /// The fake's rate-limit clock: moved on before each listing, so that its per-minute
    /// windows do not fill up over a test's several runs.
    fake_clock: ManualClock,
    _fake: Arc<KustomerFake>,
    _api: Served,
    db: Option<TestDb>,
}

/// Duplicates sent, and refused requests: signature, invalid, too large.
const DUPLICATES: u64 = 3;
const BAD_SIGNATURES: u64 = 2;

impl Traffic {
    async fn start(backend: Backend, hours: u64, lost: Option<(u64, u64)>) -> Traffic {
        let world = World::generate(&WorldSpec::mixed(7, start(), hours));
        let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
        let flaky = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
        flaky.script(std::iter::repeat_n(Reply::Status(500), FLAKY_FAILURES));
        let dir = tempfile::tempdir().unwrap();
        let (storage, db) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/intake.db", dir.path().display()), None),
            Backend::Postgres(db) => (db.url.clone(), Some(*db)),
        };
        let fake_clock = ManualClock::new(start());
        let fake = Arc::new(KustomerFake::with_limits(
            world,
            Arc::new(fake_clock.clone()),
            API_KEY,
            KustomerLimits::default(),
        ));
        let api = Served::start(fake.clone().api()).await.unwrap();
        let text = config(&storage, &handler.url(), &flaky.url(), &api.url());
        let server = TestServer::start_with(dir, &text).await.unwrap();
        let hooks = fake.webhooks(SOURCE_SECRET);
        let end = hooks.last().map_or(start(), |w| w.at);
        let mut s = Traffic {
            server,
            handler,
            flaky,
            hooks: hooks.clone(),
            lost: Vec::new(),
            stored_by_channel: BTreeMap::new(),
            from: start(),
            to: end.plus(minutes(1)),
            fake_clock,
            _fake: fake,
            _api: api,
            db,
        };
        let lost = lost.map(|(a, b)| (start().plus(minutes(a)), start().plus(minutes(b))));
        for w in &hooks {
            if lost.is_some_and(|(a, b)| a <= w.at && w.at <= b) {
                s.lost.push(w.clone());
                continue;
            }
            s.at(w.at);
            let (status, answer) = s.send(w).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["duplicate"], false, "{answer}");
            let channel = parse_webhook(w).channel.as_str().to_string();
            *s.stored_by_channel.entry(channel).or_default() += 1;
        }
        s.at(end);
        s.refusals_and_duplicates().await;
        s.at(s.to.plus(minutes(1)));
        s.wait_rejections_recorded().await;
        s
    }

    /// Waits until the refused requests are counted: ingest records a refusal after answering
    /// it, off the request (it acknowledged nothing, so it does not wait for the store).
    async fn wait_rejections_recorded(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, audit) = self.audit(self.from, self.to, ADMIN_TOKEN).await;
            if audit["received"]["rejected"]["total"] == BAD_SIGNATURES + 2 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the refusals were never counted: {audit:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves the server's clock to `at` (never back).
    fn at(&self, at: Timestamp) {
        if at > self.server.clock.now() {
            self.server.clock.set(at);
        }
    }

    async fn send(&self, w: &Webhook) -> (u16, Value) {
        let mut req = self
            .server
            .http
            .post(format!("{}/ingest/{SOURCE}", self.server.url()))
            .body(w.body.clone());
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn refusals_and_duplicates(&self) {
        let sent: Vec<&Webhook> = self
            .hooks
            .iter()
            .filter(|w| !self.lost.contains(w))
            .take(DUPLICATES as usize)
            .collect();
        for w in sent {
            let (status, answer) = self.send(w).await;
            assert_eq!((status, &answer["duplicate"]), (200, &Value::Bool(true)));
        }
        let body = kustomer::message_create("audit-refused", "email");
        for _ in 0..BAD_SIGNATURES {
            let r = self
                .server
                .send_kustomer(SOURCE, &body, "not-the-secret")
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = self
            .server
            .send_kustomer(SOURCE, "not json {", SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let big = format!("{{\"padding\": \"{}\"}}", "x".repeat(70 * 1024));
        let r = self
            .server
            .send_kustomer(SOURCE, &big, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
    }

    fn stored(&self) -> u64 {
        self.stored_by_channel.values().sum()
    }

    /// `GET /api/v1/audit` of `[from, to)` with `token`.
    async fn audit(&self, from: Timestamp, to: Timestamp, token: &str) -> (u16, Value) {
        self.server
            .api(
                &format!(
                    "/api/v1/audit?source={SOURCE}&from={}&to={}",
                    from.to_rfc3339(),
                    to.to_rfc3339()
                ),
                token,
            )
            .await
            .unwrap()
    }

    /// The audit of `[from, to)` once no delivery of it is pending any more.
    async fn settled(&self, from: Timestamp, to: Timestamp) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (status, audit) = self.audit(from, to, ADMIN_TOKEN).await;
            assert_eq!(status, 200, "{audit}");
            let pending: u64 = audit["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["pending"].as_u64().unwrap())
                .sum();
            if pending == 0 {
                return audit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries still pending: {audit:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the real binary against the server (off the runtime's threads, which serve it).
    async fn intake(&self, args: &[&str]) -> Run {
        self.fake_clock.advance(minutes(2));
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend([
            "--url".into(),
            self.server.url(),
            "--token".into(),
            ADMIN_TOKEN.into(),
        ]);
        tokio::task::spawn_blocking(move || run_intake(&args))
            .await
            .unwrap()
    }

    fn window_args(&self) -> Vec<String> {
        vec![
            "--source".into(),
            SOURCE.into(),
            "--from".into(),
            self.from.to_rfc3339(),
            "--to".into(),
            self.to.to_rfc3339(),
        ]
    }

    /// `intake audit` of the whole window, with `extra` arguments.
    async fn audit_cli(&self, extra: &[&str]) -> Run {
        let mut args = vec!["audit".to_string()];
        args.extend(self.window_args());
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.intake(&args).await
    }

    async fn finish(self) {
        if let Some(db) = self.db {
            self.server.server.shutdown().await.unwrap();
            db.drop_db().await;
        }
    }
}

/// A finished run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect(&self, code: i32, needles: &[&str]) {
        let all = format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert_eq!(self.code, Some(code), "{all}");
        for n in needles {
            assert!(all.contains(n), "no {n:?} in\n{all}");
        }
    }
}

fn run_intake(args: &[String]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INTAKE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("the intake binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn listing(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A line of the audit's table: a label and its count in the counts' column.
fn row(label: &str, count: u64) -> String {
    format!("  {label:<24}{count:>10}")
}

/// The dedupe keys of what the system of record implies: each object's creation, and each
/// conversation's last update (its API shows current objects).
fn implied(hooks: &[Webhook]) -> Vec<String> {
    let events: Vec<_> = hooks.iter().map(parse_webhook).collect();
    let mut last_update: HashMap<String, Timestamp> = HashMap::new();
    for e in &events {
        if e.event_type == "kustomer.conversation.update" {
            let (Some(id), Some(at)) = (e.object_id.clone(), e.occurred_at) else {
                continue;
            };
            let slot = last_update.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        }
    }
    events
        .into_iter()
        .filter(|e| {
            e.event_type.ends_with(".create")
                || e.object_id.as_ref().and_then(|id| last_update.get(id)) == e.occurred_at.as_ref()
        })
        .map(|e| e.dedupe_key)
        .collect()
}

/// Traffic with a lost window: the audit adds up on what was received, exactly; the system of
/// record has more, until the window is backfilled.
async fn what_was_received_adds_up_and_a_lost_window_fails_until_backfilled(backend: Backend) {
    let s = Traffic::start(backend, 2, Some((40, 70))).await;
    let stored = s.stored();
    assert!(s.lost.len() > 10, "only {} lost", s.lost.len());
    let settled = s.handler.wait_for(stored as usize, PATIENCE).await;
    assert_eq!(settled.len() as u64, stored);
    let audit = s.settled(s.from, s.to).await;
    // One attempt each at `flaky`: the first ones failed, and it allows no retry.
    assert_eq!(s.flaky.received().len() as u64, stored);

    // received = accepted + duplicates + rejected, exactly.
    let r = &audit["received"];
    assert_eq!(n(&r["accepted"]), stored, "{audit:#}");
    assert_eq!(n(&r["duplicate"]), DUPLICATES);
    let rej = &r["rejected"];
    assert_eq!(
        (
            n(&rej["signature"]),
            n(&rej["invalid"]),
            n(&rej["too_large"])
        ),
        (BAD_SIGNATURES, 1, 1)
    );
    assert_eq!(n(&r["total"]), stored + DUPLICATES + BAD_SIGNATURES + 2);
    // accepted as counted = events stored, by origin and channel.
    let a = &audit["accepted"];
    assert_eq!((n(&a["counted"]), n(&a["stored"])), (stored, stored));
    assert_eq!(
        a["stored_by_origin"],
        serde_json::json!({"webhook": stored})
    );
    assert_eq!(
        a["counted_by_origin"],
        serde_json::json!({"webhook": stored})
    );
    let by_channel: BTreeMap<String, u64> =
        serde_json::from_value(a["stored_by_channel"].clone()).unwrap();
    assert_eq!(by_channel, s.stored_by_channel);
    // accepted = delivered + pending + dead, per destination.
    let d = &audit["destinations"];
    let counts = |d: &Value| {
        (
            d["destination"].as_str().unwrap().to_string(),
            n(&d["delivered"]),
            n(&d["pending"]),
            n(&d["dead"]),
            n(&d["missing"]),
        )
    };
    let flaky = FLAKY_FAILURES as u64;
    assert_eq!(
        d.as_array().unwrap().iter().map(counts).collect::<Vec<_>>(),
        [
            ("handler".to_string(), stored, 0, 0, 0),
            ("flaky".to_string(), stored - flaky, 0, flaky, 0),
        ]
    );
    assert_eq!(audit["window"]["resolution"], "minute");
    assert_eq!(audit["adds_up"], true, "{:#}", audit["checks"]);
    assert_eq!(audit["sor_api"], true);

    // A tenant sees its own source's audit, and another tenant's is not there.
    assert_eq!(s.audit(s.from, s.to, "maelys-token").await.0, 200);
    let (status, problem) = s.audit(s.from, s.to, "other-token").await;
    assert_eq!(
        (status, &problem["type"]),
        (404, &Value::from("urn:intake:problem:no-such-source"))
    );

    // Without the system of record, it adds up.
    let run = s.audit_cli(&["--no-sor"]).await;
    run.expect(
        0,
        &[
            &row("accepted", stored),
            &row("duplicates", DUPLICATES),
            "signature 2, invalid 1, too large 1",
            "SYSTEM OF RECORD: not asked (--no-sor)",
            "ok    no_missing_deliveries",
            "RESULT: adds up",
        ],
    );

    // The system of record has what was lost: exit 1, its count, the missing by channel.
    let implied = implied(&s.hooks);
    let lost: Vec<String> = s.lost.iter().map(|w| parse_webhook(w).dedupe_key).collect();
    let missed = implied.iter().filter(|k| lost.contains(k)).count() as u64;
    assert!(missed > 5, "{missed} missed");
    let json = s.audit_cli(&["--json"]).await;
    json.expect(1, &[]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["adds_up"], false);
    assert_eq!(v["failed"], serde_json::json!(["sor_all_received"]));
    assert_eq!(v["audit"]["received"], audit["received"]);
    let report = &v["sor"]["job"]["report"];
    assert_eq!(n(&report["seen"]), implied.len() as u64);
    assert_eq!(n(&report["todo"]["total"]), missed);
    // By channel as the system of record tells it (a conversation's webhook creation names no
    // channel yet; its current object does).
    let missing: BTreeMap<String, u64> =
        serde_json::from_value(report["todo"]["by_channel"].clone()).unwrap();
    assert_eq!(missing.values().sum::<u64>(), missed);
    let run = s.audit_cli(&[]).await;
    run.expect(
        1,
        &[
            &row("implies", implied.len() as u64),
            &format!("{}   {}", row("never received", missed), listing(&missing)),
            "FAIL  sor_all_received",
            "RESULT: does not add up (failed: sor_all_received)",
            "intake recover backfill --source maelys-kustomer",
            "does not add up: sor_all_received failed",
        ],
    );

    // Backfilled, the window adds up again.
    let (lost_from, lost_to) = (start().plus(minutes(40)), start().plus(minutes(70)));
    let backfill = s
        .intake(&[
            "recover",
            "backfill",
            "--source",
            SOURCE,
            "--from",
            &lost_from.to_rfc3339(),
            "--to",
            &lost_to.to_rfc3339(),
            "--yes",
        ])
        .await;
    backfill.expect(0, &[]);
    let got = s
        .handler
        .wait_for((stored + missed) as usize, PATIENCE)
        .await;
    assert_eq!(got.len() as u64, stored + missed);
    s.audit_cli(&[]).await.expect(
        0,
        &[
            &row("never received", 0),
            "ok    sor_all_received",
            "RESULT: adds up",
        ],
    );
    // The backfilled events were received when the backfill ran: counted and stored there,
    // as backfilled.
    let after = s.server.clock.now();
    s.at(after.plus(minutes(1)));
    let later = s.settled(s.to, s.server.clock.now()).await;
    let a = &later["accepted"];
    assert_eq!(
        a["counted_by_origin"],
        serde_json::json!({"backfill": missed})
    );
    assert_eq!(
        a["stored_by_origin"],
        serde_json::json!({"backfill": missed})
    );
    assert_eq!(later["adds_up"], true, "{:#}", later["checks"]);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_audit_adds_up_after_traffic_and_a_lost_window_fails_it_until_backfilled() {
    what_was_received_adds_up_and_a_lost_window_fails_until_backfilled(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_audit_adds_up_after_traffic_and_a_lost_window_fails_it_until_backfilled() {
    what_was_received_adds_up_and_a_lost_window_fails_until_backfilled(Backend::Postgres(
        Box::new(TestDb::create().await),
    ))
    .await;
}

/// The story's bug, written into the store by hand: an event stored (and counted) without
/// its deliveries. The audit names it and the requeue that queues it; after that requeue it
/// adds up. Then an acceptance counted without its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_event_never_queued_fails_the_audit_until_it_is_requeued() {
    let s = Traffic::start(Backend::Sqlite, 1, None).await;
    let stored = s.stored();
    s.handler.wait_for(stored as usize, PATIENCE).await;
    assert_eq!(s.settled(s.from, s.to).await["adds_up"], true);

    let at = s.from.plus(minutes(30));
    let id = EventId::generate(at);
    let db = s.server.dir.path().join("intake.db");
    let minute = at.as_millis().div_euclid(60_000) * 60_000;
    write_sqlite(
        &db,
        &format!(
            "INSERT INTO events (id, tenant, source, origin, dedupe_key, event_type, channel,
                occurred_at, received_at, headers, body)
             VALUES ('{id}', 'maelys', '{SOURCE}', 'webhook', 'audit:never-queued',
                'kustomer.message.create', 'email', {at}, {at}, '[]', X'7B7D');
             INSERT INTO counters (minute, tenant, source, channel, destination, metric, count)
             VALUES ({minute}, 'maelys', '{SOURCE}', 'email', '', 'requests.accepted', 1),
                    ({minute}, 'maelys', '{SOURCE}', 'email', '', 'events.webhook', 1)
             ON CONFLICT (minute, tenant, source, channel, destination, metric)
             DO UPDATE SET count = count + 1;",
            at = at.as_millis()
        ),
    );
    let (_, audit) = s.audit(s.from, s.to, ADMIN_TOKEN).await;
    assert_eq!(audit["adds_up"], false);
    let verdicts: Vec<(&str, bool)> = audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("accepted_stored", true),
            ("deliveries_add_up", false),
            ("no_missing_deliveries", false)
        ]
    );
    for d in audit["destinations"].as_array().unwrap() {
        assert_eq!(n(&d["missing"]), 1, "{d}");
        assert_eq!(d["missing_sample"], serde_json::json!([id.to_string()]));
    }
    let run = s.audit_cli(&["--no-sor"]).await;
    run.expect(
        1,
        &[
            "FAIL  deliveries_add_up",
            "FAIL  no_missing_deliveries",
            "1 events received but never queued",
            "failed: deliveries_add_up, no_missing_deliveries",
        ],
    );

    // The check names the requeue that queues it: run it as written.
    let detail = audit["checks"][2]["detail"].as_str().unwrap();
    let command = detail
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {detail}"));
    let mut args: Vec<&str> = command.split(' ').skip(1).collect();
    args.push("--yes");
    s.intake(&args).await.expect(0, &[]);
    s.handler.wait_for(stored as usize + 1, PATIENCE).await;
    let audit = s.settled(s.from, s.to).await;
    assert_eq!(audit["adds_up"], true, "{:#}", audit["checks"]);
    s.audit_cli(&["--no-sor"])
        .await
        .expect(0, &["RESULT: adds up"]);

    // An acceptance counted whose event is not in the store: a 200 for nothing.
    write_sqlite(
        &db,
        &format!(
            "UPDATE counters SET count = count + 1 WHERE minute = {minute} AND source = '{SOURCE}'
               AND channel = 'email' AND destination = '' AND metric IN
               ('requests.accepted', 'events.webhook')"
        ),
    );
    let run = s.audit_cli(&["--no-sor"]).await;
    run.expect(
        1,
        &[
            "FAIL  accepted_stored",
            "1 acknowledged events are not in the store",
            "failed: accepted_stored",
        ],
    );
}

/// Writes into the running server's SQLite file from a connection of our own, as an operator
/// with `sqlite3` would (the server holds no lock that keeps it out: WAL lets it in).
fn write_sqlite(path: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(sql).unwrap();
}
