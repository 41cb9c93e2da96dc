//! Upstream's view: a queue bound to `<p>.events`, and payloads Meta would send for other
//! fields and inbound messages.

use crate::{CANDIDATE, SENDER_PHONE, TestFleet};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Upstream's view of `<p>.events`: a test queue bound to every key.
pub struct EventQueue {
    _conn: lapin::Connection,
    channel: lapin::Channel,
    queue: String,
    /// Events read so far: (routing key, body).
    pub seen: Vec<(String, Value)>,
}

impl EventQueue {
    /// Waits (20 s at most: a whole-suite run on a busy machine is slow) for an event with
    /// routing key `<kind>.<tenant>` whose body matches.
    pub async fn wait_for(
        &mut self,
        kind: &str,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut checked = 0;
        loop {
            for (key, body) in &self.seen[checked..] {
                if key.starts_with(&format!("{kind}.")) && matches(body) {
                    return body.clone();
                }
            }
            checked = self.seen.len();
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the {what} event; saw {:#?}",
                self.seen
            );
            self.poll().await;
        }
    }

    /// Reads what has arrived (or waits a moment when nothing has).
    pub async fn poll(&mut self) {
        let got = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get");
        match got {
            Some(m) => self.seen.push((
                m.delivery.routing_key.to_string(),
                serde_json::from_slice(&m.delivery.data).expect("events are JSON"),
            )),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    /// Events of `kind` seen so far.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{kind}.")))
            .map(|(_, b)| b)
            .collect()
    }
}

impl TestFleet {
    /// Binds a fresh exclusive queue to `<p>.events` (every routing key), as upstream would.
    pub async fn events(&self) -> EventQueue {
        let (conn, channel) = self.amqp_channel().await;
        let queue = format!(
            "{}.test-events-{}",
            self.settings.amqp_prefix,
            uuid::Uuid::new_v4().simple()
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("declare the test queue");
        channel
            .queue_bind(
                queue.as_str().into(),
                self.topology().events_exchange().as_str().into(),
                "#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .expect("bind the test queue");
        EventQueue {
            _conn: conn,
            channel,
            queue,
            seen: Vec::new(),
        }
    }

    /// A webhook payload for this tenant's WABA with the given `(field, value)` changes, sent
    /// at unix time `at`.
    pub fn field_payload(&self, changes: Vec<(&str, Value)>, at: i64) -> Vec<u8> {
        let changes: Vec<Value> = changes
            .into_iter()
            .map(|(field, value)| json!({"field": field, "value": value}))
            .collect();
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "time": at, "changes": changes}],
        }))
        .expect("json")
    }

    /// A `messages` payload carrying inbound `messages` (with their `contacts`).
    pub fn inbound_payload(&self, messages: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": SENDER_PHONE.trim_start_matches('+'), "phone_number_id": self.phone_number_id},
                "contacts": [{"profile": {"name": "Anna"}, "wa_id": CANDIDATE.trim_start_matches('+')}],
                "messages": messages,
            }}]}],
        }))
        .expect("json")
    }

    /// Polls a `SELECT count(*)` until it returns `n` (10 s at most).
    pub async fn wait_for_count(&self, sql: &'static str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: i64 = sqlx::query_scalar(sql)
                .fetch_one(&self.pool)
                .await
                .expect("count");
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: `{sql}` is {got}, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Webhooks as Meta would post them to our receiver.
impl TestFleet {
    /// Posts a webhook body to our receiver, signed with `secret`.
    pub async fn post_webhook(&self, body: &[u8], secret: Option<&str>) -> StatusCode {
        let mut req = self
            .http
            .post(format!("{}/webhooks/meta", self.fleet.webhooks_url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(secret) = secret {
            req = req.header(
                "x-hub-signature-256",
                wafleet_webhooks::signature::sign(secret, body),
            );
        }
        req.send().await.expect("webhooks answers").status()
    }

    /// A `messages` webhook payload carrying `statuses` for this tenant's sender.
    pub fn status_payload(&self, statuses: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": SENDER_PHONE.trim_start_matches('+'), "phone_number_id": self.phone_number_id},
                "statuses": statuses,
            }}]}],
        }))
        .expect("json")
    }
}
