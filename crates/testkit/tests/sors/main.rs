//! One test binary for every system of record: each module drives its vendor's fake (signed
//! webhooks in the real envelope, the real API with its pagination and rate limits) through a
//! real intake server and through its backfill client on a simulated clock.

mod freshdesk;
mod front;
mod generic;
mod gorgias;
mod intercom;
mod kustomer;
mod zendesk;
