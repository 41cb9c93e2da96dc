//! Serde types of the simulator's control API (`/_sim/...`).
//!
//! Tests and the demo register senders, templates and faults with these, and read back what the
//! simulator received. They describe the simulated Meta side, not wafleet's own model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A sender phone number registered on a WABA (`POST /_sim/numbers`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimNumber {
    /// Graph ID of the number, the `{phone_number_id}` in send URLs.
    pub phone_number_id: String,
    /// The WhatsApp Business Account that owns the number.
    pub waba_id: String,
    /// Display form, e.g. `+1 555-010-0001` (echoed in webhook metadata).
    pub display_phone_number: String,
    /// Verified business name shown in `GET /{waba}/phone_numbers`.
    #[serde(default)]
    pub verified_name: Option<String>,
    /// Throughput in messages per second before `130429`; the sim default when absent.
    #[serde(default)]
    pub mps: Option<u32>,
    /// `GREEN`, `YELLOW`, `RED`, ...; `GREEN` when absent.
    #[serde(default)]
    pub quality_rating: Option<String>,
}

/// Per-WABA webhook override (`POST /_sim/wabas`): a tenant with its own Meta app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimWaba {
    /// The WABA ID (webhook `entry[].id`).
    pub waba_id: String,
    /// Callback URL for this WABA's webhooks; the global one when absent.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// App secret used to sign this WABA's webhooks; the global one when absent.
    #[serde(default)]
    pub app_secret: Option<String>,
}

/// A message template registered on a WABA (`POST /_sim/templates`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimTemplate {
    /// Owning WABA.
    pub waba_id: String,
    /// Template name (`[a-z0-9_]`).
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// Review status; only `APPROVED` templates can be sent.
    #[serde(default = "default_status")]
    pub status: String,
    /// Body text with `{{1}}` or `{{name}}` placeholders; their count is the body param count.
    pub body_text: String,
    /// `POSITIONAL` or `NAMED`.
    #[serde(default = "default_parameter_format")]
    pub parameter_format: String,
    /// The header, if any: `TEXT` (with an optional `{{1}}`), `IMAGE`, `VIDEO` or `DOCUMENT`.
    #[serde(default)]
    pub header: Option<SimHeader>,
    /// The buttons, in order (their index is their position).
    #[serde(default)]
    pub buttons: Vec<SimButton>,
}

/// A template's header as Meta lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimHeader {
    pub format: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// A template's button as Meta lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimButton {
    /// `QUICK_REPLY`, `URL`, `COPY_CODE`, `PHONE_NUMBER`…
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    /// URL buttons: the URL, with `{{1}}` for a dynamic suffix.
    #[serde(default)]
    pub url: Option<String>,
}

fn default_status() -> String {
    "APPROVED".to_owned()
}

fn default_parameter_format() -> String {
    "POSITIONAL".to_owned()
}

/// One request the send endpoint received, successful or not (`GET /_sim/sends`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedSend {
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// The `{phone_number_id}` from the URL.
    pub phone_number_id: String,
    /// The `to` field as sent (empty when missing).
    pub to: String,
    /// The `type` field (`text`, `template`, ...; empty when missing).
    pub message_type: String,
    /// `template.name` for template sends.
    pub template_name: Option<String>,
    /// The `biz_opaque_callback_data` field, if any.
    pub biz_opaque_callback_data: Option<String>,
    /// The wamid returned on success.
    pub wamid: Option<String>,
    /// The Graph error code returned synchronously, if any.
    pub error_code: Option<i64>,
    /// The object named after the type (`template`, `document`, `interactive`…), as sent.
    #[serde(default)]
    pub content: Option<serde_json::Value>,
    /// `context` (a reply's quoted message), if sent.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
}

