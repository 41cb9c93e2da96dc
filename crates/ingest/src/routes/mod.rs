//! The HTTP API (SPEC §5). Every route authenticates a `Principal` and scopes by its tenant.

pub mod admin;
pub mod circuits;
pub mod dead_letters;
pub mod limits;
pub mod messages;
pub mod records;

use crate::state::AppState;
use axum::{
    Router,
    routing::{get, post},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/records/{type}/{id}/messages", get(records::history))
        .route("/v1/circuits", get(circuits::list))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/redrive", post(dead_letters::redrive))
        .route("/v1/limits", get(limits::get))
        .merge(admin::router())
}
