//! End-to-end tests of intake: a real server on a loopback port, the real SQLite store in a
//! temporary directory, a capture handler playing the operator's handler, and (for crash and
//! shutdown tests) the real `intake` binary as a child process.
//!
//! Time-dependent behaviour (retry schedules) runs on the server's manual clock; waits for
//! asynchronous deliveries use generous patience bounds and assert on what arrived, never on
//! how fast.

mod admin;
mod alerts;
mod audit;
mod bounds;
mod canary;
mod cli;
mod cluster;
mod completion;
mod crash;
mod dashboard;
mod dashboard_browser;
mod demo;
mod disk_full;
mod drills;
mod failure;
mod flows;
mod incidents;
mod input_policy;
mod logs;
mod metrics;
mod migrate;
mod notify;
mod openapi;
mod pipeline;
mod reconcile;
mod recovery;
mod recovery_api;
mod recovery_cli;
mod recovery_failures;
mod recovery_kill;
mod recovery_limits;
mod recovery_replay;
mod recovery_requeue;
mod recovery_support;
mod retention;
mod retries;
mod secrets;
mod slow_clients;
mod tokens;

use std::time::Duration;

use intake_testkit::{TestServer, ADMIN_TOKEN};
use serde_json::Value;

/// How long a test waits for something that should happen promptly. A bound for liveness,
/// not a performance assertion: on a loaded CI machine things are slower, never absent.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls the event until its delivery has made `attempts` attempts and is in `state`.
pub async fn wait_delivery(server: &TestServer, id: &str, state: &str, attempts: u64) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, event) = server
            .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        let d = &event["deliveries"][0];
        if d["state"] == state && d["attempts"] == attempts {
            return event;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("delivery never reached {state} after {attempts} attempts: {event:#}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
