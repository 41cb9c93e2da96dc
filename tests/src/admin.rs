//! Administration helpers: calls with any key, simulator numbers, a second tenant.

use crate::TestFleet;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::{
    config::Secret,
    domain::PhoneNumber,
    tenant::{NewSender, NewTenant, create_tenant},
};

/// A second tenant on the same fleet, for isolation tests.
#[derive(Debug, Clone)]
pub struct OtherTenant {
    pub tenant_id: wafleet_core::domain::TenantId,
    pub api_key: String,
    pub waba_id: String,
    pub phone_number_id: String,
}

/// Administration helpers: any method, any key, JSON in and out.
impl TestFleet {
    /// Calls the ingest API with `key` (none: unauthenticated); answers status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.fleet.ingest_url));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Calls the ingest API with the tenant's admin key.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.api_key), body).await
    }

    /// `GET` on the simulator's control API.
    pub async fn sim_get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.sim))
            .send()
            .await
            .expect("sim answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers a number of the tenant's WABA in the simulator (verified unless `verified` is
    /// false); answers its phone number id.
    pub async fn sim_number(&self, phone: &str, verified: bool) -> String {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let id = format!("17{}", &digits[digits.len().saturating_sub(12)..]);
        self.sim(
            reqwest::Method::POST,
            "/_sim/numbers",
            json!({"phone_number_id": id, "waba_id": self.waba_id, "display_phone_number": phone, "verified_name": "Acme Test"}),
        )
        .await;
        if !verified {
            self.sim(
                reqwest::Method::POST,
                &format!("/_sim/numbers/{id}/unverified"),
                json!({}),
            )
            .await;
        }
        id
    }

    /// Creates another tenant with its own WABA, number and template in the simulator.
    pub async fn other_tenant(&self, name: &str, phone: &str) -> OtherTenant {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(11)..];
        let (waba_id, phone_number_id) = (format!("29{tail}"), format!("26{tail}"));
        self.sim(
            reqwest::Method::POST,
            "/_sim/numbers",
            json!({"phone_number_id": phone_number_id, "waba_id": waba_id, "display_phone_number": phone}),
        )
        .await;
        self.sim(
            reqwest::Method::POST,
            "/_sim/templates",
            json!({"waba_id": waba_id, "name": format!("{name}_only"), "language": "en_GB", "category": "UTILITY", "body_text": "Hi {{1}}"}),
        )
        .await;
        let secrets = self.settings.secret_box().expect("key");
        let created = create_tenant(
            &self.pool,
            &secrets,
            &NewTenant {
                name: name.into(),
                waba_id: waba_id.clone(),
                access_token: Secret::new("other-token"),
                app_secret: Secret::new("other-app-secret"),
                verify_token: Secret::new("other-verify"),
                senders: vec![NewSender {
                    phone_number_id: phone_number_id.clone(),
                    phone: PhoneNumber::parse(phone).expect("valid"),
                    display_name: name.into(),
                }],
            },
        )
        .await
        .expect("tenant");
        wafleet::admin::template_sync_with(
            &self.pool,
            &secrets,
            &self.http,
            &self.settings,
            created.tenant_id,
        )
        .await
        .expect("template sync");
        OtherTenant {
            tenant_id: created.tenant_id,
            api_key: created.api_key,
            waba_id,
            phone_number_id,
        }
    }
}
