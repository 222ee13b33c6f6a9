//! Reading the model's types out of a row, written once for both backends: each backend says
//! how to read one column of its row type ([`Columns`]), and the readers here say which columns
//! make which type (in the order of the column lists in the `sql` module).
//!
//! Rule: this module knows the model only; it never imports a backend.

use intake_core::delivery::{CompletionState, DeliveryState};
use intake_core::event::Origin;
use intake_core::incident::{IncidentSeverity, IncidentState};
use intake_core::Timestamp;

use crate::model::*;

/// One row of a backend, read column by column (0-based). Each backend converts its own
/// column types (a PostgreSQL `INTEGER` is an `i32`, an SQLite one an `i64`).
pub(crate) trait Columns {
    /// The backend's error.
    type Error;
    /// A text column.
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    /// A nullable text column.
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    /// A 64-bit integer column.
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    /// A nullable 64-bit integer column.
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    /// A small count (attempts).
    fn count(&self, i: usize) -> Result<u32, Self::Error>;
    /// A floating-point column.
    fn real(&self, i: usize) -> Result<f64, Self::Error>;
    /// A boolean column.
    fn flag(&self, i: usize) -> Result<bool, Self::Error>;
    /// The error for a column whose value cannot be understood.
    fn corrupt(&self, i: usize, message: String) -> Self::Error;
}

/// An event summary without its deliveries, from `EVENT_COLUMNS`.
pub(crate) fn event_summary<R: Columns>(r: &R) -> Result<EventSummary, R::Error> {
    let id = r.text(0)?;
    let origin = r.text(3)?;
    Ok(EventSummary {
        id: id
            .parse()
            .map_err(|e| r.corrupt(0, format!("`{id}` is not a valid event id: {e}")))?,
        tenant: r.text(1)?,
        source: r.text(2)?,
        origin: Origin::parse(&origin).unwrap_or(Origin::Webhook),
        sor_event_id: r.opt_text(4)?,
        dedupe_key: r.text(5)?,
        event_type: r.text(6)?,
        channel: r.text(7)?,
        raw_channel: r.opt_text(8)?,
        occurred_at: r.opt_int(9)?.map(Timestamp),
        received_at: Timestamp(r.int(10)?),
        object_type: r.opt_text(11)?,
        object_id: r.opt_text(12)?,
        conversation_id: r.opt_text(13)?,
        deliveries: Vec::new(),
    })
}

/// A delivery summary and its event's id, from `DELIVERY_COLUMNS`.
pub(crate) fn delivery_summary<R: Columns>(r: &R) -> Result<(String, DeliverySummary), R::Error> {
    let id = r.text(0)?;
    let state = r.text(2)?;
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| r.corrupt(2, format!("unknown delivery state `{state}`")))?;
    let origin = r
        .opt_text(8)?
        .map(|o| {
            Origin::parse(&o).ok_or_else(|| r.corrupt(8, format!("unknown delivery origin `{o}`")))
        })
        .transpose()?;
    let summary = DeliverySummary {
        id: id
            .parse()
            .map_err(|e| r.corrupt(0, format!("`{id}` is not a valid delivery id: {e}")))?,
        destination: r.text(1)?,
        state,
        attempts: r.count(3)?,
        due_at: if state.is_final() {
            None
        } else {
            Some(Timestamp(r.int(4)?))
        },
        delivered_at: r.opt_int(5)?.map(Timestamp),
        last_status: r.opt_int(6)?.and_then(|s| u16::try_from(s).ok()),
        last_error: r.opt_text(7)?,
        origin,
        recovery: r.opt_text(9)?,
        completion: r
            .opt_text(11)?
            .map(|c| {
                CompletionState::parse(&c)
                    .ok_or_else(|| r.corrupt(11, format!("unknown completion state `{c}`")))
            })
            .transpose()?,
        completed_at: r.opt_int(12)?.map(Timestamp),
        completion_detail: r.opt_text(13)?,
    };
    Ok((r.text(10)?, summary))
}

/// The successful attempt a delivery row records (`sql::DELIVERED_ATTEMPTS`): the attempt
/// that delivered, which since issue 16 has no attempt row of its own. It started
/// `delivered_ms` before it finished (`delivered_at`).
pub(crate) fn delivered_attempt<R: Columns>(r: &R) -> Result<AttemptRecord, R::Error> {
    let id = r.text(0)?;
    let delivered_at = r.int(2)?;
    let duration_ms = r.int(4)?;
    Ok(AttemptRecord {
        delivery_id: id
            .parse()
            .map_err(|e| r.corrupt(0, format!("`{id}` is not a valid delivery id: {e}")))?,
        attempt: r.count(1)?,
        started_at: Timestamp(delivered_at - duration_ms),
        duration_ms,
        status: r.opt_int(3)?.and_then(|s| u16::try_from(s).ok()),
        error: None,
        outcome: DeliveryState::Delivered.as_str().to_string(),
    })
}

