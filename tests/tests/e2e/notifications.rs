//! What upstream sees on `<p>.events`, and the effects of what candidates and Meta report:
//! every status change, inbound replies, opt-outs (STOP/START, 131050, user_preferences) and
//! the 24 h deferral on 131049.

use serde_json::{Value, json};
use wafleet_tests::{CANDIDATE, TestFleet};

/// Sends one template whose simulated webhooks never arrive (the test posts its own) and
/// returns (message id, wamid) once it is `sent`.
async fn sent_message(t: &TestFleet, record: &str) -> (String, String) {
    t.sim(
        reqwest::Method::PUT,
        "/_sim/config",
        json!({"webhook_url": "http://127.0.0.1:9/nowhere"}),
    )
    .await;
    let (_, b) = t.send(TestFleet::template_request(record), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let m = t.wait_for_state(&id, "sent").await;
    (id, m["wamid"].as_str().unwrap().to_owned())
}

fn failed(wamid: &str, code: i64, at: i64) -> Value {
    json!({"id": wamid, "status": "failed", "timestamp": at.to_string(),
           "recipient_id": CANDIDATE.trim_start_matches('+'),
           "errors": [{"code": code, "title": "error", "error_data": {"details": "…"}}]})
}

#[tokio::test]
async fn upstream_is_told_of_every_status_change_and_of_the_reply() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;

    let (_, b) = t.send(TestFleet::template_request("N-1"), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    t.wait_for_state(&id, "read").await;
    t.sim(
        reqwest::Method::POST,
        "/_sim/inbound",
        json!({"phone_number_id": t.phone_number_id, "from": CANDIDATE, "text": "Sounds good"}),
    )
    .await;

    // `delivered` may arrive after `read` (Meta's POSTs race) and then changes nothing.
    for status in ["sent", "read"] {
        let e = events
            .wait_for("status", status, |e| {
                e["message_id"] == id && e["status"] == status
            })
            .await;
        assert_eq!(e["record"], json!({"type": "candidate", "id": "N-1"}));
        assert_eq!(e["tenant_id"], t.tenant_id.to_string());
    }
    let reply = events
        .wait_for("inbound", "reply", |e| e["text"] == "Sounds good")
        .await;
    assert_eq!(reply["from"], CANDIDATE);
    assert_eq!(reply["record"], json!({"type": "candidate", "id": "N-1"}));
    t.stop().await;
}

#[tokio::test]
async fn a_stop_reply_opts_the_candidate_out_and_start_opts_them_back_in() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let now = chrono::Utc::now().timestamp();
    let text = |id: &str, body: &str, at: i64| {
        json!({"from": CANDIDATE.trim_start_matches('+'), "id": id, "timestamp": at.to_string(),
               "type": "text", "text": {"body": body}})
    };

    let stop = t.inbound_payload(vec![text("wamid.stop", "  Stop ", now)]);
    assert_eq!(t.post_webhook(&stop, Some(&t.app_secret)).await, 200);
    let out = events
        .wait_for("optout", "opt-out", |e| e["action"] == "opted_out")
        .await;
    t.wait_for_count(
        "SELECT count(*) FROM opt_outs WHERE scope = 'all' AND source = 'keyword'",
        1,
    )
    .await;

    let start = t.inbound_payload(vec![text("wamid.start", "start", now + 1)]);
    assert_eq!(t.post_webhook(&start, Some(&t.app_secret)).await, 200);
    let back = events
        .wait_for("optout", "opt-in", |e| e["action"] == "opted_in")
        .await;

    assert_eq!(out["recipient"], CANDIDATE);
    assert_eq!(out["scope"], "all");
    assert_eq!(back["source"], "keyword");
    t.wait_for_count("SELECT count(*) FROM opt_outs", 0).await;
    t.stop().await;
}

