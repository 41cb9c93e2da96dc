//! `GET /v1/limits` (reader): the portfolio messaging limit as the dispatcher enforces it —
//! the tier, the distinct business-initiated recipients of the last 24 h, the headroom left for
//! single and for bulk sends, and when the next slot frees.

use crate::{auth::Principal, state::AppState};
use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use wafleet_core::{
    domain::Role,
    http::Problem,
    policy::cap::{self, Limit},
};

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Limits {
    /// The effective tier: a number, or `"unlimited"`.
    pub tier: Limit,
    /// What bulk (campaign) sends may use: the tier less the share kept for single sends.
    pub bulk_limit: Limit,
    pub bulk_reserve_percent: i32,
    /// Distinct recipients of business-initiated messages in the last 24 h.
    pub used: u32,
    /// Slots left for single sends (`null` = unlimited).
    pub headroom: Option<u32>,
    /// Slots left for bulk sends (`null` = unlimited).
    pub bulk_headroom: Option<u32>,
    /// When the oldest counted recipient ages out (`null` when none is counted).
    pub next_slot_at: Option<DateTime<Utc>>,
    /// The rolling window, in hours.
    pub window_hours: i64,
}

#[tracing::instrument(name = "GET /v1/limits", skip_all, fields(otel.kind = "server", tenant))]
pub async fn get(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<Limits>, Problem> {
    principal.require(Role::Reader)?;
    let usage = cap::usage(&st.pool, principal.tenant_id, st.clock.now()).await?;
    Ok(Json(Limits {
        tier: usage.limit,
        bulk_limit: usage.bulk_limit,
        bulk_reserve_percent: usage.reserve_percent,
        used: usage.used,
        headroom: usage.headroom(),
        bulk_headroom: usage.bulk_headroom(),
        next_slot_at: usage.next_slot_at,
        window_hours: cap::WINDOW.num_hours(),
    }))
}
