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
