//! The delivery state machine and its retry schedule.
//!
//! A delivery is one (event, destination) pair. It starts `pending`, is leased by a worker
//! (`in_flight`), and ends `delivered` or, after the destination's last attempt, `dead`. A
//! failed attempt that has attempts left makes it `retrying` until its next attempt is due. A
//! lease that expires (the worker crashed) makes it due again. Every state keeps the delivery
//! visible: there is no transition to "nothing", which is the invariant the store relies on.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first attempt.
    Pending,
    /// Leased by a worker that is attempting it now.
    InFlight,
    /// The destination answered 2xx.
    Delivered,
    /// An attempt failed; the next one is scheduled.
    Retrying,
    /// Every attempt failed; kept for inspection, replay and alerting.
    Dead,
}

impl DeliveryState {
    /// Every state, in lifecycle order.
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::InFlight,
        DeliveryState::Delivered,
        DeliveryState::Retrying,
        DeliveryState::Dead,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Dead => "dead",
        }
    }

    /// Parses a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether no worker will ever pick this delivery up again on its own.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryState::Delivered | DeliveryState::Dead)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A worker leases a due delivery.
    Claim,
    /// The attempt got a 2xx.
    Succeed,
    /// The attempt failed and attempts remain.
    FailAndRetry,
    /// The attempt failed and it was the last one.
    FailFinally,
    /// The worker's lease ran out (crash, or a shutdown that released it).
    LeaseExpired,
    /// An operator asked for a fresh start (`requeue`, `replay`).
    Requeue,
}

/// A transition that the state machine does not allow from the given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} delivery cannot take the transition {transition:?}")]
pub struct InvalidTransition {
    /// The state the delivery was in.
    pub from: DeliveryState,
    /// The transition that was refused.
    pub transition: Transition,
}

impl DeliveryState {
    /// The state after `t`, or an error when `t` is not allowed from `self`.
    pub fn apply(self, t: Transition) -> Result<DeliveryState, InvalidTransition> {
        use DeliveryState::*;
        use Transition::*;
        match (self, t) {
            (Pending | Retrying, Claim) => Ok(InFlight),
            (InFlight, Succeed) => Ok(Delivered),
            (InFlight, FailAndRetry) => Ok(Retrying),
            (InFlight, FailFinally) => Ok(Dead),
            (InFlight, LeaseExpired) => Ok(Pending),
            (_, Requeue) => Ok(Pending),
            (from, transition) => Err(InvalidTransition { from, transition }),
        }
    }
}

/// Where the handler's own work stands, for a destination on receipts
/// (`completion = "receipt"`). It is a second stage after [`DeliveryState::Delivered`], kept
/// beside the delivery state rather than in it: the retry machine above ends at the 2xx as it
/// always did (nothing is retried for want of a confirmation — a replay is an operator's
/// choice), and the audit's `accepted = delivered + pending + dead` keeps adding up, with
/// `delivered` split into these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompletionState {
    /// The handler answered 2xx; its confirmation has not arrived.
    Received,
    /// The handler confirmed that its work is done.
    Completed,
    /// The handler confirmed that its business logic failed.
    CompletionFailed,
}

impl CompletionState {
    /// Every state.
    pub const ALL: [CompletionState; 3] = [
        CompletionState::Received,
        CompletionState::Completed,
        CompletionState::CompletionFailed,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionState::Received => "received",
            CompletionState::Completed => "completed",
            CompletionState::CompletionFailed => "completion_failed",
        }
    }

    /// Parses a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        CompletionState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the handler has said how its work ended.
    pub fn is_confirmed(self) -> bool {
        !matches!(self, CompletionState::Received)
    }
}

impl fmt::Display for CompletionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a handler says about its work when it confirms a delivery.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CompletionOutcome {
    /// The work is done.
    #[default]
    Ok,
    /// The business logic failed (the event reached the handler; its work did not succeed).
    Failed,
}

impl CompletionOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionOutcome::Ok => "ok",
            CompletionOutcome::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(CompletionOutcome::Ok),
            "failed" => Some(CompletionOutcome::Failed),
            _ => None,
        }
    }

    /// The completion state this outcome leads to.
    pub fn state(self) -> CompletionState {
        match self {
            CompletionOutcome::Ok => CompletionState::Completed,
            CompletionOutcome::Failed => CompletionState::CompletionFailed,
        }
    }
}

