//! Senders through the HTTP API and the simulator: added from the WABA's numbers, verified by
//! OTP (request_code, then verify_code), rejected for good after three wrong codes, capped at 20,
//! and kept in step with Meta's quality and throughput.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::TestFleet;

async fn add(t: &TestFleet, phone: &str) -> (reqwest::StatusCode, Value) {
    t.admin(
        Method::POST,
        "/v1/senders",
        Some(json!({"phone": phone, "friendly_name": "Recruiting desk"})),
    )
    .await
}

async fn revealed_code(t: &TestFleet, phone_number_id: &str) -> Value {
    t.sim_get(&format!("/_sim/numbers/{phone_number_id}/code"))
        .await
        .1
}

#[tokio::test]
async fn a_number_meta_already_verified_is_approved_at_once() {
    // Arrange
    let t = TestFleet::start().await;
    t.sim_number("+442071838801", true).await;

    // Act
    let (status, sender) = add(&t, "+442071838801").await;

    // Assert
    assert_eq!(status, 201, "{sender}");
    assert_eq!(sender["status"], "approved");
    assert_eq!(sender["display_name"], "Acme Test");
    assert_eq!(sender["friendly_name"], "Recruiting desk");
    assert_eq!(sender["quality_rating"], "GREEN");
    assert_eq!(sender["throughput_mps"], 80);
    let (_, list) = t.get("/v1/senders").await;
    assert_eq!(list["senders"].as_array().unwrap().len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn a_new_number_is_pending_until_the_otp_meta_sent_is_verified() {
    // Arrange
    let t = TestFleet::start().await;
    let pnid = t.sim_number("+442071838802", false).await;
    let (_, sender) = add(&t, "+442071838802").await;
    let id = sender["id"].as_str().unwrap().to_owned();

    // Act
    let (early, early_problem) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/verify_code"),
            Some(json!({"code": "123456"})),
        )
        .await;
    let (requested, after_request) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/request_code"),
            Some(json!({"code_method": "SMS"})),
        )
        .await;
    let code = revealed_code(&t, &pnid).await;
    let wrong = if code["code"] == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (bad, bad_problem) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/verify_code"),
            Some(json!({"code": wrong})),
        )
        .await;
    let (ok, verified) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/verify_code"),
            Some(json!({"code": code["code"]})),
        )
        .await;

    // Assert
    assert_eq!(sender["status"], "pending");
    assert_eq!(early, 409);
    assert_eq!(early_problem["code"], "code_not_requested");
    assert_eq!(requested, 200, "{after_request}");
    assert_eq!(after_request["code_method"], "SMS");
    assert_eq!(code["code_method"], "SMS");
    assert_eq!(bad, 422);
    assert_eq!(bad_problem["code"], "wrong_code");
    assert!(
        bad_problem["detail"]
            .as_str()
            .unwrap()
            .contains("2 attempt(s) left")
    );
    assert_eq!(ok, 200, "{verified}");
    assert_eq!(verified["status"], "approved");
    t.stop().await;
}

#[tokio::test]
async fn three_wrong_codes_reject_the_sender_for_good_and_the_number_can_be_added_again() {
    // Arrange
    let t = TestFleet::start().await;
    let pnid = t.sim_number("+442071838803", false).await;
    let (_, sender) = add(&t, "+442071838803").await;
    let id = sender["id"].as_str().unwrap().to_owned();
    t.admin(
        Method::POST,
        &format!("/v1/senders/{id}/request_code"),
        Some(json!({"code_method": "VOICE", "language": "en_GB"})),
    )
    .await;
    let code = revealed_code(&t, &pnid).await;
    let wrong = if code["code"] == "000000" {
        "111111"
    } else {
        "000000"
    };

    // Act
    let mut last = json!(null);
    for _ in 0..3 {
        last = t
            .admin(
                Method::POST,
                &format!("/v1/senders/{id}/verify_code"),
                Some(json!({"code": wrong})),
            )
            .await
            .1;
    }
    let (_, after) = t.get(&format!("/v1/senders/{id}")).await;
    let (again, again_problem) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/request_code"),
            Some(json!({"code_method": "SMS"})),
        )
        .await;
    let (readded, fresh) = add(&t, "+442071838803").await;

    // Assert
    assert_eq!(last["code"], "sender_rejected");
    assert_eq!(after["status"], "rejected");
    assert_eq!(again, 409);
    assert_eq!(again_problem["code"], "sender_not_pending");
    assert_eq!(readded, 201, "{fresh}");
    assert_eq!(fresh["status"], "pending");
    assert_ne!(fresh["id"], sender["id"]);
    t.stop().await;
}

