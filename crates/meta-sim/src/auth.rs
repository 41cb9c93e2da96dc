//! The bearer token every Graph route checks, shared by the routes below it (`graph`,
//! `listing`, `verification`, the onboarding edges). A missing token is Meta's `190`; so is a
//! token that was revoked (`POST /_sim/tokens/revoke`), with Meta's "session invalidated"
//! wording and subcode `460`.

use axum::http::HeaderMap;

use crate::errors::GraphError;
use crate::state::Sim;

/// Meta's subcode for a token whose session was invalidated (password change, removed access).
const SESSION_INVALIDATED: i64 = 460;

/// The bearer token of a request, if it has a non-empty one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Checks `Authorization: Bearer <token>`: present, and not revoked. Meta answers 190 otherwise.
pub(crate) fn require_bearer(sim: &Sim, headers: &HeaderMap) -> Result<(), GraphError> {
    let token = bearer(headers).ok_or_else(GraphError::invalid_token)?;
    if sim.lock().onboarding.is_revoked(token) {
        return Err(GraphError {
            message: "Error validating access token: The session has been invalidated because \
                      the user changed their password or Facebook has changed the session for \
                      security reasons."
                .to_owned(),
            subcode: Some(SESSION_INVALIDATED),
            ..GraphError::new(190, "The access token was revoked")
        });
    }
    Ok(())
}
