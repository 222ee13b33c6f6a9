//! The SQLite schema: numbered migrations, run when the store opens. `intake_migrations`
//! records the number of each one that ran.
//!
//! Migrations are recorded by number, not counted: work built in parallel takes its numbers
//! ahead of time (the incidents' 0010 was merged before the drills' 0009), so the list may
//! have a gap, and a migration merged later with a lower number still runs on a database that
//! has the higher ones. Databases made before the numbers were recorded counted them in
//! `PRAGMA user_version` (migrations 1 to n had run); the first open records those.

use std::collections::HashSet;

use rusqlite::Connection;

/// The schema, as numbered migrations, in order.
const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        include_str!("../../migrations/sqlite/0001_events_and_queue.sql"),
    ),
    (
        2,
        include_str!("../../migrations/sqlite/0002_conversation_id.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_counters_hourly.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_alert_transitions.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_nodes_and_duties.sql"),
    ),
    (
        6,
        include_str!("../../migrations/sqlite/0006_notifications_silences.sql"),
    ),
    (
        7,
        include_str!("../../migrations/sqlite/0007_api_tokens.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_recoveries.sql"),
    ),
    (9, include_str!("../../migrations/sqlite/0009_drills.sql")),
    (
        10,
        include_str!("../../migrations/sqlite/0010_incidents.sql"),
    ),
    (
        11,
        include_str!("../../migrations/sqlite/0011_completion_receipts.sql"),
    ),
    (
        12,
        include_str!("../../migrations/sqlite/0012_incident_drill.sql"),
    ),
    (
        14,
        include_str!("../../migrations/sqlite/0014_success_on_delivery.sql"),
    ),
];

/// Runs the migrations `conn`'s database lacks, each in a transaction of its own.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS intake_migrations (version INTEGER PRIMARY KEY)",
    )?;
    let mut applied: HashSet<u32> = conn
        .prepare("SELECT version FROM intake_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if applied.is_empty() {
        // A database from before migrations were recorded by number: `user_version` says
        // how many of the first ones ran.
        let counted: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tx = conn.transaction()?;
        for version in 1..=counted {
            tx.execute(
                "INSERT INTO intake_migrations (version) VALUES (?1)",
                [version],
            )?;
            applied.insert(version);
        }
        tx.commit()?;
    }
    let mut ran = Vec::new();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO intake_migrations (version) VALUES (?1)",
            [version],
        )?;
        // Kept for people who look (`sqlite3 intake.db 'PRAGMA user_version'`): the highest
        // migration that ran.
        let highest = applied.iter().copied().chain([*version]).max().unwrap_or(0);
        tx.execute_batch(&format!("PRAGMA user_version = {highest}"))?;
        tx.commit()?;
        applied.insert(*version);
        ran.push(*version);
    }
    // One line for all of them: a new database runs every migration at its first start.
    if !ran.is_empty() {
        tracing::info!(migrations = ?ran, "applied SQLite migrations");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_a_gap_is_accepted() {
        let numbers: Vec<u32> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let recorded: Vec<u32> = conn
            .prepare("SELECT version FROM intake_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(recorded, numbers);
        // Opening again applies nothing.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_database_that_counted_its_migrations_records_them_and_runs_the_rest() {
        let mut conn = Connection::open_in_memory().unwrap();
        // As the counting runner left a database with the first eight migrations.
        for (_, sql) in MIGRATIONS.iter().take(8) {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 8").unwrap();
        migrate(&mut conn).unwrap();
        let has_incidents: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'incidents'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_incidents, 1);
        let highest: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        // The highest migration there is (numbers may have gaps: see the module's page).
        assert_eq!(highest, MIGRATIONS.iter().map(|(n, _)| *n).max().unwrap());
    }
}
