//! A campaign's progress (`GET /v1/campaigns/{id}`): counts per state, the rate over the last
//! minute, what holds it back and when it should be done — for the campaign and for each number
//! of its pool. Each number sends at its own rate (the feeder windows by the message's
//! sender), all of them under the tenant's one quiet time and one cap, and the ETA says so
//! (`core::campaign::estimate_pool_eta`).

use super::control::{CampaignRow, row};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use wafleet_core::{
    campaign::{self, Hold, PAUSED_REASON, status},
    domain::{TenantId, state},
    http::Problem,
    policy::cap,
};

/// States a campaign message is still waiting in (not yet handed to Meta).
const WAITING: [&str; 3] = [state::ACCEPTED, state::QUEUED, state::DEFERRED];

/// A campaign's progress.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CampaignStatus {
    #[serde(flatten)]
    pub campaign: CampaignRow,
    /// Messages per state (including those joined over AMQP intake).
    pub counts: BTreeMap<String, i64>,
    /// Messages not yet handed to Meta.
    pub pending: i64,
    /// Dispatch attempts per second over the last minute.
    pub current_rate: f64,
    /// The rate the feeder keeps for the campaign: the sum of its numbers' rates.
    pub sender_rate: u32,
    /// What holds the campaign back now, if anything.
    pub held_by: Option<Hold>,
    /// When the last pending message should be sent, given each number's rate and share,
    /// quiet time and the cap (null when nothing is pending, or while paused or cancelled).
    pub eta: Option<DateTime<Utc>>,
    /// The same per number, in pool order (then any number messages joined over AMQP use).
    pub per_sender: Vec<SenderProgress>,
}

/// One number's part of a campaign.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SenderProgress {
    /// The number's phone number id.
    pub sender: String,
    /// The number's rate the feeder keeps (its `rate_mps`, else the default).
    pub sender_rate: u32,
    /// Its messages per state.
    pub counts: BTreeMap<String, i64>,
    /// Its messages not yet handed to Meta.
    pub pending: i64,
    /// Its dispatch attempts per second over the last minute.
    pub current_rate: f64,
    /// When its last pending message should be sent, at its own rate (null as for the campaign).
    pub eta: Option<DateTime<Utc>>,
}

fn pending_of(counts: &BTreeMap<String, i64>) -> i64 {
    WAITING.iter().filter_map(|s| counts.get(*s)).sum()
}

/// Progress, rates and ETA of one campaign. `default_rate` is the rate of a sender without its
/// own `rate_mps`.
pub async fn status_of(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    default_rate: u32,
    now: DateTime<Utc>,
) -> Result<CampaignStatus, Problem> {
    let mut campaign = row(pool, tenant, id).await?;
    let by_sender: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT phone_number_id, state, count(*) FROM messages
         WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY 1, 2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(pool)
    .await?;
    let recent: HashMap<String, i64> = sqlx::query_as(
        "SELECT phone_number_id, count(*) FROM messages
         WHERE tenant_id = $1 AND campaign_id = $2 AND claimed_at > $3 GROUP BY 1",
    )
    .bind(tenant)
    .bind(id)
    .bind(now - chrono::Duration::minutes(1))
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    // The pool in its order, then any other number the campaign's messages use.
    let mut numbers = campaign.senders.clone();
    for (number, _, _) in &by_sender {
        if !numbers.contains(number) {
            numbers.push(number.clone());
        }
    }
    let own_rates: HashMap<String, Option<i32>> = sqlx::query_as(
        "SELECT phone_number_id, rate_mps FROM senders WHERE tenant_id = $1 AND phone_number_id = ANY($2)",
    )
    .bind(tenant)
    .bind(&numbers)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let rate_of = |number: &str| {
        own_rates
            .get(number)
            .copied()
            .flatten()
            .map_or(default_rate, |r| r.clamp(1, 1000) as u32)
    };
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_sender: Vec<SenderProgress> = numbers
        .iter()
        .map(|number| SenderProgress {
            sender: number.clone(),
            sender_rate: rate_of(number),
            counts: BTreeMap::new(),
            pending: 0,
            current_rate: recent.get(number).copied().unwrap_or(0) as f64 / 60.0,
            eta: None,
        })
        .collect();
    for (number, state, n) in by_sender {
        *counts.entry(state.clone()).or_default() += n;
        if let Some(s) = per_sender.iter_mut().find(|s| s.sender == number) {
            s.counts.insert(state, n);
        }
    }
    for s in &mut per_sender {
        s.pending = pending_of(&s.counts);
    }
    let pending = pending_of(&counts);
    // The pool's rate: its own numbers' (a number only AMQP-joined messages use counts while
    // it has something pending).
    let sender_rate = per_sender
        .iter()
        .filter(|s| campaign.senders.contains(&s.sender) || s.pending > 0)
        .map(|s| s.sender_rate)
        .fold(0u32, u32::saturating_add);
    let (held_by, eta) = match campaign.status.as_str() {
        status::CANCELLED => (None, None),
        status::PAUSED => (
            Some(Hold {
                reason: PAUSED_REASON,
                until: None,
            }),
            None,
        ),
        _ if pending == 0 => (None, None),
        _ => {
            let quiet = campaign::quiet_rule(pool, tenant).await?;
            let usage = cap::usage(pool, tenant, now).await?;
            let in_flight = counts.get(state::DISPATCHING).copied().unwrap_or(0) as u32;
            for s in per_sender.iter_mut().filter(|s| s.pending > 0) {
                s.eta = campaign::estimate_eta(
                    s.pending as u64,
                    s.sender_rate,
                    quiet.as_ref(),
                    &usage,
                    now,
                );
            }
            let shares: Vec<(u64, u32)> = per_sender
                .iter()
                .map(|s| (s.pending as u64, s.sender_rate))
                .collect();
            (
                campaign::hold_now(quiet.as_ref(), &usage, in_flight, now),
                campaign::estimate_pool_eta(&shares, quiet.as_ref(), &usage, now),
            )
        }
    };
    if campaign.status == status::ACTIVE && pending == 0 {
        campaign.status = status::COMPLETED.to_owned();
    }
    Ok(CampaignStatus {
        campaign,
        counts,
        pending,
        current_rate: recent.values().sum::<i64>() as f64 / 60.0,
        sender_rate,
        held_by,
        eta,
        per_sender,
    })
}
