//! From the events outbox to HTTP deliveries: in the drainer's transaction that takes a batch
//! of events off `outbound_events`, one `webhook_deliveries` row per (event, enabled endpoint
//! of the event's tenant that takes its type). Three statements per batch whatever its size:
//! the tenants' endpoints, the messages the events are about (by primary key, for the user,
//! sender and conversation), and one insert. A batch whose tenants have no endpoints costs the
//! first query only.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One event as the drainer took it: outbox id, tenant, routing key (`<kind>.<tenant>`), body.
pub struct Event<'a> {
    pub id: i64,
    pub tenant_id: uuid::Uuid,
    pub routing_key: &'a str,
    pub body: &'a Value,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Endpoint {
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    event_types: Vec<String>,
}

/// What the message an event is about tells the ATS: who (user), from which number (sender)
/// and with whom (contact).
#[derive(sqlx::FromRow)]
struct About {
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    phone_number_id: Option<String>,
    contact: Option<String>,
    user_id: Option<String>,
}

/// Writes the deliveries of `events`; returns how many.
pub async fn fan_out(
    tx: &mut sqlx::PgConnection,
    events: &[Event<'_>],
) -> Result<usize, sqlx::Error> {
    let mut tenants: Vec<uuid::Uuid> = events.iter().map(|e| e.tenant_id).collect();
    tenants.sort();
    tenants.dedup();
    let endpoints: Vec<Endpoint> = sqlx::query_as(
        "SELECT id, tenant_id, event_types FROM webhook_endpoints
         WHERE tenant_id = ANY($1) AND enabled ORDER BY id",
    )
    .bind(&tenants)
    .fetch_all(&mut *tx)
    .await?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let mut by_tenant: HashMap<uuid::Uuid, Vec<&Endpoint>> = HashMap::new();
    for ep in &endpoints {
        by_tenant.entry(ep.tenant_id).or_default().push(ep);
    }
    let wanted: Vec<&Event> = events
        .iter()
        .filter(|e| by_tenant.contains_key(&e.tenant_id))
        .collect();
    let message_ids: Vec<uuid::Uuid> = wanted
        .iter()
        .filter_map(|e| e.body.get("message_id")?.as_str()?.parse().ok())
        .collect();
    let about: HashMap<uuid::Uuid, About> = if message_ids.is_empty() {
        HashMap::new()
    } else {
        // By primary key. An inbound reply carries no user: the consultant is the user of the
        // latest outbound message of the same conversation (number and contact), found on
        // `messages_contact` (tenant, recipient, number, created_at).
        sqlx::query_as::<_, About>(
            "SELECT m.id, m.tenant_id, m.phone_number_id, COALESCE(m.recipient, m.recipient_user_id) AS contact,
                    COALESCE(m.user_id, o.user_id) AS user_id
             FROM messages m
             LEFT JOIN LATERAL (
                 SELECT x.user_id FROM messages x
                 WHERE m.direction = 'in' AND m.user_id IS NULL
                   AND x.tenant_id = m.tenant_id AND x.recipient = m.recipient
                   AND x.phone_number_id = m.phone_number_id AND x.direction = 'out'
                 ORDER BY x.created_at DESC LIMIT 1
             ) o ON true
             WHERE m.id = ANY($1) AND (m.tenant_id = ANY($2)) IS TRUE",
        )
        .bind(&message_ids)
        .bind(&tenants)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect()
    };

    let mut ids = Vec::new();
    let mut tenant_ids = Vec::new();
    let mut endpoint_ids = Vec::new();
    let mut event_ids = Vec::new();
    let mut kinds = Vec::new();
    let mut keys: Vec<Option<String>> = Vec::new();
    let mut payloads = Vec::new();
    for event in wanted {
        let kind = event
            .routing_key
            .split_once('.')
            .map_or(event.routing_key, |(k, _)| k);
        let message = event
            .body
            .get("message_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .and_then(|id| about.get(&id))
            .filter(|m| m.tenant_id == event.tenant_id);
        let (payload, key) = payload(kind, event, message);
        for ep in &by_tenant[&event.tenant_id] {
            if !ep.event_types.is_empty() && !ep.event_types.iter().any(|t| t == kind) {
                continue;
            }
            ids.push(uuid::Uuid::now_v7());
            tenant_ids.push(event.tenant_id);
            endpoint_ids.push(ep.id);
            event_ids.push(event.id);
            kinds.push(kind.to_owned());
            keys.push(key.clone());
            payloads.push(payload.clone());
        }
    }
    if ids.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries
             (id, tenant_id, endpoint_id, event_id, event_type, ordering_key, payload, next_attempt_at, created_at)
         SELECT id, t, ep, ev, k, ok, p, now(), now()
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::text[], $7::jsonb[])
              AS u(id, t, ep, ev, k, ok, p)",
    )
    .bind(&ids)
    .bind(&tenant_ids)
    .bind(&endpoint_ids)
    .bind(&event_ids)
    .bind(&kinds)
    .bind(&keys)
    .bind(&payloads)
    .execute(&mut *tx)
    .await?;
    metrics::counter!("wafleet_endpoint_deliveries_created_total").increment(ids.len() as u64);
    Ok(ids.len())
}

/// The Standard Webhooks body (`type`, `timestamp`, `data`) and the ordering key. `data` is the
/// AMQP event's body plus `user_id`, `sender` (phone number id) and `conversation`
/// (`{sender, contact}`) when the event is about a message.
fn payload(kind: &str, event: &Event, message: Option<&About>) -> (Value, Option<String>) {
    let mut data = event.body.clone();
    let mut key = None;
    if let Some(obj) = data.as_object_mut() {
        if let Some(m) = message {
            obj.insert("user_id".into(), json!(m.user_id));
            obj.insert("sender".into(), json!(m.phone_number_id));
            let conversation = match (&m.phone_number_id, &m.contact) {
                (Some(sender), Some(contact)) => {
                    key = Some(format!("{sender}:{contact}"));
                    json!({"sender": sender, "contact": contact})
                }
                _ => Value::Null,
            };
            obj.insert("conversation".into(), conversation);
        } else if kind == "optout"
            && let Some(r) = obj.get("recipient").and_then(Value::as_str)
        {
            key = Some(format!("contact:{r}"));
        }
    }
    (
        json!({"type": kind, "timestamp": event.created_at, "data": data}),
        key,
    )
}
