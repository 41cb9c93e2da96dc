//! `/v1/webhook-endpoints` (admin): a tenant's HTTP endpoints for notifications, beside the
//! AMQP events. Create (the `whsec_` signing secret is in the answer, once), list, read,
//! change (URL, event types, enabled), delete, rotate the secret (the previous one keeps
//! signing for `PREVIOUS_SECRET_GRACE`), and send a test event. Secrets are sealed with
//! `WAFLEET_SECRET_KEY`, like Meta tokens. Deliveries: `deliveries.rs`.

use super::caller::{AdminCaller, audit, json_body};
use crate::state::AppState;
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wafleet_core::{http::Problem, standard_webhooks};

/// The event types an endpoint can take: the AMQP events' kinds.
pub const EVENT_TYPES: [&str; 4] = ["status", "inbound", "optout", "account"];
/// Endpoints per tenant.
const MAX_ENDPOINTS: i64 = 20;
/// How long a rotated-out secret still signs beside the new one.
const PREVIOUS_SECRET_GRACE: chrono::Duration = chrono::Duration::hours(24);

/// An endpoint as the API shows it (never its secret).
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct EndpointView {
    pub id: uuid::Uuid,
    /// Where events are POSTed (http or https).
    pub url: String,
    pub description: String,
    /// The event types delivered (`status`, `inbound`, `optout`, `account`); empty: all.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// After a rotation, the previous secret also signs until then.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `201` to a create or a rotation: the endpoint and its signing secret, shown this once.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_<base64>`: the Standard Webhooks signing secret.
    pub secret: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateWebhookEndpoint")]
pub struct CreateRequest {
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Empty or left out: every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EditWebhookEndpoint")]
pub struct EditRequest {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
}

const COLUMNS: &str =
    "id, url, description, event_types, enabled, previous_secret_until, created_at, updated_at";

pub(super) fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such webhook endpoint",
    )
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail).field(field)
}

pub(super) fn endpoint_id(raw: &str) -> Result<uuid::Uuid, Problem> {
    raw.parse().map_err(|_| not_found())
}

fn check_url(st: &AppState, url: &str) -> Result<String, Problem> {
    wafleet_core::endpoint_url::check(url.trim(), st.notify_allow_private)
        .map(|u| u.to_string())
        .map_err(|e| invalid("url", e.to_string()))
}

fn check_types(types: Vec<String>) -> Result<Vec<String>, Problem> {
    let mut types: Vec<String> = types.into_iter().map(|t| t.trim().to_owned()).collect();
    if let Some(bad) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(invalid(
            "event_types",
            format!("unknown event type {bad:?}: use status, inbound, optout or account"),
        ));
    }
    types.sort();
    types.dedup();
    Ok(types)
}

fn check_description(d: &str) -> Result<String, Problem> {
    let d = d.trim();
    if d.chars().count() > 200 {
        return Err(invalid(
            "description",
            "description is at most 200 characters",
        ));
    }
    Ok(d.to_owned())
}

/// A new secret and its sealed form.
fn new_secret(st: &AppState) -> Result<(String, Vec<u8>), Problem> {
    let secrets = st.graph.secrets()?;
    let secret = standard_webhooks::new_secret().map_err(|_| Problem::internal())?;
    let sealed = secrets.seal(&secret).map_err(|_| Problem::internal())?;
    Ok((secret, sealed))
}

/// `POST /v1/webhook-endpoints`.
pub async fn create(
    State(st): State<AppState>,
    caller: AdminCaller,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), Problem> {
    let req = json_body(body)?;
    let url = check_url(&st, &req.url)?;
    let event_types = check_types(req.event_types)?;
    let description = check_description(&req.description)?;
    let (secret, sealed) = new_secret(&st)?;
    let tenant = caller.principal.tenant_id;
    let mut tx = st.pool.begin().await?;
    // Serialises creations per tenant, so two at once cannot both pass the count.
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
    if count >= MAX_ENDPOINTS {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "too_many_endpoints",
            format!("a company has at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let endpoint: EndpointView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, enabled, secret_enc)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(uuid::Uuid::now_v7())
    .bind(tenant)
    .bind(&url)
    .bind(&description)
    .bind(&event_types)
    .bind(req.enabled.unwrap_or(true))
    .bind(&sealed)
    .fetch_one(&mut *tx)
    .await?;
    audit(
        &mut tx,
        &caller,
        json!({"webhook_endpoint_created": {"id": endpoint.id, "url": url, "event_types": event_types}}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret { endpoint, secret }),
    ))
}

/// `GET /v1/webhook-endpoints`.
pub async fn list(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<EndpointList>, Problem> {
    let endpoints = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id"
    )))
    .bind(caller.principal.tenant_id)
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(EndpointList { endpoints }))
}

/// `GET /v1/webhook-endpoints/{id}`.
pub async fn get(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, Problem> {
    let id = endpoint_id(&id)?;
    let endpoint = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(caller.principal.tenant_id)
    .bind(id)
    .fetch_optional(&st.pool)
    .await?
    .ok_or_else(not_found)?;
    Ok(Json(endpoint))
}

/// `PATCH /v1/webhook-endpoints/{id}`: the fields given change.
pub async fn edit(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
    body: Result<Json<EditRequest>, JsonRejection>,
) -> Result<Json<EndpointView>, Problem> {
    let id = endpoint_id(&id)?;
    let req = json_body(body)?;
    let url = req.url.as_deref().map(|u| check_url(&st, u)).transpose()?;
    let event_types = req.event_types.map(check_types).transpose()?;
    let description = req
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    let mut tx = st.pool.begin().await?;
    let endpoint: EndpointView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET url = COALESCE($3, url),
             description = COALESCE($4, description), event_types = COALESCE($5, event_types),
             enabled = COALESCE($6, enabled), updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(caller.principal.tenant_id)
    .bind(id)
    .bind(&url)
    .bind(&description)
    .bind(&event_types)
    .bind(req.enabled)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_found)?;
    audit(
        &mut tx,
        &caller,
        json!({"webhook_endpoint_changed": {"id": id, "url": url, "event_types": event_types,
               "enabled": req.enabled}}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(endpoint))
}

/// `DELETE /v1/webhook-endpoints/{id}`: the endpoint and its deliveries go.
pub async fn remove(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, Problem> {
    let id = endpoint_id(&id)?;
    let mut tx = st.pool.begin().await?;
    let endpoint: EndpointView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(caller.principal.tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_found)?;
    audit(
        &mut tx,
        &caller,
        json!({"webhook_endpoint_deleted": {"id": id, "url": endpoint.url}}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(endpoint))
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret`: a new secret (shown once); the previous
/// one keeps signing beside it for 24 h.
pub async fn rotate(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<EndpointWithSecret>, Problem> {
    let id = endpoint_id(&id)?;
    let (secret, sealed) = new_secret(&st)?;
    let mut tx = st.pool.begin().await?;
    let endpoint: EndpointView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET previous_secret_enc = secret_enc, secret_enc = $3,
             previous_secret_until = $4, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(caller.principal.tenant_id)
    .bind(id)
    .bind(&sealed)
    .bind(st.clock.now() + PREVIOUS_SECRET_GRACE)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_found)?;
    audit(
        &mut tx,
        &caller,
        json!({"webhook_endpoint_secret_rotated": {"id": id}}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(EndpointWithSecret { endpoint, secret }))
}
