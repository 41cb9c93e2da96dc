//! Operator commands: migrations, tenants, templates.

use anyhow::Context;
use sqlx::{PgPool, migrate::MigrateDatabase};
use wafleet_core::{
    Settings, db,
    domain::TenantId,
    tenant::{CreatedTenant, NewTenant, TenantSummary, create_tenant},
};

/// Creates the database if it does not exist, then applies pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<PgPool> {
    if !sqlx::Postgres::database_exists(&settings.database_url).await? {
        sqlx::Postgres::create_database(&settings.database_url)
            .await
            .context("creating the database")?;
    }
    let pool = db::connect(&settings.database_url, 4, "wafleet-admin").await?;
    db::migrate(&pool).await.context("applying migrations")?;
    Ok(pool)
}

pub async fn tenant_create(settings: &Settings, new: &NewTenant) -> anyhow::Result<CreatedTenant> {
    let pool = db::connect(&settings.database_url, 2, "wafleet-admin").await?;
    let secrets = settings.secret_box()?;
    Ok(create_tenant(&pool, &secrets, new).await?)
}

/// Every tenant, as the operators see it.
pub async fn tenant_list(settings: &Settings) -> anyhow::Result<Vec<TenantSummary>> {
    let pool = db::connect(&settings.database_url, 2, "wafleet-admin").await?;
    Ok(wafleet_core::tenant::list_tenants(&pool).await?)
}

/// Switches a tenant's WhatsApp module on or off.
pub async fn tenant_switch(
    settings: &Settings,
    tenant: TenantId,
    enabled: bool,
) -> anyhow::Result<TenantSummary> {
    let pool = db::connect(&settings.database_url, 2, "wafleet-admin").await?;
    wafleet_core::tenant::set_whatsapp_enabled(&pool, tenant, enabled, chrono::Utc::now())
        .await?
        .context("no such tenant")
}

pub async fn template_sync(settings: &Settings, tenant: TenantId) -> anyhow::Result<usize> {
    let pool = db::connect(&settings.database_url, 2, "wafleet-admin").await?;
    let secrets = settings.secret_box()?;
    template_sync_with(&pool, &secrets, &reqwest::Client::new(), settings, tenant).await
}

/// Parses `PARAM=MERGE_CODE` pairs (`1=KNOWNAS`, `first_name=KNOWNAS`).
pub fn parse_bindings(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            let (param, code) = p
                .split_once('=')
                .with_context(|| format!("expected PARAM=MERGE_CODE, got {p:?}"))?;
            anyhow::ensure!(!param.is_empty() && !code.is_empty(), "empty side in {p:?}");
            Ok((param.to_owned(), code.to_owned()))
        })
        .collect()
}

/// Syncs templates with an open pool (the demo and the tests).
pub async fn template_sync_with(
    pool: &PgPool,
    secrets: &wafleet_core::secrets::SecretBox,
    http: &reqwest::Client,
    settings: &Settings,
    tenant: TenantId,
) -> anyhow::Result<usize> {
    Ok(wafleet_ingest::templates::sync(
        pool,
        secrets,
        http,
        &settings.meta_base_url,
        &settings.meta_api_version,
        tenant,
    )
    .await?)
}

/// Binds merge codes with an open pool; fails if the template is unknown.
pub async fn template_bind_with(
    pool: &PgPool,
    tenant: TenantId,
    name: &str,
    language: &str,
    pairs: &[(String, String)],
) -> anyhow::Result<()> {
    let found = wafleet_ingest::templates::bind(pool, tenant, name, language, pairs).await?;
    anyhow::ensure!(
        found,
        "no template {name} ({language}) for that tenant: run `wafleet template sync` first"
    );
    Ok(())
}
