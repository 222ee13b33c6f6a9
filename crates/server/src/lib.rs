//! The intake server: the doors it opens (ingest, admin API, health and metrics) and the duties
//! that run behind them (delivery workers).
//!
//! Data flows one way: a webhook enters through [`ingest`], is committed by the
//! [`Store`](intake_store::Store) together with its deliveries, wakes the destination's
//! [`delivery`] dispatcher, and is POSTed to the handler. The admin API only reads.
//!
//! **Architecture invariants**
//! * No 200 leaves [`ingest`] before the store has durably committed the event and its
//!   deliveries; a store error is a 503, never a 200.
//! * Time comes from the injected [`Clock`](intake_core::Clock); nothing here calls the system
//!   clock for a decision (wall-clock time is only used to measure latencies for metrics).

pub mod api;
pub mod demo_handler;
pub mod duties;
mod error;
pub mod health;
pub mod ingest;
pub mod metrics;
mod runtime;
mod state;

pub use error::ServerError;
pub use runtime::{open_store, RunningServer, Server};
