//! The monitor inside a running server, on its manual clock: a handler that fails makes the
//! queue stall, `queue_stalled` fires for the tenant whose override says so (visible in the
//! alerts API, the metrics and the transition log, with the numbers behind it), and resolves
//! once the handler recovers.

use std::time::Duration;

use intake_testkit::{
    config_toml, kustomer, CaptureHandler, Reply, TestServer, ADMIN_TOKEN, DESTINATION_SECRET,
    SOURCE_SECRET,
};
use serde_json::Value;

/// Moves the clock forward in small steps, giving the server's tasks real time to run, until
/// `done` holds for the alerts API (or the simulated budget runs out).
async fn step_until(
    server: &TestServer,
    simulated: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let step = Duration::from_secs(5);
    let mut elapsed = Duration::ZERO;
    loop {
        let (status, alerts) = server.api("/api/v1/alerts", ADMIN_TOKEN).await.unwrap();
        assert_eq!(status, 200, "{alerts}");
        if done(&alerts) {
            return alerts;
        }
        assert!(
            elapsed < simulated,
            "not reached after {simulated:?} of simulated time: {alerts}"
        );
        server.clock.advance(step);
        elapsed += step;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn firing<'a>(alerts: &'a Value, rule: &str, tenant: &str) -> Option<&'a Value> {
    alerts["firing"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == rule && a["labels"]["tenant"] == tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_queue_fires_queue_stalled_and_resolves_after_recovery() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_toml(dir.path(), &handler.url(), "");
    // A tighter threshold for one tenant only; the duty lease outlives the clock's jumps.
    text.push_str(
        r#"
[[rules]]
rule = "queue_stalled"
tenant = "maelys"
threshold = "2m"

[cluster]
duty_lease = "24h"
"#,
    );
    let server = TestServer::start_with(dir, &text).await.unwrap();
    for (source, id) in [
        ("maelys-kustomer", "stall-1"),
        ("other-kustomer", "stall-2"),
    ] {
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

    let alerts = step_until(&server, Duration::from_secs(15 * 60), |a| {
        firing(a, "queue_stalled", "maelys").is_some()
    })
    .await;
    let alert = firing(&alerts, "queue_stalled", "maelys").unwrap();
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["labels"]["source"], "maelys-kustomer");
    assert_eq!(alert["labels"]["destination"], "handler");
    let reason = alert["reason"].as_str().unwrap();
    assert!(reason.contains("2m") || reason.contains("120"), "{reason}");
    assert!(
        alert["links"]["events"]
            .as_str()
            .unwrap()
            .contains("/api/v1/events?tenant=maelys&source=maelys-kustomer"),
        "{alert}"
    );
    // The other tenant keeps the default threshold (5 minutes): not firing yet.
    assert!(
        firing(&alerts, "queue_stalled", "other").is_none(),
        "{alerts}"
    );

    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"intake_alerts_firing{rule="queue_stalled",severity="critical"} 1"#)
            || metrics
                .contains(r#"intake_alerts_firing{rule="queue_stalled",severity="critical"} 2"#),
        "{metrics}"
    );

    // A tenant token sees its own alerts only.
    let (_, own) = server.api("/api/v1/alerts", "other-token").await.unwrap();
    assert!(firing(&own, "queue_stalled", "maelys").is_none(), "{own}");

    // The handler recovers: the retries deliver, the queue empties, the alerts resolve.
    handler.set_default(Reply::Status(200));
    let resolved = step_until(&server, Duration::from_secs(60 * 60), |a| {
        a["firing"].as_array().is_some_and(|f| f.is_empty())
            && a["recent"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|t| t["rule"] == "queue_stalled" && t["state"] == "resolved")
            })
    })
    .await;
    let log: Vec<(&str, &str)> = resolved["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tenant"] == "maelys" && t["rule"] == "queue_stalled")
        .map(|t| {
            (
                t["state"].as_str().unwrap(),
                t["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        log,
        [("resolved", "critical"), ("firing", "critical")],
        "{resolved}"
    );
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"intake_alerts_firing{rule="queue_stalled",severity="critical"} 0"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_list_every_built_in_rule_with_defaults_and_overrides() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_toml(dir.path(), &handler.url(), "");
    text.push_str(
        "\n[[rules]]\nrule = \"queue_stalled\"\ntenant = \"maelys\"\nthreshold = \"2m\"\n",
    );
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let (status, rules) = server.api("/api/v1/rules", ADMIN_TOKEN).await.unwrap();
    assert_eq!(status, 200, "{rules}");
    let data = rules["data"].as_array().unwrap();
    assert_eq!(data.len(), 15);
    let failed = data.iter().find(|r| r["rule"] == "drill_failed").unwrap();
    assert_eq!(failed["evaluated"], true);
    assert_eq!(failed["default_severity"], "critical");
    let stalled = data.iter().find(|r| r["rule"] == "queue_stalled").unwrap();
    assert_eq!(stalled["evaluated"], true);
    assert_eq!(stalled["default_severity"], "critical");
    assert_eq!(stalled["defaults"]["max_age"], 300);
    assert_eq!(stalled["overrides"].as_array().unwrap().len(), 1);
    let drop = data.iter().find(|r| r["rule"] == "inbound_drop").unwrap();
    assert_eq!(drop["default_severity"], "warning");
    // The other tenant does not see maelys' override.
    let (_, theirs) = server.api("/api/v1/rules", "other-token").await.unwrap();
    let stalled = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "queue_stalled")
        .unwrap();
    assert!(stalled["overrides"].as_array().unwrap().is_empty());
}
