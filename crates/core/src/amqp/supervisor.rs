//! A supervised broker connection, the one recovery mechanism of the fleet (lapin's own
//! auto-recovery is off: two mechanisms would fight over the same connection, and lapin's can
//! stay `Reconnecting` forever when a reconnect's handshake fails).
//!
//! A background task owns the connection. It connects with jittered exponential backoff,
//! declares the topology, and only then calls the connection up. It watches it (lapin's
//! events, its state, and users reporting that a channel could not be opened on it); once the
//! connection is gone it is dropped for good and a new one is built. Each connection is a
//! *generation*: users take a [`Lease`] (a fresh channel on the current generation) and learn
//! from [`Lease::lost`] when it is over, then take a new one. Channels of an old generation are
//! never reused, so whatever was unacked on them is redelivered by the broker, and a publish
//! that never got its confirm is republished by the [`Publisher`](super::Publisher).
//!
//! Health: [`Broker::is_up`] (readiness) is true only while the current connection is open;
//! [`Broker::liveness`] fails when the broker accepts connections again but ours has not
//! recovered within `broker.recovery_stuck_after`: a wedged process, for the orchestrator to
//! restart. `wafleet_broker_connected{connection}` follows every change as it happens.

use super::{ConnectError, SETUP_TIMEOUT, Topology, backoff::Backoff, connect};
use crate::config::BrokerSettings;
use futures_util::StreamExt;
use lapin::{Channel, Connection, Event};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often the supervisor looks at the connection's state, besides lapin's events.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A supervised connection; cheap to clone. The supervisor stops when [`close`](Self::close) is
/// called or the last clone is dropped.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
    _stop_on_drop: Arc<DropGuard>,
}

struct Shared {
    url: String,
    /// The connection name SREs see in the RabbitMQ UI (`<p>/<service>/<role>`).
    name: String,
    /// The `connection` label of `wafleet_broker_connected` (`<service>/<role>`).
    label: String,
    /// Declared on every new connection before it is used, so a broker that lost its
    /// definitions gets them back before anyone consumes or publishes.
    topology: Option<Arc<Topology>>,
    settings: BrokerSettings,
    link: watch::Sender<Link>,
    /// When liveness first found the broker reachable while we were down (see `liveness`).
    reachable_since: Mutex<Option<Instant>>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The current connection, if any.
#[derive(Clone, Default)]
enum Link {
    #[default]
    Down,
    Up(Arc<Generation>),
}

struct Generation {
    number: u64,
    conn: Connection,
}

impl Link {
    fn generation(&self) -> Option<u64> {
        match self {
            Link::Up(g) => Some(g.number),
            Link::Down => None,
        }
    }
}

/// A channel on one generation of the connection.
pub struct Lease {
    pub channel: Channel,
    generation: u64,
    broker: Broker,
}

impl Lease {
    /// Resolves once the connection this channel lives on is gone: the channel is dead, its
    /// unacked deliveries will be redelivered, and a new lease is needed.
    pub async fn lost(&self) {
        self.broker.generation_over(self.generation).await;
    }

