//! A number's lifecycle after onboarding: a send from a number that is not registered is held
//! (`deferred: sender_not_registered`), before Meta when we know it and after Meta's `133010`
//! when Meta tells us, and goes out once the number is registered; a display name goes to
//! Meta's review and is shown once approved (`phone_number_name_update`); removing a sender
//! deregisters it at Meta, keeps its history and frees its place among the 20.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::{TestFleet, fast_release, id_of, sent_or_later};

fn template_from(sender: &str, record: &str) -> Value {
    let mut body = TestFleet::template_request(record);
    body["sender"] = json!(sender);
    body
}

async fn sender_with(t: &TestFleet, phone_number_id: &str) -> Value {
    let (_, list) = t.get("/v1/senders").await;
    list["senders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phone_number_id"] == phone_number_id && s["status"] != "removed")
        .cloned()
        .unwrap_or_else(|| panic!("no sender {phone_number_id} in {list:#}"))
}

#[tokio::test]
async fn a_send_from_a_number_never_registered_is_held_before_meta_and_goes_out_once_registered() {
    // Arrange: a verified number of the WABA that was never registered for Cloud API.
    let t = TestFleet::start_with(fast_release).await;
    let pnid = t.sim_number("+442071838861", true).await;
    t.sim(
        Method::POST,
        &format!("/_sim/numbers/{pnid}/unregistered"),
        json!({}),
    )
    .await;
    let (added, sender) = t
        .admin(
            Method::POST,
            "/v1/senders",
            Some(json!({"phone": "+442071838861"})),
        )
        .await;
    assert_eq!(added, 201, "{sender}");
    assert_eq!(sender["registration"], "unregistered");

    // Act
    let (accepted, body) = t.send(template_from(&pnid, "CAND-UNREG-1"), None).await;
    assert_eq!(accepted, 202, "{body}");
    let id = id_of(&body);
    let held = t
        .wait_for_message(&id, "the hold", |m| m["state"] == "deferred")
        .await;
    let (registered, done) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{}/register", sender["id"].as_str().unwrap()),
            None,
        )
        .await;
    let sent = t.wait_for_message(&id, "the send", sent_or_later).await;

    // Assert: held (not failed) without a call to Meta, then sent once registered.
    assert_eq!(held["reason"], "sender_not_registered", "{held}");
    assert!(held["not_before"].is_string());
    assert_eq!(registered, 200, "{done}");
    assert_eq!(done["registration"], "registered");
    assert_eq!(
        done["pin"].as_str().map(str::len),
        Some(6),
        "a generated PIN, shown once"
    );
    let sends = t.sends_for(&id).await;
    assert_eq!(
        sends.len(),
        1,
        "Meta saw only the send after registration: {sends:?}"
    );
    assert_eq!(sends[0].error_code, None);
    assert!(sent_or_later(&sent));
    t.stop().await;
}

