//! The delivery worker's two statements: claim a batch of due deliveries, and record a batch
//! of outcomes. Neither is one transaction per event.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// A claimed delivery: leased until `now + lease`, its attempt already counted.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub endpoint_id: uuid::Uuid,
    pub payload: Value,
    /// Attempts including this one.
    pub attempts: i32,
}

/// What an endpoint's row gives the sender.
#[derive(Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: uuid::Uuid,
    pub url: String,
    pub secret_enc: Vec<u8>,
    pub previous_secret_enc: Option<Vec<u8>>,
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// Claims up to `limit` due deliveries, at most `per_endpoint` for one endpoint and none for
/// the endpoints in `busy` (already at their share of requests in flight here).
///
/// Locking: `FOR UPDATE OF d SKIP LOCKED` on the due index, so replicas claim disjoint rows
/// and never wait on each other; the claim moves `next_attempt_at` forward by `lease` in the
/// same statement (autocommit), which is the lease: a worker that dies leaves its rows to come
/// due again. Ordering: a row whose endpoint has an earlier pending delivery of the same
/// ordering key (a claimed one included) is not due; the check is one probe of
/// `webhook_deliveries_order`.
pub async fn claim(
    pool: &sqlx::PgPool,
    limit: i64,
    per_endpoint: i64,
    busy: &[uuid::Uuid],
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS (
             SELECT d.id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d
             JOIN webhook_endpoints ep ON ep.id = d.endpoint_id AND ep.enabled
             WHERE d.state = 'pending' AND d.next_attempt_at <= now()
               AND d.endpoint_id <> ALL($2::uuid[])
               AND (d.ordering_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM webhook_deliveries e
                   WHERE e.endpoint_id = d.endpoint_id AND e.ordering_key = d.ordering_key
                     AND e.state = 'pending' AND e.event_id < d.event_id))
             ORDER BY d.next_attempt_at
             LIMIT $1
             FOR UPDATE OF d SKIP LOCKED
         ), ranked AS (
             SELECT id, row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at) AS n
             FROM due
         )
         UPDATE webhook_deliveries w
         SET attempts = w.attempts + 1, last_attempt_at = now(),
             next_attempt_at = now() + $4 * interval '1 millisecond'
         FROM ranked r WHERE w.id = r.id AND r.n <= $3
         RETURNING w.id, w.tenant_id, w.endpoint_id, w.payload, w.attempts",
    )
    .bind(limit)
    .bind(busy)
    .bind(per_endpoint)
    .bind(lease.as_millis() as i64)
    .fetch_all(pool)
    .await
}

/// The endpoints of a claimed batch (by primary key).
pub async fn endpoints(
    pool: &sqlx::PgPool,
    ids: &[uuid::Uuid],
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, url, secret_enc, previous_secret_enc, previous_secret_until
         FROM webhook_endpoints WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    /// The attempt count the claim gave the row: a row replayed meanwhile (attempts reset)
    /// is left alone.
    pub attempts: i32,
    /// `delivered`, `pending` (retry after `retry_in`) or `dead`.
    pub state: &'static str,
    pub retry_in: Duration,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Records a batch of outcomes in one statement.
pub async fn record(pool: &sqlx::PgPool, outcomes: &[Outcome]) -> Result<(), sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = outcomes.iter().map(|o| o.id).collect();
    let tenants: Vec<uuid::Uuid> = outcomes.iter().map(|o| o.tenant_id).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempts).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state).collect();
    let delays: Vec<i64> = outcomes
        .iter()
        .map(|o| o.retry_in.as_millis() as i64)
        .collect();
    let statuses: Vec<Option<i32>> = outcomes.iter().map(|o| o.status.map(i32::from)).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    sqlx::query(
        "UPDATE webhook_deliveries d SET
             state = u.state,
             next_attempt_at = CASE WHEN u.state = 'pending'
                                    THEN now() + u.delay * interval '1 millisecond'
                                    ELSE d.next_attempt_at END,
             last_status = u.status, last_error = u.error,
             delivered_at = CASE WHEN u.state = 'delivered' THEN now() ELSE d.delivered_at END
         FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::bigint[], $6::int[], $7::text[])
              AS u(id, tenant_id, attempts, state, delay, status, error)
         WHERE d.id = u.id AND d.tenant_id = u.tenant_id AND d.attempts = u.attempts
           AND d.state = 'pending'",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&attempts)
    .bind(&states)
    .bind(&delays)
    .bind(&statuses)
    .bind(&errors)
    .execute(pool)
    .await?;
    Ok(())
}
