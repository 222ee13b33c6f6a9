//! The injectable clock. Every timing decision in intake (retry schedules, leases, alert
//! windows, silences) reads time from a [`Clock`], so tests drive time by hand with
//! [`ManualClock`] instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::time::Timestamp;

/// A boxed future, as returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of time that can also wait for an instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// Completes once [`Clock::now`] is at or after `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// A clock shared between tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to. Sleepers wake as soon as [`ManualClock::advance`]
/// or [`ManualClock::set`] reaches their deadline.
///
/// A clock made with [`ManualClock::simulated`] instead jumps forward to any deadline it is
/// asked to sleep until: virtual time for code that waits on rate limits or back-offs (backfill
/// clients against a fake API, backtests), which then runs as fast as the CPU allows.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
    jump_to_deadlines: bool,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        let (tx, _rx) = watch::channel(start);
        ManualClock {
            now: Arc::new(tx),
            jump_to_deadlines: false,
        }
    }

    /// A clock at `start` that moves forward to a deadline as soon as someone sleeps until it.
    pub fn simulated(start: Timestamp) -> Self {
        ManualClock {
            jump_to_deadlines: true,
            ..ManualClock::new(start)
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.send_modify(|t| *t = t.plus(d));
    }

    /// Sets the clock to `t` (which may be in the past: a clock can be stepped back by NTP).
    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        if self.jump_to_deadlines {
            self.now.send_if_modified(|now| {
                let later = deadline > *now;
                if later {
                    *now = deadline;
                }
                later
            });
        }
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // `wait_for` returns an error only when the sender is gone, which happens when the
            // clock itself is dropped: then nobody can advance time and sleeping forever is right.
            if rx.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = ManualClock::new(Timestamp(1_000));
        let sleep = clock.sleep_until(Timestamp(61_000));
        let handle = tokio::spawn(sleep);
        tokio::task::yield_now().await;
        assert!(!handle.is_finished());
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!handle.is_finished());
        clock.advance(Duration::from_secs(30));
        handle.await.unwrap();
        assert_eq!(clock.now(), Timestamp(61_000));
    }

    #[tokio::test]
    async fn simulated_clock_jumps_to_deadlines_and_never_back() {
        let clock = ManualClock::simulated(Timestamp(1_000));
        clock.sleep_until(Timestamp(31_000)).await;
        assert_eq!(clock.now(), Timestamp(31_000));
        clock.sleep_until(Timestamp(5_000)).await;
        assert_eq!(clock.now(), Timestamp(31_000));
    }
}