#[tokio::test]
async fn refusals_name_the_problem() {
    // Arrange
    let t = TestFleet::start().await;

    // Act
    let (bad_phone, bad_phone_problem) = add(&t, "020 7183 8750").await;
    let (unknown, unknown_problem) = add(&t, "+442071838899").await;
    let (duplicate, duplicate_problem) = add(&t, wafleet_tests::SENDER_PHONE).await;
    let (_, list) = t.get("/v1/senders").await;
    let id = list["senders"][0]["id"].as_str().unwrap().to_owned();
    let (method, method_problem) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/request_code"),
            Some(json!({"code_method": "FAX"})),
        )
        .await;
    let (not_pending, _) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{id}/request_code"),
            Some(json!({"code_method": "SMS"})),
        )
        .await;

    // Assert
    assert_eq!(
        (bad_phone, &bad_phone_problem["field"]),
        (reqwest::StatusCode::UNPROCESSABLE_ENTITY, &json!("phone"))
    );
    assert_eq!(unknown, 422);
    assert_eq!(unknown_problem["code"], "sender_not_in_waba");
    assert_eq!(duplicate, 409);
    assert_eq!(duplicate_problem["code"], "sender_exists");
    assert_eq!(method, 422);
    assert_eq!(method_problem["field"], "code_method");
    assert_eq!(not_pending, 409);
    t.stop().await;
}

#[tokio::test]
async fn the_twenty_first_sender_is_refused() {
    // Arrange: the tenant has one sender; nineteen more make twenty.
    let t = TestFleet::start().await;
    for i in 10..29 {
        let phone = format!("+4420718388{i}");
        t.sim_number(&phone, true).await;
        let (status, body) = add(&t, &phone).await;
        assert_eq!(status, 201, "{phone}: {body}");
    }
    t.sim_number("+442071838830", true).await;

    // Act
    let (status, problem) = add(&t, "+442071838830").await;

    // Assert
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "sender_limit_reached");
    let (_, list) = t.get("/v1/senders").await;
    assert_eq!(list["senders"].as_array().unwrap().len(), 20);
    t.stop().await;
}

#[tokio::test]
async fn only_an_admin_edits_a_sender_and_a_users_sender_is_not_the_company_default() {
    // Arrange
    let t = TestFleet::start().await;
    let (_, key) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "sender"})),
        )
        .await;
    let sender_key = key["key"].as_str().unwrap();
    let (_, list) = t.get("/v1/senders").await;
    let id = list["senders"][0]["id"].as_str().unwrap().to_owned();

    // Act
    let (refused, _) = t
        .call(
            Method::PATCH,
            &format!("/v1/senders/{id}"),
            Some(sender_key),
            Some(json!({"friendly_name": "Mine"})),
        )
        .await;
    let (renamed, sender) = t
        .admin(
            Method::PATCH,
            &format!("/v1/senders/{id}"),
            Some(json!({"friendly_name": "London desk", "owner_user_id": "u-42"})),
        )
        .await;

    // Assert
    assert_eq!(refused, 403);
    assert_eq!(renamed, 200, "{sender}");
    assert_eq!(sender["friendly_name"], "London desk");
    assert_eq!(sender["owner_user_id"], "u-42");
    assert_eq!(sender["is_company_default"], false);
    let (_, settings) = t.get("/v1/settings").await;
    assert_eq!(settings["default_sender_id"], json!(null));
    t.stop().await;
}

#[tokio::test]
async fn quality_and_throughput_follow_graph_on_sync() {
    // Arrange
    let t = TestFleet::start().await;
    t.sim(
        Method::POST,
        "/_sim/numbers",
        json!({"phone_number_id": t.phone_number_id, "waba_id": t.waba_id,
               "display_phone_number": wafleet_tests::SENDER_PHONE, "quality_rating": "YELLOW", "mps": 1000}),
    )
    .await;

    // Act
    let (status, synced) = t.admin(Method::POST, "/v1/senders/sync", None).await;

    // Assert
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["updated"], 1);
    let (_, list) = t.get("/v1/senders").await;
    assert_eq!(list["senders"][0]["quality_rating"], "YELLOW");
    assert_eq!(list["senders"][0]["throughput_mps"], 1000);
    t.stop().await;
}
