//! Campaign helpers for the end-to-end tests: create (JSON or NDJSON), read, control, and what
//! the simulator received per recipient.

use crate::TestFleet;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `n` distinct valid UK mobile numbers, from `first` on.
pub fn numbers(first: u32, n: u32) -> Vec<String> {
    (first..first + n)
        .map(|i| format!("+4474{:08}", 100_000 + i))
        .collect()
}

/// A recipient of the test template with its merge fields.
pub fn recipient(to: &str, record: &str) -> Value {
    json!({
        "to": to,
        "record": {"type": "candidate", "id": record},
        "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"},
    })
}

/// A campaign body of the test template to `to`, one record per number.
pub fn campaign_body(name: &str, to: &[String]) -> Value {
    let recipients: Vec<Value> = to
        .iter()
        .enumerate()
        .map(|(i, n)| recipient(n, &format!("{name}-{i}")))
        .collect();
    json!({
        "name": name,
        "template": {"name": "job_opportunity", "language": "en_GB"},
        "recipients": recipients,
    })
}

impl TestFleet {
    /// `POST /v1/campaigns` with a JSON body.
    pub async fn create_campaign(&self, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/campaigns", self.fleet.ingest_url))
            .bearer_auth(&self.api_key)
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/campaigns` as NDJSON: the header line, then one line per recipient.
    pub async fn create_campaign_ndjson(
        &self,
        lines: &[String],
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/campaigns", self.fleet.ingest_url))
            .bearer_auth(&self.api_key)
            .header("Content-Type", "application/x-ndjson")
            .body(lines.join("\n"));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/campaigns/{id}`.
    pub async fn campaign(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/campaigns/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        body
    }

    /// `POST /v1/campaigns/{id}/{action}`.
    pub async fn campaign_action(&self, id: &str, action: &str) -> (StatusCode, Value) {
        self.post(&format!("/v1/campaigns/{id}/{action}"), json!({}))
            .await
    }

    /// Polls the campaign until `done` holds (10 s at most).
    pub async fn wait_for_campaign(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_get(&format!("/v1/campaigns/{id}"), what, done)
            .await
    }

    /// Sends the simulator received for `to`.
    pub async fn sends_to(&self, to: &str) -> usize {
        let digits = to.trim_start_matches('+');
        self.all_sends()
            .await
            .iter()
            .filter(|s| s.to.trim_start_matches('+') == digits)
            .count()
    }
}

/// The count of campaign messages in `state`.
pub fn count(campaign: &Value, state: &str) -> i64 {
    campaign["counts"][state].as_i64().unwrap_or(0)
}

/// Messages sent or beyond (sent, delivered, read).
pub fn sent_or_later(campaign: &Value) -> i64 {
    ["sent", "delivered", "read"]
        .iter()
        .map(|s| count(campaign, s))
        .sum()
}
