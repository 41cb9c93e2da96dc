//! Tenant administration for the upstream product's operators (`/v1/operator/tenants`): create
//! a tenant (it then connects itself through Embedded Signup with the admin key it gets), list
//! them, and switch a tenant's WhatsApp module off or on. Authenticated with the operators'
//! own credential (`auth::Operator`), never a tenant's API key. The same rules as the CLI's
//! `wafleet tenant …` (one code path: `wafleet_core::tenant`).

use crate::{auth::Operator, state::AppState};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wafleet_core::{
    domain::TenantId,
    http::Problem,
    tenant::{self, TenantSummary},
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateTenant")]
pub struct CreateRequest {
    /// The company's name, 1–200 characters.
    pub name: String,
}

/// A new tenant and its first admin API key (shown once).
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedTenant {
    pub tenant_id: TenantId,
    /// `wf_<prefix>_<secret>`, admin role: give it to the company's product integration.
    pub api_key: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantSummary>,
}

fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such tenant")
}

fn tenant_id(raw: &str) -> Result<TenantId, Problem> {
    raw.parse().map_err(|_| not_found())
}

/// `POST /v1/operator/tenants` (operator): 201 with the tenant's id and admin key.
pub async fn create(
    State(st): State<AppState>,
    _: Operator,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedTenant>), Problem> {
    let request = super::caller::json_body(body)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "name is 1 to 200 characters",
        )
        .field("name"));
    }
    let created = tenant::create_unconnected(&st.pool, name)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "creating a tenant");
            Problem::internal()
        })?;
    tracing::info!(tenant = %created.tenant_id, "tenant created by an operator");
    Ok((
        StatusCode::CREATED,
        Json(CreatedTenant {
            tenant_id: created.tenant_id,
            api_key: created.api_key,
        }),
    ))
}

/// `GET /v1/operator/tenants` (operator): every tenant, oldest first.
pub async fn list(State(st): State<AppState>, _: Operator) -> Result<Json<TenantList>, Problem> {
    Ok(Json(TenantList {
        tenants: tenant::list_tenants(&st.pool).await?,
    }))
}

/// `GET /v1/operator/tenants/{id}` (operator).
pub async fn get(
    State(st): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<TenantSummary>, Problem> {
    tenant::tenant_summary(&st.pool, tenant_id(&id)?)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

async fn switch(st: &AppState, id: &str, enabled: bool) -> Result<Json<TenantSummary>, Problem> {
    tenant::set_whatsapp_enabled(&st.pool, tenant_id(id)?, enabled, st.clock.now())
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `POST /v1/operator/tenants/{id}/disable` (operator): its sends are refused
/// (`whatsapp_disabled`) until enabled; its webhooks are still recorded.
pub async fn disable(
    State(st): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<TenantSummary>, Problem> {
    switch(&st, &id, false).await
}

/// `POST /v1/operator/tenants/{id}/enable` (operator).
pub async fn enable(
    State(st): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<TenantSummary>, Problem> {
    switch(&st, &id, true).await
}
