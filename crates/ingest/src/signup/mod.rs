//! Embedded Signup's back end (Meta's "Onboarding business customers as a Tech Provider"):
//! after the company's WhatsApp admin finished Meta's flow in the browser, the upstream product
//! sends the `code` (from `FB.login`) and the WABA and phone number ids (from the
//! `WA_EMBEDDED_SIGNUP` message). In order, each step recorded in `signups` once done:
//!
//! 1. `exchange`: the code becomes a business token (`GET /oauth/access_token` with the app's
//!    id and secret), sealed into the tenant's connection (on the global app, with a generated
//!    Verify Token). The code is single-use, so a retry with the same code skips this step;
//! 2. `numbers`: the WABA's numbers become senders (the session's number the company default
//!    if there is none), within the 20;
//! 3. `subscribe`: `POST /{waba}/subscribed_apps`, without which Meta sends no webhooks;
//! 4. `register`: each approved number not yet registered gets a generated two-step PIN
//!    (sealed, shown once in this answer) and `POST /{id}/register`.
//!
//! A step Meta refuses is recorded with Meta's error and answered as such; the same request
//! again goes on from that step. Done, the connection is recorded `connected`.

mod view;

pub use view::{SignupSender, SignupView, view};

use crate::{
    graph_admin::{GraphAdmin, GraphAdminError},
    senders::{self, AddSender, SenderError, registration::register_number},
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use wafleet_core::{
    config::Secret,
    connection::{self, Observation},
    domain::{PhoneNumber, SenderId, TenantId},
};

/// What the upstream product sends once the browser side finished.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// `authResponse.code` from `FB.login`: single-use, valid 30 seconds.
    pub code: String,
    /// `data.waba_id` of the `WA_EMBEDDED_SIGNUP` `FINISH` message.
    pub waba_id: String,
    /// `data.phone_number_id` of the same message: the company's default sender if it has none.
    pub phone_number_id: Option<String>,
}

/// Why a signup stopped.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("that WABA is connected to another tenant")]
    WabaTaken,
    /// A step failed; it is recorded, and the same request goes on from it.
    #[error("step {step}: {error}")]
    Step {
        step: &'static str,
        error: SenderError,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn step(step: &'static str) -> impl FnOnce(SenderError) -> SignupError {
    move |error| SignupError::Step { step, error }
}

fn digits(field: &'static str, value: &str) -> Result<(), SignupError> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit()) {
        return Err(SignupError::Invalid {
            field,
            detail: format!("{field} is the id Meta's session info gave (digits)"),
        });
    }
    Ok(())
}

/// Runs (or resumes) the tenant's signup; answers its state, with the PINs it generated.
pub async fn run(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    request: &SignupRequest,
) -> Result<SignupView, SignupError> {
    let code = request.code.trim();
    if code.is_empty() {
        return Err(SignupError::Invalid {
            field: "code",
            detail: "code is the one FB.login answered (authResponse.code)".into(),
        });
    }
    digits("waba_id", &request.waba_id)?;
    if let Some(id) = &request.phone_number_id {
        digits("phone_number_id", id)?;
    }
    let result = steps(pool, graph, tenant, request, code).await;
    if let Err(SignupError::Step { step, error }) = &result {
        record_failure(pool, tenant, step, error, graph.clock.now()).await?;
    }
    let pins = result?;
    view(pool, tenant, &pins)
        .await?
        .ok_or(SignupError::Database(sqlx::Error::RowNotFound))
}

