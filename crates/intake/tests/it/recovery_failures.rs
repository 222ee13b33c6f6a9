//! Recovery jobs that do not go to plan: a running job cancelled through the API and through
//! `intake recover cancel` (and a queued one, which ends at once); a system of record that
//! refuses the API token, which fails the job with a clear error (and `intake recover` exits
//! non-zero); and one that is down, which is retried as a passing failure until it comes back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use intake_fake_sors::kustomer::KustomerLimits;
use intake_fake_sors::{FakeSor, Served};
use intake_testkit::{ADMIN_TOKEN, SOURCE_SECRET};
use serde_json::{json, Value};

use crate::crash::free_port;
use crate::recovery::{count, Backend, Scenario};
use crate::recovery_support::intake_cli;

/// A source like `maelys-kustomer` whose API is `api`, with `token`.
fn source(id: &str, api: &str, token: &str) -> String {
    format!(
        "\n[[sources]]\nid = \"{id}\"\ntenant = \"maelys\"\nkind = \"kustomer\"\n\
         secrets = [\"{SOURCE_SECRET}\"]\ndestinations = [\"handler\"]\n\
         api = {{ base_url = \"{api}\", token = \"{token}\" }}\n"
    )
}

fn backfill(s: &Scenario, source: &str) -> Value {
    json!({
        "kind": "backfill", "source": source,
        "from": s.lost.0.to_rfc3339(), "to": s.lost.1.to_rfc3339(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_and_queued_jobs_are_cancelled_through_the_api_and_the_cli() {
    // The fake allows 20 requests a minute and the clock stands still: a job that needs more
    // waits for the next minute for ever, running.
    let limits = KustomerLimits {
        per_minute: 20,
        ..KustomerLimits::default()
    };
    let s = Scenario::start(Backend::Sqlite, 51, 6, (60, 300), limits).await;
    let running = |j: &Value| j["state"] == "running";
    let first = s.admin.create(backfill(&s, "maelys-kustomer")).await;
    s.admin.wait_job(&first, "started", running).await;
    // A job asked to run concurrently runs beside it (a replay of what was received).
    let mut beside = backfill(&s, "maelys-kustomer");
    beside["kind"] = json!("replay");
    beside["to"] = json!(intake_core::Timestamp(s.server.clock_now_secs() * 1000).to_rfc3339());
    beside["from"] = json!("2026-11-28T09:00:00Z");
    beside["concurrent"] = json!(true);
    let beside = s.admin.create(beside).await;
    let beside = s
        .admin
        .wait_job(&beside, "ran beside the backfill", |j| {
            crate::recovery_support::is_final(j)
        })
        .await;
    assert_eq!(beside["state"], "succeeded", "{beside:#}");
    assert_eq!(s.admin.job(&first).await["state"], "running");
    // One job at a time per source otherwise: the next one waits, queued, and a cancellation
    // ends it at once.
    let queued = s.admin.create(backfill(&s, "maelys-kustomer")).await;
    let (status, job) = s
        .admin
        .post(&format!("/api/v1/recoveries/{queued}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{job:#}");
    assert_eq!(job["state"], "cancelled", "{job:#}");

    let (status, job) = s
        .admin
        .post(&format!("/api/v1/recoveries/{first}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{job:#}");
    assert_eq!(job["cancel_requested"], true, "{job:#}");
    let job = s.admin.wait_final(&first).await;
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert!(!job["finished_at"].is_null(), "{job:#}");
    assert_eq!(count(&job["report"]["done"]), 0, "{job:#}");

    // The same through the command line.
    let second = s.admin.create(backfill(&s, "maelys-kustomer")).await;
    s.admin.wait_job(&second, "started", running).await;
    let url = s.server.url();
    let args = [
        "recover",
        "cancel",
        &second,
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
    ];
    let run = intake_cli(&args).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains(&format!("cancellation of {second} requested")),
        "{run:?}"
    );
    let job = s.admin.wait_final(&second).await;
    assert_eq!(job["state"], "cancelled", "{job:#}");

    // A job that ended has nothing to cancel: 409, and a non-zero exit that says so.
    let (status, problem) = s
        .admin
        .post(&format!("/api/v1/recoveries/{second}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{problem:#}");
    assert_eq!(problem["type"], "urn:intake:problem:recovery-finished");
    let run = intake_cli(&args).await;
    assert!(run.code.is_some_and(|c| c != 0), "{run:?}");
    assert!(run.stderr.contains("already ended"), "{run:?}");
    assert!(s.received("backfill").is_empty());
    s.admin.audit("maelys-kustomer", &["handler"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_api_token_fails_the_job_with_a_clear_error_and_a_non_zero_exit() {
    let extra = source("maelys-wrong-key", "{API}", "not-the-key");
    let s = Scenario::start_with(
        Backend::Sqlite,
        52,
        4,
        (60, 180),
        KustomerLimits::default(),
        &extra,
    )
    .await;
    let job = s.run(backfill(&s, "maelys-wrong-key")).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or("");
    assert!(
        error.contains("401") && error.contains("api.token"),
        "{job:#}"
    );
    assert_eq!(count(&job["report"]["transient_failures"]), 0, "{job:#}");
    assert!(s.fake.log.all().iter().all(|l| l.starts_with("401 ")));

    let url = s.server.url();
    let (from, to) = (s.lost.0.to_rfc3339(), s.lost.1.to_rfc3339());
    let run = intake_cli(&[
        "recover",
        "backfill",
        "--source",
        "maelys-wrong-key",
        "--from",
        &from,
        "--to",
        &to,
        "--yes",
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
    ])
    .await;
    run.assert_code(1);
    assert!(run.stdout.contains("failed"), "{run:?}");
    assert!(run.stdout.contains("401"), "{run:?}");
    let id = job["id"].as_str().unwrap();
    let show = intake_cli(&["recover", "show", id, "--url", &url, "--token", ADMIN_TOKEN]).await;
    show.assert_code(1);
    assert!(show.stdout.contains("api.token"), "{show:?}");
    assert!(s.received("backfill").is_empty());
    s.admin.audit("maelys-kustomer", &["handler"]).await;
    s.admin.audit("maelys-wrong-key", &["handler"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_of_record_that_is_down_is_waited_out_until_it_comes_back() {
    let port = free_port();
    let down: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The clock below runs ~200 times faster than real time: the duties' leases must outlive
    // a renewal that a loaded machine makes late, or the recovery duty stops and resumes the
    // job, which then counts its re-read page as already received.
    let extra = source(
        "maelys-down",
        &format!("http://{down}"),
        crate::recovery::API_KEY,
    ) + "\n[cluster]\nduty_lease = \"24h\"\n";
    let s = Scenario::start_with(
        Backend::Sqlite,
        53,
        4,
        (60, 180),
        KustomerLimits::default(),
        &extra,
    )
    .await;
    let expected = s.reproducible();
    // The clock moves a second every few milliseconds: the client's back-off and the job's
    // pauses pass, in virtual time.
    let stop = Arc::new(AtomicBool::new(false));
    let ticking = stop.clone();
    let clock = s.server.clock.clone();
    tokio::spawn(async move {
        while !ticking.load(Ordering::SeqCst) {
            clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let id = s.admin.create(backfill(&s, "maelys-down")).await;
    let waiting = s
        .admin
        .wait_job(&id, "retried", |j| {
            count(&j["report"]["transient_failures"]) >= 1 || crate::recovery_support::is_final(j)
        })
        .await;
    assert_eq!(waiting["state"], "running", "{waiting:#}");
    assert!(waiting["error"].is_null(), "{waiting:#}");

    // The system of record comes back at its address.
    let _api = Served::start_at(down, s.fake.clone().api()).await.unwrap();
    let job = s.admin.wait_final(&id).await;
    stop.store(true, Ordering::SeqCst);
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let r = &job["report"];
    assert!(count(&r["transient_failures"]) >= 1, "{r:#}");
    assert!(count(&r["sor"]["retried"]) >= 1, "{r:#}");
    // Nothing of this source was received: the window's events are all ingested.
    assert_eq!(count(&r["done"]), expected.len() as u64, "{r:#}");
    s.admin.audit("maelys-down", &["handler"]).await;
}
