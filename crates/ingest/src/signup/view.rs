//! The signup as `GET /v1/signup` (and `POST /v1/signup`'s answer) shows it: when each step
//! was done, the last failure, the senders, and the PINs generated in this very answer.

use crate::senders;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use wafleet_core::{
    config::Secret,
    domain::{SenderId, TenantId},
};

/// The tenant's signup as `GET /v1/signup` shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SignupView {
    pub waba_id: String,
    /// `connected` (every step done), `failed` (see `error`; send the same request again) or
    /// `in_progress`.
    pub status: &'static str,
    /// When each step was done (null: not yet).
    pub exchanged_at: Option<DateTime<Utc>>,
    pub numbers_at: Option<DateTime<Utc>>,
    pub subscribed_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The last failure: `step`, Meta's `code` and `message`, `at`.
    pub error: Option<Value>,
    pub senders: Vec<SignupSender>,
}

/// A sender as the signup answer shows it.
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct SignupSender {
    pub id: SenderId,
    pub phone_number_id: String,
    #[sqlx(rename = "phone_e164")]
    pub phone: String,
    pub status: String,
    pub registration: String,
    /// The two-step PIN generated for this number: only in the answer that registered it.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SignupRow {
    waba_id: String,
    exchanged_at: Option<DateTime<Utc>>,
    numbers_at: Option<DateTime<Utc>>,
    subscribed_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    error: Option<Value>,
}

/// The tenant's signup (`None`: none yet), with `pins` shown for the senders they belong to.
pub async fn view(
    pool: &PgPool,
    tenant: TenantId,
    pins: &HashMap<SenderId, Secret>,
) -> Result<Option<SignupView>, sqlx::Error> {
    let row: Option<SignupRow> = sqlx::query_as(
        "SELECT waba_id, exchanged_at, numbers_at, subscribed_at, completed_at, error
         FROM signups WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut senders: Vec<SignupSender> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, phone_number_id, phone_e164, status, registration FROM senders
         WHERE tenant_id = $1 AND {} ORDER BY created_at, id",
        senders::LIVE
    )))
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    for sender in &mut senders {
        sender.pin = pins.get(&sender.id).map(|p| p.expose().to_owned());
    }
    let status = match (&row.completed_at, &row.error) {
        (Some(_), _) => "connected",
        (None, Some(_)) => "failed",
        (None, None) => "in_progress",
    };
    Ok(Some(SignupView {
        waba_id: row.waba_id,
        status,
        exchanged_at: row.exchanged_at,
        numbers_at: row.numbers_at,
        subscribed_at: row.subscribed_at,
        completed_at: row.completed_at,
        error: row.error,
        senders,
    }))
}
