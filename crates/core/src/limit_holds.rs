//! Messages held for the messaging limit, released when the limit is raised.
//!
//! When the portfolio cap is full the dispatcher holds a message `deferred: messaging_limit`
//! with `not_before` = when the oldest counted recipient ages out (up to 24 h away). A raised
//! limit — an admin's `tier_override`, a smaller single-send reserve, or Meta's tier upgrade by
//! webhook — makes room now, so those holds become due at once: the deferred releaser then
//! takes them on its next tick (single sends straight to their shard, bulk back to the feeder,
//! which releases them within each sender's window), and the dispatcher's cap decides again
//! under the new limit. Lowering the limit changes no hold.
//!
//! A dispatch batch that read the old limit may record its hold just after the raise committed,
//! out of reach of the raise's own update. The raise therefore stamps
//! `tenant_settings.limit_raised_at`, and the releaser sweeps (`sweep_recent_raises`) for a
//! while after it: a hold no newer than the raise (its `updated_at` is its batch's start) was
//! decided under the old limit and becomes due too. A hold the new limit decided is newer and
//! stays; one decided under the new limit by a batch that started before the raise is released
//! once more and held again, which costs one round.

use crate::{domain::TenantId, policy::cap::Limit};
use chrono::{DateTime, Duration, Utc};

/// How long after a raise the releaser still looks for holds decided under the old limit: far
/// longer than a dispatch batch takes from reading the limit to recording its outcomes.
pub const RAISE_SWEEP_FOR: Duration = Duration::minutes(10);

/// The cap's limits before or after a settings change: the whole limit and the bulk share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub limit: Limit,
    pub bulk: Limit,
}

impl Limits {
    /// The limits the settings columns give (`meta_tier`, `tier_override`,
    /// `bulk_reserve_percent`).
    pub fn of(meta_tier: Option<i32>, tier_override: Option<i32>, reserve_percent: i32) -> Self {
        let limit = Limit::effective(meta_tier, tier_override);
        Self {
            limit,
            bulk: limit.for_bulk(reserve_percent),
        }
    }

    /// Whether `after` has room that `self` did not: either limit went up.
    pub fn raised_by(self, after: Self) -> bool {
        higher(after.limit, self.limit) || higher(after.bulk, self.bulk)
    }
}

fn higher(a: Limit, b: Limit) -> bool {
    match (a, b) {
        (Limit::Unlimited, Limit::Limited(_)) => true,
        (Limit::Limited(a), Limit::Limited(b)) => a > b,
        _ => false,
    }
}

/// Makes the tenant's `messaging_limit` holds due at once; returns how many. Runs in the
/// caller's transaction, so the holds move with the settings change that raised the limit.
///
/// `not_before` becomes the earlier of `now` and the time the message was held (`updated_at`,
/// written on the dispatcher's clock): due by the releaser's clock even if the clock of the
/// service that saw the change (ingest, webhooks) runs ahead of the dispatcher's.
pub async fn release_on_raise(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("UPDATE tenant_settings SET limit_raised_at = $2 WHERE tenant_id = $1")
        .bind(tenant)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let released = sqlx::query(
        "UPDATE messages SET not_before = LEAST($2, updated_at)
         WHERE tenant_id = $1 AND state = 'deferred' AND reason = 'messaging_limit'
           AND not_before > LEAST($2, updated_at)",
    )
    .bind(tenant)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if released > 0 {
        metrics::counter!(crate::metrics::LIMIT_HOLDS_RELEASED).increment(released);
        tracing::info!(tenant = %tenant, released, "messaging limit raised: held messages due now");
    }
    Ok(released)
}

/// The releaser's sweep after recent raises: a `messaging_limit` hold no newer than its
/// tenant's last raise (within `RAISE_SWEEP_FOR` of `now`) becomes due. Cross-tenant by design
/// (an operator task); each message is matched to its own tenant's raise. Returns how many.
pub async fn sweep_recent_raises(
    pool: &sqlx::PgPool,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE messages m SET not_before = LEAST($1, m.updated_at)
         FROM tenant_settings s
         WHERE s.limit_raised_at > $2
           AND m.tenant_id = s.tenant_id AND m.state = 'deferred' AND m.reason = 'messaging_limit'
           AND m.updated_at <= s.limit_raised_at AND m.not_before > LEAST($1, m.updated_at)",
    )
    .bind(now)
    .bind(now - RAISE_SWEEP_FOR)
    .execute(pool)
    .await?
    .rows_affected();
    if released > 0 {
        metrics::counter!(crate::metrics::LIMIT_HOLDS_RELEASED).increment(released);
        tracing::info!(
            released,
            "holds decided under a limit since raised: due now"
        );
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_higher_tier_or_a_smaller_reserve_is_a_raise_and_a_lower_one_is_not() {
        let t250 = Limits::of(None, None, 10);
        assert!(t250.raised_by(Limits::of(Some(2000), None, 10)));
        assert!(t250.raised_by(Limits::of(None, Some(-1), 10)));
        assert!(t250.raised_by(Limits::of(None, None, 0)), "more for bulk");
        assert!(!t250.raised_by(Limits::of(None, None, 10)));
        assert!(!t250.raised_by(Limits::of(Some(50), None, 10)));
        let unlimited = Limits::of(Some(-1), None, 10);
        assert!(!unlimited.raised_by(Limits::of(Some(100_000), None, 10)));
    }
}
