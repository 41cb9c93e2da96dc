//! Reserving portfolio cap slots (SPEC §4), atomically across every dispatcher process: one
//! transaction per tenant per batch locks the tenant's `tenant_settings` row (`FOR UPDATE`), so
//! reservations of the same tenant are serialised while other tenants proceed; it reads the
//! kept count of the last 24 h (`cap_usage`, maintained by triggers) and the batch's own
//! recipients, lets `policy::cap::decide_slots` decide the batch in order, and writes the taken
//! and renewed slots before the lock is let go. No overshoot under concurrency: a second
//! process waits for the lock and then sees the first one's slots.
//!
//! Two things keep the lock cheap. An unlimited tier reserves nothing (read without a lock:
//! there is nothing to overshoot). And within one process, batches of a tenant take turns
//! (`Turns`) before they take a pool connection, so at most one connection per process waits on
//! a tenant's row while the others serve other work.

use chrono::{DateTime, Utc};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use wafleet_core::{
    domain::{MessageId, TenantId},
    policy::cap::{Limit, SlotDecision, SlotRequest, WINDOW, decide_slots},
};

/// A business-initiated message asking for a slot.
#[derive(Debug, Clone)]
pub struct SlotAsk {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub recipient: String,
    pub bulk: bool,
}

/// Per-tenant turns within this process: a batch waits here, holding no pool connection, while
/// another batch of the same tenant holds the tenant's row lock.
#[derive(Default)]
pub struct Turns {
    tenants: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Turns {
    fn of(&self, tenant: TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.tenants
            .lock()
            .expect("cap turns")
            .entry(tenant)
            .or_default()
            .clone()
    }
}

/// Decides every ask of the batch; one transaction per tenant with a limited tier.
pub async fn reserve(
    pool: &sqlx::PgPool,
    turns: &Turns,
    asks: &[SlotAsk],
    now: DateTime<Utc>,
) -> Result<HashMap<MessageId, SlotDecision>, sqlx::Error> {
    let mut by_tenant: HashMap<TenantId, Vec<&SlotAsk>> = HashMap::new();
    for ask in asks {
        by_tenant.entry(ask.tenant_id).or_default().push(ask);
    }
    let mut decided = HashMap::with_capacity(asks.len());
    for (tenant, asks) in by_tenant {
        if is_unlimited(pool, tenant).await? {
            decided.extend(asks.iter().map(|a| (a.id, SlotDecision::Reserve)));
            continue;
        }
        let turn = turns.of(tenant);
        let _turn = turn.lock().await;
        for (id, d) in reserve_for_tenant(pool, tenant, &asks, now).await? {
            decided.insert(id, d);
        }
    }
    Ok(decided)
}

/// Whether the tenant's tier is unlimited: then no slot is reserved, and no lock is taken. A
/// tier later lowered from unlimited starts counting from that moment.
async fn is_unlimited(pool: &sqlx::PgPool, tenant: TenantId) -> Result<bool, sqlx::Error> {
    let tiers: Option<(Option<i32>, Option<i32>)> =
        sqlx::query_as("SELECT meta_tier, tier_override FROM tenant_settings WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    Ok(tiers.is_some_and(|(meta, over)| Limit::effective(meta, over) == Limit::Unlimited))
}

async fn reserve_for_tenant(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    asks: &[&SlotAsk],
    now: DateTime<Utc>,
) -> Result<Vec<(MessageId, SlotDecision)>, sqlx::Error> {
    let since = now - WINDOW;
    let mut tx = pool.begin().await?;
    // The lock that serialises this tenant's reservations across all dispatcher processes.
    let settings: Option<(Option<i32>, Option<i32>, i32)> = sqlx::query_as(
        "SELECT meta_tier, tier_override, bulk_reserve_percent FROM tenant_settings
         WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    if settings.is_none() {
        // A tenant without a settings row: lock on its id instead.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
    }
    let (meta_tier, tier_override, reserve_percent) = settings.unwrap_or((None, None, 10));
    let limit = Limit::effective(meta_tier, tier_override);
    let bulk_limit = limit.for_bulk(reserve_percent);

    // The kept count, locked before any slot row: every writer of the set takes the count's
    // lock first (see `policy::cap::release`), so two of them never wait on each other.
    let used: Option<i32> =
        sqlx::query_scalar("SELECT used FROM cap_usage WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    // Recipients counted more than a window ago are free again: forget them (the trigger takes
    // them off the count too).
    let aged = sqlx::query("DELETE FROM cap_recipients WHERE tenant_id = $1 AND counted_at <= $2")
        .bind(tenant)
        .bind(since)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let recipients: Vec<&str> = asks.iter().map(|a| a.recipient.as_str()).collect();
    let counted: Vec<(String,)> = sqlx::query_as(
        "SELECT recipient FROM cap_recipients WHERE tenant_id = $1 AND recipient = ANY($2)",
    )
    .bind(tenant)
    .bind(&recipients)
    .fetch_all(&mut *tx)
    .await?;
    let used = u32::try_from(i64::from(used.unwrap_or(0)) - aged as i64).unwrap_or(0);
    let fresh = asks.len() - counted.len().min(asks.len());
    // The entries' ages matter only if some ask may have to wait for one.
    let oldest: Vec<DateTime<Utc>> = match bulk_limit {
        Limit::Limited(n) if used as usize + fresh > n as usize => {
            let need = (used.saturating_sub(n) as usize + asks.len()) as i64;
            sqlx::query_scalar(
                "SELECT counted_at FROM cap_recipients WHERE tenant_id = $1
                 ORDER BY counted_at LIMIT $2",
            )
            .bind(tenant)
            .bind(need)
            .fetch_all(&mut *tx)
            .await?
        }
        _ => Vec::new(),
    };
    let requests: Vec<SlotRequest> = asks
        .iter()
        .map(|a| SlotRequest {
            recipient: &a.recipient,
            bulk: a.bulk,
            counted: counted.iter().any(|(r,)| *r == a.recipient),
        })
        .collect();
    let decisions = decide_slots(limit, bulk_limit, used, &oldest, &requests, now);

    // Taken and renewed slots; one row per recipient (the last message to it holds the slot).
    let mut rows: HashMap<&str, (uuid::Uuid, &'static str)> = HashMap::new();
    let mut reserved = [0u64; 2];
    for (ask, d) in asks.iter().zip(&decisions) {
        if matches!(d, SlotDecision::Reserve | SlotDecision::Reuse) {
            let kind = if ask.bulk { "bulk" } else { "single" };
            rows.insert(&ask.recipient, (ask.id.0, kind));
        }
        if *d == SlotDecision::Reserve {
            reserved[usize::from(ask.bulk)] += 1;
        }
    }
    if !rows.is_empty() {
        let recipients: Vec<&str> = rows.keys().copied().collect();
        let ids: Vec<uuid::Uuid> = recipients.iter().map(|r| rows[r].0).collect();
        let kinds: Vec<&str> = recipients.iter().map(|r| rows[r].1).collect();
        sqlx::query(
            "INSERT INTO cap_recipients (tenant_id, recipient, counted_at, message_id, kind)
             SELECT $1, r, $2, m, k FROM unnest($3::text[], $4::uuid[], $5::text[]) AS u(r, m, k)
             ON CONFLICT (tenant_id, recipient) DO UPDATE
             SET counted_at = GREATEST(cap_recipients.counted_at, EXCLUDED.counted_at),
                 message_id = EXCLUDED.message_id, kind = EXCLUDED.kind",
        )
        .bind(tenant)
        .bind(now)
        .bind(&recipients)
        .bind(&ids)
        .bind(&kinds)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let tenant_label = tenant.to_string();
    for (kind, n) in ["single", "bulk"].iter().zip(reserved) {
        if n > 0 {
            metrics::counter!(wafleet_core::metrics::CAP_RESERVED, "tenant" => tenant_label.clone(), "kind" => *kind)
                .increment(n);
        }
    }
    let used_now = u64::from(used) + reserved.iter().sum::<u64>();
    let limit_value = match limit {
        Limit::Limited(n) => u64::from(n),
        Limit::Unlimited => 0,
    };
    wafleet_core::metrics::cap(&tenant_label, used_now, limit_value);
    Ok(asks.iter().map(|a| a.id).zip(decisions).collect())
}
