//! Requeue: deliveries that are stuck get a fresh pending state. A destination removed from the
//! source's route (the server restarted with a configuration routing to another one): its
//! deliveries are closed and the events re-routed by the current configuration, reaching the
//! new destination. A stale in-flight lease, made by SQL on the SQLite file. Retrying
//! deliveries, when asked (`include_retrying`). A second run changes nothing.

use std::sync::Arc;
use std::time::Duration;

use intake_core::clock::Clock;
use intake_core::Timestamp;
use intake_testkit::{CaptureHandler, Reply, TestServer, DESTINATION_SECRET};
use serde_json::{json, Value};

use crate::recovery::{count, Backend};
use crate::recovery_support::{finish, ingest, server_on, stale_lease, Admin};
use crate::{wait_delivery, PATIENCE};

fn now(server: &TestServer) -> Timestamp {
    Timestamp(server.clock_now_secs() * 1000)
}

/// A requeue of the last hour of `maelys-kustomer`, up to the server's now.
fn requeue(server: &TestServer, dry_run: bool, include_retrying: bool) -> Value {
    json!({
        "kind": "requeue", "source": "maelys-kustomer",
        "from": "2026-11-28T09:00:00Z", "to": now(server).to_rfc3339(),
        "dry_run": dry_run, "include_retrying": include_retrying,
    })
}

