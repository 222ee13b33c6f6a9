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

/// `Retry-After` is either delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(Timestamp::from_system_time(at).since(now))
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_forms() {
        let now = Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

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
