//! HTTP pieces every service shares: problem+json errors, and the `/healthz`, `/readyz` and
//! `/metrics` endpoints (their checks are in `health`).

use crate::health::{Probes, failures};
use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use std::sync::Arc;

/// An `application/problem+json` error with a stable `code` (the reason codes of SPEC §4).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable machine-readable reason, e.g. `invalid_recipient`.
    pub code: &'static str,
    pub title: String,
    /// Human explanation.
    pub detail: String,
    /// The request field at fault, as a JSON pointer-ish path (`to`, `template.name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; the request may be retried",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut res = (status, Json(self)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

/// Rewrites a bare `413` (from the body-size limit, which answers in plain text) as a problem
/// with a stable code, like every other refusal. Use with `axum::middleware::map_response`.
pub async fn problem_for_oversize(res: Response) -> Response {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE || is_problem {
        return res;
    }
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than this endpoint accepts",
    )
    .into_response()
}

impl From<sqlx::Error> for Problem {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "database error");
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                Self::unavailable("the database is unreachable; retry shortly")
            }
            _ => Self::internal(),
        }
    }
}

/// `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus). A probe answers
/// `200` while all its checks pass, else `503` with what failed.
pub fn ops_router(probes: Probes) -> Router {
    // Record from the start, so counters moved before the first scrape are not lost.
    crate::telemetry::metrics_handle();
    crate::metrics::describe();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(probes))
}

async fn healthz(State(probes): State<Arc<Probes>>) -> Response {
    answer(failures(&probes.liveness).await, "ok", "live")
}

async fn readyz(State(probes): State<Arc<Probes>>) -> Response {
    answer(failures(&probes.readiness).await, "ready", "ready")
}

fn answer(failing: Vec<String>, ok: &'static str, field: &str) -> Response {
    if failing.is_empty() {
        (StatusCode::OK, ok).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ field: false, "failing": failing })),
        )
            .into_response()
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render_metrics(),
    )
        .into_response()
}

/// Serves a router on a bound listener until `cancel` fires, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
