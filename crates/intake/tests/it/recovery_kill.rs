//! A backfill killed mid-way: the real `intake` binary (SQLite, then PostgreSQL) backfills a
//! lost window from a fake Kustomer org whose API it may call only so fast (real clock), so the
//! job takes several seconds; it is killed with SIGKILL after its first page, while the next
//! page has ingested events but not saved its cursor, restarted on the same data, resumes from
//! its cursor and succeeds. Every event the window implies is stored
//! exactly once (no two events share a dedupe key), reaches the handler (at least once: the
//! same `webhook-id` may come twice after a crash), and nothing outside the window is injected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use intake_core::clock::{Clock, SystemClock};
use intake_core::Timestamp;
use intake_fake_sors::kustomer::KustomerFake;
use intake_fake_sors::{send_webhooks, FakeSor, Served, World, WorldSpec};
use intake_testkit::{CaptureHandler, Reply, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::json;
use tokio::process::Child;

use crate::crash::{free_port, spawn_intake, wait_healthy};
use crate::recovery::{count, minutes, parse, recovery_config, reproducible, t, Backend, API_KEY};
use crate::recovery_support::Admin;
use crate::PATIENCE;

/// The budget intake allows itself against the SOR: 15 requests a second after a burst of 90.
/// The window below needs about 240 requests, so the job takes several seconds.
const PER_MINUTE: u32 = 900;

/// A world of four hours ending an hour ago, about 75 conversations an hour: the window lists
/// more than two pages of 100 conversations.
fn world(now: Timestamp) -> World {
    let start = now.minus(Duration::from_secs(5 * 3600));
    let mut spec = WorldSpec::mixed(17, start, 4);
    for (_, per_hour) in &mut spec.per_hour {
        *per_hour *= 2.5;
    }
    spec.messages = (1, 3);
    World::generate(&spec)
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn kill(child: &mut Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

async fn backfill_survives_kill_9(backend: Backend) {
    let now = SystemClock.now();
    let world = world(now);
    let start = world.conversations[0].created_at;
    let fake = Arc::new(KustomerFake::new(world, Arc::new(SystemClock), API_KEY));
    let api = Served::start(fake.clone().api()).await.unwrap();
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (storage, db) = match backend {
        Backend::Sqlite => (format!("sqlite://{}/intake.db", dir.path().display()), None),
        Backend::Postgres(db) => (db.url.clone(), Some(*db)),
    };
    let port = free_port();
    // A node id of its own, so the restarted node takes the recovery duty's lease back at once
    // (on PostgreSQL; with SQLite the one node always holds it).
    // Few deliveries at a time, so that a slow handler holds a page's conversations back.
    let extra = "timeout = \"10s\"\nconcurrency = 4\n[cluster]\nnode_id = \"recovery-node\"\n";
    let text = recovery_config(&storage, &handler.url(), &api.url(), extra)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "rate_limit_per_minute = 60000",
            &format!("rate_limit_per_minute = {PER_MINUTE}"),
        );
    let config = dir.path().join("intake.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("intake.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;

    // The webhooks around the window arrive; those inside it are acknowledged and lost.
    let (from, to) = (start.plus(minutes(30)), start.plus(minutes(210)));
    let hooks = fake.webhooks(SOURCE_SECRET);
    let url = format!("{base}/ingest/maelys-kustomer");
    let sent = send_webhooks(&url, &hooks, &[(from, to)]).await.unwrap();
    assert!(sent.failed.is_empty(), "{:?}", sent.failed);
    handler.wait_for(sent.delivered.len(), PATIENCE).await;
    let expected = reproducible(&hooks, &sent.lost);
    assert!(expected.len() > 300, "only {} to recover", expected.len());

    let admin = Admin::new(&base, ADMIN_TOKEN);
    let body = |dry_run: bool| {
        json!({
            "kind": "backfill", "source": "maelys-kustomer", "dry_run": dry_run,
            "from": from.to_rfc3339(), "to": to.to_rfc3339(),
        })
    };
    let id = admin.create(body(false)).await;
    let before = admin
        .wait_job(&id, "finished a page", |j| {
            count(&j["progress"]["pages"]) >= 1 || crate::recovery_support::is_final(j)
        })
        .await;
    assert_eq!(
        before["state"], "running",
        "the job ended before it could be killed: {before:#}"
    );
    // The next page needs a hundred requests (seconds) before it ingests anything. The handler
    // slows down meanwhile, so that page's conversations then wait for their first events'
    // deliveries: ingested, with the page's cursor not saved yet. The kill comes then, between
    // what a page ingested and the cursor that says so, with deliveries in flight.
    handler.set_default(Reply::Slow(Duration::from_millis(500)));
    let saved = count(&before["progress"]["done"]);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while backfilled(&admin).await <= saved {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the next page never ingested"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = admin.job(&id).await;
    kill(&mut child).await;
    assert_eq!(
        count(&at_kill["progress"]["pages"]),
        count(&before["progress"]["pages"]),
        "the page was saved before the kill: {at_kill:#}"
    );
    handler.set_default(Reply::Status(200));

    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    let job = admin.wait_final(&id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", log_of(&log));
    let r = &job["report"];
    eprintln!(
        "killed during page {}; after the restart: {} done in all, {} ingested before the kill \
         found received, {} pages, resumed {} time(s)",
        count(&at_kill["progress"]["pages"]) + 1,
        count(&r["done"]),
        count(&r["already_received"]),
        count(&r["pages"]),
        count(&r["resumed"]),
    );
    assert!(count(&r["resumed"]) >= 1, "{r:#}");
    // The page the kill interrupted was read again: what it had ingested was then found
    // received already, never ingested twice.
    assert_eq!(count(&r["seen"]), expected.len() as u64, "{r:#}");
    assert_eq!(
        count(&r["done"]) + count(&r["already_received"]),
        expected.len() as u64,
        "{r:#}"
    );

    check_stored_once(&admin, &expected, (from, to)).await;
    check_delivered(&handler, &expected, (from, to)).await;

    // Resumed from its cursor, not from the start: a dry run of the same window reads the
    // same number of pages, and finds nothing missing.
    let dry = admin.run(body(true)).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    assert_eq!(count(&dry["report"]["todo"]["total"]), 0, "{dry:#}");
    assert_eq!(
        count(&dry["report"]["pages"]),
        count(&r["pages"]),
        "the resumed job read pages again: {r:#}"
    );
    admin.audit("maelys-kustomer", &["handler"]).await;
    kill(&mut child).await;
    if let Some(db) = db {
        db.drop_db().await;
    }
}

/// How many backfilled events the store holds.
async fn backfilled(admin: &Admin) -> u64 {
    let events = admin.events("maelys-kustomer").await;
    events.iter().filter(|e| e["origin"] == "backfill").count() as u64
}

/// Each expected key is stored once; the store holds no two events with one dedupe key; every
/// backfilled event is one of the expected, and happened inside the window.
async fn check_stored_once(
    admin: &Admin,
    expected: &BTreeMap<String, intake_core::event::NormalizedEvent>,
    (from, to): (Timestamp, Timestamp),
) {
    let events = admin.events("maelys-kustomer").await;
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    let mut backfilled = 0;
    for e in &events {
        let key = e["dedupe_key"].as_str().unwrap();
        *keys.entry(key).or_default() += 1;
        if e["origin"] == "backfill" {
            backfilled += 1;
            assert!(expected.contains_key(key), "not lost: {e:#}");
            let at = t(e["occurred_at"].as_str().unwrap());
            assert!(from <= at && at <= to, "outside the window: {e:#}");
        }
    }
    let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !keys.contains_key(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "never stored: {missing:?}");
    assert_eq!(backfilled, expected.len());
}

/// Every expected key reaches the handler (perhaps twice: at least once), in Kustomer's
/// envelope with its original time inside the window; nothing else is backfilled.
async fn check_delivered(
    handler: &CaptureHandler,
    expected: &BTreeMap<String, intake_core::event::NormalizedEvent>,
    (from, to): (Timestamp, Timestamp),
) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        let got: BTreeSet<String> = handler
            .received()
            .iter()
            .filter(|c| c.header("intake-origin") == "backfill")
            .map(|c| parse(&c.headers, &c.body).dedupe_key)
            .collect();
        let missing = expected.keys().filter(|k| !got.contains(*k)).count();
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} backfilled events never reached the handler"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What each conversation's first backfilled delivery was: its creation, when that was
    // lost too, even across the crash.
    let mut first_of: BTreeMap<String, String> = BTreeMap::new();
    for c in handler.received() {
        if c.header("intake-origin") != "backfill" {
            continue;
        }
        assert!(c.signature_valid);
        let e = parse(&c.headers, &c.body);
        assert!(expected.contains_key(&e.dedupe_key), "not lost: {e:?}");
        let at = t(c.header("intake-occurred-at"));
        assert!(from <= at && at <= to, "outside the window: {at}");
        if let Some(conversation) = e.conversation_id {
            first_of.entry(conversation).or_insert(e.event_type);
        }
    }
    for e in expected
        .values()
        .filter(|e| e.event_type == "kustomer.conversation.create")
    {
        let c = e.conversation_id.as_ref().unwrap();
        assert_eq!(
            first_of[c], "kustomer.conversation.create",
            "conversation {c} came after its messages"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_backfill_killed_mid_way_resumes_with_no_duplicates_or_gaps() {
    backfill_survives_kill_9(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_backfill_killed_mid_way_resumes_with_no_duplicates_or_gaps() {
    backfill_survives_kill_9(Backend::postgres().await).await;
}
