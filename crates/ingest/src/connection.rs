//! The tenant's Meta connection status as kept (`wafleet_core::connection`): what
//! `GET /v1/settings/meta` shows, the check (`GET /{waba}/phone_numbers`) that
//! `POST /v1/settings/meta/check` runs, and the periodic check of every connection. A failed
//! Graph call records `token_invalid` / `account_restricted` by itself (`GraphAdmin::call`); a
//! successful check records `connected`.

use crate::graph_admin::{GraphAdmin, GraphAdminError};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    connection::{self, Observation},
    domain::TenantId,
};

/// Connections checked per round of the periodic check.
const CHECK_BATCH: i64 = 50;

/// The connection as Meta last answered.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, JsonSchema)]
pub struct ConnectionStatus {
    /// `connected`, `token_invalid`, `account_restricted`, or `unknown` before the first check.
    pub status: String,
    /// Since when it has this status.
    pub since: Option<DateTime<Utc>>,
    /// When Meta last answered about it.
    pub checked_at: Option<DateTime<Utc>>,
    /// Meta's error code and message, when not connected.
    pub code: Option<i64>,
    pub message: Option<String>,
}

/// The tenant's connection status (`None`: no connection).
pub async fn status(
    pool: &PgPool,
    tenant: TenantId,
) -> Result<Option<ConnectionStatus>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, status_since AS since, checked_at, status_code AS code,
                status_message AS message
         FROM meta_connections WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// Asks Graph for the WABA's phone numbers: how many on success (recorded `connected`), else
/// Meta's error (recorded when it concerns the token or account).
pub async fn check(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
) -> Result<(String, Result<usize, GraphAdminError>), GraphAdminError> {
    let conn = graph.connection(pool, tenant).await?;
    let listed = graph.list_numbers(&conn).await.map(|numbers| numbers.len());
    if listed.is_ok()
        && let Err(err) =
            connection::record(pool, tenant, &Observation::connected(), graph.clock.now()).await
    {
        tracing::warn!(error = %err, "could not record the connection's status");
    }
    Ok((conn.waba_id, listed))
}

/// Checks every connection every `interval`, the ones checked longest ago first. Safe in every
/// ingest replica: a round claims its connections (their `checked_at` moves on) with SKIP
/// LOCKED, so two replicas never check the same one.
pub async fn run_checks(
    pool: PgPool,
    graph: GraphAdmin,
    interval: Duration,
    cancel: CancellationToken,
) {
    let tick = interval.min(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let due = match claim_due(&pool, graph.clock.now(), interval).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "connection check could not read the due connections");
                continue;
            }
        };
        for tenant in due {
            match check(&pool, &graph, tenant).await {
                Ok((_, Ok(_))) => {}
                Ok((_, Err(err))) | Err(err) => {
                    tracing::info!(tenant = %tenant, error = %err, "connection check: Meta refused");
                }
            }
        }
    }
}

/// Claims the connections not checked for `interval` (never checked first). The one query of
/// the check that reads across tenants, as a sweep must; driven by `meta_connections_check_due`.
async fn claim_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    interval: Duration,
) -> Result<Vec<TenantId>, sqlx::Error> {
    let cutoff = now - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    sqlx::query_scalar(
        "UPDATE meta_connections SET checked_at = $1
         WHERE tenant_id IN (
             SELECT tenant_id FROM meta_connections
             WHERE checked_at IS NULL OR checked_at <= $2
             ORDER BY checked_at NULLS FIRST LIMIT $3
             FOR UPDATE SKIP LOCKED)
         RETURNING tenant_id",
    )
    .bind(now)
    .bind(cutoff)
    .bind(CHECK_BATCH)
    .fetch_all(pool)
    .await
}
