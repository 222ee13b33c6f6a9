//! A token bucket on the injected clock: how fast a destination may be called.

use std::time::Duration;

use crate::time::Timestamp;

/// Allows `rate` events per second on average, with bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now`. `rate` must be positive; the burst is at least one event.
    pub fn new(rate: f64, burst: f64, now: Timestamp) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let elapsed = now.since(self.last).as_secs_f64();
        if now > self.last {
            self.last = now;
        }
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes one token and returns when the event may happen: `now` if a token was there,
    /// later if the caller must wait (the token is reserved either way, so callers queue).
    pub fn reserve(&mut self, now: Timestamp) -> Timestamp {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            now
        } else {
            now.plus(Duration::from_secs_f64(-self.tokens / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let t0 = Timestamp(0);
        let mut b = TokenBucket::new(10.0, 2.0, t0);
        assert_eq!(b.reserve(t0), t0);
        assert_eq!(b.reserve(t0), t0);
        assert_eq!(b.reserve(t0), Timestamp(100));
        assert_eq!(b.reserve(t0), Timestamp(200));
        // After a quiet second the bucket is full again, but no fuller than the burst.
        let t1 = Timestamp(1_300);
        assert_eq!(b.reserve(t1), t1);
        assert_eq!(b.reserve(t1), t1);
        assert_eq!(b.reserve(t1), Timestamp(1_400));
    }
}
