//! The dispatcher's database work, in batches: claim a batch of messages before calling Meta,
//! then record every outcome (state, wamid, error, event) in one statement each.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use wafleet_core::{
    contract::Content,
    domain::{MessageId, TenantId},
};

/// A message this dispatcher now owns (`dispatching`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub phone_number_id: String,
    pub recipient: String,
    pub content: sqlx::types::Json<Content>,
    pub not_after: Option<DateTime<Utc>>,
    pub attempts: i32,
    /// `single` or `bulk` (quiet time and the cap's bulk share apply to bulk).
    pub kind: String,
}

/// A message we could not claim, and why.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Unclaimed {
    pub id: MessageId,
    pub state: String,
}

/// Claims every message of the batch that is waiting to be sent, plus any left `dispatching` by
/// a crash longer ago than `resend_cutoff` (no status webhook named it meanwhile, so Meta most
/// likely never accepted it). Returns the claimed rows and the current state of the others.
///
/// One statement, so one round trip and its own transaction: lock the rows in id order (see
/// [`lock_in_order`]), claim the eligible ones, and write their `dispatching` events. The lock
/// returns each row as it is now (a status that committed meanwhile included), so the
/// eligibility test and the state reported for the others are current, not the statement's
/// snapshot.
pub async fn claim(
    pool: &PgPool,
    ids: &[MessageId],
    now: DateTime<Utc>,
    resend_cutoff: DateTime<Utc>,
) -> Result<(Vec<Claimed>, Vec<Unclaimed>), sqlx::Error> {
    let raw: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "WITH locked AS (
             SELECT id, state, reason, not_before, wamid, claimed_at, direction FROM messages
             WHERE id = ANY($1) ORDER BY id FOR UPDATE
         ), claimed AS (
             UPDATE messages m SET state = 'dispatching', reason = NULL, claimed_at = $2,
                 attempts = m.attempts + 1, updated_at = $2
             FROM locked l
             -- A row without a number to send from or to could never be sent: never claimed.
             WHERE m.id = l.id AND l.direction = 'out'
               AND m.phone_number_id IS NOT NULL AND m.recipient IS NOT NULL
               -- A held row (deferred for anything but `retry`) belongs to the releaser until
               -- it is due: a stray envelope must not send it early (a recipient hold, a circuit).
               AND (l.state IN ('accepted', 'queued')
                    OR (l.state = 'deferred' AND (l.reason = 'retry' OR l.not_before <= $2))
                    OR (l.state = 'dispatching' AND l.wamid IS NULL AND l.claimed_at < $3))
             RETURNING m.id, m.tenant_id, m.phone_number_id, m.recipient, m.content, m.not_after,
                       m.attempts, m.kind
         ), events AS (
             INSERT INTO message_events (message_id, tenant_id, state, detail, at)
             SELECT id, tenant_id, 'dispatching', jsonb_build_object('attempt', attempts), $2
             FROM claimed
         )
         SELECT l.id, l.state, c.tenant_id, c.phone_number_id, c.recipient, c.content,
                c.not_after, c.attempts, c.kind
         FROM locked l LEFT JOIN claimed c ON c.id = l.id",
    )
    .bind(&raw)
    .bind(now)
    .bind(resend_cutoff)
    .fetch_all(pool)
    .await?;
    let mut claimed = Vec::new();
    let mut others = Vec::new();
    for r in rows {
        match r.split() {
            Ok(c) => claimed.push(c),
            Err(u) => others.push(u),
        }
    }
    Ok((claimed, others))
}

/// A row of the claim: every locked message, with the claimed columns when it was claimed.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: MessageId,
    state: String,
    tenant_id: Option<TenantId>,
    phone_number_id: Option<String>,
    recipient: Option<String>,
    content: Option<sqlx::types::Json<Content>>,
    not_after: Option<DateTime<Utc>>,
    attempts: Option<i32>,
    kind: Option<String>,
}

