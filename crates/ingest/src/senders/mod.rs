//! Senders (SPEC §2, reference §7): a tenant's WhatsApp numbers, at most 20, each added from
//! its WABA's phone numbers on Graph. A number Meta reports as verified is `approved` at once;
//! any other is `pending` until its OTP is verified (`otp`). Three wrong codes reject it, and
//! `rejected` is final: the number must be added anew. A number sends only once registered
//! for Cloud API with a two-step PIN (`registration`); a removed sender stays on record but
//! frees its place among the 20. Used by the HTTP API and the operator CLI alike.

mod otp;
pub mod registration;

pub use otp::{request_code, verify_code};

use crate::graph_admin::{GraphAdmin, GraphAdminError, MetaNumber};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use wafleet_core::domain::{PhoneNumber, SenderId, TenantId};

/// Senders a portfolio may have (Meta's cap for a verified business).
pub const MAX_SENDERS: i64 = 20;
/// Wrong codes after which a pending sender is rejected.
pub const MAX_VERIFY_FAILURES: i32 = 3;

/// A sender as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct SenderView {
    pub id: SenderId,
    pub phone_number_id: String,
    #[sqlx(rename = "phone_e164")]
    pub phone: String,
    pub display_name: String,
    pub friendly_name: String,
    /// Null: a company sender; otherwise the upstream user who owns it.
    pub owner_user_id: Option<String>,
    pub is_company_default: bool,
    /// `pending`, `approved`, `rejected` or `removed`.
    pub status: String,
    /// `registered` for Cloud API (it can send), `unregistered` (never, or Meta said 133010) or
    /// `deregistered`.
    pub registration: String,
    pub registered_at: Option<DateTime<Utc>>,
    /// Meta's error from the last registration attempt that failed.
    pub registration_error: Option<serde_json::Value>,
    pub code_method: Option<String>,
    pub quality_rating: Option<String>,
    pub throughput_mps: Option<i32>,
    /// The rate the dispatcher holds this sender to (messages per second), set by an admin;
    /// `null` = the configured default (`dispatch.sender_rate`).
    pub rate_mps: Option<i32>,
    /// Meta's review of `display_name` (`APPROVED`, `DECLINED`, …).
    pub name_status: Option<String>,
    /// A display name submitted to Meta, shown to recipients once approved, and its review
    /// (`PENDING_REVIEW`, `DECLINED`).
    pub new_display_name: Option<String>,
    pub new_name_status: Option<String>,
    pub paused_until: Option<DateTime<Utc>>,
    pub synced_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

pub const VIEW_COLUMNS: &str = "id, phone_number_id, phone_e164, display_name, friendly_name, owner_user_id, is_company_default, status, registration, registered_at, registration_error, code_method, quality_rating, throughput_mps, rate_mps, name_status, new_display_name, new_name_status, paused_until, synced_at, created_at, removed_at";

/// Senders that hold a place among the 20 and their phone number id (SQL, on `senders`).
pub const LIVE: &str = "status NOT IN ('rejected', 'removed')";

