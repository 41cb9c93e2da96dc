//! A pending sender's OTP verification (reference §7): `request_code` has Meta send a code by
//! SMS or VOICE, `verify_code` checks it with Meta. A verified sender is `approved`; three wrong
//! codes reject it, and `rejected` is final: the number must be added anew.

use super::{MAX_VERIFY_FAILURES, SenderError, SenderView, get};
use crate::graph_admin::{GraphAdmin, GraphAdminError};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use wafleet_core::domain::{SenderId, TenantId};

/// Meta's code for an OTP that does not match.
const META_CODE_MISMATCH: i64 = 136025;

/// Asks Meta to send the pending sender's OTP by `SMS` or `VOICE`.
pub async fn request_code(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    id: SenderId,
    method: &str,
    language: &str,
) -> Result<SenderView, SenderError> {
    let method = method.to_ascii_uppercase();
    if method != "SMS" && method != "VOICE" {
        return Err(SenderError::Invalid {
            field: "code_method",
            detail: "code_method is SMS or VOICE".into(),
        });
    }
    let sender = get(pool, tenant, id).await?;
    if sender.status != "pending" {
        return Err(SenderError::NotPending(sender.status));
    }
    let conn = graph.connection(pool, tenant).await?;
    graph
        .request_code(&conn, &sender.phone_number_id, &method, language)
        .await?;
    sqlx::query(
        "UPDATE senders SET code_method = $3, code_requested_at = now(), verify_failures = 0
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(&method)
    .execute(pool)
    .await?;
    get(pool, tenant, id).await
}

/// Verifies the OTP with Meta: approved on success; a wrong code counts toward rejection.
pub async fn verify_code(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    id: SenderId,
    code: &str,
) -> Result<SenderView, SenderError> {
    let code = code.trim();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(SenderError::Invalid {
            field: "code",
            detail: "code is the 6 digits Meta sent".into(),
        });
    }
    let requested: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT status, code_requested_at FROM senders WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let (status, requested_at) = requested.ok_or(SenderError::NotFound)?;
    if status != "pending" {
        return Err(SenderError::NotPending(status));
    }
    if requested_at.is_none() {
        return Err(SenderError::CodeNotRequested);
    }
    let sender = get(pool, tenant, id).await?;
    let conn = graph.connection(pool, tenant).await?;
    match graph
        .verify_code(&conn, &sender.phone_number_id, code)
        .await
    {
        Ok(()) => {
            sqlx::query(
                "UPDATE senders SET status = 'approved', verify_failures = 0
                 WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?;
            get(pool, tenant, id).await
        }
        Err(GraphAdminError::Meta {
            code: Some(META_CODE_MISMATCH),
            ..
        }) => {
            let failures: i32 = sqlx::query_scalar(
                "UPDATE senders SET verify_failures = verify_failures + 1,
                     status = CASE WHEN verify_failures + 1 >= $3 THEN 'rejected' ELSE status END,
                     is_company_default = CASE WHEN verify_failures + 1 >= $3 THEN false ELSE is_company_default END
                 WHERE tenant_id = $1 AND id = $2 RETURNING verify_failures",
            )
            .bind(tenant)
            .bind(id)
            .bind(MAX_VERIFY_FAILURES)
            .fetch_one(pool)
            .await?;
            if failures >= MAX_VERIFY_FAILURES {
                Err(SenderError::Rejected)
            } else {
                Err(SenderError::WrongCode {
                    remaining: MAX_VERIFY_FAILURES - failures,
                })
            }
        }
        Err(other) => Err(other.into()),
    }
}
