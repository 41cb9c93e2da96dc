//! The three load generators, one per intake path, each pushing `n` template messages to
//! distinct recipients spread over the tenant's 20 senders:
//! - AMQP intake: `<p>.intake` / `send`, persistent JSON, header `tenant`, `message_id` = the
//!   idempotency key, with a window of outstanding confirms;
//! - `POST /v1/messages` from many concurrent keep-alive clients;
//! - 20 campaigns (one per sender) of `n / 20` recipients each, as NDJSON.
//!
//! Each returns what the client saw (accepted, refused, how long pushing took); what the fleet
//! did with it is measured afterwards from the database and the simulator.

use crate::confirms::ConfirmWindow;
use crate::report::mask_phone_numbers;
use crate::tenant::{TEMPLATE, Tenant, call, recipient};
use lapin::{BasicProperties, types::AMQPValue, types::FieldTable};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An intake path of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    Amqp,
    Http,
    Campaign,
}

impl Path {
    pub fn label(self) -> &'static str {
        match self {
            Self::Amqp => "AMQP intake",
            Self::Http => "POST /v1/messages",
            Self::Campaign => "20 campaigns (NDJSON)",
        }
    }

    /// The recipient series of the path (see [`recipient`]): every path has its own numbers.
    fn series(self) -> u32 {
        match self {
            Self::Amqp => 1,
            Self::Http => 2,
            Self::Campaign => 3,
        }
    }
}

/// What the load generator saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadOutcome {
    pub offered: u64,
    /// Confirmed by the broker (AMQP), answered 202 (HTTP), or counted accepted (campaigns).
    pub accepted: u64,
    pub refused: u64,
    pub first_refusal: Option<String>,
    /// From the first request to the last answer or confirm.
    pub push_seconds: f64,
    /// Which messages (their `i`) were accepted, for the chaos run's per-message audit.
    #[serde(skip)]
    pub accepted_indices: Vec<u32>,
}

/// How the generators are tuned (command-line flags).
#[derive(Debug, Clone)]
pub struct LoadTuning {
    pub confirm_window: usize,
    pub http_concurrency: usize,
    pub run_id: String,
    /// Messages per second offered by the AMQP and HTTP paths (`None`: as fast as possible).
    pub offered_rate: Option<f64>,
    /// Senders the AMQP and HTTP paths spread over (the first ones of the tenant).
    pub senders: usize,
    /// How long a message that got no answer, a 5xx or a 429 is tried again (with the same
    /// idempotency key, as an upstream service would); `None`: refused at once.
    pub retry_for: Option<Duration>,
}

