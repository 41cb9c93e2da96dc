//! `POST /v1/signup` (admin): the back end of Embedded Signup (`crate::signup`); `GET
//! /v1/signup` shows how far it got. A refused step answers Meta's own message; the same
//! request again goes on from that step.

use super::caller::AdminCaller;
use crate::{
    graph_admin::GraphAdminError,
    senders::SenderError,
    signup::{self, SignupError, SignupRequest, SignupView},
    state::AppState,
};
use axum::{
    Json,
    extract::{State, rejection::JsonRejection},
    http::StatusCode,
};
use std::collections::HashMap;
use wafleet_core::http::Problem;

/// Meta's OAuth code for a code it does not take (bad, used or expired).
const CODE_REFUSED: i64 = 100;

impl From<SignupError> for Problem {
    fn from(err: SignupError) -> Self {
        let detail = err.to_string();
        match err {
            SignupError::Invalid { field, .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail).field(field)
            }
            SignupError::WabaTaken => super::meta::waba_taken(),
            SignupError::Step {
                step: "exchange",
                error:
                    SenderError::Graph(GraphAdminError::Meta {
                        code: Some(CODE_REFUSED),
                        message,
                        ..
                    }),
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "signup_code_refused",
                format!(
                    "Meta refused the code: {message}. A code is single-use and valid 30 \
                     seconds: run Embedded Signup again for a new one"
                ),
            )
            .field("code"),
            SignupError::Step {
                step,
                error: SenderError::Graph(GraphAdminError::Meta { message, .. }),
            } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "signup_step_failed",
                format!(
                    "Meta refused the {step} step: {message}. Send the same request again to \
                     go on from this step"
                ),
            ),
            SignupError::Step { error, .. } => error.into(),
            SignupError::Database(e) => e.into(),
        }
    }
}

/// `POST /v1/signup` (admin): the code and ids from the browser; answers the signup with the
/// PINs it generated (shown once).
pub async fn run(
    State(st): State<AppState>,
    caller: AdminCaller,
    body: Result<Json<SignupRequest>, JsonRejection>,
) -> Result<Json<SignupView>, Problem> {
    let request = super::caller::json_body(body)?;
    let tenant = caller.principal.tenant_id;
    Ok(Json(
        signup::run(&st.pool, &st.graph, tenant, &request).await?,
    ))
}

/// `GET /v1/signup` (admin): the steps done, the last error, the senders.
pub async fn get(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<SignupView>, Problem> {
    signup::view(&st.pool, caller.principal.tenant_id, &HashMap::new())
        .await?
        .map(Json)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no Embedded Signup yet: POST /v1/signup with the code from the browser",
            )
        })
}
