//! Meta accepted a send but its answer was lost on the way back (the connection dropped, the
//! answer came after our timeout, or it could not be read). Meta may well have the message, so
//! it is never resent blindly: it waits for the status webhook, which carries our id, and that
//! settles it. Here Meta's webhooks lag behind the send longer than the first retry tier, so a
//! blind retry would have sent the candidate a second WhatsApp.

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wafleet_tests::{TestFleet, fast_release, id_of, sent_or_later};

async fn a_lost_answer_is_settled_by_the_status_webhook_and_sent_once(after_accept: &str) {
    let t = TestFleet::start_with(|s| {
        s.dispatch.graph_timeout = Duration::from_millis(500);
        s.dispatch.ambiguous_resend_after = Duration::from_secs(60);
        fast_release(s);
    })
    .await;
    t.sim(Method::PUT, "/_sim/config", json!({"status_lag_ms": 7000}))
        .await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "after_accept": after_accept,
               "latency_ms": 1500, "times": 1}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("LA-1"), None).await;
    let id = id_of(&b);
    let held = t
        .wait_for_message(&id, "held for its status", |m| {
            m["state"] == "deferred" && m["reason"] == "awaiting_status"
        })
        .await;
    let settled = t
        .wait_for_message(&id, "settled by its status webhook", sent_or_later)
        .await;

    assert!(held["not_before"].is_string(), "{held}");
    assert!(settled["wamid"].is_string(), "{settled}");
    let sends = t.sends_for(&id).await;
    assert_eq!(sends.len(), 1, "Meta got the message once: {sends:?}");
    assert_eq!(sends[0].wamid.as_deref(), settled["wamid"].as_str());
    t.stop().await;
}

#[tokio::test]
async fn an_accepted_send_whose_connection_dropped_is_settled_by_its_status_and_sent_once() {
    a_lost_answer_is_settled_by_the_status_webhook_and_sent_once("drop").await;
}

#[tokio::test]
async fn an_accepted_send_answered_after_our_timeout_is_settled_by_its_status_and_sent_once() {
    a_lost_answer_is_settled_by_the_status_webhook_and_sent_once("late").await;
}

#[tokio::test]
async fn an_accepted_send_with_an_unreadable_answer_is_settled_by_its_status_and_sent_once() {
    a_lost_answer_is_settled_by_the_status_webhook_and_sent_once("garbled").await;
}
