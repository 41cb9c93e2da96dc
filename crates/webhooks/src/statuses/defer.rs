//! 131049 ("healthy ecosystem engagement"): the message waits 24 h and is then sent again,
//! and every message to that recipient is held until then.

use super::ENGAGEMENT_REASON;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use wafleet_core::domain::{MessageId, TenantId};

/// 131049: the messages wait until `not_before` (the dispatcher's releaser sends them again,
/// under a new wamid, so the old one is dropped) and the recipient is held until then.
pub(super) async fn defer(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    deferrals: &[(MessageId, DateTime<Utc>)],
    holds: &HashMap<String, DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = deferrals.iter().map(|d| d.0.0).collect();
    let until: Vec<DateTime<Utc>> = deferrals.iter().map(|d| d.1).collect();
    sqlx::query(
        "UPDATE messages m SET not_before = u.until, wamid = NULL, claimed_at = NULL
         FROM unnest($2::uuid[], $3::timestamptz[]) AS u(id, until)
         WHERE m.tenant_id = $1 AND m.id = u.id AND m.state = 'deferred'",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&until)
    .execute(&mut *tx)
    .await?;
    let recipients: Vec<&str> = holds.keys().map(String::as_str).collect();
    let held: Vec<DateTime<Utc>> = recipients.iter().map(|r| holds[*r]).collect();
    sqlx::query(
        "INSERT INTO recipient_holds (tenant_id, recipient, until, reason)
         SELECT $1, r, u, $4 FROM unnest($2::text[], $3::timestamptz[]) AS h(r, u)
         ON CONFLICT (tenant_id, recipient) DO UPDATE
         SET until = GREATEST(recipient_holds.until, EXCLUDED.until), reason = EXCLUDED.reason",
    )
    .bind(tenant)
    .bind(&recipients)
    .bind(&held)
    .bind(ENGAGEMENT_REASON)
    .execute(&mut *tx)
    .await?;
    metrics::counter!("wafleet_webhook_engagement_deferrals_total").increment(ids.len() as u64);
    Ok(())
}
