//! Meta's other webhook fields (templates, sender quality and name, the messaging tier, account
//! restrictions), every inbound message kind, and payloads that are large, escaped, partly
//! bad, duplicated or out of order.

use serde_json::{Value, json};
use wafleet_tests::{CANDIDATE, SENDER_PHONE, TestFleet};

async fn one<T>(t: &TestFleet, sql: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(&t.pool).await.unwrap()
}

#[tokio::test]
async fn template_sender_tier_and_account_updates_are_recorded_and_a_bad_item_stops_nothing() {
    let t = TestFleet::start().await;
    let at = chrono::Utc::now().timestamp();
    let template =
        |name: &str| json!({"message_template_name": name, "message_template_language": "en_GB"});
    let mut paused = template("job_opportunity");
    paused["event"] = json!("PAUSED");
    paused["message_template_id"] = json!(1_234_567);
    paused["reason"] = json!(null);
    paused["other_info"] = json!({"title": "FIRST_PAUSE", "description": "low quality"});
    let mut recategorised = template("gdpr_consent_request");
    recategorised["previous_category"] = json!("UTILITY");
    recategorised["new_category"] = json!("MARKETING");
    let display = SENDER_PHONE.trim_start_matches('+');
    let body = t.field_payload(
        vec![
            ("message_template_status_update", paused),
            ("template_category_update", recategorised),
            ("message_template_status_update", json!({"event": "PAUSED"})),
            ("phone_number_quality_update", json!({"display_phone_number": display, "event": "THROUGHPUT_UPGRADE", "max_daily_conversations_per_business": "TIER_10K"})),
            ("phone_number_name_update", json!({"display_phone_number": display, "decision": "APPROVED", "requested_verified_name": "Acme Careers"})),
            ("account_update", json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": at + 86_400}]})),
            ("a_field_from_the_future", json!({"anything": true})),
        ],
        at,
    );

    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);

    t.wait_for_count("SELECT count(*) FROM dead_webhooks", 2)
        .await;
    let (status, paused_until): (String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT status, paused_until FROM templates WHERE name = 'job_opportunity' AND language = 'en_GB'",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(status, "PAUSED");
    assert_eq!(
        paused_until.timestamp(),
        at + 3 * 3600,
        "a first pause lasts 3 h"
    );
    let category: String = one(
        &t,
        "SELECT category FROM templates WHERE name = 'gdpr_consent_request'",
    )
    .await;
    assert_eq!(category, "MARKETING");
    let (mps, name_status, name): (Option<i32>, Option<String>, String) =
        sqlx::query_as("SELECT throughput_mps, name_status, display_name FROM senders")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(
        (mps, name_status.as_deref(), name.as_str()),
        (Some(1000), Some("APPROVED"), "Acme Careers")
    );
    let (tier, restricted): (Option<i32>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT meta_tier, account_restricted_until FROM tenant_settings")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(tier, Some(10_000));
    assert_eq!(restricted.map(|r| r.timestamp()), Some(at + 86_400));
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM dead_webhooks ORDER BY reason")
            .fetch_all(&t.pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [
            "bad_change:message_template_status_update",
            "unhandled_field:a_field_from_the_future"
        ]
    );
    t.stop().await;
}

#[tokio::test]
async fn an_older_update_arriving_late_and_a_duplicate_change_nothing() {
    let t = TestFleet::start().await;
    let at = chrono::Utc::now().timestamp();
    let tier = |v: Value, at: i64| {
        t.field_payload(vec![("business_capability_update", json!({"max_daily_conversations_per_business": v, "max_phone_numbers_per_business": 20}))], at)
    };
    let newer = tier(json!(100_000), at);
    let older = tier(json!("TIER_2K"), at - 600);

    assert_eq!(t.post_webhook(&newer, Some(&t.app_secret)).await, 200);
    assert_eq!(t.post_webhook(&older, Some(&t.app_secret)).await, 200);
    assert_eq!(t.post_webhook(&newer, Some(&t.app_secret)).await, 200);

    t.wait_for_count("SELECT count(*) FROM webhook_receipts", 2)
        .await;
    // A marker posted last: once it is applied, everything before it has been handled.
    let marker = t.field_payload(
        vec![(
            "phone_number_name_update",
            json!({"display_phone_number": SENDER_PHONE, "decision": "DEFERRED"}),
        )],
        at,
    );
    assert_eq!(t.post_webhook(&marker, Some(&t.app_secret)).await, 200);
    t.wait_for_count(
        "SELECT count(*) FROM senders WHERE name_status = 'DEFERRED'",
        1,
    )
    .await;
    let tier: Option<i32> = one(&t, "SELECT meta_tier FROM tenant_settings").await;
    assert_eq!(tier, Some(100_000));
    let receipts: i64 = one(&t, "SELECT count(*) FROM webhook_receipts").await;
    assert_eq!(receipts, 3, "the duplicate added no receipt");
    t.stop().await;
}

#[tokio::test]
async fn every_inbound_kind_is_kept_with_its_content_including_escaped_text() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let from = CANDIDATE.trim_start_matches('+');
    let ts = chrono::Utc::now().timestamp().to_string();
    let msg = |id: &str, kind: &str, body: Value| {
        let mut m = json!({"from": from, "id": id, "timestamp": ts, "type": kind});
        m[kind] = body;
        m
    };
    let media = |caption: Option<&str>| json!({"id": "1234", "mime_type": "image/jpeg", "sha256": "abc=", "caption": caption, "url": "https://lookaside.example/1234"});
    let mut button = msg(
        "wamid.k1",
        "button",
        json!({"payload": "INTERESTED", "text": "I'm interested"}),
    );
    button["context"] =
        json!({"from": SENDER_PHONE.trim_start_matches('+'), "id": "wamid.template"});
    let mut unsupported =
        json!({"from": from, "id": "wamid.k13", "timestamp": ts, "type": "unsupported"});
    unsupported["errors"] = json!([{"code": 131_051, "title": "Message type unknown"}]);
    let messages = vec![
        msg(
            "wamid.k0",
            "text",
            json!({"body": "Merci, très intéressée"}),
        ),
        button,
        msg(
            "wamid.k2",
            "interactive",
            json!({"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}),
        ),
        msg(
            "wamid.k3",
            "interactive",
            json!({"type": "list_reply", "list_reply": {"id": "mon", "title": "Monday", "description": "9-12"}}),
        ),
        msg("wamid.k4", "image", media(Some("my CV"))),
        msg("wamid.k5", "audio", media(None)),
        msg("wamid.k6", "video", media(None)),
        msg(
            "wamid.k7",
            "document",
            json!({"id": "9", "mime_type": "application/pdf", "sha256": "x", "filename": "cv.pdf"}),
        ),
        msg(
            "wamid.k8",
            "sticker",
            json!({"id": "8", "mime_type": "image/webp", "sha256": "y", "animated": false}),
        ),
        msg(
            "wamid.k9",
            "location",
            json!({"latitude": 51.5, "longitude": -0.12, "name": "Office", "address": "1 Main St"}),
        ),
        msg(
            "wamid.k10",
            "contacts",
            json!([{"name": {"formatted_name": "Bob"}, "phones": [{"phone": "+447400000001"}]}]),
        ),
        msg(
            "wamid.k11",
            "reaction",
            json!({"message_id": "wamid.template", "emoji": "👍"}),
        ),
        msg(
            "wamid.k12",
            "system",
            json!({"type": "user_changed_number", "body": "Anna changed her number", "wa_id": "447400999999"}),
        ),
        unsupported,
        msg(
            "wamid.k14",
            "order",
            json!({"catalog_id": "1", "product_items": [{"product_retailer_id": "a", "quantity": 1, "item_price": 1, "currency": "GBP"}]}),
        ),
    ];
    // Meta escapes non-ASCII as \uXXXX and signs those exact bytes.
    let body = String::from_utf8(t.inbound_payload(messages)).unwrap();
    let escaped: String = body
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                c.encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect()
            }
        })
        .collect();
    assert!(escaped.is_ascii());

    assert_eq!(
        t.post_webhook(escaped.as_bytes(), Some(&t.app_secret))
            .await,
        200
    );

    t.wait_for_count("SELECT count(*) FROM messages WHERE direction = 'in'", 15)
        .await;
    let text = events
        .wait_for("inbound", "text", |e| e["wamid"] == "wamid.k0")
        .await;
    assert_eq!(text["text"], "Merci, très intéressée");
    let reaction = events
        .wait_for("inbound", "reaction", |e| e["wamid"] == "wamid.k11")
        .await;
    assert_eq!(reaction["text"], "👍");
    let unsupported = events
        .wait_for("inbound", "unsupported", |e| e["wamid"] == "wamid.k13")
        .await;
    assert_eq!(unsupported["content"]["errors"][0]["code"], 131_051);
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT content_type FROM messages WHERE direction = 'in' ORDER BY 1",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(kinds.len(), 14);
    t.stop().await;
}

