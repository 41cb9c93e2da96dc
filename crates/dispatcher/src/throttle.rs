//! Lowering a sender's rate after Meta's 130429 (reference §3: "back off and cut that number's
//! send rate"). The regular limiter holds every sender to `sender_rate`; a sender Meta throttled
//! also waits on a second, slower limiter (`throttled_rate_percent` of the rate) for
//! `throttled_for`, so the retries and the rest of its traffic do not hit the limit again at once.
//! Exact per process because one process owns each sender (single active consumer per shard).

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Senders Meta throttled recently, and the slower budget they get meanwhile.
pub struct Throttle {
    slow: Arc<DefaultKeyedRateLimiter<String>>,
    until: Mutex<HashMap<String, Instant>>,
    hold: Duration,
}

impl Throttle {
    /// `percent` of `per_second` (at least 1 message a second) for `hold` after each 130429.
    pub fn new(per_second: u32, percent: u8, hold: Duration) -> Self {
        let slow = (per_second * u32::from(percent.clamp(1, 100)) / 100).max(1);
        Self {
            slow: Arc::new(RateLimiter::keyed(Quota::per_second(
                NonZeroU32::new(slow).expect("non-zero"),
            ))),
            until: Mutex::new(HashMap::new()),
            hold,
        }
    }

    /// Meta said the sender is over its throughput.
    pub fn note_throttled(&self, sender: &str) {
        // Monotonic time, like the limiters themselves: this is pacing, not domain time.
        let until = Instant::now() + self.hold;
        self.until
            .lock()
            .expect("throttle lock")
            .insert(sender.to_owned(), until);
    }

    /// Whether the sender is still on the slower budget.
    pub fn is_throttled(&self, sender: &str) -> bool {
        let mut until = self.until.lock().expect("throttle lock");
        match until.get(sender) {
            Some(t) if *t > Instant::now() => true,
            Some(_) => {
                until.remove(sender);
                false
            }
            None => false,
        }
    }

    /// Waits for the slower budget if the sender was throttled recently.
    pub async fn wait(&self, sender: &str) {
        if self.is_throttled(sender) {
            self.slow.until_key_ready(&sender.to_owned()).await;
        }
    }

    /// Forgets idle state.
    pub fn retain_recent(&self) {
        self.slow.retain_recent();
        let now = Instant::now();
        self.until
            .lock()
            .expect("throttle lock")
            .retain(|_, t| *t > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_sender_stays_on_the_slow_budget_for_the_hold_only() {
        let throttle = Throttle::new(80, 25, Duration::from_millis(50));
        assert!(!throttle.is_throttled("pn-1"));

        throttle.note_throttled("pn-1");

        assert!(throttle.is_throttled("pn-1"));
        assert!(
            !throttle.is_throttled("pn-2"),
            "other senders keep their rate"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(!throttle.is_throttled("pn-1"));
    }
}
