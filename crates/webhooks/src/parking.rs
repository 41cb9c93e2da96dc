//! Bookkeeping around status application: durable receipts of (wamid, status), so Meta's
//! retries and every subscribed app's copy are applied once; and parking of statuses whose
//! message is not known yet (the webhook beat our record of the send), applied by a sweep once
//! the send is recorded.

use crate::statuses::{StatusItem, apply};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use wafleet_core::domain::TenantId;

/// Records receipts and keeps only statuses not seen before (Meta retries; every subscribed
/// app gets a copy).
pub(crate) async fn fresh_only(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: Vec<StatusItem>,
) -> Result<Vec<StatusItem>, sqlx::Error> {
    let wamids: Vec<&str> = items.iter().map(|i| i.wamid.as_str()).collect();
    let statuses: Vec<&str> = items.iter().map(|i| i.status.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = items.iter().map(|i| i.at).collect();
    let fresh: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO status_receipts (tenant_id, wamid, status, at)
         SELECT $1, w, s, a FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS u(w, s, a)
         ON CONFLICT DO NOTHING
         RETURNING wamid, status",
    )
    .bind(tenant)
    .bind(&wamids)
    .bind(&statuses)
    .bind(&ats)
    .fetch_all(&mut *tx)
    .await?;
    let mut fresh: HashSet<(String, String)> = fresh.into_iter().collect();
    let total = items.len();
    let kept: Vec<StatusItem> = items
        .into_iter()
        .filter(|i| fresh.remove(&(i.wamid.clone(), i.status.clone())))
        .collect();
    metrics::counter!("wafleet_webhook_duplicates_total").increment((total - kept.len()) as u64);
    Ok(kept)
}

pub(crate) async fn park(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: &[StatusItem],
) -> Result<(), sqlx::Error> {
    let wamids: Vec<&str> = items.iter().map(|i| i.wamid.as_str()).collect();
    let statuses: Vec<&str> = items.iter().map(|i| i.status.as_str()).collect();
    let payloads: Vec<Value> = items.iter().map(|i| i.raw.clone()).collect();
    sqlx::query(
        "INSERT INTO parked_statuses (tenant_id, wamid, status, payload)
         SELECT $1, w, s, p FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS u(w, s, p)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&wamids)
    .bind(&statuses)
    .bind(&payloads)
    .execute(&mut *tx)
    .await?;
    metrics::counter!("wafleet_webhook_statuses_parked_total").increment(items.len() as u64);
    Ok(())
}

/// Applies parked statuses whose message is now known; returns how many took effect.
pub async fn unpark(pool: &sqlx::PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(TenantId, String, String, Value)> = sqlx::query_as(
        "DELETE FROM parked_statuses p
         WHERE (p.tenant_id, p.wamid, p.status) IN (
             SELECT q.tenant_id, q.wamid, q.status FROM parked_statuses q
             WHERE EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = q.tenant_id AND m.wamid = q.wamid)
             LIMIT 500 FOR UPDATE SKIP LOCKED)
         RETURNING p.tenant_id, p.wamid, p.status, p.payload",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut by_tenant: HashMap<TenantId, Vec<StatusItem>> = HashMap::new();
    for (tenant, _, _, payload) in rows {
        if let Some(item) = StatusItem::parse(&payload) {
            by_tenant.entry(tenant).or_default().push(item);
        }
    }
    let mut applied = 0;
    for (tenant, items) in by_tenant {
        applied += apply(&mut tx, tenant, items, false).await?;
    }
    tx.commit().await?;
    Ok(applied)
}
