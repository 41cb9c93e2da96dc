//! The dispatcher's seam: a batch of dispatch envelopes in, a disposition per envelope out (ack,
//! retry later through a tier queue, dead-letter, or requeue). The consume loop in `consumer` is
//! a thin shell around `handle_batch`.
//!
//! A batch is claimed in rounds, each sender's messages no further ahead of its budget than
//! `claim_ahead` (`rate::Rates::claim_room`). After each round's claim, the policy step (`gate`)
//! decides what is not sent; the rest wait for their pair's and sender's budgets (`rate`) and call
//! Meta, each sender on its own (`attempt`), while the next round is claimed.

use crate::{
    cap,
    circuits::Scope,
    graph_client::GraphClient,
    rate::{Rates, Ticket},
    store::{self, Claimed, Outcome},
    tokens::TokenCache,
};
use chrono::{DateTime, Utc};
use futures_util::{
    StreamExt,
    future::join_all,
    stream::{FusedStream, FuturesUnordered},
};
use std::{collections::HashMap, future::Future, time::Duration};
use wafleet_core::{
    clock::SharedClock,
    config::DispatchSettings,
    contract::DispatchEnvelope,
    domain::{MessageId, state},
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

/// Handles one batch, settling deliveries as their outcomes are recorded: in each round, first
/// every message the policies decided (and every envelope that was not claimed), then each
/// sender's sends on their own as soon as that sender's Graph calls are done, so a sender waiting
/// on its rate never holds up another sender's messages. `settle` is called once per message id.
/// `Err` for a database failure of a round's claim or policy step: that round's envelopes and the
/// rest of the batch are left unsettled (the shell requeues them) once the rounds already claimed
/// are done.
pub async fn handle_batch<S, F>(
    ctx: &Ctx,
    batch: &[DispatchEnvelope],
    settle: S,
) -> Result<(), sqlx::Error>
where
    S: Fn(Vec<(MessageId, Disposition)>) -> F,
    F: Future<Output = ()>,
{
    let settle = &settle;
    let mut waiting: Vec<&DispatchEnvelope> = batch.iter().collect();
    let mut sending = FuturesUnordered::new();
    let mut result = Ok(());
    while !waiting.is_empty() {
        let (ids, mut tickets) = pick(ctx, &mut waiting);
        if ids.is_empty() {
            // Every sender left in the batch is a full `claim_ahead` ahead: wait for room.
            drive(&mut sending, ctx.rates.freed(ROOM_RECHECK)).await;
            continue;
        }
        let now = ctx.clock.now();
        match drive(
            &mut sending,
            claim_round(ctx, &ids, &mut tickets, now, settle),
        )
        .await
        {
            Ok(groups) => sending.extend(
                groups
                    .into_iter()
                    .map(|group| send_group(ctx, group, now, settle)),
            ),
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    while sending.next().await.is_some() {}
    result
}

/// How long a batch whose senders have no claim room waits before it looks again, if no ticket
/// was dropped meanwhile (a ticket dropped wakes it at once).
const ROOM_RECHECK: Duration = Duration::from_millis(50);

/// The envelopes to claim in this round, taken out of `waiting` (in order): every one without a
/// sender, and each sender's within its claim room, with a ticket each.
fn pick(
    ctx: &Ctx,
    waiting: &mut Vec<&DispatchEnvelope>,
) -> (Vec<MessageId>, HashMap<MessageId, Ticket>) {
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for env in waiting.iter().copied() {
        if let Some(sender) = env.phone_number_id.as_deref() {
            *wanted.entry(sender).or_default() += 1;
        }
    }
    let mut room: HashMap<String, usize> = wanted
        .into_iter()
        .map(|(sender, n)| (sender.to_owned(), ctx.rates.claim_room(sender, n)))
        .collect();
    let mut ids = Vec::new();
    let mut tickets = HashMap::new();
    waiting.retain(|env| {
        let Some(sender) = env.phone_number_id.as_deref() else {
            ids.push(env.message_id);
            return false;
        };
        match room.get_mut(sender) {
            Some(left) if *left > 0 => {
                *left -= 1;
                ids.push(env.message_id);
                tickets.insert(env.message_id, ctx.rates.ticket(sender));
                false
            }
            _ => true,
        }
    });
    (ids, tickets)
}

/// Runs `step` to completion while the sends already under way go on.
async fn drive<T, G>(sending: &mut FuturesUnordered<G>, step: impl Future<Output = T>) -> T
where
    G: Future<Output = ()>,
{
    let mut step = std::pin::pin!(step);
    loop {
        tokio::select! {
            biased;
            out = &mut step => return out,
            _ = sending.next(), if !sending.is_terminated() && !sending.is_empty() => {}
        }
    }
}

/// One round: claims `ids`, settles what is not sent (unclaimed envelopes and the policies'
/// decisions, recorded first), and returns the rest grouped by sender.
async fn claim_round<S, F>(
    ctx: &Ctx,
    ids: &[MessageId],
    tickets: &mut HashMap<MessageId, Ticket>,
    now: DateTime<Utc>,
    settle: &S,
) -> Result<Vec<Vec<Sendable>>, sqlx::Error>
where
    S: Fn(Vec<(MessageId, Disposition)>) -> F,
    F: Future<Output = ()>,
{
    let resend_cutoff = now
        - chrono::Duration::from_std(ctx.settings.ambiguous_resend_after)
            .unwrap_or(chrono::Duration::MAX);
    let turn = ctx.db_turn().await;
    let (claimed, unclaimed) = store::claim(&ctx.pool, ids, now, resend_cutoff).await?;

    let mut settled: Vec<(MessageId, Disposition)> = Vec::new();
    for id in ids {
        if claimed.iter().any(|c| c.id == *id) || settled.iter().any(|(s, _)| s == id) {
            continue;
        }
        let d = match unclaimed.iter().find(|u| u.id == *id) {
            // Claimed recently by an attempt whose outcome is unknown (a crash between
            // Meta's answer and our write): wait for the status webhook to settle it.
            Some(u) if u.state == state::DISPATCHING => Disposition::RetryLater {
                tier: ctx.settings.retry_tiers.len() - 1,
            },
            // Already sent, failed, cancelled…: a redelivery; never send twice.
            Some(_) => Disposition::Done,
            None => {
                tracing::warn!(message_id = %id, "dispatch message names no message; dropping");
                Disposition::Done
            }
        };
        settled.push((*id, d));
    }

    let (decided, sendable) = crate::gate::apply_policies(ctx, claimed, tickets, now).await?;
    let (outcomes, dispositions): (Vec<Outcome>, Vec<(MessageId, Disposition)>) =
        decided.into_iter().unzip();
    store::record(&ctx.pool, &outcomes, now).await?;
    count(&outcomes);
    drop(turn);
    settled.extend(dispositions);
    if !settled.is_empty() {
        settle(settled).await;
    }

    let mut by_sender: HashMap<String, Vec<Sendable>> = HashMap::new();
    for s in sendable {
        by_sender
            .entry(s.claimed.phone_number_id.clone())
            .or_default()
            .push(s);
    }
    Ok(by_sender.into_values().collect())
}

/// One sender's messages of a round: their attempts, then one record and one settle.
async fn send_group<S, F>(ctx: &Ctx, group: Vec<Sendable>, now: DateTime<Utc>, settle: &S)
where
    S: Fn(Vec<(MessageId, Disposition)>) -> F,
    F: Future<Output = ()>,
{
    let results = join_all(
        group
            .into_iter()
            .map(|s| crate::attempt::attempt(ctx, s, now)),
    )
    .await;
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
pub(crate) struct Sendable {
    pub(crate) claimed: Claimed,
    /// The half-open breakers this send probes: closed again if it succeeds.
    pub(crate) breakers: Vec<(Scope, String)>,
    /// The sender's own rate setting (`None` = the default).
    pub(crate) rate: Option<u32>,
    /// Counts against the sender's claim room until its budget wait is over (`None` for an
    /// envelope that named no sender).
    pub(crate) ticket: Option<Ticket>,
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
