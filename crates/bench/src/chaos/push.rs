//! The chaos run's AMQP intake load, published as an upstream service that survives a broker
//! restart would: over a supervised connection (`wafleet_core::amqp::Broker`, the fleet's own
//! reconnecting connection) with confirmed, `mandatory` publishes; a publish that fails or is
//! not confirmed is published again with the same `message_id` (the idempotency key) until it
//! is confirmed or `retry_for` has passed. Messages go out at the offered rate whatever the
//! broker does; each one's retries run on their own.

use crate::load::{LoadOutcome, LoadTuning, Path, amqp_message_id, message};
use crate::report::mask_phone_numbers;
use crate::tenant::Tenant;
use lapin::types::FieldTable;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wafleet_core::amqp::{Broker, Outgoing, Publisher, json_properties, set_header};

/// Publishes still being tried at once (each waits for its confirm or its retry).
const IN_FLIGHT: usize = 2_000;
/// The pause between two tries of one message.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Publishes messages `0..n` of [`Path::Amqp`] for `tenant` to `exchange` / `send`.
pub async fn amqp(
    amqp_url: &str,
    settings: &wafleet_core::config::BrokerSettings,
    exchange: &str,
    tenant: &Tenant,
    n: u32,
    tuning: &LoadTuning,
) -> anyhow::Result<LoadOutcome> {
    let broker = Broker::start(
        amqp_url,
        "wafleet-chaos/intake",
        "chaos/intake",
        None,
        settings,
    );
    let publisher = Publisher::new(&broker);
    let mut tenant_header = FieldTable::default();
    set_header(&mut tenant_header, "tenant", &tenant.id);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        if let Some(rate) = tuning.offered_rate {
            let due = started + Duration::from_secs_f64(f64::from(i) / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let slot = Arc::clone(&slots).acquire_owned().await?;
        let mut body = message(Path::Amqp, i, tenant, tuning.senders);
        body["kind"] = json!("single");
        let body = serde_json::to_vec(&body)?;
        let (publisher, exchange) = (publisher.clone(), exchange.to_owned());
        let properties =
            json_properties(&amqp_message_id(&tuning.run_id, i), tenant_header.clone());
        let retry_for = tuning.retry_for.unwrap_or_default();
        tasks.spawn(async move {
            let _slot = slot;
            let first_try = Instant::now();
            loop {
                let out = Outgoing {
                    exchange: &exchange,
                    routing_key: "send",
                    body: &body,
                    properties: properties.clone(),
                    mandatory: true,
                };
                match publisher.publish(out).await {
                    Ok(()) => return (i, Ok(())),
                    Err(err) if first_try.elapsed() > retry_for => return (i, Err(err)),
                    Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
                }
            }
        });
    }
    let mut out = LoadOutcome {
        offered: u64::from(n),
        ..LoadOutcome::default()
    };
    while let Some(done) = tasks.join_next().await {
        match done? {
            (i, Ok(())) => {
                out.accepted += 1;
                out.accepted_indices.push(i);
            }
            (_, Err(err)) => {
                out.refused += 1;
                out.first_refusal
                    .get_or_insert_with(|| mask_phone_numbers(&err.to_string()));
            }
        }
    }
    out.push_seconds = started.elapsed().as_secs_f64();
    broker.close().await;
    Ok(out)
}
