//! Signed HTTP notifications to a tenant's own endpoints (`/v1/webhook-endpoints`), against a
//! real HTTP receiver in the test: delivered and signed the Standard Webhooks way (checked
//! here with an HMAC computed by the test, not by our signing code), retried after failures
//! and delivered once, dead after the last attempt and replayed, in order within a
//! conversation, and invisible to other tenants.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use wafleet_tests::{CANDIDATE, TestFleet, id_of, receiver::Receiver};

/// Fast retries, three attempts, and loopback receivers allowed.
async fn fleet() -> TestFleet {
    TestFleet::start_with(|s| {
        s.notify.allow_private_addresses = true;
        s.notify.backoff_min = Duration::from_millis(200);
        s.notify.backoff_max = Duration::from_millis(400);
        s.notify.max_attempts = 3;
        s.notify.interval = Duration::from_millis(50);
    })
    .await
}

/// Creates an endpoint; returns (id, secret).
async fn endpoint(t: &TestFleet, url: &str, types: Value) -> (String, String) {
    let (status, body) = t
        .admin(
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": url, "event_types": types})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (id_of(&body), body["secret"].as_str().unwrap().to_owned())
}

/// The signature check a receiver does, written from the Standard Webhooks spec.
fn signed_by(secret: &str, r: &wafleet_tests::receiver::Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", r.id, r.timestamp).as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}

async fn deliveries(t: &TestFleet, endpoint: &str, state: &str) -> Vec<Value> {
    let (status, body) = t
        .admin(
            Method::GET,
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries?state={state}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_reply_is_notified_signed_with_the_consultant_and_conversation_it_belongs_to() {
    let t = fleet().await;
    let hook = Receiver::start().await;
    let (_, secret) = endpoint(&t, &hook.url, json!(["inbound", "status"])).await;
    // A second endpoint nobody answers on: it must not hold the first one up.
    endpoint(&t, "http://127.0.0.1:9/refused", json!([])).await;

    let mut send = TestFleet::template_request("E-1");
    send["user_id"] = json!("consultant-7");
    let (_, b) = t.send(send, None).await;
    let id = id_of(&b);
    t.wait_for_state(&id, "read").await;
    let sent = hook
        .wait_for("the sent status", |r| {
            let v = r.json();
            v["type"] == "status"
                && v["data"]["message_id"] == id.as_str()
                && v["data"]["status"] == "sent"
        })
        .await;
    assert!(signed_by(&secret, &sent), "the status event verifies");
    let v = sent.json();
    assert_eq!(v["data"]["user_id"], "consultant-7");
    assert_eq!(v["data"]["sender"], t.phone_number_id.as_str());
    assert_eq!(
        v["data"]["record"],
        json!({"type": "candidate", "id": "E-1"})
    );

    t.sim(
        Method::POST,
        "/_sim/inbound",
        json!({"phone_number_id": t.phone_number_id, "from": CANDIDATE, "text": "Yes please"}),
    )
    .await;
    let reply = hook
        .wait_for("the reply", |r| r.json()["type"] == "inbound")
        .await;
    assert!(signed_by(&secret, &reply), "the inbound event verifies");
    assert!(!signed_by(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &reply
    ));
    let data = reply.json()["data"].clone();
    assert_eq!(data["text"], "Yes please");
    assert_eq!(
        data["user_id"], "consultant-7",
        "the consultant of the conversation"
    );
    assert_eq!(
        data["conversation"],
        json!({"sender": t.phone_number_id, "contact": CANDIDATE})
    );
    assert_eq!(data["record"], json!({"type": "candidate", "id": "E-1"}));
    assert!(reply.id.starts_with("msg_"));
    hook.stop();
    t.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_gets_the_event_again_with_backoff_and_it_lands_once() {
    let t = fleet().await;
    let hook = Receiver::start().await;
    hook.fail_next(2, 500);
    let (ep, secret) = endpoint(&t, &hook.url, json!([])).await;

    let (status, d) = t
        .admin(
            Method::POST,
            &format!("/v1/webhook-endpoints/{ep}/test"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{d}");
    hook.wait_for("the third attempt", |r| r.answered == 200)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let got = hook.received();
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 500, 200],
        "two failures, then delivered once and never again"
    );
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "one webhook-id for every attempt"
    );
    assert!(got.iter().all(|r| signed_by(&secret, r)));
    let stamps: Vec<i64> = got.iter().map(|r| r.timestamp.parse().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    let done = deliveries(&t, &ep, "delivered").await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["attempts"], 3);
    assert_eq!(done[0]["last_status"], 200);
    assert_eq!(done[0]["event_type"], "test");
    hook.stop();
    t.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_ends_dead_and_a_replay_delivers_it() {
    let t = fleet().await;
    let hook = Receiver::start().await;
    hook.answer(503);
    let (ep, _) = endpoint(&t, &hook.url, json!([])).await;
    t.admin(
        Method::POST,
        &format!("/v1/webhook-endpoints/{ep}/test"),
        None,
    )
    .await;

    let dead = t
        .wait_for_get(
            &format!("/v1/webhook-endpoints/{ep}/deliveries?state=dead"),
            "the dead delivery",
            |v| v["deliveries"].as_array().is_some_and(|d| d.len() == 1),
        )
        .await;
    let delivery = dead["deliveries"][0].clone();
    assert_eq!(delivery["attempts"], 3, "notify.max_attempts");
    assert_eq!(delivery["last_status"], 503);
    assert_eq!(delivery["last_error"], "HTTP 503");
    assert_eq!(hook.received().len(), 3);

    hook.answer(200);
    let (status, replayed) = t
        .admin(
            Method::POST,
            &format!(
                "/v1/webhook-deliveries/{}/replay",
                delivery["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["state"], "pending");
    hook.wait_for("the replay", |r| r.answered == 200).await;
    t.wait_for_get(
        &format!("/v1/webhook-endpoints/{ep}/deliveries?state=delivered"),
        "the replayed delivery",
        |v| v["deliveries"].as_array().is_some_and(|d| d.len() == 1),
    )
    .await;
    assert!(deliveries(&t, &ep, "dead").await.is_empty());
    hook.stop();
    t.stop().await;
}

#[tokio::test]
async fn events_of_one_conversation_reach_the_endpoint_in_order_even_when_the_first_fails() {
    let t = fleet().await;
    let hook = Receiver::start().await;
    // The first event's first two attempts fail; everything after it must wait.
    hook.fail_next(2, 500);
    let (ep, _) = endpoint(&t, &hook.url, json!(["status"])).await;

    let (_, b) = t.send(TestFleet::template_request("E-ORDER"), None).await;
    let id = id_of(&b);
    t.wait_for_state(&id, "read").await;
    hook.wait_for("the read status", |r| {
        r.answered == 200 && r.json()["data"]["status"] == "read"
    })
    .await;

    // The outbox order of each request's event, as received.
    let mut order = Vec::new();
    for r in hook.received() {
        let delivery: uuid::Uuid = uuid::Uuid::parse_str(r.id.trim_start_matches("msg_")).unwrap();
        let event: i64 =
            sqlx::query_scalar("SELECT event_id FROM webhook_deliveries WHERE id = $1")
                .bind(delivery)
                .fetch_one(&t.pool)
                .await
                .unwrap();
        order.push((event, r.answered, r.json()["data"]["status"].clone()));
    }
    assert!(
        order.len() >= 4,
        "2 failures + at least sent and read: {order:?}"
    );
    assert!(
        order.windows(2).all(|w| w[0].0 <= w[1].0),
        "no later event before an earlier one was delivered: {order:?}"
    );
    assert_eq!(order[0].2, "sent");
    assert_eq!(
        order[2].1, 200,
        "the first event lands on its third attempt"
    );
    assert!(deliveries(&t, &ep, "pending").await.is_empty());
    hook.stop();
    t.stop().await;
}

#[tokio::test]
async fn endpoints_are_the_tenants_own_and_bad_input_is_refused_by_field() {
    let t = fleet().await;
    let other = t.other_tenant("Other Co", "+442071838799").await;
    let hook = Receiver::start().await;
    let (ep, _) = endpoint(&t, &hook.url, json!(["status"])).await;

    let (status, listed) = t.admin(Method::GET, "/v1/webhook-endpoints", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1);
    assert!(
        listed["endpoints"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    assert_eq!(listed["endpoints"][0]["event_types"], json!(["status"]));

    let theirs = Some(other.api_key.as_str());
    for (method, path, body) in [
        (Method::GET, format!("/v1/webhook-endpoints/{ep}"), None),
        (
            Method::PATCH,
            format!("/v1/webhook-endpoints/{ep}"),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, format!("/v1/webhook-endpoints/{ep}"), None),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{ep}/test"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/webhook-endpoints/{ep}/deliveries"),
            None,
        ),
    ] {
        let (status, body) = t.call(method.clone(), &path, theirs, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (_, d) = t
        .admin(
            Method::POST,
            &format!("/v1/webhook-endpoints/{ep}/test"),
            None,
        )
        .await;
    let (status, _) = t
        .call(
            Method::POST,
            &format!("/v1/webhook-deliveries/{}/replay", id_of(&d)),
            theirs,
            None,
        )
        .await;
    assert_eq!(status, 404, "another tenant's delivery");
    let (_, theirs_list) = t
        .call(Method::GET, "/v1/webhook-endpoints", theirs, None)
        .await;
    assert_eq!(theirs_list["endpoints"], json!([]));

    for (body, field) in [
        (json!({"url": "ftp://ats.example.com/x"}), "url"),
        (json!({"url": "https://user:pw@ats.example.com/"}), "url"),
        (
            json!({"url": hook.url, "event_types": ["status", "everything"]}),
            "event_types",
        ),
    ] {
        let (status, problem) = t
            .admin(Method::POST, "/v1/webhook-endpoints", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, _) = t
        .call(
            Method::GET,
            "/v1/webhook-endpoints",
            Some("wf_nope_nope"),
            None,
        )
        .await;
    assert_eq!(status, 401);

    // A rotation: a new secret, and the old one still signs beside it for a while.
    let (status, rotated) = t
        .admin(
            Method::POST,
            &format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(rotated["previous_secret_until"].is_string());
    hook.stop();
    t.stop().await;
}
