//! A message's whole life: intake (HTTP or AMQP) → dispatch → Meta → status webhooks → history.

use serde_json::json;
use wafleet_tests::{CANDIDATE, TestFleet};

#[tokio::test]
async fn an_http_template_send_reaches_meta_and_comes_back_read_in_history() {
    let t = TestFleet::start().await;

    let (status, body) = t.send(TestFleet::template_request("C-100"), None).await;

    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    let id = body["id"].as_str().expect("id").to_owned();
    let message = t.wait_for_state(&id, "read").await;
    assert!(
        message["wamid"]
            .as_str()
            .is_some_and(|w| w.starts_with("wamid."))
    );
    assert_eq!(message["pricing_category"], "utility");
    let trail: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    // Meta's statuses may be applied out of order; `delivered` is then skipped (read implies it),
    // but every step is recorded once and the trail never goes backwards.
    assert_eq!(&trail[..3], ["accepted", "dispatching", "sent"]);
    assert_eq!(trail.last(), Some(&"read"));
    assert!(
        trail == ["accepted", "dispatching", "sent", "delivered", "read"]
            || trail == ["accepted", "dispatching", "sent", "read"],
        "{trail:?}"
    );
    let sends = t.sends_for(&id).await;
    assert_eq!(sends.len(), 1, "Meta got exactly one request");
    assert_eq!(sends[0].to, CANDIDATE);
    assert_eq!(sends[0].template_name.as_deref(), Some("job_opportunity"));

    let (_, history) = t.get("/v1/records/candidate/C-100/messages").await;
    assert_eq!(history["messages"][0]["id"], id.as_str());
    assert_eq!(history["messages"][0]["state"], "read");
    t.stop().await;
}

#[tokio::test]
async fn an_amqp_intake_send_reaches_meta_and_comes_back_read() {
    let t = TestFleet::start().await;
    let mut body = TestFleet::template_request("C-200");
    body["kind"] = json!("single");
    t.publish_intake(&serde_json::to_vec(&body).unwrap(), Some("upstream-key-1"))
        .await;

    let history = wait_for_history(&t, "C-200", |h| h["messages"][0]["state"] == "read").await;
    let id = history["messages"][0]["id"].as_str().unwrap();
    assert_eq!(t.sends_for(id).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_candidate_reply_lands_in_their_history_and_opens_the_window_for_text() {
    let t = TestFleet::start().await;
    let (_, sent) = t.send(TestFleet::template_request("C-300"), None).await;
    t.wait_for_state(sent["id"].as_str().unwrap(), "read").await;

    t.sim(
        reqwest::Method::POST,
        "/_sim/inbound",
        json!({
            "phone_number_id": t.phone_number_id, "from": CANDIDATE, "text": "Yes please, call me",
        }),
    )
    .await;
    let history = wait_for_history(&t, "C-300", |h| h["messages"][0]["direction"] == "in").await;
    assert_eq!(
        history["messages"][0]["content"]["text"]["body"],
        "Yes please, call me"
    );
    assert_eq!(history["messages"][0]["state"], "received");

    let (status, reply) = t
        .send(json!({"to": CANDIDATE, "record": {"type": "candidate", "id": "C-300"}, "text": "Calling you at 10"}), None)
        .await;
    assert_eq!(status, 202);
    t.wait_for_state(reply["id"].as_str().unwrap(), "read")
        .await;
    t.stop().await;
}

#[tokio::test]
async fn replaying_an_idempotency_key_returns_the_original_message_and_a_different_body_is_409() {
    let t = TestFleet::start().await;
    let request = TestFleet::template_request("C-400");

    let (first_status, first) = t.send(request.clone(), Some("key-1")).await;
    let (again_status, again) = t.send(request.clone(), Some("key-1")).await;
    let mut changed = request;
    changed["merge_fields"]["KNOWNAS"] = json!("Someone else");
    let (conflict_status, conflict) = t.send(changed, Some("key-1")).await;

    assert_eq!(first_status, 202);
    assert_eq!(again_status, 202);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(conflict_status, 409);
    assert_eq!(conflict["code"], "idempotency_conflict");
    t.wait_for_state(first["id"].as_str().unwrap(), "read")
        .await;
    let (_, history) = t.get("/v1/records/candidate/C-400/messages").await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        1,
        "one message, not two"
    );
    assert_eq!(t.sends_for(first["id"].as_str().unwrap()).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn history_pages_newest_first_with_a_cursor() {
    let t = TestFleet::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, b) = t.send(TestFleet::template_request("C-500"), None).await;
        ids.push(b["id"].as_str().unwrap().to_owned());
    }

    let (_, page1) = t.get("/v1/records/candidate/C-500/messages?limit=2").await;
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, page2) = t
        .get(&format!(
            "/v1/records/candidate/C-500/messages?limit=2&cursor={cursor}"
        ))
        .await;

    let seen: Vec<&str> = page1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["messages"].as_array().unwrap())
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert!(page2["next_cursor"].is_null());
    t.stop().await;
}

pub async fn wait_for_history(
    t: &TestFleet,
    record: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, h) = t
            .get(&format!("/v1/records/candidate/{record}/messages"))
            .await;
        if done(&h) {
            return h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out; history is {h:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