/// The pause between two tries of one message.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Waits until message `i` is due at the offered rate (at once when there is none).
async fn pace(started: Instant, i: u32, rate: Option<f64>) {
    if let Some(rate) = rate {
        let due = started + Duration::from_secs_f64(f64::from(i) / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// The candidate record of message `i` of `path` (one record per message).
pub fn record_id(path: Path, i: u32) -> String {
    format!("bench-{path:?}-{i}")
}

/// One message of `path`: recipient `i`, sender `i mod senders` (at most the tenant's 20).
pub fn message(path: Path, i: u32, tenant: &Tenant, senders: usize) -> Value {
    let senders = senders.clamp(1, tenant.senders.len());
    json!({
        "to": recipient(path.series(), i),
        "record": {"type": "candidate", "id": record_id(path, i)},
        "sender": tenant.senders[i as usize % senders],
        "template": {"name": TEMPLATE, "language": "en_GB"},
        "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"},
    })
}

/// The AMQP `message_id` (the idempotency key) of message `i` of a run.
pub fn amqp_message_id(run_id: &str, i: u32) -> String {
    format!("bench-{run_id}-amqp-{i}")
}

/// Publishes `n` messages to the intake exchange with a window of outstanding confirms.
pub async fn amqp(
    amqp_url: &str,
    exchange: &str,
    tenant: &Tenant,
    n: u32,
    tuning: &LoadTuning,
) -> anyhow::Result<LoadOutcome> {
    let conn = wafleet_core::amqp::connect(amqp_url, "wafleet-bench/intake").await?;
    let mut window =
        ConfirmWindow::open(conn.create_channel().await?, tuning.confirm_window).await?;
    let mut headers = FieldTable::default();
    headers.insert(
        "tenant".into(),
        AMQPValue::LongString(tenant.id.clone().into()),
    );
    let started = Instant::now();
    for i in 0..n {
        pace(started, i, tuning.offered_rate).await;
        let mut body = message(Path::Amqp, i, tenant, tuning.senders);
        body["kind"] = json!("single");
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(amqp_message_id(&tuning.run_id, i).into())
            .with_headers(headers.clone());
        window
            .publish(exchange, "send", &serde_json::to_vec(&body)?, properties)
            .await?;
    }
    window.finish().await;
    let push_seconds = started.elapsed().as_secs_f64();
    wafleet_core::amqp::close(&conn).await;
    Ok(LoadOutcome {
        offered: u64::from(n),
        accepted: window.confirmed,
        refused: window.failed,
        first_refusal: window.first_failure,
        push_seconds,
        // The window counts confirms, not which message each was for.
        accepted_indices: Vec::new(),
    })
}

/// `n` POSTs from `http_concurrency` concurrent clients sharing one keep-alive pool.
pub async fn http(
    ingest_url: &str,
    tenant: &Tenant,
    n: u32,
    tuning: &LoadTuning,
) -> anyhow::Result<LoadOutcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(tuning.http_concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let next = Arc::new(AtomicU32::new(0));
    let url = format!("{ingest_url}/v1/messages");
    let shared = Arc::new(tenant.clone());
    let started = Instant::now();
    let workers: Vec<_> = (0..tuning.http_concurrency)
        .map(|_| {
            let (client, next, url) = (client.clone(), Arc::clone(&next), url.clone());
            let (key, run_id) = (tenant.api_key.clone(), tuning.run_id.clone());
            let (rate, senders, retry_for) =
                (tuning.offered_rate, tuning.senders, tuning.retry_for);
            let tenant = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut out = LoadOutcome::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.offered += 1;
                    pace(started, i, rate).await;
                    let first_try = Instant::now();
                    let refusal = loop {
                        let res = client
                            .post(&url)
                            .bearer_auth(&key)
                            .header("Idempotency-Key", format!("bench-{run_id}-http-{i}"))
                            .json(&message(Path::Http, i, &tenant, senders))
                            .send()
                            .await;
                        let (refusal, retryable) = match res {
                            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => break None,
                            Ok(r) => {
                                let status = r.status();
                                let retryable = status.is_server_error()
                                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                                let body = r.text().await.unwrap_or_default();
                                (format!("{status} {body}"), retryable)
                            }
                            Err(err) => (err.to_string(), true),
                        };
                        if !retryable || retry_for.is_none_or(|f| first_try.elapsed() > f) {
                            break Some(refusal);
                        }
                        tokio::time::sleep(RETRY_PAUSE).await;
                    };
                    match refusal {
                        None => {
                            out.accepted += 1;
                            out.accepted_indices.push(i);
                        }
                        Some(refusal) => {
                            out.refused += 1;
                            out.first_refusal
                                .get_or_insert_with(|| mask_phone_numbers(&refusal));
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = LoadOutcome::default();
    for w in workers {
        let part = w.await?;
        total.offered += part.offered;
        total.accepted += part.accepted;
        total.refused += part.refused;
        total.accepted_indices.extend(part.accepted_indices);
        if total.first_refusal.is_none() {
            total.first_refusal = part.first_refusal;
        }
    }
    total.push_seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// One campaign per sender, `n / 20` recipients each (the remainder to the first ones), all
/// posted at once as NDJSON.
pub async fn campaigns(
    ingest_url: &str,
    tenant: &Tenant,
    n: u32,
    tuning: &LoadTuning,
) -> anyhow::Result<LoadOutcome> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let senders = tenant.senders.len() as u32;
    let bodies: Vec<(u32, String)> = (0..senders)
        .map(|s| {
            let header = json!({
                "name": format!("bench-{}-{s}", tuning.run_id),
                "template": {"name": TEMPLATE, "language": "en_GB"},
                "sender": tenant.senders[s as usize],
            });
            let mut body = header.to_string();
            let mut count = 0;
            // Recipient i goes to sender i mod 20, as on the other paths.
            for i in (s..n).step_by(senders as usize) {
                let mut line = message(Path::Campaign, i, tenant, tenant.senders.len());
                if let Some(obj) = line.as_object_mut() {
                    obj.remove("sender");
                    obj.remove("template");
                }
                body.push('\n');
                body.push_str(&line.to_string());
                count += 1;
            }
            (count, body)
        })
        .collect();
    let started = Instant::now();
    let posts = bodies.into_iter().map(|(count, body)| {
        let req = client
            .post(format!("{ingest_url}/v1/campaigns"))
            .bearer_auth(&tenant.api_key)
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        async move { (count, call(req, "POST /v1/campaigns").await) }
    });
    let mut out = LoadOutcome::default();
    for (count, reply) in futures_util::future::join_all(posts).await {
        out.offered += u64::from(count);
        match reply {
            Ok(created) => {
                let accepted = created["accepted"].as_u64().unwrap_or(0);
                out.accepted += accepted;
                out.refused += u64::from(count).saturating_sub(accepted);
            }
            Err(err) => {
                out.refused += u64::from(count);
                out.first_refusal
                    .get_or_insert_with(|| mask_phone_numbers(&err.to_string()));
            }
        }
    }
    out.push_seconds = started.elapsed().as_secs_f64();
    Ok(out)
}
