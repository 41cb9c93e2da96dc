//! The end-to-end test harness: a whole fleet (ingest, dispatcher, webhooks and the Meta
//! simulator) in-process, on a fresh PostgreSQL database and a random RabbitMQ prefix per test,
//! with a connected tenant, a registered sender and synced templates.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet::fleet::Fleet;
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
fn admin_database_url() -> String {
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
    db_name: String,
    /// Set once `stop` cleaned up; otherwise `Drop` does it (a test that panicked).
    cleaned: bool,
    /// The clock the fleet runs on (the wall clock unless the test brought its own).
    pub clock: wafleet_core::clock::SharedClock,
}

impl TestFleet {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with settings adjusted by `tweak` (after the test defaults).
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with_clock(wafleet::fleet::system_clock(), tweak).await
    }

    /// Starts on `clock` (e.g. a `ManualClock` the test moves), settings adjusted by `tweak`.
    pub async fn start_with_clock(
        clock: wafleet_core::clock::SharedClock,
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
        let fleet = start_fleet(&settings, &http, &sim, &clock).await;

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
        }
    }

    /// A rolling restart: a second fleet starts on the same database and queues, then the first
    /// stops (finishing its in-flight work); single active consumers hand the shards over.
    pub async fn restart(&mut self) {
        let fleet = start_fleet(&self.settings, &self.http, &self.sim, &self.clock).await;
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
        let deadline = Instant::now() + Duration::from_secs(10);
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
        self.http
            .get(format!("{}/_sim/sends?callback={message_id}", self.sim))
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

    /// Posts a webhook body to our receiver, signed with `secret`.
    pub async fn post_webhook(&self, body: &[u8], secret: Option<&str>) -> StatusCode {
        let mut req = self
            .http
            .post(format!("{}/webhooks/meta", self.fleet.webhooks_url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(secret) = secret {
            req = req.header(
                "x-hub-signature-256",
                wafleet_webhooks::signature::sign(secret, body),
            );
        }
        req.send().await.expect("webhooks answers").status()
    }

    /// A `messages` webhook payload carrying `statuses` for this tenant's sender.
    pub fn status_payload(&self, statuses: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": SENDER_PHONE.trim_start_matches('+'), "phone_number_id": self.phone_number_id},
                "statuses": statuses,
            }}]}],
        }))
        .expect("json")
    }

    /// Opens an AMQP channel on the test's broker.
    pub async fn amqp_channel(&self) -> (lapin::Connection, lapin::Channel) {
        let conn = amqp::connect(&self.settings.amqp_url, "wafleet-test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        (conn, channel)
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
) -> Fleet {
    let fleet = Fleet::start(settings.clone(), None, clock.clone())
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

pub mod observe;
pub mod proxy;

/// The broker the tests use (`WAFLEET_TEST_AMQP_URL`, else the default).
pub fn test_amqp_url() -> String {
    std::env::var("WAFLEET_TEST_AMQP_URL").unwrap_or_else(|_| Settings::default().amqp_url)
}

impl TestFleet {
    /// The Prometheus exposition a service serves on `/metrics` (`base` is its URL).
    pub async fn scrape(&self, base: &str) -> String {
        let res = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("service answers /metrics");
        assert!(res.status().is_success(), "/metrics: {}", res.status());
        res.text().await.expect("metrics text")
    }

    /// `GET {base}/readyz`: the status and the body.
    pub async fn readyz(&self, base: &str) -> (StatusCode, String) {
        let res = self
            .http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("service answers /readyz");
        (res.status(), res.text().await.unwrap_or_default())
    }

    /// Polls `GET {base}/readyz` until it answers `want` (20 s at most); returns the body.
    pub async fn wait_for_readiness(&self, base: &str, want: StatusCode) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.readyz(base).await;
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{base}/readyz stayed {status} ({body}), expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the test's database refuse connections (and drops the open ones), or accept them.
    pub async fn set_database_reachable(&self, reachable: bool) {
        let admin = sqlx::PgPool::connect(&admin_database_url())
            .await
            .expect("PostgreSQL is up");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {reachable}",
            self.db_name
        )))
        .execute(&admin)
        .await
        .expect("alter database");
        if !reachable {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.db_name)
            .execute(&admin)
            .await
            .expect("terminate backends");
        }
        admin.close().await;
    }
}

/// A second tenant on the same fleet, for isolation tests.
#[derive(Debug, Clone)]
pub struct OtherTenant {
    pub tenant_id: wafleet_core::domain::TenantId,
    pub api_key: String,
    pub waba_id: String,
    pub phone_number_id: String,
}

