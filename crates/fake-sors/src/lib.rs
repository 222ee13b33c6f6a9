//! Fake systems of record, for tests, the demo and benchmarks.
//!
//! Each fake (one module per vendor) serves the same [`world::World`] two ways, as the vendor
//! does: (a) webhooks in the vendor's real envelope, signed with the vendor's real scheme, and
//! (b) the vendor's REST API with its real pagination and rate limits (429 and headers), which
//! intake's backfill clients read. A test can "lose" the webhooks of a time window
//! ([`harness::send_webhooks`]) and prove that backfill finds exactly those.
//!
//! The fakes are written from the vendors' documentation, not from intake's connectors, and this
//! crate does not depend on them: a misreading of a vendor's format in a connector then shows
//! up as a failing test instead of being copied into its own test double.

pub mod freshdesk;
pub mod front;
pub mod generic;
pub mod gorgias;
pub mod harness;
pub mod intercom;
pub mod kustomer;
pub mod world;
pub mod zendesk;

pub use harness::{send_webhooks, FakeSor, SendReport, Served, Webhook};
pub use world::{Conversation, Medium, Message, World, WorldSpec};
