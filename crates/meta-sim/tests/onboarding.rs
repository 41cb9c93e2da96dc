//! Onboarding as Meta runs it: the Embedded Signup code exchange (`GET /oauth/access_token`),
//! `subscribed_apps` gating webhooks, `register` with a two-step PIN (`133010` before it),
//! `deregister`, display-name review with its `phone_number_name_update` webhook, and revoked
//! tokens (`190`). The facts each test checks are Meta's, as its developer pages state them.

mod common;

use axum::http::StatusCode;
use common::{Receiver, SECRET, TestSim, template_send};
use reqwest::Method;
use serde_json::{Value, json};
use wafleet_meta_sim::DEFAULT_APP_ID;

const ES_WABA: &str = "waba-es";
const ES_NUMBER: &str = "pn-es";

/// The customer finishes Embedded Signup with one number; answers the browser's `code`.
async fn finish_signup(sim: &TestSim) -> String {
    let done = sim
        .control(
            Method::POST,
            "/_sim/embedded_signup",
            json!({"waba_id": ES_WABA, "numbers": [{"phone_number_id": ES_NUMBER,
                   "display_phone_number": "+1 555-010-0099", "verified_name": "Acme Jobs"}]}),
        )
        .await;
    assert_eq!(done["waba_id"], ES_WABA);
    assert_eq!(done["phone_number_id"], ES_NUMBER);
    done["code"].as_str().expect("a code").to_owned()
}

async fn exchange(sim: &TestSim, client_id: &str, secret: &str, code: &str) -> (StatusCode, Value) {
    let response = sim
        .client
        .get(format!(
            "{}/v24.0/oauth/access_token?client_id={client_id}&client_secret={secret}&code={code}",
            sim.base
        ))
        .send()
        .await
        .expect("exchange");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.json().await.expect("json"))
}

