//! Bearer API key authentication: the key's hash names the tenant and the role. Every handler
//! takes a `Principal` and scopes its queries to `principal.tenant_id`. Operators (the upstream
//! product's staff administering tenants) use one credential of their own, `WAFLEET_OPERATOR_KEY`:
//! an `Operator`, never a tenant's key.

use crate::state::AppState;
use axum::{extract::FromRequestParts, http::StatusCode, http::request::Parts};
use wafleet_core::{
    domain::{Role, TenantId},
    http::Problem,
    secrets::hash_api_key,
};

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub role: Role,
    /// The API key's id: who made a change, in audit trails.
    pub key_id: uuid::Uuid,
}

impl Principal {
    /// Refuses callers below `role` (admin > sender > reader).
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this API key's role cannot do this (needs {})",
                    role.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |detail: &str| {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail.to_owned())
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("send Authorization: Bearer <api key>"))?;
        let key = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("send Authorization: Bearer <api key>"))?;
        let row: Option<(uuid::Uuid, TenantId, String)> = sqlx::query_as(
            "SELECT id, tenant_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash_api_key(key))
        .fetch_optional(&state.pool)
        .await?;
        let (key_id, tenant_id, role) =
            row.ok_or_else(|| unauthorized("unknown or revoked API key"))?;
        let role = Role::parse(&role).ok_or_else(Problem::internal)?;
        tracing::Span::current().record("tenant", tracing::field::display(tenant_id));
        Ok(Self {
            tenant_id,
            role,
            key_id,
        })
    }
}

/// An operator: the caller presented `WAFLEET_OPERATOR_KEY` (compared in constant time, as
/// hashes). A tenant's API key is never an operator's; with no operator key configured, every
/// operator route answers 401.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        use subtle::ConstantTimeEq as _;
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let ok = match (presented, &state.operator_key) {
            (Some(key), Some(ours)) => {
                bool::from(hash_api_key(key).ct_eq(&hash_api_key(ours.expose())))
            }
            _ => false,
        };
        if ok {
            Ok(Operator)
        } else {
            Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "operator routes take Authorization: Bearer <WAFLEET_OPERATOR_KEY>",
            ))
        }
    }
}
