//! The achieved send rate of one sender against the simulator, at the default 80/s and at
//! Meta's highest level, 1,000/s: messages are queued well ahead (rows written and dispatch
//! envelopes published directly, so intake is not what is measured), then the simulator's
//! record of when each send arrived gives the rate over 10 s of steady sending (the first
//! second, the limiter's initial burst, is left out). Ignored by default; `just bench-rate` runs
//! it in a release build:
//! `cargo nextest run --release -p wafleet-tests --run-ignored only -E 'test(/rate_bench/)' --no-capture`

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wafleet_core::{
    amqp::{self, Outgoing, Publisher},
    contract::DispatchEnvelope,
    domain::MessageId,
};
use wafleet_tests::TestFleet;

const WINDOW_SECS: i64 = 10;

/// Queues `n` template messages to distinct recipients for the tenant's sender and returns
/// when every envelope is confirmed by the broker.
async fn queue(t: &TestFleet, n: usize) {
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| MessageId::new().0).collect();
    let recipients: Vec<String> = (0..n as u64)
        .map(|i| format!("+44{}", 7_400_100_000 + i))
        .collect();
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, direction, phone_number_id, recipient, record_type,
             record_id, content_type, content, state, published_at)
         SELECT id, $2, 'out', $3, r, 'candidate', 'BENCH', 'template', $5, 'accepted', now()
         FROM unnest($1::uuid[], $4::text[]) AS u(id, r)",
    )
    .bind(&ids)
    .bind(t.tenant_id)
    .bind(&t.phone_number_id)
    .bind(&recipients)
    .bind(
        json!({"type": "template", "name": "job_opportunity", "language": "en_GB",
                 "parameters": {"format": "positional", "values": ["Anna", "Sam"]}}),
    )
    .execute(&t.pool)
    .await
    .unwrap();
    let broker = t.broker().await;
    let publisher = Publisher::new(&broker);
    let topology = t.topology();
    let exchange = topology.dispatch_exchange();
    let key = amqp::shard_key(topology.shard_for(&t.phone_number_id));
    stream::iter(ids)
        .map(|id| {
            let (publisher, exchange, key) = (&publisher, &exchange, &key);
            async move {
                let body = serde_json::to_vec(&DispatchEnvelope {
                    message_id: MessageId(id),
                    tenant_id: t.tenant_id,
                    phone_number_id: Some(t.phone_number_id.clone()),
                })
                .unwrap();
                publisher
                    .publish(Outgoing {
                        exchange,
                        routing_key: key,
                        body: &body,
                        properties: amqp::json_properties(&id.to_string(), Default::default()),
                        mandatory: true,
                    })
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<()>>()
        .await;
    broker.close().await;
}

async fn recorded(t: &TestFleet) -> Vec<DateTime<Utc>> {
    let mut at: Vec<DateTime<Utc>> = t
        .all_sends()
        .await
        .into_iter()
        .filter(|s| s.wamid.is_some() && s.phone_number_id == t.phone_number_id)
        .map(|s| s.at)
        .collect();
    at.sort();
    at
}

/// Runs one sender at `rate` and answers the achieved rate over the measured window.
async fn achieved(rate: u32) -> f64 {
    let t = TestFleet::start_with(|s| {
        s.dispatch.sender_rate = rate;
        s.database_max_connections = 16;
    })
    .await;
    // Meta's side: the number may send 1,000/s; no webhooks (they are not what is measured).
    t.sim(
        Method::POST,
        "/_sim/numbers",
        json!({"phone_number_id": t.phone_number_id, "waba_id": t.waba_id,
               "display_phone_number": wafleet_tests::SENDER_PHONE, "verified_name": "Acme Test",
               "mps": 1000}),
    )
    .await;
    t.sim(Method::PUT, "/_sim/config", json!({"webhook_url": ""}))
        .await;
    t.admin(
        Method::PUT,
        "/v1/settings",
        Some(json!({"tier_override": -1})),
    )
    .await;

    // Enough for the window plus the warm-up and some to spare.
    let n = rate as usize * (WINDOW_SECS as usize + 3);
    queue(&t, n).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(WINDOW_SECS as u64 + 60);
    let at = loop {
        let at = recorded(&t).await;
        if at.len() >= n || std::time::Instant::now() > deadline {
            break at;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let first = at[0];
    let from = first + chrono::Duration::seconds(1);
    let to = from + chrono::Duration::seconds(WINDOW_SECS);
    let in_window = at.iter().filter(|a| **a >= from && **a < to).count();
    let got = in_window as f64 / WINDOW_SECS as f64;
    let overall =
        (at.len() - 1) as f64 / ((*at.last().unwrap() - first).num_milliseconds() as f64 / 1000.0);
    println!(
        "rate bench: configured {rate}/s: achieved {got:.1}/s over {WINDOW_SECS} s \
         ({:+.2} %); {} sends in all, {overall:.1}/s first to last",
        (got - f64::from(rate)) / f64::from(rate) * 100.0,
        at.len(),
    );
    t.stop().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run on its own"]
async fn rate_bench_one_sender_sends_within_2_percent_of_its_rate_at_80_and_1000_per_second() {
    let mut off = Vec::new();
    for rate in [80, 1000] {
        let got = achieved(rate).await;
        let deviation = (got - f64::from(rate)).abs() / f64::from(rate);
        if deviation > 0.02 {
            off.push(format!("{rate}/s: {got:.1}/s"));
        }
    }
    assert!(off.is_empty(), "more than 2 % off: {off:?}");
}
