//! The outbox sweep: rows written `accepted` whose publish was never confirmed (broker down,
//! process crash between commit and publish) are published again. Safe to run in every ingest
//! replica: rows are locked with SKIP LOCKED while one replica publishes them.

use crate::publish::DispatchPublisher;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wafleet_core::domain::{MessageId, TenantId};

/// Sweeps every `interval` for rows older than `after`.
pub async fn run_sweep(
    pool: PgPool,
    publisher: DispatchPublisher,
    after: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match sweep_once(&pool, &publisher, after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(republished = n, "outbox sweep republished messages"),
            Err(err) => tracing::warn!(error = %err, "outbox sweep failed; will retry"),
        }
    }
}

/// One pass; returns how many rows were republished.
pub async fn sweep_once(
    pool: &PgPool,
    publisher: &DispatchPublisher,
    after: Duration,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(MessageId, TenantId, String)> = sqlx::query_as(
        "SELECT id, tenant_id, phone_number_id FROM messages
         WHERE state = 'accepted' AND published_at IS NULL AND direction = 'out'
           AND created_at < now() - make_interval(secs => $1)
         ORDER BY created_at
         LIMIT 500
         FOR UPDATE SKIP LOCKED",
    )
    .bind(after.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let mut published = 0;
    for (id, tenant, phone_number_id) in &rows {
        match publisher.publish(*tenant, *id, phone_number_id).await {
            Ok(()) => published += 1,
            Err(err) => {
                tracing::warn!(error = %err, message_id = %id, "outbox republish failed");
                break;
            }
        }
    }
    tx.commit().await?;
    metrics::counter!("wafleet_outbox_republished_total").increment(published as u64);
    Ok(published)
}
