//! The PostgreSQL schema: numbered migrations, run when the store opens under an advisory lock
//! (nodes starting together migrate once); `intake_migrations` records which have run, by
//! number. The numbers are explicit, not positions in the list: work built in parallel takes
//! its numbers ahead of time (the incidents' 0007 before the drills' 0006), so the list may
//! have a gap, and a migration merged later with a lower number still runs.

use std::collections::HashSet;

use intake_core::Timestamp;
use tokio_postgres::Client;

/// The schema, as numbered migrations, in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "events_and_queue",
        include_str!("../../migrations/postgres/0001_events_and_queue.sql"),
    ),
    (
        2,
        "counters_hourly_state_alerts",
        include_str!("../../migrations/postgres/0002_counters_hourly_state_alerts.sql"),
    ),
    (
        3,
        "notifications_silences",
        include_str!("../../migrations/postgres/0003_notifications_silences.sql"),
    ),
    (
        4,
        "api_tokens",
        include_str!("../../migrations/postgres/0004_api_tokens.sql"),
    ),
    (
        5,
        "recoveries",
        include_str!("../../migrations/postgres/0005_recoveries.sql"),
    ),
    (
        6,
        "drills",
        include_str!("../../migrations/postgres/0006_drills.sql"),
    ),
    (
        7,
        "incidents",
        include_str!("../../migrations/postgres/0007_incidents.sql"),
    ),
    (
        8,
        "completion_receipts",
        include_str!("../../migrations/postgres/0008_completion_receipts.sql"),
    ),
    (
        9,
        "incident_drill",
        include_str!("../../migrations/postgres/0009_incident_drill.sql"),
    ),
    (
        11,
        "success_on_delivery",
        include_str!("../../migrations/postgres/0011_success_on_delivery.sql"),
    ),
];

/// The advisory lock key under which migrations run ("intake" in ASCII).
const MIGRATION_LOCK: i64 = 0x696e_7461_6b65;

/// Runs the migrations the database lacks, each in a transaction of its own.
pub(super) async fn migrate(client: &mut Client) -> std::result::Result<(), tokio_postgres::Error> {
    // Session-level advisory lock: a second node starting at the same moment waits here, then
    // finds every version recorded and applies nothing.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS intake_migrations (
                    version    INTEGER PRIMARY KEY,
                    name       TEXT NOT NULL,
                    applied_at BIGINT NOT NULL
                 )",
            )
            .await?;
        let applied: HashSet<i32> = client
            .query("SELECT version FROM intake_migrations", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut ran = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            let version = *version;
            if applied.contains(&version) {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            // When it was applied is a record for people, not a decision: wall-clock time.
            let now = Timestamp::from_system_time(std::time::SystemTime::now()).as_millis();
            tx.execute(
                "INSERT INTO intake_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&version, name, &now],
            )
            .await?;
            tx.commit().await?;
            ran.push(version);
        }
        // One line for all of them: a new database runs every migration at its first start.
        if !ran.is_empty() {
            tracing::info!(migrations = ?ran, "applied PostgreSQL migrations");
        }
        Ok(())
    }
    .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result.and(unlocked.map(|_| ()))
}
