//! Whether the database has room for new events.
//!
//! On a full disk PostgreSQL refuses the writes that must grow a table or an index (`could not
//! extend file …`, SQLSTATE 53100), while the writes that fit in the pages they already have
//! still succeed: an update of a delivery, and the readiness ping, which updates one row of
//! `meta`. Without this module `/readyz` answered 200 while every new event was refused.
//!
//! The writer marks the store *out of room* when a write fails for want of space, and marks it
//! back when a batch that stored new events commits. While it is marked, the readiness check
//! stores a probe event in a transaction that it rolls back ([`probe`]): the same table and
//! indexes as a real event, so the probe succeeds exactly when an event could be stored, and
//! noticing that space came back needs no traffic (a node taken out of a load balancer's
//! rotation gets none).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;

use crate::StoreError;

/// The body of the probe event: as large as a typical webhook, so that it needs the room one
/// does (a 2 KiB body goes to the table's TOAST relation, as real bodies do).
const PROBE_BODY: usize = 2048;

/// Whether the database refused a write for want of space, shared by the writer (which marks
/// it) and the store (whose readiness check and gauge read it).
#[derive(Debug, Clone, Default)]
pub(super) struct Room(Arc<AtomicBool>);

impl Room {
    /// Whether the last word was a write refused for want of space.
    pub(super) fn is_out(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Marks the store out of room: a write was refused with `why`, for want of space.
    pub(super) fn mark(&self, why: &StoreError) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::error!(
                error = %why,
                "PostgreSQL has no room for new events (its disk is full): ingest answers 503, and /readyz 503 until an event can be stored"
            );
        }
    }

    /// New events were stored: there is room again.
    pub(super) fn stored(&self) {
        if self.0.swap(false, Ordering::Relaxed) {
            tracing::warn!("PostgreSQL stores new events again: its disk has room");
        }
    }
}

/// Whether `e` is PostgreSQL refusing a write because its disk is full.
pub(super) fn is_out_of_space(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::DISK_FULL)
}

/// Stores a probe event and rolls it back: `Ok` when an event could be stored now. The probe's
/// id and dedupe key are random, under a source no configuration can name (ids are
/// `[a-z0-9_-]`), and nothing of it outlives the transaction but a dead row for vacuum.
pub(super) async fn probe(client: &mut Object) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let tag = format!("{:032x}", rand::random::<u128>());
    let body: Vec<u8> = (0..PROBE_BODY).map(|_| rand::random::<u8>()).collect();
    tx.execute(
        "INSERT INTO events (id, tenant, source, origin, dedupe_key, event_type, channel,
            received_at, headers, body)
         VALUES ($1, '', ' readiness probe', 'webhook', $1, 'probe', 'other', 0, '[]', $2)",
        &[&tag, &body],
    )
    .await?;
    tx.rollback().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_shared_and_cleared_by_stored_events() {
        let room = Room::default();
        let writer = room.clone();
        assert!(!room.is_out());
        writer.mark(&StoreError::Unavailable(
            "could not extend file (53100)".into(),
        ));
        assert!(room.is_out(), "the store sees what the writer marked");
        writer.stored();
        assert!(!room.is_out());
    }
}
