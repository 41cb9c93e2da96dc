//! What a test does with its fleet: send over HTTP and AMQP, read and wait for what a user
//! would see (a message, a state, a page), and read what the simulator (Meta) received.

use crate::{CANDIDATE, TestFleet, setup::sim_post};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet_core::amqp::{self, Topology};
use wafleet_meta_sim::RecordedSend;

impl TestFleet {
    /// `POST /v1/messages` with an optional idempotency key.
    pub async fn send(&self, body: Value, idempotency_key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/messages", self.fleet.ingest_url))
            .bearer_auth(&self.api_key);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.json(&body).send().await.expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A template to the test candidate, with merge fields.
    pub fn template_request(record_id: &str) -> Value {
        json!({
            "to": CANDIDATE,
            "record": {"type": "candidate", "id": record_id},
            "template": {"name": "job_opportunity", "language": "en_GB"},
            "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"},
        })
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.fleet.ingest_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET /v1/messages/{id}` until `done` holds (10 s at most).
    pub async fn wait_for_message(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_message_within(id, what, Duration::from_secs(10), done)
            .await
    }

    /// Polls `GET /v1/messages/{id}` until `done` holds, for `within` at most.
    pub async fn wait_for_message_within(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, m) = self.get(&format!("/v1/messages/{id}")).await;
            if done(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; message is {m:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        self.wait_for_message(id, state, |m| m["state"] == state)
            .await
    }

    /// What the simulator received carrying our message id.
    pub async fn sends_for(&self, message_id: &str) -> Vec<RecordedSend> {
        self.sim_sends(&format!("?callback={message_id}")).await
    }

    /// Everything the simulator received.
    pub async fn all_sends(&self) -> Vec<RecordedSend> {
        self.sim_sends("").await
    }

    async fn sim_sends(&self, query: &str) -> Vec<RecordedSend> {
        self.http
            .get(format!("{}/_sim/sends{query}", self.sim))
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("sends json")
    }

    pub async fn sim(&self, method: reqwest::Method, path: &str, body: Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.sim))
            .json(&body)
            .send()
            .await
            .expect("sim answers");
        assert!(res.status().is_success(), "sim {path}: {}", res.status());
    }

    /// Opens an AMQP channel on the test's broker.
    pub async fn amqp_channel(&self) -> (lapin::Connection, lapin::Channel) {
        let conn = amqp::connect(&self.settings.amqp_url, "wafleet-test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        (conn, channel)
    }

    /// A supervised connection to the test's broker, as the services hold theirs (for a
    /// [`amqp::Publisher`]); `close` it when done.
    pub async fn broker(&self) -> amqp::Broker {
        let broker = amqp::Broker::start(
            &self.settings.amqp_url,
            "wafleet-test",
            "test",
            None,
            &self.settings.broker,
        );
        let forever = tokio_util::sync::CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(20), broker.wait_up(&forever))
            .await
            .expect("the test's broker is up");
        broker
    }

    /// Publishes `body` to `<p>.intake` as an upstream service would: persistent JSON, the
    /// tenant in a header, the idempotency key as `message_id`; waits for the broker's confirm.
    pub async fn publish_intake(&self, body: &[u8], message_id: Option<&str>) {
        let broker = self.broker().await;
        let publisher = amqp::Publisher::new(&broker);
        let mut headers = lapin::types::FieldTable::default();
        amqp::set_header(&mut headers, "tenant", &self.tenant_id.to_string());
        let mut properties = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        publisher
            .publish(amqp::Outgoing {
                exchange: &self.topology().intake_exchange(),
                routing_key: "send",
                body,
                properties,
                mandatory: true,
            })
            .await
            .expect("intake accepts the publish");
        broker.close().await;
    }

    pub fn topology(&self) -> Topology {
        Topology::from_settings(&self.settings)
    }

    /// Registers a second sender number for the tenant, on the simulator and in our database;
    /// returns its phone number id.
    pub async fn add_sender(&self, suffix: u8, phone: &str) -> String {
        let mut phone_number_id = format!("{}{suffix:02}", &self.phone_number_id[..12]);
        if phone_number_id == self.phone_number_id {
            phone_number_id = format!("{}{:02}", &self.phone_number_id[..12], (suffix + 1) % 100);
        }
        sim_post(
            &self.http,
            &self.sim,
            "/_sim/numbers",
            json!({
                "phone_number_id": phone_number_id, "waba_id": self.waba_id,
                "display_phone_number": phone, "verified_name": "Acme Test",
            }),
        )
        .await;
        sqlx::query(
            "INSERT INTO senders (id, tenant_id, phone_number_id, phone_e164, display_name)
             VALUES ($1, $2, $3, $4, 'Acme Test')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(self.tenant_id)
        .bind(&phone_number_id)
        .bind(phone)
        .execute(&self.pool)
        .await
        .expect("second sender");
        phone_number_id
    }

    /// `POST {path}` on ingest with the tenant's (admin) API key.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.fleet.ingest_url))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .expect("ingest answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET {path}` on ingest until `done` holds (10 s at most).
    pub async fn wait_for_get(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {path} is {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The candidate (`CANDIDATE`) writes `text` to the tenant's sender through the simulator,
    /// opening the service window; returns the wamid of their message.
    pub async fn candidate_writes(&self, text: &str) -> String {
        let res: Value = self
            .http
            .post(format!("{}/_sim/inbound", self.sim))
            .json(
                &json!({"phone_number_id": self.phone_number_id, "from": CANDIDATE, "text": text}),
            )
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("sim answers with JSON");
        res["wamid"].as_str().expect("a wamid").to_owned()
    }

    /// Meta's answer to each send of `message_id`, in order: its error code, `None` for accepted.
    pub async fn meta_answers_for(&self, message_id: &str) -> Vec<Option<i64>> {
        self.sends_for(message_id)
            .await
            .iter()
            .map(|s| s.error_code)
            .collect()
    }
}
