//! `POST /v1/messages` (send one message) and `GET /v1/messages/{id}` (its state and trail).

use crate::{
    accept::{Idempotency, submit},
    auth::Principal,
    state::AppState,
};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wafleet_core::{
    contract::SendRequest,
    domain::{MessageId, Role},
    http::Problem,
};

#[tracing::instrument(name = "POST /v1/messages", skip_all, fields(otel.kind = "server", tenant))]
pub async fn send(
    State(st): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    principal.require(Role::Sender)?;
    let raw: Value = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let request = SendRequest::deserialize(&raw).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body does not match the message schema: {e}"),
        )
    })?;
    let idempotency = headers
        .get("idempotency-key")
        .map(|v| {
            let key = v.to_str().map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "Idempotency-Key must be ASCII",
                )
                .field("Idempotency-Key")
            })?;
            Idempotency::new(key.to_owned(), &raw)
        })
        .transpose()?;
    let reply = submit(&st, principal.tenant_id, request, idempotency).await?;
    Ok(reply.into_response())
}

/// A message as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct MessageView {
    pub id: MessageId,
    pub direction: String,
    pub kind: String,
    pub state: String,
    pub reason: Option<String>,
    /// While the message is held (`deferred`): when it is tried again (null = until something
    /// else moves it, e.g. a paused campaign's resume).
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    pub sender: Option<String>,
    #[sqlx(rename = "recipient")]
    pub to: Option<String>,
    pub record_type: Option<String>,
    pub record_id: Option<String>,
    pub user_id: Option<String>,
    pub content_type: String,
    pub content: Value,
    pub wamid: Option<String>,
    pub pricing: Option<Value>,
    pub error: Option<Value>,
    /// The conversation (sender number, contact) it belongs to; null without a number.
    pub conversation_id: Option<uuid::Uuid>,
    /// Inbound only: when the company marked it read (`POST /v1/conversations/{id}/read`).
    pub read_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its content and the contact's number were erased (erasure or retention).
    pub erased_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The columns behind `MessageView`.
pub const VIEW_COLUMNS: &str = "id, direction, kind, state, reason, not_before, phone_number_id AS sender, recipient, \
    record_type, record_id, user_id, content_type, content, wamid, pricing, error, \
    conversation_id(tenant_id, phone_number_id, recipient) AS conversation_id, read_at, erased_at, \
    created_at, updated_at";

#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct EventView {
    pub at: chrono::DateTime<chrono::Utc>,
    pub state: String,
    pub reason: Option<String>,
    pub detail: Option<Value>,
}

/// A message with its pricing category and event trail.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageView,
    /// Pricing category Meta reported (`utility`, `marketing`…), for cost reporting.
    pub pricing_category: Option<String>,
    pub events: Vec<EventView>,
}

#[tracing::instrument(name = "GET /v1/messages/{id}", skip_all, fields(otel.kind = "server", tenant))]
pub async fn get(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<MessageDetail>, Problem> {
    principal.require(Role::Reader)?;
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "not_found", "no such message");
    let id: MessageId = id.parse().map_err(|_| not_found())?;
    let message: MessageView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(principal.tenant_id)
    .bind(id)
    .fetch_optional(&st.pool)
    .await?
    .ok_or_else(not_found)?;
    let events: Vec<EventView> = sqlx::query_as(
        "SELECT at, state, reason, detail FROM message_events
         WHERE tenant_id = $1 AND message_id = $2 ORDER BY id",
    )
    .bind(principal.tenant_id)
    .bind(id)
    .fetch_all(&st.pool)
    .await?;
    let pricing_category = message
        .pricing
        .as_ref()
        .and_then(|p| p.get("category"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Json(MessageDetail {
        message,
        pricing_category,
        events,
    }))
}
