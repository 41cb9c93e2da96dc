//! The HTTP receiver Meta calls: `GET /webhooks/meta` (subscription handshake) and
//! `POST /webhooks/meta` (signed deliveries) for the global app; the same under
//! `/webhooks/meta/{tenant}` for a tenant with its own Meta app. A verified body is published
//! raw and confirmed to `<p>.webhooks` before Meta gets its 200; parsing happens downstream.

use crate::signature;
use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use std::sync::Arc;
use wafleet_core::{
    amqp::{self, Outgoing, Publisher, Topology},
    config::Secret,
    contract::TENANT_HEADER,
    domain::TenantId,
    secrets::SecretBox,
    tenant::load_connection,
};

#[derive(Clone)]
pub struct ReceiverState {
    pub pool: sqlx::PgPool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub secrets: Option<SecretBox>,
    pub app_secret: Option<Secret>,
    pub verify_token: Option<Secret>,
}

pub fn router(state: ReceiverState) -> Router {
    Router::new()
        .route("/webhooks/meta", get(verify_global).post(receive_global))
        .route(
            "/webhooks/meta/{tenant}",
            get(verify_tenant).post(receive_tenant),
        )
        .with_state(state)
}

#[derive(Debug, Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

fn handshake(q: &Handshake, ours: Option<&Secret>) -> Response {
    match (q.mode.as_deref(), &q.verify_token, &q.challenge, ours) {
        (Some("subscribe"), Some(presented), Some(challenge), Some(ours))
            if signature::tokens_match(presented, ours.expose()) =>
        {
            (StatusCode::OK, challenge.clone()).into_response()
        }
        _ => {
            metrics::counter!("wafleet_webhook_handshakes_refused_total").increment(1);
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn verify_global(State(st): State<ReceiverState>, Query(q): Query<Handshake>) -> Response {
    handshake(&q, st.verify_token.as_ref())
}

async fn verify_tenant(
    State(st): State<ReceiverState>,
    Path(tenant): Path<String>,
    Query(q): Query<Handshake>,
) -> Response {
    match tenant_app(&st, &tenant).await {
        Ok(Some((_, _, verify))) => handshake(&q, Some(&verify)),
        Ok(None) => StatusCode::FORBIDDEN.into_response(),
        Err(status) => status.into_response(),
    }
}

#[tracing::instrument(name = "POST /webhooks/meta", skip_all, fields(otel.kind = "server", bytes = body.len()))]
async fn receive_global(
    State(st): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &st.app_secret else {
        tracing::error!("a webhook arrived but WAFLEET_META_APP_SECRET is not set; refusing it");
        return refuse();
    };
    if !signature::verify(secret.expose(), &body, signature_header(&headers)) {
        return refuse();
    }
    forward(&st, None, &body).await
}

#[tracing::instrument(name = "POST /webhooks/meta/{tenant}", skip_all, fields(otel.kind = "server", bytes = body.len()))]
async fn receive_tenant(
    State(st): State<ReceiverState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tenant_id, secret) = match tenant_app(&st, &tenant).await {
        Ok(Some((id, Some(secret), _))) => (id, secret),
        Ok(_) => return refuse(),
        Err(status) => return status.into_response(),
    };
    if !signature::verify(secret.expose(), &body, signature_header(&headers)) {
        return refuse();
    }
    forward(&st, Some(tenant_id), &body).await
}

fn signature_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
}

fn refuse() -> Response {
    metrics::counter!("wafleet_webhook_signature_failures_total").increment(1);
    StatusCode::UNAUTHORIZED.into_response()
}

/// The tenant's app secret and verify token, if it has a Meta connection. A tenant on the global
/// app (Embedded Signup: no app secret of its own) has its webhooks signed with the global
/// app's secret; without one configured, nothing verifies.
async fn tenant_app(
    st: &ReceiverState,
    tenant: &str,
) -> Result<Option<(TenantId, Option<Secret>, Secret)>, StatusCode> {
    let Ok(tenant_id) = tenant.parse::<TenantId>() else {
        return Ok(None);
    };
    let Some(secrets) = &st.secrets else {
        tracing::error!(
            "per-tenant webhooks need WAFLEET_SECRET_KEY to open the tenant's app secret"
        );
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    };
    match load_connection(&st.pool, secrets, tenant_id).await {
        Ok(Some(c)) => Ok(Some((
            tenant_id,
            c.app_secret.or_else(|| st.app_secret.clone()),
            c.verify_token,
        ))),
        Ok(None) => Ok(None),
        Err(err) => {
            tracing::error!(error = %err, "cannot load the tenant's Meta app");
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Publishes the verified raw body; 200 only once the broker confirmed it, else 503 so Meta
/// retries.
async fn forward(st: &ReceiverState, tenant: Option<TenantId>, body: &[u8]) -> Response {
    let mut headers = Default::default();
    if let Some(t) = tenant {
        amqp::set_header(&mut headers, TENANT_HEADER, &t.to_string());
    }
    amqp::set_header(
        &mut headers,
        "x-received-at",
        &chrono::Utc::now().to_rfc3339(),
    );
    amqp::inject_trace_context(&mut headers);
    let exchange = st.topology.webhooks_exchange();
    let result = st
        .publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: "meta",
            body,
            properties: amqp::json_properties(&uuid::Uuid::now_v7().to_string(), headers),
            mandatory: true,
        })
        .await;
    match result {
        Ok(()) => {
            metrics::counter!("wafleet_webhooks_received_total").increment(1);
            StatusCode::OK.into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "could not queue a webhook; Meta will retry");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
