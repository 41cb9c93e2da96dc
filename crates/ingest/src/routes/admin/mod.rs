//! Tenant administration (SPEC §2, §5): the Meta connection, settings, senders with OTP
//! verification, templates and API keys. The routes are one table: the router and the OpenAPI
//! document (`GET /v1/openapi.json`) are both built from it, so they cannot disagree.

pub mod api_keys;
pub mod caller;
pub mod deliveries;
pub mod endpoints;
pub mod meta;
pub mod openapi;
pub mod operator;
pub mod senders;
pub mod settings;
pub mod signup;
pub mod templates;

use crate::{senders::SenderView, state::AppState};
use axum::{
    Router,
    routing::{MethodRouter, delete, get, patch, post, put},
};
use openapi::Operation;
use schemars::JsonSchema;

/// One route: what the document says of it (method, path, least role, summary, bodies) and
/// its handler.
pub struct ApiRoute {
    pub op: Operation,
    pub handler: MethodRouter<AppState>,
}

impl ApiRoute {
    /// The JSON body the route reads.
    fn accepts<T: JsonSchema>(mut self) -> Self {
        self.op = self.op.accepts::<T>();
        self
    }

    /// A POST, PUT or PATCH that reads no body.
    fn no_body(mut self) -> Self {
        self.op = self.op.no_body();
        self
    }

    /// The success status and the type of its JSON body.
    fn returns<T: JsonSchema>(mut self, status: u16) -> Self {
        self.op = self.op.returns::<T>(status);
        self
    }
}

fn r(
    method: &'static str,
    path: &'static str,
    role: Option<&'static str>,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> ApiRoute {
    ApiRoute {
        op: Operation::new(method, path, role, summary),
        handler,
    }
}

