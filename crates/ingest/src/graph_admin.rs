//! The Graph calls of tenant administration (reference §7): list a WABA's phone numbers (every
//! page), and verify a number's ownership with `request_code` / `verify_code` (the onboarding
//! calls are in `graph_onboarding`). Meta's own error message is kept so an admin sees what
//! Meta said, and an error that means the token or account is unusable (190, 200-range,
//! 131031…) is recorded as the connection's status (`wafleet_core::connection`).

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use wafleet_core::{
    Settings,
    clock::SharedClock,
    config::Secret,
    connection::{self, Observation},
    domain::TenantId,
    secrets::SecretBox,
    tenant::{MetaConnection, TenantError, load_connection},
};

/// Fields asked of `GET /{waba}/phone_numbers` (and one number) beyond the defaults.
pub(crate) const NUMBER_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,status,code_verification_status,name_status,new_display_name,new_name_status,throughput";

/// What the admin calls need to reach Graph and open a tenant's token.
#[derive(Clone)]
pub struct GraphAdmin {
    pub http: reqwest::Client,
    pub base_url: String,
    pub version: String,
    /// `None` when `WAFLEET_SECRET_KEY` is not configured: Meta calls then answer 503.
    pub secrets: Option<SecretBox>,
    /// The global Meta app (`WAFLEET_META_APP_ID`, `WAFLEET_META_APP_SECRET`), for the
    /// Embedded Signup code exchange; `None` when either is unset.
    pub app: Option<MetaApp>,
    /// Where connection statuses are recorded, and when.
    pub pool: PgPool,
    pub clock: SharedClock,
}

/// The app whose Embedded Signup the tenants go through.
#[derive(Clone)]
pub struct MetaApp {
    pub id: String,
    pub secret: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphAdminError {
    #[error("WAFLEET_SECRET_KEY is not configured, so Meta tokens cannot be stored or used")]
    NoSecretKey,
    #[error(
        "Embedded Signup needs the Meta app: set WAFLEET_META_APP_ID and WAFLEET_META_APP_SECRET"
    )]
    NoApp,
    #[error(
        "the tenant has no Meta connection; connect it with Embedded Signup (POST /v1/signup) or PUT /v1/settings/meta"
    )]
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
    /// A display name submitted for review, and Meta's review of it.
    pub new_display_name: Option<String>,
    pub new_name_status: Option<String>,
    /// `CONNECTED` once the number is registered for Cloud API.
    pub status: Option<String>,
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

    /// Whether the number is registered for Cloud API, as far as its `status` tells: `CONNECTED`
    /// (also `FLAGGED`, `RESTRICTED`: registered but limited) or `PENDING`, `DISCONNECTED`,
    /// `UNVERIFIED` (not); `None` for a status Graph did not give.
    pub fn registered(&self) -> Option<bool> {
        match self.status.as_deref()? {
            "CONNECTED" | "FLAGGED" | "RESTRICTED" => Some(true),
            "PENDING" | "DISCONNECTED" | "UNVERIFIED" => Some(false),
            _ => None,
        }
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
    pub fn from_settings(settings: &Settings, pool: PgPool, clock: SharedClock) -> Self {
        let app = match (&settings.meta_app_id, &settings.meta_app_secret) {
            (Some(id), Some(secret)) => Some(MetaApp {
                id: id.clone(),
                secret: secret.clone(),
            }),
            _ => None,
        };
        Self {
            http: reqwest::Client::builder()
                .timeout(settings.dispatch.graph_timeout)
                .build()
                .unwrap_or_default(),
            base_url: settings.meta_base_url.trim_end_matches('/').to_owned(),
            version: settings.meta_api_version.clone(),
            secrets: settings.secret_box().ok(),
            app,
            pool,
            clock,
        }
    }

    /// `{base}/{version}/{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.base_url, self.version)
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
        let mut url = self.url(&format!(
            "{}/phone_numbers?fields={NUMBER_FIELDS}&limit=100",
            conn.waba_id
        ));
        let mut numbers = Vec::new();
        loop {
            let body = self.call(self.http.get(&url), conn).await?;
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
        let url = self.url(&format!("{phone_number_id}/request_code"));
        let body = json!({ "code_method": method, "language": language });
        self.call(self.http.post(url).json(&body), conn)
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
        let url = self.url(&format!("{phone_number_id}/verify_code"));
        self.call(self.http.post(url).json(&json!({ "code": code })), conn)
            .await
            .map(drop)
    }

    /// Calls Graph with the tenant's token. An error that means the token or the account is
    /// unusable is recorded as the connection's status before it is returned.
    pub(crate) async fn call(
        &self,
        request: reqwest::RequestBuilder,
        conn: &MetaConnection,
    ) -> Result<Value, GraphAdminError> {
        let result = self
            .send(request.bearer_auth(conn.access_token.expose()))
            .await;
        if let Err(GraphAdminError::Meta {
            code: Some(code),
            message,
            ..
        }) = &result
            && let Some(seen) = Observation::of_error(*code, message)
            && let Err(err) =
                connection::record(&self.pool, conn.tenant_id, &seen, self.clock.now()).await
        {
            tracing::warn!(error = %err, "could not record the connection's status");
        }
        result
    }

    /// Sends a Graph request: the JSON body of a `2xx`, else Meta's error with its message.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, GraphAdminError> {
        // Without the URL: the code exchange carries the app secret in its query.
        let response = request.send().await.map_err(reqwest::Error::without_url)?;
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
