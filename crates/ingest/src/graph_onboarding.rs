//! The Graph calls of onboarding (Meta's "Onboarding business customers as a Tech Provider",
//! "Register a business phone number", "Managing Webhooks", "Display names"): exchange the
//! Embedded Signup code for a business token, subscribe the app to the WABA's webhooks,
//! register and deregister a number with its two-step PIN, submit a display name for review and
//! read one number. Tokens and PINs are never logged.

use crate::graph_admin::{GraphAdmin, GraphAdminError, MetaNumber, NUMBER_FIELDS};
use serde_json::{Value, json};
use wafleet_core::{config::Secret, tenant::MetaConnection};

impl GraphAdmin {
    /// `GET /{version}/oauth/access_token?client_id&client_secret&code`: the business token.
    /// The code is single-use and short-lived (30 s): the caller exchanges it once.
    pub async fn exchange_code(&self, code: &str) -> Result<Secret, GraphAdminError> {
        let app = self.app.as_ref().ok_or(GraphAdminError::NoApp)?;
        let url = reqwest::Url::parse_with_params(
            &self.url("oauth/access_token"),
            &[
                ("client_id", app.id.as_str()),
                ("client_secret", app.secret.expose()),
                ("code", code),
            ],
        )
        .map_err(|e| GraphAdminError::Meta {
            status: 0,
            code: None,
            message: format!("cannot build the exchange URL: {e}"),
        })?;
        let body = self.send(self.http.get(url)).await?;
        body.get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| GraphAdminError::Meta {
                status: 200,
                code: None,
                message: "the code exchange answered without an access_token".into(),
            })
    }

    /// `POST /{waba_id}/subscribed_apps`: without it Meta sends the app no webhooks for the WABA.
    pub async fn subscribe_app(&self, conn: &MetaConnection) -> Result<(), GraphAdminError> {
        let url = self.url(&format!("{}/subscribed_apps", conn.waba_id));
        success(self.call(self.http.post(url), conn).await?)
    }

    /// `POST /{phone_number_id}/register` with `messaging_product` and the six-digit PIN, which
    /// becomes (or must equal) the number's two-step verification PIN.
    pub async fn register(
        &self,
        conn: &MetaConnection,
        phone_number_id: &str,
        pin: &Secret,
    ) -> Result<(), GraphAdminError> {
        let url = self.url(&format!("{phone_number_id}/register"));
        let body = json!({ "messaging_product": "whatsapp", "pin": pin.expose() });
        success(self.call(self.http.post(url).json(&body), conn).await?)
    }

    /// `POST /{phone_number_id}/deregister`.
    pub async fn deregister(
        &self,
        conn: &MetaConnection,
        phone_number_id: &str,
    ) -> Result<(), GraphAdminError> {
        let url = self.url(&format!("{phone_number_id}/deregister"));
        success(self.call(self.http.post(url), conn).await?)
    }

    /// `POST /{phone_number_id}` with `new_display_name`: Meta reviews it (`new_name_status`
    /// `PENDING_REVIEW`), and says so with `phone_number_name_update`.
    pub async fn submit_display_name(
        &self,
        conn: &MetaConnection,
        phone_number_id: &str,
        name: &str,
    ) -> Result<(), GraphAdminError> {
        let url = self.url(phone_number_id);
        let body = json!({ "new_display_name": name });
        success(self.call(self.http.post(url).json(&body), conn).await?)
    }

    /// `GET /{phone_number_id}`: one number's status, name review, quality and throughput.
    pub async fn number(
        &self,
        conn: &MetaConnection,
        phone_number_id: &str,
    ) -> Result<MetaNumber, GraphAdminError> {
        let url = self.url(&format!("{phone_number_id}?fields={NUMBER_FIELDS}"));
        let body = self.call(self.http.get(url), conn).await?;
        serde_json::from_value(body).map_err(|e| GraphAdminError::Meta {
            status: 200,
            code: None,
            message: format!("unexpected phone number: {e}"),
        })
    }
}

/// Meta's `{"success": true}`; anything else is reported as Meta's answer.
fn success(body: Value) -> Result<(), GraphAdminError> {
    if body.get("success").and_then(Value::as_bool) == Some(true) {
        Ok(())
    } else {
        Err(GraphAdminError::Meta {
            status: 200,
            code: None,
            message: format!("Meta did not confirm: {body}"),
        })
    }
}