#[tokio::test]
async fn a_3_mb_webhook_is_accepted_and_applied() {
    let t = TestFleet::start().await;
    let at = chrono::Utc::now().timestamp();
    let padding = "x".repeat(3 * 1024 * 1024);
    let body = t.field_payload(
        vec![
            (
                "business_capability_update",
                json!({"max_daily_conversations_per_business": 2000}),
            ),
            (
                "message_template_components_update",
                json!({"padding": padding}),
            ),
        ],
        at,
    );
    assert!(body.len() >= 3 * 1024 * 1024);

    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);

    t.wait_for_count(
        "SELECT count(*) FROM tenant_settings WHERE meta_tier = 2000",
        1,
    )
    .await;
    t.wait_for_count(
        "SELECT count(*) FROM dead_webhooks WHERE length(body) > 3145728",
        1,
    )
    .await;
    t.stop().await;
}

#[tokio::test]
async fn duplicated_and_reordered_webhooks_from_meta_leave_one_clean_history() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    t.sim(
        reqwest::Method::PUT,
        "/_sim/config",
        json!({"duplicate_every": 2, "reorder": true}),
    )
    .await;

    let mut ids = Vec::new();
    for i in 0..4 {
        let (_, b) = t
            .send(TestFleet::template_request(&format!("D-{i}")), None)
            .await;
        ids.push(b["id"].as_str().unwrap().to_owned());
    }

    for id in &ids {
        let m = t.wait_for_state(id, "read").await;
        let trail: Vec<&str> = m["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        // Reordered, `read` may come before `delivered`, which then changes nothing.
        for (state, range) in [("sent", 1..=1), ("delivered", 0..=1), ("read", 1..=1)] {
            let n = trail.iter().filter(|s| **s == state).count();
            assert!(range.contains(&n), "{state} {n} times in {trail:?}");
        }
        events
            .wait_for("status", "read", |e| {
                e["message_id"] == *id && e["status"] == "read"
            })
            .await;
    }
    for id in &ids {
        let reads = events
            .of_kind("status")
            .iter()
            .filter(|e| e["message_id"] == *id && e["status"] == "read")
            .count();
        assert_eq!(reads, 1, "one read event per message");
    }
    t.stop().await;
}
