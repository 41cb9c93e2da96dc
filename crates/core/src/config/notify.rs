//! `[notify]`: how the webhooks service delivers events to tenants' HTTP endpoints
//! (`/v1/webhook-endpoints`): timeouts, the retry schedule and when a delivery is dead, how
//! much is in flight, and whether private addresses may be called.

use super::durations::humantime_ms;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifySettings {
    /// Timeout of one delivery request, connecting included.
    #[serde(with = "humantime_ms")]
    pub timeout: Duration,
    /// Attempts before a delivery is dead (listed with `?state=dead`, replayable).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles per attempt …
    #[serde(with = "humantime_ms")]
    pub backoff_min: Duration,
    /// … up to this.
    #[serde(with = "humantime_ms")]
    pub backoff_max: Duration,
    /// Each wait is shortened by a random 0–this % (at most 50), so retries of many
    /// deliveries that failed together spread out.
    pub jitter_percent: u8,
    /// Deliveries claimed per database round trip.
    pub batch: i64,
    /// Requests in flight at once per webhooks process.
    pub concurrency: usize,
    /// Requests in flight at once to one endpoint, so a slow endpoint takes at most this
    /// share of `concurrency`.
    pub per_endpoint: usize,
    /// How often the worker looks for due deliveries when nothing wakes it.
    #[serde(with = "humantime_ms")]
    pub interval: Duration,
    /// Whether endpoints may be on loopback, private, link-local or otherwise non-public
    /// addresses. Off by default: a tenant must not reach the operator's internal network.
    pub allow_private_addresses: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 15,
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(2 * 3600),
            jitter_percent: 20,
            batch: 100,
            concurrency: 64,
            per_endpoint: 8,
            interval: Duration::from_secs(1),
            allow_private_addresses: false,
        }
    }
}

impl NotifySettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() || self.interval.is_zero() {
            return Err("notify.timeout and notify.interval must be above zero".into());
        }
        if self.max_attempts == 0 {
            return Err("notify.max_attempts must be at least 1".into());
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return Err(
                "notify.backoff_min must be above zero and at most notify.backoff_max".into(),
            );
        }
        if self.jitter_percent > 50 {
            return Err("notify.jitter_percent is at most 50".into());
        }
        if self.batch < 1 || self.concurrency == 0 || self.per_endpoint == 0 {
            return Err(
                "notify.batch, notify.concurrency and notify.per_endpoint must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}
