//! Registering a number for Cloud API (reference §7; Meta's "Register a business phone number"):
//! `POST /{version}/{phone_number_id}/register` with `messaging_product: "whatsapp"` and a
//! six-digit `pin`. The first registration sets the number's two-step verification PIN; later
//! ones must give the same PIN (`133005` otherwise). `POST /{version}/{id}/deregister` undoes
//! it. Each edge allows 10 calls per number in a moving 72 h (`133016` beyond). A number that is
//! not registered cannot send (`133010`, see `graph`).
//! `POST /_sim/numbers/{id}/unregistered` makes a number never registered, for tests.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::auth::require_bearer;
use crate::errors::{GraphError, details_for};
use crate::state::{Inner, Sim};

/// Register (and deregister) calls allowed per number in [`ATTEMPT_WINDOW`].
const MAX_ATTEMPTS: usize = 10;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(72 * 3600);

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/{version}/{id}/register", post(register))
        .route("/{version}/{id}/deregister", post(deregister))
        .route("/_sim/numbers/{id}/unregistered", post(mark_unregistered))
}

#[derive(Debug, Deserialize)]
struct Register {
    messaging_product: Option<String>,
    pin: Option<String>,
}

async fn register(
    State(sim): State<Arc<Sim>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Register>>,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let body = body.map(|Json(b)| b);
    let mut inner = sim.lock();
    admit(&mut inner, "register", &id)?;
    let body = body
        .ok_or_else(|| GraphError::invalid_parameter("messaging_product and pin are required"))?;
    if body.messaging_product.as_deref() != Some("whatsapp") {
        return Err(GraphError::invalid_parameter(
            "messaging_product is required and must be \"whatsapp\"",
        ));
    }
    let pin = body.pin.unwrap_or_default();
    check_pin(&pin)?;
    match inner.onboarding.pins.get(&id) {
        Some(set) if *set != pin => return Err(GraphError::new(133005, details_for(133005))),
        Some(_) => {}
        None => {
            inner.onboarding.pins.insert(id.clone(), pin);
        }
    }
    inner.onboarding.unregistered.remove(&id);
    Ok(Json(json!({"success": true})))
}

async fn deregister(
    State(sim): State<Arc<Sim>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let mut inner = sim.lock();
    admit(&mut inner, "deregister", &id)?;
    // The two-step PIN stays: it cannot be turned off through the API.
    inner.onboarding.unregistered.insert(id, true);
    Ok(Json(json!({"success": true})))
}

/// A two-step PIN is six digits (`100` otherwise).
pub(crate) fn check_pin(pin: &str) -> Result<(), GraphError> {
    if pin.len() != 6 || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(GraphError::invalid_parameter(
            "pin must be a 6-digit number",
        ));
    }
    Ok(())
}

/// The checks both edges share: a known number, injected faults, and the attempt limit.
fn admit(inner: &mut Inner, edge: &'static str, id: &str) -> Result<(), GraphError> {
    if inner.number(id).is_none() {
        return Err(GraphError::unknown_object(id));
    }
    if let Some(error) = injected(inner, edge, id) {
        return Err(error);
    }
    let now = Instant::now();
    let attempts = inner
        .onboarding
        .attempts
        .entry((edge, id.to_owned()))
        .or_default();
    attempts.retain(|at| now.duration_since(*at) < ATTEMPT_WINDOW);
    if attempts.len() >= MAX_ATTEMPTS {
        return Err(GraphError::new(133016, details_for(133016)));
    }
    attempts.push(now);
    Ok(())
}

/// The error an injected fault for `endpoint` on `object_id` answers with, if any.
pub(crate) fn injected(inner: &mut Inner, endpoint: &str, object_id: &str) -> Option<GraphError> {
    let fault = inner.take_fault(endpoint, object_id, "", None, Instant::now())?;
    let code = fault.code?;
    let mut error = GraphError::new(code, details_for(code));
    if let Some(status) = fault.http_status.and_then(|s| StatusCode::from_u16(s).ok()) {
        error.status = status;
    }
    Some(error)
}

async fn mark_unregistered(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
) -> Result<StatusCode, StatusCode> {
    let mut inner = sim.lock();
    if inner.number(&id).is_none() {
        return Err(StatusCode::NOT_FOUND);
    }
    inner.onboarding.unregistered.insert(id, false);
    Ok(StatusCode::NO_CONTENT)
}
