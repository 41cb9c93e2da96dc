//! Confirmed, `mandatory` publishing over a supervised connection: an unroutable or refused
//! message is an error; a publish interrupted by a lost connection is published again on the
//! next connection's channel, within `broker.publish_timeout`.

use super::{
    headers::stamp_published_at,
    supervisor::{Broker, Lease},
};
use lapin::{
    BasicProperties, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use std::{sync::Arc, time::Duration};

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
    #[error("not confirmed within {0:?}")]
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

/// Publishes on one confirm-mode channel of a [`Broker`], opened when first needed and again
/// after every reconnect. Cheap to clone; clones share the channel, so concurrent publishes
/// pipeline their confirms.
#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    lane: Arc<tokio::sync::Mutex<Option<Arc<Lease>>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("connection", &self.broker.label())
            .finish()
    }
}

/// How a failed attempt is retried.
enum Retry {
    /// The connection or channel went away: publish again once there is a new one.
    Reconnect,
    /// The broker closed the channel over a publish (e.g. `NOT_FOUND`). It may have been
    /// another publish sharing the channel, so one more try on a fresh channel, then give up.
    Refused,
}

impl Publisher {
    pub fn new(broker: &Broker) -> Self {
        Self {
            broker: broker.clone(),
            lane: Arc::default(),
            timeout: broker.settings().publish_timeout,
        }
    }

    /// Publishes and waits for the broker's confirm, within `broker.publish_timeout`. A publish
    /// whose connection was lost before its confirm is published again on the next connection:
    /// it may then arrive twice (consumers are idempotent), but it is never dropped silently.
    pub async fn publish(&self, mut msg: Outgoing<'_>) -> Result<(), PublishError> {
        stamp_published_at(&mut msg.properties);
        tokio::time::timeout(self.timeout, self.publish_until_confirmed(&msg))
            .await
            .map_err(|_| PublishError::Timeout(self.timeout))?
    }

    async fn publish_until_confirmed(&self, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        let mut refused = false;
        loop {
            let lane = self.lane().await;
            let err = match publish_once(&lane, msg).await {
                Ok(confirmation) => return settle(confirmation, msg),
                Err(err) => err,
            };
            self.discard(&lane).await;
            match classify(&err) {
                Retry::Refused if refused => return Err(err.into()),
                Retry::Refused => refused = true,
                Retry::Reconnect => {
                    tracing::warn!(connection = %self.broker.label(), error = %err, "publish interrupted; publishing again on a new channel");
                    // Not a hot loop while the supervisor notices the loss.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The shared confirm channel, opened on the current connection if the last one is gone.
    async fn lane(&self) -> Arc<Lease> {
        let mut lane = self.lane.lock().await;
        if let Some(current) = lane.as_ref().filter(|l| l.is_current()) {
            return current.clone();
        }
        loop {
            let lease = self.broker.lease().await;
            match lease
                .channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
            {
                Ok(()) => {
                    let lease = Arc::new(lease);
                    *lane = Some(lease.clone());
                    return lease;
                }
                Err(err) => {
                    tracing::warn!(connection = %self.broker.label(), error = %err, "could not put a channel in confirm mode; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Forgets `failed` if it is still the shared channel (a concurrent publish may have
    /// replaced it already).
    async fn discard(&self, failed: &Arc<Lease>) {
        let mut lane = self.lane.lock().await;
        if lane.as_ref().is_some_and(|l| Arc::ptr_eq(l, failed)) {
            *lane = None;
        }
    }
}

async fn publish_once(lane: &Lease, msg: &Outgoing<'_>) -> Result<Confirmation, lapin::Error> {
    lane.channel
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

/// What the broker's confirm means for the caller.
fn settle(confirmation: Confirmation, msg: &Outgoing<'_>) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        // `mandatory` and no queue bound: the broker returns it, and still acks.
        Confirmation::Ack(Some(returned)) => Err(PublishError::Unroutable {
            exchange: msg.exchange.to_owned(),
            routing_key: msg.routing_key.to_owned(),
            reply: returned.reply_text.to_string(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

fn classify(err: &lapin::Error) -> Retry {
    if err.is_amqp_soft_error() {
        Retry::Refused
    } else {
        Retry::Reconnect
    }
}
