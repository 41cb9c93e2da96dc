//! Test harness: a simulator on port 0, a webhook receiver that records raw POSTs, and helpers to
//! register senders and templates through the control API.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wafleet_meta_sim::{MetaSim, SimSettings};

pub const SECRET: &str = "test-app-secret";
pub const WABA: &str = "waba-1";
pub const NUMBER: &str = "pn-1";
pub const DISPLAY: &str = "+1 555-010-0001";

/// A running simulator.
pub struct TestSim {
    pub base: String,
    pub client: reqwest::Client,
    pub cancel: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestSim {
    /// Starts a simulator sending webhooks to `webhook_url` with fast statuses.
    pub async fn start(webhook_url: Option<String>) -> Self {
        Self::start_with(SimSettings {
            addr: ([127, 0, 0, 1], 0).into(),
            webhook_url,
            app_secret: SECRET.to_owned(),
            status_delay: Duration::from_millis(20),
            batch_window: Duration::from_millis(100),
            default_mps: 80,
            ..SimSettings::default()
        })
        .await
    }

    pub async fn start_with(settings: SimSettings) -> Self {
        let sim = MetaSim::build(settings).await.expect("sim builds");
        let base = sim.base_url();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(sim.run_until_stopped(cancel.clone()));
        Self {
            base,
            client: reqwest::Client::new(),
            cancel,
            handle: Some(handle),
        }
    }

    /// Stops the simulator and waits for its shutdown (pending webhooks flushed).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("sim task").expect("sim stops cleanly");
        }
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control call");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth("test-token")
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// Polls `GET /_sim/stats` (up to 5 s) until `done` holds; returns the last stats.
    pub async fn wait_for_stats(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stats = self.get("/_sim/stats").await;
            if done(&stats) || tokio::time::Instant::now() >= deadline {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Registers the standard number (with `mps`) and an approved one-parameter template.
    pub async fn register_defaults(&self, mps: Option<u32>) {
        self.control(
            reqwest::Method::POST,
            "/_sim/numbers",
            json!({"phone_number_id": NUMBER, "waba_id": WABA, "display_phone_number": DISPLAY,
                   "verified_name": "Acme", "mps": mps}),
        )
        .await;
        self.control(
            reqwest::Method::POST,
            "/_sim/templates",
            json!({"waba_id": WABA, "name": "order_update", "language": "en_US",
                   "category": "UTILITY", "body_text": "Hi {{1}}, your order shipped."}),
        )
        .await;
    }

    /// POSTs a send with a bearer token; returns (status, body).
    pub async fn send(&self, number: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/v24.0/{number}/messages", self.base))
            .bearer_auth("test-token")
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        (status, response.json().await.expect("json body"))
    }
}

/// A template send body for the default template.
pub fn template_send(to: &str, callback: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({"type": "text", "text": p}))
        .collect();
    json!({
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"},
                     "components": [{"type": "body", "parameters": parameters}]},
        "biz_opaque_callback_data": callback,
    })
}

/// A free-form text send body.
pub fn text_send(to: &str, callback: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": to, "type": "text",
           "text": {"body": "hello"}, "biz_opaque_callback_data": callback})
}

/// One webhook POST as received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub body: Vec<u8>,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub json: Value,
    pub path: String,
}

impl Hook {
    /// Every status object in the POST.
    pub fn statuses(&self) -> Vec<Value> {
        self.values()
            .iter()
            .flat_map(|v| v["statuses"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Every inbound message object in the POST.
    pub fn messages(&self) -> Vec<Value> {
        self.values()
            .iter()
            .flat_map(|v| v["messages"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    fn values(&self) -> Vec<Value> {
        self.json["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
            .map(|c| c["value"].clone())
            .collect()
    }
}

#[derive(Default)]
struct ReceiverState {
    hooks: Vec<Hook>,
    /// Status codes to answer with, in order; 200 once exhausted.
    answers: Vec<u16>,
}

/// A webhook receiver (an axum server on port 0) recording every POST.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_answering(Vec::new()).await
    }

    /// A receiver that answers the first POSTs with `answers`, then 200.
    pub async fn start_answering(answers: Vec<u16>) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState {
            hooks: Vec::new(),
            answers,
        }));
        let app = axum::Router::new()
            .route("/{*path}", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://127.0.0.1:{port}/webhooks/meta"),
            state,
        }
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.state.lock().expect("lock").hooks.clone()
    }

    pub fn statuses(&self) -> Vec<Value> {
        self.hooks().iter().flat_map(Hook::statuses).collect()
    }

    /// Waits (up to 5 s) until `done` holds for the received hooks.
    pub async fn wait_until(&self, done: impl Fn(&[Hook]) -> bool) -> Vec<Hook> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let hooks = self.hooks();
            if done(&hooks) {
                return hooks;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for webhooks; got {hooks:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` statuses have arrived in total.
    pub async fn wait_for_statuses(&self, n: usize) -> Vec<Hook> {
        self.wait_until(|hooks| hooks.iter().map(|h| h.statuses().len()).sum::<usize>() >= n)
            .await
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut state = state.lock().expect("lock");
    state.hooks.push(Hook {
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        signature: header("x-hub-signature-256"),
        content_type: header("content-type"),
        path: uri.path().to_owned(),
    });
    if state.answers.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::from_u16(state.answers.remove(0)).expect("status")
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, computed independently of the simulator.
pub fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
