//! API keys and roles, tenant isolation and templates, through the HTTP API on the real
//! database and the simulator.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::TestFleet;

#[tokio::test]
async fn a_key_is_shown_once_listed_by_prefix_and_stops_working_when_revoked() {
    // Arrange
    let t = TestFleet::start().await;

    // Act
    let (created, key) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "reader", "label": "dashboard"})),
        )
        .await;
    let reader = key["key"].as_str().unwrap().to_owned();
    let (works, _) = t
        .call(Method::GET, "/v1/senders", Some(&reader), None)
        .await;
    let (cannot_mint, _) = t
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(&reader),
            Some(json!({"role": "admin"})),
        )
        .await;
    let (cannot_send, _) = t
        .call(
            Method::POST,
            "/v1/messages",
            Some(&reader),
            Some(TestFleet::template_request("C-9")),
        )
        .await;
    let (_, list) = t.admin(Method::GET, "/v1/api-keys", None).await;
    let (revoked, _) = t
        .admin(
            Method::DELETE,
            &format!("/v1/api-keys/{}", key["id"].as_str().unwrap()),
            None,
        )
        .await;
    let (after, problem) = t
        .call(Method::GET, "/v1/senders", Some(&reader), None)
        .await;

    // Assert
    assert_eq!(created, 201);
    assert!(reader.starts_with(&format!("wf_{}_", key["prefix"].as_str().unwrap())));
    assert_eq!(
        (works, cannot_mint, cannot_send),
        (
            200.try_into().unwrap(),
            403.try_into().unwrap(),
            403.try_into().unwrap()
        )
    );
    let listed = list["api_keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!list.to_string().contains(&reader));
    assert_eq!(listed[0]["label"], "dashboard");
    assert_eq!(listed[0]["role"], "reader");
    assert_eq!(revoked, 200);
    assert_eq!(after, 401);
    assert_eq!(problem["code"], "unauthorized");
    t.stop().await;
}

#[tokio::test]
async fn an_admin_key_cannot_revoke_itself_and_an_unknown_role_is_refused() {
    // Arrange
    let t = TestFleet::start().await;
    let (_, list) = t.admin(Method::GET, "/v1/api-keys", None).await;
    let own = list["api_keys"][0]["id"].as_str().unwrap().to_owned();

    // Act
    let (status, problem) = t
        .admin(Method::DELETE, &format!("/v1/api-keys/{own}"), None)
        .await;
    let (role, role_problem) = t
        .admin(Method::POST, "/v1/api-keys", Some(json!({"role": "owner"})))
        .await;

    // Assert
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "own_key");
    assert_eq!(role, 422);
    assert_eq!(role_problem["field"], "role");
    t.stop().await;
}

