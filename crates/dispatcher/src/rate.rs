//! Rate limits before each Graph call (SPEC §4): a budget per sender at the sender's own rate
//! (`senders.rate_mps`, else `dispatch.sender_rate`), lowered after a 130429 and raised back
//! gradually (`throttle`), and a pair budget per (sender, recipient) — about one message per
//! 6 s with bursts — that Meta enforces with 131056. Exact per process because one process
//! owns each sender (single active consumer per shard).
//!
//! A sender's wait never holds up another sender: each sender has its own limiter, and the
//! dispatcher records and acks each sender's messages on their own (see `dispatch`). A pair
//! wait longer than `pair_wait_max` is not waited out in the process at all: the message is
//! held in the database (`deferred: pair_rate`) and the releaser brings it back.

use crate::throttle::{Steps, Throttled, effective_rate};
use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::Notify;
use wafleet_core::config::DispatchSettings;

/// One sender's budget: the limiter at its effective rate, rebuilt when the rate changes.
struct Sender {
    /// The rate the limiter was built for.
    rate: u32,
    /// The sender's own `rate_mps` as last seen (`None` = the default).
    setting: Option<u32>,
    limiter: Arc<DefaultDirectRateLimiter>,
    throttled: Option<Throttled>,
    /// Claimed messages still waiting for this budget (see [`Rates::claim_room`]).
    waiting: Arc<AtomicUsize>,
}

impl Sender {
    fn new(rate: u32, setting: Option<u32>) -> Self {
        Self {
            rate,
            setting,
            limiter: Arc::new(RateLimiter::direct(quota(rate))),
            throttled: None,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One claimed message that has not yet passed its sender's budget: counted against the
/// sender's claim room until dropped (after the wait, or when the message is settled otherwise).
pub struct Ticket {
    waiting: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_waiters();
    }
}

/// Every sender's and pair's budget in this process.
pub struct Rates {
    default_rate: u32,
    steps: Steps,
    senders: Mutex<HashMap<String, Sender>>,
    pairs: DefaultKeyedRateLimiter<(String, String)>,
    pair_wait_max: Duration,
    claim_ahead: Duration,
    /// Woken when a ticket is dropped: a sender may have claim room again.
    freed: Arc<Notify>,
}

/// A burst of a tenth of a second's budget: enough to absorb scheduling jitter, small enough
/// that a second never carries much more than the rate.
fn quota(per_second: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).expect("non-zero");
    let burst = NonZeroU32::new((per_second / 10).max(1)).expect("non-zero");
    Quota::per_second(rate).allow_burst(burst)
}

impl Rates {
    pub fn new(settings: &DispatchSettings) -> Self {
        let pair_burst = NonZeroU32::new(settings.pair_burst.max(1)).expect("non-zero");
        let pair = Quota::with_period(settings.pair_period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(pair_burst);
        Self {
            default_rate: settings.sender_rate,
            steps: Steps {
                lowered_percent: settings.throttled_rate_percent,
                hold: settings.throttled_for,
                raise_percent: settings.throttle_raise_percent,
                raise_every: settings.throttle_raise_every,
            },
            senders: Mutex::new(HashMap::new()),
            pairs: RateLimiter::keyed(pair),
            pair_wait_max: settings.pair_wait_max,
            claim_ahead: settings.claim_ahead,
            freed: Arc::new(Notify::new()),
        }
    }

    /// How many more of `sender`'s messages may be claimed now: what its budget lets through in
    /// `dispatch.claim_ahead`, less those claimed and still waiting for it. Claiming no further
    /// ahead means a crash leaves only that many claimed but never sent (each then waits
    /// `ambiguous_resend_after`, as Meta may have it), not a whole prefetch. The room is given
    /// in chunks of at least half of it (or `wanted`, when fewer wait), so a sender at its rate is
    /// claimed a few times a second, not once per message.
    pub fn claim_room(&self, sender: &str, wanted: usize) -> usize {
        let mut senders = self.senders.lock().expect("rates lock");
        let entry = senders
            .entry(sender.to_owned())
            .or_insert_with(|| Sender::new(self.default_rate, None));
        let base = entry.setting.unwrap_or(self.default_rate).clamp(1, 1000);
        let rate = effective_rate(base, self.steps.level(entry.throttled, Instant::now()));
        let allowance = ((f64::from(rate) * self.claim_ahead.as_secs_f64()).ceil() as usize).max(1);
        let room = allowance.saturating_sub(entry.waiting.load(Ordering::Relaxed));
        if room >= wanted.min(allowance.div_ceil(2)) {
            room
        } else {
            0
        }
    }

    /// A ticket for one claimed message of `sender`, counted until dropped.
    pub fn ticket(&self, sender: &str) -> Ticket {
        let mut senders = self.senders.lock().expect("rates lock");
        let entry = senders
            .entry(sender.to_owned())
            .or_insert_with(|| Sender::new(self.default_rate, None));
        entry.waiting.fetch_add(1, Ordering::Relaxed);
        Ticket {
            waiting: entry.waiting.clone(),
            freed: self.freed.clone(),
        }
    }

    /// Waits until a ticket is dropped (some sender may have room again), at most `max`.
    pub async fn freed(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.freed.notified()).await;
    }

    /// The rate `sender` is held to now, given its own setting (`None` = the default).
    pub fn current_rate(&self, sender: &str, setting: Option<u32>) -> u32 {
        let base = setting.unwrap_or(self.default_rate).clamp(1, 1000);
        let senders = self.senders.lock().expect("rates lock");
        let throttled = senders.get(sender).and_then(|s| s.throttled);
        effective_rate(base, self.steps.level(throttled, Instant::now()))
    }

