//! Layered configuration: embedded defaults, then an optional `wafleet.toml`, then `WAFLEET_*`
//! environment variables (nested keys with `__`, e.g. `WAFLEET_DISPATCH__SHARDS=8`).
//! Validated once at start-up; every field is documented in the README.

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::Path, time::Duration};

mod dispatch;
mod durations;
mod notify;
pub use dispatch::DispatchSettings;
pub use durations::parse_duration;
use durations::{humantime_ms, humantime_ms_opt};
pub use notify::NotifySettings;

/// Every knob of the fleet. Services take the part they need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// PostgreSQL, the system of record.
    pub database_url: String,
    /// RabbitMQ, the transport.
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (`<p>` in the SPEC).
    pub amqp_prefix: String,
    /// Graph API base URL: Meta, or the simulator.
    pub meta_base_url: String,
    /// Graph API version used in every call.
    pub meta_api_version: String,
    pub ingest_addr: SocketAddr,
    pub webhooks_addr: SocketAddr,
    pub meta_sim_addr: SocketAddr,
    /// The dispatcher's ops endpoints (`/healthz`, `/readyz`, `/metrics`).
    pub dispatcher_addr: SocketAddr,
    /// 32 bytes, hex: seals Meta tokens and app secrets at rest. Required by every service that
    /// reads or writes them.
    pub secret_key: Option<Secret>,
    /// The global Meta app's webhook secret and verify token (tenants may bring their own app).
    /// The app secret is also the `client_secret` of the Embedded Signup code exchange.
    pub meta_app_secret: Option<Secret>,
    pub meta_verify_token: Option<Secret>,
    /// The global Meta app's id: the `client_id` of the Embedded Signup code exchange.
    pub meta_app_id: Option<String>,
    /// Where Meta reaches the webhooks service from outside (`https://wa.example.com`): the
    /// Callback URL each tenant is shown is this plus `/webhooks/meta/{tenant}`.
    pub public_base_url: Option<String>,
    /// The operators' credential for `/v1/operator/*` (tenant administration), distinct from
    /// every tenant's API keys; those routes answer 401 while it is unset.
    pub operator_key: Option<Secret>,
    /// Connections in each service's database pool.
    pub database_max_connections: u32,
    pub dispatch: DispatchSettings,
    pub ingest: IngestSettings,
    pub webhooks: WebhookSettings,
    pub broker: BrokerSettings,
    /// Delivery of events to tenants' HTTP endpoints.
    pub notify: NotifySettings,
    /// The operator's rate card (CSV, see `deploy/rate-card.csv`) for estimated costs; unset,
    /// the copy of `deploy/rate-card.csv` built into the binary is used.
    pub rate_card: Option<std::path::PathBuf>,
    pub retention: RetentionSettings,
    /// How often each service refreshes its queue-depth and connection-state gauges.
    #[serde(with = "humantime_ms")]
    pub monitor_interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestSettings {
    /// Rows still unpublished after this long are republished by the outbox sweep.
    #[serde(with = "humantime_ms")]
    pub outbox_after: Duration,
    #[serde(with = "humantime_ms")]
    pub outbox_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest `POST /v1/campaigns` body (JSON or NDJSON).
    pub campaign_max_body_bytes: usize,
    /// Campaign recipients validated and inserted per statement.
    pub campaign_batch: usize,
    /// AMQP intake deliveries in flight at once (the intake consumer's prefetch). Each waits in
    /// the group commit, so this bounds how many requests one batch can gather from AMQP.
    pub intake_prefetch: u16,
    /// Send requests (HTTP and AMQP) accepted together in one transaction: the group commit.
    pub batch_max: usize,
    /// How long a batch waits for more requests once it has one (latency added at low load).
    #[serde(with = "humantime_ms")]
    pub batch_linger: Duration,
    /// Batches written at once; each holds one pool connection while it writes.
    pub batch_writers: usize,
    /// How often each tenant's Meta connection is checked (`GET /{waba}/phone_numbers`), and
    /// its status (`connected`, `token_invalid`, `account_restricted`) recorded.
    #[serde(with = "humantime_ms")]
    pub connection_check_interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// Largest accepted webhook body (Meta sends up to 3 MB).
    pub max_body_bytes: usize,
    /// Webhook deliveries unacknowledged at once, across the batches in flight.
    pub prefetch: u16,
    /// Webhook deliveries applied together in one transaction.
    pub batch_max: usize,
    /// A batch takes no more deliveries once their bodies reach this size. Meta may batch up
    /// to 1,000 status updates in one POST, and a transaction holds the locks of every message
    /// it updates until it commits, while the dispatcher waits for them to record its sends.
    pub batch_max_bytes: usize,
    /// How long a batch waits to fill once it has its first delivery.
    #[serde(with = "humantime_ms")]
    pub batch_wait: Duration,
    /// How often the events outbox (`outbound_events`) is drained to `<p>.events` when nothing
    /// wakes the drainer sooner (rows written by other services, failed publishes).
    #[serde(with = "humantime_ms")]
    pub events_interval: Duration,
}

