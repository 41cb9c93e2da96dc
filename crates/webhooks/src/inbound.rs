//! Inbound messages from candidates and contacts: stored once (keyed by wamid), filed against
//! a record and a conversation, and the 24 h service window of (sender, recipient) opened.
//! Users Meta identifies only by a business-scoped user id (no phone number) are stored too.
//! A message that reads as a STOP (or START) opts the sender out of (or back in to) every
//! template (`stop_words` has the rule).
//!
//! The record rule (README, "Conversations"): a reply is filed under the record of the latest
//! outbound message from the number it was written to, to the number it came from; when that
//! number never wrote to them, under the record of the latest outbound message to them from any
//! of the company's numbers. So when several records share a phone number, a reply follows the
//! chat it was written in. Each branch is one descent of the contact index (`messages_contact`).

use crate::{
    optouts::{self, Keywords, OptOutChange},
    outbox,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use wafleet_core::{
    contract::InboundEvent,
    domain::{MessageId, RecordRef, RecordType, TenantId, state},
};

/// One item from `value.messages[]`, with its change's metadata.
#[derive(Debug, Clone)]
pub struct InboundItem {
    pub wamid: String,
    pub phone_number_id: String,
    /// `+E164`, when Meta gave a number.
    pub from: Option<String>,
    pub from_user_id: Option<String>,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub content: Value,
}

impl InboundItem {
    pub fn parse(raw: &Value, phone_number_id: &str) -> Option<Self> {
        let wamid = raw.get("id")?.as_str()?.to_owned();
        let kind = raw.get("type")?.as_str()?.to_owned();
        let secs: i64 = match raw.get("timestamp")? {
            Value::String(s) => s.parse().ok()?,
            Value::Number(n) => n.as_i64()?,
            _ => return None,
        };
        let from = raw
            .get("from")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
            .map(|f| format!("+{f}"));
        let from_user_id = raw
            .get("from_user_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if from.is_none() && from_user_id.is_none() {
            return None;
        }
        Some(Self {
            wamid,
            phone_number_id: phone_number_id.to_owned(),
            from,
            from_user_id,
            kind,
            at: DateTime::from_timestamp(secs, 0)?,
            content: raw.clone(),
        })
    }

    /// The human text of the message, where it has one.
    pub fn text(&self) -> Option<String> {
        let c = &self.content;
        let s = match self.kind.as_str() {
            "text" => c.pointer("/text/body"),
            "button" => c.pointer("/button/text"),
            "interactive" => c
                .pointer("/interactive/button_reply/title")
                .or_else(|| c.pointer("/interactive/list_reply/title")),
            "image" | "video" | "document" => c.pointer(&format!("/{}/caption", self.kind)),
            "reaction" => c.pointer("/reaction/emoji"),
            "system" => c.pointer("/system/body"),
            "location" => c.pointer("/location/name"),
            _ => None,
        };
        s.and_then(Value::as_str).map(str::to_owned)
    }

    /// What a keyword may be found in: the text, and a quick-reply button's payload.
    fn keyword_candidates(&self) -> Vec<String> {
        let payload = (self.kind == "button")
            .then(|| self.content.pointer("/button/payload"))
            .flatten()
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.text().into_iter().chain(payload).collect()
    }
}

/// Stores inbound messages for one tenant, and writes `inbound.<tenant>` notifications (and
/// opt-outs from keywords) for the new ones only; returns how many were new.
/// `created_at` is when we recorded the message (history order); Meta's own timestamp, which
/// has only second resolution, is kept as `status_at`.
pub async fn apply(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: &[InboundItem],
) -> Result<usize, sqlx::Error> {
    let mut notes = Vec::new();
    let mut keyword_candidates = Vec::new();
    for item in items {
        let id = MessageId::new();
        let inserted: Option<(Option<String>, Option<String>, Option<uuid::Uuid>)> = sqlx::query_as(
            "INSERT INTO messages (id, tenant_id, direction, sender_id, phone_number_id, recipient,
                 recipient_user_id, record_type, record_id, content_type, content, state, wamid, status_at)
             SELECT $1, $2, 'in', s.id, $3, $4, $5, r.record_type, r.record_id, $6, $7, 'received', $8, $9
             FROM (SELECT 1) AS one
             LEFT JOIN senders s ON s.tenant_id = $2 AND s.phone_number_id = $3
             LEFT JOIN LATERAL (
                 (SELECT record_type, record_id FROM messages
                  WHERE tenant_id = $2 AND recipient = $4 AND phone_number_id = $3
                    AND direction = 'out' AND record_type IS NOT NULL
                  ORDER BY created_at DESC LIMIT 1)
                 UNION ALL
                 (SELECT record_type, record_id FROM messages
                  WHERE tenant_id = $2 AND direction = 'out' AND record_type IS NOT NULL
                    AND (recipient = $4 OR ($4 IS NULL AND recipient_user_id = $5))
                  ORDER BY created_at DESC LIMIT 1)
                 LIMIT 1
             ) r ON true
             ON CONFLICT (tenant_id, wamid) WHERE wamid IS NOT NULL DO NOTHING
             RETURNING record_type, record_id, conversation_id(tenant_id, phone_number_id, recipient)",
        )
        .bind(id)
        .bind(tenant)
        .bind(&item.phone_number_id)
        .bind(&item.from)
        .bind(&item.from_user_id)
        .bind(&item.kind)
        .bind(&item.content)
        .bind(&item.wamid)
        .bind(item.at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((record_type, record_id, conversation_id)) = inserted else {
            metrics::counter!("wafleet_webhook_duplicates_total").increment(1);
            continue;
        };
        sqlx::query(
            "INSERT INTO message_events (message_id, tenant_id, state, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(tenant)
        .bind(state::RECEIVED)
        .bind(item.at)
        .execute(&mut *tx)
        .await?;
        if let Some(from) = &item.from {
            sqlx::query(
                "INSERT INTO service_windows (tenant_id, phone_number_id, recipient, last_inbound_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, phone_number_id, recipient)
                 DO UPDATE SET last_inbound_at = GREATEST(service_windows.last_inbound_at, EXCLUDED.last_inbound_at)",
            )
            .bind(tenant)
            .bind(&item.phone_number_id)
            .bind(from)
            .bind(item.at)
            .execute(&mut *tx)
            .await?;
        }
        let record = match (
            record_type.as_deref().and_then(RecordType::parse),
            record_id,
        ) {
            (Some(kind), Some(id)) => Some(RecordRef { kind, id }),
            _ => None,
        };
        let texts = item.keyword_candidates();
        if !texts.is_empty() {
            keyword_candidates.push((item, texts));
        }
        notes.push(InboundEvent {
            tenant_id: tenant,
            message_id: id,
            wamid: item.wamid.clone(),
            phone_number_id: item.phone_number_id.clone(),
            from: item.from.clone(),
            from_user_id: item.from_user_id.clone(),
            record,
            conversation_id,
            content_type: item.kind.clone(),
            text: item.text(),
            content: item.content.clone(),
            received_at: item.at,
        });
    }
    // The conversations of the new messages, in one statement for the whole payload.
    let (numbers, contacts): (Vec<&str>, Vec<&str>) = notes
        .iter()
        .filter_map(|n| Some((n.phone_number_id.as_str(), n.from.as_deref()?)))
        .unzip();
    let tenants = vec![tenant.0; numbers.len()];
    wafleet_core::conversation::record(tx, &tenants, &numbers, &contacts).await?;
    metrics::counter!("wafleet_webhook_inbound_total").increment(notes.len() as u64);
    outbox::enqueue(tx, "inbound", tenant, &notes).await?;
    if !keyword_candidates.is_empty() {
        let keywords = Keywords::load(tx, tenant).await?;
        let mut changes: Vec<OptOutChange> = keyword_candidates
            .into_iter()
            .filter_map(|(item, texts)| {
                let opt_out = keywords.classify(texts.iter().map(String::as_str))?;
                Some(OptOutChange {
                    recipient: item.from.clone().or_else(|| item.from_user_id.clone())?,
                    scope: optouts::SCOPE_ALL,
                    opt_out,
                    source: "keyword",
                    at: item.at,
                })
            })
            .collect();
        changes.sort_by_key(|c| c.at);
        optouts::record(tx, tenant, &changes).await?;
    }
    Ok(notes.len())
}