/// A fault injected into the send endpoint (`POST /_sim/faults`).
///
/// A request matches when every filter that is set matches (and the `error_rate_percent` draw
/// hits). The first matching fault applies: it adds latency, then drops the connection
/// (`reset`), or (if `code` is set) answers with that Graph error instead of sending. A latency
/// above the client's timeout simulates a timeout.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fault {
    /// Only requests from this sender; any sender when absent.
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// Only requests to this recipient (compared by digits); any recipient when absent.
    #[serde(default)]
    pub to: Option<String>,
    /// Graph error code to answer with, e.g. `131000`, `2`, `131056`, `80007`.
    #[serde(default)]
    pub code: Option<i64>,
    /// HTTP status override; by default the status Meta documents for `code`.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Extra latency before answering, in milliseconds (a large value simulates a timeout).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// How many matching requests the fault applies to; until cleared when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// How long the fault lasts from when it was added, in milliseconds (a burst, e.g. of
    /// `130429` while a number is over its throughput); until cleared when absent.
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// Only template sends of this template name; any request when absent.
    #[serde(default)]
    pub template: Option<String>,
    /// Share of matching requests the fault hits, 0–100; every one when absent.
    #[serde(default)]
    pub error_rate_percent: Option<u8>,
    /// Drop the connection without an answer (a reset), after any latency.
    #[serde(default)]
    pub reset: bool,
    /// Accept the message (it is recorded with its wamid and its status webhooks follow), then
    /// lose the answer, as Meta's can be lost on the way back: see [`AfterAccept`].
    #[serde(default)]
    pub after_accept: Option<AfterAccept>,
    /// The Graph edge the fault applies to: `messages` (sends, the default), or an onboarding
    /// edge, `subscribed_apps`, `register` or `deregister` (only `code`, `http_status` and
    /// `times` apply there; `phone_number_id` filters by the number or WABA in the path).
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// How an accepted send's answer is lost.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AfterAccept {
    /// The connection closes without an answer.
    Drop,
    /// The answer comes only after `latency_ms` (set it past the client's timeout).
    Late,
    /// `200` with a body that is cut off (unreadable).
    Garbled,
}

/// Runtime configuration update (`PUT /_sim/config`); absent fields are left unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// Global webhook callback URL.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Global app secret for signing.
    #[serde(default)]
    pub app_secret: Option<String>,
    /// Delay between `sent`, `delivered` and `read`, in milliseconds.
    #[serde(default)]
    pub status_delay_ms: Option<u64>,
    /// How far every status webhook lags behind its send, in milliseconds (Meta's can lag
    /// minutes); 0 by default.
    #[serde(default)]
    pub status_lag_ms: Option<u64>,
    /// Every Nth webhook event is delivered twice (0 turns it off).
    #[serde(default)]
    pub duplicate_every: Option<u32>,
    /// Shuffle the events within each batch.
    #[serde(default)]
    pub reorder: Option<bool>,
    /// Text the recipient replies with after a message is read (empty string turns it off).
    #[serde(default)]
    pub auto_reply: Option<String>,
    /// Delays between webhook delivery retries, in milliseconds.
    #[serde(default)]
    pub retry_delays_ms: Option<Vec<u64>>,
}

/// Marks a recipient as unreachable (`POST /_sim/unreachable`): sends to it fail with 131026.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnreachableRequest {
    /// Recipient phone number (any format; compared by digits).
    pub to: String,
}

/// A simulated user writes to a business number (`POST /_sim/inbound`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InboundRequest {
    /// The business number written to.
    pub phone_number_id: String,
    /// The user's number in E.164 (`+` optional).
    pub from: String,
    /// Message text.
    pub text: String,
    /// Profile name; `Sim User` when absent.
    #[serde(default)]
    pub name: Option<String>,
}

/// Answer to `POST /_sim/inbound`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InboundResponse {
    /// The wamid of the simulated inbound message.
    pub wamid: String,
}

/// Counters exposed by `GET /_sim/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimStats {
    /// Send requests answered with 200.
    pub sends_ok: u64,
    /// Send requests answered with an error.
    pub sends_error: u64,
    /// Webhook POSTs answered with 200.
    pub webhooks_posted: u64,
    /// Webhook events (statuses and messages) delivered in those POSTs.
    pub webhook_events: u64,
    /// Webhook POST attempts that failed (non-200 or transport error), retries included.
    pub webhooks_failed: u64,
    /// Webhook events dropped: no callback URL, or every retry failed.
    pub webhook_events_dropped: u64,
}
