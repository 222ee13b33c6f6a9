//! One test binary for every system of record: each module drives a fake SOR against the real
//! intake server (webhooks end to end) and against the connector's backfill client.

mod intercom;
mod zendesk;
