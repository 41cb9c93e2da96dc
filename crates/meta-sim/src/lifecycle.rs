//! What happens to an accepted message after the 200: its status webhooks (`sent` → `delivered`
//! → `read`, or `failed`), and the simulated users' inbound messages (including auto-replies).
//!
//! Events are built with the instant they fall due and handed to the emitter; timestamps in the
//! payloads are the matching wall-clock times in unix seconds, as strings (reference §6).

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::errors::webhook_error;
use crate::state::Sim;
use crate::types::SimNumber;
use crate::webhooks::{EventPayload, WebhookEvent};

/// Profile name of simulated users who do not give one.
const DEFAULT_PROFILE_NAME: &str = "Sim User";

/// How an accepted message ends.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Delivered and read; `category` goes into `pricing.category`.
    Delivered { category: String },
    /// A `failed` status with this error code.
    Failed { code: i64 },
}

/// An accepted outbound message.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub wamid: String,
    pub wa_id: String,
    pub biz_opaque_callback_data: Option<String>,
}

/// Schedules the status webhooks of an accepted message, and the auto-reply if configured.
pub(crate) fn schedule_statuses(
    sim: &Sim,
    number: &SimNumber,
    message: &Accepted,
    outcome: Outcome,
) {
    let now = Instant::now();
    let (delay, lag, auto_reply) = {
        let inner = sim.lock();
        let config = &inner.config;
        (
            config.status_delay,
            config.status_lag,
            config.auto_reply.clone(),
        )
    };
    let status_at = |step: u32, status: &str, extra: Value| {
        let offset = lag + delay * step;
        let mut body = json!({
            "id": message.wamid,
            "status": status,
            "timestamp": unix_seconds_after(offset),
            "recipient_id": message.wa_id,
        });
        if let Some(data) = &message.biz_opaque_callback_data {
            body["biz_opaque_callback_data"] = json!(data);
        }
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        event(number, now + offset, EventPayload::Status(body))
    };
    match outcome {
        Outcome::Failed { code } => {
            sim.emit([status_at(
                0,
                "failed",
                json!({"errors": [webhook_error(code)]}),
            )]);
        }
        Outcome::Delivered { category } => {
            let pricing = json!({"pricing": {
                "billable": true,
                "pricing_model": "PMP",
                "type": "regular",
                "category": category,
            }});
            sim.emit([
                status_at(0, "sent", pricing.clone()),
                status_at(1, "delivered", pricing),
                status_at(2, "read", json!({})),
            ]);
            if let Some(text) = auto_reply.filter(|t| !t.is_empty()) {
                let reply_at = delay * 3;
                let (reply, wamid) = inbound_text(
                    number,
                    &message.wa_id,
                    None,
                    &text,
                    now + reply_at,
                    reply_at,
                );
                let mut inner = sim.lock();
                inner.open_window(&number.phone_number_id, &message.wa_id, now + reply_at);
                inner
                    .inbound_to
                    .insert(wamid, number.phone_number_id.clone());
                drop(inner);
                sim.emit([reply]);
            }
        }
    }
}

/// An inbound text message from `from_digits` to `number`, due at `due`. Returns the event and
/// its wamid. The caller opens the user's service window.
pub(crate) fn inbound_text(
    number: &SimNumber,
    from_digits: &str,
    name: Option<&str>,
    text: &str,
    due: Instant,
    offset: Duration,
) -> (WebhookEvent, String) {
    let wamid = new_wamid();
    let contact = json!({
        "profile": {"name": name.unwrap_or(DEFAULT_PROFILE_NAME)},
        "wa_id": from_digits,
    });
    let message = json!({
        "from": from_digits,
        "id": wamid,
        "timestamp": unix_seconds_after(offset),
        "type": "text",
        "text": {"body": text},
    });
    (
        event(number, due, EventPayload::Message { contact, message }),
        wamid,
    )
}

/// A fresh, unique wamid in Meta's style (`wamid.` + opaque base64-like text).
pub(crate) fn new_wamid() -> String {
    let opaque = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("wamid.HBgM{opaque}")
}

fn event(number: &SimNumber, due: Instant, payload: EventPayload) -> WebhookEvent {
    WebhookEvent {
        due,
        waba_id: number.waba_id.clone(),
        phone_number_id: number.phone_number_id.clone(),
        display_phone_number: number.display_phone_number.clone(),
        payload,
        duplicate: false,
    }
}

/// Unix seconds, `offset` from now, as a string (Meta's timestamp format).
fn unix_seconds_after(offset: Duration) -> String {
    let at = Utc::now() + chrono::Duration::from_std(offset).unwrap_or_default();
    at.timestamp().to_string()
}