/// How long message content and numbers are kept (data protection). The ingest service's
/// sweeper anonymises older messages in batches, as an erasure does (content and number go;
/// counts and billing stay).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionSettings {
    /// Messages older than this are anonymised (`"365d"`); unset (the default) keeps them.
    /// At least one day.
    #[serde(with = "humantime_ms_opt", default)]
    pub messages: Option<Duration>,
    /// How often the sweeper looks when it has caught up.
    #[serde(with = "humantime_ms")]
    pub interval: Duration,
    /// Messages looked at per transaction.
    pub batch: i64,
}

/// How a service keeps its broker connections (`amqp::Broker`): reconnecting, publishing
/// through an outage, and when to declare itself wedged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerSettings {
    /// The first reconnect delay after a connection is lost; it doubles per failed attempt …
    #[serde(with = "humantime_ms")]
    pub reconnect_min: Duration,
    /// … up to this. Each delay is jittered down by up to half, so a fleet does not reconnect
    /// in lockstep; a broker that is back is found again within about this long.
    #[serde(with = "humantime_ms")]
    pub reconnect_max: Duration,
    /// How long a publish may take, waiting for a reconnect and its confirm included, before it
    /// fails (ingest then leaves the message to the outbox sweep; the webhook receiver answers
    /// 503 so Meta retries).
    #[serde(with = "humantime_ms")]
    pub publish_timeout: Duration,
    /// `/healthz` fails once the broker has accepted TCP connections again for this long while
    /// a connection of the service has still not recovered, so an orchestrator restarts a wedged
    /// process. A broker that is simply down never fails liveness (restarts would not help).
    #[serde(with = "humantime_ms")]
    pub recovery_stuck_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/wafleet".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            amqp_prefix: "wafleet".into(),
            meta_base_url: "https://graph.facebook.com".into(),
            meta_api_version: "v24.0".into(),
            ingest_addr: ([127, 0, 0, 1], 8080).into(),
            webhooks_addr: ([127, 0, 0, 1], 8081).into(),
            meta_sim_addr: ([127, 0, 0, 1], 8090).into(),
            dispatcher_addr: ([127, 0, 0, 1], 8082).into(),
            secret_key: None,
            meta_app_secret: None,
            meta_verify_token: None,
            meta_app_id: None,
            public_base_url: None,
            operator_key: None,
            database_max_connections: 10,
            dispatch: DispatchSettings {
                shards: 4,
                prefetch: 768,
                batch_size: 32,
                claim_ahead: Duration::from_millis(500),
                batch_wait: Duration::from_millis(5),
                graph_timeout: Duration::from_secs(20),
                ambiguous_resend_after: Duration::from_secs(600),
                sender_rate: 80,
                pair_period: Duration::from_secs(6),
                pair_burst: 10,
                pair_wait_max: Duration::from_secs(1),
                sender_recheck: Duration::from_secs(300),
                consume_shards: None,
                retry_tiers: [5, 30, 120, 600].map(Duration::from_secs).to_vec(),
                retry_jitter_percent: 20,
                limited_retries: 3,
                retry_for: Duration::from_secs(24 * 3600),
                recipient_hold: Duration::from_secs(24 * 3600),
                circuit_open_for: Duration::from_secs(3600),
                circuit_probe_wait: Duration::from_secs(30),
                releaser_interval: Duration::from_secs(1),
                releaser_batch: 500,
                throttled_rate_percent: 25,
                throttled_for: Duration::from_secs(10),
                throttle_raise_percent: 10,
                throttle_raise_every: Duration::from_secs(2),
                feeder_interval: Duration::from_millis(200),
                feeder_window: Duration::from_secs(1),
            },
            ingest: IngestSettings {
                outbox_after: Duration::from_secs(10),
                outbox_interval: Duration::from_secs(5),
                max_body_bytes: 256 * 1024,
                campaign_max_body_bytes: 256 * 1024 * 1024,
                campaign_batch: 5000,
                intake_prefetch: 1000,
                batch_max: 500,
                batch_linger: Duration::from_millis(2),
                batch_writers: 3,
                connection_check_interval: Duration::from_secs(15 * 60),
            },
            webhooks: WebhookSettings {
                max_body_bytes: 4 * 1024 * 1024,
                prefetch: 256,
                batch_max: 64,
                batch_max_bytes: 256 * 1024,
                batch_wait: Duration::from_millis(5),
                events_interval: Duration::from_secs(1),
            },
            broker: BrokerSettings {
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(5),
                publish_timeout: Duration::from_secs(10),
                recovery_stuck_after: Duration::from_secs(60),
            },
            notify: NotifySettings::default(),
            rate_card: None,
            retention: RetentionSettings {
                messages: None,
                interval: Duration::from_secs(60),
                batch: 1000,
            },
            monitor_interval: Duration::from_secs(10),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `wafleet.toml` (or the given file) if present, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file.unwrap_or_else(|| Path::new("wafleet.toml"));
        let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("WAFLEET_").split("__"))
            .extract()
            .map_err(Box::new)?;
        // Deploy files pass unset secrets as empty strings: an empty secret is no secret.
        for secret in [
            &mut settings.secret_key,
            &mut settings.meta_app_secret,
            &mut settings.meta_verify_token,
            &mut settings.operator_key,
        ] {
            if secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
                *secret = None;
            }
        }
        for text in [&mut settings.meta_app_id, &mut settings.public_base_url] {
            if text.as_deref().is_some_and(str::is_empty) {
                *text = None;
            }
        }
        if settings
            .rate_card
            .as_deref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            settings.rate_card = None;
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.dispatch.shards == 0 {
            return bad("dispatch.shards must be at least 1");
        }
        if self.dispatch.retry_tiers.is_empty() {
            return bad("dispatch.retry_tiers needs at least one delay");
        }
        if self.dispatch.retry_jitter_percent > 50 {
            return bad("dispatch.retry_jitter_percent is at most 50");
        }
        if !(1..=1000).contains(&self.dispatch.sender_rate) {
            return bad("dispatch.sender_rate is 1 to 1000 messages per second");
        }
        if self.dispatch.pair_burst == 0 || self.dispatch.pair_period.is_zero() {
            return bad("dispatch.pair_burst and dispatch.pair_period must be above zero");
        }
        if !(1..=100).contains(&self.dispatch.throttled_rate_percent)
            || !(1..=100).contains(&self.dispatch.throttle_raise_percent)
        {
            return bad(
                "dispatch.throttled_rate_percent and dispatch.throttle_raise_percent are 1 to 100",
            );
        }
        if let Some(shards) = &self.dispatch.consume_shards
            && (shards.is_empty() || shards.iter().any(|s| *s >= self.dispatch.shards))
        {
            return bad("dispatch.consume_shards lists shards below dispatch.shards");
        }
        if self.ingest.campaign_batch == 0 {
            return bad("ingest.campaign_batch must be at least 1");
        }
        if self
            .retention
            .messages
            .is_some_and(|d| d < Duration::from_secs(86_400))
        {
            return bad("retention.messages is at least one day (e.g. \"365d\"), or unset");
        }
        if self.retention.batch < 1 || self.retention.interval.is_zero() {
            return bad("retention.batch must be at least 1 and retention.interval above zero");
        }
        if self.dispatch.releaser_batch < 1 {
            return bad("dispatch.releaser_batch must be at least 1");
        }
        let broker = &self.broker;
        if broker.reconnect_min.is_zero() || broker.reconnect_max < broker.reconnect_min {
            return bad("broker.reconnect_min must be above zero and at most broker.reconnect_max");
        }
        if broker.publish_timeout.is_zero() || broker.recovery_stuck_after.is_zero() {
            return bad(
                "broker.publish_timeout and broker.recovery_stuck_after must be above zero",
            );
        }
        if self.amqp_prefix.is_empty() || self.amqp_prefix.contains(char::is_whitespace) {
            return bad("amqp_prefix must be a non-empty name without spaces");
        }
        if self.ingest.connection_check_interval.is_zero() {
            return bad("ingest.connection_check_interval must be above zero");
        }
        if let Some(url) = &self.public_base_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return bad("public_base_url is an http(s) URL, e.g. https://wa.example.com");
        }
        self.notify.validate().map_err(ConfigError::Invalid)?;
        if let Some(key) = &self.secret_key {
            crate::secrets::SecretBox::from_hex(key.expose())
                .map_err(|e| ConfigError::Invalid(format!("WAFLEET_SECRET_KEY: {e}")))?;
        }
        Ok(())
    }

    /// The sealing key, or a clear error for the services that need one.
    pub fn secret_box(&self) -> Result<crate::secrets::SecretBox, ConfigError> {
        let key = self.secret_key.as_ref().ok_or_else(|| {
            ConfigError::Invalid("WAFLEET_SECRET_KEY is required (64 hex characters)".into())
        })?;
        crate::secrets::SecretBox::from_hex(key.expose())
            .map_err(|e| ConfigError::Invalid(format!("WAFLEET_SECRET_KEY: {e}")))
    }
}

/// A string that never prints: `Debug` shows `[redacted]`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests;
