//! The Meta connection's status as Meta last answered (SPEC §2: "the connection status is
//! visible"): `connected`, `token_invalid` or `account_restricted`, since when, with Meta's code
//! and message. Ingest records it from its periodic check and its own Graph calls, the
//! dispatcher after every send error that halts the account. Each change is logged, counted
//! (`wafleet_connection_changes_total{status}`) and announced to upstream as `account.<tenant>`
//! through the events outbox, in the transaction of the change.

use crate::domain::TenantId;
use chrono::{DateTime, Utc};
use serde_json::json;

/// What Meta's last answer says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connected,
    /// The token is expired, revoked or lacks permission for the WABA (`0`, `190`, `3`, `10`,
    /// `200`–`299`): a new token (Embedded Signup again, or `PUT /v1/settings/meta`) fixes it.
    TokenInvalid,
    /// Meta restricted or locked the account (`131031`, `368`, `131042`, `131064`).
    AccountRestricted,
}

impl Status {
    /// The `meta_connections.status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connected => "connected",
            Status::TokenInvalid => "token_invalid",
            Status::AccountRestricted => "account_restricted",
        }
    }

    /// The status a Graph error code means, if it concerns the token or the account at all
    /// (reference §2: codes that halt every send of the token or account).
    pub fn of_code(code: i64) -> Option<Self> {
        match code {
            0 | 190 | 3 | 10 | 200..=299 => Some(Status::TokenInvalid),
            131031 | 368 | 131042 | 131064 => Some(Status::AccountRestricted),
            _ => None,
        }
    }
}

/// Meta's answer, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub status: Status,
    /// Meta's error code (none when connected).
    pub code: Option<i64>,
    /// Meta's own message (none when connected).
    pub message: Option<String>,
}

impl Observation {
    pub fn connected() -> Self {
        Self {
            status: Status::Connected,
            code: None,
            message: None,
        }
    }

    /// The observation a Graph error means, if it is about the token or the account.
    pub fn of_error(code: i64, message: &str) -> Option<Self> {
        Status::of_code(code).map(|status| Self {
            status,
            code: Some(code),
            message: Some(message.to_owned()),
        })
    }
}

/// Records what Meta answered for the tenant's connection at `now`: the check time always; the
/// status, code and message, and `status_since` when the status changes. A change also writes
/// the `account.<tenant>` event. Returns whether the status changed. A tenant without a
/// connection records nothing.
pub async fn record(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    seen: &Observation,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The row lock orders concurrent observations (the check and a dispatcher's error).
    let before: Option<String> =
        sqlx::query_scalar("SELECT status FROM meta_connections WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(before) = before else {
        return Ok(false);
    };
    let status = seen.status.as_str();
    let changed = before != status;
    sqlx::query(
        "UPDATE meta_connections SET status = $2, checked_at = $3,
             status_since = CASE WHEN $4 THEN $3 ELSE status_since END,
             status_code = $5, status_message = $6
         WHERE tenant_id = $1",
    )
    .bind(tenant)
    .bind(status)
    .bind(now)
    .bind(changed)
    .bind(seen.code)
    .bind(&seen.message)
    .execute(&mut *tx)
    .await?;
    if changed {
        let body = json!({
            "tenant_id": tenant, "status": status, "previous": before, "since": now,
            "code": seen.code, "message": seen.message,
        });
        sqlx::query(
            "INSERT INTO outbound_events (tenant_id, routing_key, body) VALUES ($1, $2, $3)",
        )
        .bind(tenant)
        .bind(format!("account.{tenant}"))
        .bind(body)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    if changed {
        metrics::counter!(crate::metrics::CONNECTION_CHANGES, "status" => status).increment(1);
        if seen.status == Status::Connected {
            tracing::info!(tenant = %tenant, previous = %before, "Meta connection is connected");
        } else {
            tracing::error!(
                tenant = %tenant, status, meta.error.code = ?seen.code,
                "Meta connection is unusable: {}", seen.message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_permission_errors_mean_an_invalid_token_and_account_errors_a_restriction() {
        for code in [0, 190, 3, 10, 200, 294, 299] {
            assert_eq!(Status::of_code(code), Some(Status::TokenInvalid), "{code}");
        }
        for code in [131031, 368, 131042, 131064] {
            assert_eq!(
                Status::of_code(code),
                Some(Status::AccountRestricted),
                "{code}"
            );
        }
        for code in [130429, 131026, 133010, 100, 2] {
            assert_eq!(Status::of_code(code), None, "{code}");
        }
    }
}
