//! Tenant bootstrap: a tenant with its Meta connection, senders and a first admin API key, in
//! one transaction. Used by `wafleet tenant create`, the demo and the tests.

use crate::{
    domain::{PhoneNumber, Role, SenderId, TenantId},
    secrets::{SecretBox, mint_api_key},
};
use serde::Serialize;
use sqlx::PgPool;

/// What a new tenant needs.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub waba_id: String,
    pub access_token: crate::config::Secret,
    pub app_secret: crate::config::Secret,
    pub verify_token: crate::config::Secret,
    /// The first sender becomes the company default.
    pub senders: Vec<NewSender>,
}

#[derive(Debug, Clone)]
pub struct NewSender {
    pub phone_number_id: String,
    pub phone: PhoneNumber,
    pub display_name: String,
}

impl NewSender {
    /// Parses the CLI form `PHONE_NUMBER_ID:+E164`.
    pub fn parse_cli(s: &str) -> Result<Self, String> {
        let (id, phone) = s
            .split_once(':')
            .ok_or_else(|| format!("expected PHONE_NUMBER_ID:+E164, got {s:?}"))?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("phone number id must be digits, got {id:?}"));
        }
        let phone = PhoneNumber::parse(phone).map_err(|e| format!("{e}"))?;
        Ok(Self {
            phone_number_id: id.to_owned(),
            phone,
            display_name: String::new(),
        })
    }
}

/// The created tenant and its admin key (shown once).
#[derive(Debug, Serialize)]
pub struct CreatedTenant {
    pub tenant_id: TenantId,
    pub api_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("a tenant needs at least one sender")]
    NoSender,
    #[error("that WABA id or sender phone number id is already registered")]
    Conflict,
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for TenantError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(err),
        }
    }
}

pub async fn create_tenant(
    pool: &PgPool,
    secrets: &SecretBox,
    new: &NewTenant,
) -> Result<CreatedTenant, TenantError> {
    if new.senders.is_empty() {
        return Err(TenantError::NoSender);
    }
    let mut tx = pool.begin().await?;
    let tenant_id = insert_tenant(&mut tx, &new.name).await?;
    sqlx::query(
        "INSERT INTO meta_connections (tenant_id, waba_id, access_token_enc, app_secret_enc, verify_token_enc)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(&new.waba_id)
    .bind(secrets.seal(new.access_token.expose())?)
    .bind(secrets.seal(new.app_secret.expose())?)
    .bind(secrets.seal(new.verify_token.expose())?)
    .execute(&mut *tx)
    .await?;
    for (i, sender) in new.senders.iter().enumerate() {
        sqlx::query(
            "INSERT INTO senders (id, tenant_id, phone_number_id, phone_e164, display_name, is_company_default)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(SenderId::new())
        .bind(tenant_id)
        .bind(&sender.phone_number_id)
        .bind(sender.phone.as_str())
        .bind(&sender.display_name)
        .bind(i == 0)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO tenant_settings (tenant_id, default_sender_id)
         SELECT $1, id FROM senders WHERE tenant_id = $1 AND is_company_default",
    )
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    with_admin_key(tx, tenant_id).await
}

/// Creates a tenant with no Meta connection yet (it connects through Embedded Signup, or
/// `PUT /v1/settings/meta`), its default settings and a first admin API key: the operators'
/// `POST /v1/operator/tenants`.
pub async fn create_unconnected(pool: &PgPool, name: &str) -> Result<CreatedTenant, TenantError> {
    let mut tx = pool.begin().await?;
    let tenant_id = insert_tenant(&mut tx, name).await?;
    sqlx::query("INSERT INTO tenant_settings (tenant_id) VALUES ($1)")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    with_admin_key(tx, tenant_id).await
}

/// Mints the new tenant's first admin key and commits its creation.
async fn with_admin_key(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: TenantId,
) -> Result<CreatedTenant, TenantError> {
    let api_key = insert_api_key(&mut tx, tenant_id, Role::Admin).await?;
    tx.commit().await?;
    Ok(CreatedTenant { tenant_id, api_key })
}

async fn insert_tenant(tx: &mut sqlx::PgConnection, name: &str) -> Result<TenantId, TenantError> {
    let tenant_id = TenantId::new();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(tenant_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(tenant_id)
}

/// A tenant as the operators see it (`wafleet tenant list`, `GET /v1/operator/tenants`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The module switch: false, its sends are refused (`whatsapp_disabled`).
    pub whatsapp_enabled: bool,
    pub whatsapp_changed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Null until connected (Embedded Signup or `PUT /v1/settings/meta`).
    pub waba_id: Option<String>,
    /// The connection's status (`connected`, `token_invalid`, …), null without a connection.
    pub connection_status: Option<String>,
    /// Senders holding a place among the 20.
    pub senders: i64,
}

const SUMMARY: &str =
    "SELECT t.id, t.name, t.created_at, t.whatsapp_enabled, t.whatsapp_changed_at,
        c.waba_id, c.status AS connection_status,
        (SELECT count(*) FROM senders s
         WHERE s.tenant_id = t.id AND s.status NOT IN ('rejected', 'removed')) AS senders
     FROM tenants t LEFT JOIN meta_connections c ON c.tenant_id = t.id";

/// Every tenant, oldest first: the operators' listing, the one read across tenants.
pub async fn list_tenants(pool: &PgPool) -> Result<Vec<TenantSummary>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SUMMARY} ORDER BY t.created_at, t.id"
    )))
    .fetch_all(pool)
    .await
}

