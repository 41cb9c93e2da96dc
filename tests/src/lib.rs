//! The end-to-end test harness: a whole fleet (ingest, dispatcher, webhooks and the Meta
//! simulator) in-process, on a fresh PostgreSQL database and a random RabbitMQ prefix per test,
//! with a connected tenant, a registered sender and synced templates.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet::fleet::{Dispatcher, Fleet};
use wafleet_core::{
    Settings,
    amqp::{self, Topology},
    config::Secret,
    domain::PhoneNumber,
    secrets::SecretBox,
    tenant::{NewSender, NewTenant, create_tenant},
};
use wafleet_meta_sim::{RecordedSend, SimSettings};

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

    /// `POST /v1/messages` with an optional idempotency key.
    pub async fn send(&self, body: Value, idempotency_key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/messages", self.fleet.ingest_url))
            .bearer_auth(&self.api_key);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.json(&body).send().await.expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A template to the test candidate, with merge fields.
    pub fn template_request(record_id: &str) -> Value {
        json!({
            "to": CANDIDATE,
            "record": {"type": "candidate", "id": record_id},
            "template": {"name": "job_opportunity", "language": "en_GB"},
            "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"},
        })
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.fleet.ingest_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET /v1/messages/{id}` until `done` holds (10 s at most).
    pub async fn wait_for_message(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_message_within(id, what, Duration::from_secs(10), done)
            .await
    }

    /// Polls `GET /v1/messages/{id}` until `done` holds, for `within` at most.
    pub async fn wait_for_message_within(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, m) = self.get(&format!("/v1/messages/{id}")).await;
            if done(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; message is {m:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        self.wait_for_message(id, state, |m| m["state"] == state)
            .await
    }

    /// What the simulator received carrying our message id.
    pub async fn sends_for(&self, message_id: &str) -> Vec<RecordedSend> {
        self.sim_sends(&format!("?callback={message_id}")).await
    }

    /// Everything the simulator received.
    pub async fn all_sends(&self) -> Vec<RecordedSend> {
        self.sim_sends("").await
    }

    async fn sim_sends(&self, query: &str) -> Vec<RecordedSend> {
        self.http
            .get(format!("{}/_sim/sends{query}", self.sim))
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("sends json")
    }

    pub async fn sim(&self, method: reqwest::Method, path: &str, body: Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.sim))
            .json(&body)
            .send()
            .await
            .expect("sim answers");
        assert!(res.status().is_success(), "sim {path}: {}", res.status());
    }

    /// Opens an AMQP channel on the test's broker.
    pub async fn amqp_channel(&self) -> (lapin::Connection, lapin::Channel) {
        let conn = amqp::connect(&self.settings.amqp_url, "wafleet-test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        (conn, channel)
    }

    /// A supervised connection to the test's broker, as the services hold theirs (for a
    /// [`amqp::Publisher`]); `close` it when done.
    pub async fn broker(&self) -> amqp::Broker {
        let broker = amqp::Broker::start(
            &self.settings.amqp_url,
            "wafleet-test",
            "test",
            None,
            &self.settings.broker,
        );
        let forever = tokio_util::sync::CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(20), broker.wait_up(&forever))
            .await
            .expect("the test's broker is up");
        broker
    }

    /// Publishes `body` to `<p>.intake` as an upstream service would: persistent JSON, the
    /// tenant in a header, the idempotency key as `message_id`; waits for the broker's confirm.
    pub async fn publish_intake(&self, body: &[u8], message_id: Option<&str>) {
        let broker = self.broker().await;
        let publisher = amqp::Publisher::new(&broker);
        let mut headers = lapin::types::FieldTable::default();
        amqp::set_header(&mut headers, "tenant", &self.tenant_id.to_string());
        let mut properties = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        publisher
            .publish(amqp::Outgoing {
                exchange: &self.topology().intake_exchange(),
                routing_key: "send",
                body,
                properties,
                mandatory: true,
            })
            .await
            .expect("intake accepts the publish");
        broker.close().await;
    }

    pub fn topology(&self) -> Topology {
        Topology::from_settings(&self.settings)
    }

    /// Registers a second sender number for the tenant, on the simulator and in our database;
    /// returns its phone number id.
    pub async fn add_sender(&self, suffix: u8, phone: &str) -> String {
        let mut phone_number_id = format!("{}{suffix:02}", &self.phone_number_id[..12]);
        if phone_number_id == self.phone_number_id {
            phone_number_id = format!("{}{:02}", &self.phone_number_id[..12], (suffix + 1) % 100);
        }
        sim_post(
            &self.http,
            &self.sim,
            "/_sim/numbers",
            json!({
                "phone_number_id": phone_number_id, "waba_id": self.waba_id,
                "display_phone_number": phone, "verified_name": "Acme Test",
            }),
        )
        .await;
        sqlx::query(
            "INSERT INTO senders (id, tenant_id, phone_number_id, phone_e164, display_name)
             VALUES ($1, $2, $3, $4, 'Acme Test')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(self.tenant_id)
        .bind(&phone_number_id)
        .bind(phone)
        .execute(&self.pool)
        .await
        .expect("second sender");
        phone_number_id
    }

    /// `POST {path}` on ingest with the tenant's (admin) API key.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.fleet.ingest_url))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET {path}` on ingest until `done` holds (10 s at most).
    pub async fn wait_for_get(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {path} is {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// Deletes a test's queues and exchanges and drops its database.
async fn remove_test_resources(settings: &Settings, db_name: &str) {
    if let Ok(conn) = amqp::connect(&settings.amqp_url, "wafleet-test/cleanup").await {
        if let Ok(channel) = conn.create_channel().await {
            let _ = Topology::from_settings(settings).delete(&channel).await;
        }
        amqp::close(&conn).await;
    }
    if let Ok(admin) = sqlx::PgPool::connect(&admin_database_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

/// Starts the services with `settings` and points the simulator's webhooks at them.
async fn start_fleet(
    settings: &Settings,
    http: &reqwest::Client,
    sim: &str,
    clock: &wafleet_core::clock::SharedClock,
    dispatcher: Dispatcher,
) -> Fleet {
    let fleet = Fleet::start_with(settings.clone(), None, clock.clone(), dispatcher)
        .await
        .expect("fleet starts (RabbitMQ up?)");
    let res = http
        .put(format!("{sim}/_sim/config"))
        .json(&json!({"webhook_url": format!("{}/webhooks/meta", fleet.webhooks_url)}))
        .send()
        .await
        .expect("sim answers");
    assert!(res.status().is_success());
    fleet
}

async fn sim_post(http: &reqwest::Client, sim: &str, path: &str, body: Value) {
    let res = http
        .post(format!("{sim}{path}"))
        .json(&body)
        .send()
        .await
        .expect("sim answers");
    assert!(res.status().is_success(), "sim {path}: {}", res.status());
}

async fn wafleet_ingest_sync(
    pool: &sqlx::PgPool,
    secrets: &SecretBox,
    http: &reqwest::Client,
    settings: &Settings,
    tenant: wafleet_core::domain::TenantId,
) {
    wafleet::admin::template_sync_with(pool, secrets, http, settings, tenant)
        .await
        .expect("template sync");
    for name in ["job_opportunity", "gdpr_consent_request"] {
        let pairs = [
            ("1".to_owned(), "KNOWNAS".to_owned()),
            ("2".to_owned(), "CONSULTANTUSERNAME".to_owned()),
        ];
        let n = if name == "job_opportunity" { 2 } else { 1 };
        wafleet::admin::template_bind_with(pool, tenant, name, "en_GB", &pairs[..n])
            .await
            .expect("bind");
    }
}

/// With `WAFLEET_TEST_LOG=<dir>`, each test process (nextest runs one test per process) writes
/// its services' logs to `<dir>/<pid>.log` — for diagnosing a test that fails only under load.
fn init_test_log() {
    let Ok(dir) = std::env::var("WAFLEET_TEST_LOG") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(format!("{}.log", std::process::id()));
    let Ok(file) = std::fs::File::create(path) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init();
}

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
