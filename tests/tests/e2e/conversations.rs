//! Conversations for the ATS screens (issue 16 item 1): a record's conversation table, the
//! chat window, the read marker, the record a reply is filed under when records share a
//! number, and the sticky sender.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::{CANDIDATE, TestFleet, id_of, sent_or_later};

/// A second sender owned by consultant `user`; returns its phone number id.
async fn consultant_sender(t: &TestFleet, suffix: u8, phone: &str, user: &str) -> String {
    let number = t.add_sender(suffix, phone).await;
    sqlx::query("UPDATE senders SET owner_user_id = $2 WHERE phone_number_id = $1")
        .bind(&number)
        .bind(user)
        .execute(&t.pool)
        .await
        .expect("owner");
    number
}

/// A template to `to` for `record`, from `sender` (or as the rules pick) for `user`.
fn template(to: &str, record: &str, user: Option<&str>, sender: Option<&str>) -> Value {
    let mut body = TestFleet::template_request(record);
    body["to"] = json!(to);
    if let Some(user) = user {
        body["user_id"] = json!(user);
    }
    if let Some(sender) = sender {
        body["sender"] = json!(sender);
    }
    body
}

/// Sends and waits until Meta has it; returns the message.
async fn sent(t: &TestFleet, body: Value) -> Value {
    let (status, reply) = t.send(body, None).await;
    assert_eq!(status, 202, "{reply}");
    t.wait_for_message(&id_of(&reply), "sent", sent_or_later)
        .await
}

/// The candidate writes `text` to `number` (through the simulator, as Meta would post it).
async fn candidate_writes(t: &TestFleet, from: &str, number: &str, text: &str) {
    t.sim(
        Method::POST,
        "/_sim/inbound",
        json!({"phone_number_id": number, "from": from, "text": text}),
    )
    .await;
}