/// Every administration route.
pub fn routes() -> Vec<ApiRoute> {
    let (admin, reader, ops) = (Some("admin"), Some("reader"), Some("operator"));
    vec![
        r(
            "post",
            "/v1/operator/tenants",
            ops,
            "Create a tenant (not yet connected) and its first admin API key (shown once)",
            post(operator::create),
        )
        .accepts::<operator::CreateRequest>()
        .returns::<operator::CreatedTenant>(201),
        r(
            "get",
            "/v1/operator/tenants",
            ops,
            "Every tenant: connection, senders, WhatsApp module switch",
            get(operator::list),
        )
        .returns::<operator::TenantList>(200),
        r(
            "get",
            "/v1/operator/tenants/{id}",
            ops,
            "One tenant",
            get(operator::get),
        )
        .returns::<wafleet_core::tenant::TenantSummary>(200),
        r(
            "post",
            "/v1/operator/tenants/{id}/disable",
            ops,
            "Switch the tenant's WhatsApp module off: sends refused (whatsapp_disabled), webhooks still recorded",
            post(operator::disable),
        )
        .no_body()
        .returns::<wafleet_core::tenant::TenantSummary>(200),
        r(
            "post",
            "/v1/operator/tenants/{id}/enable",
            ops,
            "Switch the tenant's WhatsApp module on",
            post(operator::enable),
        )
        .no_body()
        .returns::<wafleet_core::tenant::TenantSummary>(200),
        r(
            "get",
            "/v1/settings",
            reader,
            "The tenant's settings",
            get(settings::get),
        )
        .returns::<settings::SettingsBody>(200),
        r(
            "put",
            "/v1/settings",
            admin,
            "Change settings (fields left out stay; validated, audited)",
            put(settings::put),
        )
        .accepts::<crate::settings_rules::SettingsUpdate>()
        .returns::<settings::SettingsBody>(200),
        r(
            "get",
            "/v1/settings/audit",
            admin,
            "Who changed what, when (latest 200)",
            get(settings::audit_trail),
        )
        .returns::<settings::AuditTrail>(200),
        r(
            "get",
            "/v1/settings/meta",
            admin,
            "The Meta connection: WABA id, Callback URL and Verify Token to paste into Meta, status",
            get(meta::get),
        )
        .returns::<meta::MetaView>(200),
        r(
            "put",
            "/v1/settings/meta",
            admin,
            "Set the Meta connection by hand: WABA id, token, app secret, verify token",
            put(meta::put),
        )
        .accepts::<meta::MetaUpdate>()
        .returns::<meta::MetaView>(200),
        r(
            "post",
            "/v1/settings/meta/verify_token",
            admin,
            "Rotate the Verify Token (paste the new one into the Meta app's webhook settings)",
            post(meta::rotate_verify_token),
        )
        .no_body()
        .returns::<meta::MetaView>(200),
        r(
            "post",
            "/v1/settings/meta/check",
            admin,
            "Ask Graph for the WABA's phone numbers: connected, or Meta's error",
            post(meta::check),
        )
        .no_body()
        .returns::<meta::MetaCheck>(200),
        r(
            "post",
            "/v1/signup",
            admin,
            "Embedded Signup: exchange the code, record the numbers, subscribe the app, register the numbers",
            post(signup::run),
        )
        .accepts::<crate::signup::SignupRequest>()
        .returns::<crate::signup::SignupView>(200),
        r(
            "get",
            "/v1/signup",
            admin,
            "How far Embedded Signup got: steps done, Meta's last error, senders",
            get(signup::get),
        )
        .returns::<crate::signup::SignupView>(200),
        r(
            "get",
            "/v1/senders",
            reader,
            "The tenant's senders with status, quality and throughput",
            get(senders::list),
        )
        .returns::<senders::SenderList>(200),
        r(
            "post",
            "/v1/senders",
            admin,
            "Add a sender from the WABA's numbers (approved, or pending OTP)",
            post(senders::add),
        )
        .accepts::<senders::AddRequest>()
        .returns::<SenderView>(201),
        r(
            "post",
            "/v1/senders/sync",
            admin,
            "Refresh quality, throughput and status from Graph",
            post(senders::sync),
        )
        .no_body()
        .returns::<senders::SenderSync>(200),
        r(
            "get",
            "/v1/senders/{id}",
            reader,
            "One sender",
            get(senders::get),
        )
        .returns::<SenderView>(200),
        r(
            "patch",
            "/v1/senders/{id}",
            admin,
            "Change friendly name, owner or rate (rate_mps, 1-1000); a display name goes to Meta for review",
            patch(senders::edit),
        )
        .accepts::<senders::EditRequest>()
        .returns::<SenderView>(200),
        r(
            "delete",
            "/v1/senders/{id}",
            admin,
            "Remove a sender: deregistered at Meta, history kept, its place among the 20 freed",
            delete(senders::remove),
        )
        .returns::<SenderView>(200),
        r(
            "post",
            "/v1/senders/{id}/register",
            admin,
            "Register the number for Cloud API with its two-step PIN (generated and shown once if none)",
            post(senders::register),
        )
        .accepts::<senders::RegisterRequest>()
        .returns::<senders::RegisteredSender>(200),
        r(
            "post",
            "/v1/senders/{id}/deregister",
            admin,
            "Deregister the number at Meta (its sends are held until registered again)",
            post(senders::deregister),
        )
        .no_body()
        .returns::<SenderView>(200),
        r(
            "post",
            "/v1/senders/{id}/request_code",
            admin,
            "Have Meta send the OTP by SMS or VOICE",
            post(senders::request_code),
        )
        .accepts::<senders::CodeRequest>()
        .returns::<SenderView>(200),
        r(
            "post",
            "/v1/senders/{id}/verify_code",
            admin,
            "Verify the OTP: approved; three wrong codes reject the sender",
            post(senders::verify_code),
        )
        .accepts::<senders::VerifyRequest>()
        .returns::<SenderView>(200),
        r(
            "get",
            "/v1/templates",
            reader,
            "Templates with parameters per component and merge-field bindings",
            get(templates::list),
        )
        .returns::<templates::TemplateList>(200),
        r(
            "post",
            "/v1/templates/sync",
            admin,
            "Sync templates from Graph (every page)",
            post(templates::sync),
        )
        .no_body()
        .returns::<templates::TemplateSync>(200),
        r(
            "put",
            "/v1/templates/{name}/{language}/bindings",
            admin,
            "Bind body parameters to merge codes",
            put(templates::bind),
        )
        .accepts::<templates::BindRequest>()
        .returns::<templates::TemplateBindings>(200),
        r(
            "get",
            "/v1/api-keys",
            admin,
            "API keys by prefix and role (never the key)",
            get(api_keys::list),
        )
        .returns::<api_keys::KeyList>(200),
        r(
            "post",
            "/v1/api-keys",
            admin,
            "Create an API key (returned once)",
            post(api_keys::create),
        )
        .accepts::<api_keys::CreateRequest>()
        .returns::<crate::api_keys::CreatedKey>(201),
        r(
            "delete",
            "/v1/api-keys/{id}",
            admin,
            "Revoke an API key",
            delete(api_keys::revoke),
        )
        .returns::<crate::api_keys::KeyView>(200),
        r(
            "post",
            "/v1/webhook-endpoints",
            admin,
            "Add an HTTP endpoint for signed notifications (its whsec_ secret is returned once)",
            post(endpoints::create),
        )
        .accepts::<endpoints::CreateRequest>()
        .returns::<endpoints::EndpointWithSecret>(201),
        r(
            "get",
            "/v1/webhook-endpoints",
            admin,
            "The company's webhook endpoints (never their secrets)",
            get(endpoints::list),
        )
        .returns::<endpoints::EndpointList>(200),
        r(
            "get",
            "/v1/webhook-endpoints/{id}",
            admin,
            "One webhook endpoint",
            get(endpoints::get),
        )
        .returns::<endpoints::EndpointView>(200),
        r(
            "patch",
            "/v1/webhook-endpoints/{id}",
            admin,
            "Change an endpoint's URL, description, event types or enabled",
            patch(endpoints::edit),
        )
        .accepts::<endpoints::EditRequest>()
        .returns::<endpoints::EndpointView>(200),
        r(
            "delete",
            "/v1/webhook-endpoints/{id}",
            admin,
            "Delete an endpoint and its deliveries",
            delete(endpoints::remove),
        )
        .returns::<endpoints::EndpointView>(200),
        r(
            "post",
            "/v1/webhook-endpoints/{id}/rotate-secret",
            admin,
            "A new signing secret (returned once); the previous one also signs for 24 h",
            post(endpoints::rotate),
        )
        .no_body()
        .returns::<endpoints::EndpointWithSecret>(200),
        r(
            "post",
            "/v1/webhook-endpoints/{id}/test",
            admin,
            "Send the endpoint a signed test event",
            post(deliveries::test),
        )
        .no_body()
        .returns::<deliveries::DeliveryView>(202),
        r(
            "get",
            "/v1/webhook-endpoints/{id}/deliveries",
            admin,
            "An endpoint's deliveries, newest first (?state=pending|delivered|dead, limit, before)",
            get(deliveries::list),
        )
        .returns::<deliveries::DeliveryList>(200),
        r(
            "post",
            "/v1/webhook-deliveries/{id}/replay",
            admin,
            "Send a delivery again (a dead one included), from a fresh attempt budget",
            post(deliveries::replay),
        )
        .no_body()
        .returns::<deliveries::DeliveryView>(202),
        r(
            "get",
            "/v1/openapi.json",
            None,
            "This document",
            get(openapi::document),
        )
        .returns::<openapi::Document>(200),
    ]
}

/// The administration router, built from [`routes`].
pub fn router() -> Router<AppState> {
    routes().into_iter().fold(Router::new(), |router, route| {
        router.route(route.op.path, route.handler)
    })
}
