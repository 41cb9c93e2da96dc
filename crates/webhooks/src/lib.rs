//! wafleet-webhooks: receives Meta's signed webhooks (verified on the raw bytes, queued durably
//! before the 200) and applies them to history: statuses forward-only and deduplicated, inbound
//! messages filed against their record with the 24 h service window opened, and notifications
//! to upstream on `<p>.events`.

pub mod account_fields;
pub mod consumer;
pub mod endpoints;
pub mod fields;
pub mod inbound;
pub mod observe;
pub mod optouts;
pub mod outbox;
pub mod parking;
pub mod payload;
pub mod receiver;
pub mod signature;
pub mod statuses;
pub mod stop_words;
pub mod template_fields;
pub mod usage;

use anyhow::Context;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{limit::RequestBodyLimitLayer, trace::TraceLayer};
use wafleet_core::{
    Settings,
    amqp::{Broker, Publisher},
    health::Probes,
    http::ops_router,
};

pub struct Application {
    listener: TcpListener,
    receiver: receiver::ReceiverState,
    consumer: Arc<consumer::ConsumerCtx>,
    drainer: outbox::Drainer,
    /// Absent without `WAFLEET_SECRET_KEY` (endpoint secrets cannot be opened).
    deliverer: Option<Arc<endpoints::deliver::Deliverer>>,
    settings: Settings,
    publish: Broker,
    consume: Broker,
}

impl Application {
    pub async fn build(settings: Settings, cancel: &CancellationToken) -> anyhow::Result<Self> {
        let wafleet_core::service::Infra {
            listener,
            pool,
            topology,
            publish,
            consume,
        } = wafleet_core::service::Infra::open(
            &settings,
            "webhooks",
            settings.webhooks_addr,
            cancel,
        )
        .await?;
        let secrets = match &settings.secret_key {
            Some(_) => Some(settings.secret_box()?),
            None => None,
        };
        let deliveries_ready = Arc::new(tokio::sync::Notify::new());
        let deliverer = match &secrets {
            Some(secrets) => Some(Arc::new(endpoints::deliver::Deliverer {
                pool: pool.clone(),
                http: endpoints::deliver::Deliverer::client(&settings.notify)
                    .context("the webhook endpoints' HTTP client")?,
                secrets: secrets.clone(),
                settings: settings.notify.clone(),
                wake: deliveries_ready.clone(),
            })),
            None => {
                tracing::warn!(
                    "WAFLEET_SECRET_KEY is not set: events are not delivered to webhook endpoints"
                );
                None
            }
        };
        let receiver = receiver::ReceiverState {
            pool: pool.clone(),
            publisher: Publisher::new(&publish),
            topology: topology.clone(),
            secrets,
            app_secret: settings.meta_app_secret.clone(),
            verify_token: settings.meta_verify_token.clone(),
        };
        let events_ready = Arc::new(tokio::sync::Notify::new());
        let drainer = outbox::Drainer {
            pool: pool.clone(),
            publisher: Publisher::new(&publish),
            topology: topology.clone(),
            wake: events_ready.clone(),
            interval: settings.webhooks.events_interval,
            deliveries_ready,
        };
        let consumer = Arc::new(consumer::ConsumerCtx {
            pool,
            topology,
            events_ready,
        });
        Ok(Self {
            listener,
            receiver,
            consumer,
            drainer,
            deliverer,
            settings,
            publish,
            consume,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let probes = Probes::service(
            self.consumer.pool.clone(),
            &[self.publish.clone(), self.consume.clone()],
        );
        // axum's own 2 MB default would refuse Meta's 3 MB bodies; the configured limit rules.
        let router = receiver::router(self.receiver)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(RequestBodyLimitLayer::new(
                self.settings.webhooks.max_body_bytes,
            ))
            .merge(ops_router(probes))
            .layer(TraceLayer::new_for_http());
        let tasks = TaskTracker::new();
        let topology = &self.consumer.topology;
        let monitor = wafleet_core::monitor::Monitor::new(
            self.consumer.pool.clone(),
            topology,
            self.consume.clone(),
            vec![topology.webhooks_queue(), topology.webhooks_dead_queue()],
            self.settings.monitor_interval,
        );
        tasks.spawn(monitor.run(cancel.clone()));
        let http = tasks.spawn(wafleet_core::http::serve(
            self.listener,
            router,
            cancel.clone(),
        ));
        let consume = tasks.spawn(consumer::run(
            self.consumer.clone(),
            self.consume.clone(),
            wafleet_core::consume::Batching {
                prefetch: self.settings.webhooks.prefetch,
                max: self.settings.webhooks.batch_max,
                wait: self.settings.webhooks.batch_wait,
                max_bytes: Some(self.settings.webhooks.batch_max_bytes),
            },
            cancel.clone(),
        ));
        // The drainer stops after the consumer, so events of the last deliveries still leave.
        let drain_cancel = CancellationToken::new();
        let drainer = tokio::spawn(self.drainer.run(drain_cancel.clone()));
        tasks.spawn(consumer::run_unparker(
            self.consumer.clone(),
            Duration::from_secs(2),
            cancel.clone(),
        ));
        // The delivery worker stops with the drainer, after the last events were fanned out.
        let deliverer = self
            .deliverer
            .map(|d| tokio::spawn(d.run(drain_cancel.clone())));
        tasks.close();
        tasks.wait().await;
        drain_cancel.cancel();
        drainer.await?;
        if let Some(d) = deliverer {
            d.await?;
        }
        http.await?.context("HTTP server")?;
        consume.await.context("webhook consumer")?;
        self.publish.close().await;
        self.consume.close().await;
        Ok(())
    }
}
