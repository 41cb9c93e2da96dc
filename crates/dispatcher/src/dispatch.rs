//! The dispatcher's seam: a batch of dispatch envelopes in, a disposition per envelope out (ack,
//! retry later through a tier queue, dead-letter, or requeue). The consume loop in `consumer` is
//! a thin shell around `handle_batch`. After the claim, the policy step (SPEC §4: the rules in
//! `policy`, circuit breakers, the cap in `cap`) decides what is not sent; the rest wait for
//! their pair's and sender's budgets (`rate`) and call Meta, each sender on its own. Each
//! failure's class (see `classify`) picks what the message waits on (`retry`).

use crate::{
    cap::{self, SlotAsk},
    circuits::{self, Gate, Gates, Scope},
    classify::{Class, classify},
    graph_client::{GraphClient, build_body},
    policy::Inputs,
    rate::Rates,
    retry::{await_status, duration, give_up, hold, retry_or_give_up},
    store::{self, Claimed, Outcome},
    tokens::TokenCache,
};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::json;
use std::{collections::HashMap, future::Future, time::Instant};
use wafleet_core::{
    clock::SharedClock,
    config::DispatchSettings,
    contract::DispatchEnvelope,
    domain::{MessageId, mask_phone, state},
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
            Some(u) if u.state == state::DISPATCHING => RetryLater {
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
        let results = join_all(group.iter().map(|s| attempt(ctx, s, now))).await;
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
struct Sendable<'a> {
    claimed: &'a Claimed,
    /// The half-open breakers this send probes: closed again if it succeeds.
    breakers: Vec<(Scope, String)>,
    /// The sender's own rate setting (`None` = the default).
    rate: Option<u32>,
}

fn outcome_of(claimed: &Claimed, state: &'static str, reason: Option<String>) -> Outcome {
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
                        decided.push(retry_or_give_up(ctx, c, o, None, now));
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

use Disposition::RetryLater;

/// One attempt for a claimed message that passed the policies: wait for the pair's and the
/// sender's budgets, call Meta, then act on the answer's class.
#[tracing::instrument(name = "dispatch message", skip_all, fields(
    message_id = %sendable.claimed.id,
    tenant = %sendable.claimed.tenant_id,
    sender = %sendable.claimed.phone_number_id,
    to = %mask_phone(&sendable.claimed.recipient),
    attempt = sendable.claimed.attempts,
))]
async fn attempt(ctx: &Ctx, sendable: &Sendable<'_>, now: DateTime<Utc>) -> Attempted {
    let claimed = sendable.claimed;
    let breakers = &sendable.breakers;
    let outcome = |state: &'static str, reason: Option<String>| outcome_of(claimed, state, reason);
    let done = (claimed.id, Disposition::Done);
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
            let o = outcome(state::DEFERRED, Some("retry".into()));
            return retry_or_give_up(ctx, claimed, o, None, now);
        }
    };
    let waiting = Instant::now();
    if let Err(wait) = ctx
        .rates
        .take_pair(&claimed.phone_number_id, &claimed.recipient)
        .await
    {
        // Too long to wait here: the pair's budget frees later; the shard moves on.
        wafleet_core::metrics::policy_decision(reason::PAIR_RATE, state::DEFERRED);
        let mut o = hold(
            outcome(state::DEFERRED, None),
            reason::PAIR_RATE,
            now + duration(wait),
        );
        o.attempted = false;
        return (o, done);
    }
    ctx.rates
        .wait_sender(&claimed.phone_number_id, sendable.rate)
        .await;
    wafleet_core::metrics::limiter_wait(&claimed.phone_number_id, waiting.elapsed());
    let body = build_body(&claimed.content.0, &claimed.recipient, claimed.id);
    let started = Instant::now();
    let result = ctx
        .graph
        .send(&token, &claimed.phone_number_id, &body)
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let error = match result {
        Ok(success) => {
            metrics::histogram!("wafleet_graph_duration_seconds", "outcome" => "ok")
                .record(elapsed);
            if !breakers.is_empty()
                && let Err(err) = circuits::close(&ctx.pool, claimed.tenant_id, breakers).await
            {
                // The next probe closes it instead.
                tracing::warn!(error = %err, "could not close a circuit after a successful probe");
            }
            let mut o = outcome(state::SENT, None);
            o.detail = Some(json!({
                "attempt": claimed.attempts,
                "wamid": success.wamid,
                "message_status": success.message_status,
            }));
            o.wamid = Some(success.wamid);
            o.wa_id = success.wa_id;
            return (o, done);
        }
        Err(error) => error,
    };
    metrics::histogram!("wafleet_graph_duration_seconds", "outcome" => "error").record(elapsed);
    let class = classify(&error);
    let code = error
        .code
        .map_or_else(|| "transport".to_owned(), |c| c.to_string());
    metrics::counter!("wafleet_graph_errors_total", "class" => class.as_str()).increment(1);
    tracing::warn!(meta.error.code = %code, http_status = ?error.http_status, class = class.as_str(), "Graph call failed");
    // The event trail keeps every attempt: its number, Meta's code, details and fbtrace_id.
    let mut detail = error.to_json();
    detail["attempt"] = json!(claimed.attempts);
    detail["class"] = json!(class.as_str());
    let mut o = outcome(state::DEFERRED, Some("retry".into()));
    o.error = Some(detail.clone());
    o.detail = Some(detail.clone());
    let tiers = &ctx.settings.retry_tiers;
    let longest = tiers.last().copied().unwrap_or_default();
    match class {
        Class::Permanent => {
            o.state = state::FAILED;
            o.reason = Some(format!("meta_{code}"));
            (o, done)
        }
        Class::RetrySender => {
            ctx.rates.note_throttled(&claimed.phone_number_id);
            retry_or_give_up(ctx, claimed, o, None, now)
        }
        Class::Transient => retry_or_give_up(ctx, claimed, o, None, now),
        Class::Ambiguous => await_status(ctx, claimed, o, now),
        Class::RetryRecipient => {
            // Meta's rule for the pair limit: wait 4^n seconds, n = 0, 1, 2…
            let n = u32::try_from(claimed.attempts.max(1) - 1)
                .unwrap_or(0)
                .min(8);
            let wait = std::time::Duration::from_secs(4u64.pow(n));
            retry_or_give_up(ctx, claimed, o, Some(wait), now)
        }
        Class::RetrySlow => match error.retry_after {
            // Longer than any tier: a held row, not a queue TTL.
            Some(wait) if wait > longest && claimed.attempts as usize <= tiers.len() => {
                (hold(o, "retry_after", now + duration(wait)), done)
            }
            wait => retry_or_give_up(ctx, claimed, o, wait, now),
        },
        Class::Limited => {
            if claimed.attempts.max(1) as u32 >= ctx.settings.limited_retries {
                (give_up(o), (claimed.id, Disposition::Dead))
            } else {
                retry_or_give_up(ctx, claimed, o, None, now)
            }
        }
        Class::DeferRecipient => {
            let until = now + duration(ctx.settings.recipient_hold);
            if let Err(err) =
                circuits::hold_recipient(&ctx.pool, claimed.tenant_id, &claimed.recipient, until)
                    .await
            {
                // The message itself is still held; only its siblings may try once more.
                tracing::error!(error = %err, "could not record the recipient hold");
            }
            (hold(o, "recipient_hold", until), done)
        }
        Class::SenderNotRegistered => crate::retry::hold_unregistered(ctx, claimed, o, now).await,
        Class::HaltTemplate | Class::HaltSender | Class::HaltAccount => {
            let scope = match class {
                Class::HaltTemplate => Scope::Template,
                Class::HaltSender => Scope::Sender,
                _ => Scope::Account,
            };
            let key = circuits::keys_of(claimed)
                .into_iter()
                .find(|(s, _)| *s == scope)
                .map(|(_, k)| k)
                .unwrap_or_default();
            let until = now + duration(ctx.settings.circuit_open_for);
            if let Err(err) = circuits::open(
                &ctx.pool,
                claimed.tenant_id,
                scope,
                &key,
                &detail,
                now,
                until,
            )
            .await
            {
                tracing::error!(error = %err, "could not record an opened circuit");
            }
            (hold(o, scope.hold_reason(), until), done)
        }
    }
}
