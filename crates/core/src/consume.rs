//! The consume loop the intake and webhook consumers share: manual acks, a prefetch equal to the
//! number of deliveries handled at once, and on shutdown no new deliveries while in-flight
//! handlers finish (they settle their own delivery, after its durable effect). A consumer error
//! waits for lapin's connection recovery; the broker redelivers whatever was unacked.

use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Consumes `queue` until `cancel`, handing each delivery to `handle`.
pub async fn consume_concurrently<F, Fut>(
    channel: &Channel,
    queue: &str,
    consumer_tag: &str,
    concurrency: u16,
    cancel: CancellationToken,
    handle: F,
) -> Result<(), lapin::Error>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    channel
        .basic_qos(concurrency, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    consumer
        .take_until(cancel.clone().cancelled_owned())
        .for_each_concurrent(usize::from(concurrency), |delivery| {
            let cancel = cancel.clone();
            let handled = delivery.map(&handle);
            async move {
                match handled {
                    Ok(work) => work.await,
                    Err(err) => {
                        tracing::warn!(queue, error = %err, "consumer error; waiting for the connection to recover");
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = channel.wait_for_recovery(err) => {}
                        }
                    }
                }
            }
        })
        .await;
    Ok(())
}

/// How [`consume_batches`] gathers deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Unacknowledged deliveries at once (the prefetch), across the batches in flight.
    pub prefetch: u16,
    /// Deliveries handled together.
    pub max: usize,
    /// How long a batch waits to fill once it has its first delivery.
    pub wait: std::time::Duration,
}

/// Consumes `queue` until `cancel`, handing deliveries to `handle` in batches: whatever is
/// waiting, up to `max`, gathered for at most `wait` after the first. Batches run concurrently
/// (the prefetch bounds what is in flight); each settles its own deliveries after its durable
/// effect. On shutdown no new deliveries are taken while in-flight batches finish.
pub async fn consume_batches<F, Fut>(
    channel: &Channel,
    queue: &str,
    consumer_tag: &str,
    batching: Batching,
    cancel: CancellationToken,
    handle: F,
) -> Result<(), lapin::Error>
where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    channel
        .basic_qos(batching.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let batches = tokio_util::task::TaskTracker::new();
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            next = consumer.next() => next,
        };
        let mut batch = match first {
            None => break,
            Some(Ok(d)) => vec![d],
            Some(Err(err)) => {
                tracing::warn!(queue, error = %err, "consumer error; waiting for the connection to recover");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = channel.wait_for_recovery(err) => {}
                }
                continue;
            }
        };
        let deadline = tokio::time::Instant::now() + batching.wait;
        while batch.len() < batching.max {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(d))) => batch.push(d),
                _ => break,
            }
        }
        batches.spawn(handle(batch));
    }
    batches.close();
    batches.wait().await;
    Ok(())
}
