//! The portfolio messaging limit (SPEC §4): per tenant, the distinct recipients of
//! business-initiated messages in the last 24 h stay within the tier. The set lives in
//! `cap_recipients` (one row per counted recipient: when it was counted and by which message).
//! Reserving a slot is the dispatcher's job; this module holds the tier arithmetic and the
//! read of the current usage, shared by the dispatcher, `GET /v1/limits` and campaign ETAs.

use crate::domain::TenantId;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// How long a counted recipient holds its slot.
pub const WINDOW: Duration = Duration::hours(24);

/// The tier Meta assumes for a portfolio it has said nothing about.
pub const DEFAULT_TIER: u32 = 250;

/// A portfolio's limit of distinct business-initiated recipients per rolling 24 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Limit {
    Limited(u32),
    #[serde(serialize_with = "unlimited")]
    Unlimited,
}

fn unlimited<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("unlimited")
}

impl Limit {
    /// The admin's override if set, else Meta's tier; unknown means 250, -1 unlimited.
    pub fn effective(meta_tier: Option<i32>, tier_override: Option<i32>) -> Self {
        match tier_override.or(meta_tier) {
            None => Self::Limited(DEFAULT_TIER),
            Some(n) if n < 0 => Self::Unlimited,
            Some(n) => Self::Limited(n as u32),
        }
    }

    /// What bulk sends may use: the limit less the share reserved for single sends.
    pub fn for_bulk(self, reserve_percent: i32) -> Self {
        match self {
            Self::Unlimited => Self::Unlimited,
            Self::Limited(n) => {
                let reserve = (u64::from(n) * reserve_percent.clamp(0, 100) as u64).div_ceil(100);
                Self::Limited(n - reserve as u32)
            }
        }
    }

    /// Whether `used` slots leave room for one more.
    pub fn has_room(self, used: u32) -> bool {
        match self {
            Self::Unlimited => true,
            Self::Limited(n) => used < n,
        }
    }
}

/// The cap's state for a tenant at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub limit: Limit,
    /// What bulk sends may use (the limit less the single-send reserve).
    pub bulk_limit: Limit,
    pub reserve_percent: i32,
    /// Distinct recipients counted in the last 24 h.
    pub used: u32,
    /// When the oldest counted recipient ages out, if any is counted.
    pub next_slot_at: Option<DateTime<Utc>>,
}

impl Usage {
    /// Slots still free for single sends (`None` = unlimited).
    pub fn headroom(&self) -> Option<u32> {
        match self.limit {
            Limit::Unlimited => None,
            Limit::Limited(n) => Some(n.saturating_sub(self.used)),
        }
    }

    /// Slots still free for bulk sends (`None` = unlimited).
    pub fn bulk_headroom(&self) -> Option<u32> {
        match self.bulk_limit {
            Limit::Unlimited => None,
            Limit::Limited(n) => Some(n.saturating_sub(self.used)),
        }
    }
}

/// Reads the tenant's tier settings and counted recipients.
pub async fn usage(
    pool: &PgPool,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<Usage, sqlx::Error> {
    let (meta_tier, tier_override, reserve_percent, used, oldest): (
        Option<i32>,
        Option<i32>,
        i32,
        i64,
        Option<DateTime<Utc>>,
    ) = sqlx::query_as(
        "SELECT s.meta_tier, s.tier_override, s.bulk_reserve_percent, c.used, c.oldest
         FROM tenant_settings s,
              LATERAL (SELECT count(*) AS used, min(counted_at) AS oldest FROM cap_recipients
                       WHERE tenant_id = s.tenant_id AND counted_at > $2) c
         WHERE s.tenant_id = $1",
    )
    .bind(tenant)
    .bind(now - WINDOW)
    .fetch_optional(pool)
    .await?
    .unwrap_or((None, None, 10, 0, None));
    let limit = Limit::effective(meta_tier, tier_override);
    Ok(Usage {
        limit,
        bulk_limit: limit.for_bulk(reserve_percent),
        reserve_percent,
        used: u32::try_from(used).unwrap_or(u32::MAX),
        next_slot_at: oldest.map(|t| t + WINDOW),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_wins_and_an_unknown_tier_is_250() {
        assert_eq!(Limit::effective(None, None), Limit::Limited(250));
        assert_eq!(Limit::effective(Some(2000), None), Limit::Limited(2000));
        assert_eq!(Limit::effective(Some(2000), Some(250)), Limit::Limited(250));
        assert_eq!(Limit::effective(Some(-1), None), Limit::Unlimited);
    }

    #[test]
    fn bulk_leaves_the_reserved_share_to_single_sends() {
        assert_eq!(Limit::Limited(250).for_bulk(10), Limit::Limited(225));
        // The reserve rounds up: a single send always keeps at least one slot.
        assert_eq!(Limit::Limited(5).for_bulk(10), Limit::Limited(4));
        assert_eq!(Limit::Limited(250).for_bulk(0), Limit::Limited(250));
        assert_eq!(Limit::Unlimited.for_bulk(10), Limit::Unlimited);
    }

    #[test]
    fn the_limit_serialises_as_a_number_or_unlimited() {
        assert_eq!(serde_json::to_string(&Limit::Limited(250)).unwrap(), "250");
        assert_eq!(
            serde_json::to_string(&Limit::Unlimited).unwrap(),
            "\"unlimited\""
        );
    }
}
