//! Settings and the Meta connection through the HTTP API: validated changes, the audit trail,
//! secrets that never come back, and a connection check against the simulator.

use reqwest::Method;
use serde_json::json;
use wafleet_tests::TestFleet;

#[tokio::test]
async fn an_admin_changes_settings_and_the_change_is_audited_with_before_and_after() {
    // Arrange
    let t = TestFleet::start().await;
    let prefix = t.api_key.split('_').nth(1).unwrap().to_owned();

    // Act
    let (status, body) = t
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({
                "allowed_countries": ["gb", "IE"],
                "quiet_time": {"days": ["sat", "Sunday"], "zone": "Europe/London", "start": "20:00", "end": "08:00"},
                "tier_override": 10000,
                "bulk_reserve_percent": 25,
                "optout_keywords": ["STOP", "STOPP"],
            })),
        )
        .await;

    // Assert
    assert_eq!(status, 200, "{body}");
    let (_, settings) = t.get("/v1/settings").await;
    assert_eq!(settings["allowed_countries"], json!(["GB", "IE"]));
    assert_eq!(settings["quiet_time"]["days"], json!(["sat", "sun"]));
    assert_eq!(settings["effective_tier"], 10000);
    assert_eq!(settings["bulk_reserve_percent"], 25);
    let (_, audit) = t.admin(Method::GET, "/v1/settings/audit", None).await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], format!("apikey:{prefix}"));
    assert_eq!(
        entry["change"]["settings"]["bulk_reserve_percent"],
        json!({"before": 10, "after": 25})
    );
    assert_eq!(
        entry["change"]["settings"]["allowed_countries"]["before"],
        json!([])
    );
    t.stop().await;
}

#[tokio::test]
async fn invalid_settings_are_refused_naming_the_field_and_nothing_changes() {
    // Arrange
    let t = TestFleet::start().await;
    let cases = [
        (
            json!({"allowed_countries": ["GB", "UK"]}),
            "allowed_countries[1]",
        ),
        (
            json!({"quiet_time": {"days": ["mon"], "zone": "Europe/Londres", "start": "20:00", "end": "08:00"}}),
            "quiet_time.zone",
        ),
        (
            json!({"quiet_time": {"days": ["mon"], "zone": "UTC", "start": "8pm", "end": "08:00"}}),
            "quiet_time.start",
        ),
        (
            json!({"quiet_time": {"days": ["someday"], "zone": "UTC", "start": "20:00", "end": "08:00"}}),
            "quiet_time.days[0]",
        ),
        (json!({"tier_override": 5000}), "tier_override"),
        (json!({"bulk_reserve_percent": -1}), "bulk_reserve_percent"),
        (json!({"optout_keywords": []}), "optout_keywords"),
        (
            json!({"default_sender_id": "0190a8c4-0000-7000-8000-000000000000"}),
            "default_sender_id",
        ),
    ];

    for (body, field) in cases {
        // Act
        let (status, problem) = t
            .admin(Method::PUT, "/v1/settings", Some(body.clone()))
            .await;

        // Assert
        assert_eq!(status, 422, "{body}");
        assert_eq!(problem["code"], "invalid_setting");
        assert_eq!(problem["field"], field, "{body}");
    }
    let (_, audit) = t.admin(Method::GET, "/v1/settings/audit", None).await;
    assert_eq!(audit["entries"], json!([]));
    t.stop().await;
}

#[tokio::test]
async fn a_reader_key_reads_settings_but_cannot_change_them() {
    // Arrange
    let t = TestFleet::start().await;
    let (_, key) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "reader"})),
        )
        .await;
    let reader = key["key"].as_str().unwrap();

    // Act
    let (read, _) = t
        .call(Method::GET, "/v1/settings", Some(reader), None)
        .await;
    let (write, problem) = t
        .call(
            Method::PUT,
            "/v1/settings",
            Some(reader),
            Some(json!({"bulk_reserve_percent": 5})),
        )
        .await;

    // Assert
    assert_eq!(read, 200);
    assert_eq!(write, 403);
    assert_eq!(problem["code"], "forbidden");
    t.stop().await;
}

#[tokio::test]
async fn the_meta_connection_is_checked_against_graph_and_its_secrets_never_come_back() {
    // Arrange
    let t = TestFleet::start().await;
    let token = "EAAG-a-brand-new-system-user-token";

    // Act
    let (put, shown) = t
        .admin(
            Method::PUT,
            "/v1/settings/meta",
            Some(json!({"waba_id": t.waba_id, "access_token": token})),
        )
        .await;
    let (_, check) = t.admin(Method::POST, "/v1/settings/meta/check", None).await;

    // Assert
    assert_eq!(put, 200, "{shown}");
    assert_eq!(shown["waba_id"], t.waba_id);
    assert!(!shown.to_string().contains(token));
    let (_, read) = t.admin(Method::GET, "/v1/settings/meta", None).await;
    assert!(!read.to_string().contains(token));
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT access_token_enc FROM meta_connections WHERE tenant_id = $1")
            .bind(t.tenant_id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(!sealed.windows(8).any(|w| w == &token.as_bytes()[..8]));
    assert_eq!(check["connected"], true, "{check}");
    assert_eq!(check["phone_numbers"], 1);
    let (_, audit) = t.admin(Method::GET, "/v1/settings/audit", None).await;
    assert_eq!(
        audit["entries"][0]["change"]["meta"]["access_token_changed"],
        true
    );
    assert!(!audit.to_string().contains(token));
    t.stop().await;
}

#[tokio::test]
async fn a_wrong_waba_id_is_reported_with_metas_own_error_message() {
    // Arrange
    let t = TestFleet::start().await;
    t.admin(
        Method::PUT,
        "/v1/settings/meta",
        Some(json!({"waba_id": "123456789"})),
    )
    .await;

    // Act
    let (status, check) = t.admin(Method::POST, "/v1/settings/meta/check", None).await;

    // Assert
    assert_eq!(status, 200);
    assert_eq!(check["connected"], false);
    assert_eq!(check["error"]["code"], 100);
    assert!(
        check["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Object with ID '123456789' does not exist"),
        "{check}"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_meta_connection_with_a_bad_waba_id_is_refused() {
    // Arrange
    let t = TestFleet::start().await;

    // Act
    let (status, problem) = t
        .admin(
            Method::PUT,
            "/v1/settings/meta",
            Some(json!({"waba_id": "acme-waba"})),
        )
        .await;

    // Assert
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "waba_id");
    t.stop().await;
}
