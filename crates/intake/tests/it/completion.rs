//! Completion receipts end to end: a handler on `completion = "receipt"` that answers 2xx and
//! never confirms its work fires `completion_stalled` within its deadline (on the manual
//! clock), and `replay --state received-not-completed` re-delivers exactly that work; forged,
//! stale and duplicate confirmations; the counters, `/api/v1/flows` and `/metrics` showing
//! received against completed; a canary on receipts failing for a handler that drops work.

use std::time::Duration;

use intake_core::signature::SigningKey;
use intake_core::Timestamp;
use intake_testkit::{
    config_toml, kustomer, with_canaries, CaptureHandler, Captured, TestServer, ADMIN_TOKEN,
    DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::{json, Value};

use crate::recovery::{count, Backend};
use crate::recovery_support::{finish, ingest, server_on, Admin};
use crate::{wait_delivery, PATIENCE};

/// The destination keys that put `handler` on receipts with a 10-minute deadline, and a duty
/// lease longer than the clock steps of these tests (the monitor keeps its duty while the
/// manual clock jumps).
const RECEIPTS: &str = "completion = \"receipt\"\ncompletion_deadline = \"10m\"\n\n\
                        [cluster]\nduty_lease = \"24h\"\n";

/// The handler's requests of the tenant's own (canaries left out), once `n` arrived.
async fn arrived(handler: &CaptureHandler, n: usize) -> Vec<Captured> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got: Vec<Captured> = handler
            .received()
            .into_iter()
            .filter(|c| !c.is_canary())
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A confirmation as a handler without a token sends it: a Standard Webhooks message whose id
/// is the delivery id, signed with the destination's secret at `ts` (unix seconds).
async fn confirm_signed(
    server: &TestServer,
    path: &str,
    msg_id: &str,
    ts: i64,
    secret: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let key = SigningKey::from_secret(secret).unwrap();
    let mut req = server
        .http
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", key.sign(msg_id, ts, body.as_bytes()));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_string()).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn confirm(server: &TestServer, delivery: &str, body: &str) -> (u16, Value) {
    let path = format!("/api/v1/deliveries/{delivery}/complete");
    let now = server.clock_now_secs();
    confirm_signed(server, &path, delivery, now, DESTINATION_SECRET, body, &[]).await
}

/// Steps the clock by `step` (giving the monitor real time to evaluate) until `rule` fires for
/// the tenant; its alert and the simulated time it took.
async fn step_until_firing(server: &TestServer, rule: &str, step: Duration) -> (Value, Duration) {
    let mut elapsed = Duration::ZERO;
    for _ in 0..200 {
        let (_, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
        let firing = alerts["firing"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["rule"] == rule && a["labels"]["tenant"] == "maelys");
        if let Some(a) = firing {
            return (a.clone(), elapsed);
        }
        server.clock.advance(step);
        elapsed += step;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("{rule} never fired");
}

async fn dropped_work_is_detected_and_replayed(backend: Backend) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let (server, _, db) = server_on(backend, &handler.url(), RECEIPTS).await;
    let admin = Admin::of(&server);
    let ids = ingest(&server, "work", 5).await;
    for id in &ids {
        wait_delivery(&server, id, "delivered", 1).await;
    }
    let got = arrived(&handler, 5).await;
    // Every delivery names itself, so the handler can confirm it.
    let delivery_of = |event: &str| -> String {
        let c = got.iter().find(|c| c.id == event).expect("delivered");
        let d = c.header("intake-delivery-id");
        assert!(d.starts_with("dlv_"), "{d}");
        d.to_string()
    };
    // The handler finishes the work of two events, reports one failed, and drops two.
    assert_eq!(confirm(&server, &delivery_of(&ids[0]), "").await.0, 200);
    let (status, body) = confirm(&server, &delivery_of(&ids[1]), r#"{"outcome":"ok"}"#).await;
    assert_eq!(
        (status, &body["completion"]),
        (200, &json!("completed")),
        "{body}"
    );
    let failed = r#"{"outcome":"failed","detail":"CRM rejected the ticket"}"#;
    assert_eq!(confirm(&server, &delivery_of(&ids[2]), failed).await.0, 200);
    let (_, event) = server
        .api(&format!("/api/v1/events/{}", ids[2]), ADMIN_TOKEN)
        .await
        .unwrap();
    let d = &event["deliveries"][0];
    assert_eq!(
        (&d["state"], &d["completion"]),
        (&json!("delivered"), &json!("completion_failed"))
    );
    assert_eq!(d["completion_detail"], "CRM rejected the ticket");

    // Nothing is overdue before the deadline; then `completion_stalled` fires, naming the
    // tenant, the source and the oldest item.
    let received_at = Timestamp(server.clock_now_secs() * 1000);
    let (alert, took) =
        step_until_firing(&server, "completion_stalled", Duration::from_secs(30)).await;
    eprintln!("completion_stalled fired {took:?} (simulated) after the handler dropped the work");
    assert!(
        took >= Duration::from_secs(600),
        "fired before the deadline: {took:?}"
    );
    assert!(
        took <= Duration::from_secs(600 + 2 * 60 + 30),
        "late: {took:?}"
    );
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["labels"]["source"], "maelys-kustomer");
    assert_eq!(alert["labels"]["destination"], "handler");
    let reason = alert["reason"].as_str().unwrap();
    let dropped = [delivery_of(&ids[3]), delivery_of(&ids[4])];
    assert!(
        reason.starts_with("2 deliveries answered 2xx but not confirmed"),
        "{reason}"
    );
    assert!(
        dropped.iter().any(|d| reason.contains(d.as_str())),
        "{reason}"
    );
    let _ = received_at;

    // The replay of work received and never completed: exactly the two dropped events.
    let window = |dry_run: bool, state: &str| {
        json!({
            "kind": "replay", "source": "maelys-kustomer",
            "from": "2026-11-28T09:00:00Z",
            "to": Timestamp(server.clock_now_secs() * 1000).to_rfc3339(),
            "state": state, "dry_run": dry_run,
        })
    };
    let dry = admin.run(window(true, "received-not-completed")).await;
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    assert_eq!(count(&dry["report"]["todo"]["total"]), 2, "{dry:#}");
    let job = admin.run(window(false, "received-not-completed")).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let again = arrived(&handler, 7).await;
    let mut replayed: Vec<&str> = again[5..].iter().map(|c| c.id.as_str()).collect();
    replayed.sort();
    let mut want = vec![ids[3].as_str(), ids[4].as_str()];
    want.sort();
    assert_eq!(replayed, want);
    assert!(again[5..]
        .iter()
        .all(|c| c.header("intake-origin") == "replay"));
    // And the one whose business logic failed, by its own state.
    let failed_job = admin.run(window(true, "completion_failed")).await;
    assert_eq!(
        count(&failed_job["report"]["todo"]["total"]),
        1,
        "{failed_job:#}"
    );
    finish(server, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_acknowledges_and_drops_work_is_caught_and_its_work_replayed() {
    dropped_work_is_detected_and_replayed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_handler_that_acknowledges_and_drops_work_is_caught_and_replayed() {
    dropped_work_is_detected_and_replayed(Backend::postgres().await).await;
}

/// A server whose `handler` is on receipts, and whose `other` tenant's source goes to `plain`,
/// the same handler on `ack`.
async fn two_destinations(handler: &CaptureHandler) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let text = config_toml(dir.path(), &handler.url(), RECEIPTS);
    let marker = "id = \"other-kustomer\"";
    let (head, tail) = text.split_at(text.find(marker).unwrap());
    let tail = tail.replacen(
        "destinations = [\"handler\"]",
        "destinations = [\"plain\"]",
        1,
    );
    let text = format!(
        "{head}{tail}\n[[destinations]]\nid = \"plain\"\nurl = \"{}\"\nsecret = \"{DESTINATION_SECRET}\"\n",
        handler.url()
    );
    TestServer::start_with(dir, &text).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_duplicate_confirmations() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = two_destinations(&handler).await;
    let ids = ingest(&server, "c", 3).await;
    for id in &ids {
        wait_delivery(&server, id, "delivered", 1).await;
    }
    let got = arrived(&handler, 3).await;
    let dlv = |i: usize| {
        got.iter()
            .find(|c| c.id == ids[i])
            .unwrap()
            .header("intake-delivery-id")
            .to_string()
    };
    let (d0, d1, d2) = (dlv(0), dlv(1), dlv(2));
    let path = format!("/api/v1/deliveries/{d0}/complete");
    let now = server.clock_now_secs();
    let problem = |v: &Value| v["type"].as_str().unwrap_or("").to_string();

    // Forged: another secret; signed for another delivery; a tampered body; no credentials.
    let (s, b) = confirm_signed(&server, &path, &d0, now, "whsec_b3RoZXItc2VjcmV0", "", &[]).await;
    assert_eq!(
        (s, problem(&b)),
        (401, "urn:intake:problem:bad-receipt-signature".into()),
        "{b}"
    );
    let (s, _) = confirm_signed(&server, &path, &d1, now, DESTINATION_SECRET, "", &[]).await;
    assert_eq!(s, 401);
    let (s, b) = server
        .http
        .post(format!("{}{path}", server.url()))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(s, 401, "{:?}", b.text().await);
    // Stale: signed six minutes ago (or ahead).
    for ts in [now - 360, now + 360] {
        let (s, b) = confirm_signed(&server, &path, &d0, ts, DESTINATION_SECRET, "", &[]).await;
        assert_eq!(
            (s, problem(&b)),
            (401, "urn:intake:problem:stale-receipt".into()),
            "{b}"
        );
    }
    // Refused without a change: nothing is confirmed yet.
    let (_, event) = server
        .api(&format!("/api/v1/events/{}", ids[0]), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(event["deliveries"][0]["completion"], "received");

    // A bad outcome, an unknown delivery.
    let (s, b) = confirm(&server, &d0, r#"{"outcome":"done"}"#).await;
    assert_eq!(
        (s, problem(&b)),
        (422, "urn:intake:problem:invalid-outcome".into()),
        "{b}"
    );
    let (s, b) = confirm(&server, "dlv_01J00000000000000000000000", "").await;
    assert_eq!(
        (s, problem(&b)),
        (404, "urn:intake:problem:no-such-delivery".into()),
        "{b}"
    );

    // The store cannot commit: 503 with Retry-After, nothing recorded; the handler retries.
    server
        .server
        .store
        .inject_fault(Some(intake_store::StoreFault::RejectWrites))
        .await
        .unwrap();
    let (s, b) = confirm(&server, &d0, "").await;
    assert_eq!(
        (s, problem(&b)),
        (503, "urn:intake:problem:store-unavailable".into()),
        "{b}"
    );
    server.server.store.inject_fault(None).await.unwrap();
    let (_, event) = server
        .api(&format!("/api/v1/events/{}", ids[0]), ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(event["deliveries"][0]["completion"], "received");

    // Confirming twice is harmless: the first outcome stands.
    let (s, b) = confirm(&server, &d0, "").await;
    assert_eq!(
        (s, &b["completion"], &b["duplicate"]),
        (200, &json!("completed"), &json!(false))
    );
    let (s, b) = confirm(&server, &d0, r#"{"outcome":"failed"}"#).await;
    assert_eq!(
        (s, &b["completion"], &b["duplicate"]),
        (200, &json!("completed"), &json!(true))
    );

    // Bearer tokens: another tenant's sees nothing; the tenant's own and the operator's may.
    let complete = |d: &str| format!("/api/v1/deliveries/{d}/complete");
    let post = |token: &'static str, d: String| {
        let server = &server;
        async move {
            server
                .api_send(reqwest::Method::POST, &complete(&d), token, Some(json!({})))
                .await
                .unwrap()
        }
    };
    assert_eq!(post("other-token", d1.clone()).await.0, 404);
    assert_eq!(post("maelys-token", d1.clone()).await.0, 200);

    // A batch, signed for its destination: each item answered on its own.
    let batch = json!({"items": [
        {"id": d2, "outcome": "failed", "detail": "timeout"},
        {"id": d1},
        {"id": "dlv_01J00000000000000000000000"},
        {"id": d2, "outcome": "maybe"},
    ]})
    .to_string();
    let (s, b) = confirm_signed(
        &server,
        "/api/v1/deliveries/complete",
        "batch-1",
        server.clock_now_secs(),
        DESTINATION_SECRET,
        &batch,
        &[("intake-destination", "handler")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let statuses: Vec<(u64, bool)> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                count(&r["status"]),
                r["duplicate"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![(200, false), (200, true), (404, false), (422, false)],
        "{b}"
    );

    // A destination on `ack` takes no receipts.
    let other = server
        .send_kustomer(
            "other-kustomer",
            &kustomer::message_create("o-1", "chat"),
            SOURCE_SECRET,
        )
        .await
        .unwrap();
    let other: Value = other.json().await.unwrap();
    let other_id = other["id"].as_str().unwrap();
    wait_delivery(&server, other_id, "delivered", 1).await;
    let all = arrived(&handler, 4).await;
    let plain = all
        .iter()
        .find(|c| c.id == other_id)
        .unwrap()
        .header("intake-delivery-id")
        .to_string();
    let (s, b) = server
        .api_send(reqwest::Method::POST, &complete(&plain), ADMIN_TOKEN, None)
        .await
        .unwrap();
    assert_eq!(
        (s, problem(&b)),
        (409, "urn:intake:problem:not-on-receipts".into()),
        "{b}"
    );
    let (_, event) = server
        .api(&format!("/api/v1/events/{other_id}"), ADMIN_TOKEN)
        .await
        .unwrap();
    assert!(event["deliveries"][0]["completion"].is_null(), "{event:#}");

    // Counted: flows show received against completed; /metrics has the family.
    server.clock.advance(Duration::from_secs(61));
    let (_, flows) = server
        .api("/api/v1/flows?source=maelys-kustomer", ADMIN_TOKEN)
        .await
        .unwrap();
    let work = &flows["data"][0]["work_last_hour"];
    assert_eq!(
        (
            count(&work["received"]),
            count(&work["completed"]),
            count(&work["completion_failed"])
        ),
        (3, 2, 1),
        "{flows:#}"
    );
    let (_, flows) = server
        .api("/api/v1/flows?source=other-kustomer", ADMIN_TOKEN)
        .await
        .unwrap();
    assert!(
        flows["data"][0].get("work_last_hour").is_none(),
        "{flows:#}"
    );
    let metrics = server.metrics().await.unwrap();
    let line = |outcome: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("intake_completions_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        (line("completed"), line("completion_failed")),
        (Some(2.0), Some(1.0)),
        "{metrics}"
    );
    assert!(metrics.contains("intake_completion_pending{"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_receipts_a_canary_fails_for_a_handler_that_drops_work() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = with_canaries(
        &config_toml(dir.path(), &handler.url(), RECEIPTS),
        "60s",
        "2m",
    );
    let server = TestServer::start_with(dir, &text).await.unwrap();
    // The handler answers every canary 2xx and never confirms one. The clock runs on only
    // once the last canary sent has reached it: on a loaded machine the dispatcher can lag the manual clock, and a canary not yet attempted
    // makes the check fail for that reason, not for the missing receipt.
    let mut took = Duration::ZERO;
    let mut sent = std::collections::BTreeSet::new();
    let alert = loop {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, all) = server.api("/api/v1/canaries", ADMIN_TOKEN).await.unwrap();
            let entry = all["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["source"] == "maelys-kustomer")
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(at) = entry["last_sent_at"].as_str() {
                sent.insert(at.to_string());
            }
            // Arrived, and its 2xx recorded (the canary's check reads the delivery).
            let mut arrived = 0;
            for c in handler
                .received()
                .iter()
                .filter(|c| c.is_canary() && c.header("intake-source") == "maelys-kustomer")
            {
                let (_, event) = server
                    .api(&format!("/api/v1/events/{}", c.id), ADMIN_TOKEN)
                    .await
                    .unwrap();
                if event["deliveries"][0]["state"] == "delivered" {
                    arrived += 1;
                }
            }
            if arrived >= sent.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{arrived} of {} canaries arrived: {entry:#}",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
        let firing = alerts["firing"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["rule"] == "canary_failed" && a["labels"]["tenant"] == "maelys");
        if let Some(a) = firing {
            break a.clone();
        }
        assert!(took < Duration::from_secs(600), "canary_failed never fired");
        server.clock.advance(Duration::from_secs(10));
        took += Duration::from_secs(10);
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    eprintln!("canary_failed fired {took:?} (simulated) after start for a handler that drops work");
    assert!(took <= Duration::from_secs(180), "{took:?}");
    assert!(
        handler.received().iter().any(Captured::is_canary),
        "canaries were answered 2xx"
    );
    let (_, canaries) = server.api("/api/v1/canaries", ADMIN_TOKEN).await.unwrap();
    let entry = canaries["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "maelys-kustomer")
        .unwrap();
    assert!(
        entry
            .to_string()
            .contains("completion receipt has not arrived"),
        "{entry:#}\n{alert:#}"
    );
}

/// The built-in demo handler confirms its work when its destination is on receipts: signed
/// with the destination's secret, through the confirmation route's own checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_handler_confirms_its_work_on_receipts() {
    let port = crate::crash::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = config_toml(
        dir.path(),
        &format!("http://127.0.0.1:{port}/demo/handler"),
        RECEIPTS,
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\ndemo_handler = true"),
    );
    let server = TestServer::start_with(dir, &config).await.unwrap();
    let ids = ingest(&server, "demo-receipt", 3).await;
    for id in &ids {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, event) = server
                .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
                .await
                .unwrap();
            let d = &event["deliveries"][0];
            if d["state"] == "delivered" && d["completion"] == "completed" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{event:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // What it received is listed as with acknowledgements.
    let listed: Value = server
        .http
        .get(format!("{}/demo/handler", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed:#}");
    server.server.shutdown().await.unwrap();
}
