//! The topology every service declares, derived from one prefix: names, the shard of a
//! sender, and idempotent declaration (and deletion, for tests).

use super::{ConnectError, SETUP_TIMEOUT};
use lapin::{
    Channel, ExchangeKind,
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Every exchange and queue name of one deployment, derived from its prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub shards: u16,
    pub retry_tiers: Vec<Duration>,
}

impl Topology {
    pub fn new(prefix: &str, shards: u16, retry_tiers: &[Duration]) -> Self {
        Self {
            prefix: prefix.to_owned(),
            shards,
            retry_tiers: retry_tiers.to_vec(),
        }
    }

    pub fn from_settings(s: &crate::Settings) -> Self {
        Self::new(&s.amqp_prefix, s.dispatch.shards, &s.dispatch.retry_tiers)
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    pub fn intake_exchange(&self) -> String {
        self.name("intake")
    }
    pub fn intake_queue(&self) -> String {
        self.name("intake")
    }
    pub fn intake_rejected_queue(&self) -> String {
        self.name("intake.rejected")
    }
    pub fn dispatch_exchange(&self) -> String {
        self.name("dispatch")
    }
    pub fn shard_queue(&self, shard: u16) -> String {
        self.name(&format!("dispatch.{shard}"))
    }
    pub fn retry_exchange(&self, tier: usize) -> String {
        self.name(&format!("retry.{}", tier_label(self.retry_tiers[tier])))
    }
    pub fn dead_exchange(&self) -> String {
        self.name("dead")
    }
    pub fn dead_queue(&self) -> String {
        self.name("dead")
    }
    pub fn webhooks_exchange(&self) -> String {
        self.name("webhooks")
    }
    pub fn webhooks_queue(&self) -> String {
        self.name("webhooks")
    }
    pub fn webhooks_dead_queue(&self) -> String {
        self.name("webhooks.dead")
    }
    pub fn events_exchange(&self) -> String {
        self.name("events")
    }

    /// The shard that owns a sender: a stable hash (SHA-256, first 8 bytes) so every process
    /// and every version agrees.
    pub fn shard_for(&self, phone_number_id: &str) -> u16 {
        let digest = Sha256::digest(phone_number_id.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(head) % u64::from(self.shards)) as u16
    }

    /// Declares everything, idempotently (same arguments every time, or the broker closes the
    /// channel with PRECONDITION_FAILED), within `SETUP_TIMEOUT`.
    pub async fn declare(&self, channel: &Channel) -> Result<(), ConnectError> {
        tokio::time::timeout(SETUP_TIMEOUT, self.declare_all(channel))
            .await
            .map_err(|_| ConnectError::Timeout(SETUP_TIMEOUT))?
            .map_err(ConnectError::Broker)
    }

    async fn declare_all(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let exchange = |name: String, kind: ExchangeKind| async move {
            channel
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await
        };
        let queue = |name: String, args: FieldTable| async move {
            channel
                .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
                .await
                .map(|_| ())
        };
        let bind = |q: String, x: String, key: String| async move {
            channel
                .queue_bind(
                    q.into(),
                    x.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        };

        // Intake.
        exchange(self.intake_exchange(), ExchangeKind::Direct).await?;
        queue(self.intake_queue(), quorum(Some(&self.dead_exchange()))).await?;
        bind(self.intake_queue(), self.intake_exchange(), "send".into()).await?;
        queue(self.intake_rejected_queue(), quorum(None)).await?;

        // Give-up parking lot.
        exchange(self.dead_exchange(), ExchangeKind::Fanout).await?;
        queue(self.dead_queue(), quorum(None)).await?;
        bind(self.dead_queue(), self.dead_exchange(), String::new()).await?;

        // Dispatch shards.
        exchange(self.dispatch_exchange(), ExchangeKind::Direct).await?;
        for shard in 0..self.shards {
            let mut args = quorum(Some(&self.dead_exchange()));
            // One active consumer per shard: one owner per sender, exact limiter, kept order.
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            queue(self.shard_queue(shard), args).await?;
            bind(
                self.shard_queue(shard),
                self.dispatch_exchange(),
                shard_key(shard),
            )
            .await?;
        }

        // Retry tiers: wait out the TTL, then dead-letter back to the dispatch exchange with the
        // original `shard.<n>` routing key.
        for (tier, delay) in self.retry_tiers.iter().enumerate() {
            let name = self.retry_exchange(tier);
            exchange(name.clone(), ExchangeKind::Fanout).await?;
            let mut args = quorum(Some(&self.dispatch_exchange()));
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            queue(name.clone(), args).await?;
            bind(name.clone(), name, String::new()).await?;
        }

        // Webhooks.
        exchange(self.webhooks_exchange(), ExchangeKind::Direct).await?;
        queue(self.webhooks_dead_queue(), quorum(None)).await?;
        let mut args = quorum(None);
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.webhooks_dead_queue().into()),
        );
        queue(self.webhooks_queue(), args).await?;
        bind(
            self.webhooks_queue(),
            self.webhooks_exchange(),
            "meta".into(),
        )
        .await?;

        // Notifications for upstream.
        exchange(self.events_exchange(), ExchangeKind::Topic).await?;
        Ok(())
    }

    /// Removes everything `declare` made (tests clean up after themselves).
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let mut queues = vec![
            self.intake_queue(),
            self.intake_rejected_queue(),
            self.dead_queue(),
            self.webhooks_queue(),
            self.webhooks_dead_queue(),
        ];
        queues.extend((0..self.shards).map(|s| self.shard_queue(s)));
        queues.extend((0..self.retry_tiers.len()).map(|t| self.retry_exchange(t)));
        for q in queues {
            channel
                .queue_delete(q.into(), QueueDeleteOptions::default())
                .await?;
        }
        let mut exchanges = vec![
            self.intake_exchange(),
            self.dead_exchange(),
            self.dispatch_exchange(),
            self.webhooks_exchange(),
            self.events_exchange(),
        ];
        exchanges.extend((0..self.retry_tiers.len()).map(|t| self.retry_exchange(t)));
        for x in exchanges {
            channel
                .exchange_delete(x.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// The routing key of a dispatch shard.
pub fn shard_key(shard: u16) -> String {
    format!("shard.{shard}")
}

/// `5s`, `2m`, `1h`, `250ms`: the suffix of a retry tier's name.
pub fn tier_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// Quorum queue arguments, with at-least-once dead-lettering when a target is given. The
/// explicit delivery limit makes poison messages behave the same on RabbitMQ 3.10 and 4.x.
fn quorum(dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        // at-least-once dead-lettering requires reject-publish overflow.
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(20));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_always_lands_on_the_same_shard() {
        let t = Topology::new("wafleet", 4, &[Duration::from_secs(5)]);
        let first = t.shard_for("106540352242922");
        for _ in 0..10 {
            assert_eq!(t.shard_for("106540352242922"), first);
        }
        assert!(first < 4);
        // Spread: 200 senders hit every one of 4 shards.
        let mut seen = [false; 4];
        for i in 0..200 {
            seen[t.shard_for(&format!("1065403522{i:05}")) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn retry_tiers_have_readable_names() {
        let t = Topology::new(
            "p",
            1,
            &[
                Duration::from_secs(5),
                Duration::from_secs(120),
                Duration::from_millis(250),
            ],
        );
        assert_eq!(t.retry_exchange(0), "p.retry.5s");
        assert_eq!(t.retry_exchange(1), "p.retry.2m");
        assert_eq!(t.retry_exchange(2), "p.retry.250ms");
    }
}
