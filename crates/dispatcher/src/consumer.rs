//! The consume loop of one dispatch shard: gathers a micro-batch of deliveries and hands it to
//! `dispatch::handle_batch` in a task of its own, so the loop goes on taking deliveries while
//! earlier batches wait for their senders' budgets (a slow sender never stalls the shard; the
//! prefetch bounds what is in flight). Each delivery is settled only after its outcome is
//! recorded — republishing to a retry tier or to `<p>.dead` (confirmed) before acking.

use crate::dispatch::{Ctx, Disposition, handle_batch};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    types::AMQPValue,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Broker, Outgoing, Publisher, Topology},
    consume::Batching,
    contract::{DispatchEnvelope, RETRY_COUNT_HEADER},
    domain::MessageId,
};

/// Consumes shard `shard` until cancelled, on a new channel after every reconnect; the
/// in-flight batches are finished before returning.
pub async fn run_shard(
    ctx: Arc<Ctx>,
    topology: Arc<Topology>,
    publisher: Publisher,
    broker: Broker,
    shard: u16,
    cancel: CancellationToken,
) {
    let queue = topology.shard_queue(shard);
    let tag = format!(
        "wafleet-dispatcher-{shard}-{}",
        uuid::Uuid::new_v4().simple()
    );
    let batching = Batching {
        prefetch: ctx.settings.prefetch,
        max: ctx.settings.batch_size,
        wait: ctx.settings.batch_wait,
        // Envelopes are small and alike: the count bounds the batch.
        max_bytes: None,
    };
    wafleet_core::consume::consume_batches(&broker, &queue, &tag, batching, cancel, |batch| {
        process(ctx.clone(), topology.clone(), publisher.clone(), batch)
    })
    .await
}

#[tracing::instrument(name = "process wafleet.dispatch", skip_all, fields(
    otel.kind = "consumer",
    messaging.system = "rabbitmq",
    messaging.operation.type = "process",
    messaging.batch.message_count = deliveries.len(),
))]
async fn process(
    ctx: Arc<Ctx>,
    topology: Arc<Topology>,
    publisher: Publisher,
    deliveries: Vec<Delivery>,
) {
    if let Some(first) = deliveries.first() {
        amqp::adopt_trace_context(&tracing::Span::current(), &first.properties);
    }
    let mut pending: HashMap<MessageId, Vec<Delivery>> = HashMap::new();
    let mut envelopes = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        amqp::record_consumer_lag("dispatch", &d.properties);
        amqp::link_trace_context(&tracing::Span::current(), &d.properties);
        match serde_json::from_slice::<DispatchEnvelope>(&d.data) {
            Ok(env) => {
                pending.entry(env.message_id).or_default().push(d);
                envelopes.push(env);
            }
            Err(err) => {
                // Not ours to interpret: the queue dead-letters it to `<p>.dead` for a human.
                tracing::error!(error = %err, "unreadable dispatch message; dead-lettering");
                settle(d.nack(BasicNackOptions::default()).await);
            }
        }
    }
    if envelopes.is_empty() {
        return;
    }
    let pending = Mutex::new(pending);
    let (ctx, topology, publisher) = (&*ctx, &*topology, &publisher);
    let result = handle_batch(ctx, &envelopes, |decided: Vec<(MessageId, Disposition)>| {
        let deliveries: Vec<(Delivery, Disposition)> = {
            let mut pending = pending.lock().expect("pending deliveries");
            decided
                .into_iter()
                .flat_map(|(id, d)| {
                    pending
                        .remove(&id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |delivery| (delivery, d))
                })
                .collect()
        };
        async move {
            for (delivery, disposition) in deliveries {
                dispose(ctx, topology, publisher, delivery, disposition).await;
            }
        }
    })
    .await;
    let left: Vec<Delivery> = pending
        .into_inner()
        .expect("pending deliveries")
        .into_values()
        .flatten()
        .collect();
    if let Err(err) = &result {
        tracing::error!(error = %err, "database unavailable; requeueing the batch");
        tokio::time::sleep(Duration::from_secs(1)).await;
    } else if !left.is_empty() {
        tracing::warn!(
            n = left.len(),
            "deliveries left unsettled by the batch; requeueing"
        );
    }
    for d in left {
        dispose(ctx, topology, publisher, d, Disposition::Requeue).await;
    }
}

/// Settles one delivery as its disposition says: forward (confirmed) then ack, or requeue.
async fn dispose(
    ctx: &Ctx,
    topology: &Topology,
    publisher: &Publisher,
    delivery: Delivery,
    disposition: Disposition,
) {
    let forwarded = match disposition {
        Disposition::Done => Ok(()),
        Disposition::Requeue => {
            settle(
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await,
            );
            return;
        }
        Disposition::RetryLater { tier } => {
            let ttl = jittered(
                ctx.settings.retry_tiers[tier],
                ctx.settings.retry_jitter_percent,
            );
            forward(
                publisher,
                &topology.retry_exchange(tier),
                &delivery,
                Some(ttl),
            )
            .await
        }
        Disposition::Dead => forward(publisher, &topology.dead_exchange(), &delivery, None).await,
    };
    match forwarded {
        Ok(()) => {
            count_forwarded(topology, disposition);
            settle(delivery.ack(BasicAckOptions::default()).await)
        }
        Err(err) => {
            tracing::error!(error = %err, "could not forward a dispatch message; requeueing it");
            settle(
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await,
            );
        }
    }
}

/// The tier's delay shortened by a random share of up to `percent`. The queue's own TTL stays
/// the upper bound; a per-message `expiration` below it spreads a burst of retries out.
fn jittered(delay: Duration, percent: u8) -> Duration {
    let cut = rand::random_range(0..=u32::from(percent.min(50)));
    delay * (100 - cut) / 100
}

/// Republishes a delivery (same body, routing key and trace headers; retry count + 1), with a
/// per-message TTL when given.
async fn forward(
    publisher: &Publisher,
    exchange: &str,
    delivery: &Delivery,
    ttl: Option<Duration>,
) -> Result<(), amqp::PublishError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let retries = amqp::header_i64(&delivery.properties, RETRY_COUNT_HEADER).unwrap_or(0) + 1;
    headers.insert(RETRY_COUNT_HEADER.into(), AMQPValue::LongLongInt(retries));
    let mut properties = delivery.properties.clone().with_headers(headers);
    if let Some(ttl) = ttl {
        properties = properties.with_expiration(ttl.as_millis().max(1).to_string().into());
    }
    publisher
        .publish(Outgoing {
            exchange,
            routing_key: delivery.routing_key.as_str(),
            body: &delivery.data,
            properties,
            mandatory: true,
        })
        .await
}

/// Acks and nacks can fail after a reconnect (their channel is gone): the broker redelivers
/// and the claim makes the redelivery harmless.
fn settle(result: Result<bool, lapin::Error>) {
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not settle a dispatch delivery; it will be redelivered");
    }
}

/// Retries per tier and dead letters, counted once the forward is confirmed.
fn count_forwarded(topology: &Topology, disposition: Disposition) {
    match disposition {
        Disposition::Done | Disposition::Requeue => {}
        Disposition::RetryLater { tier } => {
            wafleet_core::metrics::retried(amqp::tier_label(topology.retry_tiers[tier]));
        }
        Disposition::Dead => wafleet_core::metrics::dead_lettered(),
    }
}
