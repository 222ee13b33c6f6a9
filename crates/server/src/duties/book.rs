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

use std::collections::{BTreeMap, HashMap};

use intake_core::Timestamp;
use intake_monitor::{ActiveAlert, BaselineKind, ExpectedHour, FlowBand, FlowKey, Monitor};
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

/// Every flow's expectation document at `now`, by key.
pub fn flow_expectations(
    monitor: &Monitor,
    now: Timestamp,
) -> Result<BTreeMap<String, String>, StoreError> {
    let kinds: HashMap<FlowKey, Option<BaselineKind>> = monitor
        .flow_status(now)
        .into_iter()
        .map(|st| (st.key, st.baseline))
        .collect();
    monitor
        .flow_bands(now, 2)
        .into_iter()
        .map(|band| {
            let doc = FlowExpectation {
                hour: Timestamp(now.as_millis().div_euclid(HOUR_MS) * HOUR_MS),
                baseline: kinds.get(&band.key).copied().flatten(),
                hours: band.hours,
                key: band.key,
            };
            let json = serde_json::to_string(&doc).map_err(|e| {
                StoreError::Corrupt(format!("cannot encode a flow's expectation: {e}"))
            })?;
            Ok((flow_state_key(&doc.key), json))
        })
        .collect()
}

/// What to write so that the stored documents (`stored`) become `wanted`: each document that
/// is new or changed, and a deletion for each stored one no longer wanted, in key order.
pub fn changes(
    stored: &HashMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>)> {
    let mut writes: Vec<(String, Option<String>)> = wanted
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    writes.extend(
        stored
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    writes.sort_by(|a, b| a.0.cmp(&b.0));
    writes
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

    fn docs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_new_changed_and_gone_documents_are_written() {
        // (stored, wanted, writes)
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [(&'static str, &'static str)],
            &'static [(&'static str, Option<&'static str>)],
        );
        let cases: [Case; 5] = [
            (&[], &[], &[]),
            (
                &[],
                &[("a", "1"), ("b", "2")],
                &[("a", Some("1")), ("b", Some("2"))],
            ),
            (&[("a", "1"), ("b", "2")], &[("a", "1"), ("b", "2")], &[]),
            (
                &[("a", "1"), ("b", "2")],
                &[("a", "1"), ("b", "3")],
                &[("b", Some("3"))],
            ),
            (
                &[("a", "1"), ("flows", ""), ("c", "3")],
                &[("a", "1"), ("d", "4")],
                &[("c", None), ("d", Some("4")), ("flows", None)],
            ),
        ];
        for (stored, wanted, writes) in cases {
            let stored: HashMap<String, String> = docs(stored).into_iter().collect();
            let got = changes(&stored, &docs(wanted));
            let expected: Vec<(String, Option<String>)> = writes
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect();
            assert_eq!(got, expected, "stored {stored:?}, wanted {wanted:?}");
        }
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
