//! One test binary for every system of record: each module drives its fake SOR's webhooks
//! through a real intake server, and its backfill client against the fake's API.

mod kustomer;
