//! A campaign's progress and its controls. Pause moves the campaign's waiting messages (held
//! or released but not yet claimed by a dispatcher) to `deferred: campaign_paused`, which
//! neither the feeder, the releaser nor a dispatcher's claim touches; resume gives them back
//! to the feeder; cancel ends everything not yet dispatched as `cancelled`. Each is one
//! statement over the campaign's rows, with their events, in one transaction with the status.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use wafleet_core::{
    campaign::{self, Hold, PAUSED_REASON, status},
    domain::{TenantId, state},
    http::Problem,
    metrics::BULK_ENDED,
    policy::cap,
};

/// A campaign as listed.
#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct CampaignRow {
    pub id: uuid::Uuid,
    pub name: String,
    pub status: String,
    pub template_name: String,
    pub template_language: String,
    #[serde(rename = "sender")]
    pub phone_number_id: String,
    pub user_id: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
    pub recipients_given: i32,
    pub accepted: i32,
    pub rejected: i32,
    pub duplicates: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, status, template_name, template_language, phone_number_id, user_id, \
    not_after, recipients_given, accepted, rejected, duplicates, created_at, updated_at";

/// States a campaign message is still waiting in (not yet handed to Meta).
const WAITING: [&str; 3] = [state::ACCEPTED, state::QUEUED, state::DEFERRED];

/// A campaign's progress.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CampaignStatus {
    #[serde(flatten)]
    pub campaign: CampaignRow,
    /// Messages per state (including those joined over AMQP intake).
    pub counts: BTreeMap<String, i64>,
    /// Messages not yet handed to Meta.
    pub pending: i64,
    /// Dispatch attempts per second over the last minute.
    pub current_rate: f64,
    /// The sender's rate the feeder keeps.
    pub sender_rate: u32,
    /// What holds the campaign back now, if anything.
    pub held_by: Option<Hold>,
    /// When the last pending message should be sent, given the rate, quiet time and the cap
    /// (null when nothing is pending, or while paused or cancelled).
    pub eta: Option<DateTime<Utc>>,
}

fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such campaign")
}

async fn row(pool: &PgPool, tenant: TenantId, id: uuid::Uuid) -> Result<CampaignRow, Problem> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(not_found)
}

/// Progress, rate and ETA of one campaign. `default_rate` is the rate of a sender without its
/// own `rate_mps`.
pub async fn status_of(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    default_rate: u32,
    now: DateTime<Utc>,
) -> Result<CampaignStatus, Problem> {
    let mut campaign = row(pool, tenant, id).await?;
    let own_rate: Option<i32> = sqlx::query_scalar(
        "SELECT rate_mps FROM senders WHERE tenant_id = $1 AND phone_number_id = $2",
    )
    .bind(tenant)
    .bind(&campaign.phone_number_id)
    .fetch_optional(pool)
    .await?
    .flatten();
    let sender_rate = own_rate.map_or(default_rate, |r| r.clamp(1, 1000) as u32);
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY state",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(pool)
    .await?;
    let counts: BTreeMap<String, i64> = counts.into_iter().collect();
    let pending: i64 = WAITING.iter().filter_map(|s| counts.get(*s)).sum::<i64>();
    let (recent,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND claimed_at > $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(now - chrono::Duration::minutes(1))
    .fetch_one(pool)
    .await?;
    let (held_by, eta) = match campaign.status.as_str() {
        status::CANCELLED => (None, None),
        status::PAUSED => (
            Some(Hold {
                reason: PAUSED_REASON,
                until: None,
            }),
            None,
        ),
        _ if pending == 0 => (None, None),
        _ => {
            let quiet = campaign::quiet_rule(pool, tenant).await?;
            let usage = cap::usage(pool, tenant, now).await?;
            let in_flight = counts.get(state::DISPATCHING).copied().unwrap_or(0) as u32;
            (
                campaign::hold_now(quiet.as_ref(), &usage, in_flight, now),
                campaign::estimate_eta(pending as u64, sender_rate, quiet.as_ref(), &usage, now),
            )
        }
    };
    if campaign.status == status::ACTIVE && pending == 0 {
        campaign.status = status::COMPLETED.to_owned();
    }
    Ok(CampaignStatus {
        campaign,
        counts,
        pending,
        current_rate: recent as f64 / 60.0,
        sender_rate,
        held_by,
        eta,
    })
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
