//! Row readers: how PostgreSQL's rows become the model's types, and the deliveries of a page
//! of events.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use intake_core::delivery::DeliveryState;
use intake_core::event::Origin;
use intake_core::Timestamp;
use tokio_postgres::Row;

use super::error::read_error;
use crate::model::*;
use crate::{Result, StoreError};

/// An outbox item, from the columns of [`OUTBOX_COLUMNS`](crate::sql::OUTBOX_COLUMNS).
pub(super) fn outbox_row(r: &Row) -> Result<OutboxItem> {
    let state: String = r.get(4);
    Ok(OutboxItem {
        id: r.get(0),
        notifier: r.get(1),
        key: r.get(2),
        notice: r.get(3),
        state: NotificationState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown notification state `{state}`")))?,
        attempts: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
        due_at: Timestamp(r.get(6)),
        created_at: Timestamp(r.get(7)),
        finished_at: r.get::<_, Option<i64>>(8).map(Timestamp),
        last_error: r.get(9),
    })
}

/// A silence, from the columns of [`SILENCE_COLUMNS`](crate::sql::SILENCE_COLUMNS).
pub(super) fn silence_row(r: &Row) -> Result<Silence> {
    let matchers: String = r.get(1);
    Ok(Silence {
        id: r.get(0),
        matchers: serde_json::from_str(&matchers)
            .map_err(|e| StoreError::Corrupt(format!("silence matchers: {e}")))?,
        starts_at: Timestamp(r.get(2)),
        ends_at: Timestamp(r.get(3)),
        created_by: r.get(4),
        comment: r.get(5),
        created_at: Timestamp(r.get(6)),
        expiry_announced: r.get(7),
    })
}

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

/// An event summary without deliveries, from the columns of
/// [`EVENT_COLUMNS`](crate::sql::EVENT_COLUMNS).
pub(super) fn event_summary(r: &Row) -> Result<EventSummary> {
    let origin: String = r.get(3);
    Ok(EventSummary {
        id: parse(r.get::<_, &str>(0), "event id")?,
        tenant: r.get(1),
        source: r.get(2),
        origin: Origin::parse(&origin).unwrap_or(Origin::Webhook),
        sor_event_id: r.get(4),
        dedupe_key: r.get(5),
        event_type: r.get(6),
        channel: r.get(7),
        raw_channel: r.get(8),
        occurred_at: r.get::<_, Option<i64>>(9).map(Timestamp),
        received_at: Timestamp(r.get(10)),
        object_type: r.get(11),
        object_id: r.get(12),
        conversation_id: r.get(13),
        deliveries: Vec::new(),
    })
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
