//! The sticky sender (issue 16): a single message that names no sender goes out from the
//! number its recipient last wrote to, while that 24 h window is open, so a reply stays in the
//! chat the candidate wrote in (`resolve::pick_sender` applies it). What it needs is read here,
//! once per batch.

use crate::validate::Draft;
use std::collections::HashMap;
use wafleet_core::domain::TenantId;

/// A tenant and a recipient (E.164).
pub type ContactKey = (TenantId, String);

/// For each of `contacts`, the tenant's number they last wrote to, if that service window is
/// still open at `now`: what [`crate::resolve::pick_sender`] makes sticky. One query for the batch, driven by
/// the `service_windows_contact` index.
pub async fn load_last_written(
    pool: &sqlx::PgPool,
    contacts: &[ContactKey],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HashMap<ContactKey, String>, sqlx::Error> {
    if contacts.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<uuid::Uuid> = contacts.iter().map(|k| k.0.0).collect();
    let recipients: Vec<&str> = contacts.iter().map(|k| k.1.as_str()).collect();
    let rows: Vec<(TenantId, String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT DISTINCT ON (w.tenant_id, w.recipient)
                w.tenant_id, w.recipient, w.phone_number_id, w.last_inbound_at
         FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, recipient)
         JOIN service_windows w ON w.tenant_id = k.tenant_id AND w.recipient = k.recipient
         ORDER BY w.tenant_id, w.recipient, w.last_inbound_at DESC",
    )
    .bind(&tenants)
    .bind(&recipients)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(.., at)| wafleet_core::policy::window::is_open(Some(*at), now))
        .map(|(tenant, recipient, number, _)| ((tenant, recipient), number))
        .collect())
}

/// Whether a draft takes a sticky sender: a single message that names none.
pub fn wants_sticky(draft: &Draft) -> bool {
    draft.sender.is_none() && draft.kind == wafleet_core::contract::Kind::Single
}
