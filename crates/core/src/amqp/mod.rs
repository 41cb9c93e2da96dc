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
//!
//! Modules: `topology` (names and declaration), `publish` (confirmed publishing), `headers`
//! (message properties, trace context, consumer lag). Everything is re-exported here.

mod headers;
mod publish;
mod topology;

pub use headers::*;
pub use lapin;
pub use publish::*;
pub use topology::*;

use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

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
