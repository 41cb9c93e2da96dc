//! Read receipts and the typing indicator (`POST /{phone_number_id}/messages` with
//! `status: "read"`, reference "Read receipts and typing"): Meta marks the user's message read
//! (blue ticks) and, with `typing_indicator: {type: "text"}`, shows "typing…" until the next
//! message or 25 s. Only a message the user sent to that number can be marked; the answer is
//! `{"success": true}`. `GET /_sim/receipts` lists what was received.

use crate::{auth::require_bearer, errors::GraphError, state::Sim};
use axum::{
    Json,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One read receipt the simulator accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadReceipt {
    pub phone_number_id: String,
    /// The user's message marked read.
    pub message_id: String,
    /// Whether the typing indicator was asked for.
    pub typing: bool,
}

/// Handles a `status: read` body.
pub(crate) fn read_receipt(
    sim: &Sim,
    phone_number_id: &str,
    headers: &HeaderMap,
    request: &Value,
) -> Response {
    match check(sim, phone_number_id, headers, request) {
        Ok(receipt) => {
            sim.lock().receipts.push(receipt);
            Json(json!({ "success": true })).into_response()
        }
        Err(error) => error.into_response(),
    }
}

fn check(
    sim: &Sim,
    phone_number_id: &str,
    headers: &HeaderMap,
    request: &Value,
) -> Result<ReadReceipt, GraphError> {
    require_bearer(sim, headers)?;
    if request.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(GraphError::invalid_parameter(
            "messaging_product is required and must be \"whatsapp\"",
        ));
    }
    let message_id = request
        .get("message_id")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::new(131008, "The parameter message_id is required."))?;
    let typing = match request.get("typing_indicator") {
        None => false,
        Some(t) if t.get("type").and_then(Value::as_str) == Some("text") => true,
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "typing_indicator.type must be \"text\"",
            ));
        }
    };
    let inner = sim.lock();
    if inner.number(phone_number_id).is_none() {
        return Err(GraphError::unknown_object(phone_number_id));
    }
    if inner.inbound_to.get(message_id).map(String::as_str) != Some(phone_number_id) {
        return Err(GraphError::invalid_parameter(format!(
            "message_id ({message_id}) is not a message this number received"
        )));
    }
    Ok(ReadReceipt {
        phone_number_id: phone_number_id.to_owned(),
        message_id: message_id.to_owned(),
        typing,
    })
}
