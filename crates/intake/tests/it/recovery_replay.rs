//! Replay: events a handler acknowledged and then lost, and dead letters after the handler was
//! fixed, are delivered again with `intake-origin: replay` and their own `webhook-id`; the
//! original deliveries and their attempts stay. The same replay run twice delivers nothing the
//! second time, `force` delivers again, and a dry run counts exactly what the real run does.

use std::collections::BTreeSet;
use std::time::Duration;

use intake_server::duties::recovery::replay;
use intake_testkit::{
    kustomer, CaptureHandler, Reply, TestServer, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::{json, Value};

use crate::recovery::{count, Backend};
use crate::recovery_support::{finish, server_on, Admin};
use crate::{wait_delivery, PATIENCE};

/// Sends one Kustomer message per id (channel by the id's parity), each answered 200; the
/// event ids.
async fn ingest(server: &TestServer, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let channel = if i % 2 == 0 { "chat" } else { "email" };
        let body = kustomer::message_create(id, channel);
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

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A replay of the last hour of `maelys-kustomer` (up to the server's now), of deliveries in
/// `state`.
fn replay(server: &TestServer, state: &str, dry_run: bool, force: bool) -> Value {
    let now = intake_core::Timestamp(server.clock_now_secs() * 1000);
    json!({
        "kind": "replay", "source": "maelys-kustomer", "state": state,
        "from": "2026-11-28T09:00:00Z", "to": now.to_rfc3339(),
        "dry_run": dry_run, "force": force,
    })
}

/// The deliveries the handler received with `intake-origin: replay`, by `webhook-id`.
fn replayed(handler: &CaptureHandler) -> Vec<String> {
    handler
        .received()
        .into_iter()
        .filter(|c| c.header("intake-origin") == "replay")
        .map(|c| {
            assert!(c.signature_valid);
            c.id
        })
        .collect()
}

/// Each event has its original delivery (in `original` state, `attempts` attempts) and one
/// delivery per replay job in `jobs`, delivered; every attempt is kept.
async fn check_history(
    admin: &Admin,
    ids: &[String],
    original: &str,
    attempts: u64,
    jobs: &[&str],
) {
    for id in ids {
        let (status, e) = admin.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!(status, 200, "{e:#}");
        let deliveries = e["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1 + jobs.len(), "{e:#}");
        let first = deliveries
            .iter()
            .find(|d| d["origin"].is_null())
            .unwrap_or_else(|| panic!("the original delivery is gone: {e:#}"));
        assert_eq!(first["state"], original, "{e:#}");
        assert_eq!(count(&first["attempts"]), attempts, "{e:#}");
        for job in jobs {
            let d = deliveries
                .iter()
                .find(|d| d["recovery"] == *job)
                .unwrap_or_else(|| panic!("no delivery of {job}: {e:#}"));
            assert_eq!(d["origin"], "replay", "{e:#}");
            assert_eq!(d["state"], "delivered", "{e:#}");
            assert_eq!(count(&d["attempts"]), 1, "{e:#}");
        }
        let recorded = e["attempts"].as_array().unwrap().len() as u64;
        assert_eq!(recorded, attempts + jobs.len() as u64, "{e:#}");
    }
}

/// More events than a replay reads in one page.
const LOST: usize = replay::PAGE + 50;

async fn lost_then_replayed(backend: Backend) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let (server, _, db) = server_on(backend, &handler.url(), "").await;
    let admin = Admin::of(&server);
    let ids = ingest(&server, &names("lost", LOST)).await;
    assert_eq!(handler.wait_for(LOST, PATIENCE).await.len(), LOST);
    admin.drained("maelys-kustomer").await;
    server.clock.advance(Duration::from_secs(60));

    let dry = admin.run(replay(&server, "delivered", true, false)).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    let todo = &dry["report"]["todo"];
    assert_eq!(count(&todo["total"]), LOST as u64, "{dry:#}");
    let half = LOST as u64 / 2;
    assert_eq!(
        todo["by_channel"],
        json!({"chat": LOST as u64 - half, "email": half})
    );
    assert_eq!(
        todo["by_event_type"],
        json!({"kustomer.message.create": LOST})
    );
    assert_eq!(count(&dry["report"]["done"]), 0);

    let real = admin.run(replay(&server, "delivered", false, false)).await;
    assert_eq!(real["state"], "succeeded", "{real:#}");
    assert_eq!(
        real["report"]["todo"], *todo,
        "the dry run counted otherwise"
    );
    assert_eq!(count(&real["report"]["done"]), LOST as u64, "{real:#}");
    handler.wait_for(2 * LOST, PATIENCE).await;
    let again: BTreeSet<String> = replayed(&handler).into_iter().collect();
    assert_eq!(again, ids.iter().cloned().collect(), "same webhook-ids");
    // The handler gets the very body it got the first time.
    let received = handler.received();
    for id in &ids {
        let bodies: BTreeSet<&[u8]> = received
            .iter()
            .filter(|c| &c.id == id)
            .map(|c| c.body.as_ref())
            .collect();
        assert_eq!(bodies.len(), 1, "{id} was replayed with another body");
    }
    let real_id = real["id"].as_str().unwrap();
    // Received is not yet recorded: the history is read once no delivery is left in flight.
    admin.drained("maelys-kustomer").await;
    check_history(&admin, &ids, "delivered", 1, &[real_id]).await;

    // The same replay again: nothing to deliver, everything already done by the first; its
    // dry run says so first.
    let dry = admin.run(replay(&server, "delivered", true, false)).await;
    let second = admin.run(replay(&server, "delivered", false, false)).await;
    assert_eq!(second["state"], "succeeded", "{second:#}");
    for k in ["todo", "already_done"] {
        assert_eq!(dry["report"][k], second["report"][k], "{k}: {dry:#}");
    }
    assert_eq!(count(&second["report"]["done"]), 0, "{second:#}");
    assert_eq!(
        count(&second["report"]["already_done"]),
        LOST as u64,
        "{second:#}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replayed(&handler).len(),
        LOST,
        "a second run delivered again"
    );

    // `force` delivers again.
    let forced = admin.run(replay(&server, "delivered", false, true)).await;
    assert_eq!(count(&forced["report"]["done"]), LOST as u64, "{forced:#}");
    handler.wait_for(3 * LOST, PATIENCE).await;
    assert_eq!(replayed(&handler).len(), 2 * LOST);
    let forced_id = forced["id"].as_str().unwrap();
    admin.drained("maelys-kustomer").await;
    check_history(&admin, &ids, "delivered", 1, &[real_id, forced_id]).await;
    admin.audit("maelys-kustomer", &["handler"]).await;
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replay_delivers_lost_events_again_once_per_job_and_again_with_force() {
    lost_then_replayed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay_delivers_lost_events_again_once_per_job_and_again_with_force() {
    lost_then_replayed(Backend::postgres().await).await;
}

async fn dead_then_replayed(backend: Backend) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(500));
    let extra = "max_attempts = 2\nretry = [\"1s\"]";
    let (server, _, db) = server_on(backend, &handler.url(), extra).await;
    let admin = Admin::of(&server);
    // One event delivered, four that fail until they are dead.
    handler.script([Reply::Status(200)]);
    let fine = ingest(&server, &names("fine", 1)).await;
    wait_delivery(&server, &fine[0], "delivered", 1).await;
    let ids = ingest(&server, &names("doomed", 4)).await;
    for id in &ids {
        wait_delivery(&server, id, "retrying", 1).await;
    }
    server.clock.advance(Duration::from_secs(2));
    for id in &ids {
        wait_delivery(&server, id, "dead", 2).await;
    }
    // The handler is fixed.
    handler.set_default(Reply::Status(200));
    server.clock.advance(Duration::from_secs(60));

    let dry = admin.run(replay(&server, "dead", true, false)).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    assert_eq!(count(&dry["report"]["todo"]["total"]), 4, "{dry:#}");
    let real = admin.run(replay(&server, "dead", false, false)).await;
    assert_eq!(real["state"], "succeeded", "{real:#}");
    assert_eq!(real["report"]["todo"], dry["report"]["todo"]);
    assert_eq!(count(&real["report"]["done"]), 4, "{real:#}");
    handler.wait_for(1 + 8 + 4, PATIENCE).await;
    let again: BTreeSet<String> = replayed(&handler).into_iter().collect();
    assert_eq!(again, ids.iter().cloned().collect());
    admin.drained("maelys-kustomer").await;
    check_history(&admin, &ids, "dead", 2, &[real["id"].as_str().unwrap()]).await;

    let second = admin.run(replay(&server, "dead", false, false)).await;
    assert_eq!(count(&second["report"]["done"]), 0, "{second:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replayed(&handler).len(), 4, "a second run delivered again");

    // The dead letters stay dead (their history is the record of the outage); the queue is
    // empty.
    let (_, q) = admin.get("/api/v1/queue?source=maelys-kustomer").await;
    assert_eq!(count(&q["data"][0]["dead"]), 4, "{q:#}");
    admin.audit("maelys-kustomer", &["handler"]).await;
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replay_of_dead_letters_after_a_fix_reaches_the_handler() {
    dead_then_replayed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay_of_dead_letters_after_a_fix_reaches_the_handler() {
    dead_then_replayed(Backend::postgres().await).await;
}