/// An event's attempts as people see them: the attempt rows (failures, dead letters,
/// superseded attempts, and successes recorded before issue 16) with the successes read from
/// the delivery rows, in the order the attempt rows are listed (start, then attempt number;
/// a success last among equals, as its row would have been written last).
pub(crate) fn with_delivered_attempts(
    mut rows: Vec<AttemptRecord>,
    delivered: Vec<AttemptRecord>,
) -> Vec<AttemptRecord> {
    if delivered.is_empty() {
        return rows;
    }
    rows.extend(delivered);
    // A stable sort: rows arrive in the backend's order, which breaks ties by row id.
    rows.sort_by_key(|a| (a.started_at, a.attempt));
    rows
}

/// A delivery as a confirmation reads it, from `DELIVERY_RECORD_COLUMNS`.
pub(crate) fn delivery_record<R: Columns>(r: &R) -> Result<DeliveryRecord, R::Error> {
    let id = r.text(0)?;
    let event_id = r.text(1)?;
    let state = r.text(6)?;
    Ok(DeliveryRecord {
        id: id
            .parse()
            .map_err(|e| r.corrupt(0, format!("`{id}` is not a valid delivery id: {e}")))?,
        event_id: event_id
            .parse()
            .map_err(|e| r.corrupt(1, format!("`{event_id}` is not a valid event id: {e}")))?,
        destination: r.text(2)?,
        tenant: r.text(3)?,
        source: r.text(4)?,
        channel: r.text(5)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| r.corrupt(6, format!("unknown delivery state `{state}`")))?,
        attempts: r.count(7)?,
        completion: r
            .opt_text(8)?
            .map(|c| {
                CompletionState::parse(&c)
                    .ok_or_else(|| r.corrupt(8, format!("unknown completion state `{c}`")))
            })
            .transpose()?,
    })
}

/// A recovery job, from `RECOVERY_COLUMNS`.
pub(crate) fn recovery_job<R: Columns>(r: &R) -> Result<RecoveryJob, R::Error> {
    let kind = r.text(1)?;
    let state = r.text(5)?;
    let json = |i: usize, what: &str| -> Result<serde_json::Value, R::Error> {
        let text = r.text(i)?;
        serde_json::from_str(&text).map_err(|e| r.corrupt(i, format!("recovery {what}: {e}")))
    };
    let cursor = match r.opt_text(7)? {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| r.corrupt(7, format!("recovery cursor: {e}")))?,
        ),
        None => None,
    };
    Ok(RecoveryJob {
        id: r.text(0)?,
        kind: RecoveryKind::parse(&kind)
            .ok_or_else(|| r.corrupt(1, format!("unknown recovery kind `{kind}`")))?,
        tenant: r.text(2)?,
        source: r.text(3)?,
        dry_run: r.flag(4)?,
        state: RecoveryState::parse(&state)
            .ok_or_else(|| r.corrupt(5, format!("unknown recovery state `{state}`")))?,
        params: json(6, "params")?,
        cursor,
        progress: json(8, "progress")?,
        report: json(9, "report")?,
        error: r.opt_text(10)?,
        cancel_requested: r.flag(11)?,
        created_by: r.text(12)?,
        created_at: Timestamp(r.int(13)?),
        started_at: r.opt_int(14)?.map(Timestamp),
        updated_at: Timestamp(r.int(15)?),
        finished_at: r.opt_int(16)?.map(Timestamp),
    })
}

/// An outbox item, from `OUTBOX_COLUMNS`.
pub(crate) fn outbox_item<R: Columns>(r: &R) -> Result<OutboxItem, R::Error> {
    let state = r.text(4)?;
    Ok(OutboxItem {
        id: r.int(0)?,
        notifier: r.text(1)?,
        key: r.text(2)?,
        notice: r.text(3)?,
        state: NotificationState::parse(&state)
            .ok_or_else(|| r.corrupt(4, format!("unknown notification state `{state}`")))?,
        attempts: r.count(5)?,
        due_at: Timestamp(r.int(6)?),
        created_at: Timestamp(r.int(7)?),
        finished_at: r.opt_int(8)?.map(Timestamp),
        last_error: r.opt_text(9)?,
        incident: r.opt_text(10)?,
        tenant: r.opt_text(11)?,
    })
}

