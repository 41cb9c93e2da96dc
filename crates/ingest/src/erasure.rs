//! Data protection: anonymising messages (shared by erasure and the retention sweeper) and
//! erasing a person (`DELETE /v1/records/{type}/{id}`). Anonymising keeps what counts and bills
//! (direction, kind, type, state, pricing, wamid, sender, user, record, times) and removes what
//! identifies or was said: the content (text, media ids, captions, the raw inbound payload), the
//! contact's number and Meta user ids, Meta's error details and the event details.

use chrono::{DateTime, Utc};
use serde_json::json;
use wafleet_core::domain::TenantId;

/// States a message no longer leaves: the only ones retention anonymises (a message still on
/// its way keeps what it needs to be sent).
pub const FINAL_STATES: &[&str] = &[
    "sent",
    "delivered",
    "read",
    "played",
    "failed",
    "rejected",
    "expired",
    "cancelled",
    "received",
];

/// Anonymises the messages `ids` (those not anonymised yet, and when `final_only`, only those
/// in a final state); returns how many. Two statements whatever the count, both by primary
/// key or the events' message index.
pub async fn anonymise(
    tx: &mut sqlx::PgConnection,
    ids: &[uuid::Uuid],
    final_only: bool,
    at: DateTime<Utc>,
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let done: Vec<uuid::Uuid> = sqlx::query_scalar(
        "UPDATE messages SET content = '{\"erased\": true}', recipient = NULL,
             recipient_user_id = NULL, wa_id = NULL,
             -- Meta's code and title are kept (reports group failures by them); its message
             -- and details may quote the recipient.
             error = CASE WHEN error IS NULL THEN NULL
                          ELSE jsonb_strip_nulls(jsonb_build_object('code', error->'code', 'title', error->'title')) END,
             erased_at = $2
         WHERE id = ANY($1) AND erased_at IS NULL AND (NOT $3 OR state = ANY($4))
         RETURNING id",
    )
    .bind(ids)
    .bind(at)
    .bind(final_only)
    .bind(FINAL_STATES)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE message_events SET detail = NULL WHERE message_id = ANY($1) AND detail IS NOT NULL",
    )
    .bind(&done)
    .execute(&mut *tx)
    .await?;
    Ok(done)
}

/// What an erasure did.
#[derive(Debug, Default, serde::Serialize, schemars::JsonSchema)]
pub struct ErasureReport {
    /// Messages anonymised now (0 when the record was erased before).
    pub messages_erased: usize,
    /// Messages that had not been sent yet, now `cancelled` (reason `record_erased`).
    pub messages_cancelled: usize,
    /// Numbers removed from everything they were kept in.
    pub numbers_erased: usize,
    /// Numbers kept because another record's messages still use them.
    pub numbers_shared: usize,
    /// Opt-outs removed (only when asked with `opt_outs=forget`).
    pub opt_outs_removed: u64,
}

/// What identifies a record's message, read before it is anonymised.
#[derive(sqlx::FromRow)]
struct Held {
    id: uuid::Uuid,
    recipient: Option<String>,
    wa_id: Option<String>,
    wamid: Option<String>,
}

