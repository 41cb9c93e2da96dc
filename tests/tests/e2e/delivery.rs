//! Sending under faults: redelivery never sends twice, lost publishes are recovered, Meta's
//! errors decide between retrying and failing.

use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicPublishOptions},
};
use serde_json::json;
use std::time::{Duration, Instant};
use wafleet_core::{
    amqp,
    contract::DispatchEnvelope,
    domain::{MessageId, TenantId},
};
use wafleet_tests::{CANDIDATE, TestFleet};

#[tokio::test]
async fn a_dispatch_message_redelivered_after_its_outcome_was_recorded_is_not_sent_twice() {
    let t = TestFleet::start().await;
    let (_, b) = t.send(TestFleet::template_request("D-1"), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    t.wait_for_state(&id, "read").await;
    let topology = t.topology();
    let (conn, channel) = t.amqp_channel().await;

    // The broker hands the same dispatch message out again (a consumer died before its ack), in
    // the envelope format from before envelopes named their sender.
    let envelope = DispatchEnvelope {
        message_id: id.parse::<MessageId>().unwrap(),
        tenant_id: t.tenant_id,
        phone_number_id: None,
    };
    channel
        .basic_publish(
            topology.dispatch_exchange().into(),
            amqp::shard_key(topology.shard_for(&t.phone_number_id)).into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &serde_json::to_vec(&envelope).unwrap(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // A later message on the same shard: once it is sent, the redelivery was handled.
    let (_, later) = t.send(TestFleet::template_request("D-2"), None).await;
    // Sent or later: the status webhooks can move it past `sent` between two polls.
    t.wait_for_message(later["id"].as_str().unwrap(), "sent", |m| {
        ["sent", "delivered", "read"].contains(&m["state"].as_str().unwrap_or_default())
    })
    .await;

    assert_eq!(t.sends_for(&id).await.len(), 1, "Meta saw the message once");
    let (_, m) = t.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["state"], "read");
    let _ = conn.close(200, "done".into()).await;
    t.stop().await;
}

#[tokio::test]
async fn a_message_whose_publish_was_lost_is_published_by_the_outbox_sweep() {
    let t = TestFleet::start().await;
    let id = MessageId::new();
    // The state a crash between the commit and the publish leaves behind.
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, direction, phone_number_id, recipient, record_type, record_id,
             content_type, content, state, created_at)
         VALUES ($1, $2, 'out', $3, $4, 'candidate', 'D-3', 'template', $5, 'accepted', now() - interval '5 seconds')",
    )
    .bind(id)
    .bind(t.tenant_id)
    .bind(&t.phone_number_id)
    .bind(CANDIDATE)
    .bind(json!({"type": "template", "name": "job_opportunity", "language": "en_GB",
                 "parameters": {"format": "positional", "values": ["Anna", "Sam"]}}))
    .execute(&t.pool)
    .await
    .unwrap();

    t.wait_for_state(&id.to_string(), "read").await;
    assert_eq!(t.sends_for(&id.to_string()).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_template_meta_no_longer_knows_fails_with_metas_error_code() {
    let t = TestFleet::start().await;
    // Intake refuses templates that were never synced; this one was synced, then deleted at
    // Meta before the message went out (the row as intake wrote it, published by the sweep).
    let id = MessageId::new();
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, direction, phone_number_id, recipient, record_type, record_id,
             content_type, content, state, created_at)
         VALUES ($1, $2, 'out', $3, $4, 'candidate', 'D-4', 'template', $5, 'accepted', now() - interval '5 seconds')",
    )
    .bind(id)
    .bind(t.tenant_id)
    .bind(&t.phone_number_id)
    .bind(CANDIDATE)
    .bind(json!({"type": "template", "name": "no_such_template", "language": "en_GB",
                 "parameters": {"format": "positional", "values": ["x"]}}))
    .execute(&t.pool)
    .await
    .unwrap();

    let m = t.wait_for_state(&id.to_string(), "failed").await;

    assert_eq!(m["reason"], "meta_132001");
    assert_eq!(m["error"]["code"], 132001);
    assert!(m["error"]["fbtrace_id"].is_string());
    t.stop().await;
}

#[tokio::test]
async fn a_throttled_send_is_retried_and_then_delivered() {
    let t = TestFleet::start().await;
    t.sim(reqwest::Method::POST, "/_sim/faults", json!({"phone_number_id": t.phone_number_id, "code": 130429, "http_status": 400, "times": 1})).await;

    let (_, b) = t.send(TestFleet::template_request("D-5"), None).await;
    let id = b["id"].as_str().unwrap();
    let m = t.wait_for_state(id, "read").await;

    let trail: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        &trail[..4],
        ["accepted", "dispatching", "deferred", "dispatching"]
    );
    assert_eq!(t.meta_answers_for(id).await, [Some(130429), None]);
    t.stop().await;
}

#[tokio::test]
async fn a_send_that_keeps_failing_transiently_ends_failed_and_dead_lettered() {
    let t = TestFleet::start().await;
    t.sim(reqwest::Method::POST, "/_sim/faults", json!({"phone_number_id": t.phone_number_id, "code": 131000, "http_status": 500, "times": 100})).await;

    let (_, b) = t.send(TestFleet::template_request("D-6"), None).await;
    let id = b["id"].as_str().unwrap();
    let m = t.wait_for_state(id, "failed").await;

    assert_eq!(m["reason"], "retries_exhausted");
    assert_eq!(m["error"]["code"], 131000);
    assert_eq!(
        t.sends_for(id).await.len(),
        3,
        "first try and one per retry tier"
    );
    let (conn, channel) = t.amqp_channel().await;
    let dead = t.topology().dead_queue();
    let deadline = Instant::now() + Duration::from_secs(10);
    let parked = loop {
        if let Some(m) = channel
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        assert!(Instant::now() < deadline, "nothing reached {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let envelope: DispatchEnvelope = serde_json::from_slice(&parked.delivery.data).unwrap();
    assert_eq!(envelope.message_id.to_string(), id);
    assert_eq!(envelope.tenant_id, t.tenant_id);
    let _: TenantId = envelope.tenant_id;
    let _ = conn.close(200, "done".into()).await;
    t.stop().await;
}

#[tokio::test]
async fn a_rolling_restart_mid_stream_loses_nothing_and_sends_nothing_twice() {
    let mut t = TestFleet::start().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        // Forty candidates: forty messages to one would wait on Meta's pair limit.
        let mut request = TestFleet::template_request(&format!("R-{i}"));
        request["to"] = json!(format!("+4474001002{i:02}"));
        let (status, b) = t.send(request, None).await;
        assert_eq!(status, 202);
        ids.push(b["id"].as_str().unwrap().to_owned());
    }

    t.restart().await;

    for id in &ids {
        t.wait_for_state(id, "read").await;
        assert_eq!(
            t.sends_for(id).await.len(),
            1,
            "message {id} reached Meta exactly once"
        );
    }
    t.stop().await;
}
