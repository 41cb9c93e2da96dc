//! Webhooks about the account rather than a message: template status and category, number
//! quality and name, messaging tier, account restrictions, user preferences. Meta sends each as
//! its own change (`field` = the kind), with the entry's `time`; the simulator emits one on
//! request, signed for the WABA's callback, so tests drive them through "Meta".

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::Sim;
use crate::webhooks::sign;

/// `POST /_sim/account_events`: one change for one WABA.
#[derive(Debug, Deserialize)]
pub(crate) struct AccountEvent {
    pub waba_id: String,
    /// `message_template_status_update`, `user_preferences`, …
    pub field: String,
    /// The change's `value`, in Meta's shape for that field.
    pub value: Value,
}

/// Sends the change at once (no batching, no retry) and answers with our receiver's status,
/// or `409` when no callback URL is configured.
pub(crate) async fn emit(
    State(sim): State<Arc<Sim>>,
    Json(event): Json<AccountEvent>,
) -> (StatusCode, Json<Value>) {
    post_change(&sim, &event.waba_id, &event.field, event.value).await
}

/// POSTs one signed change of `field` for the WABA's callback, with the entry's `time` = now;
/// `409` when there is none (no URL, or the app is not subscribed to the WABA).
pub(crate) async fn post_change(
    sim: &Sim,
    waba_id: &str,
    field: &str,
    value: Value,
) -> (StatusCode, Json<Value>) {
    let Some((url, secret)) = sim.lock().webhook_target(waba_id) else {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "no webhook_url, or the app is not subscribed to the WABA"})),
        );
    };
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "time": chrono::Utc::now().timestamp(),
                   "changes": [{"field": field, "value": value}]}],
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let result = sim
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(&secret, &body))
        .body(body)
        .send()
        .await;
    match result {
        Ok(r) => (StatusCode::OK, Json(json!({"status": r.status().as_u16()}))),
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": err.to_string()})),
        ),
    }
}
