//! What the monitor duty keeps in the store for everyone else: the alert book (pending and
//! firing alerts), each flow's expectation of the hour now and the hour before (one document
//! per flow, [`FlowExpectation`]), and each flow's expected band over the last day (for the
//! dashboard), as state documents.
//!
//! The monitor duty writes them; the notification pipeline, the admin API and `/metrics` read
//! them here, so every node answers the same whichever node evaluates, and no reader has to
//! go through an HTTP handler to get them.
//!
//! The flows' expectations are kept one document per flow and written only when they change
//! ([`changes`]): at 10,000 flows, the single document of every flow's status that the monitor
//! used to rewrite at every evaluation was about 2 MB a minute, most of it unchanged. What
//! moves every minute (the count of the last hour, the window sliding over two hours'
//! baselines) is left to the reader, who has the counters and the two hours
//! ([`FlowExpectation::expected_over`]); what is stored changes once an hour.

use std::collections::{BTreeSet, HashMap, HashSet};

use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, BaselineKind, ExpectedHour, FlowBand, FlowHours, FlowKey};
use intake_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// The state document holding the alert book (pending and firing alerts), as JSON.
pub const ALERTS_STATE: &str = "alerts";
/// The state document that held every flow's status at the last evaluation, as JSON, before
/// the expectations were kept one document per flow ([`FLOW_PREFIX`]). The monitor deletes it.
pub const FLOWS_STATE: &str = "flows";
/// The prefix of the per-flow expectation documents: `flow:` and the flow's key as a JSON
/// array `[tenant, source, channel]`.
pub const FLOW_PREFIX: &str = "flow:";
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

/// What the monitor expects of one flow: the baselines of the hour in progress and the hour
/// before it (hours without a baseline are left out), and which baseline the hour in progress
/// has. It changes when an hour begins, not at every evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowExpectation {
    /// The flow.
    #[serde(flatten)]
    pub key: FlowKey,
    /// The start of the hour the evaluation that wrote it fell in.
    pub hour: Timestamp,
    /// Which baseline the expectation comes from (none yet: no expectation).
    pub baseline: Option<BaselineKind>,
    /// The expectations of that hour and the one before, oldest first.
    pub hours: Vec<ExpectedHour>,
}

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

impl FlowExpectation {
    /// The expected count over the 60 minutes that end at `end` (a minute boundary), read as
    /// the detectors read it: each minute has a sixtieth of its hour's baseline, an hour
    /// without one contributes nothing. The window never ends after the hour of the
    /// evaluation that wrote the document, so a reading made between an hour's start and the
    /// monitor's first evaluation in it shows that hour rather than nothing. `None` when the
    /// window's last hour has no baseline.
    pub fn expected_over(&self, end: Timestamp) -> Option<f64> {
        let end = end.as_millis().min(self.hour.as_millis() + HOUR_MS);
        let from = end - HOUR_MS;
        let last_hour = (end - MINUTE_MS).div_euclid(HOUR_MS) * HOUR_MS;
        self.hours.iter().find(|h| h.at.as_millis() == last_hour)?;
        Some(
            self.hours
                .iter()
                .map(|h| {
                    let (start, stop) = (h.at.as_millis(), h.at.as_millis() + HOUR_MS);
                    let overlap = (stop.min(end) - start.max(from)).max(0);
                    h.expected * overlap as f64 / HOUR_MS as f64
                })
                .sum(),
        )
    }
}

/// The key of a flow's expectation document.
pub fn flow_state_key(key: &FlowKey) -> String {
    let parts = [&key.tenant, &key.source, &key.channel];
    // Three strings always encode; the fallback only keeps this infallible.
    let json = serde_json::to_string(&parts).unwrap_or_else(|_| format!("{parts:?}"));
    format!("{FLOW_PREFIX}{json}")
}

