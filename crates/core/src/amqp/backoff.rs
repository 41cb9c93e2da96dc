//! Jittered exponential backoff, for reconnecting and for resuming a consumer: doubling from
//! `min` to `max`, each delay cut by a random share of up to half so that a fleet whose broker
//! came back does not reconnect in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next attempt (and doubles the one after, up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base * rand::random_range(50..=100u32) / 100
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_jittered_by_at_most_half_and_reset_after_a_success() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(700));
        let mut backoff = Backoff::new(min, max);

        let delays: Vec<Duration> = (0..6).map(|_| backoff.next_delay()).collect();
        backoff.reset();
        let after_reset = backoff.next_delay();

        let bases = [100, 200, 400, 700, 700, 700].map(Duration::from_millis);
        for (delay, base) in delays.iter().zip(bases) {
            assert!(
                *delay <= base && *delay >= base / 2,
                "{delay:?} for {base:?}"
            );
        }
        assert!(after_reset <= min && after_reset >= min / 2);
    }
}
