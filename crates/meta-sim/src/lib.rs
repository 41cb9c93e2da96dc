//! The Meta WhatsApp Cloud API simulator (`wafleet meta-sim`).
//!
//! A standalone HTTP server that behaves like the parts of Meta's Graph API that wafleet uses
//! (sending, listing numbers and templates) and sends signed, batched status and inbound webhooks.
//! It follows Meta's documented behaviour (see `reference/meta-cloud-api.md`), not wafleet's code,
//! so wafleet can run against it unchanged. A control API under `/_sim` registers senders,
//! templates and faults, and reports what the simulator received.
//!
//! Start it like every wafleet service: [`MetaSim::build`], then [`MetaSim::run_until_stopped`].

mod account_events;
mod auth;
mod content;
mod control;
mod display_name;
mod errors;
mod graph;
mod lifecycle;
mod limiter;
mod listing;
mod onboarding;
mod receipts;
mod registration;
mod state;
mod subscriptions;
mod types;
mod verification;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use onboarding::{SignupNumber, SignupRequest, SignupResponse};
pub use receipts::ReadReceipt;
pub use types::{
    AfterAccept, ConfigUpdate, Fault, InboundRequest, InboundResponse, RecordedSend, SimNumber,
    SimStats, SimTemplate, SimWaba, UnreachableRequest,
};

use state::Sim;
use webhooks::WebhookEvent;

/// The simulated app's id unless the settings give one (Meta's app ids are digits).
pub const DEFAULT_APP_ID: &str = "100000000000001";

/// How long shutdown waits for webhook deliveries that are still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Start-up settings of the simulator.
#[derive(Debug, Clone)]
pub struct SimSettings {
    /// Listen address; port 0 in tests.
    pub addr: SocketAddr,
    /// Default callback URL for signed webhooks; events are dropped (and counted) without one.
    pub webhook_url: Option<String>,
    /// Default app secret: webhooks are signed with HMAC-SHA256 over the raw body. It is also
    /// the app's `client_secret` in the Embedded Signup code exchange.
    pub app_secret: String,
    /// The simulated Meta app's id: the `client_id` of the code exchange.
    pub app_id: String,
    /// Delay between `sent`, `delivered` and `read`.
    pub status_delay: Duration,
    /// Webhook events that fall due within this window are sent together in one POST.
    pub batch_window: Duration,
    /// Per-number throughput (messages per second) before `130429`, unless the number sets one.
    pub default_mps: u32,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8090).into(),
            webhook_url: None,
            app_secret: "meta-sim-app-secret".to_owned(),
            app_id: DEFAULT_APP_ID.to_owned(),
            status_delay: Duration::from_millis(200),
            batch_window: Duration::from_millis(100),
            default_mps: 80,
        }
    }
}

/// A built (bound) simulator, ready to run.
pub struct MetaSim {
    listener: TcpListener,
    port: u16,
    sim: Arc<Sim>,
    events: mpsc::UnboundedReceiver<WebhookEvent>,
}

impl MetaSim {
    /// Binds the listener and prepares the simulator's state.
    pub async fn build(settings: SimSettings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("binding the Meta simulator to {}", settings.addr))?;
        let port = listener.local_addr()?.port();
        let base_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the webhook HTTP client")?;
        let (tx, events) = mpsc::unbounded_channel();
        let sim = Arc::new(Sim::new(&settings, base_url, http, tx));
        Ok(Self {
            listener,
            port,
            sim,
            events,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: the Graph API base URL to configure in wafleet.
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// Serves until `cancel` fires, then stops serving and flushes pending webhooks best-effort.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let emitter = tokio::spawn(webhooks::run_emitter(
            Arc::clone(&self.sim),
            self.events,
            cancel.clone(),
            tracker.clone(),
        ));
        let app = graph::router()
            .merge(control::router())
            .merge(verification::router())
            .merge(onboarding::router())
            .merge(registration::router())
            .merge(subscriptions::router())
            .merge(display_name::router())
            .with_state(Arc::clone(&self.sim));
        tracing::info!(port = self.port, "meta simulator listening");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .await
            .context("serving the Meta simulator");
        // The emitter only stops on cancel; make sure it does even if serving failed early.
        cancel.cancel();
        if let Err(err) = emitter.await {
            tracing::warn!(error = %err, "webhook emitter task failed");
        }
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("webhook deliveries still in flight at shutdown were abandoned");
        }
        served
    }
}
