//! What every consent change made through the API writes beside the change itself, in its
//! transaction: an entry in `consent_audit` (who: the API key's id and `apikey:<prefix>` with
//! its label; when; what), and for an opt-out change the `optout.<tenant>` notification (the
//! webhooks service's drainer publishes `outbound_events`) and the subject's newest time, so a
//! STOP or resume that Meta reports late, from before this change, does not undo it.

use crate::auth::Principal;
use chrono::{DateTime, Utc};
use serde_json::Value;
use wafleet_core::{contract::OptOutEvent, domain::TenantId};

/// One audit entry of a consent change or an erasure.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    /// `opt_out_added`, `opt_out_removed` or `record_erased`.
    pub action: &'static str,
    pub recipient: Option<&'a str>,
    pub record: Option<(&'a str, &'a str)>,
    pub detail: Value,
}

/// Writes `entry` as done by the caller's API key.
pub async fn audit(
    tx: &mut sqlx::PgConnection,
    principal: &Principal,
    entry: AuditEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consent_audit (tenant_id, api_key_id, actor, action, recipient, record_type,
             record_id, detail)
         SELECT $1, k.id,
                'apikey:' || k.prefix || CASE WHEN k.label = '' THEN '' ELSE ' (' || k.label || ')' END,
                $3, $4, $5, $6, $7
         FROM api_keys k WHERE k.id = $2 AND k.tenant_id = $1",
    )
    .bind(principal.tenant_id)
    .bind(principal.key_id)
    .bind(entry.action)
    .bind(entry.recipient)
    .bind(entry.record.map(|r| r.0))
    .bind(entry.record.map(|r| r.1))
    .bind(entry.detail)
    .execute(&mut *tx)
    .await?;
    metrics::counter!(wafleet_core::metrics::CONSENT_CHANGES, "action" => entry.action)
        .increment(1);
    Ok(())
}

/// The notification and the subject's time of an opt-out change made through the API.
pub async fn opt_out_changed(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    recipient: &str,
    scope: &str,
    opted_out: bool,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // The same subject key as the webhook consumer's (`optouts::record`).
    sqlx::query(
        "INSERT INTO webhook_subjects (tenant_id, subject, last_at) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, subject) DO UPDATE
         SET last_at = GREATEST(webhook_subjects.last_at, EXCLUDED.last_at)",
    )
    .bind(tenant)
    .bind(format!("optout:{recipient}:{scope}"))
    .bind(at)
    .execute(&mut *tx)
    .await?;
    let event = OptOutEvent {
        tenant_id: tenant,
        recipient: recipient.to_owned(),
        scope: scope.to_owned(),
        action: if opted_out { "opted_out" } else { "opted_in" }.to_owned(),
        source: "api".to_owned(),
        at,
    };
    sqlx::query("INSERT INTO outbound_events (tenant_id, routing_key, body) VALUES ($1, $2, $3)")
        .bind(tenant)
        .bind(format!("optout.{tenant}"))
        .bind(serde_json::to_value(&event).expect("events serialise"))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