#[tokio::test]
async fn metas_133010_holds_the_message_and_marks_the_sender_so_its_next_send_waits_before_meta() {
    // Arrange: a sender we take as registered, which Meta has not registered.
    let t = TestFleet::start_with(fast_release).await;
    let pnid = t.add_sender(5, "+442071838862").await;
    t.sim(
        Method::POST,
        &format!("/_sim/numbers/{pnid}/unregistered"),
        json!({}),
    )
    .await;

    // Act
    let (_, first) = t.send(template_from(&pnid, "CAND-133010-1"), None).await;
    let first = id_of(&first);
    let held = t
        .wait_for_message(&first, "the hold", |m| m["state"] == "deferred")
        .await;
    let (_, second) = t.send(template_from(&pnid, "CAND-133010-2"), None).await;
    let second = id_of(&second);
    let second_held = t
        .wait_for_message(&second, "the second hold", |m| m["state"] == "deferred")
        .await;

    // Assert: Meta's error is on the trail, the message is held (never failed), the sender
    // is now known as not registered and its next message never reached Meta.
    assert_eq!(held["reason"], "sender_not_registered", "{held}");
    let codes: Vec<&Value> = held["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["detail"]["code"])
        .collect();
    assert!(codes.contains(&&json!(133010)), "{held:#}");
    assert_eq!(t.sends_for(&first).await[0].error_code, Some(133010));
    assert_eq!(sender_with(&t, &pnid).await["registration"], "unregistered");
    assert_eq!(second_held["reason"], "sender_not_registered");
    assert!(t.sends_for(&second).await.is_empty());
    t.stop().await;
}

#[tokio::test]
async fn a_display_name_goes_to_metas_review_and_is_shown_once_approved() {
    // Arrange
    let t = TestFleet::start().await;
    let sender = sender_with(&t, &t.phone_number_id).await;
    let path = format!("/v1/senders/{}", sender["id"].as_str().unwrap());

    // Act
    let (patched, pending) = t
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"display_name": "Acme Careers"})),
        )
        .await;
    let (_, at_meta) = t.graph(Method::GET, &t.phone_number_id, json!({})).await;
    t.sim(
        Method::POST,
        &format!("/_sim/numbers/{}/name_review", t.phone_number_id),
        json!({"decision": "APPROVED"}),
    )
    .await;
    let approved = t
        .wait_for_get(&path, "the approved name", |s| {
            s["display_name"] == "Acme Careers"
        })
        .await;

    // Assert: pending at Meta and here until Meta's webhook approved it.
    assert_eq!(patched, 200, "{pending}");
    assert_eq!(pending["display_name"], "Acme Test");
    assert_eq!(pending["new_display_name"], "Acme Careers");
    assert_eq!(pending["new_name_status"], "PENDING_REVIEW");
    assert_eq!(at_meta["new_display_name"], "Acme Careers");
    assert_eq!(at_meta["new_name_status"], "PENDING_REVIEW");
    assert_eq!(approved["name_status"], "APPROVED");
    assert!(approved["new_display_name"].is_null() && approved["new_name_status"].is_null());
    t.stop().await;
}

#[tokio::test]
async fn removing_a_sender_deregisters_it_at_meta_keeps_its_history_and_frees_its_place() {
    // Arrange: twenty senders, one of which has sent a message.
    let t = TestFleet::start().await;
    for i in 10..29 {
        let phone = format!("+4420718388{i}");
        t.sim_number(&phone, true).await;
        let (status, body) = t
            .admin(Method::POST, "/v1/senders", Some(json!({"phone": phone})))
            .await;
        assert_eq!(status, 201, "{phone}: {body}");
    }
    let leaving = sender_with(&t, &t.sim_number("+442071838810", true).await).await;
    let leaving_pnid = leaving["phone_number_id"].as_str().unwrap().to_owned();
    let (_, sent) = t
        .send(template_from(&leaving_pnid, "CAND-REMOVED-1"), None)
        .await;
    let sent = id_of(&sent);
    t.wait_for_message(&sent, "the send", sent_or_later).await;
    t.sim_number("+442071838830", true).await;
    let (full, _) = t
        .admin(
            Method::POST,
            "/v1/senders",
            Some(json!({"phone": "+442071838830"})),
        )
        .await;

    // Act
    let (removed, view) = t
        .admin(
            Method::DELETE,
            &format!("/v1/senders/{}", leaving["id"].as_str().unwrap()),
            None,
        )
        .await;
    let (added, _) = t
        .admin(
            Method::POST,
            "/v1/senders",
            Some(json!({"phone": "+442071838830"})),
        )
        .await;
    let (_, at_meta) = t.graph(Method::GET, &leaving_pnid, json!({})).await;
    let (_, history) = t.get(&format!("/v1/messages/{sent}")).await;
    let (refused, problem) = t
        .send(template_from(&leaving_pnid, "CAND-REMOVED-2"), None)
        .await;

    // Assert
    assert_eq!(full, 422, "the 21st is refused while twenty are live");
    assert_eq!(removed, 200, "{view}");
    assert_eq!(view["status"], "removed");
    assert!(view["removed_at"].is_string());
    assert_eq!(added, 201, "the freed place takes a new number");
    assert_eq!(at_meta["status"], "DISCONNECTED", "deregistered at Meta");
    assert_eq!(
        history["sender"],
        leaving_pnid.as_str(),
        "its history stays"
    );
    assert!(sent_or_later(&history));
    assert_eq!(refused, 422);
    assert_eq!(problem["code"], "sender_not_approved");
    t.stop().await;
}
