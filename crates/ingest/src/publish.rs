//! Publishing accepted messages to their dispatch shard, confirmed and `mandatory`, and
//! recording that the publish was confirmed (the outbox mark) in batches.

use futures_util::FutureExt;
use sqlx::PgPool;
use std::{collections::VecDeque, sync::Arc, time::Duration};
use tokio::{sync::mpsc, time::Instant};
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
            phone_number_id: Some(phone_number_id.to_owned()),
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

/// How long a confirmed publish waits before it is marked, at most. A dispatcher usually claims
/// the row well within it, and a claimed row needs no mark (the sweep only looks at rows still
/// `accepted`), so a message that flows normally costs no outbox write at all: one rewrite of a
/// wide, many-indexed row less per message. Only rows still queued by then are marked.
const MARK_DELAY: Duration = Duration::from_secs(1);

/// The delay the marker keeps: [`MARK_DELAY`], or a quarter of the sweep's `outbox_after` if that
/// is shorter, so the sweep never republishes a row only because its mark was still waiting.
pub fn mark_delay(outbox_after: Duration) -> Duration {
    MARK_DELAY.min(outbox_after / 4)
}

/// Marks confirmed publishes of rows still `accepted` once they are `delay` old, in batches of
/// up to 500 ids per UPDATE. Runs until every sender is dropped or `cancel`; what is waiting
/// then is marked at once, so a clean shutdown leaves nothing for the sweep.
pub async fn run_marker(
    pool: PgPool,
    mut rx: mpsc::Receiver<MessageId>,
    delay: Duration,
    cancel: CancellationToken,
) {
    let mut waiting: VecDeque<(Instant, uuid::Uuid)> = VecDeque::new();
    loop {
        let due = waiting.front().map(|(at, _)| *at + delay);
        tokio::select! {
            id = rx.recv() => match id {
                Some(id) => waiting.push_back((Instant::now(), id.0)),
                None => break,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
            _ = cancel.cancelled() => break,
        }
        let now = Instant::now();
        let ready = waiting
            .iter()
            .take_while(|(at, _)| *at + delay <= now)
            .count();
        if ready > 0 {
            let ids: Vec<uuid::Uuid> = waiting.drain(..ready).map(|(_, id)| id).collect();
            flush(&pool, &ids).await;
        }
    }
    while let Some(Some(id)) = rx.recv().now_or_never() {
        waiting.push_back((Instant::now(), id.0));
    }
    let ids: Vec<uuid::Uuid> = waiting.into_iter().map(|(_, id)| id).collect();
    flush(&pool, &ids).await;
}

async fn flush(pool: &PgPool, ids: &[uuid::Uuid]) {
    for chunk in ids.chunks(500) {
        // Internal bookkeeping by primary key (ids are global UUIDs), not a tenant-facing
        // query. Rows a dispatcher claimed (or is claiming: skipped, never waited for, so never
        // deadlocked with) no longer need the mark, which only keeps the outbox sweep off rows
        // still `accepted`. Should a skipped claim roll back, the sweep republishes the row and
        // the dispatcher's claim makes the second envelope harmless.
        let result = sqlx::query(
            "UPDATE messages SET published_at = now()
             WHERE id IN (SELECT id FROM messages
                          WHERE id = ANY($1) AND published_at IS NULL AND state = 'accepted'
                          ORDER BY id FOR UPDATE SKIP LOCKED)",
        )
        .bind(chunk)
        .execute(pool)
        .await;
        if let Err(err) = result {
            // Unmarked rows are re-published by the sweep; duplicates are harmless downstream.
            tracing::warn!(error = %err, count = chunk.len(), "could not mark published messages");
        }
    }
}
