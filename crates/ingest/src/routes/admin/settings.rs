//! `GET/PUT /v1/settings` and the settings audit trail (`GET /v1/settings/audit`). A change is
//! validated whole before anything is written; the written change and its audit entry share a
//! transaction, so the trail never misses or invents a change. A change that raises the
//! messaging limit (`tier_override`, `bulk_reserve_percent`) makes the messages held for the
//! limit due at once, in the same transaction (`core::limit_holds`).

use super::caller::{AdminCaller, audit};
use crate::{auth::Principal, settings_rules::SettingsUpdate, state::AppState};
use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};
use wafleet_core::{
    domain::{Role, TenantId},
    http::Problem,
    limit_holds::{self, Limits},
    policy::quiet_time::QuietTime,
};

/// A tenant's settings as an admin sees them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, JsonSchema)]
pub struct SettingsView {
    pub allowed_countries: Vec<String>,
    #[schemars(with = "Option<QuietTime>")]
    pub quiet_time: Option<Value>,
    pub default_sender_id: Option<uuid::Uuid>,
    /// The cap tier as Meta reports it (null = unknown, treated as 250).
    pub meta_tier: Option<i32>,
    pub tier_override: Option<i32>,
    pub bulk_reserve_percent: i32,
    pub optout_keywords: Vec<String>,
    pub optin_keywords: Vec<String>,
    pub account_restricted_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "allowed_countries, quiet_time, default_sender_id, meta_tier, tier_override, bulk_reserve_percent, optout_keywords, optin_keywords, account_restricted_until, updated_at";

/// Reads (creating the defaults if missing) a tenant's settings, locking the row in `tx`.
async fn load(tx: &mut sqlx::PgConnection, tenant: TenantId) -> Result<SettingsView, Problem> {
    sqlx::query("INSERT INTO tenant_settings (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenant_settings WHERE tenant_id = $1 FOR UPDATE"
    )))
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?)
}

/// The settings with the tier in force.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SettingsBody {
    #[serde(flatten)]
    pub settings: SettingsView,
    /// `tier_override`, else `meta_tier`, else 250.
    pub effective_tier: i32,
}

fn with_effective_tier(settings: SettingsView) -> SettingsBody {
    let effective_tier = settings.tier_override.or(settings.meta_tier).unwrap_or(250);
    SettingsBody {
        settings,
        effective_tier,
    }
}

/// `GET /v1/settings` (reader).
pub async fn get(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<SettingsBody>, Problem> {
    principal.require(Role::Reader)?;
    let mut tx = st.pool.begin().await?;
    let view = load(&mut tx, principal.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(with_effective_tier(view)))
}

/// `PUT /v1/settings` (admin): changes the fields given, validated, audited.
pub async fn put(
    State(st): State<AppState>,
    caller: AdminCaller,
    body: Result<Json<SettingsUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SettingsBody>, Problem> {
    let Json(mut update) = body.map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_setting",
            e.body_text(),
        )
    })?;
    update.validate()?;
    let tenant = caller.principal.tenant_id;
    let mut tx = st.pool.begin().await?;
    let before = load(&mut tx, tenant).await?;
    let mut after = before.clone();
    if let Some(v) = update.allowed_countries {
        after.allowed_countries = v;
    }
    if let Some(v) = update.quiet_time {
        after.quiet_time = v.map(|q| json!(q));
    }
    if let Some(v) = update.tier_override {
        after.tier_override = v;
    }
    if let Some(v) = update.bulk_reserve_percent {
        after.bulk_reserve_percent = v;
    }
    if let Some(v) = update.optout_keywords {
        after.optout_keywords = v;
    }
    if let Some(v) = update.optin_keywords {
        after.optin_keywords = v;
    }
    if let Some(v) = update.default_sender_id {
        if let Some(id) = v {
            check_company_sender(&mut tx, tenant, id).await?;
        }
        after.default_sender_id = v;
        // Sender resolution reads the flag: exactly the default sender carries it.
        sqlx::query("UPDATE senders SET is_company_default = false WHERE tenant_id = $1 AND is_company_default")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE senders SET is_company_default = true WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(v)
        .execute(&mut *tx)
        .await?;
    }
    let change = diff(&json!(before), &json!(after));
    if !change.is_empty() {
        sqlx::query(
            "UPDATE tenant_settings SET allowed_countries = $2, quiet_time = $3, default_sender_id = $4,
                 tier_override = $5, bulk_reserve_percent = $6, optout_keywords = $7, optin_keywords = $8,
                 updated_at = now()
             WHERE tenant_id = $1",
        )
        .bind(tenant)
        .bind(&after.allowed_countries)
        .bind(&after.quiet_time)
        .bind(after.default_sender_id)
        .bind(after.tier_override)
        .bind(after.bulk_reserve_percent)
        .bind(&after.optout_keywords)
        .bind(&after.optin_keywords)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, &caller, json!({ "settings": change })).await?;
        if limits_of(&before).raised_by(limits_of(&after)) {
            limit_holds::release_on_raise(&mut tx, tenant, st.clock.now()).await?;
        }
    }
    let view = load(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(with_effective_tier(view)))
}

fn limits_of(s: &SettingsView) -> Limits {
    Limits::of(s.meta_tier, s.tier_override, s.bulk_reserve_percent)
}

/// The default sender is one of the tenant's approved company (not personal) senders.
async fn check_company_sender(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<(), Problem> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, owner_user_id FROM senders WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let invalid = |detail: &str| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_setting", detail)
            .field("default_sender_id")
    };
    match row {
        None => Err(invalid("no such sender")),
        Some((status, _)) if status != "approved" => Err(invalid(&format!(
            "the sender is {status}; only an approved sender can be the default"
        ))),
        Some((_, Some(_))) => Err(invalid(
            "the sender belongs to a user; the default must be a company sender",
        )),
        Some(_) => Ok(()),
    }
}

/// `{field: {before, after}}` for every field that changed.
fn diff(before: &Value, after: &Value) -> Map<String, Value> {
    let mut change = Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (key, new) in a {
            let old = b.get(key).unwrap_or(&Value::Null);
            if key != "updated_at" && old != new {
                change.insert(key.clone(), json!({ "before": old, "after": new }));
            }
        }
    }
    change
}

/// One entry of the audit trail.
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct AuditEntry {
    /// `apikey:<prefix>` of the key that made the change.
    pub actor: String,
    pub at: DateTime<Utc>,
    /// What changed, e.g. `{"settings": {field: {before, after}}}`.
    pub change: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditTrail {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// `GET /v1/settings/audit` (admin): the latest 200 changes, newest first.
pub async fn audit_trail(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<AuditTrail>, Problem> {
    let entries: Vec<AuditEntry> = sqlx::query_as(
        "SELECT actor, at, change FROM settings_audit WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT 200",
    )
    .bind(caller.principal.tenant_id)
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(AuditTrail { entries }))
}
