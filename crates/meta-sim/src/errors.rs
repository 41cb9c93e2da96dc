//! Graph API error responses, in Meta's documented shape (reference §2).
//!
//! `{"error":{"message":"(#CODE) Title","type":"OAuthException","code":CODE,
//! "error_data":{"messaging_product":"whatsapp","details":"..."},"fbtrace_id":"..."}}`, with the
//! HTTP status from the ERR-OLD table (throttling is 400, not 429). The same titles are used for
//! the `errors[]` objects of `failed` status webhooks.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

/// Where Meta's error objects point for documentation.
pub(crate) const ERROR_HREF: &str =
    "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/";

/// A synchronous Graph error.
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub details: String,
    pub subcode: Option<i64>,
    /// Injected fault: drop the connection instead of answering.
    pub reset: bool,
    /// Whether the body carries WhatsApp's `error_data` (Graph's OAuth errors do not).
    pub whatsapp: bool,
}

impl GraphError {
    /// An error with the documented title and HTTP status for `code`.
    pub fn new(code: i64, details: impl Into<String>) -> Self {
        Self {
            status: http_status_for(code),
            code,
            message: format!("(#{code}) {}", title_for(code)),
            details: details.into(),
            subcode: None,
            reset: false,
            whatsapp: true,
        }
    }

    /// An error of Graph's OAuth endpoint: Meta's own message, no WhatsApp `error_data`.
    pub fn oauth(code: i64, subcode: Option<i64>, message: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
            subcode,
            whatsapp: false,
            ..Self::new(code, message)
        }
    }

    /// Marks the error as a dropped connection (no answer at all).
    pub fn reset(mut self) -> Self {
        self.reset = true;
        self
    }

    /// `100` "Invalid parameter" naming what is wrong.
    pub fn invalid_parameter(details: impl Into<String>) -> Self {
        Self::new(100, details)
    }

    /// `190`: missing or empty bearer token (HTTP 401).
    pub fn invalid_token() -> Self {
        Self::new(
            190,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    /// `100` / subcode `33`: the object in the path does not exist.
    pub fn unknown_object(id: &str) -> Self {
        let message = format!(
            "(#100) Unsupported post request. Object with ID '{id}' does not exist, cannot be \
             loaded due to missing permissions, or does not support this operation"
        );
        Self {
            message,
            subcode: Some(33),
            ..Self::new(100, "Please read the Graph API documentation")
        }
    }

    /// The JSON body.
    pub fn body(&self, fbtrace_id: &str) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": fbtrace_id,
        });
        if self.whatsapp {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": self.details});
        }
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let trace = fbtrace_id();
        let mut response = (self.status, axum::Json(self.body(&trace))).into_response();
        if let Ok(value) = HeaderValue::from_str(&trace) {
            response.headers_mut().insert("x-fb-trace-id", value);
        }
        response
    }
}

/// A random trace id like Meta's `fbtrace_id`.
pub(crate) fn fbtrace_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(27)
        .map(char::from)
        .collect()
}

/// The error object of a `failed` status webhook (`statuses[].errors[]`).
pub(crate) fn webhook_error(code: i64) -> Value {
    let title = title_for(code);
    json!({
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details_for(code)},
        "href": ERROR_HREF,
    })
}

/// HTTP status per the ERR-OLD table of reference §2.
pub(crate) fn http_status_for(code: i64) -> StatusCode {
    match code {
        0 | 190 => StatusCode::UNAUTHORIZED,
        10 | 200..=299 | 368 | 131005 | 131031 => StatusCode::FORBIDDEN,
        132001 => StatusCode::NOT_FOUND,
        3 | 131000 | 131016 | 131045 | 131057 => StatusCode::INTERNAL_SERVER_ERROR,
        2 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Meta's title for an error code (the part after `(#code)`).
pub(crate) fn title_for(code: i64) -> &'static str {
    match code {
        0 => "AuthException",
        1 => "API Unknown",
        2 => "API Service",
        3 => "API Method",
        4 => "API Too Many Calls",
        10 => "Permission Denied",
        33 => "Parameter value is not valid",
        100 => "Invalid parameter",
        190 => "Access token has expired",
        200..=299 => "API Permission",
        368 => "Temporarily blocked for policies violations",
        80007 => "Rate limit issues",
        130429 => "Rate limit hit",
        130472 => "User's number is part of an experiment",
        131000 => "Something went wrong",
        131005 => "Access denied",
        131008 => "Required parameter is missing",
        131009 => "Parameter value is not valid",
        131016 => "Service unavailable",
        131021 => "Recipient cannot be sender",
        131026 => "Message undeliverable",
        131031 => "Business Account locked",
        131042 => "Business eligibility payment issue",
        131045 => "Incorrect certificate",
        131047 => "Re-engagement message",
        131048 => "Spam rate limit hit",
        131049 => "This message was not delivered to maintain healthy ecosystem engagement.",
        131050 => "User has stopped marketing messages from this business",
        131051 => "Unsupported message type",
        131053 => "Media upload error",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        131057 => "Account in maintenance mode",
        132000 => "Number of parameters does not match the expected number of params",
        132001 => "Template name does not exist in the translation",
        132005 => "Translated text too long",
        132007 => "Template Format Character Policy Violated",
        132012 => "Parameter format does not match format in the created template",
        132015 => "Template is Paused",
        132016 => "Template is Disabled",
        133004 => "Server Temporarily Unavailable",
        133005 => "Two step verification PIN Mismatch",
        133010 => "Account not registered",
        133016 => "Account register deregister rate limit exceeded",
        _ => "Unknown error",
    }
}

/// `error_data.details` for asynchronous failures and injected faults.
pub(crate) fn details_for(code: i64) -> &'static str {
    match code {
        130429 => {
            "Message failed to send because there were too many messages sent from this phone number in a short period of time"
        }
        131026 => "Message Undeliverable.",
        131047 => {
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
        }
        131056 => {
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time"
        }
        133005 => {
            "Two-step verification PIN incorrect. Verify that the PIN in the request is correct."
        }
        133010 => "Phone number not registered on the WhatsApp Business Platform.",
        133016 => {
            "Registration or deregistration failed because there were too many attempts for this phone number in a short period of time"
        }
        _ => title_for(code),
    }
}
