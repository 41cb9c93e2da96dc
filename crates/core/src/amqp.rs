//! RabbitMQ: the topology every service declares (one function, one prefix), connections with
//! automatic recovery, confirmed `mandatory` publishing, and W3C trace context in headers.
//!
//! Names (SPEC §5; `<p>` is the prefix):
//! - `<p>.intake` (direct exchange, key `send`) → queue `<p>.intake`; invalid messages go to
//!   queue `<p>.intake.rejected` with an `x-wafleet-reason` header.
//! - `<p>.dispatch` (direct) → `<p>.dispatch.<n>` with key `shard.<n>`, n = hash(sender) mod N;
//!   quorum, single active consumer, so one dispatcher owns a sender at a time.
//! - `<p>.retry.<tier>` (fanout exchange + queue with a per-queue TTL) dead-letters back to
//!   `<p>.dispatch`, keeping the `shard.<n>` routing key.
//! - `<p>.dead` (fanout) → queue `<p>.dead`: dispatch messages that gave up.
//! - `<p>.webhooks` (direct, key `meta`) → queue `<p>.webhooks`: raw verified webhook bodies.
//! - `<p>.events` (topic): `inbound.<tenant>`, `status.<tenant>`, `optout.<tenant>`.

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub use lapin;

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

/// How long a connection handshake or a topology declaration may take. A broker that accepts
/// TCP but never answers (seen when RabbitMQ ran out of file handles) must not hang a service's
/// start-up forever.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects with automatic recovery (lapin replays topology and consumers after a reconnect).
pub async fn connect(url: &str, name: &str) -> Result<Connection, ConnectError> {
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .enable_auto_recover();
    tokio::time::timeout(SETUP_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| ConnectError::Timeout(SETUP_TIMEOUT))?
        .map_err(ConnectError::Broker)
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the broker did not complete the handshake within {0:?}")]
    Timeout(Duration),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// Closes a connection, giving up after a few seconds (shutdown must not hang on a dead peer).
pub async fn close(conn: &Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "shutdown".into())).await;
}

/// Connects, retrying with backoff until it works or `deadline` passes; services start before
/// the broker is up and report not-ready meanwhile.
pub async fn connect_with_retry(
    url: &str,
    name: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<Connection> {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(url, name).await {
            Ok(conn) => return Some(conn),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

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

/// Header carrying the publish time (Unix milliseconds); consumers derive their lag from it.
pub const PUBLISHED_AT_HEADER: &str = "x-wafleet-published-at";

fn stamp_published_at(props: &mut BasicProperties) {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        PUBLISHED_AT_HEADER.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis()),
    );
    *props = props.clone().with_headers(headers);
}

/// How long a consumed message waited since it was last published by us. `None` for messages
/// that came back through a retry tier (`x-death`): their wait was on purpose.
pub fn delivery_lag(props: &BasicProperties) -> Option<Duration> {
    let dead_lettered = props
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key("x-death"));
    let published = header_i64(props, PUBLISHED_AT_HEADER).filter(|_| !dead_lettered)?;
    let lag_ms = chrono::Utc::now().timestamp_millis() - published;
    Some(Duration::from_millis(lag_ms.max(0) as u64))
}

/// Records the consumer lag of a delivery from queue role `queue` (`intake`, `dispatch`, …).
pub fn record_consumer_lag(queue: &'static str, props: &BasicProperties) {
    if let Some(lag) = delivery_lag(props) {
        crate::metrics::consumer_lag(queue, lag);
    }
}

/// Persistent JSON properties with a message id and extra headers.
pub fn json_properties(message_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_headers(headers)
}

/// Reads a string header (long or short string).
pub fn header_str<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a str> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Reads an integer header.
pub fn header_i64(props: &BasicProperties, key: &str) -> Option<i64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// Sets a string header.
pub fn set_header(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(ShortString::from(key), AMQPValue::LongString(value.into()));
}

/// Carries the current span's W3C trace context (`traceparent`, `tracestate`) in headers.
pub fn inject_trace_context(headers: &mut FieldTable) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    for (k, v) in carrier {
        set_header(headers, &k, &v);
    }
}

/// Makes `span` a child of the trace context carried in `props`' headers, if any.
pub fn adopt_trace_context(span: &tracing::Span, props: &BasicProperties) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mut carrier = std::collections::HashMap::new();
    for key in ["traceparent", "tracestate"] {
        if let Some(v) = header_str(props, key) {
            carrier.insert(key.to_owned(), v.to_owned());
        }
    }
    if carrier.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(cx);
}

/// Links `span` to the trace context carried in `props`' headers: a batch's process span is
/// the child of its first message's trace and links to every message's trace.
pub fn link_trace_context(span: &tracing::Span, props: &BasicProperties) {
    if let Some(traceparent) = header_str(props, "traceparent") {
        crate::telemetry::link_to_traceparent(span, traceparent);
    }
}

/// The trace context of the current span as a `traceparent` string, to store with a message.
pub fn current_traceparent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
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
    fn consumer_lag_counts_from_our_publish_but_not_through_a_retry_tier() {
        let mut props = BasicProperties::default();
        stamp_published_at(&mut props);
        let lag = delivery_lag(&props).expect("stamped on publish");
        assert!(lag < Duration::from_secs(60));

        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        let through_retry = props.clone().with_headers(headers);
        assert_eq!(delivery_lag(&through_retry), None);
        assert_eq!(delivery_lag(&BasicProperties::default()), None);
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
