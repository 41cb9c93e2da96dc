//! Starts services in one process: the three services for `wafleet all`, plus the Meta
//! simulator (wired to the webhooks receiver) for the demo and the tests. Every listener may be
//! port 0; the bound URLs are reported back.

use anyhow::Context;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wafleet_core::{Settings, clock::SharedClock};
use wafleet_meta_sim::{MetaSim, SimSettings};

/// A running fleet.
pub struct Fleet {
    pub ingest_url: String,
    pub webhooks_url: String,
    pub dispatcher_url: String,
    /// The simulator's base URL, when one was started.
    pub sim_url: Option<String>,
    /// The settings the services run with (ports and Graph URL filled in).
    pub settings: Settings,
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Whether a fleet runs its own dispatcher (a test may run one as a separate process, to kill it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatcher {
    InProcess,
    Elsewhere,
}

impl Fleet {
    /// Builds and starts ingest, dispatcher and webhooks (and the simulator, if `sim` is given:
    /// the services then talk to it, and it posts webhooks to the receiver's global route).
    pub async fn start(
        settings: Settings,
        sim: Option<SimSettings>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        Self::start_with(settings, sim, clock, Dispatcher::InProcess).await
    }

    /// As [`Fleet::start`], with the dispatcher in this process or not.
    pub async fn start_with(
        mut settings: Settings,
        sim: Option<SimSettings>,
        clock: SharedClock,
        dispatcher: Dispatcher,
    ) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let webhooks = wafleet_webhooks::Application::build(settings.clone(), &cancel)
            .await
            .context("starting webhooks")?;
        let webhooks_url = format!("http://127.0.0.1:{}", webhooks.port());
        let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        let mut sim_url = None;
        if let Some(mut sim_settings) = sim {
            sim_settings.webhook_url = Some(format!("{webhooks_url}/webhooks/meta"));
            let sim = MetaSim::build(sim_settings)
                .await
                .context("starting the Meta simulator")?;
            settings.meta_base_url = sim.base_url();
            sim_url = Some(sim.base_url());
            tasks.push((
                "meta-sim",
                tokio::spawn(sim.run_until_stopped(cancel.clone())),
            ));
        }
        let ingest = wafleet_ingest::Application::build(settings.clone(), clock.clone(), &cancel)
            .await
            .context("starting ingest")?;
        let dispatcher = match dispatcher {
            Dispatcher::InProcess => Some(
                wafleet_dispatcher::Application::build(settings.clone(), clock, &cancel)
                    .await
                    .context("starting the dispatcher")?,
            ),
            Dispatcher::Elsewhere => None,
        };
        let ingest_url = format!("http://127.0.0.1:{}", ingest.port());
        let dispatcher_url = dispatcher
            .as_ref()
            .map(|d| format!("http://127.0.0.1:{}", d.port()))
            .unwrap_or_default();
        tasks.push((
            "webhooks",
            tokio::spawn(webhooks.run_until_stopped(cancel.clone())),
        ));
        tasks.push((
            "ingest",
            tokio::spawn(ingest.run_until_stopped(cancel.clone())),
        ));
        if let Some(dispatcher) = dispatcher {
            tasks.push((
                "dispatcher",
                tokio::spawn(dispatcher.run_until_stopped(cancel.clone())),
            ));
        }
        Ok(Self {
            ingest_url,
            webhooks_url,
            dispatcher_url,
            sim_url,
            settings,
            cancel,
            tasks,
        })
    }

    /// A fleet with nothing running (a placeholder after the real one was taken to stop it).
    pub fn stopped() -> Self {
        Self {
            ingest_url: String::new(),
            webhooks_url: String::new(),
            dispatcher_url: String::new(),
            sim_url: None,
            settings: Settings::default(),
            cancel: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// The token that stops every service.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits until the token is cancelled (or a service fails), then for every service to drain.
    pub async fn wait(self) -> anyhow::Result<()> {
        let cancel = self.cancel.clone();
        let mut first_error = None;
        let mut pending: Vec<_> = self
            .tasks
            .into_iter()
            .map(|(name, handle)| Box::pin(async move { (name, handle.await) }))
            .collect();
        while !pending.is_empty() {
            let ((name, result), _, rest) = futures_util::future::select_all(pending).await;
            pending = rest;
            let outcome = match result {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.context(name)),
                Err(join) => Some(anyhow::anyhow!("{name} panicked: {join}")),
            };
            if let Some(err) = outcome {
                tracing::error!(service = name, error = %format!("{err:#}"), "service stopped with an error");
                first_error.get_or_insert(err);
            }
            // One service ending ends the fleet: stop the others cleanly.
            cancel.cancel();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every service and waits for them to finish in-flight work.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.wait().await
    }
}

/// The system clock as services take it.
pub fn system_clock() -> SharedClock {
    Arc::new(wafleet_core::SystemClock)
}
