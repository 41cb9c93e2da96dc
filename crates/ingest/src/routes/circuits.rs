//! Circuit breakers as the API shows them: `GET /v1/circuits` lists every open or half-open
//! breaker of the tenant (sender, template `name:language`, account), and `GET /v1/senders`
//! shows each sender's own breaker through `sender_circuits`.

use crate::{auth::Principal, state::AppState};
use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use wafleet_core::{
    domain::{Role, TenantId},
    http::Problem,
};

/// A breaker as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct CircuitView {
    /// `sender`, `template` (key `name:language`) or `account`.
    pub scope: String,
    pub key: String,
    /// `open` (holding messages until `until`) or `half_open` (a probe may pass).
    #[sqlx(skip)]
    pub state: &'static str,
    pub code: Option<i64>,
    pub opened_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub error: Option<Value>,
}

/// Every breaker of the tenant that is not closed.
pub async fn open_circuits(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<Vec<CircuitView>, sqlx::Error> {
    let mut rows: Vec<CircuitView> = sqlx::query_as(
        "SELECT scope, key, code, opened_at, until, error FROM circuits
         WHERE tenant_id = $1 ORDER BY scope, key",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    for c in &mut rows {
        c.state = if c.until > now { "open" } else { "half_open" };
    }
    Ok(rows)
}

/// `circuit` and `circuit_detail` for a sender, from the tenant's open breakers.
pub fn sender_circuit(
    circuits: &[CircuitView],
    phone_number_id: &str,
) -> (&'static str, Option<CircuitView>) {
    let detail = circuits
        .iter()
        .find(|c| c.scope == "sender" && c.key == phone_number_id)
        .cloned();
    (detail.as_ref().map_or("closed", |c| c.state), detail)
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Circuits {
    pub circuits: Vec<CircuitView>,
}

/// `GET /v1/circuits` (reader).
#[tracing::instrument(name = "GET /v1/circuits", skip_all, fields(otel.kind = "server", tenant))]
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<Circuits>, Problem> {
    principal.require(Role::Reader)?;
    let circuits = open_circuits(&st.pool, principal.tenant_id, st.clock.now()).await?;
    Ok(Json(Circuits { circuits }))
}
