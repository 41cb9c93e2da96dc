//! The app's subscription to a WABA's webhooks (Meta's "Managing Webhooks": "You must
//! individually subscribe to every WABA for which you wish to receive webhooks"):
//! `POST /{version}/{waba_id}/subscribed_apps` subscribes the app of the token, `GET` lists the
//! subscribed apps, `DELETE` unsubscribes. While unsubscribed, the WABA's webhooks are not sent
//! (`Inner::webhook_target`). A WABA registered through `/_sim` starts subscribed; one created by
//! `POST /_sim/embedded_signup` does not, as after Meta's flow.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::require_bearer;
use crate::errors::GraphError;
use crate::registration::injected;
use crate::state::Sim;

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new().route(
        "/{version}/{waba}/subscribed_apps",
        post(subscribe).get(list).delete(unsubscribe),
    )
}

/// Checks the token, that the WABA exists and any injected fault; then applies `change`.
fn on_waba(
    sim: &Sim,
    headers: &HeaderMap,
    waba: &str,
    change: impl FnOnce(&mut crate::onboarding::OnboardingState),
) -> Result<Json<Value>, GraphError> {
    require_bearer(sim, headers)?;
    let mut inner = sim.lock();
    if !inner.knows_waba(waba) {
        return Err(GraphError::unknown_object(waba));
    }
    if let Some(error) = injected(&mut inner, "subscribed_apps", waba) {
        return Err(error);
    }
    change(&mut inner.onboarding);
    Ok(Json(json!({"success": true})))
}

async fn subscribe(
    State(sim): State<Arc<Sim>>,
    Path((_version, waba)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    on_waba(&sim, &headers, &waba, |o| {
        o.unsubscribed.remove(&waba);
    })
}

async fn unsubscribe(
    State(sim): State<Arc<Sim>>,
    Path((_version, waba)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    on_waba(&sim, &headers, &waba, |o| {
        o.unsubscribed.insert(waba.clone());
    })
}

/// `{"data": [{"whatsapp_business_api_data": {"id", "link", "name"}}]}`, empty when unsubscribed.
async fn list(
    State(sim): State<Arc<Sim>>,
    Path((_version, waba)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let inner = sim.lock();
    if !inner.knows_waba(&waba) {
        return Err(GraphError::unknown_object(&waba));
    }
    let data = if inner.onboarding.unsubscribed.contains(&waba) {
        json!([])
    } else {
        json!([{"whatsapp_business_api_data": {
            "id": inner.app_id,
            "link": format!("https://www.facebook.com/games/?app_id={}", inner.app_id),
            "name": "wafleet (simulated app)",
        }}])
    };
    Ok(Json(json!({ "data": data })))
}
