//! What every service opens at start-up, in one place: its HTTP listener, a lazy database pool
//! (so it starts, and reports not-ready, while PostgreSQL is down), the topology, and two broker
//! connections — one for publishing, one for consuming, so a publisher blocked by a broker alarm
//! never stalls the consumer's acks. The topology is declared before anything consumes.

use crate::{
    Settings,
    amqp::{self, Topology},
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
    pub publish_conn: lapin::Connection,
    pub consume_conn: lapin::Connection,
}

impl Infra {
    /// Opens everything for `service` (`ingest`, `dispatcher`, `webhooks`): the pool is named
    /// `wafleet-<service>` and the connections `<prefix>/<service>/publish|consume`, as SREs see
    /// them in `pg_stat_activity` and the RabbitMQ UI. Waits for the broker until `cancel`.
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
        let connect = |role: &str| {
            let name = format!("{}/{service}/{role}", settings.amqp_prefix);
            async move {
                amqp::connect_with_retry(&settings.amqp_url, &name, cancel)
                    .await
                    .context("cancelled while connecting to the broker")
            }
        };
        let publish_conn = connect("publish").await?;
        let consume_conn = connect("consume").await?;
        let setup = publish_conn.create_channel().await?;
        topology
            .declare(&setup)
            .await
            .context("declaring the AMQP topology")?;
        Ok(Self {
            listener,
            pool,
            topology,
            publish_conn,
            consume_conn,
        })
    }
}
