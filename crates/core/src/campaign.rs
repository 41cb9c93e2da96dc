//! Campaign knowledge shared by ingest (the campaign API) and the dispatcher (the feeder): the
//! campaign statuses, the tenant's quiet-time rule as stored, and the ETA estimate — a pure
//! function of what is left, the senders' rates, quiet time and the cap's bulk share.

use crate::{
    domain::TenantId,
    policy::{
        cap::{Limit, Usage, WINDOW},
        quiet_time::{QuietRule, QuietTime},
    },
};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Campaign statuses as stored; `completed` is derived (active with nothing left to send).
pub mod status {
    pub const ACTIVE: &str = "active";
    pub const PAUSED: &str = "paused";
    pub const CANCELLED: &str = "cancelled";
    pub const COMPLETED: &str = "completed";
}

/// The reason a paused campaign's waiting messages carry (state `deferred`, no `not_before`).
pub const PAUSED_REASON: &str = "campaign_paused";

/// The tenant's quiet-time rule, if one is set and valid. A stored setting that no longer
/// parses (it was validated when written) counts as none, with a warning.
pub async fn quiet_rule(pool: &PgPool, tenant: TenantId) -> Result<Option<QuietRule>, sqlx::Error> {
    let row: Option<(Option<sqlx::types::Json<QuietTime>>,)> =
        sqlx::query_as("SELECT quiet_time FROM tenant_settings WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    let Some((Some(stored),)) = row else {
        return Ok(None);
    };
    match QuietRule::parse(&stored.0) {
        Ok(rule) => Ok(Some(rule)),
        Err(err) => {
            tracing::warn!(tenant = %tenant, error = %err, "stored quiet time does not parse; ignoring it");
            Ok(None)
        }
    }
}

/// What holds a sender's bulk back right now, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Hold {
    /// `quiet_time`, `messaging_limit` or `campaign_paused`.
    pub reason: &'static str,
    /// When it lifts, if known.
    pub until: Option<DateTime<Utc>>,
}

/// Whether quiet time or the cap's bulk share hold bulk back at `now`. `in_flight` is bulk
/// released but not yet counted by the cap (the feeder's own window).
pub fn hold_now(
    quiet: Option<&QuietRule>,
    usage: &Usage,
    in_flight: u32,
    now: DateTime<Utc>,
) -> Option<Hold> {
    if let Some(until) = quiet.and_then(|q| q.quiet_until(now)) {
        return Some(Hold {
            reason: "quiet_time",
            until: Some(until),
        });
    }
    if usage.bulk_headroom().is_some_and(|h| h <= in_flight) {
        return Some(Hold {
            reason: "messaging_limit",
            until: usage.next_slot_at,
        });
    }
    None
}

/// When `remaining` bulk messages will have been sent at `rate` per second, waiting out quiet
/// time and the cap's bulk share (a new batch of `bulk_limit` slots every 24 h once the current
/// headroom is used). An estimate in one-minute steps; `None` when nothing can be sent within
/// 180 days (e.g. a bulk share of zero).
pub fn estimate_eta(
    remaining: u64,
    rate: u32,
    quiet: Option<&QuietRule>,
    usage: &Usage,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if remaining == 0 {
        return Some(now);
    }
    let rate = u64::from(rate.max(1));
    let step = Duration::minutes(1);
    let per_step = rate * 60;
    let bulk_limit = match usage.bulk_limit {
        Limit::Unlimited => None,
        Limit::Limited(n) => Some(u64::from(n)),
    };
    let mut cap_left = usage.bulk_headroom().map(u64::from);
    let mut refill_at = usage.next_slot_at.unwrap_or(now + WINDOW);
    let mut left = remaining;
    let mut t = now;
    let horizon = now + Duration::days(180);
    while t < horizon {
        if let Some(until) = quiet.and_then(|q| q.quiet_until(t)) {
            t = until;
            continue;
        }
        if cap_left == Some(0) {
            if bulk_limit == Some(0) {
                return None;
            }
            // The oldest counted recipients age out: a new share of slots.
            t = t.max(refill_at);
            refill_at = t + WINDOW;
            cap_left = bulk_limit;
            continue;
        }
        let send = left.min(per_step).min(cap_left.unwrap_or(u64::MAX));
        left -= send;
        if let Some(c) = &mut cap_left {
            *c -= send;
        }
        if left == 0 {
            let ms = (send * 1000).div_ceil(rate);
            return Some(t + Duration::milliseconds(ms as i64));
        }
        t += step;
    }
    None
}

