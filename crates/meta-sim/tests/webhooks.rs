//! Status and inbound webhooks: lifecycle, signing, batching, failures, retries and overrides.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{
    DISPLAY, NUMBER, Receiver, SECRET, TestSim, WABA, expected_signature, template_send, text_send,
};
use reqwest::Method;
use serde_json::json;
use wafleet_meta_sim::SimSettings;

#[tokio::test]
async fn a_template_send_gets_a_wamid_then_signed_sent_delivered_read_webhooks_with_callback_data()
{
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;

    // Act
    let (status, body) = sim
        .send(NUMBER, template_send("+15550001111", "job-42", &["Ana"]))
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    assert!(wamid.starts_with("wamid."));
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["contacts"][0]["input"], "+15550001111");
    assert_eq!(body["contacts"][0]["wa_id"], "15550001111");

    let hooks = receiver.wait_for_statuses(3).await;
    for hook in &hooks {
        assert_eq!(
            hook.signature.as_deref(),
            Some(expected_signature(SECRET, &hook.body).as_str())
        );
        assert_eq!(hook.content_type.as_deref(), Some("application/json"));
        assert_eq!(hook.json["object"], "whatsapp_business_account");
        assert_eq!(hook.json["entry"][0]["id"], WABA);
        let value = &hook.json["entry"][0]["changes"][0]["value"];
        assert_eq!(hook.json["entry"][0]["changes"][0]["field"], "messages");
        assert_eq!(value["metadata"]["phone_number_id"], NUMBER);
        assert_eq!(value["metadata"]["display_phone_number"], DISPLAY);
    }
    let statuses = receiver.statuses();
    let names: Vec<_> = statuses
        .iter()
        .map(|s| s["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["sent", "delivered", "read"]);
    for status in &statuses {
        assert_eq!(status["id"], wamid.as_str());
        assert_eq!(status["recipient_id"], "15550001111");
        assert_eq!(status["biz_opaque_callback_data"], "job-42");
        assert!(
            status["timestamp"]
                .as_str()
                .expect("string timestamp")
                .parse::<i64>()
                .is_ok()
        );
    }
    let pricing =
        json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"});
    assert_eq!(statuses[0]["pricing"], pricing);
    assert_eq!(statuses[1]["pricing"], pricing);
    assert!(statuses[2].get("pricing").is_none());
    sim.stop().await;
}

#[tokio::test]
async fn statuses_of_sends_made_together_arrive_batched_in_one_post() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start_with(SimSettings {
        addr: ([127, 0, 0, 1], 0).into(),
        webhook_url: Some(receiver.url.clone()),
        app_secret: SECRET.to_owned(),
        status_delay: Duration::from_secs(2),
        batch_window: Duration::from_millis(300),
        default_mps: 80,
        ..SimSettings::default()
    })
    .await;
    sim.register_defaults(None).await;

    // Act
    for i in 0..5 {
        let (status, _) = sim
            .send(
                NUMBER,
                template_send(&format!("+1555000200{i}"), &format!("job-{i}"), &["x"]),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    // Assert: the five `sent` statuses come in a single POST, in one entry and one change.
    let hooks = receiver.wait_for_statuses(5).await;
    assert_eq!(hooks.len(), 1, "expected one batched POST, got {hooks:#?}");
    assert_eq!(hooks[0].json["entry"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        hooks[0].json["entry"][0]["changes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(hooks[0].statuses().iter().all(|s| s["status"] == "sent"));
    sim.stop().await;
}

#[tokio::test]
async fn free_form_text_outside_the_service_window_is_accepted_then_fails_with_131047() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;

    // Act
    let (status, body) = sim
        .send(NUMBER, text_send("+15550003333", "job-text"))
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    receiver.wait_for_statuses(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let statuses = receiver.statuses();
    assert_eq!(statuses.len(), 1, "only a failed status: {statuses:#?}");
    assert_eq!(statuses[0]["status"], "failed");
    assert_eq!(statuses[0]["id"], body["messages"][0]["id"]);
    assert_eq!(statuses[0]["biz_opaque_callback_data"], "job-text");
    let error = &statuses[0]["errors"][0];
    assert_eq!(error["code"], 131047);
    assert!(error["title"].is_string());
    assert!(error["error_data"]["details"].is_string());
    assert!(error["href"].is_string());
    sim.stop().await;
}

#[tokio::test]
async fn text_after_the_user_wrote_in_is_delivered_with_service_pricing() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;
    let inbound = sim
        .control(
            Method::POST,
            "/_sim/inbound",
            json!({"phone_number_id": NUMBER, "from": "+15550004444", "text": "hi", "name": "Bea"}),
        )
        .await;

    // Act
    let (status, _) = sim
        .send(NUMBER, text_send("+15550004444", "job-reply"))
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    receiver.wait_for_statuses(3).await;
    let hooks = receiver.hooks();
    let message = hooks
        .iter()
        .flat_map(|h| h.messages())
        .next()
        .expect("inbound message");
    assert_eq!(message["id"], inbound["wamid"]);
    assert_eq!(message["from"], "15550004444");
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"]["body"], "hi");
    let contact = &hooks[0].json["entry"][0]["changes"][0]["value"]["contacts"][0];
    assert_eq!(contact["profile"]["name"], "Bea");
    assert_eq!(contact["wa_id"], "15550004444");
    let statuses = receiver.statuses();
    assert_eq!(statuses[0]["status"], "sent");
    assert_eq!(statuses[0]["pricing"]["category"], "service");
    sim.stop().await;
}

#[tokio::test]
async fn a_send_to_an_unreachable_recipient_is_accepted_then_fails_with_131026() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::POST,
        "/_sim/unreachable",
        json!({"to": "+15550005555"}),
    )
    .await;

    // Act
    let (status, _) = sim
        .send(NUMBER, template_send("+1 555 000 5555", "job-u", &["x"]))
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    receiver.wait_for_statuses(1).await;
    let statuses = receiver.statuses();
    assert_eq!(statuses[0]["status"], "failed");
    assert_eq!(statuses[0]["errors"][0]["code"], 131026);
    sim.stop().await;
}

#[tokio::test]
async fn the_recipient_auto_replies_after_read_which_opens_the_service_window() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;
    sim.control(Method::PUT, "/_sim/config", json!({"auto_reply": "STOP"}))
        .await;

    // Act
    sim.send(NUMBER, template_send("+15550006666", "job-a", &["x"]))
        .await;
    let hooks = receiver
        .wait_until(|hooks| hooks.iter().any(|h| !h.messages().is_empty()))
        .await;
    let (status, _) = sim.send(NUMBER, text_send("+15550006666", "job-b")).await;

    // Assert
    let reply = hooks
        .iter()
        .flat_map(|h| h.messages())
        .next()
        .expect("reply");
    assert_eq!(reply["from"], "15550006666");
    assert_eq!(reply["text"]["body"], "STOP");
    assert_eq!(status, StatusCode::OK);
    receiver
        .wait_until(|hooks| {
            hooks
                .iter()
                .flat_map(|h| h.statuses())
                .any(|s| s["biz_opaque_callback_data"] == "job-b" && s["status"] == "read")
        })
        .await;
    sim.stop().await;
}

#[tokio::test]
async fn a_webhook_post_refused_with_500_is_retried_until_accepted() {
    // Arrange
    let receiver = Receiver::start_answering(vec![500, 503]).await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::PUT,
        "/_sim/config",
        json!({"retry_delays_ms": [20, 20, 20]}),
    )
    .await;

    // Act
    let inbound = sim
        .control(
            Method::POST,
            "/_sim/inbound",
            json!({"phone_number_id": NUMBER, "from": "+15550007777", "text": "yo"}),
        )
        .await;

    // Assert: the same body is posted three times, the third accepted.
    assert!(inbound["wamid"].is_string());
    let hooks = receiver.wait_until(|hooks| hooks.len() >= 3).await;
    assert_eq!(hooks[0].body, hooks[2].body);
    let stats = sim.wait_for_stats(|s| s["webhooks_posted"] == 1).await;
    assert_eq!(stats["webhooks_failed"], 2);
    assert_eq!(stats["webhooks_posted"], 1);
    sim.stop().await;
}

