//! Per-series history, kept by the monitor and fed minute by minute by the caller.
//!
//! A tick over 10,000 series must be cheap, so the monitor does not re-read weeks of minutes
//! on every evaluation. Each series keeps two fixed-size rings: per-minute counts for the last
//! few hours (what the windowed rules look at) and per-hour counts for the last weeks (what the
//! seasonal baselines are made of). Feeding a minute is O(1); a flow series costs about 4 KiB.
//!
//! The caller feeds counts with *set* semantics: recording the same minute twice replaces the
//! first value (while the minute is still in the minute ring), so re-reading the last minutes
//! from the store after a late commit is harmless. Minutes older than the minute ring only add
//! to the hourly ring: that is how a monitor is bootstrapped from downsampled history.

use serde::{Deserialize, Serialize};

use crate::burst::{BurstStats, GapLengths};
use crate::shape::HourShapes;

/// Minutes since the Unix epoch: the unit every series is indexed by.
pub type Minute = i64;

/// Hours since the Unix epoch.
pub type Hour = i64;

/// The minute an instant in milliseconds falls in.
pub fn minute_of_millis(ms: i64) -> Minute {
    ms.div_euclid(60_000)
}

/// The hour a minute falls in.
pub fn hour_of(m: Minute) -> Hour {
    m.div_euclid(60)
}

/// A fixed-capacity ring of values indexed by an absolute unit (a minute or an hour).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ring<T> {
    values: Vec<T>,
    /// The newest index held, `None` while empty.
    newest: Option<i64>,
}

impl<T: Copy + Default> Ring<T> {
    /// An empty ring of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Ring {
            values: vec![T::default(); capacity.max(1)],
            newest: None,
        }
    }

    fn slot(&self, i: i64) -> usize {
        i.rem_euclid(self.values.len() as i64) as usize
    }

    /// The newest index held.
    pub fn newest(&self) -> Option<i64> {
        self.newest
    }

    /// The oldest index the ring can still answer for.
    pub fn oldest(&self) -> Option<i64> {
        self.newest.map(|n| n - self.values.len() as i64 + 1)
    }

    /// Moves the ring forward so that `i` is held, zeroing the slots it passes.
    pub fn advance_to(&mut self, i: i64) {
        let cap = self.values.len() as i64;
        match self.newest {
            None => {
                self.values.iter_mut().for_each(|v| *v = T::default());
                self.newest = Some(i);
            }
            Some(n) if i > n => {
                if i - n >= cap {
                    self.values.iter_mut().for_each(|v| *v = T::default());
                } else {
                    for j in n + 1..=i {
                        let s = self.slot(j);
                        self.values[s] = T::default();
                    }
                }
                self.newest = Some(i);
            }
            _ => {}
        }
    }

    /// The value at `i`, `None` when `i` is outside the ring (not yet or no longer held).
    pub fn get(&self, i: i64) -> Option<T> {
        let n = self.newest?;
        if i > n || i <= n - self.values.len() as i64 {
            return None;
        }
        Some(self.values[self.slot(i)])
    }

    /// A mutable reference to the value at `i`, if held.
    pub fn get_mut(&mut self, i: i64) -> Option<&mut T> {
        self.get(i)?;
        let s = self.slot(i);
        Some(&mut self.values[s])
    }
}

/// Hours of per-hour longest gaps kept per flow: two weeks and a day, so that the same hour of
/// the day can be looked at on each of the last 14 days, and a silence of up to a day beside it.
pub(crate) const GAP_HOURS: usize = 15 * 24;

/// Marks an hour in the gap ring whose gaps are not known (fed as a whole hour).
pub(crate) const GAP_UNKNOWN: u16 = u16::MAX;

/// The gap-events ring stores tenths of an expected event.
pub(crate) const GAP_EVENTS_SCALE: f64 = 10.0;

/// Minutes after an hour's end before its minutes are taken as final: the server reads the
/// last two minutes again (a counter committed right at a minute's end).
const SETTLE_MINUTES: i64 = 3;