/// Administration helpers: any method, any key, JSON in and out.
impl TestFleet {
    /// Calls the ingest API with `key` (none: unauthenticated); answers status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.fleet.ingest_url));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Calls the ingest API with the tenant's admin key.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.api_key), body).await
    }

    /// `GET` on the simulator's control API.
    pub async fn sim_get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.sim))
            .send()
            .await
            .expect("sim answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers a number of the tenant's WABA in the simulator (verified unless `verified` is
    /// false); answers its phone number id.
    pub async fn sim_number(&self, phone: &str, verified: bool) -> String {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let id = format!("17{}", &digits[digits.len().saturating_sub(12)..]);
        self.sim(
            reqwest::Method::POST,
            "/_sim/numbers",
            json!({"phone_number_id": id, "waba_id": self.waba_id, "display_phone_number": phone, "verified_name": "Acme Test"}),
        )
        .await;
        if !verified {
            self.sim(
                reqwest::Method::POST,
                &format!("/_sim/numbers/{id}/unverified"),
                json!({}),
            )
            .await;
        }
        id
    }

    /// Creates another tenant with its own WABA, number and template in the simulator.
    pub async fn other_tenant(&self, name: &str, phone: &str) -> OtherTenant {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(11)..];
        let (waba_id, phone_number_id) = (format!("29{tail}"), format!("26{tail}"));
        self.sim(
            reqwest::Method::POST,
            "/_sim/numbers",
            json!({"phone_number_id": phone_number_id, "waba_id": waba_id, "display_phone_number": phone}),
        )
        .await;
        self.sim(
            reqwest::Method::POST,
            "/_sim/templates",
            json!({"waba_id": waba_id, "name": format!("{name}_only"), "language": "en_GB", "category": "UTILITY", "body_text": "Hi {{1}}"}),
        )
        .await;
        let secrets = self.settings.secret_box().expect("key");
        let created = create_tenant(
            &self.pool,
            &secrets,
            &NewTenant {
                name: name.into(),
                waba_id: waba_id.clone(),
                access_token: Secret::new("other-token"),
                app_secret: Secret::new("other-app-secret"),
                verify_token: Secret::new("other-verify"),
                senders: vec![NewSender {
                    phone_number_id: phone_number_id.clone(),
                    phone: PhoneNumber::parse(phone).expect("valid"),
                    display_name: name.into(),
                }],
            },
        )
        .await
        .expect("tenant");
        wafleet::admin::template_sync_with(
            &self.pool,
            &secrets,
            &self.http,
            &self.settings,
            created.tenant_id,
        )
        .await
        .expect("template sync");
        OtherTenant {
            tenant_id: created.tenant_id,
            api_key: created.api_key,
            waba_id,
            phone_number_id,
        }
    }
}

/// Upstream's view of `<p>.events`: a test queue bound to every key.
pub struct EventQueue {
    _conn: lapin::Connection,
    channel: lapin::Channel,
    queue: String,
    /// Events read so far: (routing key, body).
    pub seen: Vec<(String, Value)>,
}

impl EventQueue {
    /// Waits (20 s at most: a whole-suite run on a busy machine is slow) for an event with
    /// routing key `<kind>.<tenant>` whose body matches.
    pub async fn wait_for(
        &mut self,
        kind: &str,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut checked = 0;
        loop {
            for (key, body) in &self.seen[checked..] {
                if key.starts_with(&format!("{kind}.")) && matches(body) {
                    return body.clone();
                }
            }
            checked = self.seen.len();
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the {what} event; saw {:#?}",
                self.seen
            );
            self.poll().await;
        }
    }

    /// Reads what has arrived (or waits a moment when nothing has).
    pub async fn poll(&mut self) {
        let got = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get");
        match got {
            Some(m) => self.seen.push((
                m.delivery.routing_key.to_string(),
                serde_json::from_slice(&m.delivery.data).expect("events are JSON"),
            )),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    /// Events of `kind` seen so far.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{kind}.")))
            .map(|(_, b)| b)
            .collect()
    }
}

impl TestFleet {
    /// Binds a fresh exclusive queue to `<p>.events` (every routing key), as upstream would.
    pub async fn events(&self) -> EventQueue {
        let (conn, channel) = self.amqp_channel().await;
        let queue = format!(
            "{}.test-events-{}",
            self.settings.amqp_prefix,
            uuid::Uuid::new_v4().simple()
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("declare the test queue");
        channel
            .queue_bind(
                queue.as_str().into(),
                self.topology().events_exchange().as_str().into(),
                "#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .expect("bind the test queue");
        EventQueue {
            _conn: conn,
            channel,
            queue,
            seen: Vec::new(),
        }
    }

    /// A webhook payload for this tenant's WABA with the given `(field, value)` changes, sent
    /// at unix time `at`.
    pub fn field_payload(&self, changes: Vec<(&str, Value)>, at: i64) -> Vec<u8> {
        let changes: Vec<Value> = changes
            .into_iter()
            .map(|(field, value)| json!({"field": field, "value": value}))
            .collect();
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "time": at, "changes": changes}],
        }))
        .expect("json")
    }

    /// A `messages` payload carrying inbound `messages` (with their `contacts`).
    pub fn inbound_payload(&self, messages: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": SENDER_PHONE.trim_start_matches('+'), "phone_number_id": self.phone_number_id},
                "contacts": [{"profile": {"name": "Anna"}, "wa_id": CANDIDATE.trim_start_matches('+')}],
                "messages": messages,
            }}]}],
        }))
        .expect("json")
    }

    /// Polls a `SELECT count(*)` until it returns `n` (10 s at most).
    pub async fn wait_for_count(&self, sql: &'static str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: i64 = sqlx::query_scalar(sql)
                .fetch_one(&self.pool)
                .await
                .expect("count");
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: `{sql}` is {got}, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