/// An incident, from `INCIDENT_COLUMNS`.
pub(crate) fn incident<R: Columns>(r: &R) -> Result<Incident, R::Error> {
    let severity = r.text(2)?;
    let status = r.text(3)?;
    let list = |i: usize, what: &str| -> Result<Vec<String>, R::Error> {
        let text = r.text(i)?;
        serde_json::from_str(&text).map_err(|e| r.corrupt(i, format!("incident {what}: {e}")))
    };
    let tracking = r.text(14)?;
    Ok(Incident {
        id: r.text(0)?,
        title: r.text(1)?,
        severity: IncidentSeverity::parse(&severity)
            .ok_or_else(|| r.corrupt(2, format!("unknown incident severity `{severity}`")))?,
        status: IncidentState::parse(&status)
            .ok_or_else(|| r.corrupt(3, format!("unknown incident status `{status}`")))?,
        tenants: list(4, "tenants")?,
        sources: list(5, "sources")?,
        channels: list(6, "channels")?,
        commander: r.opt_text(7)?,
        impact_start: Timestamp(r.int(8)?),
        declared_at: Timestamp(r.int(9)?),
        declared_by: r.text(10)?,
        updated_at: Timestamp(r.int(11)?),
        resolved_at: r.opt_int(12)?.map(Timestamp),
        next_update_at: r.opt_int(13)?.map(Timestamp),
        tracking: serde_json::from_str(&tracking)
            .map_err(|e| r.corrupt(14, format!("incident tracking: {e}")))?,
        drill: r.opt_text(15)?,
        version: r.int(16)?,
    })
}

/// An incident's timeline entry, from `INCIDENT_ENTRY_COLUMNS`.
pub(crate) fn incident_entry<R: Columns>(r: &R) -> Result<IncidentEntry, R::Error> {
    let detail = r.text(6)?;
    Ok(IncidentEntry {
        id: r.int(0)?,
        incident: r.text(1)?,
        at: Timestamp(r.int(2)?),
        kind: r.text(3)?,
        author: r.opt_text(4)?,
        text: r.text(5)?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| r.corrupt(6, format!("incident entry detail: {e}")))?,
    })
}

/// The columns of an incident as stored (JSON lists as text), in `INCIDENT_COLUMNS` order
/// without the version, which each backend writes itself.
pub(crate) struct IncidentRow {
    pub tenants: String,
    pub sources: String,
    pub channels: String,
    pub tracking: String,
}

