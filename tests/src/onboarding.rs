//! Onboarding helpers: a company that finished Meta's Embedded Signup in the browser (the
//! simulator's `POST /_sim/embedded_signup`), a tenant created for it with no connection yet,
//! and calls with that tenant's admin key.

use crate::TestFleet;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wafleet_core::domain::TenantId;

/// A company that went through Meta's window: what the browser got, and its wafleet tenant.
#[derive(Debug, Clone)]
pub struct NewCompany {
    pub tenant_id: TenantId,
    pub api_key: String,
    pub waba_id: String,
    /// (phone number id, E.164) of each number added in Meta's flow; the first is the session's.
    pub numbers: Vec<(String, String)>,
    /// The one-time code `FB.login` answered.
    pub code: String,
}

impl NewCompany {
    /// The `POST /v1/signup` body the upstream product sends.
    pub fn signup_body(&self) -> Value {
        json!({"code": self.code, "waba_id": self.waba_id, "phone_number_id": self.numbers[0].0})
    }
}

impl TestFleet {
    /// A company with `numbers` numbers (`+44 20 7946 0<n>…`) that finished Embedded Signup,
    /// with the `job_opportunity` template approved on its new WABA, and a tenant with no
    /// connection. `tag` (two digits) keeps its ids apart from other companies of the test.
    pub async fn company_after_embedded_signup(&self, tag: u8, numbers: u8) -> NewCompany {
        let created = wafleet_core::tenant::create_unconnected(&self.pool, "Beta Staffing")
            .await
            .expect("tenant");
        self.embedded_signup_in_browser(tag, numbers, created.tenant_id, created.api_key)
            .await
    }

    /// Meta's side of [`Self::company_after_embedded_signup`], for a tenant that exists already.
    pub async fn embedded_signup_in_browser(
        &self,
        tag: u8,
        numbers: u8,
        tenant_id: TenantId,
        api_key: String,
    ) -> NewCompany {
        let waba_id = format!("39{tag:02}{}", &self.waba_id[4..]);
        let numbers: Vec<(String, String)> = (0..numbers)
            .map(|i| {
                (
                    format!("36{tag:02}{i:02}{}", &self.phone_number_id[6..]),
                    format!("+4420794{tag:02}{i:03}"),
                )
            })
            .collect();
        let listed: Vec<Value> = numbers
            .iter()
            .map(|(id, phone)| json!({"phone_number_id": id, "display_phone_number": phone, "verified_name": "Beta Staffing"}))
            .collect();
        let res = self
            .http
            .post(format!("{}/_sim/embedded_signup", self.sim))
            .json(&json!({"waba_id": waba_id, "numbers": listed}))
            .send()
            .await
            .expect("sim answers");
        assert!(
            res.status().is_success(),
            "embedded signup: {}",
            res.status()
        );
        let browser: Value = res.json().await.expect("json");
        self.sim(
            Method::POST,
            "/_sim/templates",
            json!({"waba_id": waba_id, "name": "job_opportunity", "language": "en_GB",
                   "category": "UTILITY", "body_text": "Hi {{1}}, {{2}} here about a role."}),
        )
        .await;
        NewCompany {
            tenant_id,
            api_key,
            waba_id,
            numbers,
            code: browser["code"].as_str().expect("code").to_owned(),
        }
    }

    /// Calls the ingest API as the company's admin.
    pub async fn as_company(
        &self,
        company: &NewCompany,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(&company.api_key), body).await
    }

    /// `POST /v1/signup` as the upstream product sends it once the browser side finished.
    pub async fn run_signup(&self, company: &NewCompany) -> (StatusCode, Value) {
        self.as_company(
            company,
            Method::POST,
            "/v1/signup",
            Some(company.signup_body()),
        )
        .await
    }

    /// A company connected through Embedded Signup (`company_after_embedded_signup`, then
    /// `POST /v1/signup`), its templates synced.
    pub async fn connected_company(&self, tag: u8, numbers: u8) -> NewCompany {
        let company = self.company_after_embedded_signup(tag, numbers).await;
        let (status, signup) = self.run_signup(&company).await;
        assert_eq!(status, 200, "{signup}");
        let (synced, _) = self
            .as_company(&company, Method::POST, "/v1/templates/sync", None)
            .await;
        assert_eq!(synced, 200);
        company
    }

    /// A Graph call to the simulator as Meta's API (any bearer token).
    pub async fn graph(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method, format!("{}/v24.0/{path}", self.sim))
            .bearer_auth("test-token")
            .json(&body)
            .send()
            .await
            .expect("sim answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}
