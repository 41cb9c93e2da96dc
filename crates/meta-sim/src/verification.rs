//! Phone number ownership verification (reference §7): `POST /{version}/{phone_number_id}/request_code`
//! with `code_method` SMS or VOICE, then `POST /{version}/{phone_number_id}/verify_code` with the
//! six-digit `code`. Numbers registered through `/_sim/numbers` are verified already, as numbers
//! a business brings over usually are; `POST /_sim/numbers/{id}/unverified` makes one need the
//! OTP, and `GET /_sim/numbers/{id}/code` reveals the last code sent, standing in for the phone.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::require_bearer;
use crate::errors::GraphError;
use crate::state::Sim;

/// Meta's code for a verification code that does not match.
const CODE_MISMATCH: i64 = 136025;

/// The verification state of a number that is not verified yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pending {
    /// The last code sent and how (`SMS` or `VOICE`).
    pub code: Option<(String, String)>,
}

/// The Graph and control routes of verification.
pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/{version}/{id}/request_code", post(request_code))
        .route("/{version}/{id}/verify_code", post(verify_code))
        .route("/_sim/numbers/{id}/unverified", post(mark_unverified))
        .route("/_sim/numbers/{id}/code", get(reveal_code))
}

/// `VERIFIED` or `NOT_VERIFIED`, as `code_verification_status` in the phone number listing.
pub(crate) fn status_of(sim: &crate::state::Inner, phone_number_id: &str) -> &'static str {
    if sim.unverified.contains_key(phone_number_id) {
        "NOT_VERIFIED"
    } else {
        "VERIFIED"
    }
}

#[derive(Debug, Deserialize)]
struct RequestCode {
    code_method: Option<String>,
    language: Option<String>,
}

async fn request_code(
    State(sim): State<Arc<Sim>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<RequestCode>>,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let Some(Json(body)) = body else {
        return Err(GraphError::invalid_parameter(
            "code_method and language are required",
        ));
    };
    let method = body.code_method.unwrap_or_default().to_uppercase();
    if method != "SMS" && method != "VOICE" {
        return Err(GraphError::invalid_parameter(
            "code_method must be one of SMS, VOICE",
        ));
    }
    if body.language.as_deref().is_none_or(str::is_empty) {
        return Err(GraphError::invalid_parameter("language is required"));
    }
    let mut inner = sim.lock();
    if inner.number(&id).is_none() {
        return Err(GraphError::unknown_object(&id));
    }
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000));
    // A verified number may ask for a code again (Meta allows it); verifying it changes nothing.
    inner.unverified.entry(id.clone()).or_default();
    if let Some(pending) = inner.unverified.get_mut(&id) {
        pending.code = Some((code, method));
    }
    Ok(Json(json!({"success": true})))
}

#[derive(Debug, Deserialize)]
struct VerifyCode {
    code: Option<String>,
}

async fn verify_code(
    State(sim): State<Arc<Sim>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<VerifyCode>>,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let code = body.and_then(|Json(b)| b.code).unwrap_or_default();
    if code.is_empty() {
        return Err(GraphError::invalid_parameter("code is required"));
    }
    let mut inner = sim.lock();
    if inner.number(&id).is_none() {
        return Err(GraphError::unknown_object(&id));
    }
    let expected = inner
        .unverified
        .get(&id)
        .and_then(|p| p.code.as_ref())
        .map(|(c, _)| c.clone());
    match expected {
        Some(expected) if expected == code => {
            inner.unverified.remove(&id);
            Ok(Json(json!({"success": true})))
        }
        Some(_) => Err(mismatch("The verification code you entered is incorrect")),
        None => Err(mismatch(
            "No verification code was requested for this number",
        )),
    }
}

async fn mark_unverified(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
) -> Result<StatusCode, StatusCode> {
    let mut inner = sim.lock();
    if inner.number(&id).is_none() {
        return Err(StatusCode::NOT_FOUND);
    }
    inner.unverified.insert(id, Pending::default());
    Ok(StatusCode::NO_CONTENT)
}

async fn reveal_code(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    let inner = sim.lock();
    let (code, method) = inner
        .unverified
        .get(&id)
        .and_then(|p| p.code.clone())
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(json!({"code": code, "code_method": method})))
}

/// `136025`, with Meta's wording (the shared title table does not know this code).
fn mismatch(details: &str) -> GraphError {
    GraphError {
        message: format!("(#{CODE_MISMATCH}) Code couldn't be verified"),
        ..GraphError::new(CODE_MISMATCH, details)
    }
}
