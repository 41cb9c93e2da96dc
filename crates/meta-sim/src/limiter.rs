//! Per-number throughput limiter: a token bucket refilled at the number's mps.
//!
//! Meta answers `130429` while a number sends faster than its throughput; the bucket holds one
//! second's worth of tokens, so a burst of `mps` passes and the rest of the second is refused.

use tokio::time::Instant;

/// A token bucket whose rate follows the number's current `mps`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(mps: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(mps),
            last: now,
        }
    }

    /// Refills for the time elapsed and takes one token if there is one.
    pub fn try_take(&mut self, mps: u32, now: Instant) -> bool {
        let rate = f64::from(mps);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_above_the_rate_is_cut_at_one_seconds_worth() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(5, now);
        let passed = (0..20).filter(|_| bucket.try_take(5, now)).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(5, now);
        for _ in 0..5 {
            assert!(bucket.try_take(5, now));
        }
        assert!(!bucket.try_take(5, now));
        assert!(bucket.try_take(5, now + Duration::from_millis(200)));
    }
}
