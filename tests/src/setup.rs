//! The harness's plumbing: starting the services for a test, syncing its templates, its log
//! file, and removing its queues and database afterwards.

use crate::admin_database_url;
use serde_json::{Value, json};
use wafleet::fleet::{Dispatcher, Fleet};
use wafleet_core::{
    Settings,
    amqp::{self, Topology},
    secrets::SecretBox,
};

/// Deletes a test's queues and exchanges and drops its database.
pub(crate) async fn remove_test_resources(settings: &Settings, db_name: &str) {
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
pub(crate) async fn start_fleet(
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

pub(crate) async fn sim_post(http: &reqwest::Client, sim: &str, path: &str, body: Value) {
    let res = http
        .post(format!("{sim}{path}"))
        .json(&body)
        .send()
        .await
        .expect("sim answers");
    assert!(res.status().is_success(), "sim {path}: {}", res.status());
}

pub(crate) async fn wafleet_ingest_sync(
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
pub(crate) fn init_test_log() {
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
