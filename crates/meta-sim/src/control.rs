//! The control API under `/_sim` (JSON, no auth): register senders, WABAs and templates, change
//! the runtime config, inject faults, simulate users writing in, and read what was received.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::lifecycle::inbound_text;
use crate::state::{Sim, StoredTemplate, digits};
use crate::types::{
    ConfigUpdate, Fault, InboundRequest, InboundResponse, RecordedSend, SimNumber, SimStats,
    SimTemplate, SimWaba, UnreachableRequest,
};

/// The `/_sim` routes.
pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_sim/numbers", post(upsert_number))
        .route("/_sim/wabas", post(upsert_waba))
        .route("/_sim/templates", post(upsert_template))
        .route("/_sim/config", put(update_config))
        .route("/_sim/unreachable", post(mark_unreachable))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/inbound", post(inbound))
        .route("/_sim/sends", get(sends))
        .route("/_sim/receipts", get(receipts))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
        .route("/_sim/account_events", post(crate::account_events::emit))
}

async fn upsert_number(
    State(sim): State<Arc<Sim>>,
    Json(number): Json<SimNumber>,
) -> Json<SimNumber> {
    let mut inner = sim.lock();
    match inner
        .numbers
        .iter_mut()
        .find(|n| n.phone_number_id == number.phone_number_id)
    {
        Some(existing) => *existing = number.clone(),
        None => inner.numbers.push(number.clone()),
    }
    Json(number)
}

async fn upsert_waba(State(sim): State<Arc<Sim>>, Json(waba): Json<SimWaba>) -> Json<SimWaba> {
    sim.lock().wabas.insert(waba.waba_id.clone(), waba.clone());
    Json(waba)
}

/// Upserts by (WABA, name, language); the Graph ID stays stable across updates.
async fn upsert_template(
    State(sim): State<Arc<Sim>>,
    Json(template): Json<SimTemplate>,
) -> Json<Value> {
    let mut inner = sim.lock();
    let existing = inner.templates.iter_mut().find(|stored| {
        stored.template.waba_id == template.waba_id
            && stored.template.name == template.name
            && stored.template.language == template.language
    });
    let id = match existing {
        Some(stored) => {
            stored.template = template;
            stored.id.clone()
        }
        None => {
            let id =
                rand::random_range(1_000_000_000_000_000_u64..10_000_000_000_000_000).to_string();
            inner.templates.push(StoredTemplate {
                id: id.clone(),
                template,
            });
            id
        }
    };
    Json(json!({ "id": id }))
}

/// Applies the fields that are present and answers with the effective config.
async fn update_config(
    State(sim): State<Arc<Sim>>,
    Json(update): Json<ConfigUpdate>,
) -> Json<ConfigUpdate> {
    let mut inner = sim.lock();
    let config = &mut inner.config;
    if let Some(url) = update.webhook_url {
        config.webhook_url = Some(url).filter(|u| !u.is_empty());
    }
    if let Some(secret) = update.app_secret {
        config.app_secret = secret;
    }
    if let Some(ms) = update.status_delay_ms {
        config.status_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = update.status_lag_ms {
        config.status_lag = Duration::from_millis(ms);
    }
    if let Some(every) = update.duplicate_every {
        config.duplicate_every = Some(every).filter(|n| *n > 0);
    }
    if let Some(reorder) = update.reorder {
        config.reorder = reorder;
    }
    if let Some(text) = update.auto_reply {
        config.auto_reply = Some(text).filter(|t| !t.is_empty());
    }
    if let Some(delays) = update.retry_delays_ms {
        config.retry_delays = delays.into_iter().map(Duration::from_millis).collect();
    }
    Json(ConfigUpdate {
        webhook_url: config.webhook_url.clone(),
        app_secret: Some(config.app_secret.clone()),
        status_delay_ms: u64::try_from(config.status_delay.as_millis()).ok(),
        status_lag_ms: u64::try_from(config.status_lag.as_millis()).ok(),
        duplicate_every: config.duplicate_every,
        reorder: Some(config.reorder),
        auto_reply: config.auto_reply.clone(),
        retry_delays_ms: Some(
            config
                .retry_delays
                .iter()
                .filter_map(|d| u64::try_from(d.as_millis()).ok())
                .collect(),
        ),
    })
}

async fn mark_unreachable(
    State(sim): State<Arc<Sim>>,
    Json(request): Json<UnreachableRequest>,
) -> StatusCode {
    sim.lock().unreachable.insert(digits(&request.to));
    StatusCode::NO_CONTENT
}

async fn add_fault(State(sim): State<Arc<Sim>>, Json(fault): Json<Fault>) -> StatusCode {
    sim.lock().add_fault(fault, Instant::now());
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.lock().clear_faults();
    StatusCode::NO_CONTENT
}

/// A simulated user writes to a business number: inbound webhook, and the window opens.
async fn inbound(
    State(sim): State<Arc<Sim>>,
    Json(request): Json<InboundRequest>,
) -> Result<Json<InboundResponse>, (StatusCode, Json<Value>)> {
    let from = digits(&request.from);
    let now = Instant::now();
    let number = {
        let mut inner = sim.lock();
        let number = inner
            .number(&request.phone_number_id)
            .cloned()
            .ok_or_else(|| {
                let error = format!("unknown phone_number_id {}", request.phone_number_id);
                (StatusCode::NOT_FOUND, Json(json!({ "error": error })))
            })?;
        inner.open_window(&number.phone_number_id, &from, now);
        number
    };
    let (event, wamid) = inbound_text(
        &number,
        &from,
        request.name.as_deref(),
        &request.text,
        now,
        Duration::ZERO,
    );
    sim.lock()
        .inbound_to
        .insert(wamid.clone(), number.phone_number_id.clone());
    sim.emit([event]);
    Ok(Json(InboundResponse { wamid }))
}

/// `GET /_sim/sends[?callback=<biz_opaque_callback_data>]`.
async fn sends(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Vec<RecordedSend>> {
    let callback = query.get("callback");
    let sends = sim
        .lock()
        .sends
        .iter()
        .filter(|s| callback.is_none_or(|c| s.biz_opaque_callback_data.as_ref() == Some(c)))
        .cloned()
        .collect();
    Json(sends)
}

/// `GET /_sim/receipts`: the read receipts (and typing indicators) received.
async fn receipts(State(sim): State<Arc<Sim>>) -> Json<Vec<crate::receipts::ReadReceipt>> {
    Json(sim.lock().receipts.clone())
}

async fn stats(State(sim): State<Arc<Sim>>) -> Json<SimStats> {
    Json(sim.stats.snapshot())
}

/// Clears the recorded sends (registrations, config and counters stay).
async fn reset(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.lock().sends.clear();
    StatusCode::NO_CONTENT
}
