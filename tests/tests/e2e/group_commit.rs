//! Intake's group commit: concurrent requests are accepted together, and each caller still gets
//! its own answer, with the guarantees of one request at a time (idempotency, no lost row, one
//! bad request refused alone).

use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::HashSet;
use wafleet_core::amqp;
use wafleet_tests::{CANDIDATE, TestFleet};

fn request(record_id: &str) -> Value {
    TestFleet::template_request(record_id)
}

async fn rows_for_records(t: &TestFleet, prefix: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE tenant_id = $1 AND record_id LIKE $2 || '%'",
    )
    .bind(t.tenant_id)
    .bind(prefix)
    .fetch_one(&t.pool)
    .await
    .expect("count rows")
}

/// How many batches the group commit has written so far (the histogram's count).
async fn batches_written(t: &TestFleet) -> u64 {
    let metrics = t.scrape(&t.fleet.ingest_url).await;
    metrics
        .lines()
        .find(|l| l.starts_with("wafleet_intake_batch_size_count"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_burst_of_concurrent_requests_is_accepted_in_fewer_batches_with_one_row_each() {
    let t = TestFleet::start().await;
    let before = batches_written(&t).await;

    let answers = join_all((0..120).map(|i| {
        let t = &t;
        async move {
            t.send(request(&format!("GC-{i}")), Some(&format!("gc-{i}")))
                .await
        }
    }))
    .await;

    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            assert_eq!(body["status"], "accepted");
            body["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 120, "every request has its own message");
    assert_eq!(rows_for_records(&t, "GC-").await, 120);
    let batches = batches_written(&t).await - before;
    assert!(
        (1..120).contains(&batches),
        "120 concurrent requests were written in {batches} batches"
    );
    let some = ids.iter().next().unwrap();
    let (_, shown) = t.get(&format!("/v1/messages/{some}")).await;
    assert_eq!(shown["events"][0]["state"], "accepted", "{shown}");
    t.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_make_one_message_and_get_its_answer() {
    let t = TestFleet::start().await;

    let answers = join_all((0..20).map(|_| t.send(request("GC-KEY"), Some("one-key")))).await;
    let mut changed = request("GC-KEY");
    changed["merge_fields"]["KNOWNAS"] = json!("Someone else");
    let (conflict, problem) = t.send(changed, Some("one-key")).await;

    let ids: HashSet<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["id"].as_str().expect("an id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "every caller hears of the same message");
    assert_eq!(rows_for_records(&t, "GC-KEY").await, 1);
    assert_eq!(conflict, 409);
    assert_eq!(problem["code"], "idempotency_conflict");
    t.stop().await;
}

#[tokio::test]
async fn a_request_with_a_nul_character_is_refused_naming_its_field_and_its_batch_is_accepted() {
    let t = TestFleet::start().await;
    let mut bad = json!({
        "to": CANDIDATE,
        "record": {"type": "candidate", "id": "GC-NUL"},
        "text": "hello\u{0}there",
    });

    let (answers, (bad_status, bad_body)) = tokio::join!(
        join_all((0..30).map(|i| t.send(request(&format!("GC-OK-{i}")), None))),
        t.send(bad.take(), None),
    );

    assert_eq!(bad_status, 422, "{bad_body}");
    assert_eq!(bad_body["code"], "invalid_field");
    assert_eq!(bad_body["field"], "text");
    assert!(answers.iter().all(|(status, _)| *status == 202));
    assert_eq!(rows_for_records(&t, "GC-OK-").await, 30);
    let (_, history) = t.get("/v1/records/candidate/GC-NUL/messages").await;
    assert_eq!(history["messages"][0]["state"], "rejected", "{history}");
    t.stop().await;
}

#[tokio::test]
async fn amqp_intake_accepts_a_backlog_in_batches_and_a_repeated_message_id_once() {
    let t = TestFleet::start().await;
    let broker = t.broker().await;
    let publisher = amqp::Publisher::new(&broker);
    let exchange = t.topology().intake_exchange();
    let tenant = t.tenant_id.to_string();
    let before = batches_written(&t).await;

    // 150 distinct messages, and the first 10 published a second time with the same id.
    let bodies: Vec<(String, Vec<u8>)> = (0..150)
        .chain(0..10)
        .map(|i| {
            let body = serde_json::to_vec(&request(&format!("GC-AMQP-{i}"))).unwrap();
            (format!("amqp-{i}"), body)
        })
        .collect();
    join_all(bodies.iter().map(|(id, body)| {
        let mut headers = lapin::types::FieldTable::default();
        amqp::set_header(&mut headers, "tenant", &tenant);
        let properties = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(id.as_str().into())
            .with_headers(headers);
        let publisher = &publisher;
        let exchange = exchange.as_str();
        async move {
            publisher
                .publish(amqp::Outgoing {
                    exchange,
                    routing_key: "send",
                    body,
                    properties,
                    mandatory: true,
                })
                .await
                .expect("intake accepts the publish")
        }
    }))
    .await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while rows_for_records(&t, "GC-AMQP-").await < 150 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Let the repeats be handled too, then count again.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        rows_for_records(&t, "GC-AMQP-").await,
        150,
        "one row per message id"
    );
    let batches = batches_written(&t).await - before;
    assert!(
        (1..160).contains(&batches),
        "160 deliveries were accepted in {batches} batches"
    );
    broker.close().await;
    t.stop().await;
}