/// The part of a silence's exposure that `inbound_stopped` reads before its usual window (a
/// slow flow's working day), computed once for the silence that began at `start` with a
/// planned quiet day from `floor` (`Minute::MIN` for none): its events, its expectation and
/// its minutes, or `None` where the exposure was not extended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EarlierExposure {
    pub(crate) start: Minute,
    pub(crate) floor: Minute,
    pub(crate) part: Option<(f64, f64, i64)>,
}

/// What inbound flow has been seen on one (tenant, source, channel).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowHistory {
    /// The first minute this series existed (a silent source is zero, not missing).
    pub(crate) first_minute: Minute,
    pub(crate) minutes: Ring<u32>,
    pub(crate) hours: Ring<u32>,
    /// The newest minute with at least one event.
    pub(crate) last_event: Option<Minute>,
    /// Gaps between consecutive minutes with events: how many, and the longest (minutes).
    pub(crate) gap_count: u32,
    pub(crate) longest_gap: i64,
    /// Per hour, the longest completed gap between events (minutes) that overlapped it, for
    /// the gap rule of series that have a baseline; [`GAP_UNKNOWN`] for hours fed only as
    /// whole hours (bootstrapped), whose gaps are not known.
    pub(crate) gap_hours: Ring<u16>,
    /// Per hour, the largest completed gap that overlapped it *in expected events*: its empty
    /// minutes times the flow's rate over the hour before the gap began (tenths, see
    /// [`GAP_EVENTS_SCALE`]), so that gaps at different rates compare. [`GAP_UNKNOWN`] where
    /// not known. This is the flow's own record of its silences, which `inbound_stopped`
    /// checks a silence against before it pages.
    #[serde(default = "gap_ring")]
    pub(crate) gap_events: Ring<u16>,
    /// How the flow's events clump at the minute scale.
    #[serde(default)]
    pub(crate) burst: BurstStats,
    /// The lengths of the gaps between its minutes with events, for a polled flow's period.
    #[serde(default)]
    pub(crate) gap_lengths: GapLengths,
    /// Where its events fall within each hour of the day (the quarters' shares).
    #[serde(default)]
    pub(crate) shapes: HourShapes,
    /// The last hour whose minutes `burst` has taken in.
    #[serde(default)]
    pub(crate) burst_through: Option<Hour>,
    /// Dispersion estimate and the hour it was computed at.
    pub(crate) alpha: Option<(Hour, f64)>,
    /// The hour-to-hour part of that dispersion, estimated with it.
    pub(crate) alpha_hour: f64,
    /// The current silence's earlier exposure, kept for the silence (a slow flow's working
    /// day is read once, not on every tick); rebuilt after a restart.
    #[serde(skip)]
    pub(crate) earlier_exposure: Option<EarlierExposure>,
    /// The last event before the silence `inbound_stopped` found, and the reason it gave:
    /// the finding holds until an event arrives (see `stopped::held`).
    #[serde(skip)]
    pub(crate) stopped_on: Option<(Minute, String)>,
    /// Consecutive windows in which `inbound_drop` was significant.
    pub(crate) drop_streak: u32,
    /// The `inbound_drop` finding of the last evaluated window, carried between windows.
    pub(crate) drop_finding: Option<(f64, String)>,
}

impl FlowHistory {
    /// A series that exists from `first_minute`, keeping `minute_capacity` minutes and
    /// `hour_capacity` hours.
    pub fn new(first_minute: Minute, minute_capacity: usize, hour_capacity: usize) -> Self {
        FlowHistory {
            first_minute,
            minutes: Ring::new(minute_capacity),
            hours: Ring::new(hour_capacity),
            last_event: None,
            gap_count: 0,
            longest_gap: 0,
            gap_hours: Ring::new(GAP_HOURS),
            gap_events: gap_ring(),
            burst: BurstStats::new(),
            gap_lengths: GapLengths::default(),
            shapes: HourShapes::default(),
            burst_through: None,
            alpha: None,
            alpha_hour: 0.0,
            earlier_exposure: None,
            stopped_on: None,
            drop_streak: 0,
            drop_finding: None,
        }
    }

