//! The end-to-end test harness: a whole fleet (ingest, dispatcher, webhooks and the Meta
//! simulator) in-process, on a fresh PostgreSQL database and a random RabbitMQ prefix per test,
//! with a connected tenant, a registered sender and synced templates.

use serde_json::{Value, json};
use std::time::Duration;
use wafleet::fleet::{Dispatcher, Fleet};
use wafleet_core::{
    Settings,
    config::Secret,
    domain::PhoneNumber,
    secrets::SecretBox,
    tenant::{NewSender, NewTenant, create_tenant},
};
use wafleet_meta_sim::SimSettings;

pub const SENDER_PHONE: &str = "+442071838750";
pub const CANDIDATE: &str = "+447400123456";

/// Where the tests find PostgreSQL and RabbitMQ.
pub(crate) fn admin_database_url() -> String {
    std::env::var("WAFLEET_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// One isolated fleet with one tenant. The simulator runs beside the fleet (not inside it), so a
/// test can stop and restart the fleet while the simulator keeps counting what Meta received.
pub struct TestFleet {
    pub fleet: Fleet,
    pub sim: String,
    sim_cancel: tokio_util::sync::CancellationToken,
    pub pool: sqlx::PgPool,
    pub settings: Settings,
    pub tenant_id: wafleet_core::domain::TenantId,
    pub api_key: String,
    pub waba_id: String,
    pub phone_number_id: String,
    pub app_secret: String,
    pub http: reqwest::Client,
    pub(crate) db_name: String,
    /// Set once `stop` cleaned up; otherwise `Drop` does it (a test that panicked).
    cleaned: bool,
    /// The clock the fleet runs on (the wall clock unless the test brought its own).
    pub clock: wafleet_core::clock::SharedClock,
    /// Whether the fleet runs its dispatcher in this process.
    dispatcher: Dispatcher,
}

impl TestFleet {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with settings adjusted by `tweak` (after the test defaults).
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with_clock(wafleet::fleet::system_clock(), tweak).await
    }

    /// Starts without a dispatcher: the test runs one as its own process
    /// (`procs::ServiceProcess`), to kill it.
    pub async fn start_without_dispatcher(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_inner(wafleet::fleet::system_clock(), Dispatcher::Elsewhere, tweak).await
    }

    /// Starts on `clock` (e.g. a `ManualClock` the test moves), settings adjusted by `tweak`.
    pub async fn start_with_clock(
        clock: wafleet_core::clock::SharedClock,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::start_inner(clock, Dispatcher::InProcess, tweak).await
    }

    async fn start_inner(
        clock: wafleet_core::clock::SharedClock,
        dispatcher: Dispatcher,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        init_test_log();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("wafleet_test_{id}");
        let admin = sqlx::PgPool::connect(&admin_database_url())
            .await
            .expect("PostgreSQL is up (just services)");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{db_name}\""
        )))
        .execute(&admin)
        .await
        .expect("create test database");
        admin.close().await;
        let base = admin_database_url();
        let database_url = format!(
            "{}/{db_name}",
            base.rsplit_once('/').expect("url has a path").0
        );

        let app_secret = format!("test-app-secret-{id}");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mut settings = Settings {
            database_url: database_url.clone(),
            amqp_prefix: format!("wt-{}", &id[..12]),
            ingest_addr: any,
            webhooks_addr: any,
            dispatcher_addr: any,
            secret_key: Some(Secret::new(SecretBox::generate_key_hex().expect("random"))),
            meta_app_secret: Some(Secret::new(app_secret.clone())),
            meta_verify_token: Some(Secret::new(format!("verify-{id}"))),
            meta_app_id: Some(wafleet_meta_sim::DEFAULT_APP_ID.to_owned()),
            database_max_connections: 4,
            ..Settings::default()
        };
        if let Ok(url) = std::env::var("WAFLEET_TEST_AMQP_URL") {
            settings.amqp_url = url;
        }
        settings.dispatch.shards = 2;
        settings.dispatch.retry_tiers = vec![Duration::from_millis(300), Duration::from_secs(1)];
        settings.ingest.outbox_after = Duration::from_secs(1);
        settings.ingest.outbox_interval = Duration::from_millis(300);
        tweak(&mut settings);

        let pool = wafleet_core::db::connect(&database_url, 4, "wafleet-test")
            .await
            .expect("test database");
        wafleet_core::db::migrate(&pool).await.expect("migrations");
        let sim_settings = SimSettings {
            addr: any,
            app_secret: app_secret.clone(),
            status_delay: Duration::from_millis(30),
            batch_window: Duration::from_millis(20),
            ..Default::default()
        };
        let sim_server = wafleet_meta_sim::MetaSim::build(sim_settings)
            .await
            .expect("simulator starts");
        let sim = sim_server.base_url();
        let sim_cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(sim_server.run_until_stopped(sim_cancel.clone()));
        settings.meta_base_url = sim.clone();
        let http = reqwest::Client::new();
        let fleet = start_fleet(&settings, &http, &sim, &clock, dispatcher).await;

        let digits = u64::from_str_radix(&id[..12], 16).expect("hex") % 1_000_000_000_000;
        let waba_id = format!("19{digits:012}");
        let phone_number_id = format!("16{digits:012}");
        sim_post(
            &http,
            &sim,
            "/_sim/numbers",
            json!({
                "phone_number_id": phone_number_id, "waba_id": waba_id,
                "display_phone_number": SENDER_PHONE, "verified_name": "Acme Test",
            }),
        )
        .await;
        for (name, body) in [
            (
                "job_opportunity",
                "Hi {{1}}, {{2}} here about a role. Reply STOP to unsubscribe.",
            ),
            (
                "gdpr_consent_request",
                "Hi {{1}}, may we keep your details? Reply YES.",
            ),
        ] {
            sim_post(&http, &sim, "/_sim/templates", json!({
                "waba_id": waba_id, "name": name, "language": "en_GB", "category": "UTILITY", "body_text": body,
            }))
            .await;
        }
        let secrets = settings.secret_box().expect("key");
        let created = create_tenant(
            &pool,
            &secrets,
            &NewTenant {
                name: "Acme Test".into(),
                waba_id: waba_id.clone(),
                access_token: Secret::new("test-token"),
                app_secret: Secret::new(app_secret.clone()),
                verify_token: Secret::new(format!("tenant-verify-{id}")),
                senders: vec![NewSender {
                    phone_number_id: phone_number_id.clone(),
                    phone: PhoneNumber::parse(SENDER_PHONE).expect("valid"),
                    display_name: "Acme Test".into(),
                }],
            },
        )
        .await
        .expect("tenant");
        wafleet_ingest_sync(&pool, &secrets, &http, &fleet.settings, created.tenant_id).await;
        Self {
            fleet,
            sim,
            sim_cancel,
            pool,
            settings,
            tenant_id: created.tenant_id,
            api_key: created.api_key,
            waba_id,
            phone_number_id,
            app_secret,
            http,
            db_name,
            cleaned: false,
            clock,
            dispatcher,
        }
    }

    /// A rolling restart: a second fleet starts on the same database and queues, then the first
    /// stops (finishing its in-flight work); single active consumers hand the shards over.
    pub async fn restart(&mut self) {
        let fleet = start_fleet(
            &self.settings,
            &self.http,
            &self.sim,
            &self.clock,
            self.dispatcher,
        )
        .await;
        let old = std::mem::replace(&mut self.fleet, fleet);
        old.stop().await.expect("fleet stops cleanly");
    }

    /// Stops the fleet and removes the test's queues and database.
    pub async fn stop(mut self) {
        self.cleaned = true;
        let fleet = std::mem::replace(&mut self.fleet, Fleet::stopped());
        fleet.stop().await.expect("fleet stops cleanly");
        self.sim_cancel.cancel();
        self.pool.close().await;
        remove_test_resources(&self.settings, &self.db_name).await;
    }
}

