//! The periodic gauges each service publishes about the things it depends on: broker
//! connection state, database reachability, the depth and consumers of the queues it owns
//! (a passive `queue.declare` answers both without touching the messages), and, where asked,
//! sender health and caps read from the database.

use crate::{amqp::Topology, metrics as m};
use lapin::{Channel, Connection, options::QueueDeclareOptions, types::FieldTable};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// What one service watches.
pub struct Monitor {
    pub pool: sqlx::PgPool,
    /// Broker connections, each with a role label (`ingest/publish`, …).
    pub connections: Vec<(&'static str, Arc<Connection>)>,
    /// Full queue names; exported under their name without the `<p>.` prefix.
    pub queues: Vec<String>,
    pub prefix: String,
    /// Also export sender quality and tenant cap limits from the database.
    pub tenant_health: bool,
    pub interval: Duration,
}

impl Monitor {
    /// A monitor for `pool`, `connections` and `queues` of `topology`.
    pub fn new(
        pool: sqlx::PgPool,
        topology: &Topology,
        connections: Vec<(&'static str, Arc<Connection>)>,
        queues: Vec<String>,
        interval: Duration,
    ) -> Self {
        Self {
            pool,
            connections,
            queues,
            prefix: topology.prefix.clone(),
            tenant_health: false,
            interval,
        }
    }

    /// Polls every `interval` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        m::describe();
        let mut channel: Option<Channel> = None;
        loop {
            self.poll(&mut channel).await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        if let Some(ch) = channel {
            let _ = ch.close(200, "monitor stopped".into()).await;
        }
    }

    /// One round of measurements.
    pub async fn poll(&self, channel: &mut Option<Channel>) {
        for (role, conn) in &self.connections {
            let up = conn.status().connected();
            metrics::gauge!(m::BROKER_CONNECTED, "connection" => *role)
                .set(f64::from(u8::from(up)));
        }
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

    async fn poll_queues(&self, channel: &mut Option<Channel>) {
        for queue in &self.queues {
            let ch = match channel.as_ref().filter(|c| c.status().connected()) {
                Some(ch) => ch.clone(),
                None => match self.open_channel().await {
                    Some(ch) => {
                        *channel = Some(ch.clone());
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

    async fn open_channel(&self) -> Option<Channel> {
        for (_, conn) in &self.connections {
            if conn.status().connected()
                && let Ok(ch) = conn.create_channel().await
            {
                return Some(ch);
            }
        }
        None
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
