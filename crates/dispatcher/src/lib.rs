//! wafleet-dispatcher: consumes the dispatch shards (one active consumer per shard, so one
//! process owns each sender), claims each message, calls Meta's Graph API within the sender's
//! rate, records the outcome, and only then acks. Failures are classified by Meta's error code:
//! retried through TTL tier queues, held behind circuit breakers and recipient holds (released
//! by the deferred releaser), dead-lettered, or recorded as failed. Bulk (campaign) messages
//! wait in PostgreSQL until the feeder releases them in small windows per sender.

mod attempt;
pub mod cap;
pub mod circuits;
pub mod classify;
pub mod consumer;
pub mod dispatch;
pub mod feeder;
mod gate;
pub mod graph_body;
pub mod graph_client;
pub mod policy;
pub mod rate;
pub mod recorder;
pub mod releaser;
pub mod retry;
pub mod store;
pub mod throttle;
pub mod tokens;

use anyhow::Context;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wafleet_core::{
    Settings,
    amqp::{Broker, Publisher, Topology},
    clock::SharedClock,
    health::Probes,
    http::ops_router,
};

pub struct Application {
    listener: TcpListener,
    ctx: Arc<dispatch::Ctx>,
    topology: Arc<Topology>,
    publisher: Publisher,
    consume: Broker,
    publish: Broker,
    monitor_interval: Duration,
}

impl Application {
    pub async fn build(
        settings: Settings,
        clock: SharedClock,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let wafleet_core::service::Infra {
            listener,
            pool,
            topology,
            publish,
            consume,
        } = wafleet_core::service::Infra::open(
            &settings,
            "dispatcher",
            settings.dispatcher_addr,
            cancel,
        )
        .await?;
        let secrets = settings.secret_box()?;
        let graph = graph_client::GraphClient::new(
            &settings.meta_base_url,
            &settings.meta_api_version,
            settings.dispatch.graph_timeout,
        )?;
        let publisher = Publisher::new(&publish);
        let recorder = recorder::Recorder::start(pool.clone(), clock.clone());
        let ctx = Arc::new(dispatch::Ctx {
            pool,
            graph,
            tokens: tokens::TokenCache::new(secrets, Duration::from_secs(60)),
            rates: rate::Rates::new(&settings.dispatch),
            clock,
            settings: settings.dispatch.clone(),
            // Two connections for the recorder's writers, two for the releaser, the feeder
            // and the monitor.
            db_turns: tokio::sync::Semaphore::new(
                settings.database_max_connections.saturating_sub(4).max(1) as usize,
            ),
            cap_turns: cap::Turns::default(),
            recorder,
        });
        Ok(Self {
            listener,
            ctx,
            topology,
            publisher,
            consume,
            publish,
            monitor_interval: settings.monitor_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Consumes every shard until `cancel`; in-flight batches finish and are acked first.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let mut shards = Vec::new();
        let owned: Vec<u16> = match &self.ctx.settings.consume_shards {
            Some(listed) => listed.clone(),
            None => (0..self.topology.shards).collect(),
        };
        for shard in owned {
            shards.push(tasks.spawn(consumer::run_shard(
                self.ctx.clone(),
                self.topology.clone(),
                self.publisher.clone(),
                self.consume.clone(),
                shard,
                cancel.clone(),
            )));
        }
        tasks.spawn(releaser::run(
            self.ctx.pool.clone(),
            self.publisher.clone(),
            self.topology.clone(),
            self.ctx.clock.clone(),
            self.ctx.settings.releaser_interval,
            self.ctx.settings.releaser_batch,
            cancel.clone(),
        ));
        let feeder = feeder::Feeder {
            pool: self.ctx.pool.clone(),
            publisher: self.publisher.clone(),
            topology: self.topology.clone(),
            clock: self.ctx.clock.clone(),
            sender_rate: self.ctx.settings.sender_rate,
            window: self.ctx.settings.feeder_window,
        };
        tasks.spawn(feeder.run(self.ctx.settings.feeder_interval, cancel.clone()));
        let ctx = self.ctx.clone();
        let housekeeping_cancel = cancel.clone();
        tasks.spawn(async move {
            // Keyed limiter state grows per sender; forget idle ones.
            loop {
                tokio::select! {
                    _ = housekeeping_cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {
                        ctx.rates.retain_recent();
                    }
                }
            }
        });
        let mut queues: Vec<String> = (0..self.topology.shards)
            .map(|s| self.topology.shard_queue(s))
            .collect();
        queues
            .extend((0..self.topology.retry_tiers.len()).map(|t| self.topology.retry_exchange(t)));
        queues.push(self.topology.dead_queue());
        let mut monitor = wafleet_core::monitor::Monitor::new(
            self.ctx.pool.clone(),
            &self.topology,
            self.consume.clone(),
            queues,
            self.monitor_interval,
        );
        monitor.tenant_health = true;
        tasks.spawn(monitor.run(cancel.clone()));
        let probes = Probes::service(
            self.ctx.pool.clone(),
            &[self.consume.clone(), self.publish.clone()],
        );
        let http = tasks.spawn(wafleet_core::http::serve(
            self.listener,
            ops_router(probes),
            cancel.clone(),
        ));
        tasks.close();
        for shard in shards {
            shard.await.context("dispatch shard consumer")?;
        }
        tasks.wait().await;
        http.await??;
        self.consume.close().await;
        self.publish.close().await;
        Ok(())
    }
}
