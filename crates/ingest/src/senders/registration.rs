//! A sender's registration for Cloud API (reference §7; Meta's "Register a business phone
//! number"): `POST /{phone_number_id}/register` with a six-digit two-step PIN. A number is
//! registered after Embedded Signup or OTP verification, and again after an approved display
//! name change; until then Meta refuses its sends (`133010`) and the dispatcher holds them
//! (`deferred: sender_not_registered`). Registering it makes those holds due at once.
//!
//! The PIN is the admin's (given), or generated: sealed with `WAFLEET_SECRET_KEY` before Meta
//! is called (a retry then uses the same one) and shown once, in the answer of the registration
//! that set it. Removing a sender deregisters its number at Meta, keeps its history and frees
//! its place among the 20.

use super::{LIVE, SenderError, SenderView, get, lock_senders};
use crate::graph_admin::{GraphAdmin, GraphAdminError};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use wafleet_core::{
    config::Secret,
    domain::{SenderId, TenantId},
    secrets::random_pin,
    tenant::MetaConnection,
};

/// Meta's code for a number that is not registered (a deregistration has nothing to undo).
const NOT_REGISTERED: i64 = 133010;

/// A registered sender, and the PIN when this registration generated it (shown once).
#[derive(Debug)]
pub struct Registered {
    pub sender: SenderView,
    pub pin: Option<Secret>,
}

/// Registers an approved sender's number with `pin` (the number's two-step PIN, if it has one)
/// or with its stored or a generated PIN.
pub async fn register(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    id: SenderId,
    pin: Option<&str>,
) -> Result<Registered, SenderError> {
    if let Some(pin) = pin
        && (pin.len() != 6 || !pin.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(SenderError::Invalid {
            field: "pin",
            detail: "pin is the number's 6-digit two-step verification PIN".into(),
        });
    }
    let sender = get(pool, tenant, id).await?;
    if sender.status != "approved" {
        return Err(SenderError::NotApproved(sender.status));
    }
    let conn = graph.connection(pool, tenant).await?;
    let shown = register_number(pool, graph, &conn, id, &sender.phone_number_id, pin).await?;
    Ok(Registered {
        sender: get(pool, tenant, id).await?,
        pin: shown,
    })
}

/// Registers one number of the tenant (the step Embedded Signup and `register` share): the PIN
/// is stored sealed before Meta is called; on success the sender is `registered` and its held
/// messages are due, on Meta's refusal its `registration_error` says why. Answers the PIN when
/// it was generated here.
pub(crate) async fn register_number(
    pool: &PgPool,
    graph: &GraphAdmin,
    conn: &MetaConnection,
    id: SenderId,
    phone_number_id: &str,
    given: Option<&str>,
) -> Result<Option<Secret>, SenderError> {
    let tenant = conn.tenant_id;
    let secrets = graph.secrets()?;
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT pin_enc FROM senders WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_one(pool)
            .await?;
    let (pin, generated) = match (given, stored) {
        (Some(pin), _) => (Secret::new(pin), false),
        (None, Some(sealed)) => (
            Secret::new(
                secrets
                    .open(&sealed)
                    .map_err(wafleet_core::tenant::TenantError::from)?,
            ),
            false,
        ),
        (None, None) => (
            Secret::new(random_pin().map_err(wafleet_core::tenant::TenantError::from)?),
            true,
        ),
    };
    if given.is_some() || generated {
        let sealed = secrets
            .seal(pin.expose())
            .map_err(wafleet_core::tenant::TenantError::from)?;
        sqlx::query("UPDATE senders SET pin_enc = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .bind(sealed)
            .execute(pool)
            .await?;
    }
    let now = graph.clock.now();
    match graph.register(conn, phone_number_id, &pin).await {
        Ok(()) => {
            sqlx::query(
                "UPDATE senders SET registration = 'registered', registered_at = $3,
                     registration_error = NULL
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?;
            release_holds(pool, tenant, phone_number_id, now).await?;
            tracing::info!(tenant = %tenant, sender = phone_number_id, "number registered for Cloud API");
            Ok(generated.then_some(pin))
        }
        Err(err) => {
            if let GraphAdminError::Meta { code, message, .. } = &err {
                sqlx::query(
                    "UPDATE senders SET registration_error = $3 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant)
                .bind(id)
                .bind(json!({"code": code, "message": message, "at": now}))
                .execute(pool)
                .await?;
            }
            Err(err.into())
        }
    }
}

/// Deregisters a sender's number at Meta: its sends are held until it is registered again.
pub async fn deregister(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    id: SenderId,
) -> Result<SenderView, SenderError> {
    let sender = get(pool, tenant, id).await?;
    if sender.status == "removed" {
        return Err(SenderError::NotFound);
    }
    let conn = graph.connection(pool, tenant).await?;
    graph.deregister(&conn, &sender.phone_number_id).await?;
    sqlx::query(
        "UPDATE senders SET registration = 'deregistered' WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .execute(pool)
    .await?;
    get(pool, tenant, id).await
}

/// Removes a sender: its number is deregistered at Meta (a number Meta already has as not
/// registered is fine), the row stays for its messages' history as `removed`, no longer the
/// company default nor among the 20. Removing it again changes nothing.
pub async fn remove(
    pool: &PgPool,
    graph: &GraphAdmin,
    tenant: TenantId,
    id: SenderId,
) -> Result<SenderView, SenderError> {
    let sender = get(pool, tenant, id).await?;
    if sender.status == "removed" {
        return Ok(sender);
    }
    if sender.registration == "registered" {
        let conn = graph.connection(pool, tenant).await?;
        match graph.deregister(&conn, &sender.phone_number_id).await {
            Ok(()) => {}
            Err(GraphAdminError::Meta {
                code: Some(NOT_REGISTERED),
                ..
            }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let mut tx = pool.begin().await?;
    lock_senders(&mut tx, tenant).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE senders SET status = 'removed', removed_at = $3, is_company_default = false,
             registration = CASE WHEN registration = 'registered' THEN 'deregistered'
                                 ELSE registration END
         WHERE tenant_id = $1 AND id = $2 AND {LIVE}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(graph.clock.now())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE tenant_settings SET default_sender_id = NULL
         WHERE tenant_id = $1 AND default_sender_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, sender = %sender.phone_number_id, "sender removed");
    get(pool, tenant, id).await
}

/// Makes the messages held for the sender's registration due now; the dispatcher's releaser
/// takes them on its next round. Driven by `messages_unregistered_holds`.
pub(crate) async fn release_holds(
    pool: &PgPool,
    tenant: TenantId,
    phone_number_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE messages SET not_before = $3
         WHERE tenant_id = $1 AND phone_number_id = $2
           AND state = 'deferred' AND reason = 'sender_not_registered' AND not_before > $3",
    )
    .bind(tenant)
    .bind(phone_number_id)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected())
}
