//! The PostgreSQL pool and the one embedded migration set.

use sqlx::{PgPool, postgres::PgPoolOptions};
use std::time::Duration;

/// Every migration in `migrations/`, embedded once; tests and `wafleet migrate` share it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Opens a pool. Connections are made lazily so a service starts (and reports not-ready) while
/// the database is down, and recovers when it comes back.
pub fn connect_lazy(
    url: &str,
    max_connections: u32,
    app_name: &str,
) -> Result<PgPool, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.application_name(app_name)))
}

/// Opens a pool and checks it answers.
pub async fn connect(
    url: &str,
    max_connections: u32,
    app_name: &str,
) -> Result<PgPool, sqlx::Error> {
    let pool = connect_lazy(url, max_connections, app_name)?;
    sqlx::query("SELECT 1").execute(&pool).await?;
    Ok(pool)
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether the database answers right now (for `/readyz`).
pub async fn is_reachable(pool: &PgPool) -> bool {
    tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(pool),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

/// Whether a failed statement may well succeed if tried again: the database was unreachable or
/// busy (no connection within the pool's timeout, a dropped connection, a restart), or
/// PostgreSQL chose this transaction as the victim of a deadlock (`40P01`) or a serialization
/// conflict (`40001`). Hot paths retry these (with a bound) instead of giving up on the work.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 40: transaction rollback; 08: connection exception; 57P: operator intervention
            // (admin shutdown, crash shutdown, cannot connect now); 53300: too many connections.
            c.starts_with("40") || c.starts_with("08") || c.starts_with("57P") || c == "53300"
        }),
        _ => false,
    }
}
