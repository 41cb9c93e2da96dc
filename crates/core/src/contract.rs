//! The wire contracts between wafleet and its neighbours: the send request (HTTP body and AMQP
//! intake body), the dispatch envelope on `<p>.dispatch.<n>`, the stored message content, and
//! the notifications on `<p>.events`. Field names here are the public contract (README).

mod rich;

pub use rich::{
    ButtonInput, ButtonParam, HeaderInput, HeaderParam, InteractiveInput, ListRowInput,
    ListSectionInput, LocationInput, MediaInput, MediaRef, ReactionInput, ReplyButtonInput,
};

use crate::domain::{MessageId, TenantId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/messages` and the AMQP intake body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Recipient in E.164.
    pub to: Option<String>,
    /// The candidate or contact the message concerns.
    pub record: Option<RecordInput>,
    /// The upstream user sending (their own sender number is used when they have one).
    #[serde(default)]
    pub user_id: Option<String>,
    /// A sender's phone number id; default: the user's sender, else the company's.
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub template: Option<TemplateInput>,
    /// Merge fields by code (`KNOWNAS`…), resolved through the template's bindings.
    #[serde(default)]
    pub merge_fields: Option<BTreeMap<String, String>>,
    /// Free-form text (only inside the 24 h service window).
    #[serde(default)]
    pub text: Option<String>,
    /// A document, image, video, audio or sticker (inside the window).
    #[serde(default)]
    pub media: Option<MediaInput>,
    /// Reply buttons or a list (inside the window).
    #[serde(default)]
    pub interactive: Option<InteractiveInput>,
    /// A place (inside the window).
    #[serde(default)]
    pub location: Option<LocationInput>,
    /// An emoji reaction to a message (inside the window).
    #[serde(default)]
    pub reaction: Option<ReactionInput>,
    /// Send as a reply quoting this message (its wamid): text, media, interactive or location.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The message expires if not sent by then.
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
    /// AMQP intake only: `single` (default) or `bulk`.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// AMQP intake only: the campaign a bulk message belongs to.
    #[serde(default)]
    pub campaign_id: Option<uuid::Uuid>,
}

/// The record reference as given (validated into `domain::RecordRef`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    pub name: Option<String>,
    pub language: Option<String>,
    #[serde(default)]
    pub parameters: Option<TemplateParameters>,
    /// The header's parameter, when the template's header has a variable or is media.
    #[serde(default)]
    pub header: Option<HeaderInput>,
    /// Parameters of the template's buttons that take one (URL suffix, quick-reply payload,
    /// copy code), by button index.
    #[serde(default)]
    pub buttons: Option<Vec<ButtonInput>>,
}

/// Body variables: in order (`{{1}}`, `{{2}}`…) or by name for NAMED templates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum TemplateParameters {
    Positional(Vec<String>),
    Named(BTreeMap<String, String>),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Single,
    Bulk,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Bulk => "bulk",
        }
    }
}

/// What a stored outbound message asks Meta to send; kept in `messages.content`. Every field
/// added since the first two variants is optional in storage, so older rows still read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Content {
    Template {
        name: String,
        language: String,
        /// Body parameters, resolved (merge fields already bound).
        parameters: ResolvedParameters,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<HeaderParam>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<ButtonParam>,
    },
    Text {
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Media {
        /// `document`, `image`, `video`, `audio` or `sticker`.
        kind: String,
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// Meta's `interactive` object, built and checked at intake.
    Interactive {
        interactive: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Reaction {
        message_id: String,
        emoji: String,
    },
}

impl Content {
    /// The message's type as history shows it (`template`, `text`, `document`, `image`…).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Template { .. } => "template",
            Self::Text { .. } => "text",
            Self::Media { kind, .. } => match kind.as_str() {
                "document" => "document",
                "image" => "image",
                "video" => "video",
                "audio" => "audio",
                _ => "sticker",
            },
            Self::Interactive { .. } => "interactive",
            Self::Location { .. } => "location",
            Self::Reaction { .. } => "reaction",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "format", content = "values", rename_all = "lowercase")]
pub enum ResolvedParameters {
    Positional(Vec<String>),
    Named(Vec<(String, String)>),
}

/// The body on a dispatch shard: a pointer to the row, which is the source of truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DispatchEnvelope {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    /// The sender it goes from, so the dispatcher can wait for the sender's budget before it
    /// claims the row (absent in envelopes published before it was added: claimed at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
}

/// Header on dispatch messages: how many retry hops this message has taken.
pub const RETRY_COUNT_HEADER: &str = "x-wafleet-retries";
/// Header on rejected intake messages.
pub const REASON_HEADER: &str = "x-wafleet-reason";
/// Header naming the tenant (AMQP intake, webhooks from a tenant's own app).
pub const TENANT_HEADER: &str = "tenant";

/// `inbound.<tenant>`: a candidate or contact wrote to one of the tenant's senders.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InboundEvent {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
    pub wamid: String,
    pub phone_number_id: String,
    /// E.164, when Meta gave a phone number.
    pub from: Option<String>,
    /// Meta's business-scoped user id, when given.
    pub from_user_id: Option<String>,
    pub record: Option<crate::domain::RecordRef>,
    /// The conversation (tenant, sender number, contact) the message belongs to; absent for a
    /// user known by business-scoped id alone.
    #[serde(default)]
    pub conversation_id: Option<uuid::Uuid>,
    /// `text`, `button`, `interactive`, `image`…
    pub content_type: String,
    /// Text, button title or caption, where the message has one.
    pub text: Option<String>,
    pub content: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// `status.<tenant>`: an outbound message moved (sent, delivered, read, failed…).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusEvent {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
    pub wamid: Option<String>,
    pub status: String,
    pub record: Option<crate::domain::RecordRef>,
    pub at: DateTime<Utc>,
    pub error: Option<serde_json::Value>,
    /// Why, when the state has a reason (`meta_131026`, `recipient_engagement_limit`…).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `optout.<tenant>`: a recipient opted out of, or back in to, the tenant's messages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptOutEvent {
    pub tenant_id: TenantId,
    /// E.164, or Meta's business-scoped user id for a user known without a phone number.
    pub recipient: String,
    /// `all` (a STOP keyword: every template) or `marketing` (Meta's marketing stop).
    pub scope: String,
    /// `opted_out` or `opted_in`.
    pub action: String,
    /// `keyword`, `meta_131050` or `user_preferences`.
    pub source: String,
    pub at: DateTime<Utc>,
}
