//! Tenant administration (SPEC §2, §5): the Meta connection, settings, senders with OTP
//! verification, templates and API keys. The routes are one table: the router and the OpenAPI
//! document (`GET /v1/openapi.json`) are both built from it, so they cannot disagree.

pub mod api_keys;
pub mod caller;
pub mod meta;
pub mod openapi;
pub mod senders;
pub mod settings;
pub mod templates;

use crate::state::AppState;
use axum::{
    Router,
    http::Method,
    routing::{MethodRouter, delete, get, patch, post, put},
};

/// One route: its method and path, what it does, the least role it needs, and its handler.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    /// `None` for a public route.
    pub role: Option<&'static str>,
    pub handler: MethodRouter<AppState>,
}

fn r(
    method: Method,
    path: &'static str,
    role: Option<&'static str>,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> ApiRoute {
    ApiRoute {
        method,
        path,
        summary,
        role,
        handler,
    }
}

/// Every administration route.
pub fn routes() -> Vec<ApiRoute> {
    use Method as M;
    let (admin, reader) = (Some("admin"), Some("reader"));
    vec![
        r(
            M::GET,
            "/v1/settings",
            reader,
            "The tenant's settings",
            get(settings::get),
        ),
        r(
            M::PUT,
            "/v1/settings",
            admin,
            "Change settings (fields left out stay; validated, audited)",
            put(settings::put),
        ),
        r(
            M::GET,
            "/v1/settings/audit",
            admin,
            "Who changed what, when (latest 200)",
            get(settings::audit_trail),
        ),
        r(
            M::GET,
            "/v1/settings/meta",
            admin,
            "The Meta connection (WABA id; secrets are never returned)",
            get(meta::get),
        ),
        r(
            M::PUT,
            "/v1/settings/meta",
            admin,
            "Set the Meta connection: WABA id, token, app secret, verify token",
            put(meta::put),
        ),
        r(
            M::POST,
            "/v1/settings/meta/check",
            admin,
            "Ask Graph for the WABA's phone numbers: connected, or Meta's error",
            post(meta::check),
        ),
        r(
            M::GET,
            "/v1/senders",
            reader,
            "The tenant's senders with status, quality and throughput",
            get(senders::list),
        ),
        r(
            M::POST,
            "/v1/senders",
            admin,
            "Add a sender from the WABA's numbers (approved, or pending OTP)",
            post(senders::add),
        ),
        r(
            M::POST,
            "/v1/senders/sync",
            admin,
            "Refresh quality, throughput and status from Graph",
            post(senders::sync),
        ),
        r(
            M::GET,
            "/v1/senders/{id}",
            reader,
            "One sender",
            get(senders::get),
        ),
        r(
            M::PATCH,
            "/v1/senders/{id}",
            admin,
            "Change friendly name, display name, owner or rate (rate_mps, 1-1000)",
            patch(senders::edit),
        ),
        r(
            M::POST,
            "/v1/senders/{id}/request_code",
            admin,
            "Have Meta send the OTP by SMS or VOICE",
            post(senders::request_code),
        ),
        r(
            M::POST,
            "/v1/senders/{id}/verify_code",
            admin,
            "Verify the OTP: approved; three wrong codes reject the sender",
            post(senders::verify_code),
        ),
        r(
            M::GET,
            "/v1/templates",
            reader,
            "Templates with parameters per component and merge-field bindings",
            get(templates::list),
        ),
        r(
            M::POST,
            "/v1/templates/sync",
            admin,
            "Sync templates from Graph (every page)",
            post(templates::sync),
        ),
        r(
            M::PUT,
            "/v1/templates/{name}/{language}/bindings",
            admin,
            "Bind body parameters to merge codes",
            put(templates::bind),
        ),
        r(
            M::GET,
            "/v1/api-keys",
            admin,
            "API keys by prefix and role (never the key)",
            get(api_keys::list),
        ),
        r(
            M::POST,
            "/v1/api-keys",
            admin,
            "Create an API key (returned once)",
            post(api_keys::create),
        ),
        r(
            M::DELETE,
            "/v1/api-keys/{id}",
            admin,
            "Revoke an API key",
            delete(api_keys::revoke),
        ),
        r(
            M::GET,
            "/v1/openapi.json",
            None,
            "This document",
            get(openapi::document),
        ),
    ]
}

/// The administration router, built from [`routes`].
pub fn router() -> Router<AppState> {
    routes().into_iter().fold(Router::new(), |router, route| {
        router.route(route.path, route.handler)
    })
}
