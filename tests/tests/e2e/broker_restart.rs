//! A real broker restart, not a proxy cut: the fleet runs on a private RabbitMQ node that the
//! test stops (`rabbitmqctl stop`) and starts again on the same port and data directory. Every
//! service must notice, report not-ready (but stay live), reconnect by itself, and resume
//! consuming and publishing: nothing accepted is lost and nothing is sent twice.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet_nodes::PrivateBroker;
use wafleet_tests::{TestFleet, id_of, observe::metric};

/// The connections of the fleet, as `wafleet_broker_connected` labels them.
const CONNECTIONS: [&str; 6] = [
    "ingest/publish",
    "ingest/consume",
    "webhooks/publish",
    "webhooks/consume",
    "dispatcher/publish",
    "dispatcher/consume",
];

/// How long a message may take to reach `read` after the broker is back: a publish lost in the
/// outage waits for the outbox sweep, a status webhook for the simulator's next retry.
const SETTLE: Duration = Duration::from_secs(45);

/// How long the broker stays down in the second restart: long enough for every client to notice
/// and retry a few times, as when a node takes a while to come back.
const OUTAGE: Duration = Duration::from_secs(6);

#[tokio::test]
async fn after_broker_restarts_every_service_recovers_by_itself_and_no_message_is_lost_or_sent_twice()
 {
    let mut broker = PrivateBroker::start().await.expect("private RabbitMQ node");
    let url = broker.amqp_url();
    let t = TestFleet::start_with(|s| {
        s.amqp_url = url;
        // Hundreds of messages to one candidate: no pair-rate waits in the way.
        s.dispatch.pair_burst = 1000;
    })
    .await;
    // Meta retries an unanswered webhook for days; the simulator's default gives up after ~8 s.
    t.sim(
        Method::PUT,
        "/_sim/config",
        json!({"retry_delays_ms": [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]}),
    )
    .await;
    let services = [
        t.fleet.ingest_url.clone(),
        t.fleet.webhooks_url.clone(),
        t.fleet.dispatcher_url.clone(),
    ];
    for s in &services {
        t.wait_for_readiness(s, StatusCode::OK).await;
    }
    // Accepted just before the restarts, over HTTP and AMQP intake: still on their way when the
    // broker goes.
    let mut before = send_http(&t, "BR-BEFORE", 10).await;
    let before_amqp = publish_amqp(&t, "BR-BEFORE-Q", 5).await;

    // A restart as an operator does one (stop, start at once), under a steady stream of sends.
    let (steady, first_ready) = tokio::join!(keep_sending(&t, "BR-RESTART", 80), async {
        broker.stop().await.expect("broker stop");
        broker.start_again().await.expect("broker start");
        ready_again(&t, &services).await
    });
    before.extend(steady);
    // Then an outage: stopped, kept down for OUTAGE, started again; sends go on meanwhile.
    let (steady, (second_ready, down)) = tokio::join!(keep_sending(&t, "BR-OUTAGE", 120), async {
        broker.stop().await.expect("broker stop");
        let stopped = Instant::now();
        for s in &services {
            let body = t
                .wait_for_readiness(s, StatusCode::SERVICE_UNAVAILABLE)
                .await;
            assert!(body.contains("broker unreachable"), "{s}: {body}");
            let (live, why) = t.healthz(s).await;
            assert_eq!(live, StatusCode::OK, "{s} is still alive: {why}");
        }
        let down = t.scrape(&services[0]).await;
        tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
        broker.start_again().await.expect("broker start");
        (ready_again(&t, &services).await, down)
    });
    before.extend(steady);
    let up = t.scrape(&services[0]).await;
    let after = send_http(&t, "BR-AFTER", 10).await;
    let after_amqp = publish_amqp(&t, "BR-AFTER-Q", 5).await;

    for ready in [first_ready, second_ready] {
        assert!(
            ready < Duration::from_secs(10),
            "every service ready {ready:?} after the broker was back"
        );
    }
    for c in CONNECTIONS {
        let gauge =
            |exposition: &str| metric(exposition, "wafleet_broker_connected", &[("connection", c)]);
        assert_eq!(gauge(&down), 0.0, "{c} while the broker was down");
        assert_eq!(gauge(&up), 1.0, "{c} once it was back");
    }
    before.extend(ids_of_records(&t, &before_amqp).await);
    let mut after_all = after;
    after_all.extend(ids_of_records(&t, &after_amqp).await);
    for id in before.iter().chain(&after_all) {
        t.wait_for_message_within(id, "read", SETTLE, |m| m["state"] == "read")
            .await;
    }
    for id in &before {
        let sent: Vec<_> = t.sends_for(id).await;
        let accepted = sent.iter().filter(|s| s.wamid.is_some()).count();
        assert_eq!(
            accepted, 1,
            "{id} (accepted before or during the restarts) reached Meta once: {sent:?}"
        );
    }
    for id in &after_all {
        let sent = t.sends_for(id).await;
        assert_eq!(
            sent.len(),
            1,
            "{id} (sent after the restarts) reached Meta once: {sent:?}"
        );
    }
    t.stop().await;
}

/// Waits until every service answers `/readyz` with 200 (20 s at most); how long that took.
async fn ready_again(t: &TestFleet, services: &[String]) -> Duration {
    let back = Instant::now();
    for s in services {
        t.wait_for_readiness(s, StatusCode::OK).await;
    }
    back.elapsed()
}

/// `n` template messages over HTTP, one every 100 ms whatever the answers take; their ids (each
/// must be accepted: ingest keeps a message even while the broker is away).
async fn keep_sending(t: &TestFleet, record: &str, n: u32) -> Vec<String> {
    let sends = (0..n).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(100) * i).await;
        t.send(TestFleet::template_request(&format!("{record}-{i}")), None)
            .await
    });
    accepted_ids(futures_util::future::join_all(sends).await)
}

fn accepted_ids(answers: Vec<(StatusCode, Value)>) -> Vec<String> {
    answers
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            id_of(&body)
        })
        .collect()
}

/// `n` template messages over HTTP, all at once; their ids.
async fn send_http(t: &TestFleet, record: &str, n: usize) -> Vec<String> {
    let sends = (0..n).map(|i| t.send(TestFleet::template_request(&format!("{record}-{i}")), None));
    accepted_ids(futures_util::future::join_all(sends).await)
}

/// `n` template messages over AMQP intake, each with its own message id; their record ids.
async fn publish_amqp(t: &TestFleet, record: &str, n: usize) -> Vec<String> {
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let record_id = format!("{record}-{i}");
        let body = serde_json::to_vec(&TestFleet::template_request(&record_id)).expect("json");
        t.publish_intake(&body, Some(&format!("{record_id}-key")))
            .await;
        records.push(record_id);
    }
    records
}

/// The message id filed under each candidate record (waiting for intake to accept it).
async fn ids_of_records(t: &TestFleet, records: &[String]) -> Vec<String> {
    let mut ids = Vec::with_capacity(records.len());
    for record in records {
        let path = format!("/v1/records/candidate/{record}/messages");
        let history = t
            .wait_for_get(&path, "the intake message accepted", |h: &Value| {
                h["messages"][0]["id"].is_string()
            })
            .await;
        ids.push(id_of(&history["messages"][0]));
    }
    ids
}
