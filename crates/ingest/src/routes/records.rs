//! `GET /v1/records/{type}/{id}/messages`: a candidate's or contact's conversation, both
//! directions, newest first, with keyset pagination (`cursor` from the previous page).

use super::messages::{MessageView, VIEW_COLUMNS};
use crate::{auth::Principal, state::AppState};
use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wafleet_core::{
    domain::{MessageId, RecordType, Role},
    http::Problem,
};

#[derive(Debug, Deserialize)]
pub struct Page {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct History {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[tracing::instrument(name = "GET /v1/records/{type}/{id}/messages", skip_all, fields(otel.kind = "server", tenant))]
pub async fn history(
    State(st): State<AppState>,
    principal: Principal,
    Path((record_type, record_id)): Path<(String, String)>,
    Query(page): Query<Page>,
) -> Result<Json<History>, Problem> {
    principal.require(Role::Reader)?;
    let record_type = RecordType::parse(&record_type).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "record type is candidate or contact",
        )
    })?;
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    let (before_at, before_id) = match page.cursor.as_deref() {
        None => (None, None),
        Some(c) => {
            let (at, id) = parse_cursor(c).ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "cursor is not one this API gave out",
                )
                .field("cursor")
            })?;
            (Some(at), Some(id))
        }
    };
    let mut messages: Vec<MessageView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW_COLUMNS} FROM messages
         WHERE tenant_id = $1 AND record_type = $2 AND record_id = $3
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
         ORDER BY created_at DESC, id DESC
         LIMIT $6"
    )))
    .bind(principal.tenant_id)
    .bind(record_type.as_str())
    .bind(&record_id)
    .bind(before_at)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(&st.pool)
    .await?;
    let next_cursor = if messages.len() as i64 > limit {
        messages.truncate(limit as usize);
        messages
            .last()
            .map(|m| format!("{}_{}", m.created_at.timestamp_micros(), m.id))
    } else {
        None
    };
    Ok(Json(History {
        messages,
        next_cursor,
    }))
}

fn parse_cursor(c: &str) -> Option<(DateTime<Utc>, MessageId)> {
    let (micros, id) = c.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, id.parse().ok()?))
}
