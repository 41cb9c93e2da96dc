//! Lowering a sender's rate after Meta's 130429 and raising it back gradually (reference §3:
//! "back off and cut that number's send rate"). A pure function of when the sender was last
//! throttled: the rate drops to `lowered_percent` of what it was, stays there for `hold`, then
//! climbs by `raise_percent` of the sender's setting every `raise_every` until it is back.
//! The failures of one burst (every in-flight send gets the 130429) count as one: another
//! 130429 lowers the rate again only once a raise step has passed since the last one.
//! Monotonic time, like the limiters themselves: this is pacing, not domain time.

use std::time::{Duration, Instant};

/// The stepping rule, from config.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub lowered_percent: u8,
    pub hold: Duration,
    pub raise_percent: u8,
    pub raise_every: Duration,
}

/// A sender's throttle state: the level (percent of its setting) it was lowered to, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub level: u32,
    pub at: Instant,
}

/// The lowest level a sender is taken to (repeated 130429s never stop it entirely).
const FLOOR_PERCENT: u32 = 1;

impl Steps {
    /// The sender's level (percent of its setting) at `now`.
    pub fn level(&self, state: Option<Throttled>, now: Instant) -> u32 {
        let Some(t) = state else { return 100 };
        let since = now.saturating_duration_since(t.at);
        if since < self.hold {
            return t.level;
        }
        let every = self.raise_every.max(Duration::from_millis(1));
        let steps = ((since - self.hold).as_millis() / every.as_millis()) as u32 + 1;
        t.level
            .saturating_add(steps.saturating_mul(u32::from(self.raise_percent)))
            .min(100)
    }

    /// Meta answered 130429 at `now`: the new state.
    pub fn on_throttled(&self, state: Option<Throttled>, now: Instant) -> Option<Throttled> {
        if let Some(t) = state
            && now.saturating_duration_since(t.at) < self.raise_every
        {
            // The same burst: already lowered.
            return state;
        }
        let current = self.level(state, now);
        let level = (current * u32::from(self.lowered_percent) / 100).max(FLOOR_PERCENT);
        Some(Throttled { level, at: now })
    }

    /// Whether the state still matters (the level is below 100 %).
    pub fn is_active(&self, state: Option<Throttled>, now: Instant) -> bool {
        self.level(state, now) < 100
    }
}

/// The rate (messages per second) a sender with setting `rate` is held to at `level` percent.
pub fn effective_rate(rate: u32, level: u32) -> u32 {
    (u64::from(rate) * u64::from(level.min(100)) / 100).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Steps {
        Steps {
            lowered_percent: 25,
            hold: Duration::from_secs(10),
            raise_percent: 10,
            raise_every: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_130429_lowers_the_rate_then_it_climbs_back_step_by_step() {
        let s = steps();
        let t0 = Instant::now();
        assert_eq!(s.level(None, t0), 100);

        let state = s.on_throttled(None, t0);

        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(s.level(state, at(0)), 25);
        assert_eq!(s.level(state, at(9)), 25, "held for a while");
        assert_eq!(s.level(state, at(10)), 35, "then one step");
        assert_eq!(s.level(state, at(13)), 45);
        assert_eq!(s.level(state, at(24)), 100, "back at its setting");
        assert_eq!(s.level(state, at(600)), 100);
        assert!(!s.is_active(state, at(24)));
        assert_eq!(effective_rate(80, 25), 20);
        assert_eq!(effective_rate(80, 100), 80);
        assert_eq!(effective_rate(2, 1), 1, "never zero");
    }

    #[test]
    fn one_burst_of_130429s_lowers_once_and_a_later_one_lowers_again() {
        let s = steps();
        let t0 = Instant::now();
        let first = s.on_throttled(None, t0);
        let same_burst = s.on_throttled(first, t0 + Duration::from_millis(300));
        assert_eq!(same_burst, first);

        let again = s.on_throttled(first, t0 + Duration::from_secs(12));

        // 45 % when it came (one step up from 25 %), a quarter of that now.
        assert_eq!(s.level(again, t0 + Duration::from_secs(12)), 11);
    }

    #[test]
    fn the_level_never_reaches_zero() {
        let s = steps();
        let mut state = None;
        let mut now = Instant::now();
        for _ in 0..20 {
            state = s.on_throttled(state, now);
            now += Duration::from_secs(3);
        }
        assert!(s.level(state, now) >= 1);
    }
}
