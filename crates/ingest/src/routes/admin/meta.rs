//! The tenant's Meta connection: `GET/PUT /v1/settings/meta`, `POST /v1/settings/meta/check`
//! and `POST /v1/settings/meta/verify_token` (rotation). The token and app secret are sealed
//! with `WAFLEET_SECRET_KEY` and never returned or logged; the audit trail records that they
//! changed, not what they are. What the company pastes into its Meta app's webhook settings is
//! shown: the Callback URL (`WAFLEET_PUBLIC_BASE_URL` + `/webhooks/meta/{tenant}`) and the
//! generated Verify Token. The connection's status is the one kept by `crate::connection`.

use super::caller::{AdminCaller, audit};
use crate::{
    connection::{self, ConnectionStatus},
    state::AppState,
};
use axum::{Json, extract::State, http::StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wafleet_core::{domain::TenantId, http::Problem, secrets::random_verify_token};

/// A new or changed connection; the secrets may be left out to keep the stored ones.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetaUpdate {
    /// The WhatsApp Business Account id (digits).
    pub waba_id: String,
    /// A system-user access token; required for a new connection.
    pub access_token: Option<String>,
    /// The secret of the tenant's own Meta app; left out of a new connection, the tenant uses
    /// the global app (`WAFLEET_META_APP_SECRET`).
    pub app_secret: Option<String>,
    /// Left out of a new connection, one is generated (see `verify_token` in the answer).
    pub verify_token: Option<String>,
}

/// The connection as the API shows it: never the token or app secret, only whether they are set.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MetaView {
    /// Null until connected.
    pub waba_id: Option<String>,
    pub access_token_set: bool,
    /// Whether the tenant has its own Meta app (else the global app signs its webhooks).
    pub app_secret_set: bool,
    pub verify_token_set: bool,
    /// The Callback URL to paste into the Meta app's webhook settings (null while
    /// `WAFLEET_PUBLIC_BASE_URL` is unset).
    pub callback_url: Option<String>,
    /// The Verify Token to paste next to it; rotate it with `POST /v1/settings/meta/verify_token`.
    pub verify_token: Option<String>,
    /// The connection's status as Meta last answered (null without a connection).
    pub connection: Option<ConnectionStatus>,
}

/// What Graph said to `GET /{waba}/phone_numbers`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MetaCheck {
    pub connected: bool,
    pub waba_id: String,
    /// How many numbers the WABA has (when connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_numbers: Option<usize>,
    /// Meta's error (when not connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MetaError>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MetaError {
    /// Meta's error code, when it gave one.
    pub code: Option<i64>,
    pub message: String,
}

fn invalid(field: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_setting", detail).field(field)
}