/// What a confirmation does to its delivery ([`confirm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The confirmation is recorded: the delivery is now in this state.
    Recorded(CompletionState),
    /// The delivery was already confirmed: the first outcome stands, and this one changes
    /// nothing (a handler retrying its confirmation is harmless).
    Duplicate(CompletionState),
}

impl Confirmation {
    /// The completion state after the confirmation.
    pub fn state(self) -> CompletionState {
        match self {
            Confirmation::Recorded(s) | Confirmation::Duplicate(s) => s,
        }
    }
}

/// A confirmation of a delivery that was never sent: the handler cannot have seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the delivery has not been sent to the handler yet")]
pub struct NotReceived;

/// Decides a confirmation of a delivery now `state` after `attempts` recorded attempts, whose
/// completion is `current`. The first outcome wins. A delivery being attempted (`in_flight`)
/// or sent before (`retrying`, `dead`, with attempts) may be confirmed: a handler that hands
/// the event to its own queue can finish before intake has read its 2xx, or after intake gave
/// up on a response that was lost; the work is done either way, and the next 2xx keeps the
/// confirmation. Only a delivery never sent is refused.
pub fn confirm(
    state: DeliveryState,
    attempts: u32,
    current: Option<CompletionState>,
    outcome: CompletionOutcome,
) -> Result<Confirmation, NotReceived> {
    match current {
        Some(done) if done.is_confirmed() => return Ok(Confirmation::Duplicate(done)),
        _ => {}
    }
    if state == DeliveryState::Pending && attempts == 0 {
        return Err(NotReceived);
    }
    Ok(Confirmation::Recorded(outcome.state()))
}

/// What one attempt to deliver came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The destination answered 2xx.
    Success {
        /// The HTTP status.
        status: u16,
    },
    /// Anything else: a non-2xx status, a timeout, a connection error.
    Failure {
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The destination's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// What went wrong, for people.
        error: String,
    },
}

/// The longest `Retry-After` honoured. A destination asking for more gets this: a day is long
/// enough to ride out any maintenance and short enough that the delivery cannot be forgotten.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// When to try again after a failure, and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. At least 1.
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub initial_delay: Duration,
    /// Upper bound of the exponential delay.
    pub max_delay: Duration,
    /// Growth factor between consecutive delays.
    pub multiplier: f64,
    /// Fraction of the delay that is randomized (0 = none, 0.2 = ±20 %), so that many
    /// deliveries failing together do not all retry at the same instant.
    pub jitter: f64,
    /// Explicit delays after the first, second, … failure (the last one repeats). When not
    /// empty it replaces the exponential formula.
    pub schedule: Vec<Duration>,
}

/// The default policy retries for about ten hours: ten growing delays (5 s to 43 min, about
/// 85 minutes in all), then hourly. A handler that is down for a night still gets its events;
/// one that stays down longer leaves them dead, visible and replayable.
impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            initial_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            multiplier: 2.0,
            jitter: 0.2,
            schedule: Vec::new(),
        }
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Done.
    Delivered,
    /// Try again at this instant.
    RetryAt(Timestamp),
    /// No attempts left.
    Dead,
}

impl NextStep {
    /// The state this step leaves the delivery in.
    pub fn state(self) -> DeliveryState {
        match self {
            NextStep::Delivered => DeliveryState::Delivered,
            NextStep::RetryAt(_) => DeliveryState::Retrying,
            NextStep::Dead => DeliveryState::Dead,
        }
    }
}

impl RetryPolicy {
    /// The longest time from a delivery's first attempt to its last one, every delay at the
    /// top of its jitter (a destination's `Retry-After`, up to [`MAX_RETRY_AFTER`] each, can
    /// stretch it further). Retention (`storage.retention`) must be longer, so that retention
    /// is never shorter than the retries it would otherwise overlap.
    pub fn horizon(&self) -> Duration {
        let jitter = 1.0 + self.jitter.clamp(0.0, 1.0);
        let secs: f64 = (1..self.max_attempts.max(1))
            .map(|attempt| self.base_delay(attempt).as_secs_f64() * jitter)
            .sum();
        Duration::from_secs_f64(secs.min(u32::MAX as f64))
    }