    /// The minute this series started to exist.
    pub fn first_minute(&self) -> Minute {
        self.first_minute
    }

    /// The newest minute with at least one event.
    pub fn last_event(&self) -> Option<Minute> {
        self.last_event
    }

    /// Records `count` events in minute `m` (set semantics, see the module docs).
    pub fn record(&mut self, m: Minute, count: u32) {
        if m < self.first_minute {
            self.first_minute = m;
        }
        let h = hour_of(m);
        if self.minutes.newest().is_none_or(|n| m > n) {
            self.minutes.advance_to(m);
        }
        self.hours.advance_to(h);
        match self.minutes.get_mut(m) {
            Some(slot) => {
                let old = *slot;
                *slot = count;
                if let Some(hs) = self.hours.get_mut(h) {
                    *hs = hs.saturating_sub(old).saturating_add(count);
                }
            }
            None => {
                if let Some(hs) = self.hours.get_mut(h) {
                    *hs = hs.saturating_add(count);
                }
            }
        }
        if count > 0 {
            match self.last_event {
                Some(last) if m > last => {
                    self.gap_count = self.gap_count.saturating_add(1);
                    self.longest_gap = self.longest_gap.max(m - last);
                    self.note_gap(last, m);
                    self.last_event = Some(m);
                }
                None => self.last_event = Some(m),
                _ => {}
            }
        }
    }

    /// Notes a completed gap between events in minutes `last` and `m` in every hour it
    /// overlapped (at most the ring's span, the newest hours): its length in minutes, and its
    /// empty minutes in expected events at the rate of the hour before it began.
    fn note_gap(&mut self, last: Minute, m: Minute) {
        self.note_gap_minutes(last, m);
        if m - last < 2 {
            return;
        }
        let (before, held) = self.sum_minutes(last - 59, last + 1);
        if held < 60 {
            return;
        }
        let events = (m - last - 1) as f64 * before as f64 / 60.0;
        let v = (events * GAP_EVENTS_SCALE)
            .round()
            .min(f64::from(GAP_UNKNOWN - 1)) as u16;
        let to = hour_of(m - 1);
        if self.gap_events.newest().is_none_or(|n| to > n) {
            self.gap_events.advance_to(to);
        }
        let from = hour_of(last + 1).max(to - GAP_HOURS as i64 + 1);
        for h in from..=to {
            if let Some(slot) = self.gap_events.get_mut(h) {
                if *slot != GAP_UNKNOWN {
                    *slot = (*slot).max(v);
                }
            }
        }
    }

    fn note_gap_minutes(&mut self, last: Minute, m: Minute) {
        let g = u16::try_from(m - last)
            .unwrap_or(GAP_UNKNOWN - 1)
            .min(GAP_UNKNOWN - 1);
        let to = hour_of(m);
        if self.gap_hours.newest().is_none_or(|n| to > n) {
            self.gap_hours.advance_to(to);
        }
        let from = hour_of(last).max(to - GAP_HOURS as i64 + 1);
        for h in from..=to {
            if let Some(slot) = self.gap_hours.get_mut(h) {
                if *slot != GAP_UNKNOWN {
                    *slot = (*slot).max(g);
                }
            }
        }
    }

    /// The longest completed gap between events that overlapped hour `h`: `Some(0)` when no
    /// gap was closed over it, `None` when it is not held or its gaps are unknown.
    pub(crate) fn gap_at(&self, h: Hour) -> Option<u16> {
        if h * 60 < self.first_minute {
            return None;
        }
        self.gap_hours.get(h).filter(|&g| g != GAP_UNKNOWN)
    }

    /// The largest gap in expected events that overlapped hour `h` (see `gap_events`):
    /// `None` when the hour is not held, its minutes were not all seen, or it is before the
    /// series' start.
    pub(crate) fn gap_events_at(&self, h: Hour) -> Option<f64> {
        if h * 60 < self.first_minute {
            return None;
        }
        self.gap_events
            .get(h)
            .filter(|&g| g != GAP_UNKNOWN)
            .map(|g| f64::from(g) / GAP_EVENTS_SCALE)
    }

