//! The dispatcher's seam: a batch of dispatch envelopes in, a disposition per envelope out (ack,
//! retry later through a tier queue, dead-letter, or requeue). The consume loop in `consumer` is
//! a thin shell around `handle_batch`. After the claim, the policy step (SPEC §4: the rules in
//! `policy`, circuit breakers, the cap in `cap`) decides what is not sent; the rest wait for
//! their pair's and sender's budgets (`rate`) and call Meta, each sender on its own (`attempt`).

use crate::{
    cap::{self, SlotAsk},
    circuits::{Gate, Gates, Scope},
    graph_client::GraphClient,
    policy::Inputs,
    rate::Rates,
    retry::{duration, hold, retry_while_sendable},
    store::{self, Claimed, Outcome},
    tokens::TokenCache,
};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::json;
use std::{collections::HashMap, future::Future};
use wafleet_core::{
    clock::SharedClock,
    config::DispatchSettings,
    contract::DispatchEnvelope,
    domain::{MessageId, state},
    policy::{Decision, cap::SlotDecision, reason},
};

/// Everything a batch needs.
pub struct Ctx {
    pub pool: sqlx::PgPool,
    pub graph: GraphClient,
    pub tokens: TokenCache,
    /// Sender and pair budgets (exact: one process owns a sender, SAC shards), with the lower
    /// rate of senders Meta throttled recently (130429).
    pub rates: Rates,
    pub clock: SharedClock,
    pub settings: DispatchSettings,
    /// Admission control: the database phases of every batch (claim and policies, recording
    /// outcomes) take a permit first, and there are fewer permits than pool connections. A busy
    /// pool then makes batches wait here, without a timeout, instead of failing to record what
    /// was sent (which would park the message as ambiguous).
    pub db_turns: tokio::sync::Semaphore,
    /// Per-tenant turns for cap reservations in this process.
    pub cap_turns: cap::Turns,
    /// Group commit for the outcomes of Graph calls.
    pub recorder: crate::recorder::Recorder,
}

impl Ctx {
    /// Waits for a database turn (see `db_turns`).
    async fn db_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.db_turns.acquire().await.expect("never closed")
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
    /// The outcome could not be recorded (database down): requeue; the claim makes the
    /// redelivery harmless.
    Requeue,
}

/// Handles one batch, settling deliveries as their outcomes are recorded: first every message
/// the policies decided (and every envelope that was not claimed), then each sender's sends on
/// their own as soon as that sender's Graph calls are done, so a sender waiting on its rate
/// never holds up another sender's messages. `settle` is called once per message id.
/// `Err` only for database failures before anything was settled: the shell requeues the batch.
pub async fn handle_batch<S, F>(
    ctx: &Ctx,
    batch: &[DispatchEnvelope],
    settle: S,
) -> Result<(), sqlx::Error>
where
    S: Fn(Vec<(MessageId, Disposition)>) -> F,
    F: Future<Output = ()>,
{
    let now = ctx.clock.now();
    let resend_cutoff = now
        - chrono::Duration::from_std(ctx.settings.ambiguous_resend_after)
            .unwrap_or(chrono::Duration::MAX);
    let ids: Vec<MessageId> = batch.iter().map(|e| e.message_id).collect();
    let turn = ctx.db_turn().await;
    let (claimed, unclaimed) = store::claim(&ctx.pool, &ids, now, resend_cutoff).await?;

    let mut settled: Vec<(MessageId, Disposition)> = Vec::new();
    for env in batch {
        if claimed.iter().any(|c| c.id == env.message_id)
            || settled.iter().any(|(id, _)| *id == env.message_id)
        {
            continue;
        }
        let d = match unclaimed.iter().find(|u| u.id == env.message_id) {
            // Claimed recently by an attempt whose outcome is unknown (a crash between
            // Meta's answer and our write): wait for the status webhook to settle it.
            Some(u) if u.state == state::DISPATCHING => Disposition::RetryLater {
                tier: ctx.settings.retry_tiers.len() - 1,
            },
            // Already sent, failed, cancelled…: a redelivery; never send twice.
            Some(_) => Disposition::Done,
            None => {
                tracing::warn!(message_id = %env.message_id, "dispatch message names no message; dropping");
                Disposition::Done
            }
        };
        settled.push((env.message_id, d));
    }

    let (decided, sendable) = apply_policies(ctx, &claimed, now).await?;
    let (outcomes, dispositions): (Vec<Outcome>, Vec<(MessageId, Disposition)>) =
        decided.into_iter().unzip();
    store::record(&ctx.pool, &outcomes, now).await?;
    count(&outcomes);
    drop(turn);
    settled.extend(dispositions);
    if !settled.is_empty() {
        settle(settled).await;
    }

    // Each sender's messages go on their own: attempts, record, settle.
    let mut by_sender: HashMap<&str, Vec<&Sendable>> = HashMap::new();
    for s in &sendable {
        by_sender
            .entry(s.claimed.phone_number_id.as_str())
            .or_default()
            .push(s);
    }
    let settle = &settle;
    join_all(by_sender.into_values().map(|group| async move {
        let results = join_all(group.iter().map(|s| crate::attempt::attempt(ctx, s, now))).await;
        let (outcomes, dispositions): (Vec<Outcome>, Vec<(MessageId, Disposition)>) =
            results.into_iter().unzip();
        match record(ctx, &outcomes).await {
            Ok(()) => settle(dispositions).await,
            Err(err) => {
                tracing::error!(error = %err, "could not record outcomes; requeueing them");
                settle(
                    dispositions
                        .into_iter()
                        .map(|(id, _)| (id, Disposition::Requeue))
                        .collect(),
                )
                .await;
            }
        }
    }))
    .await;
    Ok(())
}

