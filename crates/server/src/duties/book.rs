//! What the monitor duty keeps in the store for everyone else: the alert book (pending and
//! firing alerts), the flows' expectations at its last evaluation, and each flow's expected
//! band over the last day (for the dashboard), as state documents.
//!
//! The monitor duty writes them; the notification pipeline, the admin API and `/metrics` read
//! them here, so every node answers the same whichever node evaluates, and no reader has to
//! go through an HTTP handler to get them.

use intake_monitor::{ActiveAlert, FlowBand};
use intake_store::{Store, StoreError};

/// The state document holding the alert book (pending and firing alerts), as JSON.
pub const ALERTS_STATE: &str = "alerts";
/// The state document holding the flows' expectations at the last evaluation, as JSON.
pub const FLOWS_STATE: &str = "flows";
/// The state document holding every flow's expected hours over the last [`BAND_HOURS`], as
/// JSON.
pub const FLOW_BANDS_STATE: &str = "flow-bands";
/// How many hours of expectations the monitor stores per flow: a day, and the hour before
/// it, so a day of quarter hours always has its hour.
pub const BAND_HOURS: i64 = 25;

/// The alert book as stored by the monitor duty (empty before its first evaluation).
pub(crate) async fn alert_book(store: &dyn Store) -> Result<Vec<ActiveAlert>, StoreError> {
    match store.get_state(ALERTS_STATE).await? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("the stored alert book is unreadable: {e}"))),
    }
}

/// Every flow's expected band as stored by the monitor duty (empty before its first
/// evaluation).
pub(crate) async fn flow_bands(store: &dyn Store) -> Result<Vec<FlowBand>, StoreError> {
    match store.get_state(FLOW_BANDS_STATE).await? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("the stored flow bands are unreadable: {e}"))),
    }
}
