//! `GET /v1/senders`: the tenant's sender numbers with the state of their circuit breaker, and
//! any template or account breaker that is open. Read-only; the admin API extends it.

use crate::{auth::Principal, state::AppState};
use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use wafleet_core::{domain::Role, http::Problem};

/// A breaker as the API shows it.
#[derive(Debug, Serialize)]
pub struct CircuitView {
    /// `sender`, `template` (key `name:language`) or `account`.
    pub scope: String,
    pub key: String,
    /// `open` (holding messages until `until`) or `half_open` (a probe may pass).
    pub state: &'static str,
    pub code: Option<i64>,
    pub opened_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub error: Option<Value>,
}

/// A sender with its breaker.
#[derive(Debug, Serialize)]
pub struct SenderView {
    pub phone_number_id: String,
    pub phone: String,
    pub display_name: String,
    pub status: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    pub circuit_detail: Option<CircuitView>,
}

#[derive(Debug, Serialize)]
pub struct Senders {
    pub senders: Vec<SenderView>,
    /// Every open or half-open breaker of the tenant (senders, templates, account).
    pub circuits: Vec<CircuitView>,
}

type CircuitRow = (
    String,
    String,
    Option<i64>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<Value>,
);

#[tracing::instrument(name = "GET /v1/senders", skip_all, fields(otel.kind = "server", tenant))]
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<Senders>, Problem> {
    principal.require(Role::Reader)?;
    let now = st.clock.now();
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT phone_number_id, phone_e164, display_name, status FROM senders
         WHERE tenant_id = $1 ORDER BY created_at, phone_number_id",
    )
    .bind(principal.tenant_id)
    .fetch_all(&st.pool)
    .await?;
    let circuits: Vec<CircuitRow> = sqlx::query_as(
        "SELECT scope, key, code, opened_at, until, error FROM circuits
         WHERE tenant_id = $1 ORDER BY scope, key",
    )
    .bind(principal.tenant_id)
    .fetch_all(&st.pool)
    .await?;
    let circuits: Vec<CircuitView> = circuits
        .into_iter()
        .map(|(scope, key, code, opened_at, until, error)| CircuitView {
            state: if until > now { "open" } else { "half_open" },
            scope,
            key,
            code,
            opened_at,
            until,
            error,
        })
        .collect();
    let senders = rows
        .into_iter()
        .map(|(phone_number_id, phone, display_name, status)| {
            let detail = circuits
                .iter()
                .find(|c| c.scope == "sender" && c.key == phone_number_id);
            SenderView {
                circuit: detail.map_or("closed", |c| c.state),
                circuit_detail: detail.map(|c| CircuitView {
                    scope: c.scope.clone(),
                    key: c.key.clone(),
                    state: c.state,
                    code: c.code,
                    opened_at: c.opened_at,
                    until: c.until,
                    error: c.error.clone(),
                }),
                phone_number_id,
                phone,
                display_name,
                status,
            }
        })
        .collect();
    Ok(Json(Senders { senders, circuits }))
}
