//! The consume loops every consumer shares (ingest's AMQP intake, the webhook consumer, the
//! dispatcher's shards): manual acks, a prefetch bounding what is in flight, and on shutdown no
//! new deliveries while in-flight handlers finish (they settle their own delivery, after its
//! durable effect).
//!
//! A consumer outlives its channel. When the connection is lost (or the broker cancels the
//! consumer, or the channel dies) the loop takes a new channel from the [`Broker`] once it has
//! reconnected and consumes again. Deliveries that were unacked on the old channel are
//! redelivered by the broker; their handlers' acks fail harmlessly on the dead channel, and the
//! handlers are idempotent, so a redelivery does not repeat a durable effect.

use crate::amqp::{Backoff, Broker, Lease};
use futures_util::{StreamExt, future::ready};
use lapin::{
    Consumer,
    message::Delivery,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Consumes `queue` until `cancel`, handing each delivery to `handle`, up to `concurrency` at
/// once (the prefetch). A lost channel is replaced once its in-flight handlers are done.
pub async fn consume_concurrently<F, Fut>(
    broker: &Broker,
    queue: &str,
    consumer_tag: &str,
    concurrency: u16,
    cancel: CancellationToken,
    handle: F,
) where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut resume = Resume::new(broker, queue, consumer_tag, concurrency, &cancel);
    while let Some((lease, consumer)) = resume.next().await {
        let over = async {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = lease.lost() => {}
            }
        };
        consumer
            .take_until(over)
            .take_while(|delivery| ready(delivery_ok(queue, delivery)))
            .filter_map(|delivery| ready(delivery.ok()))
            .for_each_concurrent(usize::from(concurrency), &handle)
            .await;
    }
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
    /// A batch takes no more deliveries once their bodies add up to this many bytes (`None`:
    /// no bound). Where one body can carry many items (Meta batches up to 1,000 status updates
    /// in one webhook), the number of deliveries alone does not bound how many rows a batch
    /// locks, nor for how long.
    pub max_bytes: Option<usize>,
}

/// Consumes `queue` until `cancel`, handing deliveries to `handle` in batches: whatever is
/// waiting, up to `max`, gathered for at most `wait` after the first. Batches run concurrently
/// (the prefetch bounds what is in flight); each settles its own deliveries after its durable
/// effect. A lost channel is replaced at once (batches still running on it finish on their own).
/// On shutdown no new deliveries are taken while in-flight batches finish.
pub async fn consume_batches<F, Fut>(
    broker: &Broker,
    queue: &str,
    consumer_tag: &str,
    batching: Batching,
    cancel: CancellationToken,
    handle: F,
) where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let batches = tokio_util::task::TaskTracker::new();
    let mut resume = Resume::new(broker, queue, consumer_tag, batching.prefetch, &cancel);
    'subscriptions: while let Some((lease, mut consumer)) = resume.next().await {
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => break 'subscriptions,
                _ = lease.lost() => break,
                next = consumer.next() => next,
            };
            let mut batch = match first {
                Some(Ok(delivery)) => vec![delivery],
                Some(Err(err)) => {
                    log_consumer_error(queue, &err);
                    break;
                }
                None => break,
            };
            let deadline = tokio::time::Instant::now() + batching.wait;
            let mut bytes = batch[0].data.len();
            while batch.len() < batching.max && batching.max_bytes.is_none_or(|max| bytes < max) {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(Some(Ok(d))) => {
                        bytes += d.data.len();
                        batch.push(d);
                    }
                    _ => break,
                }
            }
            batches.spawn(handle(batch));
        }
    }
    batches.close();
    batches.wait().await;
}

/// Whether a consumer stream item is a delivery; an error ends the subscription (lapin cancels
/// the consumer after it) and is logged here.
fn delivery_ok(queue: &str, delivery: &Result<Delivery, lapin::Error>) -> bool {
    if let Err(err) = delivery {
        log_consumer_error(queue, err);
    }
    delivery.is_ok()
}

fn log_consumer_error(queue: &str, err: &lapin::Error) {
    tracing::warn!(queue, error = %err, "consumer error; resuming on a new channel");
}

/// Subscribes to a queue the first time and again after each loss: a fresh channel with the
/// prefetch set, then `basic.consume`, retried with backoff until it works or `cancel` fires.
struct Resume<'a> {
    broker: &'a Broker,
    queue: &'a str,
    tag: &'a str,
    prefetch: u16,
    cancel: &'a CancellationToken,
    backoff: Backoff,
    subscribed_before: bool,
}

impl<'a> Resume<'a> {
    fn new(
        broker: &'a Broker,
        queue: &'a str,
        tag: &'a str,
        prefetch: u16,
        cancel: &'a CancellationToken,
    ) -> Self {
        let settings = broker.settings();
        Self {
            broker,
            queue,
            tag,
            prefetch,
            cancel,
            backoff: Backoff::new(settings.reconnect_min, settings.reconnect_max),
            subscribed_before: false,
        }
    }

    /// The next subscription; `None` once cancelled.
    async fn next(&mut self) -> Option<(Lease, Consumer)> {
        if self.cancel.is_cancelled() {
            return None;
        }
        if self.subscribed_before {
            tracing::warn!(
                queue = self.queue,
                "consumer lost; consuming again once the broker is back"
            );
            // A consumer the broker cancels right after each subscribe must not spin.
            self.pause().await?;
        }
        loop {
            let attempt = tokio::select! {
                _ = self.cancel.cancelled() => return None,
                attempt = self.subscribe() => attempt,
            };
            match attempt {
                Ok(subscription) => {
                    self.backoff.reset();
                    self.subscribed_before = true;
                    return Some(subscription);
                }
                Err(err) => {
                    tracing::warn!(queue = self.queue, error = %err, "could not start consuming; retrying");
                    self.pause().await?;
                }
            }
        }
    }

    async fn subscribe(&self) -> Result<(Lease, Consumer), lapin::Error> {
        let lease = self.broker.lease().await;
        lease
            .channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = lease
            .channel
            .basic_consume(
                self.queue.into(),
                self.tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((lease, consumer))
    }

    /// Waits the next backoff delay; `None` if cancelled meanwhile.
    async fn pause(&mut self) -> Option<()> {
        let delay = self.backoff.next_delay();
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            _ = tokio::time::sleep(delay) => Some(()),
        }
    }
}