/// When a sender pool's pending bulk will have been sent. `shares` is (pending, rate) per
/// number: each number drains its own recipients at its own rate, and all of them share the
/// tenant's quiet time and the cap's bulk share. The later of the slowest number on its own
/// and the whole pool at the summed rate under the cap; `None` as for `estimate_eta`.
pub fn estimate_pool_eta(
    shares: &[(u64, u32)],
    quiet: Option<&QuietRule>,
    usage: &Usage,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let busy: Vec<&(u64, u32)> = shares.iter().filter(|(pending, _)| *pending > 0).collect();
    let total: u64 = busy.iter().map(|(pending, _)| pending).sum();
    let rate = busy
        .iter()
        .map(|(_, rate)| (*rate).max(1))
        .fold(0u32, u32::saturating_add);
    let whole = estimate_eta(total, rate, quiet, usage, now)?;
    let mut slowest = whole;
    for (pending, rate) in busy {
        slowest = slowest.max(estimate_eta(*pending, *rate, quiet, usage, now)?);
    }
    Some(slowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone};

    fn usage(limit: Limit, used: u32, next: Option<DateTime<Utc>>) -> Usage {
        Usage {
            limit,
            bulk_limit: limit.for_bulk(10),
            reserve_percent: 10,
            used,
            next_slot_at: next,
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0).unwrap() // a Monday
    }

    #[test]
    fn without_quiet_time_or_cap_the_eta_is_the_rate() {
        let eta = estimate_eta(8000, 80, None, &usage(Limit::Unlimited, 0, None), at(12, 0));
        assert_eq!(eta, Some(at(12, 0) + Duration::seconds(100)));
    }

    #[test]
    fn quiet_time_pushes_the_eta_past_its_end() {
        let quiet = QuietRule::new(
            [true; 7],
            chrono_tz::UTC,
            NaiveTime::from_hms_opt(12, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
        );
        let eta = estimate_eta(
            80,
            80,
            Some(&quiet),
            &usage(Limit::Unlimited, 0, None),
            at(12, 30),
        );
        assert_eq!(eta, Some(at(14, 0) + Duration::seconds(1)));
    }

    #[test]
    fn an_exhausted_bulk_share_waits_for_slots_to_age_out() {
        // 250 tier, 225 for bulk, all used; the oldest ages out at 18:00.
        let u = usage(Limit::Limited(250), 225, Some(at(18, 0)));
        let eta = estimate_eta(100, 80, None, &u, at(12, 0)).unwrap();
        assert!(eta >= at(18, 0) && eta < at(18, 1), "{eta}");
        assert_eq!(
            hold_now(None, &u, 0, at(12, 0)).map(|h| h.reason),
            Some("messaging_limit")
        );
    }

    #[test]
    fn more_than_a_days_share_takes_more_days() {
        let u = usage(Limit::Limited(250), 0, None);
        let eta = estimate_eta(500, 80, None, &u, at(12, 0)).unwrap();
        // 225 now, 225 a day later, the last 50 two days later.
        assert!(eta >= at(12, 0) + Duration::days(2), "{eta}");
    }

    #[test]
    fn a_pool_sends_at_the_sum_of_its_rates_but_waits_for_its_busiest_number() {
        let unlimited = usage(Limit::Unlimited, 0, None);
        // 3 numbers at 80/s, 2,400 each: 30 s, as one number at 240/s.
        let even = estimate_pool_eta(&[(2400, 80); 3], None, &unlimited, at(12, 0));
        assert_eq!(even, Some(at(12, 0) + Duration::seconds(30)));
        // One number holds 4,000 at 80/s: 50 s, however idle the others are.
        let uneven = estimate_pool_eta(
            &[(4000, 80), (100, 80), (0, 80)],
            None,
            &unlimited,
            at(12, 0),
        );
        assert_eq!(uneven, Some(at(12, 0) + Duration::seconds(50)));
    }

    #[test]
    fn a_pool_shares_one_cap() {
        // 225 bulk slots a day shared by two numbers: 450 recipients take two days, not one.
        let u = usage(Limit::Limited(250), 0, None);
        let eta = estimate_pool_eta(&[(225, 80), (225, 80)], None, &u, at(12, 0)).unwrap();
        assert!(eta >= at(12, 0) + Duration::days(1), "{eta}");
    }
}
