//! `POST /v1/conversations/{id}/read`: the company has read the candidate's messages. Every
//! inbound message of the conversation not yet read is marked read, and when asked, Meta is told
//! too: a read receipt for the latest of them (the candidate sees blue ticks on it and on
//! everything before it), optionally with the typing indicator ("typing…" until the next
//! message or 25 s), as `POST /{phone_number_id}/messages {status: "read", message_id,
//! typing_indicator}`. Marking read never waits on Meta's answer to succeed: a refused receipt is
//! reported in the answer, the marks stay.

use super::conversations::find;
use crate::{auth::Principal, state::AppState};
use axum::{
    Json,
    extract::{Path, State},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wafleet_core::{domain::Role, http::Problem};

/// The optional body.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Also send Meta's read receipt for the latest inbound message.
    #[serde(default)]
    pub receipt: bool,
    /// With the receipt, show the candidate the typing indicator.
    #[serde(default)]
    pub typing: bool,
}

/// The answer to `POST /v1/conversations/{id}/read`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MarkedRead {
    pub conversation_id: uuid::Uuid,
    /// Inbound messages this call marked read (0 when all were read already).
    pub marked: u64,
    /// Always 0 after the call.
    pub unread: i64,
    /// With `receipt`: the wamid Meta was told is read, or null when the candidate has written
    /// nothing in this conversation.
    pub receipt_for: Option<String>,
    /// With `receipt`: why Meta refused it (the marks stay).
    pub receipt_error: Option<String>,
}

#[tracing::instrument(name = "POST /v1/conversations/{id}/read", skip_all, fields(otel.kind = "server", tenant))]
pub async fn mark_read(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Option<Json<ReadRequest>>,
) -> Result<Json<MarkedRead>, Problem> {
    principal.require(Role::Sender)?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    if request.typing && !request.receipt {
        return Err(Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "the typing indicator goes with a read receipt: send `receipt: true` too",
        )
        .field("typing"));
    }
    let (id, number, contact) = find(&st, &principal, &id).await?;
    // Only unread inbound rows are touched; the contact index finds them, the filter on
    // direction and read_at happens on those rows alone.
    let marked = sqlx::query(
        "UPDATE messages SET read_at = $4
         WHERE tenant_id = $1 AND recipient = $2 AND phone_number_id = $3
           AND direction = 'in' AND read_at IS NULL",
    )
    .bind(principal.tenant_id)
    .bind(&contact)
    .bind(&number)
    .bind(st.clock.now())
    .execute(&st.pool)
    .await?
    .rows_affected();
    let (receipt_for, receipt_error) = if request.receipt {
        receipt(&st, &principal, &number, &contact, request.typing).await?
    } else {
        (None, None)
    };
    Ok(Json(MarkedRead {
        conversation_id: id,
        marked,
        unread: 0,
        receipt_for,
        receipt_error,
    }))
}

/// Tells Meta the latest inbound message is read: `(wamid, error)`.
async fn receipt(
    st: &AppState,
    principal: &Principal,
    number: &str,
    contact: &str,
    typing: bool,
) -> Result<(Option<String>, Option<String>), Problem> {
    let latest: Option<(String,)> = sqlx::query_as(
        "SELECT wamid FROM messages
         WHERE tenant_id = $1 AND recipient = $2 AND phone_number_id = $3
           AND direction = 'in' AND wamid IS NOT NULL
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(principal.tenant_id)
    .bind(contact)
    .bind(number)
    .fetch_optional(&st.pool)
    .await?;
    let Some((wamid,)) = latest else {
        return Ok((None, None));
    };
    let conn = match st.graph.connection(&st.pool, principal.tenant_id).await {
        Ok(conn) => conn,
        Err(err) => return Ok((Some(wamid), Some(err.to_string()))),
    };
    let mut body = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid});
    if typing {
        body["typing_indicator"] = json!({"type": "text"});
    }
    let url = st.graph.url(&format!("{number}/messages"));
    let sent = st
        .graph
        .call(st.graph.http.post(url).json(&body), &conn)
        .await;
    Ok(match sent {
        Ok(_) => (Some(wamid), None),
        Err(err) => {
            tracing::warn!(error = %err, "Meta refused a read receipt");
            (Some(wamid), Some(err.to_string()))
        }
    })
}
