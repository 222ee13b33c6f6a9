//! What reconciliation keeps per source, as a state document (`reconcile/<source>`): where
//! the checked windows end, the last check with its numbers, why a tick skipped the source or
//! failed, and the open gaps — every event still missing, so each tick can tell, from the
//! store alone, which have arrived since. The monitor duty reads it for `source_gap`, the
//! admin API for `GET /api/v1/reconciliation`.
//!
//! The bookkeeping is pure (a check found these missing; these keys have arrived; which gaps
//! need a backfill) and tested with tables; [`load`] and [`save`] are the only IO.

use std::collections::{BTreeMap, HashSet};

use intake_core::event::NormalizedEvent;
use intake_core::Timestamp;
use intake_monitor::{GapReport, OpenGap};
use intake_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::window::Span;

/// How many closed gaps a source's state remembers, newest first.
pub const CLOSED_KEPT: usize = 10;

/// The state document of a source.
pub fn key(source: &str) -> String {
    format!("reconcile/{source}")
}

/// One event the system of record has and intake has not received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Missing {
    /// The dedupe key its webhook would have had.
    pub key: String,
    /// Its normalized channel.
    pub channel: String,
    /// Its event type.
    pub event_type: String,
    /// The object's id in the system of record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// When the system of record says it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
}

impl Missing {
    /// The missing event `e`.
    pub fn of(e: &NormalizedEvent) -> Missing {
        Missing {
            key: e.dedupe_key.clone(),
            channel: e.channel.as_str().to_string(),
            event_type: e.event_type.clone(),
            object_id: e.object_id.clone(),
            occurred_at: e.occurred_at,
        }
    }

    /// How an alert quotes it: the object's id, else its key.
    fn quoted(&self) -> String {
        self.object_id.clone().unwrap_or_else(|| self.key.clone())
    }
}

/// What one window's check found. (Named `WindowCheck` in the OpenAPI document, where
/// `Check` is the audit's.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = WindowCheck)]
pub struct Check {
    /// The window checked.
    pub window: Span,
    /// When.
    pub checked_at: Timestamp,
    /// Events the system of record listed inside the window (each dedupe key once).
    pub listed: u64,
    /// Of which intake had not received.
    pub missing: u64,
    /// Those, by channel.
    pub missing_by_channel: BTreeMap<String, u64>,
    /// The first of them (`reconcile.sample`).
    pub sample: Vec<Missing>,
    /// Requests the check sent to the system of record's API.
    pub requests: u64,
}

/// A window with events intake has not received, open until every one of them has arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// The window.
    pub window: Span,
    /// When the check found it.
    pub found_at: Timestamp,
    /// How many were missing then.
    pub found: u64,
    /// The events still missing, in the listing's order.
    pub missing: Vec<Missing>,
    /// The backfill job started for it (`reconcile.auto_backfill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
    /// That job's state when last looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_state: Option<String>,
}

/// A gap whose events all arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClosedGap {
    /// The window.
    pub window: Span,
    /// When it was found.
    pub found_at: Timestamp,
    /// When its last missing event was seen to have arrived.
    pub closed_at: Timestamp,
    /// How many were missing when it was found.
    pub found: u64,
    /// The backfill job started for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
}

/// Why the last tick did not check the system of record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Note {
    /// When.
    pub at: Timestamp,
    /// For people.
    pub message: String,
    /// The recovery job concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Everything reconciliation keeps about one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The end of the last window checked: the next one starts there.
    #[serde(default)]
    pub checked_until: Option<Timestamp>,
    /// The last window checked.
    #[serde(default)]
    pub last_check: Option<Check>,
    /// The last tick left the system of record alone: a backfill job of the source was
    /// queued or running (it covers the windows and needs the API budget), or windows were
    /// too far behind. Cleared by the next check.
    #[serde(default)]
    pub skipped: Option<Note>,
    /// The last check failed (the API refused, or could not be reached); the window is
    /// checked again at the next tick. Cleared by the next check that succeeds.
    #[serde(default)]
    pub error: Option<Note>,
    /// The open gaps, oldest first.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// The last gaps that closed, newest first (at most [`CLOSED_KEPT`]).
    #[serde(default)]
    pub closed: Vec<ClosedGap>,
}

impl SourceState {
    /// Records a window's check: `missing` are the events intake did not have, in the
    /// listing's order; a new gap opens when there are any. Returns the new gap's index.
    pub fn record_check(
        &mut self,
        window: Span,
        at: Timestamp,
        listed: u64,
        missing: Vec<Missing>,
        requests: u64,
        sample: usize,
    ) -> Option<usize> {
        let mut by_channel: BTreeMap<String, u64> = BTreeMap::new();
        for m in &missing {
            *by_channel.entry(m.channel.clone()).or_default() += 1;
        }
        self.last_check = Some(Check {
            window,
            checked_at: at,
            listed,
            missing: missing.len() as u64,
            missing_by_channel: by_channel,
            sample: missing.iter().take(sample).cloned().collect(),
            requests,
        });
        self.checked_until = Some(window.to);
        self.skipped = None;
        self.error = None;
        if missing.is_empty() {
            return None;
        }
        self.gaps.push(Gap {
            window,
            found_at: at,
            found: missing.len() as u64,
            missing,
            backfill: None,
            backfill_state: None,
        });
        Some(self.gaps.len() - 1)
    }