/// What adding a sender takes.
#[derive(Debug, Clone, Default)]
pub struct AddSender {
    pub phone: String,
    /// Defaults to the name Meta verified for the number.
    pub display_name: Option<String>,
    pub friendly_name: Option<String>,
    pub owner_user_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("a portfolio has at most {MAX_SENDERS} senders; remove or reject one first")]
    LimitReached,
    #[error(
        "{0} is not a phone number of the tenant's WhatsApp Business Account; add it in WhatsApp Manager first"
    )]
    NotInWaba(String),
    #[error("that number is already a sender")]
    Duplicate,
    #[error("no such sender")]
    NotFound,
    #[error("the sender is {0}; only a pending sender is verified")]
    NotPending(String),
    #[error("the sender is {0}; only an approved sender is registered (verify its OTP first)")]
    NotApproved(String),
    #[error("request a code (request_code) before verifying it")]
    CodeNotRequested,
    #[error("Meta did not accept the code; {remaining} attempt(s) left")]
    WrongCode { remaining: i32 },
    #[error(
        "Meta did not accept the code {MAX_VERIFY_FAILURES} times: the sender is rejected; add the number again to retry"
    )]
    Rejected,
    #[error(transparent)]
    Graph(#[from] GraphAdminError),
    #[error(transparent)]
    Tenant(#[from] wafleet_core::tenant::TenantError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Adds a sender from the WABA's numbers on Graph: approved if Meta verified it, else pending.
pub async fn add(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    new: &AddSender,
) -> Result<SenderView, SenderError> {
    let phone = PhoneNumber::parse(&new.phone).map_err(|e| SenderError::Invalid {
        field: "phone",
        detail: format!("phone: {e}"),
    })?;
    for (field, value) in [
        ("display_name", &new.display_name),
        ("friendly_name", &new.friendly_name),
        ("owner_user_id", &new.owner_user_id),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.trim().is_empty() || v.len() > 200)
        {
            return Err(SenderError::Invalid {
                field,
                detail: format!("{field} is 1 to 200 characters (leave it out for none)"),
            });
        }
    }
    let conn = graph.connection(pool, tenant).await?;
    let digits = phone.as_str().trim_start_matches('+');
    let numbers = graph.list_numbers(&conn).await?;
    let meta = numbers
        .iter()
        .find(|n| n.digits() == digits)
        .ok_or_else(|| SenderError::NotInWaba(phone.to_string()))?;
    let mut tx = pool.begin().await?;
    lock_senders(&mut tx, tenant).await?;
    let id = insert(&mut tx, tenant, meta, &phone, new).await?;
    tx.commit().await?;
    get(pool, tenant, id).await
}

/// Serialises changes to the tenant's senders (adds, removals), so two concurrent adds cannot
/// both be the 20th.
pub(crate) async fn lock_senders(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('senders:' || $1::text))")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Inserts a number Meta listed as the tenant's sender, within the 20 (the caller holds
/// [`lock_senders`]): `approved` if Meta verified it, else `pending`; `registered` unless Meta
/// shows it not registered.
pub(crate) async fn insert(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    meta: &MetaNumber,
    phone: &PhoneNumber,
    new: &AddSender,
) -> Result<SenderId, SenderError> {
    let live: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM senders WHERE tenant_id = $1 AND {LIVE}"
    )))
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    if live >= MAX_SENDERS {
        return Err(SenderError::LimitReached);
    }
    let status = if meta.is_verified() {
        "approved"
    } else {
        "pending"
    };
    // A number whose status Graph does not tell is taken as sending, as before registration
    // was tracked; a 133010 corrects it.
    let registration = if meta.registered().unwrap_or(true) {
        "registered"
    } else {
        "unregistered"
    };
    let id = SenderId::new();
    let inserted = sqlx::query(
        "INSERT INTO senders (id, tenant_id, phone_number_id, phone_e164, display_name, friendly_name,
             owner_user_id, status, quality_rating, throughput_mps, name_status, synced_at,
             registration, new_display_name, new_name_status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), $12, $13, $14)",
    )
    .bind(id)
    .bind(tenant)
    .bind(&meta.id)
    .bind(phone.as_str())
    .bind(new.display_name.clone().unwrap_or_else(|| meta.verified_name.clone()))
    .bind(new.friendly_name.clone().unwrap_or_default())
    .bind(&new.owner_user_id)
    .bind(status)
    .bind(&meta.quality_rating)
    .bind(meta.throughput_mps())
    .bind(&meta.name_status)
    .bind(registration)
    .bind(&meta.new_display_name)
    .bind(&meta.new_name_status)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(SenderError::Duplicate),
        other => other.map(|_| id).map_err(Into::into),
    }
}

/// One sender of the tenant.
pub async fn get(pool: &PgPool, tenant: TenantId, id: SenderId) -> Result<SenderView, SenderError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW_COLUMNS} FROM senders WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(SenderError::NotFound)
}

