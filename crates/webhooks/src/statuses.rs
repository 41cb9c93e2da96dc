//! Applying status webhooks to outbound messages, a whole payload at a time:
//! durable dedupe on (wamid, status); messages matched by wamid or by our id echoed in
//! `biz_opaque_callback_data`; states only move forward (rank, then timestamp); statuses for
//! messages we cannot match yet are parked and applied once the send is recorded. Every change
//! writes a `status.<tenant>` notification to the events outbox in the same transaction.
//! Two failures have effects beyond the message: 131049 (Meta limits what this user receives
//! for now) puts the message back to `deferred` for 24 h and holds the recipient; 131050 (the
//! user stopped marketing) records a marketing opt-out. A message Meta did not deliver (failed,
//! or held by 131049) gives its portfolio cap slot back.

use crate::{
    optouts::{self, OptOutChange},
    outbox, parking, usage,
};
use chrono::{DateTime, Duration, Utc};

mod defer;
use defer::defer;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use wafleet_core::{
    contract::StatusEvent,
    domain::{MessageId, RecordRef, RecordType, TenantId, state},
};

/// Meta's "healthy ecosystem engagement" limit: try this recipient again in 24 h.
const ENGAGEMENT_LIMIT: i64 = 131_049;
/// The recipient stopped marketing messages ("Offers and announcements").
const MARKETING_STOPPED: i64 = 131_050;
/// Why a 131049 message waits.
pub const ENGAGEMENT_REASON: &str = "recipient_engagement_limit";

/// One status item from `value.statuses[]`.
#[derive(Debug, Clone)]
pub struct StatusItem {
    pub wamid: String,
    pub status: String,
    pub at: DateTime<Utc>,
    pub callback: Option<String>,
    pub pricing: Option<Value>,
    pub errors: Option<Value>,
    pub raw: Value,
}

impl StatusItem {
    /// Parses one item; `None` for an item that lacks what we need (kept raw by the caller).
    pub fn parse(raw: &Value) -> Option<Self> {
        let wamid = raw.get("id")?.as_str()?.to_owned();
        let status = raw.get("status")?.as_str()?.to_owned();
        let secs: i64 = match raw.get("timestamp")? {
            Value::String(s) => s.parse().ok()?,
            Value::Number(n) => n.as_i64()?,
            _ => return None,
        };
        Some(Self {
            wamid,
            status,
            at: DateTime::from_timestamp(secs, 0)?,
            callback: raw
                .get("biz_opaque_callback_data")
                .and_then(Value::as_str)
                .map(str::to_owned),
            pricing: raw.get("pricing").cloned(),
            errors: raw.get("errors").cloned(),
            raw: raw.clone(),
        })
    }

