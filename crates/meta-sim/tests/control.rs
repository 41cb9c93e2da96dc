//! The control API and the Graph listings: recorded sends, stats, templates and numbers.

mod common;

use axum::http::StatusCode;
use common::{NUMBER, TestSim, WABA, template_send};
use reqwest::Method;
use serde_json::json;
use wafleet_meta_sim::{RecordedSend, SimStats};

#[tokio::test]
async fn recorded_sends_can_be_filtered_by_callback_data() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.send(NUMBER, template_send("+15550001111", "job-a", &["x"]))
        .await;
    sim.send(NUMBER, template_send("+15550002222", "job-b", &["x"]))
        .await;
    let mut unknown = template_send("+15550002222", "job-b", &["x"]);
    unknown["template"]["name"] = json!("missing");
    sim.send(NUMBER, unknown).await;

    // Act
    let all: Vec<RecordedSend> =
        serde_json::from_value(sim.get("/_sim/sends").await).expect("sends");
    let only_b: Vec<RecordedSend> =
        serde_json::from_value(sim.get("/_sim/sends?callback=job-b").await).expect("sends");

    // Assert
    assert_eq!(all.len(), 3);
    assert_eq!(only_b.len(), 2);
    assert!(
        only_b
            .iter()
            .all(|s| s.biz_opaque_callback_data.as_deref() == Some("job-b"))
    );
    assert!(only_b[0].wamid.is_some() && only_b[0].error_code.is_none());
    assert_eq!(only_b[1].error_code, Some(132001));
    assert_eq!(only_b[1].template_name.as_deref(), Some("missing"));
    assert_eq!(only_b[0].message_type, "template");
    assert_eq!(only_b[0].to, "+15550002222");
    assert_eq!(only_b[0].phone_number_id, NUMBER);
    sim.stop().await;
}

#[tokio::test]
async fn stats_count_sends_and_reset_clears_the_recorded_sends() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.send(NUMBER, template_send("+15550001111", "job-a", &["x"]))
        .await;
    sim.send("pn-unknown", template_send("+15550001111", "job-a", &["x"]))
        .await;

    // Act
    let stats: SimStats = serde_json::from_value(sim.get("/_sim/stats").await).expect("stats");
    sim.control(Method::POST, "/_sim/reset", json!({})).await;
    let after_reset = sim.get("/_sim/sends").await;

    // Assert
    assert_eq!((stats.sends_ok, stats.sends_error), (1, 1));
    assert_eq!(after_reset, json!([]));
    sim.stop().await;
}

#[tokio::test]
async fn templates_are_listed_in_metas_shape_and_paged_with_the_after_cursor() {
    // Arrange
    let sim = TestSim::start(None).await;
    for i in 0..3 {
        sim.control(
            Method::POST,
            "/_sim/templates",
            json!({"waba_id": WABA, "name": format!("tpl_{i}"), "language": "en_US",
                   "category": "MARKETING", "body_text": "Hi {{1}}"}),
        )
        .await;
    }

    // Act
    let first = sim
        .get(&format!("/v24.0/{WABA}/message_templates?limit=2"))
        .await;
    let after = first["paging"]["cursors"]["after"]
        .as_str()
        .expect("after cursor");
    let second = sim
        .get(&format!(
            "/v24.0/{WABA}/message_templates?limit=2&after={after}"
        ))
        .await;

    // Assert
    let names = |page: &serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["tpl_0", "tpl_1"]);
    assert!(first["paging"]["next"].is_string());
    assert_eq!(names(&second), ["tpl_2"]);
    assert!(second["paging"].get("next").is_none());
    let template = &first["data"][0];
    assert_eq!(template["status"], "APPROVED");
    assert_eq!(template["category"], "MARKETING");
    assert_eq!(template["language"], "en_US");
    assert_eq!(template["parameter_format"], "POSITIONAL");
    assert_eq!(
        template["components"],
        json!([{"type": "BODY", "text": "Hi {{1}}"}])
    );
    assert!(template["id"].is_string());
    sim.stop().await;
}

#[tokio::test]
async fn phone_numbers_of_a_waba_are_listed_as_connected() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    let page = sim.get(&format!("/v24.0/{WABA}/phone_numbers")).await;

    // Assert
    assert_eq!(
        page["data"],
        json!([{"id": NUMBER, "display_phone_number": common::DISPLAY, "verified_name": "Acme",
                "quality_rating": "GREEN", "status": "CONNECTED", "platform_type": "CLOUD_API",
                "code_verification_status": "VERIFIED", "name_status": "APPROVED",
                "throughput": {"level": "STANDARD"}}])
    );
    assert!(page["paging"]["cursors"]["before"].is_string());
    sim.stop().await;
}

#[tokio::test]
async fn listings_require_a_bearer_token() {
    // Arrange
    let sim = TestSim::start(None).await;

    // Act
    let response = sim
        .client
        .get(format!("{}/v24.0/{WABA}/phone_numbers", sim.base))
        .send()
        .await
        .expect("get");

    // Assert
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED.as_u16());
    sim.stop().await;
}

#[tokio::test]
async fn a_fault_can_target_one_template_and_a_share_of_its_requests() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        json!({"template": "another_template", "code": 2}),
    )
    .await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        json!({"template": "order_update", "code": 131000, "error_rate_percent": 0}),
    )
    .await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        json!({"template": "order_update", "code": 132015, "error_rate_percent": 100, "times": 1}),
    )
    .await;

    // Act
    let (paused, body) = sim
        .send(NUMBER, template_send("+15550001111", "t-1", &["x"]))
        .await;
    let (ok, _) = sim
        .send(NUMBER, template_send("+15550001111", "t-2", &["x"]))
        .await;

    // Assert
    assert!(paused.is_client_error() || paused.is_server_error());
    assert_eq!(body["error"]["code"], 132015);
    assert_eq!(
        ok,
        StatusCode::OK,
        "a 0 % fault and another template's fault never hit"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_reset_fault_drops_the_connection_without_an_answer_and_is_recorded() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        json!({"to": "+15550001111", "reset": true, "times": 1}),
    )
    .await;
    let url = format!("{}/v24.0/{NUMBER}/messages", sim.base);

    // Act
    let reset = reqwest::Client::new()
        .post(&url)
        .bearer_auth("test-token")
        .json(&template_send("+15550001111", "r-1", &["x"]))
        .send()
        .await;
    let (after, _) = sim
        .send(NUMBER, template_send("+15550001111", "r-2", &["x"]))
        .await;

    // Assert
    assert!(reset.is_err(), "no HTTP answer at all");
    assert_eq!(after, StatusCode::OK);
    let sends: Vec<RecordedSend> =
        serde_json::from_value(sim.get("/_sim/sends?callback=r-1").await).expect("sends");
    assert_eq!(sends.len(), 1);
    assert!(sends[0].wamid.is_none() && sends[0].error_code.is_none());
    sim.stop().await;
}
