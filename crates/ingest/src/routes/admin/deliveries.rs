//! An endpoint's deliveries (admin): `GET /v1/webhook-endpoints/{id}/deliveries?state=`
//! (newest first, paged by `before`), `POST /v1/webhook-deliveries/{id}/replay` (sent again
//! from its first attempt, same `webhook-id`, so a receiver that already has it can tell) and
//! `POST /v1/webhook-endpoints/{id}/test` (a signed `test` event through the same worker). The
//! webhooks service sends them; this side only writes rows.

use super::{
    caller::AdminCaller,
    endpoints::{endpoint_id, not_found},
};
use crate::state::AppState;
use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wafleet_core::http::Problem;

/// One event for one endpoint.
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct DeliveryView {
    /// Also the `webhook-id` header, as `msg_<id without dashes>`.
    pub id: uuid::Uuid,
    pub endpoint_id: uuid::Uuid,
    /// `status`, `inbound`, `optout`, `account` or `test`.
    pub event_type: String,
    /// `pending` (waiting for its next attempt), `delivered` or `dead` (gave up after
    /// `notify.max_attempts`; replay it).
    pub state: String,
    pub attempts: i32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The endpoint's HTTP status on the last attempt (none: no answer).
    pub last_status: Option<i32>,
    /// Why the last attempt failed (`HTTP 500`, `timeout`, `connection failed: …`).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body POSTed: `{type, timestamp, data}`.
    pub payload: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next (older) page; null on the last.
    pub next_before: Option<uuid::Uuid>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub limit: Option<i64>,
    pub before: Option<String>,
}

const COLUMNS: &str = "id, endpoint_id, event_type, state, attempts,
    CASE WHEN state = 'pending' THEN next_attempt_at END AS next_attempt_at, last_attempt_at,
    last_status, last_error, created_at, delivered_at, payload";

fn invalid(field: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_field", detail).field(field)
}

async fn own_endpoint(
    st: &AppState,
    caller: &AdminCaller,
    id: uuid::Uuid,
) -> Result<bool, Problem> {
    let enabled: Option<bool> = sqlx::query_scalar(
        "SELECT enabled FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
    )
    .bind(caller.principal.tenant_id)
    .bind(id)
    .fetch_optional(&st.pool)
    .await?;
    enabled.ok_or_else(not_found)
}

/// `GET /v1/webhook-endpoints/{id}/deliveries`.
pub async fn list(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<DeliveryList>, Problem> {
    let id = endpoint_id(&id)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "limit is 1 to 200"));
    }
    if let Some(s) = &q.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(invalid("state", "state is pending, delivered or dead"));
    }
    let before: Option<uuid::Uuid> = q
        .before
        .as_deref()
        .map(|b| {
            b.parse()
                .map_err(|_| invalid("before", "before is a delivery id"))
        })
        .transpose()?;
    own_endpoint(&st, &caller, id).await?;
    // Two shapes, each on its own index (`webhook_deliveries_endpoint` with a state,
    // `webhook_deliveries_endpoint_all` without), newest first.
    let filter = if q.state.is_some() {
        "AND state = $4"
    } else {
        "AND $4::text IS NULL"
    };
    let mut deliveries: Vec<DeliveryView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries
         WHERE endpoint_id = $1 AND tenant_id = $2 AND ($3::uuid IS NULL OR id < $3) {filter}
         ORDER BY id DESC LIMIT $5"
    )))
    .bind(id)
    .bind(caller.principal.tenant_id)
    .bind(before)
    .bind(&q.state)
    .bind(limit + 1)
    .fetch_all(&st.pool)
    .await?;
    let next_before = if deliveries.len() as i64 > limit {
        deliveries.truncate(limit as usize);
        deliveries.last().map(|d| d.id)
    } else {
        None
    };
    Ok(Json(DeliveryList {
        deliveries,
        next_before,
    }))
}

/// `POST /v1/webhook-deliveries/{id}/replay`: back to `pending`, due now, with a fresh budget
/// of attempts. Later deliveries of the same conversation that are still pending wait for it.
pub async fn replay(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), Problem> {
    let not_found = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such webhook delivery",
        )
    };
    let id: uuid::Uuid = id.parse().map_err(|_| not_found())?;
    let delivery = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now(),
             delivered_at = NULL
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(caller.principal.tenant_id)
    .bind(id)
    .fetch_optional(&st.pool)
    .await?
    .ok_or_else(not_found)?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// `POST /v1/webhook-endpoints/{id}/test`: a `test` event for this endpoint only.
pub async fn test(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), Problem> {
    let id = endpoint_id(&id)?;
    if !own_endpoint(&st, &caller, id).await? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "endpoint_disabled",
            "the endpoint is disabled: enable it first (PATCH enabled: true)",
        ));
    }
    let tenant = caller.principal.tenant_id;
    let now = st.clock.now();
    let payload = json!({
        "type": "test", "timestamp": now,
        "data": {"tenant_id": tenant, "endpoint_id": id,
                 "message": "A test event from wafleet: the endpoint is reachable and the signature can be checked."},
    });
    let delivery = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_deliveries
             (id, tenant_id, endpoint_id, event_id, event_type, ordering_key, payload, next_attempt_at, created_at)
         VALUES ($1, $2, $3, 0, 'test', NULL, $4, now(), now()) RETURNING {COLUMNS}"
    )))
    .bind(uuid::Uuid::now_v7())
    .bind(tenant)
    .bind(id)
    .bind(payload)
    .fetch_one(&st.pool)
    .await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
