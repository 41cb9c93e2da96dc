//! A tenant's HTTP endpoint for the webhook-endpoint tests: a real axum server on port 0 that
//! records every request (headers and raw body) and answers with the status the test sets
//! (200 unless told otherwise; `fail_next(n, status)` answers the next `n` with `status`).

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use serde_json::Value;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// One request as the endpoint received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// What the endpoint answered.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses for the next requests, then `default`.
    next: VecDeque<u16>,
    default: u16,
}

/// The receiver; `url` is where to point an endpoint.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            default: 200,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Self { url, inner, cancel }
    }

    /// The next `n` requests are answered with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.inner.lock().unwrap();
        inner.next.extend(std::iter::repeat_n(status, n));
    }

    /// Every request from now on (after those queued by `fail_next`) is answered with `status`.
    pub fn answer(&self, status: u16) {
        self.inner.lock().unwrap().default = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits (10 s at most) until some request satisfies `done`; returns it.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = self.received().into_iter().find(|r| done(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {:#?}",
                self.received()
                    .iter()
                    .map(|r| (r.answered, String::from_utf8_lossy(&r.body).into_owned()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut inner = inner.lock().unwrap();
    let answered = inner.next.pop_front().unwrap_or(inner.default);
    inner.received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}