    /// The exponential delay before attempt `attempt + 1`, without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        if let Some(last) = self.schedule.last() {
            let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
            return *self.schedule.get(i).unwrap_or(last);
        }
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = self.initial_delay.as_secs_f64() * exp;
        Duration::from_secs_f64(secs.min(self.max_delay.as_secs_f64()))
    }

    /// Decides what follows attempt number `attempt` (1-based) that ended with `outcome` at
    /// `now`. `unit_random` is a number in `[0, 1)` that drives the jitter, so callers choose
    /// the randomness and tests stay deterministic.
    pub fn next_step(
        &self,
        attempt: u32,
        outcome: &AttemptOutcome,
        now: Timestamp,
        unit_random: f64,
    ) -> NextStep {
        match outcome {
            AttemptOutcome::Success { .. } => NextStep::Delivered,
            AttemptOutcome::Failure { .. } if attempt >= self.max_attempts => NextStep::Dead,
            AttemptOutcome::Failure { retry_after, .. } => {
                let base = self.base_delay(attempt).as_secs_f64();
                let jitter = self.jitter.clamp(0.0, 1.0);
                let factor = 1.0 + jitter * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
                let mut delay = Duration::from_secs_f64((base * factor).max(0.0));
                if let Some(asked) = retry_after {
                    delay = delay.max((*asked).min(MAX_RETRY_AFTER));
                }
                NextStep::RetryAt(now.plus(delay))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn failure(retry_after: Option<Duration>) -> AttemptOutcome {
        AttemptOutcome::Failure {
            status: Some(500),
            retry_after,
            error: "500".into(),
        }
    }

    #[test]
    fn the_retry_horizon_sums_every_delay_at_the_top_of_its_jitter() {
        let schedule = |delays: &[u64], max_attempts: u32, jitter: f64| RetryPolicy {
            max_attempts,
            jitter,
            schedule: delays.iter().map(|s| Duration::from_secs(*s)).collect(),
            ..RetryPolicy::default()
        };
        // (policy, horizon in seconds)
        let cases = [
            (schedule(&[10, 60], 4, 0.0), 10 + 60 + 60),
            (schedule(&[10, 60], 4, 0.5), 195),
            (schedule(&[10], 1, 0.2), 0),
            // 5 s doubling to 2560 s, then nine hours at the 1 h cap; +20 % jitter.
            (RetryPolicy::default(), (5115 + 9 * 3600) * 12 / 10),
        ];
        for (policy, secs) in cases {
            assert_eq!(
                policy.horizon().as_secs_f64().round() as u64,
                secs,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn the_default_policy_retries_for_about_ten_hours() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let total: Duration = (1..p.max_attempts).map(|a| p.base_delay(a)).sum();
        assert!(
            total > Duration::from_secs(10 * 3600) && total < Duration::from_secs(11 * 3600),
            "{total:?}"
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.base_delay(1), Duration::from_secs(5));
        assert_eq!(p.base_delay(2), Duration::from_secs(10));
        assert_eq!(p.base_delay(3), Duration::from_secs(20));
        assert_eq!(p.base_delay(30), Duration::from_secs(3600));
    }

    #[test]
    fn an_explicit_schedule_replaces_the_formula_and_its_last_delay_repeats() {
        let p = RetryPolicy {
            jitter: 0.0,
            schedule: vec![Duration::from_secs(10), Duration::from_secs(60)],
            ..RetryPolicy::default()
        };
        assert_eq!(p.base_delay(1), Duration::from_secs(10));
        assert_eq!(p.base_delay(2), Duration::from_secs(60));
        assert_eq!(p.base_delay(7), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let now = Timestamp(0);
        let step = p.next_step(1, &failure(Some(Duration::from_secs(120))), now, 0.5);
        assert_eq!(step, NextStep::RetryAt(Timestamp(120_000)));
        let step = p.next_step(1, &failure(Some(Duration::from_secs(1))), now, 0.5);
        assert_eq!(step, NextStep::RetryAt(Timestamp(5_000)));
        let step = p.next_step(1, &failure(Some(Duration::from_secs(10_000_000))), now, 0.5);
        assert_eq!(step, NextStep::RetryAt(now.plus(MAX_RETRY_AFTER)));
    }

    #[test]
    fn last_attempt_is_dead() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(matches!(
            p.next_step(2, &failure(None), Timestamp(0), 0.0),
            NextStep::RetryAt(_)
        ));
        assert_eq!(
            p.next_step(3, &failure(None), Timestamp(0), 0.0),
            NextStep::Dead
        );
        assert_eq!(
            p.next_step(
                3,
                &AttemptOutcome::Success { status: 204 },
                Timestamp(0),
                0.0
            ),
            NextStep::Delivered
        );
    }

    #[test]
    fn confirmations_table() {
        use CompletionOutcome as O;
        use CompletionState as C;
        use DeliveryState as D;
        type Case = (D, u32, Option<C>, O, Result<Confirmation, NotReceived>);
        let cases: [Case; 12] = [
            // The common case: received, then confirmed.
            (
                D::Delivered,
                1,
                Some(C::Received),
                O::Ok,
                Ok(Confirmation::Recorded(C::Completed)),
            ),
            (
                D::Delivered,
                3,
                Some(C::Received),
                O::Failed,
                Ok(Confirmation::Recorded(C::CompletionFailed)),
            ),
            // The first outcome wins; repeats change nothing.
            (
                D::Delivered,
                1,
                Some(C::Completed),
                O::Ok,
                Ok(Confirmation::Duplicate(C::Completed)),
            ),
            (
                D::Delivered,
                1,
                Some(C::Completed),
                O::Failed,
                Ok(Confirmation::Duplicate(C::Completed)),
            ),
            (
                D::Delivered,
                1,
                Some(C::CompletionFailed),
                O::Ok,
                Ok(Confirmation::Duplicate(C::CompletionFailed)),
            ),
            // A handler faster than intake's reading of its 2xx.
            (
                D::InFlight,
                0,
                None,
                O::Ok,
                Ok(Confirmation::Recorded(C::Completed)),
            ),
            // A response lost after the work was done.
            (
                D::Retrying,
                1,
                None,
                O::Ok,
                Ok(Confirmation::Recorded(C::Completed)),
            ),
            (
                D::Dead,
                20,
                None,
                O::Failed,
                Ok(Confirmation::Recorded(C::CompletionFailed)),
            ),
            (
                D::InFlight,
                2,
                Some(C::Completed),
                O::Failed,
                Ok(Confirmation::Duplicate(C::Completed)),
            ),
            // Never sent: the handler cannot have seen it.
            (D::Pending, 0, None, O::Ok, Err(NotReceived)),
            // Requeued after an attempt: it was seen once.
            (
                D::Pending,
                1,
                None,
                O::Ok,
                Ok(Confirmation::Recorded(C::Completed)),
            ),
            // Delivered before receipts were switched on: confirmable from then on.
            (
                D::Delivered,
                1,
                None,
                O::Ok,
                Ok(Confirmation::Recorded(C::Completed)),
            ),
        ];
        for (state, attempts, current, outcome, want) in cases {
            assert_eq!(
                confirm(state, attempts, current, outcome),
                want,
                "{state} after {attempts} attempts, {current:?}, {outcome:?}"
            );
        }
    }

    #[test]
    fn completion_names_round_trip() {
        for s in CompletionState::ALL {
            assert_eq!(CompletionState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CompletionState::parse("delivered"), None);
        for o in [CompletionOutcome::Ok, CompletionOutcome::Failed] {
            assert_eq!(CompletionOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(CompletionOutcome::parse("done"), None);
    }

    fn transition() -> impl Strategy<Value = Transition> {
        prop_oneof![
            Just(Transition::Claim),
            Just(Transition::Succeed),
            Just(Transition::FailAndRetry),
            Just(Transition::FailFinally),
            Just(Transition::LeaseExpired),
            Just(Transition::Requeue),
        ]
    }

    proptest! {
        #[test]
        fn jitter_stays_within_bounds(attempt in 1u32..20, u in 0.0f64..1.0) {
            let p = RetryPolicy { max_attempts: 100, ..RetryPolicy::default() };
            let base = p.base_delay(attempt).as_millis() as f64;
            match p.next_step(attempt, &failure(None), Timestamp(0), u) {
                NextStep::RetryAt(t) => {
                    prop_assert!(t.0 as f64 >= base * 0.8 - 1.0);
                    prop_assert!(t.0 as f64 <= base * 1.2 + 1.0);
                }
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        /// Whatever happens, a delivery is always in one of its states, a final state is left
        /// only by an explicit requeue, and only a claimed delivery can finish.
        #[test]
        fn state_machine_never_loses_a_delivery(ts in proptest::collection::vec(transition(), 0..64)) {
            let mut state = DeliveryState::Pending;
            for t in ts {
                match state.apply(t) {
                    Ok(next) => {
                        if state.is_final() {
                            prop_assert_eq!(t, Transition::Requeue);
                        }
                        if next.is_final() {
                            prop_assert_eq!(state, DeliveryState::InFlight);
                        }
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, state),
                }
                prop_assert!(DeliveryState::ALL.contains(&state));
            }
        }
    }
}
