//! The periodic gauges each service publishes about the things it depends on: database
//! reachability (broker connection state is set by each `amqp::Broker` as it changes), the depth and consumers of the queues it owns
//! (a passive `queue.declare` answers both without touching the messages), and, where asked,
//! sender health and caps read from the database.

use crate::{
    amqp::{Broker, Lease, SETUP_TIMEOUT, Topology},
    metrics as m,
};
use lapin::{options::QueueDeclareOptions, types::FieldTable};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one service watches.
pub struct Monitor {
    pub pool: sqlx::PgPool,
    /// The connection queue depths are read on.
    pub broker: Broker,
    /// Full queue names; exported under their name without the `<p>.` prefix.
    pub queues: Vec<String>,
    pub prefix: String,
    /// Also export sender quality and tenant cap limits from the database.
    pub tenant_health: bool,
    pub interval: Duration,
}

impl Monitor {
    /// A monitor for `pool` and `queues` of `topology`, read over `broker`.
    pub fn new(
        pool: sqlx::PgPool,
        topology: &Topology,
        broker: Broker,
        queues: Vec<String>,
        interval: Duration,
    ) -> Self {
        Self {
            pool,
            broker,
            queues,
            prefix: topology.prefix.clone(),
            tenant_health: false,
            interval,
        }
    }

    /// Polls every `interval` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        m::describe();
        let mut channel: Option<Lease> = None;
        loop {
            self.poll(&mut channel).await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        if let Some(lease) = channel {
            let _ = lease.channel.close(200, "monitor stopped".into()).await;
        }
    }

    /// One round of measurements.
    pub async fn poll(&self, channel: &mut Option<Lease>) {
        let db_up = crate::db::is_reachable(&self.pool).await;
        metrics::gauge!(m::DATABASE_UP).set(f64::from(u8::from(db_up)));
        if db_up
            && self.tenant_health
            && let Err(err) = self.poll_tenant_health().await
        {
            tracing::debug!(error = %err, "could not read sender health");
        }
        self.poll_queues(channel).await;
    }

    async fn poll_queues(&self, channel: &mut Option<Lease>) {
        for queue in &self.queues {
            let ch = match channel.as_ref().filter(|l| l.is_current()) {
                Some(lease) => lease.channel.clone(),
                None => match self.open_channel().await {
                    Some(lease) => {
                        let ch = lease.channel.clone();
                        *channel = Some(lease);
                        ch
                    }
                    None => return,
                },
            };
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match ch
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => {
                    let label = self.label(queue);
                    metrics::gauge!(m::QUEUE_MESSAGES, "queue" => label.clone())
                        .set(f64::from(q.message_count()));
                    metrics::gauge!(m::QUEUE_CONSUMERS, "queue" => label)
                        .set(f64::from(q.consumer_count()));
                }
                // A missing queue closes the channel (404); the next one gets a fresh channel.
                Err(err) => {
                    tracing::debug!(queue = %queue, error = %err, "queue depth unavailable");
                    *channel = None;
                }
            }
        }
    }

    /// A channel while the broker is up; none (this round) while it is not.
    async fn open_channel(&self) -> Option<Lease> {
        if !self.broker.is_up() {
            return None;
        }
        tokio::time::timeout(SETUP_TIMEOUT, self.broker.lease())
            .await
            .ok()
    }

    fn label(&self, queue: &str) -> String {
        queue
            .strip_prefix(&format!("{}.", self.prefix))
            .unwrap_or(queue)
            .to_owned()
    }

    /// Sender quality ratings and cap limits as Meta last reported them.
    async fn poll_tenant_health(&self) -> Result<(), sqlx::Error> {
        let senders: Vec<(uuid::Uuid, String, Option<String>)> =
            sqlx::query_as("SELECT tenant_id, phone_number_id, quality_rating FROM senders")
                .fetch_all(&self.pool)
                .await?;
        for (tenant, sender, quality) in senders {
            let value = match quality.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some("GREEN") | Some("HIGH") => 1.0,
                Some("YELLOW") | Some("MEDIUM") => 2.0,
                Some("RED") | Some("LOW") => 3.0,
                _ => 0.0,
            };
            metrics::gauge!(m::SENDER_QUALITY, "tenant" => tenant.to_string(), "sender" => sender)
                .set(value);
        }
        Ok(())
    }
}