/// `GET /v1/settings/meta` (admin).
pub async fn get(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<MetaView>, Problem> {
    Ok(Json(view(&st, caller.principal.tenant_id).await?))
}

/// The connection of `tenant` as `GET /v1/settings/meta` shows it.
pub(crate) async fn view(st: &AppState, tenant: TenantId) -> Result<MetaView, Problem> {
    let row: Option<(String, bool, Vec<u8>)> = sqlx::query_as(
        "SELECT waba_id, app_secret_enc IS NOT NULL, verify_token_enc
         FROM meta_connections WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&st.pool)
    .await?;
    let verify_token = match &row {
        Some((_, _, sealed)) => Some(st.graph.secrets()?.open(sealed).map_err(|e| {
            tracing::error!(error = %e, "opening the verify token");
            Problem::internal()
        })?),
        None => None,
    };
    let callback_url = st
        .public_base_url
        .as_ref()
        .map(|base| format!("{}/webhooks/meta/{tenant}", base.trim_end_matches('/')));
    Ok(MetaView {
        access_token_set: row.is_some(),
        app_secret_set: row.as_ref().is_some_and(|(_, own, _)| *own),
        verify_token_set: row.is_some(),
        waba_id: row.map(|(waba, _, _)| waba),
        callback_url,
        verify_token,
        connection: connection::status(&st.pool, tenant).await?,
    })
}

/// `PUT /v1/settings/meta` (admin). A new token resets the status to `unknown` and is checked
/// at once.
pub async fn put(
    State(st): State<AppState>,
    caller: AdminCaller,
    body: Result<Json<MetaUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<MetaView>, Problem> {
    let Json(update) = body.map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_setting",
            e.body_text(),
        )
    })?;
    if update.waba_id.is_empty() || !update.waba_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid(
            "waba_id",
            "waba_id is the WhatsApp Business Account id (digits)",
        ));
    }
    for (field, value) in [
        ("access_token", &update.access_token),
        ("app_secret", &update.app_secret),
        ("verify_token", &update.verify_token),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(invalid(
                field,
                "leave it out to keep the stored one; it cannot be empty",
            ));
        }
    }
    let secrets = st.graph.secrets()?;
    let seal = |v: Option<&str>| -> Result<Option<Vec<u8>>, Problem> {
        v.map(|s| secrets.seal(s.trim()))
            .transpose()
            .map_err(|_| Problem::internal())
    };
    let (token, app_secret, verify) = (
        seal(update.access_token.as_deref())?,
        seal(update.app_secret.as_deref())?,
        seal(update.verify_token.as_deref())?,
    );
    let tenant = caller.principal.tenant_id;
    let mut tx = st.pool.begin().await?;
    let before: Option<String> =
        sqlx::query_scalar("SELECT waba_id FROM meta_connections WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    let written = if before.is_some() {
        sqlx::query(
            "UPDATE meta_connections SET waba_id = $2,
                 access_token_enc = COALESCE($3, access_token_enc),
                 app_secret_enc = COALESCE($4, app_secret_enc),
                 verify_token_enc = COALESCE($5, verify_token_enc),
                 status = CASE WHEN $3 IS NULL THEN status ELSE 'unknown' END,
                 status_since = CASE WHEN $3 IS NULL THEN status_since ELSE now() END,
                 updated_at = now()
             WHERE tenant_id = $1",
        )
    } else {
        if token.is_none() {
            return Err(invalid(
                "access_token",
                "a new connection needs an access_token (or connect with Embedded Signup)",
            ));
        }
        sqlx::query(
            "INSERT INTO meta_connections (tenant_id, waba_id, access_token_enc, app_secret_enc, verify_token_enc)
             VALUES ($1, $2, $3, $4, $5)",
        )
    }
    .bind(tenant)
    .bind(&update.waba_id)
    .bind(token.as_ref())
    .bind(app_secret.as_ref())
    .bind(match verify {
        Some(v) => Some(v),
        None if before.is_none() => Some(new_verify_token(&st)?),
        None => None,
    })
    .execute(&mut *tx)
    .await;
    if let Err(sqlx::Error::Database(db)) = &written
        && db.is_unique_violation()
    {
        return Err(waba_taken());
    }
    written?;
    audit(
        &mut tx,
        &caller,
        json!({ "meta": {
            "waba_id": { "before": before, "after": update.waba_id },
            "access_token_changed": update.access_token.is_some(),
            "app_secret_changed": update.app_secret.is_some(),
            "verify_token_changed": update.verify_token.is_some(),
        }}),
    )
    .await?;
    tx.commit().await?;
    if update.access_token.is_some() {
        // Best effort: the periodic check records it otherwise.
        let _ = connection::check(&st.pool, &st.graph, tenant).await;
    }
    get(State(st), caller).await
}

/// The problem of a WABA connected to another tenant.
pub(crate) fn waba_taken() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "waba_taken",
        "that WABA is connected to another tenant",
    )
    .field("waba_id")
}

/// A fresh verify token, sealed.
pub(crate) fn new_verify_token(st: &AppState) -> Result<Vec<u8>, Problem> {
    let secrets = st.graph.secrets()?;
    random_verify_token()
        .and_then(|token| secrets.seal(&token))
        .map_err(|_| Problem::internal())
}

/// `POST /v1/settings/meta/verify_token` (admin): a new Verify Token replaces the old one at
/// once; paste it into the Meta app's webhook settings (Meta verifies it with the handshake).
pub async fn rotate_verify_token(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<MetaView>, Problem> {
    let sealed = new_verify_token(&st)?;
    let tenant = caller.principal.tenant_id;
    let mut tx = st.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE meta_connections SET verify_token_enc = $2, updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tenant)
    .bind(sealed)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(crate::graph_admin::GraphAdminError::NotConnected.into());
    }
    audit(
        &mut tx,
        &caller,
        json!({"meta": {"verify_token_rotated": true}}),
    )
    .await?;
    tx.commit().await?;
    get(State(st), caller).await
}

/// `POST /v1/settings/meta/check` (admin): asks Graph for the WABA's phone numbers and reports
/// `connected`, or Meta's error message; either is recorded as the connection's status.
pub async fn check(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<MetaCheck>, Problem> {
    let (waba_id, listed) =
        connection::check(&st.pool, &st.graph, caller.principal.tenant_id).await?;
    Ok(Json(match listed {
        Ok(numbers) => MetaCheck {
            connected: true,
            waba_id,
            phone_numbers: Some(numbers),
            error: None,
        },
        Err(crate::graph_admin::GraphAdminError::Meta { message, code, .. }) => MetaCheck {
            connected: false,
            waba_id,
            phone_numbers: None,
            error: Some(MetaError { code, message }),
        },
        Err(other) => return Err(other.into()),
    }))
}
