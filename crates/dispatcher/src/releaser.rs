//! The deferred releaser: brings held rows back to their dispatch shard when they are due.
//!
//! Deferred messages wait in one of two places, told apart by `messages.reason`:
//! - `retry`: in a retry tier queue (`<p>.retry.<tier>`); the broker dead-letters it back to its
//!   shard when the TTL ends. The releaser never touches these.
//! - any other reason: held in the database only, for waits too long or too open-ended for a
//!   queue TTL — `recipient_hold` (131049, 24 h), `circuit_sender|template|account` (an open
//!   breaker), `retry_after` (Meta asked for longer than the last tier), `redrive` (an operator
//!   redrove a dead letter). Other policies (quiet time, caps) hold rows the same way: state
//!   `deferred`, their own reason, `not_before` = when to try again (NULL = until someone else
//!   moves it; the releaser leaves those alone).
//!
//! A due BULK hold is not published: it goes back to the feeder (`queued`, unpublished), which
//! releases it within its sender's window, so released bulk never floods a shard.
//!
//! A raised messaging limit makes `messaging_limit` holds due at once (`core::limit_holds`);
//! each tick first sweeps for holds recorded just after such a raise under the old limit.
//!
//! Each tick takes up to `releaser_batch` due holds with `FOR UPDATE SKIP LOCKED` (several
//! dispatcher processes never release the same row), publishes each to its shard with publisher
//! confirms, and only then marks the confirmed ones `queued` in the same transaction. A publish
//! that fails leaves its row held for the next tick; a crash after the publish but before the
//! commit republishes it later, which the dispatcher's claim makes harmless.

use futures_util::future::join_all;
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Outgoing, Publisher, Topology},
    clock::SharedClock,
    contract::DispatchEnvelope,
    domain::{MessageId, TenantId},
    limit_holds,
};

/// Why a release round failed; the next tick tries again.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct Due {
    id: MessageId,
    tenant_id: TenantId,
    phone_number_id: String,
    reason: Option<String>,
    kind: String,
}

/// Releases due holds every `interval` until cancelled; also refreshes the open-circuit gauge.
pub async fn run(
    pool: PgPool,
    publisher: Publisher,
    topology: Arc<Topology>,
    clock: SharedClock,
    interval: Duration,
    batch: i64,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(err) = limit_holds::sweep_recent_raises(&pool, clock.now()).await {
            tracing::warn!(error = %err, "could not sweep holds after a raised limit; next tick");
        }
        loop {
            match release_due(&pool, &publisher, &topology, &clock, batch).await {
                // A full batch: more may be due, go on at once.
                Ok(n) if n as i64 >= batch && !cancel.is_cancelled() => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "deferred releaser round failed; retrying next tick");
                    break;
                }
            }
        }
        if let Err(err) = report_open_circuits(&pool).await {
            tracing::warn!(error = %err, "could not count open circuits");
        }
    }
}

/// One round: publishes up to `limit` due holds and marks them `queued`. Returns how many.
pub async fn release_due(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    clock: &SharedClock,
    limit: i64,
) -> Result<usize, ReleaseError> {
    let now = clock.now();
    let mut tx = pool.begin().await?;
    // Cross-tenant by design (an operator task): each row's own tenant_id goes with it below.
    let due: Vec<Due> = sqlx::query_as(
        "SELECT id, tenant_id, phone_number_id, reason, kind FROM messages
         WHERE state = 'deferred' AND reason IS DISTINCT FROM 'retry' AND not_before <= $1
         ORDER BY not_before, id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let (bulk, single): (Vec<&Due>, Vec<&Due>) = due.iter().partition(|d| d.kind == "bulk");
    let published = join_all(single.iter().map(|d| publish(publisher, topology, d))).await;
    let released: Vec<&Due> = single
        .into_iter()
        .zip(published)
        .filter_map(|(d, ok)| ok.then_some(d))
        .collect();
    to_feeder(&mut tx, &bulk, now).await?;
    let ids: Vec<uuid::Uuid> = released.iter().map(|d| d.id.0).collect();
    let tenants: Vec<uuid::Uuid> = released.iter().map(|d| d.tenant_id.0).collect();
    let reasons: Vec<Option<&str>> = released.iter().map(|d| d.reason.as_deref()).collect();
    sqlx::query(
        "UPDATE messages m SET state = 'queued', reason = NULL, not_before = NULL, updated_at = $3
         FROM unnest($1::uuid[], $2::uuid[]) AS u(id, tenant_id)
         WHERE m.id = u.id AND m.tenant_id = u.tenant_id",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, state, reason, detail, at)
         SELECT id, tenant_id, 'queued', 'released', jsonb_build_object('held_for', reason), $4
         FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS e(id, tenant_id, reason)",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&reasons)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let n = released.len() + bulk.len();
    metrics::counter!("wafleet_deferred_released_total").increment(n as u64);
    Ok(n)
}

/// Gives due bulk holds back to the feeder: `queued` and unpublished, with a `queued` event.
async fn to_feeder(
    tx: &mut sqlx::PgConnection,
    bulk: &[&Due],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    if bulk.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = bulk.iter().map(|d| d.id.0).collect();
    let tenants: Vec<uuid::Uuid> = bulk.iter().map(|d| d.tenant_id.0).collect();
    let reasons: Vec<Option<&str>> = bulk.iter().map(|d| d.reason.as_deref()).collect();
    sqlx::query(
        "WITH moved AS (
             UPDATE messages m SET state = 'queued', reason = NULL, not_before = NULL,
                    published_at = NULL, updated_at = $4
             FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(id, tenant_id, reason)
             WHERE m.id = u.id AND m.tenant_id = u.tenant_id
             RETURNING m.id, m.tenant_id, u.reason)
         INSERT INTO message_events (message_id, tenant_id, state, reason, detail, at)
         SELECT id, tenant_id, 'queued', 'released',
                jsonb_build_object('held_for', reason, 'to', 'feeder'), $4
         FROM moved",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&reasons)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Publishes one envelope to the shard that owns its sender; `false` if not confirmed.
async fn publish(publisher: &Publisher, topology: &Topology, due: &Due) -> bool {
    let body = serde_json::to_vec(&DispatchEnvelope {
        message_id: due.id,
        tenant_id: due.tenant_id,
        phone_number_id: Some(due.phone_number_id.clone()),
    })
    .expect("envelope serialises");
    let mut headers = Default::default();
    amqp::inject_trace_context(&mut headers);
    let key = amqp::shard_key(topology.shard_for(&due.phone_number_id));
    let result = publisher
        .publish(Outgoing {
            exchange: &topology.dispatch_exchange(),
            routing_key: &key,
            body: &body,
            properties: amqp::json_properties(&due.id.to_string(), headers),
            mandatory: true,
        })
        .await;
    if let Err(err) = &result {
        tracing::warn!(error = %err, message_id = %due.id, "could not release a held message; next tick");
    }
    result.is_ok()
}

/// `wafleet_circuits_open{scope}`: breakers open or half-open right now, every tenant.
async fn report_open_circuits(pool: &PgPool) -> Result<(), sqlx::Error> {
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT scope, count(*) FROM circuits GROUP BY scope")
            .fetch_all(pool)
            .await?;
    for scope in ["sender", "template", "account"] {
        let n = counts
            .iter()
            .find(|(s, _)| s == scope)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(wafleet_core::metrics::CIRCUITS_OPEN, "scope" => scope).set(n as f64);
    }
    Ok(())
}
