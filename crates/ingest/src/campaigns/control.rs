//! A campaign as listed, and its controls (its progress is `progress`). Pause moves the
//! campaign's waiting messages (held or released but not yet claimed by a dispatcher) to
//! `deferred: campaign_paused`, which neither the feeder, the releaser nor a dispatcher's
//! claim touches; resume gives them back to the feeder; cancel ends everything not yet
//! dispatched as `cancelled`. Each is one statement over the campaign's rows, with their
//! events, in one transaction with the status.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use wafleet_core::{
    campaign::{PAUSED_REASON, status},
    domain::{TenantId, state},
    http::Problem,
    metrics::BULK_ENDED,
};

/// A campaign as listed.
#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct CampaignRow {
    pub id: uuid::Uuid,
    pub name: String,
    pub status: String,
    pub template_name: String,
    pub template_language: String,
    /// The campaign's (first) sender's phone number id.
    #[serde(rename = "sender")]
    pub phone_number_id: String,
    /// Every number it sends from (one, unless it was created with `senders`).
    pub senders: Vec<String>,
    pub user_id: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
    pub recipients_given: i32,
    pub accepted: i32,
    pub rejected: i32,
    pub duplicates: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, status, template_name, template_language, phone_number_id, \
    COALESCE(senders, ARRAY[phone_number_id]) AS senders, user_id, not_after, recipients_given, \
    accepted, rejected, duplicates, created_at, updated_at";

pub(super) fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such campaign")
}

/// The campaign row, or `404`.
pub(super) async fn row(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<CampaignRow, Problem> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(not_found)
}

/// The tenant's campaigns, newest first, `limit` at most, older than `before` if given.
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    before: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<CampaignRow>, Problem> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM campaigns WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(tenant)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// One refused recipient.
#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Rejection {
    /// 0-based position in the list as sent.
    pub position: i32,
    pub to: Option<String>,
    pub record_type: Option<String>,
    pub record_id: Option<String>,
    pub code: String,
    pub field: Option<String>,
    pub detail: String,
}

/// The campaign's refused recipients in list order, after position `after`.
pub async fn rejections(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    after: Option<i32>,
    limit: i64,
) -> Result<Vec<Rejection>, Problem> {
    row(pool, tenant, id).await?;
    Ok(sqlx::query_as(
        "SELECT position, recipient AS to, record_type, record_id, code, field, detail
         FROM campaign_rejections WHERE tenant_id = $1 AND campaign_id = $2 AND position > $3
         ORDER BY position LIMIT $4",
    )
    .bind(tenant)
    .bind(id)
    .bind(after.unwrap_or(-1))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A control action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Cancel,
}

/// The answer to pause, resume or cancel.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Changed {
    pub id: uuid::Uuid,
    /// The campaign's status afterwards: `active`, `paused` or `cancelled`.
    pub status: String,
    /// How many of its messages the change moved.
    pub messages_changed: u64,
}

/// Applies `action`; returns the campaign's status afterwards and how many messages moved.
/// Repeating an action is a no-op; resuming or pausing a cancelled campaign is a `409`.
pub async fn apply(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Changed, Problem> {
    let mut tx = pool.begin().await?;
    // Locks the campaign: intake of its AMQP messages (FOR SHARE) waits for the change.
    let current: Option<(String,)> =
        sqlx::query_as("SELECT status FROM campaigns WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let current = current.ok_or_else(not_found)?.0;
    let (next, moved) = match (action, current.as_str()) {
        (Action::Cancel, status::CANCELLED) => (status::CANCELLED, 0),
        (_, status::CANCELLED) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "campaign_cancelled",
                "the campaign was cancelled; it cannot be paused or resumed",
            ));
        }
        (Action::Pause, status::PAUSED) | (Action::Resume, status::ACTIVE) => (current.as_str(), 0),
        (Action::Pause, _) => {
            let n = move_messages(
                &mut tx,
                tenant,
                id,
                "m.state = 'queued'",
                state::DEFERRED,
                PAUSED_REASON,
                now,
            )
            .await?;
            (status::PAUSED, n)
        }
        (Action::Resume, _) => {
            let n = move_messages(
                &mut tx,
                tenant,
                id,
                "m.state = 'deferred' AND m.reason = 'campaign_paused'",
                state::QUEUED,
                "campaign_resumed",
                now,
            )
            .await?;
            (status::ACTIVE, n)
        }
        (Action::Cancel, _) => {
            // Everything not yet handed to a dispatcher: held, released but unclaimed, waiting
            // in a retry tier (its envelope then finds it cancelled and is dropped).
            let n = move_messages(
                &mut tx,
                tenant,
                id,
                "m.state IN ('accepted', 'queued', 'deferred')",
                state::CANCELLED,
                "campaign_cancelled",
                now,
            )
            .await?;
            metrics::counter!(BULK_ENDED, "reason" => "campaign_cancelled").increment(n);
            (status::CANCELLED, n)
        }
    };
    sqlx::query(
        "UPDATE campaigns SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(next)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(campaign = %id, status = next, moved, "campaign {next}");
    Ok(Changed {
        id,
        status: next.to_owned(),
        messages_changed: moved,
    })
}

/// Moves the campaign's messages matching `filter` to `to` (with `reason`), unpublished, and
/// writes an event for each. Returns how many moved.
async fn move_messages(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: uuid::Uuid,
    filter: &'static str,
    to: &'static str,
    reason: &'static str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    // Resumed messages keep no reason; paused and cancelled ones carry theirs.
    let row_reason = if to == state::QUEUED {
        None
    } else {
        Some(reason)
    };
    let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH moved AS (
             UPDATE messages m SET state = $3, reason = $4, not_before = NULL, published_at = NULL, updated_at = $6
             WHERE m.tenant_id = $1 AND m.campaign_id = $2 AND m.direction = 'out' AND {filter}
             RETURNING m.id)
         INSERT INTO message_events (message_id, tenant_id, state, reason, at)
         SELECT id, $1, $3, $5, $6 FROM moved"
    )))
    .bind(tenant)
    .bind(id)
    .bind(to)
    .bind(row_reason)
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    metrics::counter!(wafleet_core::metrics::MESSAGES, "state" => to, "reason" => reason)
        .increment(moved);
    Ok(moved)
}
