//! What a failed or held attempt becomes: a held row (deferred with a reason other than
//! `retry`, brought back by the releaser), the next retry tier, or a give-up (failed, and the
//! envelope to `<p>.dead`).

use crate::{
    dispatch::{Attempted, Ctx, Disposition},
    store::{Claimed, Outcome},
};
use chrono::{DateTime, Utc};
use wafleet_core::{domain::state, policy::reason::SENDER_NOT_REGISTERED};

/// A held row: deferred with `reason` (never `retry`) until `until`, released by the releaser.
pub fn hold(mut outcome: Outcome, reason: &str, until: DateTime<Utc>) -> Outcome {
    outcome.state = state::DEFERRED;
    outcome.reason = Some(reason.to_owned());
    outcome.not_before = Some(until);
    outcome
}

/// Failed with the last error, and dead-lettered.
pub fn give_up(mut outcome: Outcome) -> Outcome {
    outcome.state = state::FAILED;
    outcome.reason = Some("retries_exhausted".into());
    outcome.dead = true;
    outcome
}

pub fn duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Meta answered 133010: the sender's number is not registered for Cloud API. The sender is
/// marked so (the policy then holds its other messages before they reach Meta), and this one is
/// held (`deferred: sender_not_registered`) for `sender_recheck`; registering the number makes
/// every such hold due at once. Not an attempt that spends the retry budget.
pub async fn hold_unregistered(
    ctx: &Ctx,
    claimed: &Claimed,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Attempted {
    let marked = sqlx::query(
        "UPDATE senders SET registration = 'unregistered'
         WHERE tenant_id = $1 AND phone_number_id = $2 AND registration = 'registered'
           AND status NOT IN ('rejected', 'removed')",
    )
    .bind(claimed.tenant_id)
    .bind(&claimed.phone_number_id)
    .execute(&ctx.pool)
    .await;
    if let Err(err) = marked {
        // The message is held all the same; the next 133010 marks the sender.
        tracing::error!(error = %err, "could not mark the sender as not registered");
    }
    tracing::warn!(sender = %claimed.phone_number_id, "Meta says the sender is not registered (133010); its messages are held");
    let until = now + duration(ctx.settings.sender_recheck);
    let mut outcome = hold(outcome, SENDER_NOT_REGISTERED, until);
    outcome.attempted = false;
    (outcome, (claimed.id, Disposition::Done))
}

/// Why a message whose answer from Meta was lost waits.
pub const AWAITING_STATUS: &str = "awaiting_status";

/// Meta may have accepted the message (the answer was lost): hold it for
/// `ambiguous_resend_after`, so the status webhook (which carries our id) can settle it first;
/// the releaser sends it again, under the same id, only if nothing came. A row held this way,
/// not a queue TTL, so the wait is exact. Gives up like a retry once the tiers' count of
/// attempts is spent.
pub fn await_status(
    ctx: &Ctx,
    claimed: &Claimed,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Attempted {
    if usize::try_from(claimed.attempts).unwrap_or(0) > ctx.settings.retry_tiers.len() {
        return (give_up(outcome), (claimed.id, Disposition::Dead));
    }
    metrics::counter!("wafleet_dispatch_ambiguous_total").increment(1);
    let until = now + duration(ctx.settings.ambiguous_resend_after);
    (
        hold(outcome, AWAITING_STATUS, until),
        (claimed.id, Disposition::Done),
    )
}

/// For failures that may pass on their own but not for ever (131000, unknown codes, a bodiless
/// 4xx, a lost answer's resends): the next tier, or a give-up after the last one: `failed` with
/// the last error, and the envelope to `<p>.dead`.
pub fn retry_or_give_up(
    ctx: &Ctx,
    claimed: &Claimed,
    outcome: Outcome,
    wait_at_least: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Attempted {
    let tiers = &ctx.settings.retry_tiers;
    match pick_tier(tiers, claimed.attempts, wait_at_least) {
        Some(tier) => retry_on(ctx, claimed, outcome, tier, now),
        None => (give_up(outcome), (claimed.id, Disposition::Dead)),
    }
}

/// For failures that say nothing against the message (SPEC §7: Meta down or throttling, our own
/// database): the tiers, then the longest tier again and again, so nothing is marked failed
/// that could still be sent. Gives up only once `retry_for` has passed since the message was
/// accepted (a `not_after` ends it sooner, as `expired`, when it comes back).
pub fn retry_while_sendable(
    ctx: &Ctx,
    claimed: &Claimed,
    outcome: Outcome,
    wait_at_least: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Attempted {
    if now >= claimed.created_at + duration(ctx.settings.retry_for) {
        return (give_up(outcome), (claimed.id, Disposition::Dead));
    }
    let tiers = &ctx.settings.retry_tiers;
    let tier = pick_tier(tiers, claimed.attempts, wait_at_least).unwrap_or_else(|| {
        metrics::counter!("wafleet_dispatch_retries_beyond_tiers_total").increment(1);
        tiers.len() - 1
    });
    retry_on(ctx, claimed, outcome, tier, now)
}

fn retry_on(
    ctx: &Ctx,
    claimed: &Claimed,
    mut outcome: Outcome,
    tier: usize,
    now: DateTime<Utc>,
) -> Attempted {
    outcome.not_before = Some(now + duration(ctx.settings.retry_tiers[tier]));
    (outcome, (claimed.id, Disposition::RetryLater { tier }))
}

/// The retry tier after attempt `attempt` (1-based): tier n for attempt n, or a longer one that
/// covers what Meta asked for; `None` once every tier was used.
fn pick_tier(
    tiers: &[std::time::Duration],
    attempt: i32,
    wait_at_least: Option<std::time::Duration>,
) -> Option<usize> {
    let attempt = usize::try_from(attempt.max(1)).unwrap_or(1);
    if attempt > tiers.len() {
        return None;
    }
    let tier = attempt - 1;
    Some(match wait_at_least {
        Some(wait) => tiers
            .iter()
            .position(|t| *t >= wait)
            .unwrap_or(tiers.len() - 1)
            .max(tier),
        None => tier,
    })
}

#[cfg(test)]
mod tests {
    use super::pick_tier;
    use std::time::Duration;

    fn tiers() -> Vec<Duration> {
        [5, 30, 120, 600].map(Duration::from_secs).to_vec()
    }

    #[test]
    fn attempt_n_waits_on_tier_n_until_the_tiers_run_out() {
        assert_eq!(pick_tier(&tiers(), 1, None), Some(0));
        assert_eq!(pick_tier(&tiers(), 4, None), Some(3));
        assert_eq!(pick_tier(&tiers(), 5, None), None);
    }

    #[test]
    fn a_wait_meta_asks_for_picks_the_shortest_tier_that_covers_it() {
        // 131056 on the third attempt: 4^2 = 16 s, already covered by that attempt's own tier.
        assert_eq!(
            pick_tier(&tiers(), 3, Some(Duration::from_secs(16))),
            Some(2)
        );
        assert_eq!(
            pick_tier(&tiers(), 1, Some(Duration::from_secs(16))),
            Some(1)
        );
        // Longer than every tier: the last one.
        assert_eq!(
            pick_tier(&tiers(), 1, Some(Duration::from_secs(3600))),
            Some(3)
        );
    }
}
