//! A number's display name and its review (Meta's "Display names" and the
//! `phone_number_name_update` webhook): `POST /{version}/{phone_number_id}` with
//! `new_display_name` submits a name (`new_name_status: PENDING_REVIEW`); Meta's decision comes
//! later, here on `POST /_sim/numbers/{id}/name_review` with `decision` `APPROVED`, `REJECTED`
//! or `DEFERRED`, which updates the number (`name_status` `APPROVED` / `DECLINED`) and sends the
//! signed `phone_number_name_update` webhook (`display_phone_number`, `decision`,
//! `requested_verified_name`, `rejection_reason`). The same `POST` with `pin` changes the
//! two-step PIN. `GET /{version}/{phone_number_id}` reads one number.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::require_bearer;
use crate::errors::GraphError;
use crate::state::{Sim, digits};

/// A number's display-name review state (absent: its name is `APPROVED`, nothing pending).
#[derive(Debug, Clone, Default)]
pub(crate) struct NameState {
    /// The current name's review, when not `APPROVED`.
    pub name_status: Option<String>,
    /// A submitted name and its review.
    pub new_display_name: Option<String>,
    pub new_name_status: Option<String>,
}

impl NameState {
    /// Writes the review fields into a number's Graph fields.
    pub fn show(&self, fields: &mut Value) {
        if let Some(status) = &self.name_status {
            fields["name_status"] = json!(status);
        }
        if let (Some(name), Some(status)) = (&self.new_display_name, &self.new_name_status) {
            fields["new_display_name"] = json!(name);
            fields["new_name_status"] = json!(status);
        }
    }
}

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/{version}/{id}", get(read).post(update))
        .route("/_sim/numbers/{id}/name_review", post(review))
}

async fn read(
    State(sim): State<Arc<Sim>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let inner = sim.lock();
    let number = inner
        .number(&id)
        .ok_or_else(|| GraphError::unknown_object(&id))?;
    Ok(Json(crate::listing::number_fields(&inner, number)))
}

#[derive(Debug, Default, Deserialize)]
struct Update {
    new_display_name: Option<String>,
    pin: Option<String>,
}

/// `POST /{version}/{id}`: fields from the JSON body or, as Graph also takes them, the query.
async fn update(
    State(sim): State<Arc<Sim>>,
    Path((_version, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Option<Json<Update>>,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let name = body
        .new_display_name
        .or_else(|| query.get("new_display_name").cloned());
    let pin = body.pin.or_else(|| query.get("pin").cloned());
    let mut inner = sim.lock();
    if inner.number(&id).is_none() {
        return Err(GraphError::unknown_object(&id));
    }
    if name.is_none() && pin.is_none() {
        return Err(GraphError::invalid_parameter(
            "give new_display_name or pin",
        ));
    }
    if let Some(pin) = pin {
        crate::registration::check_pin(&pin)?;
        inner.onboarding.pins.insert(id.clone(), pin);
    }
    if let Some(name) = name.map(|n| n.trim().to_owned()) {
        if name.is_empty() {
            return Err(GraphError::invalid_parameter(
                "new_display_name cannot be empty",
            ));
        }
        let state = inner.onboarding.names.entry(id).or_default();
        state.new_display_name = Some(name);
        state.new_name_status = Some("PENDING_REVIEW".to_owned());
    }
    Ok(Json(json!({"success": true})))
}

#[derive(Debug, Deserialize)]
struct Review {
    /// `APPROVED`, `REJECTED` or `DEFERRED`.
    decision: String,
    #[serde(default)]
    rejection_reason: Option<String>,
}

/// Meta decides on the pending name (else on the current one) and says so by webhook.
async fn review(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    Json(review): Json<Review>,
) -> (StatusCode, Json<Value>) {
    let decision = review.decision.to_ascii_uppercase();
    let (waba_id, value) = {
        let mut inner = sim.lock();
        let Some(number) = inner.number(&id).cloned() else {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "unknown number"})),
            );
        };
        let state = inner.onboarding.names.entry(id.clone()).or_default();
        let requested = state
            .new_display_name
            .clone()
            .or_else(|| number.verified_name.clone())
            .unwrap_or_default();
        let pending = state.new_display_name.is_some();
        match (decision.as_str(), pending) {
            ("APPROVED", _) => {
                *state = NameState::default();
            }
            ("REJECTED", true) => state.new_name_status = Some("DECLINED".to_owned()),
            ("REJECTED", false) => state.name_status = Some("DECLINED".to_owned()),
            ("DEFERRED", _) => {}
            _ => {
                let error = "decision is APPROVED, REJECTED or DEFERRED";
                return (StatusCode::BAD_REQUEST, Json(json!({ "error": error })));
            }
        }
        if decision == "APPROVED"
            && let Some(n) = inner.numbers.iter_mut().find(|n| n.phone_number_id == id)
        {
            n.verified_name = Some(requested.clone());
        }
        let mut value = json!({
            "display_phone_number": digits(&number.display_phone_number),
            "decision": decision,
            "requested_verified_name": requested,
        });
        if let Some(reason) = review.rejection_reason {
            value["rejection_reason"] = json!(reason);
        }
        (number.waba_id, value)
    };
    crate::account_events::post_change(&sim, &waba_id, "phone_number_name_update", value).await
}
