//! `/v1/api-keys` (admin): create (the key is in the response, once), list, revoke.

use super::caller::{AdminCaller, audit};
use crate::{api_keys, state::AppState};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wafleet_core::{domain::Role, http::Problem};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateApiKey")]
pub struct CreateRequest {
    /// `admin`, `sender` or `reader`.
    pub role: String,
    /// Who or what holds the key.
    #[serde(default)]
    pub label: String,
}

fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such API key")
}

/// `POST /v1/api-keys`.
pub async fn create(
    State(st): State<AppState>,
    caller: AdminCaller,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<api_keys::CreatedKey>), Problem> {
    let Json(req) = body.map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.body_text(),
        )
    })?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "role is admin, sender or reader",
        )
        .field("role")
    })?;
    let label = req.label.trim();
    if label.len() > 200 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "label is at most 200 characters",
        )
        .field("label"));
    }
    let tenant = caller.principal.tenant_id;
    let created = api_keys::create(&st.pool, tenant, role, label)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "creating an API key");
            Problem::internal()
        })?;
    let mut conn = st.pool.acquire().await?;
    audit(
        &mut conn,
        &caller,
        json!({ "api_key_created": { "prefix": created.prefix, "role": role, "label": label } }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct KeyList {
    pub api_keys: Vec<api_keys::KeyView>,
}

/// `GET /v1/api-keys`.
pub async fn list(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<KeyList>, Problem> {
    let api_keys = api_keys::list(&st.pool, caller.principal.tenant_id).await?;
    Ok(Json(KeyList { api_keys }))
}

/// `DELETE /v1/api-keys/{id}`: the key stops working at once. The key making the call cannot
/// revoke itself, so an admin cannot lock the tenant out by mistake.
pub async fn revoke(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<api_keys::KeyView>, Problem> {
    let id: uuid::Uuid = id.parse().map_err(|_| not_found())?;
    let tenant = caller.principal.tenant_id;
    let own: Option<String> =
        sqlx::query_scalar("SELECT prefix FROM api_keys WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&st.pool)
            .await?;
    match own {
        None => return Err(not_found()),
        Some(prefix) if prefix == caller.prefix => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "own_key",
                "a key cannot revoke itself; use another admin key",
            ));
        }
        Some(_) => {}
    }
    let key = api_keys::revoke(&st.pool, tenant, id)
        .await?
        .ok_or_else(not_found)?;
    let mut conn = st.pool.acquire().await?;
    audit(
        &mut conn,
        &caller,
        json!({ "api_key_revoked": { "prefix": key.prefix } }),
    )
    .await?;
    Ok(Json(key))
}
