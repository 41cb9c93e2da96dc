//! Pipelined publisher confirms, shared by the AMQP intake load and the broker ceiling: up to
//! `window` publishes are outstanding; each confirm is checked (a `mandatory` message that came
//! back unroutable, or a nack, is a failure, not a success).

use futures_util::{StreamExt, stream::FuturesUnordered};
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};

/// A confirm-mode channel with a bounded window of outstanding confirms.
pub struct ConfirmWindow {
    channel: Channel,
    window: usize,
    pending: FuturesUnordered<PublisherConfirm>,
    pub confirmed: u64,
    pub failed: u64,
    /// The first failure, to show the user.
    pub first_failure: Option<String>,
}

impl ConfirmWindow {
    pub async fn open(channel: Channel, window: usize) -> Result<Self, lapin::Error> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            window: window.max(1),
            pending: FuturesUnordered::new(),
            confirmed: 0,
            failed: 0,
            first_failure: None,
        })
    }

    /// Publishes `mandatory`, after waiting for a confirm if the window is full.
    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), lapin::Error> {
        while self.pending.len() >= self.window {
            self.settle_one().await;
        }
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?;
        self.pending.push(confirm);
        Ok(())
    }

    /// Waits for every outstanding confirm.
    pub async fn finish(&mut self) {
        while !self.pending.is_empty() {
            self.settle_one().await;
        }
    }

    async fn settle_one(&mut self) {
        let failure = match self.pending.next().await {
            None => return,
            Some(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => {
                self.confirmed += 1;
                return;
            }
            Some(Ok(Confirmation::Ack(Some(returned)))) => {
                format!("unroutable: {}", returned.reply_text)
            }
            Some(Ok(Confirmation::Nack(_))) => "nacked by the broker".to_owned(),
            Some(Err(err)) => format!("confirm failed: {err}"),
        };
        self.failed += 1;
        self.first_failure.get_or_insert(failure);
    }
}