async fn steps(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    request: &SignupRequest,
    code: &str,
) -> Result<HashMap<SenderId, Secret>, SignupError> {
    let code_sha256 = Sha256::digest(code.as_bytes()).to_vec();
    let done: Option<Progress> = sqlx::query_as(
        "SELECT numbers_at, subscribed_at FROM signups
         WHERE tenant_id = $1 AND code_sha256 = $2 AND waba_id = $3 AND exchanged_at IS NOT NULL",
    )
    .bind(tenant)
    .bind(&code_sha256)
    .bind(&request.waba_id)
    .fetch_optional(pool)
    .await?;
    let done = match done {
        Some(progress) => progress,
        None => {
            exchange(pool, graph, tenant, request, code, &code_sha256).await?;
            Progress::default()
        }
    };
    let conn = graph
        .connection(pool, tenant)
        .await
        .map_err(|e| step("numbers")(e.into()))?;
    if done.numbers_at.is_none() {
        let numbers = graph
            .list_numbers(&conn)
            .await
            .map_err(|e| step("numbers")(e.into()))?;
        record_numbers(pool, tenant, request, &numbers).await?;
        mark(pool, tenant, "numbers_at", graph.clock.now()).await?;
    }
    if done.subscribed_at.is_none() {
        graph
            .subscribe_app(&conn)
            .await
            .map_err(|e| step("subscribe")(e.into()))?;
        mark(pool, tenant, "subscribed_at", graph.clock.now()).await?;
    }
    let unregistered: Vec<(SenderId, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, phone_number_id FROM senders
         WHERE tenant_id = $1 AND {} AND status = 'approved' AND registration <> 'registered'
         ORDER BY created_at, id",
        senders::LIVE
    )))
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let mut pins = HashMap::new();
    let mut first_failure = None;
    // Every number is tried: one Meta refuses does not keep the others from sending.
    for (id, phone_number_id) in unregistered {
        match register_number(pool, graph, &conn, id, &phone_number_id, None).await {
            Ok(Some(pin)) => {
                pins.insert(id, pin);
            }
            Ok(None) => {}
            Err(error) => {
                first_failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_failure {
        return Err(SignupError::Step {
            step: "register",
            error,
        });
    }
    let now = graph.clock.now();
    sqlx::query(
        "UPDATE signups SET completed_at = $2, error = NULL, updated_at = $2 WHERE tenant_id = $1",
    )
    .bind(tenant)
    .bind(now)
    .execute(pool)
    .await?;
    connection::record(pool, tenant, &Observation::connected(), now).await?;
    Ok(pins)
}

#[derive(Debug, Default, sqlx::FromRow)]
struct Progress {
    numbers_at: Option<DateTime<Utc>>,
    subscribed_at: Option<DateTime<Utc>>,
}

/// Step 1: a new signup (this code) replaces the last; its token, sealed, becomes the
/// connection's (on the global app; a Verify Token is generated for a new connection).
async fn exchange(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    request: &SignupRequest,
    code: &str,
    code_sha256: &[u8],
) -> Result<(), SignupError> {
    let now = graph.clock.now();
    sqlx::query(
        "INSERT INTO signups (tenant_id, waba_id, code_sha256, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (tenant_id) DO UPDATE SET waba_id = EXCLUDED.waba_id,
             code_sha256 = EXCLUDED.code_sha256, exchanged_at = NULL, numbers_at = NULL,
             subscribed_at = NULL, completed_at = NULL, error = NULL, created_at = $4, updated_at = $4",
    )
    .bind(tenant)
    .bind(&request.waba_id)
    .bind(code_sha256)
    .bind(now)
    .execute(pool)
    .await?;
    let token = graph
        .exchange_code(code)
        .await
        .map_err(|e| step("exchange")(e.into()))?;
    let sealed = |plain: &str| {
        graph
            .secrets()
            .map_err(SenderError::from)
            .and_then(|s| s.seal(plain).map_err(|e| SenderError::Tenant(e.into())))
            .map_err(step("exchange"))
    };
    let token_enc = sealed(token.expose())?;
    let verify_enc = sealed(
        &wafleet_core::secrets::random_verify_token()
            .map_err(|e| step("exchange")(SenderError::Tenant(e.into())))?,
    )?;
    let stored = sqlx::query(
        "INSERT INTO meta_connections (tenant_id, waba_id, access_token_enc, app_secret_enc,
             verify_token_enc, status, status_since)
         VALUES ($1, $2, $3, NULL, $4, 'unknown', $5)
         ON CONFLICT (tenant_id) DO UPDATE SET waba_id = EXCLUDED.waba_id,
             access_token_enc = EXCLUDED.access_token_enc, app_secret_enc = NULL,
             status = 'unknown', status_since = $5, updated_at = $5",
    )
    .bind(tenant)
    .bind(&request.waba_id)
    .bind(token_enc)
    .bind(verify_enc)
    .bind(now)
    .execute(pool)
    .await;
    match stored {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(SignupError::WabaTaken);
        }
        other => other?,
    };
    mark(pool, tenant, "exchanged_at", now).await
}

/// Step 2: every number of the WABA that is not yet a sender of the tenant becomes one.
async fn record_numbers(
    pool: &PgPool,
    tenant: TenantId,
    request: &SignupRequest,
    numbers: &[crate::graph_admin::MetaNumber],
) -> Result<(), SignupError> {
    if let Some(id) = &request.phone_number_id
        && !numbers.iter().any(|n| n.id == *id)
    {
        return Err(step("numbers")(SenderError::NotInWaba(id.clone())));
    }
    let mut tx = pool.begin().await?;
    senders::lock_senders(&mut tx, tenant).await?;
    let known: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT phone_number_id FROM senders WHERE tenant_id = $1 AND {}",
        senders::LIVE
    )))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    for number in numbers.iter().filter(|n| !known.contains(&n.id)) {
        let phone = PhoneNumber::parse(&format!("+{}", number.digits())).map_err(|e| {
            step("numbers")(SenderError::Invalid {
                field: "phone_number_id",
                detail: format!("Meta's number {}: {e}", number.id),
            })
        })?;
        senders::insert(&mut tx, tenant, number, &phone, &AddSender::default())
            .await
            .map_err(step("numbers"))?;
    }
    // The company's default sender: the session's number, else the first, unless it has one.
    let default = request
        .phone_number_id
        .clone()
        .or_else(|| numbers.first().map(|n| n.id.clone()));
    if let Some(default) = default {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE senders SET is_company_default = true
             WHERE tenant_id = $1 AND phone_number_id = $2 AND {} AND owner_user_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM senders d WHERE d.tenant_id = $1 AND d.is_company_default)",
            senders::LIVE
        )))
        .bind(tenant)
        .bind(&default)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tenant_settings SET default_sender_id =
                 (SELECT id FROM senders WHERE tenant_id = $1 AND is_company_default)
             WHERE tenant_id = $1 AND default_sender_id IS NULL",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn mark(
    pool: &PgPool,
    tenant: TenantId,
    column: &'static str,
    at: DateTime<Utc>,
) -> Result<(), SignupError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE signups SET {column} = $2, updated_at = $2 WHERE tenant_id = $1"
    )))
    .bind(tenant)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Keeps the failed step and Meta's error on the signup, and counts it.
async fn record_failure(
    pool: &PgPool,
    tenant: TenantId,
    step: &str,
    error: &SenderError,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let (code, message) = match error {
        SenderError::Graph(GraphAdminError::Meta { code, message, .. }) => (*code, message.clone()),
        other => (None, other.to_string()),
    };
    metrics::counter!(wafleet_core::metrics::SIGNUP_FAILURES, "step" => step.to_owned())
        .increment(1);
    tracing::warn!(tenant = %tenant, step, meta.error.code = ?code, "Embedded Signup step failed");
    sqlx::query("UPDATE signups SET error = $2, updated_at = $3 WHERE tenant_id = $1")
        .bind(tenant)
        .bind(json!({"step": step, "code": code, "message": message, "at": at}))
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}