#[tokio::test]
async fn a_key_of_one_tenant_sees_and_changes_nothing_of_another() {
    // Arrange: tenant B with a message, a sender, a template, settings and keys of its own.
    let t = TestFleet::start().await;
    let b = t.other_tenant("globex", "+442079460123").await;
    let b_key = Some(b.api_key.as_str());
    t.call(
        Method::PUT,
        "/v1/templates/globex_only/en_GB/bindings",
        b_key,
        Some(json!({"bindings": [{"param": "1", "merge_code": "KNOWNAS"}]})),
    )
    .await;
    let (_, sent) = t
        .call(Method::POST, "/v1/messages", b_key, Some(json!({
            "to": wafleet_tests::CANDIDATE, "record": {"type": "candidate", "id": "B-1"},
            "template": {"name": "globex_only", "language": "en_GB"}, "merge_fields": {"KNOWNAS": "Bo"}
        })))
        .await;
    assert!(sent["id"].is_string(), "{sent}");
    let b_message = sent["id"].as_str().unwrap().to_owned();
    let (_, b_senders) = t.call(Method::GET, "/v1/senders", b_key, None).await;
    let b_sender = b_senders["senders"][0]["id"].as_str().unwrap().to_owned();
    let (_, b_keys) = t.call(Method::GET, "/v1/api-keys", b_key, None).await;
    let b_key_id = b_keys["api_keys"][0]["id"].as_str().unwrap().to_owned();
    t.call(
        Method::PUT,
        "/v1/settings",
        b_key,
        Some(json!({"bulk_reserve_percent": 40})),
    )
    .await;

    // Act: tenant A's admin key tries everything on B's things.
    let (message, _) = t.get(&format!("/v1/messages/{b_message}")).await;
    let (_, history) = t.get("/v1/records/candidate/B-1/messages").await;
    let (sender, _) = t.get(&format!("/v1/senders/{b_sender}")).await;
    let (edit, _) = t
        .admin(
            Method::PATCH,
            &format!("/v1/senders/{b_sender}"),
            Some(json!({"friendly_name": "hijacked"})),
        )
        .await;
    let (code, _) = t
        .admin(
            Method::POST,
            &format!("/v1/senders/{b_sender}/request_code"),
            Some(json!({"code_method": "SMS"})),
        )
        .await;
    let (revoke, _) = t
        .admin(Method::DELETE, &format!("/v1/api-keys/{b_key_id}"), None)
        .await;
    let (bind, _) = t
        .admin(
            Method::PUT,
            "/v1/templates/globex_only/en_GB/bindings",
            Some(json!({"bindings": [{"param": "1", "merge_code": "KNOWNAS"}]})),
        )
        .await;
    let (_, a_settings) = t.get("/v1/settings").await;
    let (_, a_senders) = t.get("/v1/senders").await;
    let (_, a_templates) = t.get("/v1/templates").await;
    let (_, a_keys) = t.admin(Method::GET, "/v1/api-keys", None).await;

    // Assert: A sees none of B, and B's things are as B left them.
    assert_eq!(message, 404);
    assert_eq!(history["messages"], json!([]));
    assert_eq!(
        (sender, edit, code, revoke, bind),
        (
            404.try_into().unwrap(),
            404.try_into().unwrap(),
            404.try_into().unwrap(),
            404.try_into().unwrap(),
            404.try_into().unwrap()
        )
    );
    assert_eq!(a_settings["bulk_reserve_percent"], 10);
    let a_sender_ids: Vec<&Value> = a_senders["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert!(!a_sender_ids.contains(&&json!(b_sender)));
    assert!(!a_templates.to_string().contains("globex_only"));
    assert!(!a_keys.to_string().contains(&b_key_id));
    let (_, b_sender_after) = t
        .call(Method::GET, &format!("/v1/senders/{b_sender}"), b_key, None)
        .await;
    assert_eq!(b_sender_after["friendly_name"], "");
    let (b_still, _) = t.call(Method::GET, "/v1/api-keys", b_key, None).await;
    assert_eq!(b_still, 200);
    let (_, b_settings) = t.call(Method::GET, "/v1/settings", b_key, None).await;
    assert_eq!(b_settings["bulk_reserve_percent"], 40);
    t.stop().await;
}

#[tokio::test]
async fn templates_sync_every_page_and_show_parameters_and_bindings() {
    // Arrange: more templates than one page of Meta's listing holds.
    let t = TestFleet::start().await;
    for i in 0..105 {
        t.sim(
            Method::POST,
            "/_sim/templates",
            json!({
                "waba_id": t.waba_id, "name": format!("bulk_{i:03}"), "language": "en_GB",
                "category": "MARKETING", "body_text": "Hello {{first_name}}, meet {{consultant}}",
                "parameter_format": "NAMED",
            }),
        )
        .await;
    }

    // Act
    let (synced, body) = t.admin(Method::POST, "/v1/templates/sync", None).await;
    let (bound, binding) = t
        .admin(Method::PUT, "/v1/templates/bulk_007/en_GB/bindings", Some(json!({"bindings": [
            {"param": "first_name", "merge_code": "KNOWNAS"}, {"param": "consultant", "merge_code": "CONSULTANTUSERNAME"}
        ]})))
        .await;
    let (bad, bad_problem) = t
        .admin(
            Method::PUT,
            "/v1/templates/bulk_007/en_GB/bindings",
            Some(json!({"bindings": [{"param": "3", "merge_code": "KNOWNAS"}]})),
        )
        .await;
    let (_, list) = t.get("/v1/templates").await;

    // Assert
    assert_eq!(synced, 200, "{body}");
    assert_eq!(body["synced"], 107);
    assert_eq!(bound, 200, "{binding}");
    assert_eq!(bad, 422);
    assert_eq!(bad_problem["field"], "bindings[0].param");
    let templates = list["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 107);
    let job = templates
        .iter()
        .find(|x| x["name"] == "job_opportunity")
        .unwrap();
    assert_eq!(
        job["components"][0],
        json!({"type": "BODY", "parameter_count": 2, "parameters": ["1", "2"]})
    );
    assert_eq!(
        job["bindings"][0],
        json!({"param": "1", "merge_code": "KNOWNAS"})
    );
    let bulk = templates.iter().find(|x| x["name"] == "bulk_007").unwrap();
    assert_eq!(bulk["parameter_format"], "NAMED");
    assert_eq!(bulk["bindings"][1]["merge_code"], "CONSULTANTUSERNAME");
    t.stop().await;
}
