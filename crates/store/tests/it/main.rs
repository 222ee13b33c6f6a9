//! Integration tests of the store against real databases: SQLite files in temporary
//! directories and PostgreSQL databases created for each test.
//!
//! The conformance tests are written once, as `async fn test(kind: Kind)`, and instantiated for
//! both backends by [`conformance!`] (`<module>::sqlite::<test>`, `<module>::postgres::<test>`).
//! A few tests are one backend's own (`sqlite_…`, `postgres_…`). `model` holds the property
//! test that runs random operation sequences against the store and a simple model of it.

mod audit;
mod cluster;
mod common;
mod completion;
mod counters;
mod drills;
mod faults;
mod finishes;
mod incidents;
mod ingest;
mod model;
mod notifications;
mod queue;
mod recovery;
mod recovery_jobs;
mod replay;
mod requeue;
mod retention;
mod tokens;
