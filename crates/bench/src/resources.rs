//! What one benchmark run owns outside its processes: a fresh PostgreSQL database and a random
//! AMQP name prefix, both on loopback. Created at the start, removed at the end whatever
//! happened (the caller runs [`Resources::remove`] after success, error and Ctrl-C alike).

use anyhow::{Context, bail};
use std::path::Path;
use wafleet_core::{Settings, amqp, amqp::Topology};

/// The run's database and broker names, and the settings the services will see.
pub struct Resources {
    /// The server's maintenance database (`…/postgres`), for CREATE and DROP DATABASE.
    admin_url: String,
    pub db_name: String,
    pub database_url: String,
    pub amqp_url: String,
    pub prefix: String,
    /// The services' settings as they will load them (environment included), used to name
    /// every queue and exchange to delete.
    pub settings: Settings,
    /// 64 hex characters: the services' `WAFLEET_SECRET_KEY`.
    pub secret_key: String,
    /// The Meta app secret the simulator signs webhooks with and the webhooks service checks.
    pub app_secret: String,
    pub verify_token: String,
}

/// Refuses anything but a loopback host: the benchmark's traffic stays on 127.0.0.1.
pub fn require_loopback(url: &str, what: &str) -> anyhow::Result<()> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, h)| h);
    let host = host_port.split(['/', ':', '?']).next().unwrap_or_default();
    if !matches!(host, "127.0.0.1" | "localhost") {
        bail!("{what} must be on 127.0.0.1 (the benchmark stays on loopback), got host {host:?}");
    }
    Ok(())
}

/// Random hex, from two v4 UUIDs per 32 characters (no extra crate for 32 random bytes).
fn random_hex(chars: usize) -> String {
    let mut s = String::new();
    while s.len() < chars {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(chars);
    s
}

impl Resources {
    /// Creates the database `wafleet_bench_<id>` on the server of `admin_url`.
    pub async fn create(admin_url: &str, amqp_url: &str, run_dir: &Path) -> anyhow::Result<Self> {
        require_loopback(admin_url, "--database-url")?;
        require_loopback(amqp_url, "--amqp-url")?;
        // A file that does not exist: defaults, then the environment, as the services load
        // them from the run directory. Loaded first, so a bad variable leaves nothing behind.
        let mut settings = Settings::load(Some(&run_dir.join("wafleet.toml")))
            .context("loading settings from the environment")?;
        let id = random_hex(12);
        let db_name = format!("wafleet_bench_{id}");
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .context("PostgreSQL on 127.0.0.1:5432 (try `just services`)")?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{db_name}\""
        )))
        .execute(&admin)
        .await
        .context("creating the benchmark database")?;
        admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        let database_url = format!("{base}/{db_name}");
        let prefix = format!("wb-{id}");
        settings.amqp_prefix = prefix.clone();
        settings.amqp_url = amqp_url.to_owned();
        settings.database_url = database_url.clone();
        Ok(Self {
            admin_url: admin_url.to_owned(),
            db_name,
            database_url,
            amqp_url: amqp_url.to_owned(),
            prefix,
            settings,
            secret_key: random_hex(64),
            app_secret: format!("bench-app-secret-{}", random_hex(16)),
            verify_token: format!("bench-verify-{}", random_hex(8)),
        })
    }

    /// The topology's names (what the services declare under the run's prefix).
    pub fn topology(&self) -> Topology {
        Topology::from_settings(&self.settings)
    }

    /// Deletes the run's queues and exchanges and drops its database (best effort, reported).
    pub async fn remove(&self) {
        match amqp::connect(&self.amqp_url, "wafleet-bench/cleanup").await {
            Ok(conn) => {
                if let Ok(channel) = conn.create_channel().await
                    && let Err(err) = self.topology().delete(&channel).await
                {
                    eprintln!("note: could not delete the {}.* queues: {err}", self.prefix);
                }
                amqp::close(&conn).await;
            }
            Err(err) => eprintln!("note: broker unreachable for cleanup: {err}"),
        }
        match sqlx::PgPool::connect(&self.admin_url).await {
            Ok(admin) => {
                let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.db_name
                )))
                .execute(&admin)
                .await;
                if let Err(err) = dropped {
                    eprintln!("note: could not drop database {}: {err}", self.db_name);
                }
                admin.close().await;
            }
            Err(err) => eprintln!("note: PostgreSQL unreachable for cleanup: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        require_loopback("postgres://postgres@127.0.0.1:5432/postgres", "db").unwrap();
        require_loopback("amqp://guest:guest@localhost:5672/%2f", "amqp").unwrap();
        assert!(require_loopback("postgres://u@db.example.com/x", "db").is_err());
        assert!(require_loopback("amqp://guest:guest@10.0.0.5:5672/%2f", "amqp").is_err());
    }
}
