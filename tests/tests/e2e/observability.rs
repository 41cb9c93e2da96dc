//! What SREs see: one trace from the HTTP intake through the real broker to the Graph call
//! (retries included), status webhooks linked to their send's trace, no phone number or secret
//! in any span or log, counters that move on `/metrics`, and `/readyz` telling the truth while
//! the database or the broker is unreachable.

use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use reqwest::StatusCode;
use serde_json::json;
use wafleet_tests::{
    CANDIDATE, SENDER_PHONE, TestFleet,
    observe::{attr, captured, metric, span_text},
    proxy::FaultProxy,
    test_amqp_url,
};

/// The trace of the request that accepted message `id`.
async fn intake_trace(id: &str) -> TraceId {
    let accept = captured()
        .wait_for("accept message", |s| {
            s.name == "accept message" && attr(s, "message_id").as_deref() == Some(id)
        })
        .await;
    accept.span_context.trace_id()
}

/// Waits until message `id` has been `state` (it may have moved on since).
async fn wait_until_reached(t: &TestFleet, id: &str, state: &str) {
    t.wait_for_message(id, state, |m| {
        m["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["state"] == state))
    })
    .await;
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn the_intake_span_and_the_graph_call_share_one_trace_across_the_broker() {
    let spans = captured();
    let t = TestFleet::start().await;

    let (status, b) = t.send(TestFleet::template_request("O-1"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = b["id"].as_str().unwrap().to_owned();
    wait_until_reached(&t, &id, "sent").await;
    let trace = intake_trace(&id).await;
    spans
        .wait_for("POST /messages in the intake trace", |s| {
            s.name == "POST /messages" && s.span_context.trace_id() == trace
        })
        .await;

    let trace_spans = spans.trace(trace);
    let publish = named(&trace_spans, "publish wafleet.dispatch");
    assert_eq!(publish.len(), 1, "one publish to the dispatch exchange");
    assert_eq!(publish[0].span_kind, SpanKind::Producer);
    let process = spans
        .wait_for("process wafleet.dispatch", |s| {
            s.name == "process wafleet.dispatch" && s.span_context.trace_id() == trace
        })
        .await;
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        attr(&process, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    let graph = named(&trace_spans, "POST /messages");
    assert_eq!(graph.len(), 1, "one Graph call");
    assert_eq!(graph[0].span_kind, SpanKind::Client);
    assert_eq!(
        attr(graph[0], "http.response.status_code").as_deref(),
        Some("200")
    );
    t.stop().await;
}

#[tokio::test]
async fn a_retried_send_stays_in_its_trace_through_the_retry_tier_queue() {
    let spans = captured();
    let t = TestFleet::start().await;
    t.sim(reqwest::Method::POST, "/_sim/faults", json!({"phone_number_id": t.phone_number_id, "code": 130429, "http_status": 400, "times": 1})).await;

    let (_, b) = t.send(TestFleet::template_request("O-2"), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    wait_until_reached(&t, &id, "sent").await;
    let trace = intake_trace(&id).await;
    spans
        .wait_for("the second Graph call in the intake trace", |s| {
            s.name == "POST /messages"
                && s.span_context.trace_id() == trace
                && attr(s, "http.response.status_code").as_deref() == Some("200")
        })
        .await;

    let trace_spans = spans.trace(trace);
    let mut calls: Vec<(Option<String>, Option<String>)> = named(&trace_spans, "POST /messages")
        .into_iter()
        .map(|s| {
            (
                attr(s, "http.response.status_code"),
                attr(s, "meta.error.code"),
            )
        })
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            (Some("200".into()), None),
            (Some("400".into()), Some("130429".into()))
        ]
    );
    t.stop().await;
}

#[tokio::test]
async fn the_status_webhook_span_links_to_the_trace_of_the_send() {
    let spans = captured();
    let t = TestFleet::start().await;

    let (_, b) = t.send(TestFleet::template_request("O-3"), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    wait_until_reached(&t, &id, "read").await;
    let trace = intake_trace(&id).await;

    let webhook = spans
        .wait_for("a webhook span linked to the send", |s| {
            s.name == "process wafleet.webhooks"
                && s.links.iter().any(|l| l.span_context.trace_id() == trace)
        })
        .await;
    assert_ne!(
        webhook.span_context.trace_id(),
        trace,
        "the webhook is its own trace (Meta started it), linked to the send"
    );
    t.stop().await;
}

#[tokio::test]
async fn no_phone_number_or_secret_appears_in_any_span_or_log() {
    let spans = captured();
    let t = TestFleet::start().await;

    let (_, b) = t.send(TestFleet::template_request("O-4"), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    t.wait_for_state(&id, "read").await;
    intake_trace(&id).await;

    let exported: String = spans.all().iter().map(span_text).collect();
    let logs = spans.logs();
    assert!(exported.contains("POST /messages"), "spans were exported");
    for (what, secret) in [
        ("the candidate's number", CANDIDATE.trim_start_matches('+')),
        ("the sender's number", SENDER_PHONE.trim_start_matches('+')),
        ("the app secret", t.app_secret.as_str()),
        ("the API key", t.api_key.as_str()),
    ] {
        assert!(!exported.contains(secret), "{what} is in a span");
        assert!(!logs.contains(secret), "{what} is in a log line");
    }
    t.stop().await;
}

#[tokio::test]
async fn metrics_move_after_a_send() {
    let t = TestFleet::start().await;
    let ingest = t.fleet.ingest_url.clone();
    let dispatcher = t.fleet.dispatcher_url.clone();
    let before = t.scrape(&dispatcher).await;

    let (_, b) = t.send(TestFleet::template_request("O-5"), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    wait_until_reached(&t, &id, "read").await;
    // A readiness probe refreshes the database gauge (a slow poll may have left it at 0).
    t.wait_for_readiness(&dispatcher, StatusCode::OK).await;
    let after = t.scrape(&ingest).await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    assert_eq!(
        moved("wafleet_messages_total", &[("state", "accepted")]),
        1.0
    );
    assert_eq!(moved("wafleet_messages_total", &[("state", "sent")]), 1.0);
    // `delivered` may be skipped when Meta's `read` is applied first; `read` always lands.
    assert_eq!(moved("wafleet_messages_total", &[("state", "read")]), 1.0);
    assert_eq!(
        moved("wafleet_graph_duration_seconds_count", &[("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        moved(
            "wafleet_limiter_wait_seconds_count",
            &[("sender", &t.phone_number_id)]
        ),
        1.0
    );
    assert!(
        moved(
            "wafleet_consumer_lag_seconds_count",
            &[("queue", "dispatch")]
        ) >= 1.0
    );
    assert!(moved("wafleet_webhook_lag_seconds_count", &[("status", "read")]) >= 1.0);
    // The gauges every service publishes about its dependencies.
    assert_eq!(metric(&after, "wafleet_database_up", &[]), 1.0);
    assert_eq!(
        metric(
            &after,
            "wafleet_broker_connected",
            &[("connection", "dispatcher/consume")]
        ),
        1.0
    );
    assert!(after.contains("wafleet_queue_messages{queue=\"dispatch.0\"}"));
    assert!(after.contains("wafleet_queue_consumers{queue=\"webhooks\"}"));
    t.stop().await;
}

#[tokio::test]
async fn readyz_is_false_while_the_database_is_unreachable_and_recovers() {
    let t = TestFleet::start().await;
    let dispatcher = t.fleet.dispatcher_url.clone();
    let ingest = t.fleet.ingest_url.clone();
    t.wait_for_readiness(&dispatcher, StatusCode::OK).await;

    t.set_database_reachable(false).await;
    let body = t
        .wait_for_readiness(&dispatcher, StatusCode::SERVICE_UNAVAILABLE)
        .await;
    assert!(body.contains("database unreachable"), "{body}");
    t.wait_for_readiness(&ingest, StatusCode::SERVICE_UNAVAILABLE)
        .await;

    t.set_database_reachable(true).await;
    t.wait_for_readiness(&dispatcher, StatusCode::OK).await;
    t.wait_for_readiness(&ingest, StatusCode::OK).await;
    t.stop().await;
}

#[tokio::test]
async fn readyz_is_false_while_the_broker_is_unreachable_and_recovers() {
    let (proxy, routed) = FaultProxy::in_front_of(&test_amqp_url()).await;
    let t = TestFleet::start_with(|s| s.amqp_url = routed).await;
    let webhooks = t.fleet.webhooks_url.clone();
    t.wait_for_readiness(&webhooks, StatusCode::OK).await;

    proxy.cut();
    let body = t
        .wait_for_readiness(&webhooks, StatusCode::SERVICE_UNAVAILABLE)
        .await;
    assert!(body.contains("broker unreachable"), "{body}");

    proxy.restore();
    t.wait_for_readiness(&webhooks, StatusCode::OK).await;
    // Work flows again after the recovery.
    let (_, b) = t.send(TestFleet::template_request("O-7"), None).await;
    wait_until_reached(&t, b["id"].as_str().unwrap(), "sent").await;
    t.stop().await;
}
