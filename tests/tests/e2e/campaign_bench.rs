//! Campaign benchmarks (ignored by default; `just bench-campaigns` runs them in a release build):
//! - speed: accepting a 100,000-recipient campaign (NDJSON, then JSON) through a separate
//!   `wafleet ingest` process, timed, with that process's peak memory (VmHWM);
//! - priority: with a 50,000-recipient campaign in progress on a sender at 80/s, 100 single
//!   messages through the same sender, intake → sent (p50/p90/p99/max).
//!
//! `WAFLEET_BENCH_RECIPIENTS` and `WAFLEET_BENCH_CAMPAIGN` change the list sizes.

use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};
use wafleet_tests::{
    TestFleet,
    campaigns::{numbers, recipient, sent_or_later},
    procs::{KillOnDrop, wafleet_binary},
};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `Vm*` of a process in MB.
fn vm_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn header(name: &str) -> String {
    json!({"name": name, "template": {"name": "job_opportunity", "language": "en_GB"}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run on its own"]
async fn accepting_a_100000_recipient_campaign_takes_under_5_s_with_ingest_under_200_mb() {
    let n = env_or("WAFLEET_BENCH_RECIPIENTS", 100_000);
    let t = TestFleet::start().await;
    // A separate ingest process, so its memory is its own.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ingest = std::process::Command::new(wafleet_binary())
        .arg("ingest")
        .env("WAFLEET_DATABASE_URL", &t.settings.database_url)
        .env("WAFLEET_AMQP_URL", &t.settings.amqp_url)
        .env("WAFLEET_AMQP_PREFIX", &t.settings.amqp_prefix)
        .env(
            "WAFLEET_DISPATCH__SHARDS",
            t.settings.dispatch.shards.to_string(),
        )
        .env("WAFLEET_INGEST_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "WAFLEET_SECRET_KEY",
            t.settings.secret_key.as_ref().unwrap().expose(),
        )
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("ingest starts");
    let mut ingest = KillOnDrop(ingest);
    let pid = ingest.0.id();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !t
        .http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "ingest did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_mb = vm_mb(pid, "VmRSS:");
    let to = numbers(0, n);
    let mut ndjson = header("bench-ndjson");
    for (i, number) in to.iter().enumerate() {
        ndjson.push('\n');
        ndjson.push_str(&recipient(number, &format!("b-{i}")).to_string());
    }
    let recipients: Vec<_> = to
        .iter()
        .enumerate()
        .map(|(i, number)| recipient(number, &format!("j-{i}")))
        .collect();
    let json_body = json!({
        "name": "bench-json",
        "template": {"name": "job_opportunity", "language": "en_GB"},
        "recipients": recipients,
    })
    .to_string();
    // Nothing is sent meanwhile: the campaigns are paused right after (the feeder's rounds and
    // the dispatcher share the machine otherwise).
    let mut results = Vec::new();
    for (label, content_type, body) in [
        ("ndjson", "application/x-ndjson", ndjson),
        ("json", "application/json", json_body),
    ] {
        let bytes = body.len();
        let start = Instant::now();
        let res = t
            .http
            .post(format!("{url}/v1/campaigns"))
            .bearer_auth(&t.api_key)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("ingest answers");
        let elapsed = start.elapsed();
        let status = res.status();
        let created: serde_json::Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
        assert_eq!(created["accepted"], n);
        let id = created["id"].as_str().unwrap().to_owned();
        t.campaign_action(&id, "pause").await;
        results.push((label, bytes, elapsed, vm_mb(pid, "VmHWM:")));
    }
    println!("campaign intake, {n} recipients, ingest idle RSS {idle_mb:.1} MB:");
    for (label, bytes, elapsed, peak) in &results {
        println!(
            "  {label:6} {:5.1} MB body  {:6.2} s  {:8.0} recipients/s  ingest peak RSS {peak:.1} MB",
            *bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            f64::from(n) / elapsed.as_secs_f64(),
        );
    }
    ingest.stop();
    t.stop().await;
    // The target is for the large-list path, NDJSON (streamed, validated and written batch by
    // batch). A JSON body is read whole before the first batch: it is reported, and held to the
    // memory bound only.
    for (label, _, elapsed, peak) in results {
        if label == "ndjson" {
            assert!(elapsed < Duration::from_secs(5), "{label}: {elapsed:?}");
        }
        assert!(peak < 200.0, "{label}: peak RSS {peak:.1} MB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run on its own"]
async fn singles_through_a_sender_busy_with_a_50000_recipient_campaign_are_sent_within_2_s_p99() {
    let n = env_or("WAFLEET_BENCH_CAMPAIGN", 50_000);
    let t = TestFleet::start_with(|s| s.dispatch.sender_rate = 80).await;
    // The simulated number's throughput (Meta's bucket) matches the sender's rate unless
    // WAFLEET_BENCH_SIM_MPS says otherwise.
    let sim_mps = env_or("WAFLEET_BENCH_SIM_MPS", 80);
    t.sim(
        reqwest::Method::POST,
        "/_sim/numbers",
        json!({
            "phone_number_id": t.phone_number_id, "waba_id": t.waba_id,
            "display_phone_number": wafleet_tests::SENDER_PHONE, "verified_name": "Acme Test",
            "mps": sim_mps,
        }),
    )
    .await;
    // A 50,000-recipient campaign needs a portfolio at tier 100,000 or above.
    let (status, body) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/settings",
            Some(json!({"tier_override": -1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut lines = vec![header("priority")];
    lines.extend(
        numbers(0, n)
            .iter()
            .enumerate()
            .map(|(i, to)| recipient(to, &format!("p-{i}")).to_string()),
    );
    let (status, created) = t.create_campaign_ndjson(&lines, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = t.campaign(&id).await;
        if sent_or_later(&c) >= 400 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign did not get going: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = sent_or_later(&t.campaign(&id).await);
    let started = Instant::now();

    // 100 singles, one every 100 ms, to the same sender.
    let mut ids = Vec::new();
    for i in 0..100 {
        let mut body = TestFleet::template_request(&format!("single-{i}"));
        body["to"] = json!(numbers(900_000 + i, 1)[0]);
        let (status, reply) = t.send(body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply:#}");
        ids.push(uuid::Uuid::parse_str(reply["id"].as_str().unwrap()).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        t.wait_for_message(&id.to_string(), "single sent", |m| {
            ["sent", "delivered", "read"].contains(&m["state"].as_str().unwrap_or_default())
        })
        .await;
    }
    let window = started.elapsed().as_secs_f64();
    let after = t.campaign(&id).await;
    let campaign_rate = (sent_or_later(&after) - before) as f64 / window;
    let sends = t.all_sends().await;
    let throttled = sends
        .iter()
        .filter(|s| s.error_code == Some(130429))
        .count();
    // Intake (the row's creation, before the 202) to the simulator receiving the Graph call
    // that it accepted: the moment Meta would have the message.
    let accepted: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, created_at FROM messages WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&t.pool)
            .await
            .unwrap();
    let mut lat: Vec<f64> = accepted
        .iter()
        .filter_map(|(id, at)| {
            let id = id.to_string();
            let sent = sends.iter().find(|s| {
                s.wamid.is_some() && s.biz_opaque_callback_data.as_deref() == Some(id.as_str())
            })?;
            Some((sent.at - *at).as_seconds_f64())
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "priority: {} singles beside a {n}-recipient campaign (campaign sent {campaign_rate:.1}/s meanwhile, {} pending, \
         {throttled} × 130429): intake→sent p50 {:.3} s, p90 {:.3} s, p99 {:.3} s, max {:.3} s",
        lat.len(),
        after["pending"],
        q(0.50),
        q(0.90),
        q(0.99),
        lat[lat.len() - 1],
    );
    t.campaign_action(&id, "cancel").await;
    t.stop().await;
    assert_eq!(lat.len(), 100);
    assert!(q(0.99) <= 2.0, "p99 {:.3} s", q(0.99));
}