async fn conversations(t: &TestFleet, record: &str) -> Vec<Value> {
    let (status, body) = t
        .get(&format!("/v1/records/candidate/{record}/conversations"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["conversations"].as_array().unwrap().clone()
}

#[tokio::test]
async fn two_consultants_see_two_conversations_and_the_reply_under_the_one_it_answers() {
    // Arrange: Alice and Bob each message the candidate from their own number.
    let t = TestFleet::start().await;
    let alice = consultant_sender(&t, 41, "+442071838741", "alice").await;
    let bob = consultant_sender(&t, 42, "+442071838742", "bob").await;
    sent(&t, template(CANDIDATE, "C-1", Some("alice"), None)).await;
    sent(&t, template(CANDIDATE, "C-1", Some("bob"), None)).await;

    // Act: the candidate answers Alice.
    candidate_writes(&t, CANDIDATE, &alice, "Yes, I'm interested").await;
    let path = "/v1/records/candidate/C-1/conversations";
    let list = t
        .wait_for_get(path, "the reply in Alice's conversation", |v| {
            v["conversations"][0]["unread"] == 1
        })
        .await;

    // Assert: two conversations, Alice's first (latest activity), open and unread.
    let list = list["conversations"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    let (a, b) = (&list[0], &list[1]);
    assert_eq!(a["sender"], alice);
    assert_eq!(a["contact"], CANDIDATE);
    assert_eq!(a["users"], json!(["alice"]));
    assert_eq!(a["records"], json!([{"type": "candidate", "id": "C-1"}]));
    assert_eq!(a["last_message"]["direction"], "in");
    assert_eq!(a["last_message"]["type"], "text");
    assert_eq!(a["service_window"]["state"], "open");
    assert!(a["service_window"]["open_until"].is_string());
    assert_eq!(a["template_required"], false);
    assert_eq!(b["sender"], bob);
    assert_eq!(b["users"], json!(["bob"]));
    assert_eq!(b["unread"], 0);
    assert_eq!(b["last_message"]["direction"], "out");
    assert_eq!(b["service_window"]["state"], "closed");
    assert_eq!(b["service_window"]["open_until"], Value::Null);
    assert_eq!(b["template_required"], true);

    // The chat window: both directions, newest first, the reply filed under C-1.
    let (status, chat) = t
        .get(&format!(
            "/v1/conversations/{}/messages",
            a["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{chat}");
    let messages = chat["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["direction"], "in");
    assert_eq!(messages[0]["record_id"], "C-1");
    assert_eq!(messages[0]["conversation_id"], a["id"]);
    assert_eq!(messages[1]["user_id"], "alice");

    // Marking it read empties the unread count, and says how many it marked.
    let read = format!("/v1/conversations/{}/read", a["id"].as_str().unwrap());
    let (status, marked) = t.admin(Method::POST, &read, None).await;
    assert_eq!(status, 200, "{marked}");
    assert_eq!(marked["marked"], 1);
    assert_eq!(conversations(&t, "C-1").await[0]["unread"], 0);
    let (_, again) = t.admin(Method::POST, &read, None).await;
    assert_eq!(again["marked"], 0);
    t.stop().await;
}

#[tokio::test]
async fn a_reply_follows_the_chat_it_was_written_in_when_records_share_a_number() {
    // Arrange: one phone number, two records: C-A messaged from the company's number, then
    // C-B (later) from a second number; a third number never wrote to them.
    let t = TestFleet::start().await;
    let company = t.phone_number_id.clone();
    let second = t.add_sender(51, "+442071838751").await;
    let third = t.add_sender(52, "+442071838752").await;
    sent(&t, template(CANDIDATE, "C-A", None, Some(&company))).await;
    sent(&t, template(CANDIDATE, "C-B", None, Some(&second))).await;

    // Act: the person answers in each chat, and writes to the third number too.
    candidate_writes(&t, CANDIDATE, &company, "about the first role").await;
    candidate_writes(&t, CANDIDATE, &second, "about the second role").await;
    candidate_writes(&t, CANDIDATE, &third, "a new chat").await;
    t.wait_for_count(
        "SELECT count(*) FROM messages WHERE direction = 'in' AND record_id IS NOT NULL",
        3,
    )
    .await;

    // Assert: each reply under the record of its chat; the new chat under the latest record.
    let filed = |record: &'static str| {
        let t = &t;
        async move {
            let (_, h) = t
                .get(&format!("/v1/records/candidate/{record}/messages"))
                .await;
            let mut texts: Vec<String> = h["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "in")
                .map(|m| m["content"]["text"]["body"].as_str().unwrap().to_owned())
                .collect();
            texts.sort();
            texts
        }
    };
    assert_eq!(filed("C-A").await, ["about the first role"]);
    assert_eq!(filed("C-B").await, ["a new chat", "about the second role"]);
    let a = conversations(&t, "C-A").await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["sender"], company);
    // The shared number's chat from the company lists the records filed in it.
    assert_eq!(a[0]["records"], json!([{"type": "candidate", "id": "C-A"}]));
    assert_eq!(conversations(&t, "C-B").await.len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn a_reply_without_a_sender_goes_out_from_the_number_the_candidate_wrote_to() {
    // Arrange: Alice and Bob have their own numbers; the candidate wrote to the company's.
    let t = TestFleet::start().await;
    let alice = consultant_sender(&t, 61, "+442071838761", "alice").await;
    let bob = consultant_sender(&t, 62, "+442071838762", "bob").await;
    candidate_writes(
        &t,
        CANDIDATE,
        &t.phone_number_id,
        "Hello, is the job still open?",
    )
    .await;
    t.wait_for_count("SELECT count(*) FROM service_windows", 1)
        .await;

    // Act: Alice answers in free text, naming no sender.
    let reply = json!({"to": CANDIDATE, "record": {"type": "candidate", "id": "C-S"},
                       "user_id": "alice", "text": "Yes it is! Can we talk tomorrow?"});
    let answered = sent(&t, reply).await;

    // Assert: it went out from the company's number, inside that window (so Meta took it).
    assert_eq!(answered["sender"], t.phone_number_id);
    // Another candidate, with no open window: Alice's own number, as before.
    let other = sent(&t, template("+447400123999", "C-T", Some("alice"), None)).await;
    assert_eq!(other["sender"], alice);
    // A window open on Alice's own number is never Bob's way out: Bob uses his.
    candidate_writes(&t, "+447400123888", &alice, "Hi Alice").await;
    t.wait_for_count("SELECT count(*) FROM service_windows", 2)
        .await;
    let bobs = sent(&t, template("+447400123888", "C-U", Some("bob"), None)).await;
    assert_eq!(bobs["sender"], bob);
    t.stop().await;
}

#[tokio::test]
async fn conversations_refuse_bad_input_other_tenants_and_readers_that_write() {
    // Arrange: a conversation of ours, another tenant and a reader key.
    let t = TestFleet::start().await;
    sent(&t, TestFleet::template_request("C-9")).await;
    let id = conversations(&t, "C-9").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = t.other_tenant("Other", "+442071830001").await;
    let (_, reader) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "reader"})),
        )
        .await;
    let reader = reader["key"].as_str().unwrap().to_owned();
    let messages = format!("/v1/conversations/{id}/messages");
    let read = format!("/v1/conversations/{id}/read");

    // Act and assert: another tenant's key finds nothing.
    let theirs = Some(other.api_key.as_str());
    let (status, body) = t.call(Method::GET, &messages, theirs, None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(t.call(Method::POST, &read, theirs, None).await.0, 404);
    let (_, list) = t
        .call(
            Method::GET,
            "/v1/records/candidate/C-9/conversations",
            theirs,
            None,
        )
        .await;
    assert_eq!(list["conversations"], json!([]));
    // Bad input: a 4xx problem naming the field.
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
        ("?cursor=nope", "cursor"),
    ] {
        let (status, body) = t.get(&format!("{messages}{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field);
    }
    assert_eq!(t.get("/v1/conversations/not-an-id/messages").await.0, 404);
    assert_eq!(t.get("/v1/records/robot/C-9/conversations").await.0, 404);
    // A reader reads but does not mark read.
    assert_eq!(
        t.call(Method::GET, &messages, Some(&reader), None).await.0,
        200
    );
    assert_eq!(
        t.call(Method::POST, &read, Some(&reader), None).await.0,
        403
    );
    // Paging: one message a page, then the end.
    let (_, page) = t.get(&format!("{messages}?limit=1")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_cursor"], Value::Null);
    t.stop().await;
}
