//! Domain types of intake: typed ids, time and the injectable clock, the configuration model,
//! normalized events, the delivery state machine with its retry schedule, the Standard
//! Webhooks signature scheme, incidents' statuses and notice templates, the decision of which
//! repeated log lines to write, and the fire drills' vocabulary (which alerts a drill causes and
//! expects).
//!
//! **Architecture invariant:** this crate does no IO. It reads no files, opens no sockets and
//! never asks the operating system for the time except through [`clock::SystemClock`], which
//! the binary injects. Everything here can therefore be tested exhaustively and cannot fail
//! for reasons outside its inputs.

pub mod canary;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod drill;
pub mod event;
pub mod ids;
pub mod incident;
pub mod log_limit;
pub mod rate;
pub mod retention;
pub mod signature;
pub mod time;
pub mod token;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{DeliveryId, DrillId, EventId, IncidentId, RecoveryId, SilenceId, TokenId};
pub use time::Timestamp;