/// Records the outcomes of Graph calls through the recorder (with whatever other senders'
/// outcomes are waiting: one transaction for all of them), and counts them. What Meta answered
/// must not be lost to a passing fault: the recorder retries transient errors before the
/// deliveries are requeued (which would leave the messages `dispatching` for the ambiguous
/// wait).
async fn record(ctx: &Ctx, outcomes: &[Outcome]) -> Result<(), String> {
    ctx.recorder.record(outcomes.to_vec()).await?;
    count(outcomes);
    Ok(())
}

fn count(outcomes: &[Outcome]) {
    for o in outcomes {
        metrics::counter!("wafleet_dispatch_outcomes_total", "state" => o.state).increment(1);
        wafleet_core::metrics::message_state(o.state, o.reason.as_deref());
    }
}

pub type Attempted = (Outcome, (MessageId, Disposition));

/// A claimed message that passed the policies.
pub(crate) struct Sendable<'a> {
    pub(crate) claimed: &'a Claimed,
    /// The half-open breakers this send probes: closed again if it succeeds.
    pub(crate) breakers: Vec<(Scope, String)>,
    /// The sender's own rate setting (`None` = the default).
    pub(crate) rate: Option<u32>,
}

pub(crate) fn outcome_of(
    claimed: &Claimed,
    state: &'static str,
    reason: Option<String>,
) -> Outcome {
    Outcome {
        id: claimed.id,
        tenant_id: claimed.tenant_id,
        state,
        reason,
        wamid: None,
        wa_id: None,
        error: None,
        not_before: None,
        detail: None,
        attempted: true,
        dead: false,
    }
}

/// The policy step over the batch, before any Graph call: expiry, the rules (countries,
/// opt-outs, service window, sender health, quiet time), circuit breakers and recipient holds,
/// then the cap for business-initiated messages, reserved for the whole batch at once.
/// Returns the decided outcomes and the messages that may be sent.
async fn apply_policies<'a>(
    ctx: &Ctx,
    claimed: &'a [Claimed],
    now: DateTime<Utc>,
) -> Result<(Vec<Attempted>, Vec<Sendable<'a>>), sqlx::Error> {
    let gates = Gates::load(&ctx.pool, claimed, now).await?;
    let inputs = Inputs::load(&ctx.pool, claimed).await?;
    let recheck = duration(ctx.settings.sender_recheck);
    let probe_wait = duration(ctx.settings.circuit_probe_wait);
    let mut decided = Vec::new();
    // (message, business-initiated, half-open breakers it probes)
    type Passing<'c> = (&'c Claimed, bool, Vec<(Scope, String)>);
    let mut passing: Vec<Passing> = Vec::new();
    for c in claimed {
        let done = (c.id, Disposition::Done);
        if c.not_after.is_some_and(|t| t <= now) {
            decided.push((
                outcome_of(c, state::EXPIRED, Some("not_after_passed".into())),
                done,
            ));
            continue;
        }
        match inputs.decide(c, now, recheck) {
            Decision::Reject { reason, detail } => {
                wafleet_core::metrics::policy_decision(reason, state::REJECTED);
                tracing::info!(message_id = %c.id, reason, "rejected by policy");
                let mut o = outcome_of(c, state::REJECTED, Some(reason.into()));
                o.detail = Some(json!({ "detail": detail }));
                o.attempted = false;
                decided.push((o, done));
                continue;
            }
            Decision::Defer { reason, until } => {
                wafleet_core::metrics::policy_decision(reason, state::DEFERRED);
                let mut o = hold(outcome_of(c, state::DEFERRED, None), reason, until);
                o.attempted = false;
                decided.push((o, done));
                continue;
            }
            Decision::Pass { business_initiated } => {
                match gates.check(&ctx.pool, c, now, probe_wait).await {
                    Ok(Gate::Pass { breakers }) => passing.push((c, business_initiated, breakers)),
                    Ok(Gate::Hold { until, reason }) => {
                        // Not an attempt: Meta was not called, so the retry budget is untouched.
                        let mut o = hold(outcome_of(c, state::DEFERRED, None), reason, until);
                        o.attempted = false;
                        decided.push((o, done));
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "cannot read circuits and holds");
                        let o = outcome_of(c, state::DEFERRED, Some("retry".into()));
                        decided.push(retry_while_sendable(ctx, c, o, None, now));
                    }
                }
            }
        }
    }
    let asks: Vec<SlotAsk> = passing
        .iter()
        .filter(|(_, business_initiated, _)| *business_initiated)
        .map(|(c, ..)| SlotAsk {
            id: c.id,
            tenant_id: c.tenant_id,
            recipient: c.recipient.clone(),
            bulk: c.kind == "bulk",
        })
        .collect();
    let slots = if asks.is_empty() {
        HashMap::new()
    } else {
        cap::reserve(&ctx.pool, &ctx.cap_turns, &asks, now).await?
    };
    let mut sendable = Vec::new();
    for (c, _, breakers) in passing {
        if let Some(SlotDecision::Defer { until }) = slots.get(&c.id) {
            wafleet_core::metrics::policy_decision(reason::MESSAGING_LIMIT, state::DEFERRED);
            let mut o = hold(
                outcome_of(c, state::DEFERRED, None),
                reason::MESSAGING_LIMIT,
                *until,
            );
            o.attempted = false;
            decided.push((o, (c.id, Disposition::Done)));
        } else {
            sendable.push(Sendable {
                claimed: c,
                breakers,
                rate: inputs.sender_rate(c),
            });
        }
    }
    Ok((decided, sendable))
}
