//! The send endpoint's synchronous answers: Meta's error shape, codes and HTTP statuses.

mod common;

use axum::http::StatusCode;
use common::{NUMBER, TestSim, WABA, template_send, text_send};
use reqwest::Method;
use serde_json::{Value, json};

/// Asserts Meta's documented error shape and returns `error`.
fn assert_error_shape(body: &Value, code: i64) -> Value {
    let error = body["error"].clone();
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["type"], "OAuthException");
    let message = error["message"].as_str().expect("message");
    assert!(message.starts_with(&format!("(#{code}) ")), "{message}");
    assert_eq!(error["error_data"]["messaging_product"], "whatsapp");
    assert!(error["error_data"]["details"].is_string());
    assert!(!error["fbtrace_id"].as_str().expect("fbtrace_id").is_empty());
    error
}

#[tokio::test]
async fn an_unknown_template_is_refused_with_404_and_code_132001_in_metas_error_shape() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    let mut body = template_send("+15550001111", "job-1", &["x"]);
    body["template"]["name"] = json!("no_such_template");

    // Act
    let (status, answer) = sim.send(NUMBER, body).await;

    // Assert
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&answer, 132001);
    sim.stop().await;
}

#[tokio::test]
async fn a_template_that_is_not_approved_is_refused_with_132001() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::POST,
        "/_sim/templates",
        json!({"waba_id": WABA, "name": "order_update", "language": "en_US", "category": "UTILITY",
               "status": "PAUSED", "body_text": "Hi {{1}}"}),
    )
    .await;

    // Act
    let (status, answer) = sim
        .send(NUMBER, template_send("+15550001111", "job-1", &["x"]))
        .await;

    // Assert
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&answer, 132001);
    sim.stop().await;
}

#[tokio::test]
async fn a_wrong_body_parameter_count_is_refused_with_400_and_code_132000() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    let (status, answer) = sim
        .send(NUMBER, template_send("+15550001111", "job-1", &["x", "y"]))
        .await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&answer, 132000);
    sim.stop().await;
}

#[tokio::test]
async fn exceeding_the_numbers_mps_is_refused_with_http_400_and_code_130429() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(Some(5)).await;

    // Act
    let mut answers = Vec::new();
    for i in 0..20 {
        let to = format!("+1555000100{i}");
        answers.push(sim.send(NUMBER, template_send(&to, "burst", &["x"])).await);
    }

    // Assert
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .collect();
    assert!((5..=6).contains(&ok), "{ok} passed");
    assert_eq!(ok + throttled.len(), 20);
    for (status, body) in throttled {
        assert_eq!(*status, StatusCode::BAD_REQUEST);
        assert_error_shape(body, 130429);
    }
    sim.stop().await;
}

#[tokio::test]
async fn an_unknown_phone_number_id_is_refused_with_code_100_and_subcode_33() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    let (status, answer) = sim
        .send("pn-unknown", template_send("+15550001111", "j", &["x"]))
        .await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = assert_error_shape(&answer, 100);
    assert_eq!(error["error_subcode"], 33);
    sim.stop().await;
}

#[tokio::test]
async fn a_send_without_a_bearer_token_is_refused_with_401_and_code_190() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    let response = sim
        .client
        .post(format!("{}/v24.0/{NUMBER}/messages", sim.base))
        .json(&text_send("+15550001111", "j"))
        .send()
        .await
        .expect("send");

    // Assert
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("x-fb-trace-id"));
    assert_error_shape(&response.json().await.expect("json"), 190);
    sim.stop().await;
}

#[tokio::test]
async fn a_success_carries_the_trace_header() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    let response = sim
        .client
        .post(format!("{}/v23.0/{NUMBER}/messages", sim.base))
        .bearer_auth("t")
        .json(&template_send("+15550001111", "j", &["x"]))
        .send()
        .await
        .expect("send");

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-fb-trace-id"));
    sim.stop().await;
}

#[tokio::test]
async fn an_injected_fault_answers_with_its_code_for_the_given_number_of_requests() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.client
        .post(format!("{}/_sim/faults", sim.base))
        .json(&json!({"phone_number_id": NUMBER, "code": 131000, "times": 1}))
        .send()
        .await
        .expect("fault");

    // Act
    let (first, answer) = sim
        .send(NUMBER, template_send("+15550001111", "j", &["x"]))
        .await;
    let (second, _) = sim
        .send(NUMBER, template_send("+15550001111", "j", &["x"]))
        .await;

    // Assert
    assert_eq!(first, StatusCode::INTERNAL_SERVER_ERROR);
    assert_error_shape(&answer, 131000);
    assert_eq!(second, StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn a_fault_with_for_ms_answers_with_its_code_only_until_its_time_is_over() {
    // Arrange: a burst of 130429 for 300 ms, as when a number is over its throughput.
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.client
        .post(format!("{}/_sim/faults", sim.base))
        .json(&json!({"code": 130429, "for_ms": 300}))
        .send()
        .await
        .expect("fault");

    // Act
    let (during, answer) = sim
        .send(NUMBER, template_send("+15550001111", "j", &["x"]))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (after, _) = sim
        .send(NUMBER, template_send("+15550001111", "j", &["x"]))
        .await;

    // Assert
    assert_eq!(during, StatusCode::BAD_REQUEST);
    assert_error_shape(&answer, 130429);
    assert_eq!(after, StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn a_body_without_messaging_product_whatsapp_is_refused_with_code_100() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    let mut body = template_send("+15550001111", "j", &["x"]);
    body["messaging_product"] = json!("sms");

    // Act
    let (status, answer) = sim.send(NUMBER, body).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&answer, 100);
    sim.stop().await;
}
