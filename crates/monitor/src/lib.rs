//! Flow and queue monitoring for intake: the detectors behind the built-in alert rules, the
//! alert state machine, and the backtest engine that replays counts through the same code.
//!
//! The caller (the server's monitor loop, or [`backtest`]) owns the clock and the store. It
//! feeds a [`Monitor`] the counters of each completed minute — events per flow
//! ([`Monitor::record_flow`]), requests per source ([`Monitor::record_requests`]), delivery
//! outcomes per queue ([`Monitor::record_queue`]), queue gauges
//! ([`Monitor::observe_queue`]) and the open gaps reconciliation found per source
//! ([`Monitor::observe_gaps`]), and what each queue on completion receipts awaits
//! ([`Monitor::observe_completion`], decided in [`completion`]) — then calls [`Monitor::evaluate`] with the current instant and
//! gets back the alert [`Transition`]s (pending, firing, resolved) to persist and notify.
//!
//! `docs/detectors.md` explains how each rule decides, with its parameters and the backtest
//! numbers.
//!
//! **Architecture invariant:** this crate does no IO and never reads the time. Everything is a
//! function of the counts and instants it is given, so a backtest on a simulated clock runs
//! exactly the code production runs. (The backtest functions take `Read`/`Write` values; the
//! binary opens the files.)

pub mod alert;
pub mod backtest;
pub mod band;
pub mod baseline;
pub mod burst;
pub mod calendar;
pub mod completion;
pub mod drop;
mod exposure;
pub mod gap;
pub mod history;
mod keys;
pub mod monitor;
pub mod params;
mod shape;
pub mod stats;
mod stopped;
pub mod synthetic;

pub use alert::{ActiveAlert, AlertBook, AlertKey, AlertState, Finding, Labels, Transition};
pub use band::ExpectedHour;
pub use baseline::{BaselineConfig, BaselineKind};
pub use burst::BurstStats;
pub use calendar::{QuietDay, QuietDays};
pub use completion::CompletionSnapshot;
pub use drop::CanaryHealth;
pub use gap::{GapReport, OpenGap};
pub use history::{QueueMinute, QueueSnapshot, RequestMinute};
pub use monitor::{
    FlowBand, FlowHours, FlowKey, FlowStatus, Monitor, MonitorSettings, QueueKey, SourceKey,
};
pub use params::{
    CanaryFailed, Common, CompletionErrors, CompletionStalled, DrillFailed, ParamError, RuleBook,
    RuleParams, EXTERNAL_RULES,
};
