//! The group commit's writes: one multi-row statement per table for the whole batch
//! (idempotency keys, messages, their conversations, their first events), inside the batch's transaction.

use super::{Job, Row};
use crate::accept::Idempotency;
use serde_json::{Value, json};
use std::collections::HashSet;
use wafleet_core::{contract::Content, domain::TenantId};

/// Stores each row's reply under its idempotency key; returns the keys already taken (by a
/// concurrent request in another batch or process), whose rows must not be written.
pub(super) async fn remember_replies(
    tx: &mut sqlx::PgConnection,
    rows: &[(&Job, &Row)],
) -> Result<HashSet<(TenantId, String)>, sqlx::Error> {
    let keyed: Vec<(&Job, &Row, &Idempotency)> = rows
        .iter()
        .filter_map(|(job, row)| Some((*job, *row, job.idempotency.as_ref()?)))
        .collect();
    if keyed.is_empty() {
        return Ok(HashSet::new());
    }
    let tenants: Vec<uuid::Uuid> = keyed.iter().map(|(j, ..)| j.tenant.0).collect();
    let keys: Vec<&str> = keyed.iter().map(|(.., i)| i.key.as_str()).collect();
    let hashes: Vec<&[u8]> = keyed
        .iter()
        .map(|(.., i)| i.request_hash.as_slice())
        .collect();
    let statuses: Vec<i16> = keyed
        .iter()
        .map(|(_, r, _)| r.reply.status.as_u16() as i16)
        .collect();
    let bodies: Vec<&Value> = keyed.iter().map(|(_, r, _)| &r.reply.body).collect();
    let inserted: Vec<(TenantId, String)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int2[], $5::jsonb[])
         ON CONFLICT DO NOTHING
         RETURNING tenant_id, key",
    )
    .bind(&tenants)
    .bind(&keys)
    .bind(&hashes)
    .bind(&statuses)
    .bind(&bodies)
    .fetch_all(&mut *tx)
    .await?;
    let inserted: HashSet<(TenantId, String)> = inserted.into_iter().collect();
    Ok(keyed
        .iter()
        .map(|(j, _, i)| (j.tenant, i.key.clone()))
        .filter(|k| !inserted.contains(k))
        .collect())
}

pub(super) async fn insert_messages(
    tx: &mut sqlx::PgConnection,
    rows: &[(&Job, &Row)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Job, &Row) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|(j, r)| f(j, r)).collect()
    };
    let ids: Vec<uuid::Uuid> = rows.iter().map(|(_, r)| r.id.0).collect();
    let tenants: Vec<uuid::Uuid> = rows.iter().map(|(j, _)| j.tenant.0).collect();
    let kinds: Vec<&str> = rows.iter().map(|(_, r)| r.kind).collect();
    let sender_ids: Vec<Option<uuid::Uuid>> = rows
        .iter()
        .map(|(_, r)| r.sender.as_ref().map(|s| s.0.0))
        .collect();
    let phone_number_ids = col(|_, r| r.sender.as_ref().map(|s| s.1.clone()));
    let recipients = col(|_, r| r.recipient.clone());
    let record_types: Vec<&str> = rows.iter().map(|(_, r)| r.record.kind.as_str()).collect();
    let record_ids: Vec<&str> = rows.iter().map(|(_, r)| r.record.id.as_str()).collect();
    let user_ids = col(|_, r| r.user_id.clone());
    let content_types: Vec<&str> = rows
        .iter()
        .map(|(_, r)| r.content.as_ref().map_or("none", Content::type_name))
        .collect();
    let contents: Vec<Value> = rows
        .iter()
        .map(|(_, r)| {
            r.content.as_ref().map_or_else(
                || json!({}),
                |c| serde_json::to_value(c).expect("content serialises"),
            )
        })
        .collect();
    let states: Vec<&str> = rows.iter().map(|(_, r)| r.state).collect();
    let reasons: Vec<Option<&str>> = rows.iter().map(|(_, r)| r.reason).collect();
    let not_after: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        rows.iter().map(|(_, r)| r.not_after).collect();
    let traces = col(|j, r| r.content.as_ref().and(j.traceparent.clone()));
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, direction, kind, sender_id, phone_number_id,
             recipient, record_type, record_id, user_id, content_type, content, state, reason,
             not_after, trace_context)
         SELECT id, tenant_id, 'out', kind, sender_id, phone_number_id, recipient, record_type,
                record_id, user_id, content_type, content, state, reason, not_after, trace_context
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::text[],
                     $13::text[], $14::timestamptz[], $15::text[])
              AS u(id, tenant_id, kind, sender_id, phone_number_id, recipient, record_type,
                   record_id, user_id, content_type, content, state, reason, not_after,
                   trace_context)",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&kinds)
    .bind(&sender_ids)
    .bind(&phone_number_ids)
    .bind(&recipients)
    .bind(&record_types)
    .bind(&record_ids)
    .bind(&user_ids)
    .bind(&content_types)
    .bind(&contents)
    .bind(&states)
    .bind(&reasons)
    .bind(&not_after)
    .bind(&traces)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn insert_events(
    tx: &mut sqlx::PgConnection,
    rows: &[(&Job, &Row)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = rows.iter().map(|(_, r)| r.id.0).collect();
    let tenants: Vec<uuid::Uuid> = rows.iter().map(|(j, _)| j.tenant.0).collect();
    let states: Vec<&str> = rows.iter().map(|(_, r)| r.state).collect();
    let reasons: Vec<Option<&str>> = rows.iter().map(|(_, r)| r.reason).collect();
    let details: Vec<Option<&Value>> = rows.iter().map(|(_, r)| r.detail.as_ref()).collect();
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, state, reason, detail)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[])",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&states)
    .bind(&reasons)
    .bind(&details)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The conversations of the batch's sendable rows, in one statement beside the message insert
/// (a refused row has no number, so no conversation).
pub(super) async fn insert_conversations(
    tx: &mut sqlx::PgConnection,
    rows: &[(&Job, &Row)],
) -> Result<(), sqlx::Error> {
    let mut tenants = Vec::with_capacity(rows.len());
    let mut numbers = Vec::with_capacity(rows.len());
    let mut contacts = Vec::with_capacity(rows.len());
    for (job, row) in rows {
        if let (Some((_, phone_number_id)), Some(to)) = (&row.sender, &row.recipient) {
            tenants.push(job.tenant.0);
            numbers.push(phone_number_id.as_str());
            contacts.push(to.as_str());
        }
    }
    wafleet_core::conversation::record(tx, &tenants, &numbers, &contacts).await
}