    /// How the flow's events clump at the minute scale.
    pub fn burst(&self) -> &BurstStats {
        &self.burst
    }

    /// Hands the burst statistics, the gap lengths and the hours' shapes every hour that
    /// completed (and settled) before minute `m` whose 60 minutes the minute ring holds.
    pub(crate) fn settle_bursts(&mut self, m: Minute) {
        let last_done = hour_of(m - SETTLE_MINUTES) - 1;
        let oldest = match self.minutes.oldest() {
            Some(o) => hour_of(o + 59),
            None => return,
        };
        let first = match self.burst_through {
            Some(h) => h + 1,
            None => oldest,
        }
        .max(oldest)
        .max(hour_of(self.first_minute + 59));
        for h in first..=last_done {
            let mut minutes = [0u32; 60];
            let mut complete = true;
            for (i, slot) in minutes.iter_mut().enumerate() {
                match self.minutes.get(h * 60 + i as i64) {
                    Some(v) => *slot = v,
                    None => complete = false,
                }
            }
            if complete {
                self.burst.observe_hour(h, &minutes);
                self.gap_lengths.observe_hour(h, &minutes);
                self.shapes.observe_hour(h, &minutes);
            }
        }
        if last_done >= first {
            self.burst_through = Some(last_done);
        }
    }

    /// Records a whole hour at once, for bootstrapping from downsampled history. Only hours
    /// older than the minute ring should be fed this way.
    pub fn record_hour(&mut self, h: Hour, count: u32) {
        if h * 60 < self.first_minute {
            self.first_minute = h * 60;
        }
        self.hours.advance_to(h);
        if let Some(hs) = self.hours.get_mut(h) {
            *hs = count;
        }
        if self.gap_hours.newest().is_none_or(|n| h > n) {
            self.gap_hours.advance_to(h);
        }
        if let Some(g) = self.gap_hours.get_mut(h) {
            *g = GAP_UNKNOWN;
        }
        if self.gap_events.newest().is_none_or(|n| h > n) {
            self.gap_events.advance_to(h);
        }
        if let Some(g) = self.gap_events.get_mut(h) {
            *g = GAP_UNKNOWN;
        }
        if count > 0 && self.last_event.is_none_or(|l| l < h * 60) {
            // The exact minute is unknown; the hour's last minute is the conservative choice
            // for the silence rules (it makes the current silence look shorter).
            self.last_event = Some(h * 60 + 59);
        }
    }

    /// Makes every minute up to `m` known (zero unless recorded).
    pub(crate) fn advance_to(&mut self, m: Minute) {
        if self.minutes.newest().is_none_or(|n| m > n) {
            self.minutes.advance_to(m);
        }
        self.hours.advance_to(hour_of(m));
        if self.gap_hours.newest().is_none_or(|n| hour_of(m) > n) {
            self.gap_hours.advance_to(hour_of(m));
        }
        if self.gap_events.newest().is_none_or(|n| hour_of(m) > n) {
            self.gap_events.advance_to(hour_of(m));
        }
    }

    /// Events in the minutes `[from, to)` that the minute ring still holds, and how many of
    /// those minutes it held.
    pub(crate) fn sum_minutes(&self, from: Minute, to: Minute) -> (u64, i64) {
        let mut sum = 0u64;
        let mut held = 0i64;
        for m in from.max(self.first_minute)..to {
            if let Some(v) = self.minutes.get(m) {
                sum += u64::from(v);
                held += 1;
            }
        }
        (sum, held)
    }

    /// The count of hour `h` if it is fully within the series' life and still held.
    pub(crate) fn full_hour(&self, h: Hour) -> Option<u32> {
        if h * 60 < self.first_minute {
            return None;
        }
        self.hours.get(h)
    }
}

fn gap_ring() -> Ring<u16> {
    Ring::new(GAP_HOURS)
}