/// The flows' expectations as stored, kept as numbers by flow, so that an evaluation compares
/// numbers with numbers and encodes only the documents that changed ([`changes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredFlows {
    /// The readable documents, by flow.
    flows: HashMap<FlowKey, FlowExpectation>,
    /// Keys of stored documents that are no flow's expectation (unreadable, stored under
    /// another key than their flow's, or the single document of earlier versions): deleted
    /// at the next write.
    strays: BTreeSet<String>,
}

impl StoredFlows {
    /// What the store holds: its documents under [`FLOW_PREFIX`], by key.
    pub fn from_documents(docs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut stored = StoredFlows::default();
        for (key, json) in docs {
            match serde_json::from_str::<FlowExpectation>(&json) {
                Ok(doc) if flow_state_key(&doc.key) == key => {
                    stored.flows.insert(doc.key.clone(), doc);
                }
                _ => {
                    stored.strays.insert(key);
                }
            }
        }
        stored
    }

    /// Adds a key to delete at the next write whatever it holds.
    pub fn add_stray(&mut self, key: impl Into<String>) {
        self.strays.insert(key.into());
    }

    /// How many flows' documents are stored.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when no flow's document is stored.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Records that `changes` were written.
    pub fn apply(&mut self, changes: Vec<FlowChange>) {
        for change in changes {
            match change {
                FlowChange::Put(doc) => {
                    self.flows.insert(doc.key.clone(), doc);
                }
                FlowChange::Forget(key) => {
                    self.flows.remove(&key);
                }
                FlowChange::DeleteStray(key) => {
                    self.strays.remove(&key);
                }
            }
        }
    }
}

/// One write that brings the stored expectations in step with the monitor's.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowChange {
    /// A flow's new or changed expectation.
    Put(FlowExpectation),
    /// A flow no longer watched: its document is deleted.
    Forget(FlowKey),
    /// A stored key that is no flow's document: deleted.
    DeleteStray(String),
}

/// True when the stored document says what `now` says: the same hour, baseline kind and
/// expected hours (an hour without a baseline is left out of a document).
fn unchanged(doc: &FlowExpectation, now: &FlowHours<'_>) -> bool {
    doc.hour == now.hour
        && doc.baseline == now.baseline
        && doc.hours.iter().eq(now.hours.iter().flatten())
}

/// What to write so that `stored` becomes what the monitor expects of each flow (`wanted`,
/// from [`intake_monitor::Monitor::flow_hours`]): each flow whose expectation is new or changed, the flows
/// no longer watched, and the stray keys. The numbers are compared as they are; only a
/// changed flow has its key copied and, later, its document encoded ([`encode`]).
pub fn changes<'a>(
    stored: &StoredFlows,
    wanted: impl IntoIterator<Item = FlowHours<'a>>,
) -> Vec<FlowChange> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut keys: Vec<&'a FlowKey> = Vec::new();
    for now in wanted {
        keys.push(now.key);
        match stored.flows.get(now.key) {
            Some(doc) if unchanged(doc, &now) => seen += 1,
            found => {
                seen += usize::from(found.is_some());
                out.push(FlowChange::Put(FlowExpectation {
                    key: now.key.clone(),
                    hour: now.hour,
                    baseline: now.baseline,
                    hours: now.hours.iter().flatten().copied().collect(),
                }));
            }
        }
    }
    // Every stored flow was seen among the wanted ones unless some are no longer watched;
    // only then is the set of wanted keys worth building.
    if seen < stored.flows.len() {
        let wanted: HashSet<&FlowKey> = keys.into_iter().collect();
        out.extend(
            stored
                .flows
                .keys()
                .filter(|k| !wanted.contains(k))
                .map(|k| FlowChange::Forget(k.clone())),
        );
    }
    out.extend(stored.strays.iter().cloned().map(FlowChange::DeleteStray));
    out
}