impl Drop for TestFleet {
    /// A test that panicked never reached `stop`: remove its queues and database anyway, or they
    /// pile up and eventually exhaust the broker's file handles (RabbitMQ then stops accepting
    /// connections).
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.sim_cancel.cancel();
        let settings = self.settings.clone();
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(remove_test_resources(&settings, &db_name));
            }
        })
        .join();
    }
}

mod setup;

use setup::{init_test_log, remove_test_resources, sim_post, start_fleet, wafleet_ingest_sync};

mod actions;
pub mod admin;
pub mod campaigns;
pub mod events;
pub mod observe;
pub mod onboarding;
pub mod ops;
pub mod procs;
pub mod proxy;
pub mod receiver;

pub use admin::OtherTenant;
pub use events::EventQueue;

/// The broker the tests use (`WAFLEET_TEST_AMQP_URL`, else the default).
pub fn test_amqp_url() -> String {
    std::env::var("WAFLEET_TEST_AMQP_URL").unwrap_or_else(|_| Settings::default().amqp_url)
}

/// Settings for tests that wait on the deferred releaser: it looks every 100 ms.
pub fn fast_release(s: &mut wafleet_core::Settings) {
    s.dispatch.releaser_interval = std::time::Duration::from_millis(100);
}

/// Whether a message (as `GET /v1/messages/{id}` shows it) reached Meta.
pub fn sent_or_later(m: &Value) -> bool {
    ["sent", "delivered", "read"].contains(&m["state"].as_str().unwrap_or_default())
}

/// The `id` of a reply body.
pub fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("an id").to_owned()
}
