//! Integration tests of the SQLite store against real database files in a temporary directory.
//!
//! One test binary (`it`) with a module per concern; `model` holds the property test that runs
//! random operation sequences against the store and a simple model of it.

mod common;
mod counters;
mod faults;
mod ingest;
mod model;
mod queue;
mod recovery;
