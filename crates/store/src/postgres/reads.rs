//! Row readers: how PostgreSQL's rows become the model's types, and the deliveries of a page
//! of events.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use intake_core::delivery::DeliveryState;
use intake_core::Timestamp;
use tokio_postgres::Row;

use super::error::{pg_error, read_error};
use crate::decode::Columns;
use crate::model::*;
use crate::{Result, StoreError};

pub(super) fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("`{s}` is not a valid {what}")))
}

pub(super) fn state_of(s: &str) -> Result<DeliveryState> {
    DeliveryState::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state `{s}`")))
}

pub(super) fn status_of(v: Option<i32>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

pub(super) fn delivery_summary(r: &Row) -> Result<DeliverySummary> {
    let state = state_of(r.get(2))?;
    Ok(DeliverySummary {
        id: parse(r.get::<_, &str>(0), "delivery id")?,
        destination: r.get(1),
        state,
        attempts: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
        due_at: if state.is_final() {
            None
        } else {
            Some(Timestamp(r.get(4)))
        },
        delivered_at: r.get::<_, Option<i64>>(5).map(Timestamp),
        last_status: status_of(r.get(6)),
        last_error: r.get(7),
    })
}

/// The deliveries of these events, grouped by event id.
pub(super) async fn deliveries_of(
    client: &impl GenericClient,
    event_ids: &[&str],
) -> Result<HashMap<String, Vec<DeliverySummary>>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, destination, state, attempts, due_at, delivered_at, last_status,
                    last_error, event_id
             FROM deliveries WHERE event_id = ANY($1) ORDER BY event_id, destination",
        )
        .await
        .map_err(read_error)?;
    let mut out: HashMap<String, Vec<DeliverySummary>> = HashMap::new();
    for r in client
        .query(&stmt, &[&event_ids])
        .await
        .map_err(read_error)?
    {
        out.entry(r.get(8)).or_default().push(delivery_summary(&r)?);
    }
    Ok(out)
}

/// A column read as the wrong type: a bug or a schema this build does not know.
fn mismatch(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(pg_error(&e))
}

impl Columns for Row {
    type Error = StoreError;

    fn text(&self, i: usize) -> Result<String> {
        self.try_get(i).map_err(mismatch)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.try_get(i).map_err(mismatch)
    }

    fn int(&self, i: usize) -> Result<i64> {
        self.try_get(i).map_err(mismatch)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.try_get(i).map_err(mismatch)
    }

    fn count(&self, i: usize) -> Result<u32> {
        Ok(u32::try_from(self.try_get::<_, i32>(i).map_err(mismatch)?).unwrap_or(0))
    }

    fn real(&self, i: usize) -> Result<f64> {
        self.try_get(i).map_err(mismatch)
    }

    fn flag(&self, i: usize) -> Result<bool> {
        self.try_get(i).map_err(mismatch)
    }

    fn corrupt(&self, _: usize, message: String) -> StoreError {
        StoreError::Corrupt(message)
    }
}