/// The state documents to write for `changes`, in key order (so that two writers touch the
/// rows in the same order).
pub fn encode(changes: &[FlowChange]) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let mut writes = changes
        .iter()
        .map(|change| {
            Ok(match change {
                FlowChange::Put(doc) => {
                    let json = serde_json::to_string(doc).map_err(|e| {
                        StoreError::Corrupt(format!("cannot encode a flow's expectation: {e}"))
                    })?;
                    (flow_state_key(&doc.key), Some(json))
                }
                FlowChange::Forget(key) => (flow_state_key(key), None),
                FlowChange::DeleteStray(key) => (key.clone(), None),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    writes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(writes)
}

/// Every flow's stored expectation (empty before the monitor's first evaluation). A document
/// that cannot be read is left out, so one bad flow does not hide the others.
pub(crate) async fn flow_expectation_docs(
    store: &dyn Store,
) -> Result<Vec<FlowExpectation>, StoreError> {
    Ok(store
        .states_with_prefix(FLOW_PREFIX)
        .await?
        .into_iter()
        .filter_map(|(_, json)| serde_json::from_str(&json).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(name: &str) -> FlowKey {
        FlowKey {
            tenant: "t".into(),
            source: name.into(),
            channel: "email".into(),
        }
    }

    /// A flow's expectation in hour `hour`: its baseline's weeks (0: none) and the two hours'
    /// expected counts.
    type Numbers = (&'static str, i64, u32, [Option<f64>; 2]);

    fn hours_of<'k>(keys: &'k [FlowKey], numbers: &[Numbers]) -> Vec<FlowHours<'k>> {
        numbers
            .iter()
            .map(|&(name, hour, weeks, expected)| {
                let key = keys.iter().find(|k| k.source == name).expect("a test flow");
                FlowHours {
                    key,
                    hour: Timestamp(hour * HOUR_MS),
                    baseline: (weeks > 0).then_some(BaselineKind::Seasonal { weeks }),
                    hours: [
                        expected[0].map(|e| ExpectedHour {
                            at: Timestamp((hour - 1) * HOUR_MS),
                            expected: e,
                        }),
                        expected[1].map(|e| ExpectedHour {
                            at: Timestamp(hour * HOUR_MS),
                            expected: e,
                        }),
                    ],
                }
            })
            .collect()
    }

    #[test]
    fn only_new_changed_and_gone_flows_are_written() {
        let keys: Vec<FlowKey> = ["a", "b", "c"].into_iter().map(flow).collect();
        // (stored, stray keys, wanted, written keys: `+` put, `-` deleted)
        type Case = (
            &'static [Numbers],
            &'static [&'static str],
            &'static [Numbers],
            &'static [&'static str],
        );
        let cases: [Case; 10] = [
            (&[], &[], &[], &[]),
            // Nothing stored: every flow.
            (
                &[],
                &[],
                &[("a", 10, 4, [None, Some(1.0)]), ("b", 10, 0, [None, None])],
                &["+a", "+b"],
            ),
            // The same numbers: nothing.
            (
                &[("a", 10, 4, [Some(1.0), Some(2.0)])],
                &[],
                &[("a", 10, 4, [Some(1.0), Some(2.0)])],
                &[],
            ),
            // An expected count changed within the hour (history arrived late).
            (
                &[
                    ("a", 10, 4, [Some(1.0), Some(2.0)]),
                    ("b", 10, 4, [None, Some(2.0)]),
                ],
                &[],
                &[
                    ("a", 10, 4, [Some(1.0), Some(2.5)]),
                    ("b", 10, 4, [None, Some(2.0)]),
                ],
                &["+a"],
            ),
            // A new hour: every flow, once.
            (
                &[("a", 10, 4, [Some(1.0), Some(2.0)])],
                &[],
                &[("a", 11, 4, [Some(1.0), Some(2.0)])],
                &["+a"],
            ),
            // The baseline's kind changed.
            (
                &[("a", 10, 3, [Some(1.0), Some(2.0)])],
                &[],
                &[("a", 10, 4, [Some(1.0), Some(2.0)])],
                &["+a"],
            ),
            // The hour before gained a baseline.
            (
                &[("a", 10, 4, [None, Some(2.0)])],
                &[],
                &[("a", 10, 4, [Some(1.0), Some(2.0)])],
                &["+a"],
            ),
            // A flow no longer watched is deleted; the others are left alone.
            (
                &[("a", 10, 4, [None, None]), ("c", 10, 4, [None, None])],
                &[],
                &[("a", 10, 4, [None, None])],
                &["-c"],
            ),
            // One gone and one new: the count of stored flows seen is not fooled.
            (
                &[("a", 10, 4, [None, None]), ("c", 10, 4, [None, None])],
                &[],
                &[("a", 10, 4, [None, None]), ("b", 10, 4, [None, None])],
                &["+b", "-c"],
            ),
            // Stray keys (the old single document, an unreadable one) are deleted.
            (
                &[("a", 10, 4, [None, None])],
                &["flows", "flow:junk"],
                &[("a", 10, 4, [None, None])],
                &["-flow:junk", "-flows"],
            ),
        ];
        for (stored_numbers, strays, wanted, written) in cases {
            let mut stored = StoredFlows::default();
            stored.apply(changes(
                &StoredFlows::default(),
                hours_of(&keys, stored_numbers),
            ));
            for s in strays {
                stored.add_stray(*s);
            }
            let got = changes(&stored, hours_of(&keys, wanted));
            let mut got: Vec<String> = got
                .iter()
                .map(|c| match c {
                    FlowChange::Put(doc) => format!("+{}", doc.key.source),
                    FlowChange::Forget(k) => format!("-{}", k.source),
                    FlowChange::DeleteStray(k) => format!("-{k}"),
                })
                .collect();
            got.sort();
            assert_eq!(got, written, "stored {stored_numbers:?}, wanted {wanted:?}");
            // Once written, the same wanted numbers write nothing.
            let writes = changes(&stored, hours_of(&keys, wanted));
            stored.apply(writes);
            assert_eq!(changes(&stored, hours_of(&keys, wanted)), Vec::new());
        }
    }

    #[test]
    fn stored_documents_are_read_back_as_numbers_and_strays() {
        let keys = vec![flow("a")];
        let writes = encode(&changes(
            &StoredFlows::default(),
            hours_of(&keys, &[("a", 10, 4, [Some(1.5), Some(2.0)])]),
        ))
        .expect("encodes");
        let mut docs: Vec<(String, String)> = writes
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        assert_eq!(docs.len(), 1);
        let doc = docs[0].1.clone();
        docs.push(("flow:[\"t\",\"x\",\"email\"]".into(), doc));
        docs.push(("flow:junk".into(), "{".into()));
        let stored = StoredFlows::from_documents(docs);
        assert_eq!(stored.len(), 1);
        let wanted = hours_of(&keys, &[("a", 10, 4, [Some(1.5), Some(2.0)])]);
        let mut left: Vec<String> = encode(&changes(&stored, wanted))
            .expect("encodes")
            .into_iter()
            .map(|(k, v)| format!("{k} {v:?}"))
            .collect();
        left.sort();
        // The copy under another flow's key and the unreadable one are deleted; the flow
        // itself is unchanged.
        assert_eq!(
            left,
            ["flow:[\"t\",\"x\",\"email\"] None", "flow:junk None"]
        );
    }

    #[test]
    fn a_flow_is_written_once_an_hour_even_when_its_baseline_kind_changes_at_the_hour() {
        use intake_monitor::{Monitor, MonitorSettings, RuleBook};
        let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
        let start: i64 = 1_767_571_200_000 / HOUR_MS;
        let now_hour = start + 4 * 168;
        // Four weeks of hours exactly: the hour in progress has four weeks behind it, the hour
        // before only three, so the baseline kind of the last complete minute's hour (what
        // the flows API's status gives) changes one minute after the hour starts.
        for key in ["a", "b"].map(flow) {
            for h in start..now_hour {
                monitor.record_flow_hour(&key, Timestamp(h * HOUR_MS), 30 + (h % 24) as u32);
            }
        }
        let at = |m: i64| Timestamp(now_hour * HOUR_MS + m * MINUTE_MS + 5_000);
        let kinds = |m: i64| -> Vec<Option<BaselineKind>> {
            monitor
                .flow_status(at(m))
                .iter()
                .map(|s| s.baseline)
                .collect()
        };
        assert_ne!(
            kinds(0),
            kinds(1),
            "the scenario's kinds change at minute 1"
        );
        let mut stored = StoredFlows::default();
        let mut written = Vec::new();
        for m in 0..=61 {
            let writes = changes(&stored, monitor.flow_hours(at(m)));
            written.push(writes.len());
            stored.apply(writes);
        }
        let expected: Vec<usize> = (0..=61)
            .map(|m| if m == 0 || m == 60 { 2 } else { 0 })
            .collect();
        assert_eq!(written, expected);
    }

    fn expectation(hour: i64, hours: &[(i64, f64)]) -> FlowExpectation {
        FlowExpectation {
            hour: Timestamp(hour * HOUR_MS),
            key: FlowKey {
                tenant: "t".into(),
                source: "s".into(),
                channel: "email".into(),
            },
            baseline: None,
            hours: hours
                .iter()
                .map(|&(h, expected)| ExpectedHour {
                    at: Timestamp(h * HOUR_MS),
                    expected,
                })
                .collect(),
        }
    }

    #[test]
    fn the_expected_count_slides_over_the_two_hours() {
        let at = |h: i64, m: i64| Timestamp(h * HOUR_MS + m * MINUTE_MS);
        // (hour written in, stored hours, end of the window, expected)
        type Case = (i64, &'static [(i64, f64)], Timestamp, Option<f64>);
        let cases: [Case; 9] = [
            // At an hour's end the window is that hour.
            (10, &[(9, 60.0), (10, 120.0)], at(11, 0), Some(120.0)),
            // Twenty minutes into hour 10: 40 minutes of hour 9, 20 of hour 10.
            (10, &[(9, 60.0), (10, 120.0)], at(10, 20), Some(40.0 + 40.0)),
            // Exactly at hour 10's start: hour 9 alone.
            (10, &[(9, 60.0), (10, 120.0)], at(10, 0), Some(60.0)),
            // An hour before without a baseline contributes nothing.
            (10, &[(10, 120.0)], at(10, 30), Some(60.0)),
            // The window's last hour without one: no expectation.
            (10, &[(9, 60.0)], at(10, 30), None),
            (10, &[], at(10, 30), None),
            // Read after the hour it was written in ended (before the monitor's first
            // evaluation of the next): the window stops at that hour's end.
            (10, &[(9, 60.0), (10, 120.0)], at(11, 1), Some(120.0)),
            (10, &[(9, 60.0), (10, 120.0)], at(14, 30), Some(120.0)),
            (10, &[(9, 60.0)], at(11, 1), None),
        ];
        for (hour, hours, end, expected) in cases {
            assert_eq!(
                expectation(hour, hours).expected_over(end),
                expected,
                "hours {hours:?}, end {end:?}"
            );
        }
    }

    #[test]
    fn flow_keys_are_unique_whatever_the_ids_hold() {
        let key = |t: &str, s: &str, c: &str| {
            flow_state_key(&FlowKey {
                tenant: t.into(),
                source: s.into(),
                channel: c.into(),
            })
        };
        assert_eq!(key("t", "s", "email"), r#"flow:["t","s","email"]"#);
        assert_ne!(key("t", "s/x", "c"), key("t", "s", "x/c"));
        assert_ne!(key("t\",", "s", "c"), key("t", "\",s", "c"));
    }
}
