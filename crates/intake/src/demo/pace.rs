//! How time passes in the demo: on a simulated clock the demo moves itself (`--fast`), or on
//! the real clock (the default pace, for a person to follow). Every act waits through
//! [`Pace::until`], so the acts and their checks are the same code at both paces; only what
//! one step of waiting is differs.

use std::future::Future;
use std::time::{Duration, Instant};

use intake_core::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};

/// How far `--fast` moves the simulated clock in one step. Five seconds is finer than every
/// timer the demo relies on (the drill duty looks every 2 s, but acts on what the monitor
/// decided, every 60 s; canaries every 60 s, with a 2-minute deadline).
pub const FAST_STEP: Duration = Duration::from_secs(5);
/// The real time `--fast` gives the server's tasks after each step: enough on a loaded 2-core
/// machine for the monitor, the drill duty, the dispatcher and the notifier to act on the
/// instant they were woken at. (A canary must reach the handler within 24 steps, its 2-minute
/// deadline, or `canary_failed` fires before the story begins; 100 ms makes that 2.4 s of
/// real time, and the whole story about six seconds.)
pub const FAST_PAUSE: Duration = Duration::from_millis(100);
/// How often the default pace looks again.
pub const LIVE_POLL: Duration = Duration::from_millis(500);
/// The pause between two acts at the default pace, for a person to look at the dashboard.
pub const LIVE_INTERLUDE: Duration = Duration::from_secs(20);

/// The pace of one run.
#[derive(Debug, Clone)]
pub enum Pace {
    /// A manual clock, moved [`FAST_STEP`] per step by the demo.
    Fast(ManualClock),
    /// The system clock: what happens takes as long as it takes in production.
    Live,
}

impl Pace {
    /// `--fast`: a manual clock starting at `start`.
    pub fn fast(start: Timestamp) -> Pace {
        Pace::Fast(ManualClock::new(start))
    }

    /// The clock the server, the fake Kustomer and the traffic all read.
    pub fn clock(&self) -> SharedClock {
        match self {
            Pace::Fast(c) => std::sync::Arc::new(c.clone()),
            Pace::Live => std::sync::Arc::new(SystemClock),
        }
    }

    /// The instant on that clock.
    pub fn now(&self) -> Timestamp {
        match self {
            Pace::Fast(c) => c.now(),
            Pace::Live => SystemClock.now(),
        }
    }

    /// One line for people: what time is, at this pace.
    pub fn describe(&self) -> &'static str {
        match self {
            Pace::Fast(_) => {
                "fast: a simulated clock that the demo moves 5 s at a time; the product's own \
                 timings (monitor every 60 s, canaries every 60 s with a 2-minute deadline) play \
                 out in seconds"
            }
            Pace::Live => {
                "live: the real clock and the product's own timings (monitor every 60 s, \
                 canaries every 60 s with a 2-minute deadline): about five minutes"
            }
        }
    }

    /// How long to pause between two acts: [`LIVE_INTERLUDE`] live, none with `--fast`.
    pub fn interlude(&self) -> Duration {
        match self {
            Pace::Fast(_) => Duration::ZERO,
            Pace::Live => LIVE_INTERLUDE,
        }
    }

    /// Lets time pass by one step: the simulated clock moves and the server gets real time to
    /// act on it, or, live, a short real wait.
    pub async fn step(&self) {
        match self {
            Pace::Fast(c) => {
                c.advance(FAST_STEP);
                tokio::time::sleep(FAST_PAUSE).await;
            }
            Pace::Live => tokio::time::sleep(LIVE_POLL).await,
        }
    }

    /// Steps until `check` answers `Some`, and returns that. Fails, saying `what` was not
    /// seen, once `limit` has passed on the demo's clock (simulated or real) — or, on the
    /// simulated clock, once [`Pace::real_limit`] of real time has: a server too slow to
    /// keep up must not turn `--fast` into an endless run.
    pub async fn until<T, F, Fut>(
        &self,
        limit: Duration,
        what: &str,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let start = self.now();
        let wall = Instant::now();
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            let waited = self.now().since(start);
            if waited >= limit || wall.elapsed() >= self.real_limit(limit) {
                anyhow::bail!(
                    "{what}: not seen after {} on the demo's clock ({:.1} s real time)",
                    humantime::format_duration(waited),
                    wall.elapsed().as_secs_f64()
                );
            }
            self.step().await;
        }
    }

    /// The real time a wait of `limit` on the demo's clock may take: the same, live; on the
    /// simulated clock, a minute of real time per ten simulated minutes, and at least a
    /// minute (steps take longer than [`FAST_PAUSE`] when the machine is busy).
    pub fn real_limit(&self, limit: Duration) -> Duration {
        match self {
            Pace::Fast(_) => (limit / 10).max(Duration::from_secs(60)),
            Pace::Live => limit + Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fast_wait_moves_the_clock_until_the_check_holds_and_fails_past_its_limit() {
        let start = Timestamp(1_800_000_000_000);
        let pace = Pace::fast(start);
        let clock = pace.clock();
        let got = pace
            .until(Duration::from_secs(60), "a minute", || {
                let clock = clock.clone();
                async move { Ok((clock.now().since(start) >= Duration::from_secs(30)).then_some(7)) }
            })
            .await
            .unwrap();
        assert_eq!(got, 7);
        assert_eq!(pace.now(), start.plus(Duration::from_secs(30)));

        let err = pace
            .until(Duration::from_secs(20), "the impossible", || async {
                Ok(None::<()>)
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the impossible: not seen after 20s"),
            "{err}"
        );

        let before = pace.now();
        let failing: anyhow::Result<()> = pace
            .until(Duration::from_secs(20), "x", || async {
                anyhow::bail!("the API answered 500")
            })
            .await;
        assert_eq!(
            failing.unwrap_err().to_string(),
            "the API answered 500",
            "a failed check ends the wait"
        );
        assert_eq!(pace.now(), before, "at once, without a step");
    }

    #[test]
    fn real_limits_and_interludes_follow_the_pace() {
        assert_eq!(Pace::fast(Timestamp(0)).interlude(), Duration::ZERO);
        assert_eq!(Pace::Live.interlude(), LIVE_INTERLUDE);
        let fast = Pace::fast(Timestamp(0));
        assert_eq!(
            fast.real_limit(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            fast.real_limit(Duration::from_secs(3600)),
            Duration::from_secs(360)
        );
        assert_eq!(
            Pace::Live.real_limit(Duration::from_secs(60)),
            Duration::from_secs(90)
        );
    }
}
