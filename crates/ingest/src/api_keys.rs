//! API keys of a tenant: minted here (the key is returned once, only its hash is stored),
//! listed by their public prefix, and revoked. Used by the HTTP API and the operator CLI.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use wafleet_core::{
    domain::{Role, TenantId},
    secrets::{SecretError, mint_api_key},
};

/// A key as listed: never the key itself.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct KeyView {
    pub id: uuid::Uuid,
    pub prefix: String,
    pub role: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key: `key` is shown once.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CreatedKey {
    pub id: uuid::Uuid,
    pub key: String,
    pub prefix: String,
    pub role: Role,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Mints and stores a key for the tenant.
pub async fn create(
    pool: &PgPool,
    tenant: TenantId,
    role: Role,
    label: &str,
) -> Result<CreatedKey, KeyError> {
    let minted = mint_api_key()?;
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, role, label) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(tenant)
    .bind(&minted.hash)
    .bind(&minted.prefix)
    .bind(role.as_str())
    .bind(label)
    .execute(pool)
    .await?;
    Ok(CreatedKey {
        id,
        key: minted.key,
        prefix: minted.prefix,
        role,
        label: label.to_owned(),
    })
}

/// The tenant's keys, newest first, revoked ones included.
pub async fn list(pool: &PgPool, tenant: TenantId) -> Result<Vec<KeyView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, prefix, role, label, created_at, revoked_at FROM api_keys
         WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// Revokes a key of the tenant (idempotent); `None` when the tenant has no such key.
pub async fn revoke(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<KeyView>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, prefix, role, label, created_at, revoked_at",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await
}
