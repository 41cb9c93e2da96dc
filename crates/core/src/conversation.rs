//! Conversations (issue 16): a conversation is (tenant, sender number, contact), one WhatsApp
//! chat, and its id is the SQL function `conversation_id(tenant, phone_number_id, contact)`
//! (migration 0014), so every service derives the same id without reading anything back. The
//! `conversations` table lists the ones that exist so an id can be looked up again; these are
//! the statements that keep it, each one multi-row, run beside the batched message writes in
//! the same transaction (never a statement per message).

use crate::domain::TenantId;

/// Records the conversations of `(phone_number_id, contact)` pairs of one or several tenants
/// (parallel slices), in one statement. A conversation that exists already is left alone (one
/// index probe, no write). Rows go in id order, so two batches inserting the same new
/// conversations wait on each other instead of deadlocking.
pub async fn record(
    tx: &mut sqlx::PgConnection,
    tenants: &[uuid::Uuid],
    phone_number_ids: &[&str],
    contacts: &[&str],
) -> Result<(), sqlx::Error> {
    if tenants.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, phone_number_id, contact)
         SELECT DISTINCT conversation_id(t, p, c), t, p, c
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(t, p, c)
         ORDER BY 1
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenants)
    .bind(phone_number_ids)
    .bind(contacts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records the conversations of a campaign's messages (written by `COPY` in the same
/// transaction), in one statement over the campaign's index.
pub async fn record_campaign(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    campaign: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, phone_number_id, contact)
         SELECT DISTINCT conversation_id(tenant_id, phone_number_id, recipient), tenant_id,
                phone_number_id, recipient
         FROM messages
         WHERE campaign_id = $2 AND tenant_id = $1 AND recipient IS NOT NULL
           AND phone_number_id IS NOT NULL
         ORDER BY 1
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenant)
    .bind(campaign)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
