//! A consultant opens the chat: the candidate's messages are marked read here and, when asked,
//! Meta is sent the read receipt (blue ticks on the candidate's phone) with the typing
//! indicator, for the latest message the candidate wrote in that conversation.

use reqwest::Method;
use serde_json::json;
use wafleet_tests::{TestFleet, id_of};

/// A template to the candidate, their reply, and the id of the conversation they are in.
async fn a_conversation_with_a_reply(t: &TestFleet, record: &str) -> (String, String) {
    let (_, sent) = t.send(TestFleet::template_request(record), None).await;
    t.wait_for_state(&id_of(&sent), "read").await;
    let theirs = t.candidate_writes("Yes, I'm interested").await;
    let list = t
        .wait_for_get(
            &format!("/v1/records/candidate/{record}/conversations"),
            "the reply in the conversation",
            |l| l["conversations"][0]["unread"] == 1,
        )
        .await;
    let id = list["conversations"][0]["id"].as_str().unwrap().to_owned();
    (id, theirs)
}

#[tokio::test]
async fn opening_the_chat_sends_meta_a_read_receipt_with_typing_for_the_latest_reply() {
    let t = TestFleet::start().await;
    let (conversation, theirs) = a_conversation_with_a_reply(&t, "C-RR1").await;

    let (status, read) = t
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            json!({"receipt": true, "typing": true}),
        )
        .await;

    assert_eq!(status, 200, "{read}");
    assert_eq!(read["marked"], 1);
    assert_eq!(read["receipt_for"], theirs.as_str());
    assert!(read["receipt_error"].is_null(), "{read}");
    let (_, receipts) = t.sim_get("/_sim/receipts").await;
    assert_eq!(
        receipts,
        json!([{"phone_number_id": t.phone_number_id, "message_id": theirs, "typing": true}])
    );
    let (_, list) = t.get("/v1/records/candidate/C-RR1/conversations").await;
    assert_eq!(list["conversations"][0]["unread"], 0);
    t.stop().await;
}

#[tokio::test]
async fn marking_read_without_a_receipt_tells_meta_nothing_and_typing_needs_a_receipt() {
    let t = TestFleet::start().await;
    let (conversation, _) = a_conversation_with_a_reply(&t, "C-RR2").await;

    let (typing_only, problem) = t
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            json!({"typing": true}),
        )
        .await;
    let (quiet, read) = t
        .admin(
            Method::POST,
            &format!("/v1/conversations/{conversation}/read"),
            None,
        )
        .await;

    assert_eq!(
        (typing_only.as_u16(), problem["field"].as_str()),
        (422, Some("typing"))
    );
    assert_eq!(quiet, 200, "{read}");
    assert_eq!(read["marked"], 1);
    assert!(read["receipt_for"].is_null());
    let (_, receipts) = t.sim_get("/_sim/receipts").await;
    assert_eq!(receipts, json!([]));
    t.stop().await;
}