/// Moves the clock forward in steps, giving the monitor real time to evaluate, until `rule`
/// fires; its alerts then.
async fn step_until_firing(server: &TestServer, admin: &Admin, rule: &str) -> Vec<Value> {
    for _ in 0..120 {
        let (_, alerts) = admin.get("/api/v1/alerts").await;
        let firing: Vec<Value> = alerts["firing"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == rule)
            .cloned()
            .collect();
        if !firing.is_empty() {
            return firing;
        }
        server.clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{rule} never fired");
}

/// `stale_leases, retrying_reset, rerouted, created` of a requeue's report.
fn changes(job: &Value) -> [u64; 4] {
    let q = &job["report"]["requeue"];
    ["stale_leases", "retrying_reset", "rerouted", "created"].map(|k| count(&q[k]))
}

async fn reroute(backend: Backend) {
    let old = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    old.set_default(Reply::Status(500));
    let new = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let extra = format!(
        "retry = [\"1h\"]\n\n[[destinations]]\nid = \"backup\"\nurl = \"{}\"\n\
         secret = \"{DESTINATION_SECRET}\"\nmax_attempts = 1\n",
        new.url()
    );
    let (server, text, db) = server_on(backend, &old.url(), &extra).await;
    let ids = ingest(&server, "stuck", 5).await;
    for id in &ids {
        wait_delivery(&server, id, "retrying", 1).await;
    }
    // The operator routes the source to `backup` instead, and restarts.
    let rerouted = text.replacen(
        "destinations = [\"handler\"]",
        "destinations = [\"backup\"]",
        1,
    );
    let server = server.restart_with(&rerouted).await.unwrap();
    server.clock.advance(Duration::from_secs(60));
    let admin = Admin::of(&server);

    let dry = admin.run(requeue(&server, true, false)).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    assert_eq!(changes(&dry), [0, 0, 5, 5], "{dry:#}");
    assert_eq!(count(&dry["report"]["done"]), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(new.received().is_empty(), "a dry run delivered");

    let real = admin.run(requeue(&server, false, false)).await;
    assert_eq!(real["state"], "succeeded", "{real:#}");
    assert_eq!(changes(&real), changes(&dry), "{real:#}");
    assert_eq!(count(&real["report"]["done"]), 10, "{real:#}");
    let got = new.wait_for(5, PATIENCE).await;
    // Received is not yet recorded: the states below are read once the queue has drained.
    admin.drained("maelys-kustomer").await;
    let mut got: Vec<String> = got.into_iter().map(|c| c.id).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        got, want,
        "the new destination gets each event, same webhook-id"
    );
    let job = real["id"].as_str().unwrap();
    for id in &ids {
        let (_, e) = admin.get(&format!("/api/v1/events/{id}")).await;
        let to = |d: &str| {
            e["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["destination"] == d)
                .cloned()
                .unwrap_or_else(|| panic!("no delivery to {d}: {e:#}"))
        };
        let closed = to("handler");
        assert_eq!(closed["state"], "dead", "{e:#}");
        assert!(
            closed["last_error"].as_str().unwrap_or("").contains(job),
            "{e:#}"
        );
        let routed = to("backup");
        assert_eq!(routed["recovery"], job, "{e:#}");
        assert_eq!(routed["state"], "delivered", "{e:#}");
    }

    let again = admin.run(requeue(&server, false, false)).await;
    assert_eq!(changes(&again), [0; 4], "{again:#}");
    assert_eq!(count(&again["report"]["done"]), 0, "{again:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(new.received().len(), 5, "a second run delivered again");
    assert!(
        old.received().len() == 5,
        "the old destination was tried again"
    );
    admin.audit("maelys-kustomer", &["backup"]).await;

    // A re-route is the operator's decision, not a delivery that exhausted its retries: the
    // monitor does not count it as a dead letter. One real dead letter follows (`backup`
    // tries once), and `dead_letters` fires for it alone.
    new.script([Reply::Status(500)]);
    let dead = ingest(&server, "dies", 1).await;
    wait_delivery(&server, &dead[0], "dead", 1).await;
    let fired = step_until_firing(&server, &admin, "dead_letters").await;
    assert_eq!(
        fired.len(),
        1,
        "a re-route paged as dead letters: {fired:#?}"
    );
    assert_eq!(fired[0]["labels"]["destination"], "backup", "{fired:#?}");
    assert_eq!(fired[0]["value"], 1.0, "{fired:#?}");
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requeue_reroutes_deliveries_of_a_destination_removed_from_the_route() {
    reroute(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_requeue_reroutes_deliveries_of_a_destination_removed_from_the_route() {
    reroute(Backend::postgres().await).await;
}

async fn stale_and_retrying(backend: Backend) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(500));
    let (server, _, db) = server_on(backend, &handler.url(), "retry = [\"1h\"]").await;
    let ids = ingest(&server, "slow", 4).await;
    for id in &ids {
        wait_delivery(&server, id, "retrying", 1).await;
    }
    handler.set_default(Reply::Status(200));

    // A lease left by a node that is gone, written while the server is stopped. Its end has
    // passed, so the restarted node's dispatcher claims it as due work at once (with SQLite,
    // opening the store even gives back every lease in the file: only this process may hold
    // it): the delivery goes out before any requeue, and a requeue finds nothing stale.
    let TestServer {
        server: running,
        clock,
        dir,
        http,
        config,
    } = server;
    running.shutdown().await.unwrap();
    let ended = clock.now().minus(Duration::from_secs(60));
    stale_lease(dir.path(), db.as_ref(), &ids[0], ended).await;
    let server = TestServer {
        server: intake_server::Server::new(config.clone(), Arc::new(clock.clone()))
            .start()
            .await
            .unwrap(),
        clock,
        dir,
        http,
        config,
    };
    let admin = Admin::of(&server);
    wait_delivery(&server, &ids[0], "delivered", 2).await;
    server.clock.advance(Duration::from_secs(60));
    let none = admin.run(requeue(&server, false, false)).await;
    assert_eq!(none["state"], "succeeded", "{none:#}");
    assert_eq!(changes(&none), [0; 4], "{none:#}");
    assert_eq!(count(&none["report"]["seen"]), 4, "{none:#}");

    // A lease that ended while this process runs, and whose dispatcher is not looking (its
    // clock stands still, nothing woke it): the requeue makes it pending and wakes it.
    stale_lease(
        server.dir.path(),
        db.as_ref(),
        &ids[1],
        now(&server).minus(Duration::from_secs(60)),
    )
    .await;
    let dry = admin.run(requeue(&server, true, false)).await;
    assert_eq!(changes(&dry), [1, 0, 0, 0], "{dry:#}");
    let stale = admin.run(requeue(&server, false, false)).await;
    assert_eq!(stale["state"], "succeeded", "{stale:#}");
    assert_eq!(changes(&stale), [1, 0, 0, 0], "{stale:#}");
    assert_eq!(count(&stale["report"]["done"]), 1, "{stale:#}");
    wait_delivery(&server, &ids[1], "delivered", 2).await;

    // The other two wait an hour for their next attempt; `include_retrying` starts them now.
    let dry = admin.run(requeue(&server, true, true)).await;
    assert_eq!(changes(&dry), [0, 2, 0, 0], "{dry:#}");
    let reset = admin.run(requeue(&server, false, true)).await;
    assert_eq!(changes(&reset), [0, 2, 0, 0], "{reset:#}");
    for id in &ids[2..] {
        // Attempts count from zero again; the failed one stays in the history.
        wait_delivery(&server, id, "delivered", 1).await;
        let (_, e) = admin.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!(e["attempts"].as_array().unwrap().len(), 2, "{e:#}");
    }

    let again = admin.run(requeue(&server, false, true)).await;
    assert_eq!(changes(&again), [0; 4], "{again:#}");
    assert_eq!(count(&again["report"]["done"]), 0, "{again:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handler.received().len(),
        4 + 4,
        "{:#?}",
        handler.received().len()
    );
    admin.audit("maelys-kustomer", &["handler"]).await;
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requeue_restarts_stale_leases_and_retrying_deliveries_when_asked() {
    stale_and_retrying(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_requeue_restarts_stale_leases_and_retrying_deliveries_when_asked() {
    stale_and_retrying(Backend::postgres().await).await;
}