    /// Every key still missing, across the open gaps (to ask the store which arrived).
    pub fn missing_keys(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.gaps
            .iter()
            .flat_map(|g| g.missing.iter())
            .filter(|m| seen.insert(m.key.as_str()))
            .map(|m| m.key.clone())
            .collect()
    }

    /// The keys of `arrived` are no longer missing (a late webhook, a backfill); a gap left
    /// with none is closed at `now`. Returns the windows of the gaps that closed.
    pub fn settle(&mut self, arrived: &HashSet<String>, now: Timestamp) -> Vec<Span> {
        for g in &mut self.gaps {
            g.missing.retain(|m| !arrived.contains(&m.key));
        }
        let (closed, open): (Vec<Gap>, Vec<Gap>) = std::mem::take(&mut self.gaps)
            .into_iter()
            .partition(|g| g.missing.is_empty());
        self.gaps = open;
        let windows = closed.iter().map(|g| g.window).collect();
        for g in closed {
            self.closed.insert(
                0,
                ClosedGap {
                    window: g.window,
                    found_at: g.found_at,
                    closed_at: now,
                    found: g.found,
                    backfill: g.backfill,
                },
            );
        }
        self.closed.truncate(CLOSED_KEPT);
        windows
    }

    /// The open gaps that should get a backfill job: none unless `auto_backfill`, and never
    /// a gap that already has one (whatever became of it).
    pub fn needing_backfill(&self, auto_backfill: bool) -> Vec<usize> {
        if !auto_backfill {
            return Vec::new();
        }
        (0..self.gaps.len())
            .filter(|&i| self.gaps[i].backfill.is_none())
            .collect()
    }

    /// The open gaps as the monitor judges them (`source_gap`).
    pub fn report(&self, vendor: &str, sample: usize) -> GapReport {
        GapReport {
            vendor: vendor.to_string(),
            gaps: self.gaps.iter().map(|g| g.summary(sample)).collect(),
        }
    }
}

impl Gap {
    /// The gap in numbers: what is still missing, by channel, and the first `sample` items.
    pub fn summary(&self, sample: usize) -> OpenGap {
        let mut by_channel: BTreeMap<String, u64> = BTreeMap::new();
        for m in &self.missing {
            *by_channel.entry(m.channel.clone()).or_default() += 1;
        }
        OpenGap {
            from: self.window.from,
            to: self.window.to,
            missing: self.missing.len() as u64,
            by_channel,
            first: first_quoted(&self.missing, sample),
            backfill: self.backfill.clone(),
            backfill_state: self.backfill_state.clone(),
        }
    }
}

/// The first `sample` distinct objects of `missing` as an alert quotes them (a conversation's
/// creation and its update are one object).
fn first_quoted(missing: &[Missing], sample: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    missing
        .iter()
        .map(Missing::quoted)
        .filter(|q| seen.insert(q.clone()))
        .take(sample)
        .collect()
}

/// A source's state (empty before its first check).
pub async fn load(store: &dyn Store, source: &str) -> Result<SourceState, StoreError> {
    match store.get_state(&key(source)).await? {
        None => Ok(SourceState::default()),
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            StoreError::Corrupt(format!(
                "the reconciliation state of source `{source}` is unreadable: {e}"
            ))
        }),
    }
}

