//! The dispatcher's deterministic seam: a batch of dispatch envelopes in, a disposition per
//! envelope out (ack, retry later through a tier queue, or dead-letter). The consume loop in
//! `consumer` is a thin shell around `handle_batch`; tests call it directly.

use crate::{
    classify::{Class, classify},
    graph_client::{GraphClient, build_body},
    store::{self, Claimed, Outcome},
    tokens::TokenCache,
};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use std::{num::NonZeroU32, sync::Arc, time::Instant};
use wafleet_core::{
    clock::SharedClock,
    config::DispatchSettings,
    contract::DispatchEnvelope,
    domain::{MessageId, mask_phone, state},
};

/// Everything a batch needs.
pub struct Ctx {
    pub pool: sqlx::PgPool,
    pub graph: GraphClient,
    pub tokens: TokenCache,
    /// One budget per sender phone number; exact because one process owns a sender (SAC shards).
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
    pub clock: SharedClock,
    pub settings: DispatchSettings,
}

impl Ctx {
    pub fn sender_limiter(per_second: u32) -> Arc<DefaultKeyedRateLimiter<String>> {
        let rate = NonZeroU32::new(per_second.max(1)).expect("non-zero");
        Arc::new(RateLimiter::keyed(Quota::per_second(rate)))
    }
}

/// What the shell does with a delivery once its durable effect is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Outcome recorded (or already known): ack.
    Done,
    /// Publish to retry tier `tier`, then ack.
    RetryLater { tier: usize },
    /// Retries exhausted: publish to `<p>.dead`, then ack.
    Dead,
}

/// Handles one batch. `Err` only for database failures: nothing was decided, the shell
/// requeues every delivery.
pub async fn handle_batch(
    ctx: &Ctx,
    batch: &[DispatchEnvelope],
) -> Result<Vec<Disposition>, sqlx::Error> {
    let now = ctx.clock.now();
    let resend_cutoff = now
        - chrono::Duration::from_std(ctx.settings.ambiguous_resend_after)
            .unwrap_or(chrono::Duration::MAX);
    let ids: Vec<MessageId> = batch.iter().map(|e| e.message_id).collect();
    let (claimed, unclaimed) = store::claim(&ctx.pool, &ids, now, resend_cutoff).await?;

    let results = join_all(claimed.iter().map(|c| attempt(ctx, c, now))).await;
    let (outcomes, dispositions): (Vec<Outcome>, Vec<(MessageId, Disposition)>) =
        results.into_iter().unzip();
    store::record(&ctx.pool, &outcomes, now).await?;
    for o in &outcomes {
        metrics::counter!("wafleet_dispatch_outcomes_total", "state" => o.state).increment(1);
        wafleet_core::metrics::message_state(o.state, o.reason.as_deref());
    }

    Ok(batch
        .iter()
        .map(|env| {
            if let Some((_, d)) = dispositions.iter().find(|(id, _)| *id == env.message_id) {
                return *d;
            }
            match unclaimed.iter().find(|u| u.id == env.message_id) {
                // Claimed recently by an attempt whose outcome is unknown (a crash between
                // Meta's answer and our write): wait for the status webhook to settle it.
                Some(u) if u.state == state::DISPATCHING => RetryLater {
                    tier: ctx.settings.retry_tiers.len() - 1,
                },
                // Already sent, failed, cancelled…: a redelivery; never send twice.
                Some(_) => Disposition::Done,
                None => {
                    tracing::warn!(message_id = %env.message_id, "dispatch message names no message; dropping");
                    Disposition::Done
                }
            }
        })
        .collect())
}

use Disposition::RetryLater;