/// Every sender of the tenant, oldest first.
pub async fn list(pool: &PgPool, tenant: TenantId) -> Result<Vec<SenderView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW_COLUMNS} FROM senders WHERE tenant_id = $1 ORDER BY created_at, id"
    )))
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// Refreshes quality rating, throughput, display-name review and registration from Graph; a
/// pending sender Meta now reports as verified becomes approved, and one Meta now shows
/// registered releases the messages held for it. Returns how many senders were updated.
pub async fn sync(pool: &PgPool, graph: &GraphAdmin, tenant: TenantId) -> Result<u64, SenderError> {
    let conn = graph.connection(pool, tenant).await?;
    let numbers: Vec<MetaNumber> = graph.list_numbers(&conn).await?;
    let now = graph.clock.now();
    let mut updated = 0;
    for n in &numbers {
        let registered = n.registered();
        updated += sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE senders SET quality_rating = $3, throughput_mps = $4, name_status = $5,
                 new_display_name = $7, new_name_status = $8, synced_at = $10,
                 status = CASE WHEN status = 'pending' AND $6 THEN 'approved' ELSE status END,
                 registered_at = CASE WHEN $9 AND registration <> 'registered' THEN $10
                                      ELSE registered_at END,
                 registration = CASE WHEN $9 THEN 'registered'
                                     WHEN NOT $9 AND registration = 'registered' THEN 'unregistered'
                                     ELSE registration END
             WHERE tenant_id = $1 AND phone_number_id = $2 AND {LIVE}"
        )))
        .bind(tenant)
        .bind(&n.id)
        .bind(&n.quality_rating)
        .bind(n.throughput_mps())
        .bind(&n.name_status)
        .bind(n.is_verified())
        .bind(&n.new_display_name)
        .bind(&n.new_name_status)
        .bind(registered)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
        if registered == Some(true) {
            registration::release_holds(pool, tenant, &n.id, now).await?;
        }
    }
    Ok(updated)
}

/// What an admin may change on a sender; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EditSender {
    pub friendly_name: Option<String>,
    pub display_name: Option<String>,
    /// `Some(None)` makes it a company sender.
    pub owner_user_id: Option<Option<String>>,
    /// The sender's rate, 1–1,000 messages per second; `Some(None)` returns it to the default.
    pub rate_mps: Option<Option<i32>>,
}

/// Changes a sender's names, owner or rate. A sender given to a user stops being the company
/// default. A display name goes to Meta for review (`POST /{phone_number_id}` with
/// `new_display_name`) and waits in `new_display_name` until Meta approves it
/// (`phone_number_name_update`); Meta refusing the submission changes nothing.
pub async fn edit(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    id: SenderId,
    edit: &EditSender,
) -> Result<SenderView, SenderError> {
    let owner_given = edit.owner_user_id.is_some();
    let owner = edit.owner_user_id.clone().flatten();
    if owner.as_deref().is_some_and(|o| o.trim().is_empty()) {
        return Err(SenderError::Invalid {
            field: "owner_user_id",
            detail: "owner_user_id is a user id, or null for the company".into(),
        });
    }
    if let Some(Some(rate)) = edit.rate_mps
        && !(1..=1000).contains(&rate)
    {
        return Err(SenderError::Invalid {
            field: "rate_mps",
            detail: "rate_mps is 1 to 1000 messages per second (Meta's highest level), or null for the default".into(),
        });
    }
    let display_name = edit.display_name.as_deref().map(str::trim);
    if let Some(name) = display_name {
        if name.is_empty() || name.chars().count() > 512 {
            return Err(SenderError::Invalid {
                field: "display_name",
                detail:
                    "display_name is 1 to 512 characters, following Meta's display name guidelines"
                        .into(),
            });
        }
        let sender = get(pool, tenant, id).await?;
        let conn = graph.connection(pool, tenant).await?;
        graph
            .submit_display_name(&conn, &sender.phone_number_id, name)
            .await?;
    }
    let done = sqlx::query(
        "UPDATE senders SET friendly_name = COALESCE($3, friendly_name),
             new_display_name = COALESCE($4, new_display_name),
             new_name_status = CASE WHEN $4 IS NULL THEN new_name_status ELSE 'PENDING_REVIEW' END,
             owner_user_id = CASE WHEN $5 THEN $6 ELSE owner_user_id END,
             is_company_default = is_company_default AND NOT ($5 AND $6 IS NOT NULL),
             rate_mps = CASE WHEN $7 THEN $8 ELSE rate_mps END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(edit.friendly_name.as_deref().map(str::trim))
    .bind(display_name)
    .bind(owner_given)
    .bind(owner)
    .bind(edit.rate_mps.is_some())
    .bind(edit.rate_mps.flatten())
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(SenderError::NotFound);
    }
    if owner_given && edit.owner_user_id.as_ref().is_some_and(Option::is_some) {
        sqlx::query("UPDATE tenant_settings SET default_sender_id = NULL WHERE tenant_id = $1 AND default_sender_id = $2")
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?;
    }
    get(pool, tenant, id).await
}