    fn rank(&self) -> i32 {
        state::status_rank(&self.status).unwrap_or(0)
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Current {
    id: MessageId,
    wamid: Option<String>,
    state: String,
    status_at: Option<DateTime<Utc>>,
    recipient: Option<String>,
    record_type: Option<String>,
    record_id: Option<String>,
    trace_context: Option<String>,
    /// Whether Meta's pricing was recorded before (the usage rollup counts a message once).
    priced: bool,
    phone_number_id: Option<String>,
    user_id: Option<String>,
    campaign_id: Option<uuid::Uuid>,
}

/// What a status does to a message in `current` state: the new state, if it moves.
/// `sent` < `delivered` < `read` < `played`; `failed` wins over anything before `delivered`
/// (a failure after `sent` is real) and is never overwritten by a late lower status.
pub fn next_state(current: &str, status: &str) -> Option<&'static str> {
    let current_rank = state::status_rank(current).unwrap_or(0);
    match status {
        state::FAILED => (current != state::FAILED && current_rank < 2).then_some(state::FAILED),
        _ if current == state::FAILED => None,
        s => {
            let rank = state::status_rank(s)?;
            let next = match rank {
                1 => state::SENT,
                2 => state::DELIVERED,
                3 => state::READ,
                _ => state::PLAYED,
            };
            (rank > current_rank).then_some(next)
        }
    }
}

/// Applies statuses for one tenant inside `tx`. With `dedupe`, items already received are
/// skipped. Writes the notifications to the outbox; returns how many statuses took effect.
pub async fn apply(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: Vec<StatusItem>,
    dedupe: bool,
) -> Result<usize, sqlx::Error> {
    let mut items = items;
    // Receipts are inserted in a fixed order, so two batches in flight that share items (Meta's
    // duplicates) wait on each other's keys in the same order, never crosswise.
    items.sort_by(|a, b| (&a.wamid, &a.status).cmp(&(&b.wamid, &b.status)));
    if dedupe {
        items = parking::fresh_only(tx, tenant, items).await?;
    }
    if items.is_empty() {
        return Ok(0);
    }
    items.sort_by_key(|i| (i.at, i.rank()));

    let wamids: Vec<&str> = items.iter().map(|i| i.wamid.as_str()).collect();
    let callbacks: Vec<uuid::Uuid> = items
        .iter()
        .filter_map(|i| i.callback.as_deref()?.parse().ok())
        .collect();
    // Two lookups, each on one index whatever the table's statistics say (an OR of the two
    // would let an unanalysed table be scanned): the wamids to ids on (tenant_id, wamid), then
    // every row by primary key, locked in id order as the dispatcher locks them, so the two
    // never deadlock over shared messages.
    let mut ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM messages WHERE tenant_id = $1 AND wamid = ANY($2)")
            .bind(tenant)
            .bind(&wamids)
            .fetch_all(&mut *tx)
            .await?;
    ids.extend(callbacks);
    ids.sort();
    ids.dedup();
    let rows: Vec<Current> = sqlx::query_as(
        "SELECT id, wamid, state, status_at, recipient, record_type, record_id, trace_context,
                pricing IS NOT NULL AS priced, phone_number_id, user_id, campaign_id
         FROM messages
         -- Driven by the primary key: the tenant and direction checks are written as filters
         -- (`IS TRUE`), so that an unanalysed table's tenant indexes never look cheaper.
         WHERE id = ANY($2) AND (tenant_id = $1) IS TRUE AND (direction = 'out') IS TRUE
         ORDER BY id
         FOR UPDATE",
    )
    .bind(tenant)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    // Links from this span to the traces of the sends reported on.
    crate::observe::link_sends(rows.iter().filter_map(|r| r.trace_context.as_deref()));
    let mut by_id: HashMap<MessageId, Current> = rows.into_iter().map(|r| (r.id, r)).collect();

    let mut touched: HashSet<MessageId> = HashSet::new();
    let mut pricing: HashMap<MessageId, Value> = HashMap::new();
    // Messages priced for the first time, with the status time: the usage rollup.
    let mut first_priced: Vec<(MessageId, DateTime<Utc>)> = Vec::new();
    let mut errors: HashMap<MessageId, Value> = HashMap::new();
    let mut reasons: HashMap<MessageId, String> = HashMap::new();
    // 131049: (message, not before) and (recipient, held until).
    let mut deferrals: Vec<(MessageId, DateTime<Utc>)> = Vec::new();
    let mut holds: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut optouts: Vec<OptOutChange> = Vec::new();
    // Messages Meta did not deliver: their cap slots go back.
    let mut undelivered: Vec<uuid::Uuid> = Vec::new();
    let mut events = Vec::new();
    let mut notes = Vec::new();
    let mut parked = Vec::new();
    for item in items {
        let id = by_id
            .values()
            .find(|m| m.wamid.as_deref() == Some(&item.wamid))
            .map(|m| m.id)
            .or_else(|| {
                let cb: MessageId = item.callback.as_deref()?.parse().ok()?;
                by_id.contains_key(&cb).then_some(cb)
            });
        let Some(id) = id else {
            parked.push(item);
            continue;
        };
        let msg = by_id.get_mut(&id).expect("matched above");
        if msg.wamid.is_none() {
            msg.wamid = Some(item.wamid.clone());
            touched.insert(id);
        }
        if let Some(p) = &item.pricing {
            if !msg.priced {
                msg.priced = true;
                first_priced.push((id, item.at));
            }
            pricing.insert(id, p.clone());
            touched.insert(id);
        }
        let code = first_error_code(&item.errors);
        let mut moved = next_state(&msg.state, &item.status);
        // Not a final failure: the message waits 24 h and is then sent again (new wamid).
        let engagement_hold = moved == Some(state::FAILED) && code == Some(ENGAGEMENT_LIMIT);
        if engagement_hold {
            moved = Some(state::DEFERRED);
            let until = item.at + Duration::hours(24);
            deferrals.push((id, until));
            if let Some(r) = &msg.recipient {
                let held = holds.entry(r.clone()).or_insert(until);
                *held = (*held).max(until);
            }
        }
        if item.status == state::FAILED
            && code == Some(MARKETING_STOPPED)
            && let Some(r) = &msg.recipient
        {
            optouts.push(OptOutChange {
                recipient: r.clone(),
                scope: optouts::SCOPE_MARKETING,
                opt_out: true,
                source: "meta_131050",
                at: item.at,
            });
        }
        if moved == Some(state::FAILED) || engagement_hold {
            undelivered.push(id.0);
        }
        if let Some(new_state) = moved {
            msg.state = new_state.to_owned();
            msg.status_at = Some(item.at);
            touched.insert(id);
        } else if item.status == msg.state && msg.status_at.is_none_or(|t| t < item.at) {
            msg.status_at = Some(item.at);
            touched.insert(id);
        }
        if item.status == state::FAILED {
            errors.insert(id, item.errors.clone().unwrap_or(Value::Null));
            touched.insert(id);
        }
        if moved.is_some() || item.status == state::FAILED {
            let (status, reason) = if engagement_hold {
                (
                    state::DEFERRED.to_owned(),
                    Some(ENGAGEMENT_REASON.to_owned()),
                )
            } else {
                (item.status.clone(), code.map(|c| format!("meta_{c}")))
            };
            if moved.is_some()
                && let Some(r) = &reason
            {
                reasons.insert(id, r.clone());
            }
            events.push((
                id,
                status.clone(),
                reason.clone(),
                item.at,
                item.raw.clone(),
            ));
            // A failure that no longer changes the message (a late `failed` after `read`) stays
            // in its trail, but upstream is told only of what the message became.
            if moved.is_none() {
                continue;
            }
            notes.push(StatusEvent {
                tenant_id: tenant,
                message_id: id,
                wamid: Some(item.wamid.clone()),
                status,
                record: record_of(msg),
                at: item.at,
                error: item.errors.clone(),
                reason,
            });
        }
    }

    let updates: Vec<&Current> = touched.iter().filter_map(|id| by_id.get(id)).collect();
    if !updates.is_empty() {
        let ids: Vec<uuid::Uuid> = updates.iter().map(|m| m.id.0).collect();
        let states: Vec<&str> = updates.iter().map(|m| m.state.as_str()).collect();
        let status_at: Vec<Option<DateTime<Utc>>> = updates.iter().map(|m| m.status_at).collect();
        let wamids: Vec<Option<&str>> = updates.iter().map(|m| m.wamid.as_deref()).collect();
        let prices: Vec<Option<Value>> = updates
            .iter()
            .map(|m| pricing.get(&m.id).cloned())
            .collect();
        let errs: Vec<Option<Value>> = updates.iter().map(|m| errors.get(&m.id).cloned()).collect();
        let reasons: Vec<Option<String>> = updates
            .iter()
            .map(|m| reasons.get(&m.id).cloned())
            .collect();
        sqlx::query(
            "UPDATE messages m SET state = u.state, status_at = u.status_at,
                 wamid = COALESCE(m.wamid, u.wamid), pricing = COALESCE(u.pricing, m.pricing),
                 error = COALESCE(u.error, m.error),
                 -- A message Meta accepted has no reason left to wait (a stale `retry`).
                 reason = CASE WHEN u.state IN ('sent', 'delivered', 'read', 'played') THEN NULL
                               ELSE COALESCE(u.reason, m.reason) END,
                 updated_at = now()
             FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[])
                  AS u(id, state, status_at, wamid, pricing, error, reason)
             WHERE m.tenant_id = $1 AND m.id = u.id",
        )
        .bind(tenant)
        .bind(&ids)
        .bind(&states)
        .bind(&status_at)
        .bind(&wamids)
        .bind(&prices)
        .bind(&errs)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
    }
    if !events.is_empty() {
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.0.0).collect();
        let states: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
        let reasons: Vec<Option<&str>> = events.iter().map(|e| e.2.as_deref()).collect();
        let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.3).collect();
        let details: Vec<Value> = events.iter().map(|e| e.4.clone()).collect();
        sqlx::query(
            // The raw status names the recipient: a message erased since (its number gone,
            // `erased_at` set) keeps the state and time but not the detail. The join is by
            // primary key on rows this transaction just read.
            "INSERT INTO message_events (message_id, tenant_id, state, reason, at, detail)
             SELECT e.id, $1, e.state, e.reason, e.at,
                    CASE WHEN m.erased_at IS NULL THEN e.detail END
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
                  AS e(id, state, reason, at, detail)
             JOIN messages m ON m.id = e.id AND m.tenant_id = $1",
        )
        .bind(tenant)
        .bind(&ids)
        .bind(&states)
        .bind(&reasons)
        .bind(&ats)
        .bind(&details)
        .execute(&mut *tx)
        .await?;
    }
    if !deferrals.is_empty() {
        defer(tx, tenant, &deferrals, &holds).await?;
    }
    if !undelivered.is_empty() {
        let tenants = vec![tenant.0; undelivered.len()];
        wafleet_core::policy::cap::release(tx, &tenants, &undelivered).await?;
    }
    if !parked.is_empty() {
        parking::park(tx, tenant, &parked).await?;
    }
    optouts::record(tx, tenant, &optouts).await?;
    let priced: Vec<usage::Priced> = first_priced
        .iter()
        .filter_map(|(id, at)| {
            let m = by_id.get(id)?;
            Some(usage::Priced {
                phone_number_id: m.phone_number_id.as_deref(),
                user_id: m.user_id.as_deref(),
                campaign_id: m.campaign_id,
                recipient: m.recipient.as_deref(),
                pricing: pricing.get(id)?,
                at: *at,
            })
        })
        .collect();
    usage::record(tx, tenant, &priced).await?;
    outbox::enqueue(tx, "status", tenant, &notes).await?;
    for note in notes.iter().filter(|n| n.status != state::SENT) {
        // `sent` is counted by the dispatcher when Meta accepts the send.
        wafleet_core::metrics::message_state(&note.status, None);
    }
    metrics::counter!("wafleet_webhook_statuses_applied_total").increment(notes.len() as u64);
    Ok(notes.len())
}

fn first_error_code(errors: &Option<Value>) -> Option<i64> {
    errors.as_ref()?.as_array()?.first()?.get("code")?.as_i64()
}

fn record_of(m: &Current) -> Option<RecordRef> {
    Some(RecordRef {
        kind: RecordType::parse(m.record_type.as_deref()?)?,
        id: m.record_id.clone()?,
    })
}

#[cfg(test)]
mod tests {
    use super::next_state;

    #[test]
    fn statuses_only_move_forward() {
        assert_eq!(next_state("dispatching", "sent"), Some("sent"));
        assert_eq!(next_state("sent", "read"), Some("read"));
        assert_eq!(next_state("read", "sent"), None);
        assert_eq!(next_state("delivered", "delivered"), None);
        assert_eq!(next_state("read", "played"), Some("played"));
    }

    #[test]
    fn a_failure_after_sent_is_recorded_but_never_undoes_delivery() {
        assert_eq!(next_state("sent", "failed"), Some("failed"));
        assert_eq!(next_state("dispatching", "failed"), Some("failed"));
        assert_eq!(next_state("delivered", "failed"), None);
        assert_eq!(next_state("failed", "sent"), None);
    }
}
