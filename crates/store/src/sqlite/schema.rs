//! The SQLite schema: numbered migrations, run when the store opens. `PRAGMA user_version`
//! records how many have run.

use rusqlite::Connection;

/// The schema, as numbered migrations.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_events_and_queue.sql"),
    include_str!("../../migrations/sqlite/0002_conversation_id.sql"),
    include_str!("../../migrations/sqlite/0003_counters_hourly.sql"),
    include_str!("../../migrations/sqlite/0004_alert_transitions.sql"),
    include_str!("../../migrations/sqlite/0005_nodes_and_duties.sql"),
    include_str!("../../migrations/sqlite/0006_notifications_silences.sql"),
    include_str!("../../migrations/sqlite/0007_api_tokens.sql"),
    include_str!("../../migrations/sqlite/0008_recoveries.sql"),
    include_str!("../../migrations/sqlite/0009_drills.sql"),
];

/// Runs the migrations `conn`'s database lacks, each in a transaction of its own.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(migration = i + 1, "applied SQLite migration");
    }
    Ok(())
}
