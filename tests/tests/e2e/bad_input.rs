//! What bad input gets: the documented error, a rejection on record where a record was named,
//! and nothing sent.

use lapin::options::BasicGetOptions;
use serde_json::json;
use std::time::{Duration, Instant};
use wafleet_core::amqp;
use wafleet_tests::TestFleet;

/// The next message parked in `<p>.intake.rejected` (10 s at most).
async fn next_rejected(t: &TestFleet, channel: &lapin::Channel) -> lapin::message::BasicGetMessage {
    let queue = t.topology().intake_rejected_queue();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            return m;
        }
        assert!(Instant::now() < deadline, "nothing reached {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(t: &TestFleet, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&t.pool).await.unwrap()
}

#[tokio::test]
async fn a_bad_number_is_refused_naming_the_field_and_only_the_rejection_is_recorded() {
    let t = TestFleet::start().await;
    let mut request = TestFleet::template_request("C-1");
    request["to"] = json!("07400 123456");

    let (status, body) = t.send(request, None).await;

    assert_eq!(status, 422);
    assert_eq!(body["code"], "invalid_recipient");
    assert_eq!(body["field"], "to");
    let (_, history) = t.get("/v1/records/candidate/C-1/messages").await;
    assert_eq!(history["messages"][0]["state"], "rejected");
    assert_eq!(history["messages"][0]["reason"], "invalid_recipient");
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM messages WHERE state <> 'rejected'"
        )
        .await,
        0
    );
    t.stop().await;
}

#[tokio::test]
async fn a_template_without_a_name_is_refused() {
    let t = TestFleet::start().await;
    let (status, body) = t
        .send(json!({"to": "+447400123456", "record": {"type": "candidate", "id": "C-2"}, "template": {"language": "en_GB"}}), None)
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "missing_field");
    assert_eq!(body["field"], "template.name");
    t.stop().await;
}

#[tokio::test]
async fn malformed_json_is_a_400_and_writes_nothing() {
    let t = TestFleet::start().await;
    let res = t
        .http
        .post(format!("{}/v1/messages", t.fleet.ingest_url))
        .bearer_auth(&t.api_key)
        .header("content-type", "application/json")
        .body("{\"to\": \"+4474")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_json");
    assert_eq!(count(&t, "SELECT count(*) FROM messages").await, 0);
    t.stop().await;
}

#[tokio::test]
async fn a_request_without_a_valid_api_key_is_unauthorized() {
    let t = TestFleet::start().await;
    let res = t
        .http
        .post(format!("{}/v1/messages", t.fleet.ingest_url))
        .bearer_auth("wf_nope_nope")
        .json(&TestFleet::template_request("C-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(count(&t, "SELECT count(*) FROM messages").await, 0);
    t.stop().await;
}

#[tokio::test]
async fn a_bad_amqp_body_goes_to_the_rejected_queue_with_its_reason() {
    let t = TestFleet::start().await;
    let (conn, channel) = t.amqp_channel().await;
    t.publish_intake(b"{not json", None).await;

    let rejected = next_rejected(&t, &channel).await;
    assert_eq!(
        amqp::header_str(&rejected.delivery.properties, "x-wafleet-reason"),
        Some("invalid_json")
    );
    assert_eq!(rejected.delivery.data, b"{not json");
    assert_eq!(count(&t, "SELECT count(*) FROM messages").await, 0);
    let _ = conn.close(200, "done".into()).await;
    t.stop().await;
}

#[tokio::test]
async fn an_amqp_message_naming_a_record_files_its_rejection_in_that_history() {
    let t = TestFleet::start().await;
    let mut body = TestFleet::template_request("C-4");
    body["to"] = json!("+1");

    t.publish_intake(&serde_json::to_vec(&body).unwrap(), None)
        .await;

    let history =
        crate::round_trip::wait_for_history(&t, "C-4", |h| h["messages"][0]["state"] == "rejected")
            .await;
    assert_eq!(history["messages"][0]["reason"], "invalid_recipient");
    t.stop().await;
}

#[tokio::test]
async fn a_number_with_a_letter_or_an_extension_is_refused_and_never_rewritten() {
    let t = TestFleet::start().await;
    for (record, to) in [
        ("C-LET", "+44-7400-24011a"),
        ("C-EXT", "+44 7400 240110 ext"),
    ] {
        let mut request = TestFleet::template_request(record);
        request["to"] = json!(to);

        let (status, body) = t.send(request, None).await;

        assert_eq!(status, 422, "{to}: {body}");
        assert_eq!(body["code"], "invalid_recipient");
        assert_eq!(body["field"], "to");
    }
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM messages WHERE recipient IS NOT NULL"
        )
        .await,
        0,
        "no message to any number was stored"
    );
    t.stop().await;
}

#[tokio::test]
async fn an_oversize_body_is_a_413_problem_with_a_code() {
    let t = TestFleet::start().await;
    let mut request = TestFleet::template_request("C-BIG");
    request["merge_fields"]["KNOWNAS"] = json!("x".repeat(t.settings.ingest.max_body_bytes + 1));

    let res = t
        .http
        .post(format!("{}/v1/messages", t.fleet.ingest_url))
        .bearer_auth(&t.api_key)
        .json(&request)
        .send()
        .await
        .expect("ingest answers");

    assert_eq!(res.status(), 413);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "body_too_large");
    assert_eq!(count(&t, "SELECT count(*) FROM messages").await, 0);
    t.stop().await;
}

/// Publishes to intake with the given content type and message id, and returns the reason the
/// message was parked in `<p>.intake.rejected` with.
async fn rejected_reason(t: &TestFleet, content_type: &str, message_id: &str) -> String {
    let (conn, channel) = t.amqp_channel().await;
    let broker = t.broker().await;
    let publisher = amqp::Publisher::new(&broker);
    let mut headers = lapin::types::FieldTable::default();
    amqp::set_header(&mut headers, "tenant", &t.tenant_id.to_string());
    let body = serde_json::to_vec(&TestFleet::template_request("C-AMQP")).unwrap();
    publisher
        .publish(amqp::Outgoing {
            exchange: &t.topology().intake_exchange(),
            routing_key: "send",
            body: &body,
            properties: lapin::BasicProperties::default()
                .with_content_type(content_type.into())
                .with_message_id(message_id.into())
                .with_headers(headers),
            mandatory: true,
        })
        .await
        .expect("intake accepts the publish");
    let rejected = next_rejected(t, &channel).await;
    broker.close().await;
    let _ = conn.close(200, "done".into()).await;
    amqp::header_str(&rejected.delivery.properties, "x-wafleet-reason")
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_amqp_message_that_is_not_json_or_has_a_non_ascii_id_is_parked_with_its_reason() {
    let t = TestFleet::start().await;

    let not_json = rejected_reason(&t, "text/plain", "plain-1").await;
    let accented = rejected_reason(&t, "application/json", "clé-1").await;

    assert_eq!(not_json, "invalid_content_type");
    assert_eq!(accented, "invalid_field");
    assert_eq!(count(&t, "SELECT count(*) FROM messages").await, 0);
    t.stop().await;
}
