//! One attempt for a claimed message that passed the policies: wait for the pair's and the
//! sender's budgets, call Meta, then act on the answer's class (see `classify`): sent, failed,
//! or held for what it waits on (`retry`), with circuits opened or closed on the way.

use crate::{
    circuits::{self, Scope},
    classify::{Class, classify},
    dispatch::{Attempted, Ctx, Disposition, Sendable, outcome_of},
    graph_body::build_body,
    retry::{await_status, duration, give_up, hold, retry_or_give_up, retry_while_sendable},
};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Instant;
use wafleet_core::{
    config::Secret,
    domain::{mask_phone, state},
    policy::reason,
};

/// One attempt for a claimed message that passed the policies: wait for the pair's and the
/// sender's budgets, call Meta, then act on the answer's class.
#[tracing::instrument(name = "dispatch message", skip_all, fields(
    message_id = %sendable.claimed.id,
    tenant = %sendable.claimed.tenant_id,
    sender = %sendable.claimed.phone_number_id,
    to = %mask_phone(&sendable.claimed.recipient),
    attempt = sendable.claimed.attempts,
))]
pub(crate) async fn attempt(ctx: &Ctx, mut sendable: Sendable, now: DateTime<Utc>) -> Attempted {
    let claimed = &sendable.claimed;
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
            return retry_while_sendable(ctx, claimed, o, None, now);
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
    // Through the budget: the sender's claim room is free for the next message.
    drop(sendable.ticket.take());
    call(ctx, &sendable, &token, now).await
}

/// Calls Meta for a message whose budgets are taken, then acts on the answer's class.
async fn call(ctx: &Ctx, sendable: &Sendable, token: &Secret, now: DateTime<Utc>) -> Attempted {
    let claimed = &sendable.claimed;
    let breakers = &sendable.breakers;
    let outcome = |state: &'static str, reason: Option<String>| outcome_of(claimed, state, reason);
    let done = (claimed.id, Disposition::Done);
    let body = build_body(&claimed.content.0, &claimed.recipient, claimed.id);
    let started = Instant::now();
    let result = ctx.graph.send(token, &claimed.phone_number_id, &body).await;
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
            retry_while_sendable(ctx, claimed, o, None, now)
        }
        Class::Transient => retry_while_sendable(ctx, claimed, o, None, now),
        Class::Ambiguous => await_status(ctx, claimed, o, now),
        Class::RetryRecipient => {
            // Meta's rule for the pair limit: wait 4^n seconds, n = 0, 1, 2…
            let n = u32::try_from(claimed.attempts.max(1) - 1)
                .unwrap_or(0)
                .min(8);
            let wait = std::time::Duration::from_secs(4u64.pow(n));
            retry_while_sendable(ctx, claimed, o, Some(wait), now)
        }
        Class::RetrySlow => match error.retry_after {
            // Longer than any tier: a held row, not a queue TTL.
            Some(wait)
                if wait > longest
                    && now < claimed.created_at + duration(ctx.settings.retry_for) =>
            {
                (hold(o, "retry_after", now + duration(wait)), done)
            }
            wait => retry_while_sendable(ctx, claimed, o, wait, now),
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
