//! Notifications for upstream through a transactional outbox: events are written to
//! `outbound_events` in the same transaction as the state change they describe (here, and in
//! the dispatcher's `record`), and a drainer publishes them to `<p>.events` with confirms, in id
//! order, then deletes them (the outbox is a queue, not a log: the message history is the
//! record, and a deleted row costs no index entry where marking it would rewrite it). A crash
//! between the publish and the delete republishes: delivery is at-least-once, never lost.
//! The same transaction writes the events' HTTP deliveries for tenants' webhook endpoints
//! (`endpoints::fanout`), so an event reaches both or (rolled back, drained again) neither.

use futures_util::future::try_join_all;
use serde::Serialize;
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Outgoing, Publisher, Topology},
    domain::TenantId,
};

/// Rows published per round trip.
const BATCH: i64 = 200;

/// Writes `events` for `<kind>.<tenant>` inside the caller's transaction.
pub async fn enqueue<T: Serialize>(
    tx: &mut sqlx::PgConnection,
    kind: &str,
    tenant: TenantId,
    events: &[T],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let key = format!("{kind}.{tenant}");
    let bodies: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).expect("events serialise"))
        .collect();
    // ORDER BY the position so ids (the publish order) follow the order of the changes.
    sqlx::query(
        "INSERT INTO outbound_events (tenant_id, routing_key, body)
         SELECT $1, $2, b FROM unnest($3::jsonb[]) WITH ORDINALITY AS u(b, n) ORDER BY n",
    )
    .bind(tenant)
    .bind(&key)
    .bind(&bodies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Why a drain round stopped; the rows stay unpublished and the next round retries them.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Publish(#[from] amqp::PublishError),
}

/// Publishes pending rows of `outbound_events`.
pub struct Drainer {
    pub pool: sqlx::PgPool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    /// Woken after a commit that wrote events, so they leave at once rather than on the tick.
    pub wake: Arc<Notify>,
    pub interval: Duration,
    /// Woken after a round that wrote HTTP deliveries.
    pub deliveries_ready: Arc<Notify>,
}

impl Drainer {
    /// Publishes one batch; returns how many rows it published. `SKIP LOCKED` lets several
    /// replicas drain side by side without publishing the same row twice.
    pub async fn drain_once(&self) -> Result<usize, DrainError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(
            i64,
            String,
            Value,
            uuid::Uuid,
            chrono::DateTime<chrono::Utc>,
        )> = sqlx::query_as(
            "SELECT id, routing_key, body, tenant_id, created_at FROM outbound_events
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let exchange = self.topology.events_exchange();
        let bodies: Vec<Vec<u8>> = rows
            .iter()
            .map(|(_, _, b, _, _)| serde_json::to_vec(b).expect("json"))
            .collect();
        // Publishes are pipelined on one confirm channel (frames leave in id order) and each
        // waits for its own confirm.
        try_join_all(rows.iter().zip(&bodies).map(|((id, key, ..), body)| {
            let exchange = &exchange;
            async move {
                let mut headers = Default::default();
                amqp::inject_trace_context(&mut headers);
                self.publisher
                    .publish(Outgoing {
                        exchange,
                        routing_key: key,
                        body,
                        properties: amqp::json_properties(&format!("event-{id}"), headers),
                        // A topic nobody subscribed to yet is not an error: upstream binds what
                        // it wants.
                        mandatory: false,
                    })
                    .await
            }
        }))
        .await?;
        let events: Vec<crate::endpoints::fanout::Event> = rows
            .iter()
            .map(
                |(id, key, body, tenant_id, created_at)| crate::endpoints::fanout::Event {
                    id: *id,
                    tenant_id: *tenant_id,
                    routing_key: key,
                    body,
                    created_at: *created_at,
                },
            )
            .collect();
        let deliveries = crate::endpoints::fanout::fan_out(&mut tx, &events).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM outbound_events WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if deliveries > 0 {
            self.deliveries_ready.notify_one();
        }
        metrics::counter!("wafleet_events_published_total").increment(ids.len() as u64);
        Ok(ids.len())
    }

    /// Drains whenever woken, and every `interval`, until cancelled; then drains once more.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            self.drain_all().await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        self.drain_all().await;
    }

    async fn drain_all(&self) {
        loop {
            match self.drain_once().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "publishing events failed; will retry");
                    return;
                }
            }
        }
    }
}
