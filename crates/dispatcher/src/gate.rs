//! The policy step of a claimed round (SPEC §4), before any Graph call: expiry, the rules in
//! `policy`, circuit breakers and recipient holds (`circuits`), then the cap (`cap`) for the
//! business-initiated messages, reserved for the whole round at once.

use crate::{
    cap::{self, SlotAsk},
    circuits::{Gate, Gates, Scope},
    dispatch::{Attempted, Ctx, Disposition, Sendable, outcome_of},
    policy::Inputs,
    rate::Ticket,
    retry::{duration, hold, retry_while_sendable},
    store::Claimed,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashMap;
use wafleet_core::{
    domain::{MessageId, state},
    policy::{Decision, cap::SlotDecision, reason},
};

/// The policy step over the batch, before any Graph call: expiry, the rules (countries,
/// opt-outs, service window, sender health, quiet time), circuit breakers and recipient holds,
/// then the cap for business-initiated messages, reserved for the whole batch at once.
/// Returns the decided outcomes and the messages that may be sent.
/// Each sendable message takes its ticket from `tickets` (see `rate::Ticket`).
pub(crate) async fn apply_policies(
    ctx: &Ctx,
    claimed: Vec<Claimed>,
    tickets: &mut HashMap<MessageId, Ticket>,
    now: DateTime<Utc>,
) -> Result<(Vec<Attempted>, Vec<Sendable>), sqlx::Error> {
    let gates = Gates::load(&ctx.pool, &claimed, now).await?;
    let inputs = Inputs::load(&ctx.pool, &claimed).await?;
    let recheck = duration(ctx.settings.sender_recheck);
    let probe_wait = duration(ctx.settings.circuit_probe_wait);
    let mut decided = Vec::new();
    // (message, business-initiated, half-open breakers it probes)
    type Passing = (Claimed, bool, Vec<(Scope, String)>);
    let mut passing: Vec<Passing> = Vec::new();
    for c in claimed {
        let c = &c;
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
                    Ok(Gate::Pass { breakers }) => {
                        passing.push((c.clone(), business_initiated, breakers));
                    }
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
            let c = &c;
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
                rate: inputs.sender_rate(&c),
                ticket: tickets.remove(&c.id),
                claimed: c,
                breakers,
            });
        }
    }
    Ok((decided, sendable))
}
