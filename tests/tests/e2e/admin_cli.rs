//! The operator commands (`wafleet sender …`, `wafleet apikey …`) on the real database and the
//! simulator; what they did is checked through the HTTP API.

use reqwest::Method;
use serde_json::json;
use wafleet::operator::{ApiKeyCommand, SenderCommand};
use wafleet_tests::TestFleet;

#[tokio::test]
async fn an_operator_adds_and_verifies_a_sender_from_the_command_line() {
    // Arrange
    let t = TestFleet::start().await;
    let pnid = t.sim_number("+442071838840", false).await;
    SenderCommand::Add {
        tenant: t.tenant_id,
        phone: "+442071838840".into(),
        friendly_name: Some("Ops desk".into()),
        owner: None,
    }
    .run(&t.settings)
    .await
    .expect("sender add");
    let (_, list) = t.get("/v1/senders").await;
    let added = list["senders"][1].clone();

    // Act
    let sender = added["id"].as_str().unwrap().parse().unwrap();
    SenderCommand::Verify {
        tenant: t.tenant_id,
        sender,
        request_code: Some("SMS".into()),
        code: None,
    }
    .run(&t.settings)
    .await
    .expect("request code");
    let (_, code) = t.sim_get(&format!("/_sim/numbers/{pnid}/code")).await;
    SenderCommand::Verify {
        tenant: t.tenant_id,
        sender,
        request_code: None,
        code: Some(code["code"].as_str().unwrap().to_owned()),
    }
    .run(&t.settings)
    .await
    .expect("verify");

    // Assert
    assert_eq!(added["status"], "pending");
    assert_eq!(added["friendly_name"], "Ops desk");
    let (_, after) = t.get(&format!("/v1/senders/{sender}")).await;
    assert_eq!(after["status"], "approved");
    t.stop().await;
}

#[tokio::test]
async fn an_operator_revokes_a_key_from_the_command_line() {
    // Arrange
    let t = TestFleet::start().await;
    let (_, key) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "sender"})),
        )
        .await;
    let id = key["id"].as_str().unwrap().parse().unwrap();

    // Act
    ApiKeyCommand::Revoke {
        tenant: t.tenant_id,
        id,
    }
    .run(&t.settings)
    .await
    .expect("revoke");

    // Assert
    let (status, _) = t
        .call(Method::GET, "/v1/senders", key["key"].as_str(), None)
        .await;
    assert_eq!(status, 401);
    t.stop().await;
}