async fn graph(
    sim: &TestSim,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = sim
        .client
        .request(method, format!("{}/v24.0/{path}", sim.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("graph call");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `{method} /{ES_WABA}/subscribed_apps`.
async fn subscribed_apps(sim: &TestSim, method: Method) -> (StatusCode, Value) {
    graph(
        sim,
        method,
        &format!("{ES_WABA}/subscribed_apps"),
        "t",
        json!({}),
    )
    .await
}

/// The approved template `order_update` on the signup's WABA.
async fn add_template(sim: &TestSim) {
    sim.control(
        Method::POST,
        "/_sim/templates",
        json!({"waba_id": ES_WABA, "name": "order_update",
               "language": "en_US", "category": "UTILITY", "body_text": "Hi {{1}}"}),
    )
    .await;
}

/// `POST /{ES_NUMBER}/register` with `body`.
async fn register(sim: &TestSim, body: Value) -> (StatusCode, Value) {
    graph(
        sim,
        Method::POST,
        &format!("{ES_NUMBER}/register"),
        "t",
        body,
    )
    .await
}

fn register_body(pin: &str) -> Value {
    json!({"messaging_product": "whatsapp", "pin": pin})
}

#[tokio::test]
async fn the_signup_code_is_exchanged_once_for_a_business_token_with_the_apps_id_and_secret() {
    // Arrange
    let sim = TestSim::start(None).await;
    let code = finish_signup(&sim).await;

    // Act
    let wrong_app = exchange(&sim, "999", SECRET, &code).await;
    let wrong_secret = exchange(&sim, DEFAULT_APP_ID, "not-the-secret", &code).await;
    let wrong_code = exchange(&sim, DEFAULT_APP_ID, SECRET, "not-a-code").await;
    let (ok, token) = exchange(&sim, DEFAULT_APP_ID, SECRET, &code).await;
    let (again, used) = exchange(&sim, DEFAULT_APP_ID, SECRET, &code).await;

    // Assert: Graph's OAuth errors (no WhatsApp error_data), then the token, then "used".
    assert_eq!(wrong_app.0, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_app.1["error"]["code"], 101);
    assert_eq!(wrong_secret.1["error"]["code"], 1);
    assert_eq!(
        wrong_secret.1["error"]["message"],
        "Error validating client secret."
    );
    assert_eq!(wrong_code.1["error"]["code"], 100);
    assert_eq!(wrong_code.1["error"]["type"], "OAuthException");
    assert!(wrong_code.1["error"].get("error_data").is_none());
    assert_eq!(ok, StatusCode::OK, "{token}");
    assert!(token["access_token"].as_str().unwrap().starts_with("EAA"));
    assert_eq!(again, StatusCode::BAD_REQUEST);
    assert_eq!(used["error"]["code"], 100);
    assert_eq!(used["error"]["error_subcode"], 36009);
    sim.stop().await;
}

#[tokio::test]
async fn a_number_sends_only_once_registered_with_its_two_step_pin() {
    // Arrange
    let sim = TestSim::start(None).await;
    finish_signup(&sim).await;
    add_template(&sim).await;
    let send = template_send("+447400123456", "m-1", &["Anna"]);

    // Act
    let (before, not_registered) = sim.send(ES_NUMBER, send.clone()).await;
    let listed_before = sim.get(&format!("/v24.0/{ES_WABA}/phone_numbers")).await;
    let (bad_pin, _) = register(&sim, register_body("12ab")).await;
    let (no_product, _) = register(&sim, json!({"pin": "123456"})).await;
    let (registered, ok) = register(&sim, register_body("123456")).await;
    let (after, _) = sim.send(ES_NUMBER, send.clone()).await;
    let one = sim.get(&format!("/v24.0/{ES_NUMBER}")).await;
    let (deregistered, _) = graph(
        &sim,
        Method::POST,
        &format!("{ES_NUMBER}/deregister"),
        "t",
        json!({}),
    )
    .await;
    let (gone, _) = sim.send(ES_NUMBER, send).await;
    let listed_gone = sim.get(&format!("/v24.0/{ES_WABA}/phone_numbers")).await;
    let (other_pin, mismatch) = register(&sim, register_body("654321")).await;
    let (same_pin, _) = register(&sim, register_body("123456")).await;

    // Assert
    assert_eq!(before, StatusCode::BAD_REQUEST);
    assert_eq!(not_registered["error"]["code"], 133010);
    assert_eq!(listed_before["data"][0]["status"], "PENDING");
    assert_eq!(listed_before["data"][0]["platform_type"], "NOT_APPLICABLE");
    assert_eq!(
        (bad_pin, no_product),
        (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST)
    );
    assert_eq!((registered, ok), (StatusCode::OK, json!({"success": true})));
    assert_eq!(after, StatusCode::OK);
    assert_eq!(one["status"], "CONNECTED");
    assert_eq!(one["platform_type"], "CLOUD_API");
    assert_eq!(deregistered, StatusCode::OK);
    assert_eq!(gone, StatusCode::BAD_REQUEST);
    assert_eq!(listed_gone["data"][0]["status"], "DISCONNECTED");
    assert_eq!(other_pin, StatusCode::BAD_REQUEST);
    assert_eq!(mismatch["error"]["code"], 133005);
    assert_eq!(same_pin, StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn register_is_refused_with_133016_after_ten_calls_in_72_hours() {
    // Arrange
    let sim = TestSim::start(None).await;
    finish_signup(&sim).await;
    for _ in 0..10 {
        let (status, _) = register(&sim, register_body("123456")).await;
        assert_eq!(status, StatusCode::OK);
    }

    // Act
    let (status, error) = register(&sim, register_body("123456")).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], 133016);
    sim.stop().await;
}

#[tokio::test]
async fn webhooks_reach_only_a_waba_the_app_is_subscribed_to() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    finish_signup(&sim).await;
    add_template(&sim).await;
    register(&sim, register_body("123456")).await;
    let (_, listed_before) = subscribed_apps(&sim, Method::GET).await;

    // Act: a send while unsubscribed, then subscribe and send again.
    let (first, _) = sim
        .send(ES_NUMBER, template_send("+447400123456", "before", &["A"]))
        .await;
    let dropped = sim
        .wait_for_stats(|s| s["webhook_events_dropped"].as_u64() >= Some(3))
        .await;
    let (subscribed, ok) = subscribed_apps(&sim, Method::POST).await;
    let (_, listed) = subscribed_apps(&sim, Method::GET).await;
    sim.send(ES_NUMBER, template_send("+447400123456", "after", &["A"]))
        .await;
    let hooks = receiver.wait_for_statuses(3).await;

    // Assert
    assert_eq!(first, StatusCode::OK);
    assert_eq!(listed_before["data"], json!([]));
    assert_eq!(dropped["webhook_events_dropped"], 3, "{dropped}");
    assert_eq!((subscribed, ok), (StatusCode::OK, json!({"success": true})));
    assert_eq!(
        listed["data"][0]["whatsapp_business_api_data"]["id"],
        DEFAULT_APP_ID
    );
    let callbacks: Vec<Value> = hooks
        .iter()
        .flat_map(common::Hook::statuses)
        .map(|s| s["biz_opaque_callback_data"].clone())
        .collect();
    assert!(callbacks.iter().all(|c| c == "after"), "{callbacks:?}");
    sim.stop().await;
}

#[tokio::test]
async fn a_submitted_display_name_stays_pending_until_metas_review_is_sent_by_webhook() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;

    // Act
    let (submitted, _) = graph(
        &sim,
        Method::POST,
        common::NUMBER,
        "t",
        json!({"new_display_name": "Acme Careers"}),
    )
    .await;
    let pending = sim.get(&format!("/v24.0/{}", common::NUMBER)).await;
    sim.control(
        Method::POST,
        &format!("/_sim/numbers/{}/name_review", common::NUMBER),
        json!({"decision": "APPROVED"}),
    )
    .await;
    let hooks = receiver.wait_until(|h| !h.is_empty()).await;
    let approved = sim.get(&format!("/v24.0/{}", common::NUMBER)).await;

    // Assert
    assert_eq!(submitted, StatusCode::OK);
    assert_eq!(pending["new_display_name"], "Acme Careers");
    assert_eq!(pending["new_name_status"], "PENDING_REVIEW");
    assert_eq!(pending["verified_name"], "Acme");
    let change = &hooks[0].json["entry"][0]["changes"][0];
    assert_eq!(change["field"], "phone_number_name_update");
    assert_eq!(change["value"]["decision"], "APPROVED");
    assert_eq!(change["value"]["requested_verified_name"], "Acme Careers");
    assert_eq!(change["value"]["display_phone_number"], "15550100001");
    assert_eq!(approved["verified_name"], "Acme Careers");
    assert_eq!(approved["name_status"], "APPROVED");
    assert!(approved.get("new_name_status").is_none());
    sim.stop().await;
}

#[tokio::test]
async fn a_revoked_business_token_is_refused_with_190_and_metas_session_message() {
    // Arrange
    let sim = TestSim::start(None).await;
    let code = finish_signup(&sim).await;
    let (_, token) = exchange(&sim, DEFAULT_APP_ID, SECRET, &code).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let (before, _) = graph(
        &sim,
        Method::GET,
        &format!("{ES_WABA}/phone_numbers"),
        &token,
        json!({}),
    )
    .await;

    // Act
    sim.control(
        Method::POST,
        "/_sim/tokens/revoke",
        json!({"waba_id": ES_WABA}),
    )
    .await;
    let (after, refused) = graph(
        &sim,
        Method::GET,
        &format!("{ES_WABA}/phone_numbers"),
        &token,
        json!({}),
    )
    .await;

    // Assert
    assert_eq!(before, StatusCode::OK);
    assert_eq!(after, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["error"]["code"], 190);
    assert_eq!(refused["error"]["error_subcode"], 460);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session has been invalidated")
    );
    sim.stop().await;
}

#[tokio::test]
async fn an_injected_fault_makes_subscribed_apps_fail_with_its_code() {
    // Arrange
    let sim = TestSim::start(None).await;
    finish_signup(&sim).await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        json!({"endpoint": "subscribed_apps", "code": 2, "times": 1}),
    )
    .await;

    // Act
    let (failed, error) = subscribed_apps(&sim, Method::POST).await;
    let (retried, _) = subscribed_apps(&sim, Method::POST).await;

    // Assert
    assert_eq!(failed, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["error"]["code"], 2);
    assert_eq!(retried, StatusCode::OK);
    sim.stop().await;
}