/// Deliveries of one minute on one (tenant, source, destination), and the events that created
/// deliveries on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMinute {
    /// Deliveries created (one per accepted event routed to this destination).
    pub created: u32,
    /// Deliveries that reached the handler (2xx).
    pub delivered: u32,
    /// Attempts that failed and will be retried.
    pub failed: u32,
    /// Deliveries that exhausted their retries.
    pub dead: u32,
    /// Confirmations that the handler's work is done (destinations on receipts).
    #[serde(default)]
    pub completed: u32,
    /// Confirmations that the handler's business logic failed (destinations on receipts).
    #[serde(default)]
    pub completion_failed: u32,
}

impl QueueMinute {
    fn add(&mut self, o: QueueMinute) {
        self.completed = self.completed.saturating_add(o.completed);
        self.completion_failed = self.completion_failed.saturating_add(o.completion_failed);
        self.created = self.created.saturating_add(o.created);
        self.delivered = self.delivered.saturating_add(o.delivered);
        self.failed = self.failed.saturating_add(o.failed);
        self.dead = self.dead.saturating_add(o.dead);
    }

    fn sub(&mut self, o: QueueMinute) {
        self.completed = self.completed.saturating_sub(o.completed);
        self.completion_failed = self.completion_failed.saturating_sub(o.completion_failed);
        self.created = self.created.saturating_sub(o.created);
        self.delivered = self.delivered.saturating_sub(o.delivered);
        self.failed = self.failed.saturating_sub(o.failed);
        self.dead = self.dead.saturating_sub(o.dead);
    }
}

/// The queue's gauges for one (tenant, source, destination) at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// Deliveries waiting for an attempt (`pending` and `retrying`).
    pub pending: u64,
    /// Deliveries leased by a worker.
    pub in_flight: u64,
    /// When the oldest delivery that is neither delivered nor dead was created (pending,
    /// retrying or in flight), `None` when there is none.
    pub oldest_pending_since: Option<intake_core::Timestamp>,
    /// Dead deliveries in total.
    pub dead: u64,
}

/// Requests of one minute on one (tenant, source).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMinute {
    /// Accepted requests (including duplicates).
    pub accepted: u32,
    /// Requests rejected for a bad signature or an unparseable body.
    pub rejected: u32,
}

/// What one queue (tenant, source, destination) has done recently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueHistory {
    pub(crate) minutes: Ring<QueueMinute>,
    pub(crate) hours: Ring<QueueMinute>,
    pub(crate) snapshot: Option<QueueSnapshot>,
    /// Pending counts by minute, for "still rising".
    pub(crate) pending: Ring<Option<u64>>,
}

impl QueueHistory {
    /// An empty history.
    pub fn new() -> Self {
        QueueHistory {
            minutes: Ring::new(120),
            hours: Ring::new(26),
            snapshot: None,
            pending: Ring::new(120),
        }
    }

    /// Records the counters of minute `m` (set semantics).
    pub fn record(&mut self, m: Minute, v: QueueMinute) {
        let h = hour_of(m);
        if self.minutes.newest().is_none_or(|n| m > n) {
            self.minutes.advance_to(m);
        }
        self.hours.advance_to(h);
        let old = match self.minutes.get_mut(m) {
            Some(slot) => std::mem::replace(slot, v),
            None => QueueMinute::default(),
        };
        if let Some(hs) = self.hours.get_mut(h) {
            hs.sub(old);
            hs.add(v);
        }
    }

    /// Records the gauges observed at minute `m`.
    pub fn observe(&mut self, m: Minute, s: QueueSnapshot) {
        self.snapshot = Some(s);
        if self.pending.newest().is_none_or(|n| m > n) {
            self.pending.advance_to(m);
        }
        if let Some(slot) = self.pending.get_mut(m) {
            *slot = Some(s.pending);
        }
    }

    pub(crate) fn sum_minutes(&self, from: Minute, to: Minute) -> QueueMinute {
        let mut acc = QueueMinute::default();
        for m in from..to {
            if let Some(v) = self.minutes.get(m) {
                acc.add(v);
            }
        }
        acc
    }

    pub(crate) fn sum_hours(&self, from: Hour, to: Hour) -> QueueMinute {
        let mut acc = QueueMinute::default();
        for h in from..to {
            if let Some(v) = self.hours.get(h) {
                acc.add(v);
            }
        }
        acc
    }
}

