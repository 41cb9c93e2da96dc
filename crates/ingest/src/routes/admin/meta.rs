//! The tenant's Meta connection: `GET/PUT /v1/settings/meta` and `POST /v1/settings/meta/check`.
//! The token, app secret and verify token are sealed with `WAFLEET_SECRET_KEY` and never
//! returned or logged; the audit trail records that they changed, not what they are.

use super::caller::{AdminCaller, audit};
use crate::state::AppState;
use axum::{Json, extract::State, http::StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wafleet_core::http::Problem;

/// A new or changed connection; the secrets may be left out to keep the stored ones.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetaUpdate {
    /// The WhatsApp Business Account id (digits).
    pub waba_id: String,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
}

/// The connection as the API shows it: never the secrets, only whether they are set.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MetaView {
    /// Null until connected.
    pub waba_id: Option<String>,
    pub access_token_set: bool,
    pub app_secret_set: bool,
    pub verify_token_set: bool,
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

/// `GET /v1/settings/meta` (admin): the WABA id and which secrets are set.
pub async fn get(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<MetaView>, Problem> {
    let waba: Option<String> =
        sqlx::query_scalar("SELECT waba_id FROM meta_connections WHERE tenant_id = $1")
            .bind(caller.principal.tenant_id)
            .fetch_optional(&st.pool)
            .await?;
    // The three secrets are stored together with the WABA id (all NOT NULL).
    let set = waba.is_some();
    Ok(Json(MetaView {
        waba_id: waba,
        access_token_set: set,
        app_secret_set: set,
        verify_token_set: set,
    }))
}

/// `PUT /v1/settings/meta` (admin).
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
    let seal = |v: &Option<String>| -> Result<Option<Vec<u8>>, Problem> {
        v.as_deref()
            .map(|s| secrets.seal(s.trim()))
            .transpose()
            .map_err(|_| Problem::internal())
    };
    let (token, app_secret, verify) = (
        seal(&update.access_token)?,
        seal(&update.app_secret)?,
        seal(&update.verify_token)?,
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
                 verify_token_enc = COALESCE($5, verify_token_enc)
             WHERE tenant_id = $1",
        )
    } else {
        if token.is_none() || app_secret.is_none() || verify.is_none() {
            return Err(invalid(
                if token.is_none() { "access_token" } else if app_secret.is_none() { "app_secret" } else { "verify_token" },
                "a new connection needs access_token, app_secret and verify_token",
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
    .bind(verify.as_ref())
    .execute(&mut *tx)
    .await;
    if let Err(sqlx::Error::Database(db)) = &written
        && db.is_unique_violation()
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "waba_taken",
            "that WABA is connected to another tenant",
        )
        .field("waba_id"));
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
    get(State(st), caller).await
}

/// `POST /v1/settings/meta/check` (admin): asks Graph for the WABA's phone numbers and reports
/// `connected`, or Meta's error message.
pub async fn check(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<MetaCheck>, Problem> {
    let conn = st
        .graph
        .connection(&st.pool, caller.principal.tenant_id)
        .await?;
    Ok(Json(match st.graph.list_numbers(&conn).await {
        Ok(numbers) => MetaCheck {
            connected: true,
            waba_id: conn.waba_id,
            phone_numbers: Some(numbers.len()),
            error: None,
        },
        Err(crate::graph_admin::GraphAdminError::Meta { message, code, .. }) => MetaCheck {
            connected: false,
            waba_id: conn.waba_id,
            phone_numbers: None,
            error: Some(MetaError { code, message }),
        },
        Err(other) => return Err(other.into()),
    }))
}
