//! The HTTP API (SPEC §5). Every route authenticates a `Principal` and scopes by its tenant.

pub mod admin;
pub mod campaigns;
pub mod circuits;
pub mod conversation_read;
pub mod conversations;
pub mod dead_letters;
pub mod erase;
pub mod limits;
pub mod messages;
pub mod opt_outs;
pub mod paging;
pub mod records;
pub mod usage;

use crate::state::AppState;
use axum::{
    Router,
    routing::{delete, get, post},
};

/// The campaign routes: served with their own (larger) body limit, `ingest.campaign_max_body_bytes`.
pub fn campaign_router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", post(campaigns::create))
        .route("/v1/campaigns", get(campaigns::list))
        .route("/v1/campaigns/{id}", get(campaigns::get))
        .route("/v1/campaigns/{id}/rejections", get(campaigns::rejections))
        .route("/v1/campaigns/{id}/pause", post(campaigns::pause))
        .route("/v1/campaigns/{id}/resume", post(campaigns::resume))
        .route("/v1/campaigns/{id}/cancel", post(campaigns::cancel))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/records/{type}/{id}/messages", get(records::history))
        .route("/v1/records/{type}/{id}", delete(erase::erase))
        .route(
            "/v1/records/{type}/{id}/conversations",
            get(conversations::list),
        )
        .route(
            "/v1/conversations/{id}/messages",
            get(conversations::messages),
        )
        .route(
            "/v1/conversations/{id}/read",
            post(conversation_read::mark_read),
        )
        .route("/v1/opt-outs", get(opt_outs::list))
        .route("/v1/opt-outs", post(opt_outs::add))
        .route("/v1/opt-outs/{phone}", delete(opt_outs::remove))
        .route("/v1/consent/audit", get(opt_outs::audit_trail))
        .route("/v1/circuits", get(circuits::list))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/redrive", post(dead_letters::redrive))
        .route("/v1/limits", get(limits::get))
        .route("/v1/usage", get(usage::get))
        .merge(admin::router())
}