    /// Waits for the sender's budget. `setting` is the sender's `rate_mps` (`None` = default).
    pub async fn wait_sender(&self, sender: &str, setting: Option<u32>) {
        let limiter = {
            let base = setting.unwrap_or(self.default_rate).clamp(1, 1000);
            let mut senders = self.senders.lock().expect("rates lock");
            let now = Instant::now();
            let entry = senders
                .entry(sender.to_owned())
                .or_insert_with(|| Sender::new(base, setting));
            entry.setting = setting;
            let rate = effective_rate(base, self.steps.level(entry.throttled, now));
            if rate != entry.rate {
                entry.rate = rate;
                entry.limiter = Arc::new(RateLimiter::direct(quota(rate)));
                wafleet_core::metrics::sender_rate(sender, rate);
            }
            entry.limiter.clone()
        };
        limiter.until_ready().await;
    }

    /// Meta answered 130429 for `sender`: lower its rate (once per burst).
    pub fn note_throttled(&self, sender: &str) {
        let mut senders = self.senders.lock().expect("rates lock");
        if let Some(entry) = senders.get_mut(sender) {
            let before = entry.throttled;
            entry.throttled = self.steps.on_throttled(before, Instant::now());
            if entry.throttled != before {
                tracing::warn!(sender, level = ?entry.throttled.map(|t| t.level), "Meta throttled the sender (130429): rate lowered");
            }
        }
    }

    /// Takes the pair's budget, waiting up to `pair_wait_max` for it. `Err(wait)` when it frees
    /// only later: the caller holds the message that long instead.
    pub async fn take_pair(&self, sender: &str, recipient: &str) -> Result<(), Duration> {
        let key = (sender.to_owned(), recipient.to_owned());
        loop {
            match self.pairs.check_key(&key) {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    if wait > self.pair_wait_max {
                        return Err(wait);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Forgets idle state: pairs with a full budget again, senders back at their rate and idle.
    pub fn retain_recent(&self) {
        self.pairs.retain_recent();
        let now = Instant::now();
        self.senders.lock().expect("rates lock").retain(|_, s| {
            self.steps.is_active(s.throttled, now)
                || Arc::strong_count(&s.limiter) > 1
                || s.waiting.load(Ordering::Relaxed) > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wafleet_core::Settings;

    fn settings() -> DispatchSettings {
        let mut s = Settings::default().dispatch;
        s.pair_period = Duration::from_secs(6);
        s.pair_burst = 2;
        s.pair_wait_max = Duration::from_millis(10);
        s
    }

    #[tokio::test]
    async fn a_pair_allows_its_burst_then_asks_to_wait_about_the_period() {
        let rates = Rates::new(&settings());
        assert!(rates.take_pair("pn-1", "+447400123456").await.is_ok());
        assert!(rates.take_pair("pn-1", "+447400123456").await.is_ok());

        let wait = rates.take_pair("pn-1", "+447400123456").await.unwrap_err();

        assert!(wait > Duration::from_secs(5) && wait <= Duration::from_secs(6));
        assert!(
            rates.take_pair("pn-1", "+447400999999").await.is_ok(),
            "other recipients are unaffected"
        );
        assert!(rates.take_pair("pn-2", "+447400123456").await.is_ok());
    }

    #[tokio::test]
    async fn a_sender_is_claimed_no_further_ahead_than_its_budget_sends_in_claim_ahead() {
        let mut s = settings();
        s.sender_rate = 80;
        s.claim_ahead = Duration::from_millis(500);
        let rates = Rates::new(&s);
        assert_eq!(rates.claim_room("pn-1", 100), 40, "80/s for 0.5 s");

        let tickets: Vec<Ticket> = (0..30).map(|_| rates.ticket("pn-1")).collect();

        assert_eq!(
            rates.claim_room("pn-1", 100),
            0,
            "10 left is less than half the room: wait for a bigger chunk"
        );
        assert_eq!(
            rates.claim_room("pn-1", 5),
            10,
            "but five wanted fit in what is left"
        );
        assert_eq!(
            rates.claim_room("pn-2", 100),
            40,
            "other senders have their own"
        );
        drop(tickets);
        assert_eq!(
            rates.claim_room("pn-1", 100),
            40,
            "dropped tickets free the room"
        );
    }

    #[tokio::test]
    async fn a_senders_own_rate_and_a_throttle_set_its_claim_room() {
        let mut s = settings();
        s.claim_ahead = Duration::from_millis(500);
        let rates = Rates::new(&s);
        rates.wait_sender("pn-1", Some(1000)).await;
        assert_eq!(rates.claim_room("pn-1", 1000), 500);

        rates.note_throttled("pn-1");

        assert_eq!(
            rates.claim_room("pn-1", 1000),
            125,
            "25 % of 1,000/s for 0.5 s"
        );
    }

    #[tokio::test]
    async fn a_throttled_sender_is_held_to_a_lower_rate_and_others_keep_theirs() {
        let rates = Rates::new(&settings());
        rates.wait_sender("pn-1", Some(200)).await;
        rates.wait_sender("pn-2", None).await;

        rates.note_throttled("pn-1");

        assert_eq!(rates.current_rate("pn-1", Some(200)), 50);
        assert_eq!(rates.current_rate("pn-2", None), 80);
    }
}
