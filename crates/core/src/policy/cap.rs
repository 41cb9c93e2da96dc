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

impl schemars::JsonSchema for Limit {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Limit".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A number of distinct recipients per rolling 24 h, or \"unlimited\".",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"const": "unlimited"}
            ]
        })
    }
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

/// Gives back the slots these messages took, now that they ended `failed` or `expired` (Meta
/// counts delivered messages only). A slot stays taken while another outbound message to the
/// same recipient is on its way or was sent since the slot was counted: giving it back then
/// could let the set overshoot Meta's count. Runs inside the caller's transaction.
pub async fn release(
    conn: &mut sqlx::PgConnection,
    tenants: &[uuid::Uuid],
    messages: &[uuid::Uuid],
) -> Result<u64, sqlx::Error> {
    if messages.is_empty() {
        return Ok(0);
    }
    // The tenants' kept counts first, in a fixed order, as a reservation takes them: the
    // trigger would otherwise lock a count after the slot rows this deletes, while a
    // reservation holding the count waits for one of those rows (a deadlock).
    let mut locked: Vec<uuid::Uuid> = tenants.to_vec();
    locked.sort();
    locked.dedup();
    sqlx::query("SELECT 1 FROM cap_usage WHERE tenant_id = ANY($1) ORDER BY tenant_id FOR UPDATE")
        .bind(&locked)
        .execute(&mut *conn)
        .await?;
    let released = sqlx::query(
        "DELETE FROM cap_recipients c
         USING unnest($1::uuid[], $2::uuid[]) AS f(tenant_id, message_id)
         WHERE c.tenant_id = f.tenant_id AND c.message_id = f.message_id
           AND NOT EXISTS (
               SELECT 1 FROM messages m
               WHERE m.tenant_id = c.tenant_id AND m.direction = 'out'
                 AND m.recipient = c.recipient AND m.id <> c.message_id
                 AND m.state IN ('dispatching', 'sent', 'delivered', 'read', 'played')
                 AND m.updated_at >= c.counted_at - interval '24 hours')",
    )
    .bind(tenants)
    .bind(messages)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if released > 0 {
        metrics::counter!(crate::metrics::CAP_RELEASED).increment(released);
    }
    Ok(released)
}

/// One message asking for a slot, in the order the batch presents them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest<'a> {
    pub recipient: &'a str,
    /// A bulk (campaign) message: it may not use the share reserved for single sends.
    pub bulk: bool,
    /// The recipient is already in the tenant's set of the last 24 h.
    pub counted: bool,
}

/// What the cap says about one business-initiated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotDecision {
    /// A new recipient: one slot taken.
    Reserve,
    /// Already counted (before, or earlier in this batch): costs nothing, its time is renewed.
    Reuse,
    /// Full: wait until then (when the slot this message is next in line for ages out).
    Defer { until: DateTime<Utc> },
}

