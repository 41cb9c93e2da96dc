//! Bulk campaigns: one template to many recipients. `create` validates every recipient with the
//! same rules as `POST /v1/messages` and inserts the valid ones in batches as bulk messages held
//! in PostgreSQL (`queued`, unpublished) for the dispatcher's feeder; invalid ones are recorded
//! as the campaign's rejections; `pool` picks each recipient's number when the campaign sends
//! from several; `write` streams the batches into the campaign's transaction. `progress` reads
//! counts, rates and the ETA (per sender too); `control` lists, pauses, resumes or cancels.

pub mod control;
pub mod create;
pub mod pool;
pub mod progress;
mod write;

use serde::Deserialize;
use std::collections::BTreeMap;
use wafleet_core::contract::{ButtonInput, HeaderInput, RecordInput, TemplateParameters};

/// The template a campaign sends.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignTemplate {
    pub name: Option<String>,
    pub language: Option<String>,
    /// The header's parameter for every recipient (a job description document, or a text
    /// header from each recipient's `merge_fields`).
    #[serde(default)]
    pub header: Option<HeaderInput>,
    /// Button parameters for every recipient (an "Apply" link's suffix from each recipient's
    /// `merge_fields`, say).
    #[serde(default)]
    pub buttons: Option<Vec<ButtonInput>>,
}

/// Everything about a campaign but its recipients: the JSON body without `recipients`, or the
/// first line of an NDJSON body.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignHeader {
    pub name: Option<String>,
    pub template: Option<CampaignTemplate>,
    /// A sender's phone number id; default: the user's sender, else the company's.
    #[serde(default)]
    pub sender: Option<String>,
    /// A pool of senders instead of one: a list of phone number ids, or `"all"` for every
    /// approved company sender. Each recipient sticks to one number of the pool.
    #[serde(default)]
    pub senders: Option<pool::SendersInput>,
    /// The upstream user the campaign is sent for (history and their own sender).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Recipients not sent by then end `expired`.
    #[serde(default)]
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
}

/// The JSON body: the header's fields plus the recipients.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignBody {
    pub name: Option<String>,
    pub template: Option<CampaignTemplate>,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub senders: Option<pool::SendersInput>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub recipients: Vec<RecipientInput>,
}

impl CampaignBody {
    pub fn split(self) -> (CampaignHeader, Vec<RecipientInput>) {
        (
            CampaignHeader {
                name: self.name,
                template: self.template,
                sender: self.sender,
                senders: self.senders,
                user_id: self.user_id,
                not_after: self.not_after,
            },
            self.recipients,
        )
    }
}

/// One recipient: who, which record it concerns, and its merge fields (or explicit parameters).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientInput {
    pub to: Option<String>,
    pub record: Option<RecordInput>,
    #[serde(default)]
    pub merge_fields: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub parameters: Option<TemplateParameters>,
}