#[tokio::test]
async fn a_waba_with_its_own_app_gets_webhooks_at_its_url_signed_with_its_secret() {
    // Arrange
    let global = Receiver::start().await;
    let tenant = Receiver::start().await;
    let sim = TestSim::start(Some(global.url.clone())).await;
    sim.register_defaults(None).await;
    sim.control(
        Method::POST,
        "/_sim/wabas",
        json!({"waba_id": WABA, "webhook_url": tenant.url, "app_secret": "tenant-secret"}),
    )
    .await;

    // Act
    sim.send(NUMBER, template_send("+15550008888", "job-t", &["x"]))
        .await;

    // Assert
    let hooks = tenant.wait_for_statuses(3).await;
    for hook in hooks {
        assert_eq!(
            hook.signature,
            Some(expected_signature("tenant-secret", &hook.body))
        );
    }
    assert!(global.hooks().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn with_duplicate_every_one_each_status_is_delivered_twice_in_later_batches() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;
    sim.control(Method::PUT, "/_sim/config", json!({"duplicate_every": 1}))
        .await;

    // Act
    sim.send(NUMBER, template_send("+15550009999", "job-d", &["x"]))
        .await;

    // Assert
    receiver.wait_for_statuses(6).await;
    let statuses = receiver.statuses();
    for name in ["sent", "delivered", "read"] {
        assert_eq!(
            statuses.iter().filter(|s| s["status"] == name).count(),
            2,
            "{name}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn shutdown_flushes_webhooks_that_were_not_yet_due() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start_with(SimSettings {
        addr: ([127, 0, 0, 1], 0).into(),
        webhook_url: Some(receiver.url.clone()),
        app_secret: SECRET.to_owned(),
        status_delay: Duration::from_secs(60),
        batch_window: Duration::from_millis(100),
        default_mps: 80,
        ..SimSettings::default()
    })
    .await;
    sim.register_defaults(None).await;
    sim.send(NUMBER, template_send("+15550001212", "job-s", &["x"]))
        .await;

    // Act
    sim.stop().await;

    // Assert
    assert_eq!(receiver.statuses().len(), 3);
}

#[tokio::test]
async fn without_a_callback_url_events_are_dropped_and_counted() {
    // Arrange
    let sim = TestSim::start(None).await;
    sim.register_defaults(None).await;

    // Act
    sim.send(NUMBER, template_send("+15550001313", "job-n", &["x"]))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Assert
    let stats = sim.get("/_sim/stats").await;
    assert_eq!(stats["webhook_events_dropped"], 3);
    assert_eq!(stats["webhooks_posted"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn with_reorder_every_status_still_arrives_once() {
    // Arrange
    let receiver = Receiver::start().await;
    let sim = TestSim::start(Some(receiver.url.clone())).await;
    sim.register_defaults(None).await;
    sim.control(Method::PUT, "/_sim/config", json!({"reorder": true}))
        .await;

    // Act
    for i in 0..4 {
        let to = format!("+1555000140{i}");
        sim.send(NUMBER, template_send(&to, "job-r", &["x"])).await;
    }

    // Assert
    receiver.wait_for_statuses(12).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let statuses = receiver.statuses();
    assert_eq!(statuses.len(), 12);
    for name in ["sent", "delivered", "read"] {
        assert_eq!(
            statuses.iter().filter(|s| s["status"] == name).count(),
            4,
            "{name}"
        );
    }
    sim.stop().await;
}