    /// Whether the channel still belongs to the current, open connection.
    pub fn is_current(&self) -> bool {
        self.channel.status().connected()
            && self.broker.shared.link.borrow().generation() == Some(self.generation)
    }
}

impl Broker {
    /// Starts supervising a connection to `url` named `name`, declaring `topology` on every
    /// new connection. Returns at once; see [`wait_up`](Self::wait_up).
    pub fn start(
        url: &str,
        name: &str,
        label: &str,
        topology: Option<Arc<Topology>>,
        settings: &BrokerSettings,
    ) -> Self {
        // The gauge is set on changes only: the recorder must exist before the first one.
        crate::telemetry::metrics_handle();
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            name: name.to_owned(),
            label: label.to_owned(),
            topology,
            settings: settings.clone(),
            link: watch::Sender::new(Link::Down),
            reachable_since: Mutex::new(None),
            stop: stop.clone(),
            task: Mutex::new(None),
        });
        shared.record(false);
        let task = tokio::spawn(supervise(shared.clone()));
        *lock(&shared.task) = Some(task);
        Self {
            shared,
            _stop_on_drop: Arc::new(stop.drop_guard()),
        }
    }

    /// The `connection` label of this connection's metrics.
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.shared.settings
    }

    /// Waits until the connection is up (topology declared); `false` if `cancel` came first.
    pub async fn wait_up(&self, cancel: &CancellationToken) -> bool {
        let mut link = self.shared.link.subscribe();
        tokio::select! {
            _ = cancel.cancelled() => false,
            up = link.wait_for(|l| l.generation().is_some()) => up.is_ok(),
        }
    }

    /// Readiness: the current connection is open (checked live, not as last seen).
    pub fn is_up(&self) -> bool {
        matches!(&*self.shared.link.borrow(), Link::Up(g) if g.conn.status().connected())
    }

    /// A fresh channel on the current connection, waiting for one as long as it takes (callers
    /// bound the wait). A channel that cannot be opened marks the connection broken.
    pub async fn lease(&self) -> Lease {
        let mut link = self.shared.link.subscribe();
        loop {
            let current = match &*link.borrow_and_update() {
                Link::Up(g) => Some(g.clone()),
                Link::Down => None,
            };
            if let Some(g) = current {
                match tokio::time::timeout(SETUP_TIMEOUT, g.conn.create_channel()).await {
                    Ok(Ok(channel)) => {
                        return Lease {
                            channel,
                            generation: g.number,
                            broker: self.clone(),
                        };
                    }
                    Ok(Err(err)) => self.report_broken(g.number, &err.to_string()),
                    Err(_) => self.report_broken(g.number, "opening a channel timed out"),
                }
                self.generation_over(g.number).await;
                continue;
            }
            // The sender lives in `shared`, which this handle keeps alive: no error here.
            let _ = link.changed().await;
        }
    }

    /// Liveness: fails once the broker has accepted TCP connections for longer than
    /// `recovery_stuck_after` while this connection stayed down. Only the probe calls it, so the
    /// clock starts at the first probe that finds the broker back.
    pub async fn liveness(&self) -> Result<(), String> {
        if self.is_up() {
            *lock(&self.shared.reachable_since) = None;
            return Ok(());
        }
        let reachable = self.shared.broker_accepts_tcp().await;
        let mut since = lock(&self.shared.reachable_since);
        if !reachable {
            *since = None;
            return Ok(());
        }
        let stuck = since.get_or_insert_with(Instant::now).elapsed();
        if stuck > self.shared.settings.recovery_stuck_after {
            return Err(format!(
                "{}: the broker accepts connections again, but this connection has not recovered for {} s",
                self.shared.label,
                stuck.as_secs()
            ));
        }
        Ok(())
    }

    /// Stops supervising and closes the connection (after the service's own work is done:
    /// in-flight deliveries need the connection to be acked).
    pub async fn close(&self) {
        self.shared.stop.cancel();
        let task = lock(&self.shared.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Tells the supervisor the current connection is unusable (unless it moved on already).
    fn report_broken(&self, generation: u64, why: &str) {
        tracing::warn!(connection = %self.shared.label, reason = why, "broker connection unusable; reconnecting");
        self.shared.link.send_if_modified(|link| {
            if link.generation() == Some(generation) {
                *link = Link::Down;
                true
            } else {
                false
            }
        });
    }

    /// Resolves once `generation` is no longer the current connection.
    async fn generation_over(&self, generation: u64) {
        let mut link = self.shared.link.subscribe();
        let _ = link.wait_for(|l| l.generation() != Some(generation)).await;
    }
}

/// The supervisor: connect, watch, and on loss start over, until stopped.
async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.settings.reconnect_min, shared.settings.reconnect_max);
    let mut generation = 0;
    let mut down_since = Instant::now();
    let mut failed_attempts = 0u32;
    loop {
        let attempt = tokio::select! {
            _ = shared.stop.cancelled() => break,
            conn = shared.establish() => conn,
        };
        let conn = match attempt {
            Ok(conn) => conn,
            Err(err) => {
                let delay = backoff.next_delay();
                failed_attempts += 1;
                // Once per outage at warn; each retry after that only at debug.
                if failed_attempts == 1 {
                    tracing::warn!(connection = %shared.label, error = %err, retry_in_ms = delay.as_millis() as u64, "broker unreachable; retrying with backoff");
                } else {
                    tracing::debug!(connection = %shared.label, error = %err, failed_attempts, retry_in_ms = delay.as_millis() as u64, "broker still unreachable");
                }
                tokio::select! {
                    _ = shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        generation += 1;
        let current = Arc::new(Generation {
            number: generation,
            conn,
        });
        shared.link.send_replace(Link::Up(current.clone()));
        shared.record(true);
        tracing::info!(connection = %shared.label, generation, failed_attempts, down_ms = down_since.elapsed().as_millis() as u64, "broker connected");
        failed_attempts = 0;
        let lost = tokio::select! {
            _ = shared.stop.cancelled() => None,
            why = shared.watch(&current.conn, generation) => Some(why),
        };
        // Down before anything else: readiness and new leases must not see a dead connection.
        shared.link.send_replace(Link::Down);
        shared.record(false);
        down_since = Instant::now();
        match lost {
            None => {
                super::close(&current.conn).await;
                break;
            }
            Some(why) => {
                tracing::warn!(connection = %shared.label, generation, reason = %why, "broker connection lost; reconnecting");
                // Whatever is left of it goes; its channels and ackers die with it.
                tokio::spawn(async move {
                    let closing = current.conn.close(320, "reconnecting".into());
                    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
                });
            }
        }
    }
    shared.link.send_replace(Link::Down);
    shared.record(false);
}

impl Shared {
    /// A new connection with the topology declared on it, within `SETUP_TIMEOUT` each.
    async fn establish(&self) -> Result<Connection, ConnectError> {
        let conn = connect(&self.url, &self.name).await?;
        if let Some(topology) = &self.topology {
            let declared = async {
                let setup = tokio::time::timeout(SETUP_TIMEOUT, conn.create_channel())
                    .await
                    .map_err(|_| ConnectError::Timeout(SETUP_TIMEOUT))??;
                topology.declare(&setup).await?;
                let _ = setup.close(200, "declared".into()).await;
                Ok::<(), ConnectError>(())
            };
            if let Err(err) = declared.await {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), conn.close(200, "".into())).await;
                return Err(err);
            }
        }
        Ok(conn)
    }

    /// Resolves with the reason once `conn` is gone or reported unusable.
    async fn watch(&self, conn: &Connection, generation: u64) -> String {
        let mut events = Box::pin(conn.events_listener());
        let mut link = self.link.subscribe();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Error(err)) => return format!("connection error: {err}"),
                    // A memory or disk alarm: publishes wait (and time out) until it clears.
                    Some(Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(connection = %self.label, reason, "the broker blocked the connection");
                    }
                    Some(Event::ConnectionUnblocked) => {
                        tracing::info!(connection = %self.label, "the broker unblocked the connection");
                    }
                    Some(_) => {}
                    None => return "the connection's events ended".to_owned(),
                },
                _ = link.wait_for(|l| l.generation() != Some(generation)) => {
                    return "a channel could not be opened on it".to_owned();
                }
                _ = tick.tick() => {
                    if !conn.status().connected() {
                        return "the connection is no longer open".to_owned();
                    }
                }
            }
        }
    }

    /// Whether something accepts TCP connections at the broker's address right now.
    async fn broker_accepts_tcp(&self) -> bool {
        let Ok(uri) = self.url.parse::<lapin::uri::AMQPUri>() else {
            return false;
        };
        let addr = (uri.authority.host.as_str(), uri.authority.port);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await,
            Ok(Ok(_))
        )
    }

    fn record(&self, up: bool) {
        metrics::gauge!(crate::metrics::BROKER_CONNECTED, "connection" => self.label.clone())
            .set(f64::from(u8::from(up)));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