impl ClaimRow {
    /// The claimed message, or the state of one that was not claimed.
    fn split(self) -> Result<Claimed, Unclaimed> {
        match (
            self.tenant_id,
            self.phone_number_id,
            self.recipient,
            self.content,
            self.attempts,
            self.kind,
        ) {
            (
                Some(tenant_id),
                Some(phone_number_id),
                Some(recipient),
                Some(content),
                Some(attempts),
                Some(kind),
            ) => Ok(Claimed {
                id: self.id,
                tenant_id,
                phone_number_id,
                recipient,
                content,
                not_after: self.not_after,
                attempts,
                kind,
            }),
            _ => Err(Unclaimed {
                id: self.id,
                state: self.state,
            }),
        }
    }
}

/// Locks the message rows in id order before they are written. The webhook consumer locks the
/// rows it applies statuses to in the same order, so the two never deadlock over a batch that
/// shares messages (an UPDATE … FROM unnest locks in whatever order its plan reads).
async fn lock_in_order(tx: &mut sqlx::PgConnection, ids: &[uuid::Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Where a claimed message ends up after this attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub state: &'static str,
    pub reason: Option<String>,
    pub wamid: Option<String>,
    pub wa_id: Option<String>,
    pub error: Option<Value>,
    pub not_before: Option<DateTime<Utc>>,
    pub detail: Option<Value>,
    /// Whether Meta was called; a message held by a gate does not spend its retry budget.
    pub attempted: bool,
    /// Given up and sent to `<p>.dead`: listed and redriven as a dead letter.
    pub dead: bool,
}

/// Records outcomes: one UPDATE and one event INSERT for the whole batch. The state moves only
/// if the row is still `dispatching`, so a status webhook that got there first (matched by our
/// callback id) is never overwritten; the wamid is always kept.
pub async fn record(
    pool: &PgPool,
    outcomes: &[Outcome],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = outcomes.iter().map(|o| o.id.0).collect();
    let tenants: Vec<uuid::Uuid> = outcomes.iter().map(|o| o.tenant_id.0).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state).collect();
    let reasons: Vec<Option<String>> = outcomes.iter().map(|o| o.reason.clone()).collect();
    let wamids: Vec<Option<String>> = outcomes.iter().map(|o| o.wamid.clone()).collect();
    let wa_ids: Vec<Option<String>> = outcomes.iter().map(|o| o.wa_id.clone()).collect();
    let errors: Vec<Option<Value>> = outcomes.iter().map(|o| o.error.clone()).collect();
    let not_before: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.not_before).collect();
    let attempted: Vec<bool> = outcomes.iter().map(|o| o.attempted).collect();
    let dead: Vec<bool> = outcomes.iter().map(|o| o.dead).collect();
    let mut tx = pool.begin().await?;
    lock_in_order(&mut tx, &ids).await?;
    let owned: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "UPDATE messages m SET
             state = CASE WHEN m.state = 'dispatching' THEN u.state ELSE m.state END,
             reason = CASE WHEN m.state = 'dispatching' THEN u.reason ELSE m.reason END,
             wamid = COALESCE(m.wamid, u.wamid),
             wa_id = COALESCE(u.wa_id, m.wa_id),
             error = COALESCE(u.error, m.error),
             not_before = u.not_before,
             attempts = CASE WHEN u.attempted THEN m.attempts ELSE GREATEST(m.attempts - 1, 0) END,
             dead_lettered_at = CASE WHEN u.dead AND m.state = 'dispatching' THEN $9 ELSE m.dead_lettered_at END,
             status_at = CASE WHEN u.state = 'sent' THEN COALESCE(m.status_at, $9) ELSE m.status_at END,
             updated_at = $9
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[],
                     $10::bool[], $11::bool[])
              AS u(id, tenant_id, state, reason, wamid, wa_id, error, not_before, attempted, dead)
         WHERE m.id = u.id AND m.tenant_id = u.tenant_id
           -- A status webhook may have settled the row first (matched by our callback id: sent,
           -- delivered, or 131049's 24 h hold with the wamid cleared). Its word stands; this
           -- attempt's outcome is then neither written nor announced a second time.
           AND m.state = 'dispatching'
         RETURNING m.id",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&states)
    .bind(&reasons)
    .bind(&wamids)
    .bind(&wa_ids)
    .bind(&errors)
    .bind(&not_before)
    .bind(now)
    .bind(&attempted)
    .bind(&dead)
    .fetch_all(&mut *tx)
    .await?;
    let owned: std::collections::HashSet<uuid::Uuid> = owned.into_iter().map(|(id,)| id).collect();
    let outcomes: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| owned.contains(&o.id.0))
        .collect();
    let ids: Vec<uuid::Uuid> = outcomes.iter().map(|o| o.id.0).collect();
    let tenants: Vec<uuid::Uuid> = outcomes.iter().map(|o| o.tenant_id.0).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state).collect();
    let events: Vec<Event> = outcomes
        .iter()
        .map(|o| Event {
            id: o.id,
            tenant_id: o.tenant_id,
            state: o.state,
            reason: o.reason.as_deref(),
            detail: o.detail.clone(),
        })
        .collect();
    insert_events(&mut tx, &events, now).await?;
    notify_upstream(&mut tx, &ids, &tenants, &states, now).await?;
    // A message that ends failed or expired was never delivered: its cap slot goes back.
    let (ended_tenants, ended): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = outcomes
        .iter()
        .filter(|o| o.state == "failed" || o.state == "expired")
        .map(|o| (o.tenant_id.0, o.id.0))
        .unzip();
    wafleet_core::policy::cap::release(&mut tx, &ended_tenants, &ended).await?;
    tx.commit().await
}

