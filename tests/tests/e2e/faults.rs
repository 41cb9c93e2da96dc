//! Meta's errors by class, end to end through the real broker and database: transient errors
//! are retried and then sent, a 131049 holds the recipient for 24 h, permanent errors fail with
//! their code, a halted sender's circuit holds only its own messages until a probe closes it, and
//! dead letters are redriven and sent exactly once.

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use wafleet_core::clock::{Clock, ManualClock};
use wafleet_tests::{CANDIDATE, TestFleet, fast_release, id_of, sent_or_later};

#[tokio::test]
async fn a_transient_error_is_retried_then_sent_and_the_trail_keeps_the_failed_attempt() {
    let t = TestFleet::start().await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "code": 131016, "times": 1}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("F-1"), None).await;
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "read").await;

    let failed = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "deferred")
        .expect("a deferred event for the failed attempt");
    assert_eq!(failed["reason"], "retry");
    assert_eq!(failed["detail"]["code"], 131016);
    assert_eq!(failed["detail"]["attempt"], 1);
    assert_eq!(failed["detail"]["class"], "transient");
    assert!(failed["detail"]["fbtrace_id"].is_string());
    assert!(failed["at"].is_string());
    let codes = t.meta_answers_for(&id).await;
    assert_eq!(codes, [Some(131016), None]);
    t.stop().await;
}

#[tokio::test]
async fn a_connection_reset_meta_never_answered_is_resent_once_its_status_wait_is_over() {
    // A reset may hide an accepted send, so the message waits for a status first; Meta never
    // had this one, so none comes, and it is sent again after the wait.
    let t = TestFleet::start_with(|s| {
        s.dispatch.ambiguous_resend_after = Duration::from_secs(1);
        fast_release(s);
    })
    .await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "reset": true, "times": 1}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("F-2"), None).await;
    let id = id_of(&b);
    t.wait_for_state(&id, "read").await;

    let (_, m) = t.get(&format!("/v1/messages/{id}")).await;
    assert!(
        m["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "awaiting_status"),
        "the message waited for a status before the resend: {m}"
    );
    let sends = t.sends_for(&id).await;
    assert_eq!(sends.len(), 2, "the reset attempt and the resend");
    assert_eq!(sends.iter().filter(|s| s.wamid.is_some()).count(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_timed_out_call_waits_for_a_status_then_is_sent_again_once() {
    let t = TestFleet::start_with(|s| {
        s.dispatch.graph_timeout = Duration::from_millis(400);
        s.dispatch.ambiguous_resend_after = Duration::from_secs(1);
        fast_release(s);
    })
    .await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "latency_ms": 1500, "code": 1, "times": 1}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("F-10"), None).await;
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "read").await;

    let timed_out = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "deferred")
        .expect("a deferred event for the timed-out attempt");
    assert_eq!(timed_out["reason"], "awaiting_status");
    assert_eq!(timed_out["detail"]["transport"], true);
    assert_eq!(timed_out["detail"]["class"], "ambiguous");
    let sends = t.sends_for(&id).await;
    assert_eq!(sends.iter().filter(|s| s.wamid.is_some()).count(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_recipient_held_by_meta_is_deferred_for_24_hours_then_sent() {
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"to": CANDIDATE, "code": 131049, "times": 1}),
    )
    .await;

    let (_, first) = t.send(TestFleet::template_request("F-3"), None).await;
    let first = id_of(&first);
    let held = t
        .wait_for_message(&first, "the recipient hold", |m| {
            m["reason"] == "recipient_hold"
        })
        .await;
    let (_, second) = t.send(TestFleet::template_request("F-4"), None).await;
    let second = id_of(&second);
    t.wait_for_message(&second, "the second message held too", |m| {
        m["reason"] == "recipient_hold"
    })
    .await;

    assert_eq!(held["state"], "deferred");
    assert_eq!(held["error"]["code"], 131049);
    assert!(
        t.sends_for(&second).await.is_empty(),
        "no send during the hold"
    );

    clock.advance(chrono::Duration::hours(24) + chrono::Duration::minutes(1));
    t.wait_for_message(
        &first,
        "the first message sent after the hold",
        sent_or_later,
    )
    .await;
    t.wait_for_message(
        &second,
        "the second message sent after the hold",
        sent_or_later,
    )
    .await;
    assert_eq!(t.sends_for(&first).await.len(), 2);
    assert_eq!(t.sends_for(&second).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_permanent_error_fails_the_message_with_its_code_without_a_retry() {
    let t = TestFleet::start().await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"to": CANDIDATE, "code": 131026, "times": 5}),
    )
    .await;

    let (_, b) = t.send(TestFleet::template_request("F-5"), None).await;
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "failed").await;

    assert_eq!(m["reason"], "meta_131026");
    assert_eq!(m["error"]["code"], 131026);
    assert_eq!(t.sends_for(&id).await.len(), 1, "never retried");
    t.stop().await;
}

