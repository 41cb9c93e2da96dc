//! The dispatcher's database work, in batches: claim a batch of messages before calling Meta,
//! then record every outcome (state, wamid, error, event, notification), one statement each.
//!
//! Both lock the message rows in id order before writing them (`SELECT … ORDER BY id FOR
//! UPDATE` in the statement's first step). The webhook consumer locks the rows it applies
//! statuses to in the same order, so none of them deadlock over a batch that shares messages
//! (an `UPDATE … FROM unnest` alone locks in whatever order its plan reads).

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
    /// When it was accepted: retries of failures that could still pass stop `retry_for` later.
    pub created_at: DateTime<Utc>,
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
                       m.attempts, m.kind, m.created_at
         ), events AS (
             INSERT INTO message_events (message_id, tenant_id, state, detail, at)
             SELECT id, tenant_id, 'dispatching', jsonb_build_object('attempt', attempts), $2
             FROM claimed
         )
         SELECT l.id, l.state, c.tenant_id, c.phone_number_id, c.recipient, c.content,
                c.not_after, c.attempts, c.kind, c.created_at
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
    created_at: Option<DateTime<Utc>>,
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
            self.created_at,
        ) {
            (
                Some(tenant_id),
                Some(phone_number_id),
                Some(recipient),
                Some(content),
                Some(attempts),
                Some(kind),
                Some(created_at),
            ) => Ok(Claimed {
                id: self.id,
                tenant_id,
                phone_number_id,
                recipient,
                content,
                not_after: self.not_after,
                attempts,
                kind,
                created_at,
            }),
            _ => Err(Unclaimed {
                id: self.id,
                state: self.state,
            }),
        }
    }
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

/// Records outcomes in one statement: lock the rows in id order, move those still
/// `dispatching`, and write their events and their `status.<tenant>` notifications (sent, failed
/// by Meta's answer, expired, rejected by a policy) to the events outbox, which the webhooks
/// service publishes. The state moves only if the row is still `dispatching`, so a status
/// webhook that got there first (matched by our callback id: sent, delivered, or 131049's 24 h
/// hold with the wamid cleared) is never overwritten, and this attempt's outcome is then neither
/// written nor announced a second time; the wamid is always kept. A message that ends failed or
/// expired gives its cap slot back in the same transaction.
pub async fn record(
    pool: &PgPool,
    outcomes: &[Outcome],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let ended: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.state == "failed" || o.state == "expired")
        .collect();
    if ended.is_empty() {
        let mut conn = pool.acquire().await?;
        write_outcomes(&mut conn, outcomes, now).await?;
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    let owned = write_outcomes(&mut tx, outcomes, now).await?;
    let (tenants, ids): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = ended
        .iter()
        .filter(|o| owned.contains(&o.id.0))
        .map(|o| (o.tenant_id.0, o.id.0))
        .unzip();
    wafleet_core::policy::cap::release(&mut tx, &tenants, &ids).await?;
    tx.commit().await
}

/// The statement of [`record`]; returns the ids whose state it moved.
async fn write_outcomes(
    conn: &mut sqlx::PgConnection,
    outcomes: &[Outcome],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<uuid::Uuid>, sqlx::Error> {
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
    let details: Vec<Option<Value>> = outcomes.iter().map(|o| o.detail.clone()).collect();
    let owned: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::jsonb[], $8::timestamptz[], $10::bool[],
                                  $11::bool[], $12::jsonb[])
                 WITH ORDINALITY
                 AS u(id, tenant_id, state, reason, wamid, wa_id, error, not_before, attempted,
                      dead, detail, n)
         ), locked AS (
             -- In id order, as the claim and the status writer lock (see the module notes).
             SELECT id FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE
         ), moved AS (
             UPDATE messages m SET
                 state = u.state,
                 reason = u.reason,
                 wamid = COALESCE(m.wamid, u.wamid),
                 wa_id = COALESCE(u.wa_id, m.wa_id),
                 error = COALESCE(u.error, m.error),
                 not_before = u.not_before,
                 attempts = CASE WHEN u.attempted THEN m.attempts ELSE GREATEST(m.attempts - 1, 0) END,
                 dead_lettered_at = CASE WHEN u.dead THEN $9 ELSE m.dead_lettered_at END,
                 status_at = CASE WHEN u.state = 'sent' THEN COALESCE(m.status_at, $9) ELSE m.status_at END,
                 updated_at = $9
             FROM u JOIN locked l ON l.id = u.id
             WHERE m.id = u.id AND m.tenant_id = u.tenant_id AND m.state = 'dispatching'
             RETURNING m.id, m.tenant_id, m.state, m.reason, m.wamid, m.error, m.record_type,
                       m.record_id
         ), events AS (
             INSERT INTO message_events (message_id, tenant_id, state, reason, detail, at)
             SELECT mv.id, mv.tenant_id, u.state, u.reason, u.detail, $9
             FROM moved mv JOIN u ON u.id = mv.id
         ), notes AS (
             INSERT INTO outbound_events (tenant_id, routing_key, body)
             SELECT mv.tenant_id, 'status.' || mv.tenant_id::text, jsonb_build_object(
                        'tenant_id', mv.tenant_id, 'message_id', mv.id, 'wamid', mv.wamid,
                        'status', mv.state, 'reason', mv.reason,
                        'record', CASE WHEN mv.record_type IS NULL THEN NULL
                                       ELSE jsonb_build_object('type', mv.record_type, 'id', mv.record_id) END,
                        'at', $9::timestamptz, 'error', mv.error)
             FROM moved mv JOIN u ON u.id = mv.id
             WHERE mv.state IN ('sent', 'failed', 'expired', 'rejected')
             -- Outbox ids are the publish order: the order of the outcomes.
             ORDER BY u.n
         )
         SELECT id FROM moved",
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
    .bind(&details)
    .fetch_all(&mut *conn)
    .await?;
    Ok(owned.into_iter().map(|(id,)| id).collect())
}
