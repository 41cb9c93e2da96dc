//! What every service opens at start-up, in one place: its HTTP listener, a lazy database pool
//! (so it starts, and reports not-ready, while PostgreSQL is down), and two supervised broker
//! connections — one for publishing, one for consuming, so a publisher blocked by a broker alarm
//! never stalls the consumer's acks. Each declares the topology whenever it (re)connects, so
//! nothing consumes or publishes before the queues exist.

use crate::{
    Settings,
    amqp::{Broker, Topology},
    db,
};
use anyhow::Context;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct Infra {
    pub listener: TcpListener,
    pub pool: sqlx::PgPool,
    pub topology: Arc<Topology>,
    pub publish: Broker,
    pub consume: Broker,
}

impl Infra {
    /// Opens everything for `service` (`ingest`, `dispatcher`, `webhooks`): the pool is named
    /// `wafleet-<service>` and the connections `<prefix>/<service>/publish|consume` (as SREs see
    /// them in `pg_stat_activity` and the RabbitMQ UI; `<service>/publish|consume` label their
    /// metrics). Waits until both connections are up, or `cancel`.
    pub async fn open(
        settings: &Settings,
        service: &str,
        addr: SocketAddr,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let pool = db::connect_lazy(
            &settings.database_url,
            settings.database_max_connections,
            &format!("wafleet-{service}"),
        )?;
        let topology = Arc::new(Topology::from_settings(settings));
        let broker = |role: &str| {
            let label = format!("{service}/{role}");
            let name = format!("{}/{label}", settings.amqp_prefix);
            Broker::start(
                &settings.amqp_url,
                &name,
                &label,
                Some(topology.clone()),
                &settings.broker,
            )
        };
        let (publish, consume) = (broker("publish"), broker("consume"));
        for conn in [&publish, &consume] {
            anyhow::ensure!(
                conn.wait_up(cancel).await,
                "cancelled while connecting to the broker"
            );
        }
        Ok(Self {
            listener,
            pool,
            topology,
            publish,
            consume,
        })
    }
}