/// One attempt for a claimed message: expire, or wait for the sender's budget and call Meta.
#[tracing::instrument(name = "dispatch message", skip_all, fields(
    message_id = %claimed.id,
    tenant = %claimed.tenant_id,
    sender = %claimed.phone_number_id,
    to = %mask_phone(&claimed.recipient),
    attempt = claimed.attempts,
))]
async fn attempt(
    ctx: &Ctx,
    claimed: &Claimed,
    now: DateTime<Utc>,
) -> (Outcome, (MessageId, Disposition)) {
    let outcome = |state: &'static str, reason: Option<String>| Outcome {
        id: claimed.id,
        tenant_id: claimed.tenant_id,
        state,
        reason,
        wamid: None,
        wa_id: None,
        error: None,
        not_before: None,
        detail: None,
    };
    let done = (claimed.id, Disposition::Done);
    if claimed.not_after.is_some_and(|t| t <= now) {
        return (
            outcome(state::EXPIRED, Some("not_after_passed".into())),
            done,
        );
    }
    let token = match ctx.tokens.get(&ctx.pool, claimed.tenant_id).await {
        Ok(Some(token)) => token,
        Ok(None) => {
            return (
                outcome(state::FAILED, Some("no_meta_connection".into())),
                done,
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot open the tenant's Meta token");
            return retry_or_give_up(
                ctx,
                claimed,
                outcome(state::DEFERRED, Some("retry".into())),
                None,
                now,
            );
        }
    };
    let waiting = Instant::now();
    ctx.limiter.until_key_ready(&claimed.phone_number_id).await;
    wafleet_core::metrics::limiter_wait(&claimed.phone_number_id, waiting.elapsed());
    let body = build_body(&claimed.content.0, &claimed.recipient, claimed.id);
    let started = Instant::now();
    let result = ctx
        .graph
        .send(&token, &claimed.phone_number_id, &body)
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(success) => {
            metrics::histogram!("wafleet_graph_duration_seconds", "outcome" => "ok")
                .record(elapsed);
            let mut o = outcome(state::SENT, None);
            o.detail =
                Some(json!({ "wamid": success.wamid, "message_status": success.message_status }));
            o.wamid = Some(success.wamid);
            o.wa_id = success.wa_id;
            (o, done)
        }
        Err(error) => {
            metrics::histogram!("wafleet_graph_duration_seconds", "outcome" => "error")
                .record(elapsed);
            let code = error
                .code
                .map_or_else(|| "transport".to_owned(), |c| c.to_string());
            tracing::warn!(meta.error.code = %code, http_status = ?error.http_status, "Graph call failed");
            let detail = error.to_json();
            match classify(&error) {
                Class::Permanent => {
                    let mut o = outcome(state::FAILED, Some(format!("meta_{code}")));
                    o.error = Some(detail.clone());
                    o.detail = Some(detail);
                    (o, done)
                }
                Class::Retry => {
                    let mut o = outcome(state::DEFERRED, Some("retry".into()));
                    o.error = Some(detail.clone());
                    o.detail = Some(detail);
                    retry_or_give_up(ctx, claimed, o, error.retry_after, now)
                }
            }
        }
    }
}

/// Schedules the next attempt on the shortest tier that covers what Meta asked for, or gives up
/// after the last tier: `failed` with the last error, and the envelope to `<p>.dead`.
fn retry_or_give_up(
    ctx: &Ctx,
    claimed: &Claimed,
    mut outcome: Outcome,
    wait_at_least: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> (Outcome, (MessageId, Disposition)) {
    let tiers = &ctx.settings.retry_tiers;
    let attempt = claimed.attempts.max(1) as usize;
    if attempt > tiers.len() {
        outcome.state = state::FAILED;
        outcome.reason = Some("retries_exhausted".into());
        return (outcome, (claimed.id, Disposition::Dead));
    }
    let mut tier = attempt - 1;
    if let Some(wait) = wait_at_least {
        tier = tiers
            .iter()
            .position(|t| *t >= wait)
            .unwrap_or(tiers.len() - 1)
            .max(tier);
    }
    outcome.not_before = Some(now + chrono::Duration::from_std(tiers[tier]).unwrap_or_default());
    (outcome, (claimed.id, Disposition::RetryLater { tier }))
}
