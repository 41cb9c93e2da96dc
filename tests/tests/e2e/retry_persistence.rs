//! SPEC §7: "Meta down or throttling: messages wait and retry per the error class; nothing is
//! marked failed that could still be sent." An outage or a throttle that outlasts the retry tiers
//! keeps the message coming back on the longest tier until Meta takes it; only `retry_for` after
//! it was accepted does it end `failed` (`retries_exhausted`). The test fleet's tiers are 300 ms
//! and 1 s, so two failures spend them.

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wafleet_tests::{TestFleet, id_of};

/// Meta answers `code` (with `http_status`) five times, more than the tiers allow, then accepts.
async fn an_outage_longer_than_the_tiers_ends_sent(code: i64, http_status: u16) {
    let t = TestFleet::start().await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "code": code, "http_status": http_status, "times": 5}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("RP-1"), None).await;
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "read").await;

    let codes = t.meta_answers_for(&id).await;
    assert_eq!(
        codes,
        [
            Some(code),
            Some(code),
            Some(code),
            Some(code),
            Some(code),
            None
        ],
        "every failure was retried, and Meta got the message once"
    );
    assert_eq!(m["state"], "read");
    t.stop().await;
}

#[tokio::test]
async fn a_meta_outage_that_outlasts_the_retry_tiers_is_sent_once_meta_is_back() {
    an_outage_longer_than_the_tiers_ends_sent(2, 503).await;
}

#[tokio::test]
async fn a_sender_throttled_for_longer_than_the_retry_tiers_is_sent_once_the_throttle_lifts() {
    an_outage_longer_than_the_tiers_ends_sent(130429, 400).await;
}

#[tokio::test]
async fn a_message_meta_keeps_refusing_transiently_fails_only_after_retry_for() {
    let t = TestFleet::start_with(|s| s.dispatch.retry_for = Duration::from_secs(4)).await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "code": 2, "http_status": 503, "times": 1000}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("RP-2"), None).await;
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "failed").await;

    assert_eq!(m["reason"], "retries_exhausted");
    assert_eq!(m["error"]["code"], 2);
    let accepted = chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap()).unwrap();
    let failed_at = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["state"] == "failed")
        .and_then(|e| e["at"].as_str())
        .map(|at| chrono::DateTime::parse_from_rfc3339(at).unwrap())
        .expect("a failed event");
    assert!(
        failed_at - accepted >= chrono::Duration::seconds(4),
        "gave up only after retry_for: accepted {accepted}, failed {failed_at}"
    );
    assert!(
        t.sends_for(&id).await.len() > 3,
        "kept trying after the two tiers were spent"
    );
    t.stop().await;
}