/// Writes a source's state, durably.
pub async fn save(store: &dyn Store, source: &str, state: &SourceState) -> Result<(), StoreError> {
    let json = serde_json::to_string(state)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the reconciliation state: {e}")))?;
    store.put_state(&key(source), json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(m: i64) -> Timestamp {
        Timestamp(1_795_000_000_000 + m * 60_000)
    }

    fn w(from: i64, to: i64) -> Span {
        Span {
            from: t(from),
            to: t(to),
        }
    }

    fn miss(key: &str, channel: &str) -> Missing {
        Missing {
            key: key.into(),
            channel: channel.into(),
            event_type: "kustomer.conversation.create".into(),
            object_id: Some(format!("obj-{key}")),
            occurred_at: None,
        }
    }

    fn keys(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn open(s: &SourceState) -> Vec<(Span, Vec<&str>)> {
        s.gaps
            .iter()
            .map(|g| (g.window, g.missing.iter().map(|m| m.key.as_str()).collect()))
            .collect()
    }

    #[test]
    fn a_check_advances_the_windows_and_opens_a_gap_only_when_something_is_missing() {
        let mut s = SourceState {
            skipped: Some(Note {
                at: t(0),
                message: "a backfill ran".into(),
                job: Some("rec_1".into()),
            }),
            error: Some(Note {
                at: t(0),
                message: "HTTP 503".into(),
                job: None,
            }),
            ..SourceState::default()
        };
        assert_eq!(s.record_check(w(0, 10), t(25), 40, vec![], 41, 10), None);
        assert_eq!(s.checked_until, Some(t(10)));
        assert!(s.gaps.is_empty() && s.skipped.is_none() && s.error.is_none());
        let missing = vec![
            miss("a", "email"),
            miss("b", "chat"),
            miss("c", "email"),
            miss("d", "email"),
        ];
        assert_eq!(
            s.record_check(w(10, 20), t(35), 50, missing, 52, 2),
            Some(0)
        );
        let c = s.last_check.as_ref().unwrap();
        assert_eq!((c.listed, c.missing, c.requests), (50, 4, 52));
        assert_eq!(
            c.missing_by_channel,
            BTreeMap::from([("chat".to_string(), 1), ("email".to_string(), 3)])
        );
        assert_eq!(
            c.sample.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(open(&s), vec![(w(10, 20), vec!["a", "b", "c", "d"])]);
        assert_eq!(s.gaps[0].found, 4);
        assert_eq!(s.checked_until, Some(t(20)));
    }

    #[test]
    fn arrivals_shrink_gaps_and_a_gap_with_none_left_closes() {
        type Step<'a> = (&'a [&'a str], Vec<(Span, Vec<&'a str>)>, Vec<Span>);
        let mut s = SourceState::default();
        s.record_check(
            w(0, 10),
            t(25),
            9,
            vec![miss("a", "email"), miss("b", "chat")],
            10,
            10,
        );
        s.record_check(w(10, 20), t(35), 9, vec![miss("c", "email")], 10, 10);
        s.gaps[1].backfill = Some("rec_9".into());
        let steps: Vec<Step> = vec![
            // Nothing arrived.
            (
                &[],
                vec![(w(0, 10), vec!["a", "b"]), (w(10, 20), vec!["c"])],
                vec![],
            ),
            // A late webhook of `a`, and a key no gap misses.
            (
                &["a", "zz"],
                vec![(w(0, 10), vec!["b"]), (w(10, 20), vec!["c"])],
                vec![],
            ),
            // The backfill brought `c`: its gap closes; the other stays open.
            (&["c"], vec![(w(0, 10), vec!["b"])], vec![w(10, 20)]),
            (&["b"], vec![], vec![w(0, 10)]),
            (&["b"], vec![], vec![]),
        ];
        for (i, (arrived, still, closed)) in steps.into_iter().enumerate() {
            let got = s.settle(&keys(arrived), t(40 + i as i64));
            assert_eq!(got, closed, "step {i}");
            assert_eq!(open(&s), still, "step {i}");
        }
        assert_eq!(s.closed.len(), 2);
        assert_eq!(s.closed[0].window, w(0, 10));
        assert_eq!(s.closed[0].found, 2);
        assert_eq!(s.closed[0].closed_at, t(43));
        assert_eq!(s.closed[1].backfill.as_deref(), Some("rec_9"));
    }

    #[test]
    fn only_gaps_without_a_job_get_one_and_only_with_auto_backfill() {
        let mut s = SourceState::default();
        for i in 0..3 {
            s.record_check(
                w(i * 10, i * 10 + 10),
                t(40),
                1,
                vec![miss(&format!("k{i}"), "chat")],
                1,
                10,
            );
        }
        s.gaps[1].backfill = Some("rec_1".into());
        s.gaps[1].backfill_state = Some("failed".into());
        assert_eq!(s.needing_backfill(false), Vec::<usize>::new());
        assert_eq!(s.needing_backfill(true), vec![0, 2]);
    }

    #[test]
    fn the_monitor_sees_what_is_still_missing_by_channel_with_object_ids() {
        let mut s = SourceState::default();
        s.record_check(
            w(0, 10),
            t(25),
            9,
            vec![miss("a", "email"), miss("b", "chat"), miss("c", "email")],
            10,
            10,
        );
        s.gaps[0].backfill = Some("rec_7".into());
        s.gaps[0].backfill_state = Some("running".into());
        // The same object twice (a conversation's creation and its update) is quoted once.
        let mut again = miss("a2", "email");
        again.object_id = Some("obj-a".into());
        s.gaps[0].missing.insert(1, again);
        assert_eq!(
            s.report("Kustomer", 3).gaps[0].first,
            ["obj-a", "obj-b", "obj-c"]
        );
        s.gaps[0].missing.remove(1);
        s.settle(&keys(&["b"]), t(30));
        let r = s.report("Kustomer", 1);
        assert_eq!(r.vendor, "Kustomer");
        assert_eq!(r.gaps.len(), 1);
        let g = &r.gaps[0];
        assert_eq!((g.from, g.to, g.missing), (t(0), t(10), 2));
        assert_eq!(g.by_channel, BTreeMap::from([("email".to_string(), 2)]));
        assert_eq!(g.first, ["obj-a"]);
        assert_eq!(g.backfill.as_deref(), Some("rec_7"));
        assert_eq!(g.backfill_state.as_deref(), Some("running"));
        assert_eq!(s.missing_keys(), ["a", "c"]);
    }
}
