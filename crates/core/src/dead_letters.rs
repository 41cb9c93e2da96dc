//! Dead letters: messages the dispatcher gave up on (retries exhausted, or an error it does not
//! know) — `failed` with the last error, `dead_lettered_at` set, and their envelope parked in
//! `<p>.dead` for inspection. Listing and redrive are shared by the CLI (`wafleet dead …`) and
//! the admin API.
//!
//! Redrive works on the database row, not the parked envelope: the row moves back to `deferred`
//! with reason `redrive` (due at once) and the dispatcher's deferred releaser publishes it.
//! Only rows still dead-lettered move, in one conditional UPDATE, so redriving twice sends once.

use crate::domain::{MessageId, TenantId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// A dead-lettered message as operators see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct DeadLetter {
    pub id: MessageId,
    /// The sender's phone number id.
    pub sender: Option<String>,
    pub reason: Option<String>,
    /// Meta's last error, raw.
    pub error: Option<Value>,
    pub attempts: i32,
    pub dead_lettered_at: DateTime<Utc>,
}

/// Which dead letters to redrive.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    One(MessageId),
    All,
}

/// The tenant's dead letters, newest first.
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, phone_number_id AS sender, reason, error, attempts, dead_lettered_at FROM messages
         WHERE tenant_id = $1 AND dead_lettered_at IS NOT NULL AND state = 'failed'
         ORDER BY dead_lettered_at DESC, id LIMIT $2",
    )
    .bind(tenant)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Moves the selected dead letters back to be sent; returns the ids that moved (none for a
/// message already redriven).
pub async fn redrive(
    pool: &PgPool,
    tenant: TenantId,
    selection: Selection,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Vec<MessageId>, sqlx::Error> {
    let one = match selection {
        Selection::One(id) => Some(id),
        Selection::All => None,
    };
    let mut tx = pool.begin().await?;
    // The retry budget starts afresh; the last error stays on the row until a new outcome.
    let ids: Vec<MessageId> = sqlx::query_scalar(
        "UPDATE messages SET state = 'deferred', reason = 'redrive', not_before = $3,
             attempts = 0, dead_lettered_at = NULL, updated_at = $3
         WHERE tenant_id = $1 AND dead_lettered_at IS NOT NULL AND state = 'failed'
           AND ($2::uuid IS NULL OR id = $2)
         RETURNING id",
    )
    .bind(tenant)
    .bind(one)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let raw: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, state, reason, detail, at)
         SELECT id, $2, 'deferred', 'redrive', jsonb_build_object('actor', $3::text), $4
         FROM unnest($1::uuid[]) AS r(id)",
    )
    .bind(&raw)
    .bind(tenant)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}
