//! The caller of an administration endpoint: an admin key, named in the audit trail by its
//! public prefix (`wf_<prefix>_…`), never by the key itself.

use crate::{auth::Principal, graph_admin::GraphAdminError, state::AppState};
use axum::{extract::FromRequestParts, http::StatusCode, http::request::Parts};
use wafleet_core::{domain::Role, http::Problem};

/// An authenticated admin and how the audit trail names them.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub principal: Principal,
    /// `apikey:<prefix>`.
    pub actor: String,
    /// The prefix of the key making the call.
    pub prefix: String,
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(Role::Admin)?;
        // The key was found by its hash, so the header is well-formed; its prefix is public.
        let prefix = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|k| k.trim().strip_prefix("wf_"))
            .and_then(|k| k.split('_').next())
            .unwrap_or("unknown")
            .to_owned();
        Ok(Self {
            principal,
            actor: format!("apikey:{prefix}"),
            prefix,
        })
    }
}

/// The JSON body of an administration request, or `422 invalid_field` with serde's reason
/// (unknown field, wrong type, missing field).
pub fn json_body<T>(
    body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Problem> {
    body.map(|axum::Json(b)| b).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.body_text(),
        )
    })
}

/// Writes one audit entry (who, when, what) in the caller's transaction.
pub async fn audit(
    tx: &mut sqlx::PgConnection,
    caller: &AdminCaller,
    change: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO settings_audit (tenant_id, actor, change) VALUES ($1, $2, $3)")
        .bind(caller.principal.tenant_id)
        .bind(&caller.actor)
        .bind(change)
        .execute(tx)
        .await?;
    Ok(())
}

impl From<GraphAdminError> for Problem {
    fn from(err: GraphAdminError) -> Self {
        match err {
            GraphAdminError::NoSecretKey => Problem::unavailable(err.to_string()),
            GraphAdminError::NoApp => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "signup_not_configured",
                err.to_string(),
            ),
            GraphAdminError::NotConnected => {
                Problem::new(StatusCode::CONFLICT, "meta_not_connected", err.to_string())
            }
            GraphAdminError::Meta { ref message, .. } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "meta_error",
                format!("Meta refused: {message}"),
            ),
            GraphAdminError::Http(_) => {
                Problem::new(StatusCode::BAD_GATEWAY, "meta_unreachable", err.to_string())
            }
            GraphAdminError::Tenant(e) => {
                tracing::error!(error = %e, "opening the Meta connection");
                Problem::internal()
            }
        }
    }
}
