//! Publishing accepted messages to their dispatch shard, confirmed and `mandatory`, and
//! recording that the publish was confirmed (the outbox mark) in batches.

use futures_util::FutureExt;
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Outgoing, PublishError, Publisher, Topology},
    contract::DispatchEnvelope,
    domain::{MessageId, TenantId},
};

/// Publishes dispatch envelopes; confirmed ids are marked published by a background batcher.
#[derive(Clone)]
pub struct DispatchPublisher {
    publisher: Publisher,
    topology: Arc<Topology>,
    marks: mpsc::Sender<MessageId>,
}

impl DispatchPublisher {
    pub fn new(
        publisher: Publisher,
        topology: Arc<Topology>,
        marks: mpsc::Sender<MessageId>,
    ) -> Self {
        Self {
            publisher,
            topology,
            marks,
        }
    }

    /// Publishes one message to the shard that owns its sender. On success the row's outbox mark
    /// is queued; on failure the row stays unmarked and the outbox sweep publishes it later.
    #[tracing::instrument(name = "publish wafleet.dispatch", skip_all, fields(
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.destination.name = %self.topology.dispatch_exchange(),
        messaging.message.id = %message_id,
    ))]
    pub async fn publish(
        &self,
        tenant_id: TenantId,
        message_id: MessageId,
        phone_number_id: &str,
    ) -> Result<(), PublishError> {
        let shard = self.topology.shard_for(phone_number_id);
        let body = serde_json::to_vec(&DispatchEnvelope {
            message_id,
            tenant_id,
        })
        .expect("envelope serialises");
        let mut headers = Default::default();
        amqp::inject_trace_context(&mut headers);
        let exchange = self.topology.dispatch_exchange();
        let key = amqp::shard_key(shard);
        self.publisher
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: &key,
                body: &body,
                properties: amqp::json_properties(&message_id.to_string(), headers),
                mandatory: true,
            })
            .await?;
        metrics::counter!("wafleet_dispatch_published_total").increment(1);
        // If the marker is gone (shutdown), the sweep re-publishes; the dispatcher is idempotent.
        let _ = self.marks.send(message_id).await;
        Ok(())
    }
}

/// Marks confirmed publishes in batches: one UPDATE per up to `max` ids or `wait`.
pub async fn run_marker(
    pool: PgPool,
    mut rx: mpsc::Receiver<MessageId>,
    cancel: CancellationToken,
) {
    const MAX: usize = 500;
    let wait = Duration::from_millis(20);
    let mut batch: Vec<uuid::Uuid> = Vec::with_capacity(MAX);
    loop {
        let first = tokio::select! {
            id = rx.recv() => id,
            _ = cancel.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first.0);
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(id)) => batch.push(id.0),
                _ => break,
            }
        }
        flush(&pool, &mut batch).await;
    }
    // Drain what is already queued so a clean shutdown leaves nothing for the sweep.
    while let Some(Some(id)) = rx.recv().now_or_never() {
        batch.push(id.0);
    }
    flush(&pool, &mut batch).await;
}

async fn flush(pool: &PgPool, batch: &mut Vec<uuid::Uuid>) {
    if batch.is_empty() {
        return;
    }
    // Internal bookkeeping by primary key (ids are global UUIDs), not a tenant-facing query.
    // Rows a dispatcher is claiming right now are skipped, not waited for (and so never
    // deadlocked with): once claimed they no longer need the mark, which only keeps the outbox
    // sweep off rows still `accepted`. Should a skipped claim roll back, the sweep republishes
    // the row and the dispatcher's claim makes the second envelope harmless.
    let result = sqlx::query(
        "UPDATE messages SET published_at = now()
         WHERE id IN (SELECT id FROM messages WHERE id = ANY($1) AND published_at IS NULL
                      ORDER BY id FOR UPDATE SKIP LOCKED)",
    )
    .bind(&*batch)
    .execute(pool)
    .await;
    if let Err(err) = result {
        // Unmarked rows are re-published by the sweep; duplicates are harmless downstream.
        tracing::warn!(error = %err, count = batch.len(), "could not mark published messages");
    }
    batch.clear();
}
