//! The Graph API client: builds the send body per Meta's reference (§1) and turns every response
//! into a `GraphSuccess` or a structured `GraphError` (classified by `error.code`, never by
//! HTTP status or message text).

use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use wafleet_core::config::Secret;

/// One process-wide HTTP client (connection pool, HTTP/2 to graph.facebook.com).
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
    version: String,
}

/// Meta accepted the message.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSuccess {
    pub wamid: String,
    /// Meta's canonical id of the recipient; may differ from the number we sent to.
    pub wa_id: Option<String>,
    /// Template pacing verdict (`accepted`, `held_for_quality_assessment`, `paused`), if given.
    pub message_status: Option<String>,
}

/// Meta refused, or we could not reach it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GraphError {
    /// Meta's `error.code`; `None` when the failure was ours or the network's.
    pub code: Option<i64>,
    pub http_status: Option<u16>,
    pub message: String,
    pub details: Option<String>,
    pub fbtrace_id: Option<String>,
    /// Transport failures: timeouts, refused or reset connections, unreadable responses.
    pub transport: bool,
    /// Meta may have accepted the message although we did not hear so: the request went out
    /// and the answer was lost (a timeout or reset after connecting, an unreadable or empty
    /// `2xx`). Never resent before the status webhook had its chance.
    pub ambiguous: bool,
    /// How long Meta asked us to wait, where it said (`Retry-After`,
    /// `estimated_time_to_regain_access` in minutes).
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl GraphError {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
    error_data: Option<ErrorData>,
    fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    contacts: Vec<ContactOut>,
    #[serde(default)]
    messages: Vec<MessageOut>,
}

#[derive(Deserialize)]
struct ContactOut {
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct MessageOut {
    id: String,
    message_status: Option<String>,
}

impl GraphClient {
    pub fn new(base_url: &str, version: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
        })
    }

    /// `POST {base}/{version}/{phone_number_id}/messages`.
    #[tracing::instrument(name = "POST /messages", skip_all, fields(
        otel.kind = "client",
        http.request.method = "POST",
        http.response.status_code,
        meta.error.code,
    ))]
    pub async fn send(
        &self,
        token: &Secret,
        phone_number_id: &str,
        body: &Value,
    ) -> Result<GraphSuccess, GraphError> {
        let url = format!(
            "{}/{}/{}/messages",
            self.base_url, self.version, phone_number_id
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .or_else(|| regain_access(response.headers()));
        let fbtrace = response
            .headers()
            .get("x-fb-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The answer was on its way: whatever cuts it off now, Meta may have the message.
        let bytes = response.bytes().await.map_err(|e| GraphError {
            ambiguous: true,
            ..transport_error(&e)
        })?;
        if status.is_success() {
            let parsed: SendResponse = serde_json::from_slice(&bytes).map_err(|e| GraphError {
                code: None,
                http_status: Some(status.as_u16()),
                message: format!("unreadable success response: {e}"),
                details: None,
                fbtrace_id: fbtrace.clone(),
                transport: true,
                ambiguous: true,
                retry_after: None,
            })?;
            let message = parsed
                .messages
                .into_iter()
                .next()
                .ok_or_else(|| GraphError {
                    code: None,
                    http_status: Some(status.as_u16()),
                    message: "success response without a message id".into(),
                    details: None,
                    fbtrace_id: fbtrace.clone(),
                    transport: true,
                    ambiguous: true,
                    retry_after: None,
                })?;
            return Ok(GraphSuccess {
                wamid: message.id,
                wa_id: parsed.contacts.into_iter().next().and_then(|c| c.wa_id),
                message_status: message.message_status,
            });
        }
        let error = match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(env) => GraphError {
                code: env.error.code,
                http_status: Some(status.as_u16()),
                message: env.error.message.unwrap_or_default(),
                details: env.error.error_data.and_then(|d| d.details),
                fbtrace_id: env.error.fbtrace_id.or(fbtrace),
                transport: false,
                ambiguous: false,
                retry_after,
            },
            Err(_) => GraphError {
                code: None,
                http_status: Some(status.as_u16()),
                message: format!("HTTP {status} without a Graph error body"),
                details: None,
                fbtrace_id: fbtrace,
                transport: status.is_server_error(),
                ambiguous: false,
                retry_after,
            },
        };
        if let Some(code) = error.code {
            tracing::Span::current().record("meta.error.code", code);
        }
        Err(error)
    }
}

fn transport_error(e: &reqwest::Error) -> GraphError {
    GraphError {
        code: None,
        http_status: None,
        message: if e.is_timeout() {
            "timed out waiting for Meta".into()
        } else if e.is_connect() {
            "could not connect to Meta".into()
        } else {
            "the connection to Meta failed".into()
        },
        details: Some(e.to_string()),
        fbtrace_id: None,
        transport: true,
        // Only a connection never made is known not to have reached Meta.
        ambiguous: !e.is_connect(),
        retry_after: None,
    }
}

/// `x-business-use-case-usage: {"<id>":[{"estimated_time_to_regain_access": <minutes>, …}]}`.
fn regain_access(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers.get("x-business-use-case-usage")?.to_str().ok()?;
    let usage: Value = serde_json::from_str(raw).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|u| u.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}
