//! Dead letters over the admin API (admin role): `GET /v1/dead-letters` lists them,
//! `POST /v1/dead-letters/redrive` with `{"id": "…"}` or `{"all": true}` sends them again.
//! Redrive is idempotent: a message already redriven is not moved (or sent) again.

use crate::{auth::Principal, state::AppState};
use axum::{Json, extract::State, http::StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wafleet_core::{
    dead_letters::{self, DeadLetter, Selection},
    domain::{MessageId, Role},
    http::Problem,
};

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeadLetters {
    pub dead_letters: Vec<DeadLetter>,
}

#[tracing::instrument(name = "GET /v1/dead-letters", skip_all, fields(otel.kind = "server", tenant))]
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<DeadLetters>, Problem> {
    principal.require(Role::Admin)?;
    let dead_letters = dead_letters::list(&st.pool, principal.tenant_id, 500).await?;
    Ok(Json(DeadLetters { dead_letters }))
}

/// Exactly one of `id` and `all`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RedriveRequest {
    pub id: Option<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Redriven {
    /// The messages moved back to be sent (empty if they were already redriven).
    pub redriven: Vec<MessageId>,
}

#[tracing::instrument(name = "POST /v1/dead-letters/redrive", skip_all, fields(otel.kind = "server", tenant))]
pub async fn redrive(
    State(st): State<AppState>,
    principal: Principal,
    Json(request): Json<RedriveRequest>,
) -> Result<Json<Redriven>, Problem> {
    principal.require(Role::Admin)?;
    let selection = match (request.id.as_deref(), request.all) {
        (Some(id), false) => Selection::One(id.parse().map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "id is not a message id",
            )
            .field("id")
        })?),
        (None, true) => Selection::All,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give either `id` or `\"all\": true`",
            ));
        }
    };
    let redriven = dead_letters::redrive(
        &st.pool,
        principal.tenant_id,
        selection,
        "api",
        st.clock.now(),
    )
    .await?;
    Ok(Json(Redriven { redriven }))
}
