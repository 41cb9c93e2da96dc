//! Phone number verification: `request_code` sends a code the control API reveals, and
//! `verify_code` accepts only that code, in Meta's shapes.

mod common;

use axum::http::StatusCode;
use common::{NUMBER, TestSim, WABA};
use reqwest::Method;
use serde_json::{Value, json};

async fn post(sim: &TestSim, path: &str, body: Value) -> (StatusCode, Value) {
    let response = sim
        .client
        .post(format!("{}/v24.0/{NUMBER}/{path}", sim.base))
        .bearer_auth("test-token")
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_unverified_number_is_verified_with_the_code_meta_sent() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::POST,
        &format!("/_sim/numbers/{NUMBER}/unverified"),
        json!({}),
    )
    .await;

    // Act
    let (requested, ok) = post(
        &sim,
        "request_code",
        json!({"code_method": "VOICE", "language": "en_US"}),
    )
    .await;
    let code = sim.get(&format!("/_sim/numbers/{NUMBER}/code")).await;
    let listed_before = sim.get(&format!("/v24.0/{WABA}/phone_numbers")).await;
    let (wrong, error) = post(&sim, "verify_code", json!({"code": "not-it"})).await;
    let (verified, done) = post(&sim, "verify_code", json!({"code": code["code"]})).await;
    let listed_after = sim.get(&format!("/v24.0/{WABA}/phone_numbers")).await;

    // Assert
    assert_eq!((requested, ok), (StatusCode::OK, json!({"success": true})));
    assert_eq!(code["code_method"], "VOICE");
    assert_eq!(code["code"].as_str().unwrap().len(), 6);
    assert_eq!(
        listed_before["data"][0]["code_verification_status"],
        "NOT_VERIFIED"
    );
    assert_eq!(wrong, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], 136025);
    assert_eq!((verified, done), (StatusCode::OK, json!({"success": true})));
    assert_eq!(
        listed_after["data"][0]["code_verification_status"],
        "VERIFIED"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_code_method_other_than_sms_or_voice_is_refused_with_code_100() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    let (status, error) = post(
        &sim,
        "request_code",
        json!({"code_method": "FAX", "language": "en_US"}),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], 100);
    sim.stop().await;
}
