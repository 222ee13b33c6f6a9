//! Every connector against its fake system of record: webhooks through a real intake server to
//! a capture handler, and backfill clients against the fake's API on a simulated clock.

mod freshdesk;
mod gorgias;
