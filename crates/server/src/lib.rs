//! The intake server: the doors it opens (ingest, admin API, dashboard, health, metrics) and the duties
//! that run behind them (delivery, monitor and notifications, compaction, recovery jobs,
//! canaries, fire drills).
//!
//! Data flows one way: a webhook enters through [`ingest`], is committed by the
//! [`Store`](intake_store::Store) together with its deliveries, wakes the destination's
//! dispatcher ([`duties::delivery`]), and is POSTed to the handler. The admin API only reads
//! (silences and incidents aside, which it writes with their announcements and notices).
//!
//! **Code map: one room per job.** Each room says what it may import; "may import" is about
//! this crate's top-level modules (`crate::…`); with these rules there is no import
//! cycle between them.
//!
//! | Room | Its one job | May import |
//! |---|---|---|
//! | `state` | The shared handles: `AppState`, the source and destination runtimes, the metric handles, the demo inbox, the limited log sites (`LimitedLog`: first line in full, then a summary per interval), the queue view (`QueueView`: one count of the queue at a time, shared by the doors). Plain values and handles, no behaviour that needs another module. | nothing |
//! | `error` | [`ServerError`], what `start` and shutdown can fail with. | nothing |
//! | `hard_stop` | The listener whose connections the shutdown deadline cuts. | nothing |
//! | `conn` | The HTTP server loop and its connection hygiene: caps overall and per IP (503 over them), the header deadline, the idle timeout. | `hard_stop`, `metrics` |
//! | [`api`] | The admin API door: router, bearer-token auth and `Scope` in `api/mod.rs`, RFC 7807 [`api::problem`], the OpenAPI document and the list of resources it and the router are built from ([`api::openapi`]), then one file per resource (`events`, `rejections`, `flows`, `queue`, `alerts`, `rules`, `silences`, `notifiers`, `cluster`, `tokens`, `recoveries`, `audit`, `reconciliation`, `canaries`, `drills`, `incidents`, `deliveries` — completion receipts, the one resource a handler may call signed with its destination's secret instead of a token), each exporting its documented `routes()`. | `state`, `duties`, `metrics` (names only) |
//! | `web` | The dashboard door, `/`: server-rendered pages (askama templates under `templates/`, assets embedded from `assets/`), sessions and CSRF (`web/session.rs`), one file per page. It reads through the same functions the admin API's handlers call, with the session's `Scope`. | `state`, `duties`, `api` |
//! | [`ingest`] | The SOR-facing door, `POST /ingest/{source_id}`. | `state`, `metrics`, `api::problem` |
//! | [`health`] | `/healthz` and `/readyz`. | `state`, `api::problem` |
//! | [`metrics`] | Metric names (contract), the recorder, the registration of the metric handles, and the `/metrics` door. | `state`, `duties` |
//! | [`demo_handler`] | The built-in demo handler door. | `state` |
//! | [`duties`] | The duty runner and singleton leases (`duties/mod.rs`), then `delivery`, `monitor`, `compaction`, `recovery/`, `reconcile/`, `book`, `audit` (the audit the API door calls: read, then judged by a pure function), `notify/{decide, send}`, `canary/{decide, book, probe}`, `drill/{params, decide, schedule, observe, faults}` and `incidents/{lifecycle, notices, pipeline, view, postmortem, contacts}` (what the admin API and the notification pipeline write and show of incidents). | `state` |
//! | `runtime` | Wiring only: open the store, build the state, bind, start the duties, shut down in order. | everything; nothing imports it |
//!
//! **The rules of the rooms.**
//! * Doors only translate: HTTP in, calls on the store or on what [`duties`] exposes, JSON or
//!   a [`Problem`](api::problem::Problem) out. A door starts no task and decides nothing a
//!   duty decides; adding an admin endpoint means documenting its handler with
//!   `#[utoipa::path]` and adding it to its resource's `routes()`.
//! * Duties take the handles they use (store, clock, config, notifiers, metric handles), never
//!   the whole `AppState`, and never import a door. Logic a door and a duty both need (the
//!   stored alert book, the notification state) lives in [`duties`], outside HTTP, and returns
//!   [`StoreError`](intake_store::StoreError); the door wraps it in a problem.
//! * Decisions without IO are pure functions tested with tables: the notification decision
//!   (`duties::notify::decide`), silence validation ([`api::silences::validate`]), where a
//!   canary stands and `canary_failed` (`duties::canary::decide`), a drill's request, verdict
//!   and schedules (`duties::drill::{params, decide, schedule}`), which alerts a drill caused
//!   (`intake_core::drill`).
//! * Nothing imports `runtime`, and `state` imports nothing.
//!
//! **Architecture invariants**
//! * No 200 leaves [`ingest`] before the store has durably committed the event and its
//!   deliveries; a store error is a 503, never a 200.
//! * Time comes from the injected [`Clock`](intake_core::Clock); nothing here calls the system
//!   clock for a decision (wall-clock time is only used to measure latencies for metrics).
//! * Public functions return [`ServerError`] (or another error of this crate), never
//!   `anyhow`: only the binary uses `anyhow`.

pub mod api;
mod conn;
pub mod demo_handler;
pub mod duties;
mod error;
mod hard_stop;
pub mod health;
pub mod ingest;
pub mod metrics;
mod runtime;
mod state;
mod web;

pub use error::ServerError;
pub use runtime::{open_store, RunningServer, Server};
