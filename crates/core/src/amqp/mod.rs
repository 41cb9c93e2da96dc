//! RabbitMQ: the topology every service declares (one function, one prefix), supervised
//! connections that rebuild themselves after a broker restart, confirmed `mandatory` publishing
//! that survives a reconnect, and W3C trace context in headers.
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
//! Modules: `topology` (names and declaration), `supervisor` (the services' connections:
//! reconnect, health, leases of channels), `publish` (confirmed publishing over a supervised
//! connection), `backoff`, `headers` (message properties, trace context, consumer lag).
//! Everything is re-exported here.

mod backoff;
mod headers;
mod publish;
mod supervisor;
mod topology;

pub use backoff::Backoff;
pub use headers::*;
pub use lapin;
pub use publish::*;
pub use supervisor::{Broker, Lease};
pub use topology::*;

use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

/// How long a connection handshake or a topology declaration may take. A broker that accepts
/// TCP but never answers (seen when RabbitMQ ran out of file handles) must not hang a service's
/// start-up forever.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// One plain connection, without lapin's auto-recovery: a lost connection stays lost. Services
/// use a [`Broker`], which builds a new connection instead; this is for one-shot tools and tests
/// (and for the `Broker` itself).
pub async fn connect(url: &str, name: &str) -> Result<Connection, ConnectError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(SETUP_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| ConnectError::Timeout(SETUP_TIMEOUT))?
        .map_err(ConnectError::Broker)
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// Closes a connection, giving up after a few seconds (shutdown must not hang on a dead peer).
pub async fn close(conn: &Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "shutdown".into())).await;
}
