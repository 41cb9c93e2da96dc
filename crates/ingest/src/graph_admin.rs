//! The Graph calls of tenant administration (reference §7): list a WABA's phone numbers (every
//! page), and verify a number's ownership with `request_code` / `verify_code`. Meta's own error
//! message is kept so an admin sees what Meta said.

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use wafleet_core::{
    Settings,
    domain::TenantId,
    secrets::SecretBox,
    tenant::{MetaConnection, TenantError, load_connection},
};

/// Fields asked of `GET /{waba}/phone_numbers` beyond the defaults.
const NUMBER_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,status,code_verification_status,name_status,throughput";

/// What the admin calls need to reach Graph and open a tenant's token.
#[derive(Clone)]
pub struct GraphAdmin {
    pub http: reqwest::Client,
    pub base_url: String,
    pub version: String,
    /// `None` when `WAFLEET_SECRET_KEY` is not configured: Meta calls then answer 503.
    pub secrets: Option<SecretBox>,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphAdminError {
    #[error("WAFLEET_SECRET_KEY is not configured, so Meta tokens cannot be stored or used")]
    NoSecretKey,
    #[error("the tenant has no Meta connection; set it with PUT /v1/settings/meta")]
    NotConnected,
    #[error("Meta answered HTTP {status}: {message}")]
    Meta {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("could not reach Meta: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

/// A phone number as `GET /{waba}/phone_numbers` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaNumber {
    pub id: String,
    #[serde(default)]
    pub display_phone_number: String,
    #[serde(default)]
    pub verified_name: String,
    pub quality_rating: Option<String>,
    pub code_verification_status: Option<String>,
    pub name_status: Option<String>,
    pub throughput: Option<Value>,
}

impl MetaNumber {
    /// Messages per second Meta allows: 1,000 for `HIGH` throughput, else the standard 80.
    pub fn throughput_mps(&self) -> i32 {
        match self
            .throughput
            .as_ref()
            .and_then(|t| t.get("level"))
            .and_then(Value::as_str)
        {
            Some("HIGH") => 1000,
            _ => 80,
        }
    }

    /// Meta already verified the number's ownership (no OTP needed).
    pub fn is_verified(&self) -> bool {
        self.code_verification_status.as_deref() == Some("VERIFIED")
    }

    /// The digits of the display number (`+44 20 7183 8750` → `442071838750`).
    pub fn digits(&self) -> String {
        self.display_phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<MetaNumber>,
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    next: Option<String>,
}

impl GraphAdmin {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(settings.dispatch.graph_timeout)
                .build()
                .unwrap_or_default(),
            base_url: settings.meta_base_url.trim_end_matches('/').to_owned(),
            version: settings.meta_api_version.clone(),
            secrets: settings.secret_box().ok(),
        }
    }

    pub fn secrets(&self) -> Result<&SecretBox, GraphAdminError> {
        self.secrets.as_ref().ok_or(GraphAdminError::NoSecretKey)
    }

    /// The tenant's Meta connection with its token opened.
    pub async fn connection(
        &self,
        pool: &PgPool,
        tenant: TenantId,
    ) -> Result<MetaConnection, GraphAdminError> {
        load_connection(pool, self.secrets()?, tenant)
            .await?
            .ok_or(GraphAdminError::NotConnected)
    }

    /// Every phone number of the WABA, following `paging.next`.
    pub async fn list_numbers(
        &self,
        conn: &MetaConnection,
    ) -> Result<Vec<MetaNumber>, GraphAdminError> {
        let mut url = format!(
            "{}/{}/{}/phone_numbers?fields={NUMBER_FIELDS}&limit=100",
            self.base_url, self.version, conn.waba_id
        );
        let mut numbers = Vec::new();
        loop {
            let body = self
                .call(self.http.get(&url), conn.access_token.expose())
                .await?;
            let page: Page = serde_json::from_value(body).map_err(|e| GraphAdminError::Meta {
                status: 200,
                code: None,
                message: format!("unexpected phone number listing: {e}"),
            })?;
            let empty = page.data.is_empty();
            numbers.extend(page.data);
            match page.paging.and_then(|p| p.next) {
                Some(next) if !empty => url = next,
                _ => break,
            }
        }
        Ok(numbers)
    }

    /// `POST /{phone_number_id}/request_code`: Meta sends an OTP by SMS or VOICE.
    pub async fn request_code(
        &self,
        conn: &MetaConnection,
        phone_number_id: &str,
        method: &str,
        language: &str,
    ) -> Result<(), GraphAdminError> {
        let url = format!(
            "{}/{}/{phone_number_id}/request_code",
            self.base_url, self.version
        );
        let body = json!({ "code_method": method, "language": language });
        self.call(self.http.post(url).json(&body), conn.access_token.expose())
            .await
            .map(drop)
    }

    /// `POST /{phone_number_id}/verify_code` with the OTP.
    pub async fn verify_code(
        &self,
        conn: &MetaConnection,
        phone_number_id: &str,
        code: &str,
    ) -> Result<(), GraphAdminError> {
        let url = format!(
            "{}/{}/{phone_number_id}/verify_code",
            self.base_url, self.version
        );
        self.call(
            self.http.post(url).json(&json!({ "code": code })),
            conn.access_token.expose(),
        )
        .await
        .map(drop)
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> Result<Value, GraphAdminError> {
        let response = request.bearer_auth(token).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let mut message = error["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned();
        if let Some(details) = error["error_data"]["details"].as_str() {
            message = format!("{message}: {details}");
        }
        Err(GraphAdminError::Meta {
            status: status.as_u16(),
            code: error["code"].as_i64(),
            message,
        })
    }
}
