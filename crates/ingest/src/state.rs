//! What every ingest handler shares.

use crate::publish::DispatchPublisher;
use sqlx::PgPool;
use std::sync::Arc;
use wafleet_core::{amqp::Topology, clock::SharedClock};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub topology: Arc<Topology>,
    pub dispatch: DispatchPublisher,
    /// Single-message intake, accepted in batches (HTTP and AMQP alike).
    pub group_commit: crate::group_commit::GroupCommit,
    pub clock: SharedClock,
    /// Graph access and the secret box for the administration API.
    pub graph: crate::graph_admin::GraphAdmin,
    pub campaigns: CampaignSettings,
    /// Where Meta reaches the webhooks service (`WAFLEET_PUBLIC_BASE_URL`), for the Callback URL.
    pub public_base_url: Option<String>,
    /// The operators' credential (`WAFLEET_OPERATOR_KEY`); operator routes answer 401 without.
    pub operator_key: Option<wafleet_core::config::Secret>,
    /// `notify.allow_private_addresses`: whether webhook endpoints may be on private addresses.
    pub notify_allow_private: bool,
    /// Meta's prices for estimated costs (`GET /v1/usage`, campaign dry runs).
    pub rate_card: Arc<wafleet_core::rate_card::RateCard>,
}

/// What the campaign API needs from the settings.
#[derive(Debug, Clone, Copy)]
pub struct CampaignSettings {
    /// Recipients validated and inserted per statement.
    pub batch: usize,
    /// Largest campaign body.
    pub max_body_bytes: usize,
    /// The per-sender rate the feeder and dispatcher keep (for ETAs).
    pub sender_rate: u32,
}
