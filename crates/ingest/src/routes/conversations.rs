//! The conversations of the ATS screens (issue 16): a record's conversation table
//! (`GET /v1/records/{type}/{id}/conversations`), the chat window of one
//! (`GET /v1/conversations/{id}/messages`); its read marker is in `conversation_read`. A
//! conversation is (tenant, sender number, contact); its
//! id is `conversation_id()` of those (migration 0014). Every lookup is a descent of the contact
//! index `messages_contact` (tenant, recipient, number, created_at), so a conversation costs
//! the same however many other conversations the tenant has.

use super::{
    messages::{MessageView, VIEW_COLUMNS},
    paging::{PageQuery, not_found, time_cursor_of},
};
use crate::{auth::Principal, state::AppState};
use axum::{
    Json,
    extract::{Path, Query, State},
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::HashMap;
use wafleet_core::{
    domain::{RecordType, Role},
    http::Problem,
    policy::window,
};

/// A record linked to a conversation (several records may share a number).
#[derive(Debug, Serialize, JsonSchema)]
pub struct RecordLink {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The newest message of a conversation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LastMessage {
    pub id: uuid::Uuid,
    /// `out` or `in`.
    pub direction: String,
    /// `template`, `text`, `image`…
    #[serde(rename = "type")]
    pub content_type: String,
    pub state: String,
    pub at: DateTime<Utc>,
}

/// The 24 h customer service window of (sender, contact).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceWindow {
    /// `open` (free-form text may be sent until `open_until`) or `closed`.
    pub state: &'static str,
    pub open_until: Option<DateTime<Utc>>,
    /// The contact's last message to this sender.
    pub last_inbound_at: Option<DateTime<Utc>>,
}

/// One row of a record's conversation table.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationView {
    pub id: uuid::Uuid,
    /// The company's number (phone number id) the conversation is held from.
    pub sender: String,
    /// The candidate's or contact's number (E.164).
    pub contact: String,
    /// The users (`user_id`) who sent messages in it.
    pub users: Vec<String>,
    /// The records its messages are filed under.
    pub records: Vec<RecordLink>,
    pub last_message: LastMessage,
    /// Inbound messages not yet marked read.
    pub unread: i64,
    pub service_window: ServiceWindow,
    /// True when the window is closed: only a template may be sent now.
    pub template_required: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationList {
    /// Latest activity first.
    pub conversations: Vec<ConversationView>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: uuid::Uuid,
    sender: String,
    contact: String,
    users: Vec<String>,
    records: Vec<String>,
    last_id: uuid::Uuid,
    last_direction: String,
    last_type: String,
    last_state: String,
    last_at: DateTime<Utc>,
    unread: i64,
    last_inbound_at: Option<DateTime<Utc>>,
}

fn record_type(raw: &str) -> Result<RecordType, Problem> {
    RecordType::parse(raw).ok_or_else(|| not_found("record type (candidate or contact)"))
}

/// `GET /v1/records/{type}/{id}/conversations`.
#[tracing::instrument(name = "GET /v1/records/{type}/{id}/conversations", skip_all, fields(otel.kind = "server", tenant))]
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    Path((kind, record_id)): Path<(String, String)>,
) -> Result<Json<ConversationList>, Problem> {
    principal.require(Role::Reader)?;
    let kind = record_type(&kind)?;
    // The record's (number, contact) pairs from its own messages (`messages_record`), then per
    // pair its newest message, its counts and its window, each from the contact index.
    let rows: Vec<Row> = sqlx::query_as(
        "WITH c AS (
             SELECT DISTINCT phone_number_id, recipient FROM messages
             WHERE tenant_id = $1 AND record_type = $2 AND record_id = $3
               AND phone_number_id IS NOT NULL AND recipient IS NOT NULL
         )
         SELECT conversation_id($1, c.phone_number_id, c.recipient) AS id,
                c.phone_number_id AS sender, c.recipient AS contact,
                agg.users, agg.records, agg.unread,
                last.id AS last_id, last.direction AS last_direction,
                last.content_type AS last_type, last.state AS last_state, last.created_at AS last_at,
                w.last_inbound_at
         FROM c
         CROSS JOIN LATERAL (
             SELECT id, direction, content_type, state, created_at FROM messages m
             WHERE m.tenant_id = $1 AND m.recipient = c.recipient
               AND m.phone_number_id = c.phone_number_id
             ORDER BY m.created_at DESC LIMIT 1
         ) last
         CROSS JOIN LATERAL (
             SELECT count(*) FILTER (WHERE m.direction = 'in' AND m.read_at IS NULL) AS unread,
                    COALESCE(array_agg(DISTINCT m.user_id) FILTER (WHERE m.user_id IS NOT NULL),
                             '{}') AS users,
                    COALESCE(array_agg(DISTINCT m.record_type || '/' || m.record_id)
                                 FILTER (WHERE m.record_id IS NOT NULL), '{}') AS records
             FROM messages m
             WHERE m.tenant_id = $1 AND m.recipient = c.recipient
               AND m.phone_number_id = c.phone_number_id
         ) agg
         LEFT JOIN service_windows w
           ON w.tenant_id = $1 AND w.phone_number_id = c.phone_number_id
          AND w.recipient = c.recipient
         ORDER BY last.created_at DESC, last.id DESC",
    )
    .bind(principal.tenant_id)
    .bind(kind.as_str())
    .bind(&record_id)
    .fetch_all(&st.pool)
    .await?;
    let now = st.clock.now();
    let conversations = rows.into_iter().map(|r| view(r, now)).collect();
    Ok(Json(ConversationList { conversations }))
}