impl IncidentRow {
    /// The JSON columns of `i`.
    pub(crate) fn of(i: &Incident) -> IncidentRow {
        let text = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        IncidentRow {
            tenants: text(&i.tenants),
            sources: text(&i.sources),
            channels: text(&i.channels),
            tracking: serde_json::to_string(&i.tracking).unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// A silence, from `SILENCE_COLUMNS`.
pub(crate) fn silence<R: Columns>(r: &R) -> Result<Silence, R::Error> {
    let matchers = r.text(1)?;
    Ok(Silence {
        id: r.text(0)?,
        matchers: serde_json::from_str(&matchers)
            .map_err(|e| r.corrupt(1, format!("silence matchers: {e}")))?,
        starts_at: Timestamp(r.int(2)?),
        ends_at: Timestamp(r.int(3)?),
        created_by: r.text(4)?,
        comment: r.text(5)?,
        created_at: Timestamp(r.int(6)?),
        expiry_announced: r.flag(7)?,
    })
}

/// An API token, from `TOKEN_COLUMNS`.
pub(crate) fn api_token<R: Columns>(r: &R) -> Result<ApiToken, R::Error> {
    Ok(ApiToken {
        id: r.text(0)?,
        hash: r.text(1)?,
        tenant: r.opt_text(2)?,
        name: r.text(3)?,
        created_by: r.text(4)?,
        created_at: Timestamp(r.int(5)?),
        expires_at: r.opt_int(6)?.map(Timestamp),
        revoked_at: r.opt_int(7)?.map(Timestamp),
    })
}

/// An alert transition, from `ALERT_TRANSITION_COLUMNS`.
pub(crate) fn alert_transition<R: Columns>(r: &R) -> Result<AlertTransitionRecord, R::Error> {
    Ok(AlertTransitionRecord {
        at: Timestamp(r.int(0)?),
        rule: r.text(1)?,
        tenant: r.text(2)?,
        source: r.text(3)?,
        channel: r.text(4)?,
        destination: r.text(5)?,
        severity: r.text(6)?,
        state: r.text(7)?,
        value: r.real(8)?,
        reason: r.text(9)?,
    })
}

/// A notifier's outbox health, from `NOTIFIER_HEALTH`.
pub(crate) fn notifier_health<R: Columns>(r: &R) -> Result<NotifierHealth, R::Error> {
    Ok(NotifierHealth {
        notifier: r.text(0)?,
        undelivered: r.int(1)?.max(0) as u64,
        oldest_undelivered: r.opt_int(2)?.map(Timestamp),
        failed_attempts: r.int(3)?.clamp(0, u32::MAX as i64) as u32,
        last_error: r.opt_text(4)?,
        last_sent_at: r.opt_int(5)?.map(Timestamp),
        last_dead_at: r.opt_int(6)?.map(Timestamp),
    })
}

/// A counter bucket, from `bucket, tenant, source, channel, destination, metric, count`.
pub(crate) fn counter_row<R: Columns>(r: &R) -> Result<CounterRow, R::Error> {
    Ok(CounterRow {
        at: Timestamp(r.int(0)?),
        tenant: r.text(1)?,
        source: r.text(2)?,
        channel: r.text(3)?,
        destination: r.text(4)?,
        metric: r.text(5)?,
        count: r.int(6)?,
    })
}

/// A drill, from `DRILL_COLUMNS`.
pub(crate) fn drill<R: Columns>(r: &R) -> Result<Drill, R::Error> {
    let scenario = r.text(1)?;
    let trigger = r.text(4)?;
    let state = r.text(6)?;
    let report = r.text(13)?;
    Ok(Drill {
        id: r.text(0)?,
        scenario: intake_core::drill::Scenario::parse(&scenario)
            .ok_or_else(|| r.corrupt(1, format!("unknown drill scenario `{scenario}`")))?,
        target: r.text(2)?,
        tenant: r.opt_text(3)?,
        trigger: DrillTrigger::parse(&trigger)
            .ok_or_else(|| r.corrupt(4, format!("unknown drill trigger `{trigger}`")))?,
        schedule: r.opt_text(5)?,
        state: DrillState::parse(&state)
            .ok_or_else(|| r.corrupt(6, format!("unknown drill state `{state}`")))?,
        created_by: r.text(7)?,
        started_at: Timestamp(r.int(8)?),
        expires_at: Timestamp(r.int(9)?),
        detected_at: r.opt_int(10)?.map(Timestamp),
        notified_at: r.opt_int(11)?.map(Timestamp),
        healed_at: r.opt_int(12)?.map(Timestamp),
        report: serde_json::from_str(&report)
            .map_err(|e| r.corrupt(13, format!("drill report: {e}")))?,
    })
}

#[cfg(test)]
mod tests {
    use intake_core::DeliveryId;

    use super::*;

    fn attempt(delivery: &DeliveryId, n: u32, start: i64, outcome: &str) -> AttemptRecord {
        AttemptRecord {
            delivery_id: delivery.clone(),
            attempt: n,
            started_at: Timestamp(start),
            duration_ms: 5,
            status: Some(if outcome == "delivered" { 200 } else { 500 }),
            error: None,
            outcome: outcome.into(),
        }
    }

    #[test]
    fn successes_from_delivery_rows_join_the_attempt_rows_in_order() {
        let a = DeliveryId::generate(Timestamp(1_000));
        let b = DeliveryId::generate(Timestamp(1_000));
        // (attempt rows, successes from delivery rows, the list people see: delivery, attempt,
        // outcome)
        type Case = (
            Vec<AttemptRecord>,
            Vec<AttemptRecord>,
            Vec<(DeliveryId, u32, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            // Nothing delivered: the rows as they are.
            (
                vec![attempt(&a, 1, 10, "retrying")],
                vec![],
                vec![(a.clone(), 1, "retrying")],
            ),
            // Delivered at once: the success alone, from its delivery row.
            (
                vec![],
                vec![attempt(&a, 1, 10, "delivered")],
                vec![(a.clone(), 1, "delivered")],
            ),
            // Two failures, then the success: in the order they ran.
            (
                vec![
                    attempt(&a, 1, 10, "retrying"),
                    attempt(&a, 2, 20, "retrying"),
                ],
                vec![attempt(&a, 3, 30, "delivered")],
                vec![
                    (a.clone(), 1, "retrying"),
                    (a.clone(), 2, "retrying"),
                    (a.clone(), 3, "delivered"),
                ],
            ),
            // Two destinations: one's success before the other's failure.
            (
                vec![attempt(&b, 1, 40, "retrying")],
                vec![attempt(&a, 1, 15, "delivered")],
                vec![(a.clone(), 1, "delivered"), (b.clone(), 1, "retrying")],
            ),
            // A superseded attempt that started at the same instant as the success stays first.
            (
                vec![attempt(&a, 1, 10, "superseded")],
                vec![attempt(&a, 1, 10, "delivered")],
                vec![(a.clone(), 1, "superseded"), (a.clone(), 1, "delivered")],
            ),
        ];
        for (rows, delivered, want) in cases {
            let got: Vec<(DeliveryId, u32, &str)> = with_delivered_attempts(rows, delivered)
                .iter()
                .map(|r| {
                    let outcome: &'static str = match r.outcome.as_str() {
                        "delivered" => "delivered",
                        "retrying" => "retrying",
                        "superseded" => "superseded",
                        other => panic!("unexpected outcome {other}"),
                    };
                    (r.delivery_id.clone(), r.attempt, outcome)
                })
                .collect();
            assert_eq!(got, want);
        }
    }
}
