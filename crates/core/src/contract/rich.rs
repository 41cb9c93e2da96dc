//! Rich content both as a send request gives it (`…Input`, every field optional so intake can
//! name the one that is wrong) and as a stored message keeps it once validated: template header
//! and button parameters, media, interactive reply buttons and lists, locations, reactions, and
//! replies to an inbound message. The limits are Meta's (reference §1, §8) and live in
//! `ingest::validate::rich`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A template's header parameter: text (given, or from a merge field) or media.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderInput {
    /// `text`, `image`, `video` or `document`: the header format the template was approved with.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A text header's variable (at most 60 characters).
    #[serde(default)]
    pub text: Option<String>,
    /// Fill a text header's variable from this merge field (e.g. `JOBTITLE`).
    #[serde(default)]
    pub merge_field: Option<String>,
    /// Media by an `https` link …
    #[serde(default)]
    pub link: Option<String>,
    /// … or by an uploaded media id.
    #[serde(default)]
    pub id: Option<String>,
    /// A document header's file name, as the candidate sees it.
    #[serde(default)]
    pub filename: Option<String>,
}

/// A parameter of one of a template's buttons.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ButtonInput {
    /// The button's position in the template, 0–9.
    pub index: Option<u8>,
    /// `url` (the dynamic end of the button's URL), `quick_reply` (the payload that comes back
    /// when it is tapped) or `copy_code` (the code copied).
    pub sub_type: Option<String>,
    /// The value: the URL suffix, the payload or the code.
    #[serde(default)]
    pub value: Option<String>,
    /// Take the value from this merge field instead (e.g. `JOBREF` for an "Apply" link).
    #[serde(default)]
    pub merge_field: Option<String>,
}

/// A document, image, video, audio or sticker (inside the service window).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaInput {
    /// `document`, `image`, `video`, `audio` or `sticker`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// An `https` link …
    #[serde(default)]
    pub link: Option<String>,
    /// … or an uploaded media id.
    #[serde(default)]
    pub id: Option<String>,
    /// Shown under a document, image or video (at most 1,024 characters).
    #[serde(default)]
    pub caption: Option<String>,
    /// A document's file name.
    #[serde(default)]
    pub filename: Option<String>,
}

/// Reply buttons (`button`) or a list (`list`), inside the service window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveInput {
    /// `button` or `list`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A text header (at most 60 characters).
    #[serde(default)]
    pub header: Option<String>,
    /// The message (1–1,024 characters).
    pub body: Option<String>,
    /// At most 60 characters.
    #[serde(default)]
    pub footer: Option<String>,
    /// `button`: one to three reply buttons.
    #[serde(default)]
    pub buttons: Option<Vec<ReplyButtonInput>>,
    /// `list`: the label of the button that opens the list (at most 20 characters).
    #[serde(default)]
    pub button: Option<String>,
    /// `list`: one to ten sections, ten rows at most in all.
    #[serde(default)]
    pub sections: Option<Vec<ListSectionInput>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyButtonInput {
    /// Comes back in the reply webhook (at most 256 characters, unique in the message).
    pub id: Option<String>,
    /// What the candidate sees (at most 20 characters).
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSectionInput {
    /// At most 24 characters; required when there is more than one section.
    #[serde(default)]
    pub title: Option<String>,
    pub rows: Option<Vec<ListRowInput>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRowInput {
    /// Comes back in the reply webhook (at most 200 characters, unique in the message).
    pub id: Option<String>,
    /// At most 24 characters.
    pub title: Option<String>,
    /// At most 72 characters.
    #[serde(default)]
    pub description: Option<String>,
}

/// A place (an interview location), inside the service window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

/// An emoji reaction to a message of the conversation, inside the service window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactionInput {
    /// The reacted-to message's wamid (as inbound events and the history give it).
    pub message_id: Option<String>,
    /// One emoji; empty removes an earlier reaction.
    pub emoji: Option<String>,
}

/// A validated template header parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeaderParam {
    /// `text`, `image`, `video` or `document`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// Media by link or by uploaded id (exactly one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaRef {
    Link(String),
    Id(String),
}

/// A validated template button parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ButtonParam {
    pub index: u8,
    /// `url`, `quick_reply` or `copy_code`.
    pub sub_type: String,
    pub value: String,
}
