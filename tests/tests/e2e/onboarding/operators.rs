//! The operators' tenant administration and the module switch: an operator creates a tenant
//! with the operator key (a tenant's key will not do), the tenant connects itself through
//! Embedded Signup with the admin key it got, and an operator lists it and switches WhatsApp
//! off: its sends are refused with `whatsapp_disabled`, its webhooks still recorded, until it
//! is switched on again.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::TestFleet;

const OPERATOR_KEY: &str = "op-3b9d1c6e0f8a4d27b5c1e9f0a2d4c6b8";

fn template(sender: &str, record: &str) -> Value {
    json!({
        "to": "+447400123456", "sender": sender, "record": {"type": "candidate", "id": record},
        "template": {"name": "job_opportunity", "language": "en_GB", "parameters": ["Anna", "Sam"]},
    })
}

#[tokio::test]
async fn an_operator_creates_a_tenant_that_connects_itself_and_can_switch_its_whatsapp_off() {
    // Arrange
    let t = TestFleet::start_with(|s| {
        s.operator_key = Some(wafleet_core::config::Secret::new(OPERATOR_KEY))
    })
    .await;
    let create = Some(json!({"name": "Gamma Recruitment"}));

    // Act: only the operator key creates a tenant.
    let (anonymous, _) = t
        .call(Method::POST, "/v1/operator/tenants", None, create.clone())
        .await;
    let (tenant_key, _) = t
        .admin(Method::POST, "/v1/operator/tenants", create.clone())
        .await;
    let (created, tenant) = t
        .call(
            Method::POST,
            "/v1/operator/tenants",
            Some(OPERATOR_KEY),
            create,
        )
        .await;

    // Assert
    assert_eq!((anonymous.as_u16(), tenant_key.as_u16()), (401, 401));
    assert_eq!(created, 201, "{tenant}");
    let tenant_id: wafleet_core::domain::TenantId =
        tenant["tenant_id"].as_str().unwrap().parse().unwrap();
    let api_key = tenant["api_key"].as_str().unwrap().to_owned();

    // Act: the company connects itself with the key it got; the operator lists it.
    let company = t.embedded_signup_in_browser(6, 1, tenant_id, api_key).await;
    let (signed_up, signup) = t.run_signup(&company).await;
    assert_eq!(signed_up, 200, "{signup}");
    let (_, list) = t
        .call(
            Method::GET,
            "/v1/operator/tenants",
            Some(OPERATOR_KEY),
            None,
        )
        .await;

    // Assert
    let listed: Vec<&Value> = list["tenants"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2, "{list}");
    let gamma = listed
        .iter()
        .find(|x| x["id"] == tenant_id.to_string())
        .expect("listed");
    assert_eq!(gamma["name"], "Gamma Recruitment");
    assert_eq!(gamma["waba_id"], company.waba_id);
    assert_eq!(gamma["connection_status"], "connected");
    assert_eq!(gamma["senders"], 1);
    assert_eq!(gamma["whatsapp_enabled"], true);

    // Act: switched off, a send is refused; a candidate's reply is still recorded.
    t.as_company(&company, Method::POST, "/v1/templates/sync", None)
        .await;
    let path = format!("/v1/operator/tenants/{tenant_id}");
    let (disabled, off) = t
        .call(
            Method::POST,
            &format!("{path}/disable"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    let number = &company.numbers[0].0;
    let (refused, problem) = t
        .as_company(
            &company,
            Method::POST,
            "/v1/messages",
            Some(template(number, "C-OFF")),
        )
        .await;
    t.sim(
        Method::POST,
        "/_sim/inbound",
        json!({"phone_number_id": number, "from": "+447400123456", "text": "Still interested"}),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let inbound = loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE tenant_id = $1 AND direction = 'in'",
        )
        .bind(tenant_id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
        if n > 0 || std::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (enabled, on) = t
        .call(
            Method::POST,
            &format!("{path}/enable"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    let (accepted, _) = t
        .as_company(
            &company,
            Method::POST,
            "/v1/messages",
            Some(template(number, "C-ON")),
        )
        .await;

    // Assert
    assert_eq!(disabled, 200, "{off}");
    assert_eq!(off["whatsapp_enabled"], false);
    assert!(off["whatsapp_changed_at"].is_string());
    assert_eq!(refused, 403, "{problem}");
    assert_eq!(problem["code"], "whatsapp_disabled");
    assert_eq!(
        inbound, 1,
        "the webhook of a disabled tenant is still recorded"
    );
    assert_eq!(
        (enabled, &on["whatsapp_enabled"]),
        (reqwest::StatusCode::OK, &json!(true))
    );
    assert_eq!(accepted, 202);
    t.stop().await;
}

#[tokio::test]
async fn without_an_operator_key_configured_no_key_opens_the_operator_routes() {
    // Arrange: no WAFLEET_OPERATOR_KEY.
    let t = TestFleet::start().await;

    // Act
    let (status, problem) = t.admin(Method::GET, "/v1/operator/tenants", None).await;
    let (empty, _) = t
        .call(Method::GET, "/v1/operator/tenants", Some(""), None)
        .await;

    // Assert
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["code"], "unauthorized");
    assert_eq!(empty, 401);
    t.stop().await;
}
