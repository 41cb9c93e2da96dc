//! The receiver's latency under Meta-like load: 1,000 signed webhook POSTs per second, open
//! loop (a slow answer doesn't slow the sender), each answered only after the durable publish.
//! Ignored by default; run it with
//! `cargo nextest run -p wafleet-tests --run-ignored only -E 'test(/webhook_bench/)' --no-capture`
//! (`WAFLEET_BENCH_RATE` changes the rate; a release build gives the meaningful figures).

use serde_json::json;
use std::time::{Duration, Instant};
use wafleet_tests::TestFleet;

const SECONDS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run on its own"]
async fn the_receiver_answers_1000_posts_per_second_with_p99_under_250_ms() {
    let rate: u64 = std::env::var("WAFLEET_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000);
    let t = TestFleet::start().await;
    let url = format!("{}/webhooks/meta", t.fleet.webhooks_url);
    let now = chrono::Utc::now().timestamp();
    let bodies: Vec<(Vec<u8>, String)> = (0..rate * SECONDS)
        .map(|i| {
            let body = t.status_payload(vec![
                json!({"id": format!("wamid.bench-{i}"), "status": "delivered",
                "timestamp": now.to_string(), "recipient_id": "447400123456"}),
            ]);
            let sig = wafleet_webhooks::signature::sign(&t.app_secret, &body);
            (body, sig)
        })
        .collect();

    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(bodies.len());
    for (body, sig) in bodies {
        tick.tick().await;
        let (http, url) = (t.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let res = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await;
            (
                res.map(|r| r.status().as_u16()).unwrap_or(0),
                start.elapsed(),
            )
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        let (status, took) = task.await.unwrap();
        if status != 200 {
            errors += 1;
        }
        latencies.push(took);
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "webhook receiver, {rate}/s for {SECONDS}s: n={} non-200={errors} p50={:?} p90={:?} p99={:?} max={:?}",
        latencies.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().unwrap()
    );

    assert_eq!(errors, 0);
    assert!(
        pct(0.99) < Duration::from_millis(250),
        "p99 {:?}",
        pct(0.99)
    );
    t.stop().await;
}