/// Erases a record's history in the caller's transaction: `None` when the tenant has no
/// message of that record (`404`).
pub async fn erase_record(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    record: (&str, &str),
    forget_opt_outs: bool,
    now: DateTime<Utc>,
) -> Result<Option<ErasureReport>, sqlx::Error> {
    // Locks the record's messages (in id order, as the dispatcher locks them): a send being
    // claimed finishes first, and none starts on a row being erased.
    let rows: Vec<Held> = sqlx::query_as(
        "SELECT id, recipient, wa_id, wamid FROM messages
         WHERE tenant_id = $1 AND record_type = $2 AND record_id = $3
         ORDER BY id FOR UPDATE",
    )
    .bind(tenant)
    .bind(record.0)
    .bind(record.1)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
    let wamids: Vec<&str> = rows.iter().filter_map(|r| r.wamid.as_deref()).collect();
    // The numbers the record's messages name: the contact's, and Meta's wa_id for it.
    let mut numbers: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            [
                r.recipient.clone(),
                r.wa_id.as_ref().map(|w| format!("+{w}")),
            ]
        })
        .flatten()
        .collect();
    numbers.sort();
    numbers.dedup();
    let mut report = ErasureReport::default();
    // Not sent yet: it never will be (its content is about to go).
    let cancelled: Vec<uuid::Uuid> = sqlx::query_scalar(
        "UPDATE messages SET state = 'cancelled', reason = 'record_erased', not_before = NULL,
             updated_at = $2
         WHERE id = ANY($1) AND state IN ('accepted', 'queued', 'deferred')
         RETURNING id",
    )
    .bind(&ids)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, state, reason, at)
         SELECT id, $2, 'cancelled', 'record_erased', $3 FROM unnest($1::uuid[]) AS id",
    )
    .bind(&cancelled)
    .bind(tenant)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    report.messages_cancelled = cancelled.len();
    report.messages_erased = anonymise(tx, &ids, false, now).await?.len();
    sqlx::query(
        "UPDATE campaign_rejections SET recipient = NULL
         WHERE tenant_id = $1 AND record_type = $2 AND record_id = $3 AND recipient IS NOT NULL",
    )
    .bind(tenant)
    .bind(record.0)
    .bind(record.1)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM parked_statuses WHERE tenant_id = $1 AND wamid = ANY($2)")
        .bind(tenant)
        .bind(&wamids)
        .execute(&mut *tx)
        .await?;
    for number in &numbers {
        let shared: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM messages WHERE tenant_id = $1 AND recipient = $2 LIMIT 1",
        )
        .bind(tenant)
        .bind(number)
        .fetch_optional(&mut *tx)
        .await?;
        if shared.is_some() {
            report.numbers_shared += 1;
            continue;
        }
        report.opt_outs_removed += forget_number(tx, tenant, number, forget_opt_outs).await?;
        report.numbers_erased += 1;
    }
    Ok(Some(report))
}

/// Removes `number` from the tables kept per contact. Its cap slot is kept under a pseudonym
/// (Meta still counts the message until the slot ages out); its opt-outs, and the audit
/// entries that name it, only when `forget_opt_outs`, so a STOP is honoured after an erasure
/// unless the person asked for that to go too. Returns the opt-outs removed.
async fn forget_number(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    number: &str,
    forget_opt_outs: bool,
) -> Result<u64, sqlx::Error> {
    for statement in [
        "DELETE FROM service_windows WHERE tenant_id = $1 AND recipient = $2",
        "DELETE FROM conversations WHERE tenant_id = $1 AND contact = $2",
        "DELETE FROM recipient_holds WHERE tenant_id = $1 AND recipient = $2",
        "UPDATE cap_recipients SET recipient = 'erased:' || message_id
         WHERE tenant_id = $1 AND recipient = $2",
        // Notifications not published yet that quote the number (the pending-events index).
        "DELETE FROM outbound_events
         WHERE published_at IS NULL AND tenant_id = $1 AND strpos(body::text, $2) > 0",
        // Webhook items kept raw for inspection: Meta writes numbers without the `+`. Read
        // through the tenant's index of a table that holds failures only.
        "DELETE FROM dead_webhooks
         WHERE tenant_id = $1 AND position(convert_to(ltrim($2, '+'), 'UTF8') IN body) > 0",
    ] {
        sqlx::query(statement)
            .bind(tenant)
            .bind(number)
            .execute(&mut *tx)
            .await?;
    }
    if !forget_opt_outs {
        return Ok(0);
    }
    let removed = sqlx::query("DELETE FROM opt_outs WHERE tenant_id = $1 AND recipient = $2")
        .bind(tenant)
        .bind(number)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let subjects = [
        format!("optout:{number}:all"),
        format!("optout:{number}:marketing"),
    ];
    sqlx::query("DELETE FROM webhook_subjects WHERE tenant_id = $1 AND subject = ANY($2)")
        .bind(tenant)
        .bind(&subjects[..])
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE consent_audit SET recipient = NULL, detail = detail - 'reason'
         WHERE tenant_id = $1 AND recipient = $2",
    )
    .bind(tenant)
    .bind(number)
    .execute(&mut *tx)
    .await?;
    Ok(removed)
}

/// The audit detail of an erasure: counts only, never a number.
pub fn audit_detail(report: &ErasureReport, forget_opt_outs: bool) -> serde_json::Value {
    json!({
        "messages_erased": report.messages_erased,
        "messages_cancelled": report.messages_cancelled,
        "numbers_erased": report.numbers_erased,
        "numbers_shared": report.numbers_shared,
        "opt_outs": if forget_opt_outs { "forgotten" } else { "kept" },
        "opt_outs_removed": report.opt_outs_removed,
    })
}