/// Decides a batch of slot requests for one tenant, in order. `used` is the size of the set now,
/// `oldest` its entries' times, oldest first (at least as many as the deferred requests can
/// need: `used - bulk_limit + requests.len()`). A new recipient takes a slot while `used` is
/// under its limit (the bulk limit for bulk messages); otherwise it waits for the slot that is
/// its turn: the k-th deferred message of the batch waits for the (used − limit + k)-th oldest
/// entry to age out, so deferred messages are released in order as slots free up. Pure.
pub fn decide_slots(
    limit: Limit,
    bulk_limit: Limit,
    used: u32,
    oldest: &[DateTime<Utc>],
    requests: &[SlotRequest<'_>],
    now: DateTime<Utc>,
) -> Vec<SlotDecision> {
    let mut used = used;
    let mut taken: Vec<&str> = Vec::new();
    let mut deferred = 0usize;
    requests
        .iter()
        .map(|r| {
            if r.counted || taken.contains(&r.recipient) {
                return SlotDecision::Reuse;
            }
            let n = match if r.bulk { bulk_limit } else { limit } {
                Limit::Limited(n) if used >= n => n,
                _ => {
                    used += 1;
                    taken.push(r.recipient);
                    return SlotDecision::Reserve;
                }
            };
            let turn = (used - n) as usize + deferred;
            deferred += 1;
            // Entries age out in order; without enough of them (a limit of 0) wait a window.
            let until = oldest
                .get(turn)
                .map(|t| *t + WINDOW)
                .unwrap_or(now + WINDOW)
                .max(now);
            SlotDecision::Defer { until }
        })
        .collect()
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

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_770_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn a_new_recipient_takes_a_slot_and_a_counted_one_costs_nothing() {
        let requests = [
            SlotRequest {
                recipient: "+1",
                bulk: false,
                counted: false,
            },
            SlotRequest {
                recipient: "+2",
                bulk: false,
                counted: true,
            },
            SlotRequest {
                recipient: "+1",
                bulk: false,
                counted: false,
            },
            SlotRequest {
                recipient: "+3",
                bulk: false,
                counted: false,
            },
        ];
        let d = decide_slots(
            Limit::Limited(3),
            Limit::Limited(2),
            1,
            &[at(0)],
            &requests,
            at(1),
        );
        assert_eq!(
            d,
            [
                SlotDecision::Reserve,
                SlotDecision::Reuse,
                SlotDecision::Reuse,
                SlotDecision::Reserve
            ]
        );
    }

    #[test]
    fn when_full_each_waits_for_its_own_slot_in_order() {
        let oldest = [at(0), at(1), at(2)];
        let requests = [
            SlotRequest {
                recipient: "+4",
                bulk: false,
                counted: false,
            },
            SlotRequest {
                recipient: "+5",
                bulk: false,
                counted: false,
            },
        ];
        let d = decide_slots(
            Limit::Limited(3),
            Limit::Limited(3),
            3,
            &oldest,
            &requests,
            at(5),
        );
        assert_eq!(
            d,
            [
                SlotDecision::Defer { until: at(24) },
                SlotDecision::Defer { until: at(25) }
            ]
        );
    }

    #[test]
    fn bulk_stops_at_the_reserve_and_single_sends_use_it() {
        let oldest = [at(0), at(1)];
        let requests = [
            SlotRequest {
                recipient: "+1",
                bulk: true,
                counted: false,
            },
            SlotRequest {
                recipient: "+2",
                bulk: false,
                counted: false,
            },
        ];
        let d = decide_slots(
            Limit::Limited(3),
            Limit::Limited(2),
            2,
            &oldest,
            &requests,
            at(3),
        );
        assert_eq!(
            d,
            [SlotDecision::Defer { until: at(24) }, SlotDecision::Reserve]
        );
    }

    #[test]
    fn unlimited_always_reserves() {
        let requests = [SlotRequest {
            recipient: "+1",
            bulk: true,
            counted: false,
        }];
        let d = decide_slots(
            Limit::Unlimited,
            Limit::Unlimited,
            10_000_000,
            &[],
            &requests,
            at(0),
        );
        assert_eq!(d, [SlotDecision::Reserve]);
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_cap_is_never_exceeded_and_deferrals_are_in_order(
            limit in 0u32..40,
            reserve in 0i32..=100,
            used in 0u32..60,
            asks in proptest::collection::vec((0u8..50, proptest::bool::ANY, proptest::bool::ANY), 0..40),
        ) {
            let limit = Limit::Limited(limit);
            let bulk_limit = limit.for_bulk(reserve);
            let oldest: Vec<DateTime<Utc>> = (0..(used as i64)).map(|i| at(0) + Duration::minutes(i)).collect();
            let names: Vec<String> = asks.iter().map(|(r, ..)| format!("+{r}")).collect();
            let requests: Vec<SlotRequest> = asks.iter().zip(&names).map(|((_, bulk, counted), name)| {
                SlotRequest { recipient: name, bulk: *bulk, counted: *counted }
            }).collect();
            let now = at(10);
            let decisions = decide_slots(limit, bulk_limit, used, &oldest, &requests, now);
            prop_assert_eq!(decisions.len(), requests.len());
            let (Limit::Limited(n), Limit::Limited(nb)) = (limit, bulk_limit) else { unreachable!() };
            let mut size = used;
            let mut last_until: [Option<DateTime<Utc>>; 2] = [None, None];
            let mut counted: Vec<&str> = Vec::new();
            for (r, d) in requests.iter().zip(&decisions) {
                match d {
                    SlotDecision::Reserve => {
                        prop_assert!(!r.counted && !counted.contains(&r.recipient));
                        size += 1;
                        prop_assert!(size <= n, "single sends stay within the limit");
                        if r.bulk { prop_assert!(size <= nb, "bulk stays within its share"); }
                        counted.push(r.recipient);
                    }
                    SlotDecision::Reuse => prop_assert!(r.counted || counted.contains(&r.recipient)),
                    SlotDecision::Defer { until } => {
                        prop_assert!(*until >= now);
                        // Within a kind, later messages never get an earlier slot.
                        let k = usize::from(r.bulk);
                        prop_assert!(last_until[k].is_none_or(|l| *until >= l), "released in order");
                        last_until[k] = Some(*until);
                    }
                }
            }
        }
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
