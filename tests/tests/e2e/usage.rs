//! Costs: `GET /v1/usage` sums what the status webhooks' `pricing` reported (each message once,
//! whatever number of statuses carried it) and prices the billable ones with the rate card
//! (`deploy/rate-card.csv`); `POST /v1/campaigns?dry_run=true` prices a campaign and creates
//! nothing; the billable metric moves by category and country.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::{TestFleet, campaigns::campaign_body, id_of, observe::metric};

const ITALIAN: &str = "+393331234567";

/// Sends a template to `to` whose simulated webhooks never arrive (the test posts its own
/// statuses); returns (message id, wamid) once it is `sent`.
async fn sent_to(t: &TestFleet, to: &str, record: &str, user: Option<&str>) -> (String, String) {
    let mut body = TestFleet::template_request(record);
    body["to"] = json!(to);
    if let Some(u) = user {
        body["user_id"] = json!(u);
    }
    let (status, b) = t.send(body, None).await;
    assert_eq!(status, 202, "{b}");
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "sent").await;
    (id, m["wamid"].as_str().unwrap().to_owned())
}

async fn usage(t: &TestFleet, group_by: &str) -> Value {
    let today = chrono::Utc::now().date_naive();
    let (status, body) = t
        .get(&format!(
            "/v1/usage?from={today}&to={today}&group_by={group_by}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn status(wamid: &str, status: &str, to: &str, pricing: Value) -> Value {
    json!({"id": wamid, "status": status, "timestamp": chrono::Utc::now().timestamp().to_string(),
           "recipient_id": to.trim_start_matches('+'), "pricing": pricing})
}

fn pricing(billable: bool, category: &str, kind: &str) -> Value {
    json!({"billable": billable, "pricing_model": "PMP", "category": category, "type": kind})
}

fn group(usage: &Value, key: Value) -> &Value {
    usage["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key} in {usage:#}"))
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[tokio::test]
async fn usage_sums_match_the_statuses_pricing_for_a_mix_of_categories_and_countries() {
    let t = TestFleet::start().await;
    t.sim(
        Method::PUT,
        "/_sim/config",
        json!({"webhook_url": "http://127.0.0.1:9/nowhere"}),
    )
    .await;
    let before = t.scrape(&t.fleet.webhooks_url).await;
    let gb = wafleet_tests::CANDIDATE;
    let (m1, marketing) = sent_to(&t, gb, "U-1", Some("consultant-7")).await;
    let (m2, utility) = sent_to(&t, ITALIAN, "U-2", Some("consultant-7")).await;
    let (m3, service) = sent_to(&t, "+447400123457", "U-3", None).await;
    let payload = t.status_payload(vec![
        status(
            &marketing,
            "sent",
            gb,
            pricing(true, "marketing", "regular"),
        ),
        status(
            &utility,
            "sent",
            ITALIAN,
            pricing(true, "utility", "regular"),
        ),
        status(
            &service,
            "sent",
            "+447400123457",
            pricing(false, "service", "free_customer_service"),
        ),
    ]);
    assert_eq!(t.post_webhook(&payload, Some(&t.app_secret)).await, 200);
    // `delivered` and `read` carry the pricing again: still one message each.
    let later = t.status_payload(vec![
        status(
            &marketing,
            "delivered",
            gb,
            pricing(true, "marketing", "regular"),
        ),
        status(
            &utility,
            "read",
            ITALIAN,
            pricing(true, "utility", "regular"),
        ),
        status(
            &service,
            "delivered",
            "+447400123457",
            pricing(false, "service", "free_customer_service"),
        ),
    ]);
    assert_eq!(t.post_webhook(&later, Some(&t.app_secret)).await, 200);
    t.wait_for_state(&m1, "delivered").await;
    t.wait_for_state(&m2, "read").await;
    t.wait_for_state(&m3, "delivered").await;

    // The rate card's 2025-07-01 prices: GB marketing 0.0529, IT utility 0.0300.
    let by_category = usage(&t, "category").await;
    let marketing = group(&by_category, json!("marketing"));
    assert_eq!(
        (
            marketing["messages"].as_i64(),
            marketing["billable"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        close(&marketing["estimated_cost_usd"], 0.0529),
        "{marketing}"
    );
    let utility = group(&by_category, json!("utility"));
    assert!(close(&utility["estimated_cost_usd"], 0.03), "{utility}");
    let service = group(&by_category, json!("service"));
    assert_eq!(
        (service["messages"].as_i64(), service["billable"].as_i64()),
        (Some(1), Some(0))
    );
    assert!(close(&service["estimated_cost_usd"], 0.0));
    assert_eq!(by_category["total"]["messages"], 3);
    assert_eq!(by_category["total"]["billable"], 2);
    assert!(
        close(&by_category["total"]["estimated_cost_usd"], 0.0829),
        "{by_category:#}"
    );
    assert_eq!(by_category["rate_card_versions"], json!(["2025-07-01"]));

    let by_country = usage(&t, "country").await;
    let gb_usage = group(&by_country, json!("GB"));
    assert_eq!(
        (gb_usage["messages"].as_i64(), gb_usage["billable"].as_i64()),
        (Some(2), Some(1))
    );
    assert!(close(&gb_usage["estimated_cost_usd"], 0.0529));
    assert_eq!(group(&by_country, json!("IT"))["messages"], 1);

    let by_user = usage(&t, "user").await;
    assert_eq!(group(&by_user, json!("consultant-7"))["messages"], 2);
    assert_eq!(group(&by_user, Value::Null)["messages"], 1);
    let by_sender = usage(&t, "sender").await;
    assert_eq!(group(&by_sender, json!(t.phone_number_id))["messages"], 3);

    let after = t.scrape(&t.fleet.webhooks_url).await;
    let moved = |labels: &[(&str, &str)]| {
        metric(&after, "wafleet_priced_messages_total", labels)
            - metric(&before, "wafleet_priced_messages_total", labels)
    };
    assert_eq!(
        moved(&[
            ("category", "marketing"),
            ("country", "GB"),
            ("billable", "true")
        ]),
        1.0
    );
    assert_eq!(
        moved(&[
            ("category", "utility"),
            ("country", "IT"),
            ("billable", "true")
        ]),
        1.0
    );
    assert_eq!(
        moved(&[
            ("category", "service"),
            ("country", "GB"),
            ("billable", "false")
        ]),
        1.0
    );

    // Another tenant sees none of it.
    let other = t.other_tenant("Other Co", "+442071838799").await;
    let today = chrono::Utc::now().date_naive();
    let (status, theirs) = t
        .call(
            Method::GET,
            &format!("/v1/usage?from={today}&to={today}"),
            Some(&other.api_key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(theirs["total"]["messages"], 0);
    assert_eq!(theirs["groups"], json!([]));
    t.stop().await;
}

#[tokio::test]
async fn usage_refuses_a_bad_period_or_grouping_naming_the_field() {
    let t = TestFleet::start().await;
    for (query, field) in [
        ("to=2026-01-31", "from"),
        ("from=2026-01-01", "to"),
        ("from=01/01/2026&to=2026-01-31", "from"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("from=2024-01-01&to=2026-01-01", "to"),
        (
            "from=2026-01-01&to=2026-01-31&group_by=template",
            "group_by",
        ),
    ] {
        let (status, problem) = t.get(&format!("/v1/usage?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
    let (status, _) = t
        .call(
            Method::GET,
            "/v1/usage?from=2026-01-01&to=2026-01-31",
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
    t.stop().await;
}

#[tokio::test]
async fn a_dry_run_prices_the_campaign_and_creates_nothing() {
    let t = TestFleet::start().await;
    let mut body = campaign_body(
        "Spring roles",
        &[wafleet_tests::CANDIDATE.to_owned(), ITALIAN.to_owned()],
    );
    let recipients = body["recipients"].as_array_mut().unwrap();
    recipients.push(recipients[0].clone());
    recipients.push(
        json!({"to": "+44-7400-24011a", "record": {"type": "candidate", "id": "BAD"},
                           "merge_fields": {"KNOWNAS": "X", "CONSULTANTUSERNAME": "Sam"}}),
    );
    let res = t
        .http
        .post(format!("{}/v1/campaigns?dry_run=true", t.fleet.ingest_url))
        .bearer_auth(&t.api_key)
        .header("Idempotency-Key", "dry-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let estimate: Value = res.json().await.unwrap();
    assert_eq!(estimate["dry_run"], true);
    assert_eq!(estimate["recipients"], 4);
    assert_eq!(estimate["accepted"], 2, "the reach: {estimate:#}");
    assert_eq!(estimate["duplicates"], 1);
    assert_eq!(
        estimate["rejected_by_code"],
        json!({"invalid_recipient": 1})
    );
    assert_eq!(estimate["category"], "utility", "the template's category");
    // Utility: GB 0.0220 + IT 0.0300.
    assert!(
        close(&estimate["estimated_cost_usd"], 0.052),
        "{estimate:#}"
    );
    assert!(close(
        &estimate["by_country"]["IT"]["estimated_cost_usd"],
        0.03
    ));
    assert_eq!(estimate["by_country"]["GB"]["recipients"], 1);
    assert_eq!(estimate["rate_card_version"], "2025-07-01");

    let (_, list) = t.get("/v1/campaigns").await;
    assert_eq!(list["campaigns"], json!([]), "nothing was created");
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(messages, 0);
    // The key was not spent on the dry run: the real creation with it goes through.
    let (status, created) = t.create_campaign(&body, Some("dry-1")).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["accepted"], 2);

    let (status, problem) = t
        .call(
            Method::POST,
            "/v1/campaigns?dry_run=perhaps",
            Some(&t.api_key),
            Some(body),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["field"], "dry_run");
    t.stop().await;
}