/// Writes `status.<tenant>` notifications for the outcomes upstream must see (sent, failed by
/// Meta's answer, expired, rejected by a policy) to the events outbox, in the record's transaction; the webhooks
/// service publishes them. Only rows that really took the state are included (a status webhook
/// that got there first keeps its own).
async fn notify_upstream(
    tx: &mut sqlx::PgConnection,
    ids: &[uuid::Uuid],
    tenants: &[uuid::Uuid],
    states: &[&str],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbound_events (tenant_id, routing_key, body)
         SELECT m.tenant_id, 'status.' || m.tenant_id::text, jsonb_build_object(
                    'tenant_id', m.tenant_id, 'message_id', m.id, 'wamid', m.wamid,
                    'status', m.state, 'reason', m.reason,
                    'record', CASE WHEN m.record_type IS NULL THEN NULL
                                   ELSE jsonb_build_object('type', m.record_type, 'id', m.record_id) END,
                    'at', $4::timestamptz, 'error', m.error)
         FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS u(id, tenant_id, state, n)
         JOIN messages m ON m.id = u.id AND m.tenant_id = u.tenant_id AND m.state = u.state
         WHERE u.state IN ('sent', 'failed', 'expired', 'rejected')
         ORDER BY u.n",
    )
    .bind(ids)
    .bind(tenants)
    .bind(states)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

struct Event<'a> {
    id: MessageId,
    tenant_id: TenantId,
    state: &'a str,
    reason: Option<&'a str>,
    detail: Option<Value>,
}

async fn insert_events(
    tx: &mut sqlx::PgConnection,
    events: &[Event<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id.0).collect();
    let tenants: Vec<uuid::Uuid> = events.iter().map(|e| e.tenant_id.0).collect();
    let states: Vec<&str> = events.iter().map(|e| e.state).collect();
    let reasons: Vec<Option<&str>> = events.iter().map(|e| e.reason).collect();
    let details: Vec<Option<Value>> = events.iter().map(|e| e.detail.clone()).collect();
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, state, reason, detail, at)
         SELECT id, tenant_id, state, reason, detail, $6
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[])
              AS e(id, tenant_id, state, reason, detail)",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&states)
    .bind(&reasons)
    .bind(&details)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
