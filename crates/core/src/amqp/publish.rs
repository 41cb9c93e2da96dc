//! Confirmed, `mandatory` publishing: an unroutable or refused message is an error, and a
//! publish that failed because the connection was recovering is retried once it has.

use super::headers::stamp_published_at;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use std::time::Duration;

/// Why a publish did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no queue is bound for {exchange}/{routing_key}: {reply}")]
    Unroutable {
        exchange: String,
        routing_key: String,
        reply: String,
    },
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no confirm within {0:?}")]
    Timeout(Duration),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
    /// Unroutable messages come back as errors instead of vanishing.
    pub mandatory: bool,
}

/// A channel in confirm mode. Cheap to clone; concurrent publishes pipeline their confirms.
#[derive(Clone, Debug)]
pub struct Publisher {
    channel: Channel,
    timeout: Duration,
}

impl Publisher {
    pub async fn open(conn: &Connection) -> Result<Self, lapin::Error> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            timeout: Duration::from_secs(10),
        })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes and waits for the broker's confirm. Publishes that fail because the connection
    /// is recovering are retried once it has recovered (a publish that never reached the broker
    /// is not a duplicate; one whose confirm was lost may be, and consumers are idempotent).
    pub async fn publish(&self, mut msg: Outgoing<'_>) -> Result<(), PublishError> {
        stamp_published_at(&mut msg.properties);
        tokio::time::timeout(self.timeout, self.publish_inner(&msg))
            .await
            .map_err(|_| PublishError::Timeout(self.timeout))?
    }

    async fn publish_inner(&self, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = async {
                self.channel
                    .basic_publish(
                        msg.exchange.into(),
                        msg.routing_key.into(),
                        BasicPublishOptions {
                            mandatory: msg.mandatory,
                            ..Default::default()
                        },
                        msg.body,
                        msg.properties.clone(),
                    )
                    .await?
                    .await
            }
            .await;
            match result {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Ack(Some(returned))) => {
                    return Err(PublishError::Unroutable {
                        exchange: msg.exchange.to_owned(),
                        routing_key: msg.routing_key.to_owned(),
                        reply: returned.reply_text.to_string(),
                    });
                }
                Ok(Confirmation::Nack(_)) => return Err(PublishError::Nacked),
                Err(err) if attempts < 3 => {
                    tracing::warn!(error = %err, "publish failed; waiting for the connection to recover");
                    self.channel.wait_for_recovery(err).await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}