impl Default for QueueHistory {
    fn default() -> Self {
        Self::new()
    }
}

/// What one source (tenant, source) has been sent recently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestHistory {
    pub(crate) minutes: Ring<RequestMinute>,
    pub(crate) hours: Ring<RequestMinute>,
}

impl RequestHistory {
    /// An empty history.
    pub fn new() -> Self {
        RequestHistory {
            minutes: Ring::new(120),
            hours: Ring::new(26),
        }
    }

    /// Records the requests of minute `m` (set semantics).
    pub fn record(&mut self, m: Minute, v: RequestMinute) {
        let h = hour_of(m);
        if self.minutes.newest().is_none_or(|n| m > n) {
            self.minutes.advance_to(m);
        }
        self.hours.advance_to(h);
        let old = match self.minutes.get_mut(m) {
            Some(slot) => std::mem::replace(slot, v),
            None => RequestMinute::default(),
        };
        if let Some(hs) = self.hours.get_mut(h) {
            hs.accepted = hs
                .accepted
                .saturating_sub(old.accepted)
                .saturating_add(v.accepted);
            hs.rejected = hs
                .rejected
                .saturating_sub(old.rejected)
                .saturating_add(v.rejected);
        }
    }

    pub(crate) fn sum_minutes(&self, from: Minute, to: Minute) -> RequestMinute {
        let mut acc = RequestMinute::default();
        for m in from..to {
            if let Some(v) = self.minutes.get(m) {
                acc.accepted += v.accepted;
                acc.rejected += v.rejected;
            }
        }
        acc
    }

    pub(crate) fn sum_hours(&self, from: Hour, to: Hour) -> (RequestMinute, i64) {
        let mut acc = RequestMinute::default();
        let mut held = 0;
        for h in from..to {
            if let Some(v) = self.hours.get(h) {
                acc.accepted += v.accepted;
                acc.rejected += v.rejected;
                held += 1;
            }
        }
        (acc, held)
    }
}

impl Default for RequestHistory {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_forgets_old_slots_and_zeroes_skipped_ones() {
        let mut r: Ring<u32> = Ring::new(3);
        r.advance_to(10);
        *r.get_mut(10).unwrap() = 5;
        r.advance_to(12);
        assert_eq!(r.get(10), Some(5));
        assert_eq!(r.get(11), Some(0));
        r.advance_to(13);
        assert_eq!(r.get(10), None);
        assert_eq!(r.get(14), None);
        r.advance_to(100);
        assert_eq!(r.get(100), Some(0));
        assert_eq!(r.get(99), Some(0));
    }

    #[test]
    fn flow_history_set_semantics_keep_hours_consistent() {
        let mut f = FlowHistory::new(600, 60, 48);
        f.record(600, 3);
        f.record(601, 4);
        f.record(601, 6);
        assert_eq!(f.hours.get(10), Some(9));
        assert_eq!(f.last_event(), Some(601));
        f.record(700, 1);
        assert_eq!(f.longest_gap, 99);
        assert_eq!(f.gap_count, 2);
        // 601 is now outside the 60-minute ring: a late write only adds to its hour.
        f.record(601, 1);
        assert_eq!(f.hours.get(10), Some(10));
    }

    #[test]
    fn gaps_are_noted_in_every_hour_they_overlap_and_unknown_when_bootstrapped() {
        let mut f = FlowHistory::new(0, 60, 48);
        f.record_hour(0, 5);
        f.record(60, 1);
        f.record(65, 1);
        f.record(250, 2);
        assert_eq!(f.gap_at(0), None, "a bootstrapped hour's gaps are unknown");
        assert_eq!(f.gap_at(1), Some(185));
        assert_eq!(f.gap_at(2), Some(185));
        assert_eq!(f.gap_at(4), Some(185));
        assert_eq!(f.gap_at(5), None, "not yet held");
        f.record(251, 1);
        assert_eq!(f.gap_at(4), Some(185));
    }
}