#[tokio::test]
async fn a_131050_failure_opts_the_candidate_out_of_marketing_until_they_resume() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let (id, wamid) = sent_message(&t, "N-2").await;
    let now = chrono::Utc::now().timestamp();

    let body = t.status_payload(vec![failed(&wamid, 131_050, now)]);
    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);
    let m = t.wait_for_state(&id, "failed").await;
    let out = events
        .wait_for("optout", "marketing opt-out", |e| {
            e["source"] == "meta_131050"
        })
        .await;
    // Meta (the simulator, now posting to us again) reports that the user resumed.
    t.sim(
        reqwest::Method::PUT,
        "/_sim/config",
        json!({"webhook_url": format!("{}/webhooks/meta", t.fleet.webhooks_url)}),
    )
    .await;
    t.sim(
        reqwest::Method::POST,
        "/_sim/account_events",
        json!({"waba_id": t.waba_id, "field": "user_preferences", "value": {"messaging_product": "whatsapp",
            "contacts": [{"wa_id": CANDIDATE.trim_start_matches('+'), "profile": {"name": "Anna"}}],
            "user_preferences": [{"wa_id": CANDIDATE.trim_start_matches('+'), "detail": "User requested to resume marketing messages",
                                  "category": "marketing_messages", "value": "resume", "timestamp": now + 60}]}}),
    )
    .await;
    let back = events
        .wait_for("optout", "resume", |e| e["action"] == "opted_in")
        .await;

    assert_eq!(m["reason"], "meta_131050");
    assert_eq!(out["scope"], "marketing");
    assert_eq!(back["source"], "user_preferences");
    t.wait_for_count("SELECT count(*) FROM opt_outs", 0).await;
    events
        .wait_for("status", "failed", |e| {
            e["message_id"] == id && e["status"] == "failed"
        })
        .await;
    t.stop().await;
}

#[tokio::test]
async fn a_131049_failure_defers_the_message_for_24_hours_and_holds_the_recipient() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let (id, wamid) = sent_message(&t, "N-3").await;
    let now = chrono::Utc::now().timestamp();

    let body = t.status_payload(vec![failed(&wamid, 131_049, now)]);
    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);

    let m = t.wait_for_state(&id, "deferred").await;
    assert_eq!(m["reason"], "recipient_engagement_limit");
    let e = events
        .wait_for("status", "deferral", |e| {
            e["message_id"] == id && e["status"] == "deferred"
        })
        .await;
    assert_eq!(e["reason"], "recipient_engagement_limit");
    let (not_before, held): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT m.not_before, h.until FROM messages m
             JOIN recipient_holds h ON h.tenant_id = m.tenant_id AND h.recipient = m.recipient
             WHERE m.id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(not_before.timestamp(), now + 24 * 3600);
    assert_eq!(held, not_before);
    t.stop().await;
}

#[tokio::test]
async fn a_user_known_only_by_a_business_scoped_id_can_opt_out_through_the_tenants_own_app() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": t.waba_id, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "442071838750", "phone_number_id": t.phone_number_id},
            "contacts": [{"profile": {"name": "Anna"}, "user_id": "GB.1349875623"}],
            "messages": [{"from_user_id": "GB.1349875623", "id": "wamid.bsuid", "timestamp": now.to_string(),
                          "type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}}],
        }}]}],
    }))
    .unwrap();

    let status = t
        .http
        .post(format!(
            "{}/webhooks/meta/{}",
            t.fleet.webhooks_url, t.tenant_id
        ))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            wafleet_webhooks::signature::sign(&t.app_secret, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();

    assert_eq!(status, 200);
    let inbound = events
        .wait_for("inbound", "button", |e| e["wamid"] == "wamid.bsuid")
        .await;
    assert_eq!(inbound["from"], Value::Null);
    assert_eq!(inbound["from_user_id"], "GB.1349875623");
    let out = events
        .wait_for("optout", "opt-out", |e| e["recipient"] == "GB.1349875623")
        .await;
    assert_eq!(
        (out["scope"].as_str(), out["source"].as_str()),
        (Some("all"), Some("keyword"))
    );
    t.stop().await;
}
