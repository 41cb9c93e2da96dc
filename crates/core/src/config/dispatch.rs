//! The dispatcher's settings (`[dispatch]`, `WAFLEET_DISPATCH__*`).

use super::durations::{humantime_ms, humantime_ms_vec};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispatchSettings {
    /// Number of dispatch shards (`<p>.dispatch.<n>`). Changing it remaps senders: drain first.
    pub shards: u16,
    /// Unacknowledged deliveries per shard consumer. Batches are handled concurrently, so this
    /// bounds what is in flight (waiting for senders' rates) per shard. By Little's law a shard
    /// sends at most `prefetch / time in flight`: with the claim, the Graph call and the record
    /// taking a few hundred milliseconds under load, 768 keeps one number at 1,000/s fed
    /// (256 held it near 950/s; 1,024 took the dispatcher past 128 MB in a campaign run).
    pub prefetch: u16,
    /// Deliveries claimed together in one database round trip.
    pub batch_size: usize,
    /// How far ahead of a sender's budget its messages are claimed: at most what the sender
    /// sends in this long waits claimed (`dispatching`) for its turn, so a crash strands no more
    /// than that for `ambiguous_resend_after`; the rest wait unclaimed and go at once.
    #[serde(with = "humantime_ms")]
    pub claim_ahead: Duration,
    /// How long the consumer waits to fill a batch.
    #[serde(with = "humantime_ms")]
    pub batch_wait: Duration,
    /// Timeout of one Graph call.
    #[serde(with = "humantime_ms")]
    pub graph_timeout: Duration,
    /// A message found `dispatching` (a crash between Meta's answer and our write) is resent only
    /// after this long without a status webhook naming it.
    #[serde(with = "humantime_ms")]
    pub ambiguous_resend_after: Duration,
    /// Default per-sender throughput (messages per second) for senders without their own
    /// `rate_mps` setting; at most 1,000 (Meta's highest level).
    pub sender_rate: u32,
    /// The pair limit (one sender to one recipient, reference §3): one message per this period
    /// on average …
    #[serde(with = "humantime_ms")]
    pub pair_period: Duration,
    /// … with bursts of up to this many.
    pub pair_burst: u32,
    /// A message whose pair budget frees within this long waits for it in the dispatcher; a
    /// longer wait holds it (`deferred: pair_rate`) and frees the shard for others.
    #[serde(with = "humantime_ms")]
    pub pair_wait_max: Duration,
    /// A message for a sender that is not `approved` is held (`deferred: sender_paused`) and
    /// looked at again after this long.
    #[serde(with = "humantime_ms")]
    pub sender_recheck: Duration,
    /// The shards this process consumes (default: all). Every shard needs a process consuming
    /// it; listing shards pins senders to processes (and is how the tests run two active
    /// dispatchers side by side).
    pub consume_shards: Option<Vec<u16>>,
    /// Delays of the retry tier queues, shortest first.
    #[serde(with = "humantime_ms_vec")]
    pub retry_tiers: Vec<Duration>,
    /// Each retry waits its tier's delay shortened by up to this share (0–50 %), so a burst of
    /// failures does not come back as a burst.
    pub retry_jitter_percent: u8,
    /// Attempts allowed for codes that retry only a few times (131000, unknown codes) before
    /// the message is dead-lettered with the raw error.
    pub limited_retries: u32,
    /// Failures that say nothing against the message itself (Meta down or overloaded, 130429,
    /// 131056, an API budget, our own database) never give up while the tiers last, and after the
    /// last tier keep coming back on it until this long after the message was accepted (or its
    /// `not_after`): only then is it `failed` (`retries_exhausted`) and dead-lettered.
    #[serde(with = "humantime_ms")]
    pub retry_for: Duration,
    /// How long a recipient is held after Meta's 131049 (its per-user marketing limit).
    #[serde(with = "humantime_ms")]
    pub recipient_hold: Duration,
    /// How long a sender, template or account circuit stays open before a probe may pass.
    #[serde(with = "humantime_ms")]
    pub circuit_open_for: Duration,
    /// While a half-open probe is in flight, other held messages wait this long; a probe that
    /// has not reported back after it is presumed lost and another may pass.
    #[serde(with = "humantime_ms")]
    pub circuit_probe_wait: Duration,
    /// How often the deferred releaser looks for due holds, and how many it takes at once.
    #[serde(with = "humantime_ms")]
    pub releaser_interval: Duration,
    pub releaser_batch: i64,
    /// After Meta's 130429 a sender's rate drops to this share of what it was (1–100 %) …
    pub throttled_rate_percent: u8,
    /// … stays there this long after the last 130429 …
    #[serde(with = "humantime_ms")]
    pub throttled_for: Duration,
    /// … then rises by `throttle_raise_percent` of its own setting every `throttle_raise_every`
    /// until it is back at its setting.
    pub throttle_raise_percent: u8,
    #[serde(with = "humantime_ms")]
    pub throttle_raise_every: Duration,
    /// How often the bulk feeder tops up each sender's window.
    #[serde(with = "humantime_ms")]
    pub feeder_interval: Duration,
    /// The feeder keeps at most `sender_rate` × this of a sender's bulk in its dispatch shard, so
    /// a single message queued behind it waits at most about this long.
    #[serde(with = "humantime_ms")]
    pub feeder_window: Duration,
}