/// One tenant (`None`: no such tenant).
pub async fn tenant_summary(
    pool: &PgPool,
    tenant: TenantId,
) -> Result<Option<TenantSummary>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMARY} WHERE t.id = $1")))
        .bind(tenant)
        .fetch_optional(pool)
        .await
}

/// Switches the tenant's WhatsApp module on or off at `now`; `None`: no such tenant.
pub async fn set_whatsapp_enabled(
    pool: &PgPool,
    tenant: TenantId,
    enabled: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<TenantSummary>, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE tenants SET whatsapp_enabled = $2,
             whatsapp_changed_at = CASE WHEN whatsapp_enabled = $2 THEN whatsapp_changed_at ELSE $3 END
         WHERE id = $1",
    )
    .bind(tenant)
    .bind(enabled)
    .bind(now)
    .execute(pool)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    tracing::info!(tenant = %tenant, enabled, "WhatsApp module switched");
    tenant_summary(pool, tenant).await
}

/// Mints a key for a tenant and stores its hash; returns the key to show once.
pub async fn insert_api_key(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    role: Role,
) -> Result<String, TenantError> {
    let key = mint_api_key()?;
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, role) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant_id)
    .bind(&key.hash)
    .bind(&key.prefix)
    .bind(role.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(key.key)
}

/// A tenant's Meta connection, secrets opened.
#[derive(Debug, Clone)]
pub struct MetaConnection {
    pub tenant_id: TenantId,
    pub waba_id: String,
    pub access_token: crate::config::Secret,
    /// The tenant's own Meta app's secret; `None`: the global app (`WAFLEET_META_APP_SECRET`).
    pub app_secret: Option<crate::config::Secret>,
    pub verify_token: crate::config::Secret,
}

pub async fn load_connection(
    pool: &PgPool,
    secrets: &SecretBox,
    tenant_id: TenantId,
) -> Result<Option<MetaConnection>, TenantError> {
    #[derive(sqlx::FromRow)]
    struct Sealed {
        waba_id: String,
        access_token_enc: Vec<u8>,
        app_secret_enc: Option<Vec<u8>>,
        verify_token_enc: Vec<u8>,
    }
    let row: Option<Sealed> = sqlx::query_as(
        "SELECT waba_id, access_token_enc, app_secret_enc, verify_token_enc
         FROM meta_connections WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(MetaConnection {
        tenant_id,
        waba_id: row.waba_id,
        access_token: crate::config::Secret::new(secrets.open(&row.access_token_enc)?),
        app_secret: row
            .app_secret_enc
            .map(|sealed| secrets.open(&sealed).map(crate::config::Secret::new))
            .transpose()?,
        verify_token: crate::config::Secret::new(secrets.open(&row.verify_token_enc)?),
    }))
}
