//! What one batch of a retention pass deletes, decided once for both backends from the rows
//! either reads: the events of the batch joined with the states of their deliveries. The
//! decision for each event is [`intake_core::retention::decide`]; this module only groups the
//! rows by event and collects the verdicts.

use intake_core::delivery::{CompletionState, DeliveryState};
use intake_core::retention::{decide, DeliveryStage, Verdict};
use intake_core::Timestamp;

use crate::StoreError;

/// One row of a batch: an event (id, receipt time) and one of its deliveries' state and
/// completion stage (`None`, `None` for an event without deliveries: a left join).
pub(crate) type BatchRow = (String, i64, Option<String>, Option<String>);

/// The events of a batch to delete, in id order, and what else the batch saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Choice {
    /// Event ids whose every delivery is final.
    pub expire: Vec<String>,
    /// Events looked at.
    pub scanned: u64,
    /// Events past retention kept (their work is not final, or was never queued).
    pub kept: u64,
    /// The last event looked at.
    pub last: Option<String>,
}

/// Groups `rows` (ordered by event id) by event and decides each against `cutoff`.
pub(crate) fn choose(rows: Vec<BatchRow>, cutoff: Timestamp) -> Result<Choice, StoreError> {
    let mut choice = Choice::default();
    let mut current: Option<(String, i64, Vec<DeliveryStage>)> = None;
    let decide_one = |choice: &mut Choice, (id, received, stages): (String, i64, Vec<_>)| {
        choice.scanned += 1;
        match decide(Timestamp(received), cutoff, &stages) {
            Verdict::Expire => choice.expire.push(id.clone()),
            Verdict::Recent => {}
            _ => choice.kept += 1,
        }
        choice.last = Some(id);
    };
    for (id, received, state, completion) in rows {
        if current.as_ref().is_some_and(|(c, _, _)| *c != id) {
            if let Some(done) = current.take() {
                decide_one(&mut choice, done);
            }
        }
        let entry = current.get_or_insert_with(|| (id.clone(), received, Vec::new()));
        if let Some(state) = state {
            let state = DeliveryState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery state `{state}`")))?;
            let completion = match completion {
                None => None,
                Some(c) => Some(
                    CompletionState::parse(&c)
                        .ok_or_else(|| StoreError::Corrupt(format!("completion `{c}`")))?,
                ),
            };
            entry.2.push(DeliveryStage { state, completion });
        }
    }
    if let Some(done) = current.take() {
        decide_one(&mut choice, done);
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, at: i64, state: Option<&str>, completion: Option<&str>) -> BatchRow {
        (
            id.to_string(),
            at,
            state.map(str::to_string),
            completion.map(str::to_string),
        )
    }

    #[test]
    fn rows_are_grouped_by_event_and_each_event_decided_once() {
        let cutoff = Timestamp(100);
        let rows = vec![
            row("a", 10, Some("delivered"), None),
            row("a", 10, Some("dead"), None),
            row("b", 20, Some("delivered"), None),
            row("b", 20, Some("retrying"), None),
            row("c", 30, None, None),
            row("d", 40, Some("delivered"), Some("received")),
            row("e", 50, Some("delivered"), Some("completed")),
            row("f", 150, Some("delivered"), None),
        ];
        let choice = choose(rows, cutoff).unwrap();
        assert_eq!(
            choice,
            Choice {
                expire: vec!["a".into(), "e".into()],
                scanned: 6,
                kept: 3,
                last: Some("f".into()),
            }
        );
        assert_eq!(choose(Vec::new(), cutoff).unwrap(), Choice::default());
        assert!(matches!(
            choose(vec![row("x", 1, Some("lost"), None)], cutoff),
            Err(StoreError::Corrupt(_))
        ));
    }
}
