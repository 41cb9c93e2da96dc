//! wafleet-ingest: takes send requests over HTTP (`POST /v1/messages`) and AMQP (`<p>.intake`),
//! validates and records them, and publishes them (confirmed) to their dispatch shard. Also
//! serves the history, conversations and consent APIs. The outbox sweep republishes anything
//! whose publish was lost; the retention sweeper anonymises old messages when configured.

pub mod accept;
pub mod api_keys;
pub mod auth;
pub mod campaigns;
pub mod connection;
pub mod consent;
pub mod erasure;
pub mod graph_admin;
pub mod graph_onboarding;
pub mod group_commit;
pub mod intake;
pub mod outbox;
pub mod publish;
pub mod resolve;
pub mod retention;
pub mod routes;
pub mod senders;
pub mod settings_rules;
pub mod signup;
pub mod state;
pub mod sticky;
pub mod template_components;
pub mod templates;
pub mod validate;

use anyhow::Context;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{limit::RequestBodyLimitLayer, trace::TraceLayer};
use wafleet_core::{
    Settings,
    amqp::{Broker, Publisher},
    clock::SharedClock,
    health::Probes,
    http::ops_router,
};

/// The ingest service, built and bound, ready to run.
pub struct Application {
    listener: TcpListener,
    state: state::AppState,
    settings: Settings,
    intake_publisher: Publisher,
    marks: mpsc::Receiver<wafleet_core::domain::MessageId>,
    /// The publishing and the consuming connection.
    brokers: [Broker; 2],
    /// The group commit's collector, stopped once nothing can submit to it any more.
    group_commit: (tokio::task::JoinHandle<()>, CancellationToken),
}

impl Application {
    /// Binds the HTTP listener, opens the database pool and the broker connections (one for
    /// publishing, one for consuming, so a blocked publisher never stalls acks), and declares
    /// the topology.
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
        } = wafleet_core::service::Infra::open(&settings, "ingest", settings.ingest_addr, cancel)
            .await?;
        let dispatch_publisher = Publisher::new(&publish);
        let intake_publisher = Publisher::new(&publish);
        let (marks_tx, marks) = mpsc::channel(4096);
        let dispatch =
            publish::DispatchPublisher::new(dispatch_publisher, topology.clone(), marks_tx);
        let commit_cancel = CancellationToken::new();
        let (group_commit, commit_task) = group_commit::GroupCommit::start(
            pool.clone(),
            dispatch.clone(),
            clock.clone(),
            group_commit::BatchSettings {
                max: settings.ingest.batch_max,
                linger: settings.ingest.batch_linger,
                writers: settings.ingest.batch_writers,
            },
            commit_cancel.clone(),
        );
        let graph = graph_admin::GraphAdmin::from_settings(&settings, pool.clone(), clock.clone());
        let state = state::AppState {
            pool,
            topology: topology.clone(),
            dispatch,
            group_commit,
            clock,
            graph,
            public_base_url: settings.public_base_url.clone(),
            operator_key: settings.operator_key.clone(),
            notify_allow_private: settings.notify.allow_private_addresses,
            rate_card: std::sync::Arc::new(
                wafleet_core::rate_card::RateCard::load(settings.rate_card.as_deref())
                    .context("loading the rate card")?,
            ),
            campaigns: state::CampaignSettings {
                batch: settings.ingest.campaign_batch,
                max_body_bytes: settings.ingest.campaign_max_body_bytes,
                sender_rate: settings.dispatch.sender_rate,
            },
        };
        Ok(Self {
            listener,
            state,
            settings,
            intake_publisher,
            marks,
            brokers: [publish, consume],
            group_commit: (commit_task, commit_cancel),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves HTTP, consumes AMQP intake, sweeps the outbox (and, when configured, old messages)
    /// and marks publishes until `cancel`;
    /// then stops taking work and finishes what is in flight.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            settings,
            intake_publisher,
            marks,
            brokers,
            group_commit,
        } = self;
        let [publish, consume] = &brokers;
        let router = routes::router()
            .with_state(state.clone())
            .layer(RequestBodyLimitLayer::new(settings.ingest.max_body_bytes))
            .merge(routes::campaign_router().with_state(state.clone()).layer(
                RequestBodyLimitLayer::new(settings.ingest.campaign_max_body_bytes),
            ))
            .merge(ops_router(Probes::service(state.pool.clone(), &brokers)))
            .layer(axum::middleware::map_response(
                wafleet_core::http::problem_for_oversize,
            ))
            .layer(TraceLayer::new_for_http());

        let tasks = TaskTracker::new();
        let monitor = wafleet_core::monitor::Monitor::new(
            state.pool.clone(),
            &state.topology,
            consume.clone(),
            vec![
                state.topology.intake_queue(),
                state.topology.intake_rejected_queue(),
            ],
            settings.monitor_interval,
        );
        tasks.spawn(monitor.run(cancel.clone()));
        // The marker outlives the producers: it stops once every sender is dropped.
        let marker_cancel = CancellationToken::new();
        let marker = tokio::spawn(publish::run_marker(
            state.pool.clone(),
            marks,
            publish::mark_delay(settings.ingest.outbox_after),
            marker_cancel.clone(),
        ));
        tasks.spawn(connection::run_checks(
            state.pool.clone(),
            state.graph.clone(),
            settings.ingest.connection_check_interval,
            cancel.clone(),
        ));
        tasks.spawn(outbox::run_sweep(
            state.pool.clone(),
            state.dispatch.clone(),
            settings.ingest.outbox_after,
            settings.ingest.outbox_interval,
            cancel.clone(),
        ));
        tasks.spawn(retention::run(
            state.pool.clone(),
            settings.clone(),
            state.clock.clone(),
            cancel.clone(),
        ));
        let intake = tasks.spawn(intake::run(
            state.clone(),
            consume.clone(),
            intake_publisher,
            settings.ingest.intake_prefetch,
            cancel.clone(),
        ));
        let http = tasks.spawn(wafleet_core::http::serve(listener, router, cancel.clone()));
        tasks.close();
        drop(state);

        let http_result = http.await?;
        intake.await.context("AMQP intake")?;
        // Nothing submits any more: the collector accepts what it holds, then stops.
        let (commit_task, commit_cancel) = group_commit;
        commit_cancel.cancel();
        let _ = commit_task.await;
        tasks.wait().await;
        marker_cancel.cancel();
        let _ = marker.await;
        for broker in [publish, consume] {
            broker.close().await;
        }
        http_result.context("HTTP server")?;
        Ok(())
    }
}