fn view(r: Row, now: DateTime<Utc>) -> ConversationView {
    let open_until = window::closes_at(r.last_inbound_at, now);
    ConversationView {
        id: r.id,
        sender: r.sender,
        contact: r.contact,
        users: r.users,
        records: r
            .records
            .iter()
            .filter_map(|r| r.split_once('/'))
            .map(|(kind, id)| RecordLink {
                kind: kind.to_owned(),
                id: id.to_owned(),
            })
            .collect(),
        last_message: LastMessage {
            id: r.last_id,
            direction: r.last_direction,
            content_type: r.last_type,
            state: r.last_state,
            at: r.last_at,
        },
        unread: r.unread,
        service_window: ServiceWindow {
            state: if open_until.is_some() {
                "open"
            } else {
                "closed"
            },
            open_until,
            last_inbound_at: r.last_inbound_at,
        },
        template_required: open_until.is_none(),
    }
}

/// The conversation `id` of the caller's tenant: (number, contact), or `404`.
pub(super) async fn find(
    st: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(uuid::Uuid, String, String), Problem> {
    let id: uuid::Uuid = id.parse().map_err(|_| not_found("conversation"))?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT phone_number_id, contact FROM conversations WHERE tenant_id = $1 AND id = $2",
    )
    .bind(principal.tenant_id)
    .bind(id)
    .fetch_optional(&st.pool)
    .await?;
    let (number, contact) = row.ok_or_else(|| not_found("conversation"))?;
    Ok((id, number, contact))
}

/// A page of a conversation's messages.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationMessages {
    pub conversation_id: uuid::Uuid,
    pub sender: String,
    pub contact: String,
    /// Both directions, newest first.
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/conversations/{id}/messages?limit=&cursor=`.
#[tracing::instrument(name = "GET /v1/conversations/{id}/messages", skip_all, fields(otel.kind = "server", tenant))]
pub async fn messages(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ConversationMessages>, Problem> {
    principal.require(Role::Reader)?;
    let page = PageQuery::parse(&query)?;
    let before = page.time_cursor()?;
    let (id, number, contact) = find(&st, &principal, &id).await?;
    let mut messages: Vec<MessageView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW_COLUMNS} FROM messages
         WHERE tenant_id = $1 AND recipient = $2 AND phone_number_id = $3
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
         ORDER BY created_at DESC, id DESC
         LIMIT $6"
    )))
    .bind(principal.tenant_id)
    .bind(&contact)
    .bind(&number)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1))
    .bind(page.limit + 1)
    .fetch_all(&st.pool)
    .await?;
    let next_cursor = if messages.len() as i64 > page.limit {
        messages.truncate(page.limit as usize);
        messages
            .last()
            .map(|m| time_cursor_of(m.created_at, m.id.0))
    } else {
        None
    };
    Ok(Json(ConversationMessages {
        conversation_id: id,
        sender: number,
        contact,
        messages,
        next_cursor,
    }))
}