#[tokio::test]
async fn a_halted_senders_circuit_holds_its_messages_while_others_flow_then_a_probe_closes_it() {
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    let other = t.add_sender(77, "+442071838799").await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "code": 131048, "times": 1}),
    )
    .await;

    let (_, a1) = t.send(TestFleet::template_request("F-6"), None).await;
    let a1 = id_of(&a1);
    t.wait_for_message(&a1, "the halted sender's message held", |m| {
        m["reason"] == "circuit_sender"
    })
    .await;
    let (_, a2) = t.send(TestFleet::template_request("F-7"), None).await;
    let a2 = id_of(&a2);
    let mut via_other = TestFleet::template_request("F-8");
    via_other["sender"] = json!(other);
    let (_, b1) = t.send(via_other, None).await;
    let b1 = id_of(&b1);

    t.wait_for_message(&b1, "the other sender's message sent", sent_or_later)
        .await;
    let a2_held = t
        .wait_for_message(&a2, "the second message held", |m| {
            m["reason"] == "circuit_sender"
        })
        .await;
    assert_eq!(a2_held["state"], "deferred");
    assert!(t.sends_for(&a2).await.is_empty());
    let (_, senders) = t.get("/v1/senders").await;
    let circuit_of = |senders: &Value, id: &str| {
        senders["senders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["phone_number_id"] == id)
            .map(|s| s["circuit"].clone())
    };
    assert_eq!(
        circuit_of(&senders, &t.phone_number_id),
        Some(json!("open"))
    );
    assert_eq!(circuit_of(&senders, &other), Some(json!("closed")));
    assert_eq!(senders["circuits"][0]["code"], 131048);

    // The circuit's time is up: the held messages come back, one probes, its success closes it.
    clock.advance(chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    t.wait_for_get("/v1/senders", "the circuit closed", |s| {
        circuit_of(s, &t.phone_number_id) == Some(json!("closed"))
    })
    .await;
    clock.advance(chrono::Duration::minutes(1));
    t.wait_for_message(&a1, "the first held message sent", sent_or_later)
        .await;
    t.wait_for_message(&a2, "the second held message sent", sent_or_later)
        .await;
    assert_eq!(
        t.sends_for(&a1).await.len(),
        2,
        "the halted try and the probe or release"
    );
    assert_eq!(t.sends_for(&a2).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_template_meta_paused_holds_only_its_own_messages_until_the_pause_ends() {
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    // As the webhooks side records a template-status PAUSED event.
    sqlx::query("UPDATE templates SET paused_until = $3 WHERE tenant_id = $1 AND name = $2")
        .bind(t.tenant_id)
        .bind("job_opportunity")
        .bind(clock.now() + chrono::Duration::hours(3))
        .execute(&t.pool)
        .await
        .unwrap();

    let (_, paused) = t.send(TestFleet::template_request("F-11"), None).await;
    let paused = id_of(&paused);
    let mut other = TestFleet::template_request("F-12");
    other["template"]["name"] = json!("gdpr_consent_request");
    other["merge_fields"] = json!({"KNOWNAS": "Anna"});
    let (_, other) = t.send(other, None).await;
    let other = id_of(&other);

    t.wait_for_message(&other, "the other template sent", sent_or_later)
        .await;
    let held = t
        .wait_for_message(&paused, "the paused template held", |m| {
            m["reason"] == "circuit_template"
        })
        .await;
    assert_eq!(held["state"], "deferred");
    assert!(t.sends_for(&paused).await.is_empty());

    clock.advance(chrono::Duration::hours(3) + chrono::Duration::seconds(1));
    t.wait_for_message(
        &paused,
        "the paused template sent after the pause",
        sent_or_later,
    )
    .await;
    assert_eq!(t.sends_for(&paused).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_dead_letter_redriven_twice_is_sent_exactly_once() {
    let t = TestFleet::start_with(fast_release).await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"phone_number_id": t.phone_number_id, "code": 131000, "times": 100}),
    )
    .await;
    let (_, b) = t.send(TestFleet::template_request("F-9"), None).await;
    let id = id_of(&b);
    let m = t.wait_for_state(&id, "failed").await;
    assert_eq!(m["reason"], "retries_exhausted");
    let (_, dead) = t.get("/v1/dead-letters").await;
    assert_eq!(dead["dead_letters"][0]["id"], id.as_str());
    assert_eq!(dead["dead_letters"][0]["error"]["code"], 131000);
    t.sim(Method::DELETE, "/_sim/faults", json!({})).await;

    let (s1, first) = t.post("/v1/dead-letters/redrive", json!({"id": id})).await;
    let (s2, second) = t.post("/v1/dead-letters/redrive", json!({"id": id})).await;
    let (s3, all) = t
        .post("/v1/dead-letters/redrive", json!({"all": true}))
        .await;
    t.wait_for_state(&id, "read").await;

    assert_eq!((s1.as_u16(), s2.as_u16(), s3.as_u16()), (200, 200, 200));
    assert_eq!(first["redriven"], json!([id]));
    assert_eq!(second["redriven"], json!([]));
    assert_eq!(all["redriven"], json!([]));
    let sends = t.sends_for(&id).await;
    assert_eq!(
        sends.iter().filter(|s| s.error_code.is_none()).count(),
        1,
        "sent once"
    );
    assert_eq!(sends.len(), 4, "three failed attempts, one redriven send");
    let (_, dead) = t.get("/v1/dead-letters").await;
    assert_eq!(dead["dead_letters"], json!([]));
    t.stop().await;
}
