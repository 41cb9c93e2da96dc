//! Meta's webhooks: only signed ones count; every item of a batch is applied; statuses move
//! forward only; duplicates change nothing.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet_tests::{CANDIDATE, TestFleet};

async fn count(t: &TestFleet, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&t.pool).await.unwrap()
}

fn status(wamid: &str, status: &str, at: i64) -> Value {
    json!({"id": wamid, "status": status, "timestamp": at.to_string(), "recipient_id": CANDIDATE.trim_start_matches('+')})
}

/// Sends `n` templates whose simulated webhooks never arrive (the test posts its own), and
/// returns (message id, wamid) once each is `sent`.
async fn sent_messages(t: &TestFleet, n: usize) -> Vec<(String, String)> {
    t.sim(
        reqwest::Method::PUT,
        "/_sim/config",
        json!({"webhook_url": "http://127.0.0.1:9/nowhere"}),
    )
    .await;
    let mut out = Vec::new();
    for i in 0..n {
        let (_, b) = t
            .send(TestFleet::template_request(&format!("W-{i}")), None)
            .await;
        let id = b["id"].as_str().unwrap().to_owned();
        let m = t.wait_for_state(&id, "sent").await;
        out.push((id, m["wamid"].as_str().unwrap().to_owned()));
    }
    out
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_webhook_with_a_bad_or_missing_signature_is_refused_and_writes_nothing() {
    let t = TestFleet::start().await;
    let body = t.status_payload(vec![status("wamid.X", "delivered", 1_700_000_000)]);

    assert_eq!(t.post_webhook(&body, Some("not-the-app-secret")).await, 401);
    assert_eq!(t.post_webhook(&body, None).await, 401);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&t, "SELECT count(*) FROM status_receipts").await, 0);
    assert_eq!(count(&t, "SELECT count(*) FROM dead_webhooks").await, 0);
    assert_eq!(count(&t, "SELECT count(*) FROM parked_statuses").await, 0);
    t.stop().await;
}

#[tokio::test]
async fn a_batched_webhook_with_statuses_for_three_messages_updates_all_three() {
    let t = TestFleet::start().await;
    let messages = sent_messages(&t, 3).await;
    let now = chrono::Utc::now().timestamp();

    let body = t.status_payload(
        messages
            .iter()
            .map(|(_, w)| status(w, "delivered", now))
            .collect(),
    );
    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);

    for (id, _) in &messages {
        t.wait_for_state(id, "delivered").await;
    }
    t.stop().await;
}

#[tokio::test]
async fn a_late_sent_after_read_changes_nothing_and_a_duplicate_changes_nothing() {
    let t = TestFleet::start().await;
    let (id, wamid) = sent_messages(&t, 1).await.remove(0);
    let now = chrono::Utc::now().timestamp();
    let read = t.status_payload(vec![status(&wamid, "read", now)]);
    assert_eq!(t.post_webhook(&read, Some(&t.app_secret)).await, 200);
    let before = t.wait_for_state(&id, "read").await;

    // The same delivery again (Meta retries), then a `sent` that arrives late.
    assert_eq!(t.post_webhook(&read, Some(&t.app_secret)).await, 200);
    let late = t.status_payload(vec![status(&wamid, "sent", now + 5)]);
    assert_eq!(t.post_webhook(&late, Some(&t.app_secret)).await, 200);
    wait_until("the late sent to be received", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM status_receipts WHERE status = 'sent'")
            .fetch_one(&t.pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    wait_until("the duplicate to be counted", async || {
        let (_, m) = t.get(&format!("/v1/messages/{id}")).await;
        m["events"] == before["events"]
    })
    .await;

    let (_, after) = t.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(after["state"], "read");
    assert_eq!(after["events"], before["events"], "no new events");
    t.stop().await;
}

#[tokio::test]
async fn a_signed_but_unreadable_webhook_is_kept_raw_and_acknowledged() {
    let t = TestFleet::start().await;
    let body = b"{\"object\": \"whatsapp_business_account\", \"entry\": [";

    assert_eq!(t.post_webhook(body, Some(&t.app_secret)).await, 200);

    wait_until("the body to be kept", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM dead_webhooks WHERE reason = 'invalid_json'",
        )
        .fetch_one(&t.pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    let kept: Vec<u8> = sqlx::query_scalar("SELECT body FROM dead_webhooks")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(kept, body);
    t.stop().await;
}

#[tokio::test]
async fn the_subscription_handshake_echoes_the_challenge_only_for_the_right_token() {
    let t = TestFleet::start().await;
    let global = t.settings.meta_verify_token.clone().unwrap();
    let url = |path: &str, token: &str| {
        format!(
            "{}{path}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            t.fleet.webhooks_url
        )
    };

    let ok = t
        .http
        .get(url("/webhooks/meta", global.expose()))
        .send()
        .await
        .unwrap();
    let wrong = t
        .http
        .get(url("/webhooks/meta", "guess"))
        .send()
        .await
        .unwrap();
    let tenant_path = format!("/webhooks/meta/{}", t.tenant_id);
    let tenant_token: String = format!("tenant-{}", global.expose());

    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(wrong.status(), 403);
    let tenant_ok = t
        .http
        .get(url(&tenant_path, &tenant_token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tenant_ok.status(),
        200,
        "the tenant's own verify token works on its own route"
    );
    let tenant_wrong = t
        .http
        .get(url(&tenant_path, global.expose()))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant_wrong.status(), 403);
    t.stop().await;
}

#[tokio::test]
async fn a_late_failure_after_read_keeps_read_and_tells_upstream_nothing_new() {
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let mut sent = sent_messages(&t, 2).await;
    let (id, wamid) = sent.remove(0);
    let (later_id, later_wamid) = sent.remove(0);
    let now = chrono::Utc::now().timestamp();
    let read = t.status_payload(vec![status(&wamid, "read", now)]);
    assert_eq!(t.post_webhook(&read, Some(&t.app_secret)).await, 200);
    t.wait_for_state(&id, "read").await;

    let mut failed = status(&wamid, "failed", now + 5);
    failed["errors"] = json!([{"code": 131026, "title": "Message undeliverable"}]);
    let late = t.status_payload(vec![failed]);
    assert_eq!(t.post_webhook(&late, Some(&t.app_secret)).await, 200);
    wait_until("the late failure to be received", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM status_receipts WHERE status = 'failed'")
            .fetch_one(&t.pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    // Events leave in the order of the changes: once a later change reaches upstream, anything
    // the late failure had announced would have reached it before.
    let marker = t.status_payload(vec![status(&later_wamid, "read", now + 6)]);
    assert_eq!(t.post_webhook(&marker, Some(&t.app_secret)).await, 200);
    events
        .wait_for("status", "the later message's read", |e| {
            e["message_id"] == later_id.as_str() && e["status"] == "read"
        })
        .await;

    let (_, after) = t.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(after["state"], "read");
    assert_eq!(after["reason"], serde_json::Value::Null, "{after}");
    let failures_announced = events
        .of_kind("status")
        .into_iter()
        .filter(|e| e["message_id"] == id.as_str() && e["status"] == "failed")
        .count();
    assert_eq!(
        failures_announced, 0,
        "upstream was told of a failure that changed nothing"
    );
    t.stop().await;
}
