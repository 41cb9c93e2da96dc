//! The connection status kept: a token Meta starts refusing turns the connection to
//! `token_invalid` with Meta's own message, from a send's error or the periodic check, visible
//! in `GET /v1/settings/meta`, counted and announced as `account.<tenant>`. And what the company
//! pastes into Meta: the Callback URL and a generated Verify Token the handshake accepts, which
//! an admin rotates.

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wafleet_tests::{TestFleet, id_of};

#[tokio::test]
async fn a_token_meta_starts_refusing_during_a_send_turns_the_connection_to_token_invalid() {
    // Arrange: a company connected through Embedded Signup, its templates synced.
    let t = TestFleet::start().await;
    let company = t.connected_company(5, 1).await;
    let mut events = t.events().await;

    // Act: the customer removes the partner's access; Meta refuses the business token.
    t.sim(
        Method::POST,
        "/_sim/tokens/revoke",
        json!({"waba_id": company.waba_id}),
    )
    .await;
    let (_, accepted) = t
        .as_company(&company, Method::POST, "/v1/messages", Some(json!({
            "to": "+447400123456", "record": {"type": "candidate", "id": "CAND-TOK-1"},
            "template": {"name": "job_opportunity", "language": "en_GB", "parameters": ["Anna", "Sam"]},
        })))
        .await;
    let id = id_of(&accepted);
    let event = events
        .wait_for("account", "the token_invalid change", |e| {
            e["status"] == "token_invalid"
        })
        .await;

    // Assert: held, not failed; the connection says why, in Meta's words.
    let (_, message) = t
        .as_company(&company, Method::GET, &format!("/v1/messages/{id}"), None)
        .await;
    assert_eq!(message["state"], "deferred", "{message}");
    assert_eq!(message["reason"], "circuit_account");
    let (_, meta) = t
        .as_company(&company, Method::GET, "/v1/settings/meta", None)
        .await;
    let connection = &meta["connection"];
    assert_eq!(connection["status"], "token_invalid", "{meta}");
    assert_eq!(connection["code"], 190);
    assert!(
        connection["message"]
            .as_str()
            .unwrap()
            .contains("session has been invalidated")
    );
    assert!(connection["since"].is_string());
    assert_eq!(event["tenant_id"], company.tenant_id.to_string());
    assert_eq!(event["previous"], "connected");
    let metrics = t.scrape(&t.fleet.dispatcher_url).await;
    assert!(
        metrics.contains("wafleet_connection_changes_total{status=\"token_invalid\"}"),
        "{metrics}"
    );
    t.stop().await;
}

#[tokio::test]
async fn the_periodic_check_finds_a_refused_token_without_any_send() {
    // Arrange
    let t = TestFleet::start_with(|s| {
        s.ingest.connection_check_interval = Duration::from_millis(200);
    })
    .await;
    t.wait_for_get("/v1/settings/meta", "the first check", |m| {
        m["connection"]["status"] == "connected"
    })
    .await;

    // Act
    t.sim(
        Method::POST,
        "/_sim/tokens/revoke",
        json!({"token": "test-token"}),
    )
    .await;

    // Assert
    let meta = t
        .wait_for_get("/v1/settings/meta", "the refused check", |m| {
            m["connection"]["status"] == "token_invalid"
        })
        .await;
    assert_eq!(meta["connection"]["code"], 190);
    assert!(
        t.all_sends().await.is_empty(),
        "nothing was sent to find out"
    );
    t.stop().await;
}

#[tokio::test]
async fn the_webhook_handshake_accepts_the_tenants_verify_token_until_an_admin_rotates_it() {
    // Arrange
    let t =
        TestFleet::start_with(|s| s.public_base_url = Some("https://wa.example.com/".into())).await;
    let (_, meta) = t.admin(Method::GET, "/v1/settings/meta", None).await;
    let old = meta["verify_token"].as_str().unwrap().to_owned();
    let handshake = |token: String| {
        let url = format!(
            "{}/webhooks/meta/{}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}",
            t.fleet.webhooks_url, t.tenant_id
        );
        let http = t.http.clone();
        async move {
            let res = http.get(url).send().await.expect("webhooks answers");
            (res.status().as_u16(), res.text().await.unwrap_or_default())
        }
    };

    // Act
    let before = handshake(old.clone()).await;
    let (rotated, after) = t
        .admin(Method::POST, "/v1/settings/meta/verify_token", None)
        .await;
    let new = after["verify_token"].as_str().unwrap().to_owned();
    let old_after = handshake(old.clone()).await;
    let new_after = handshake(new.clone()).await;

    // Assert
    assert_eq!(
        meta["callback_url"],
        format!("https://wa.example.com/webhooks/meta/{}", t.tenant_id)
    );
    assert_eq!(before, (200, "1158201444".to_owned()));
    assert_eq!(rotated, 200, "{after}");
    assert_ne!(new, old);
    assert_eq!(old_after.0, 403);
    assert_eq!(new_after, (200, "1158201444".to_owned()));
    let (_, audit) = t.admin(Method::GET, "/v1/settings/audit", None).await;
    assert_eq!(
        audit["entries"][0]["change"]["meta"]["verify_token_rotated"],
        true
    );
    assert!(!audit.to_string().contains(&new));
    t.stop().await;
}
