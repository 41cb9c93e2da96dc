//! A raised messaging limit releases what it held at once: a message `deferred:
//! messaging_limit` (whose `not_before`, shown by `GET /v1/messages/{id}`, is up to 24 h away)
//! is sent promptly when an admin raises `tier_override` or Meta's webhook upgrades the tier —
//! with the fleet's clock standing still, so nothing but the raise can free it.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use wafleet_core::{Clock, clock::ManualClock};
use wafleet_tests::{TestFleet, fast_release, id_of, sent_or_later};

/// A template to `to`, filed under record `record`.
fn template_to(to: &str, record: &str) -> Value {
    let mut r = TestFleet::template_request(record);
    r["to"] = json!(to);
    r
}

/// A fleet on a clock that stands still, whose limit is one recipient (set by `limit_sql`),
/// with one recipient sent and a second held for the limit; returns the held message as
/// `GET /v1/messages/{id}` shows it.
async fn one_sent_one_held(limit_sql: &'static str) -> (TestFleet, ManualClock, Value) {
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    // A tier of one (the settings API only takes Meta's tiers; the arithmetic is the same).
    sqlx::query(limit_sql)
        .bind(t.tenant_id)
        .execute(&t.pool)
        .await
        .unwrap();
    let (_, first) = t.send(template_to("+447400200001", "R-1"), None).await;
    t.wait_for_message(&id_of(&first), "the first sent", sent_or_later)
        .await;
    let (_, second) = t.send(template_to("+447400200002", "R-2"), None).await;
    let held = t
        .wait_for_message(&id_of(&second), "the second held", |m| {
            m["state"] == "deferred"
        })
        .await;
    (t, clock, held)
}

fn not_before(m: &Value) -> DateTime<Utc> {
    m["not_before"]
        .as_str()
        .unwrap_or_else(|| panic!("a held message shows its not_before: {m:#}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_message_held_for_the_limit_shows_when_it_will_be_tried_again() {
    let (t, clock, held) =
        one_sent_one_held("UPDATE tenant_settings SET tier_override = 1 WHERE tenant_id = $1")
            .await;

    assert_eq!(held["reason"], "messaging_limit");
    let until = not_before(&held);
    let now = clock.now();
    assert!(
        until > now + TimeDelta::hours(23) && until <= now + TimeDelta::hours(24),
        "held until the first recipient's slot ages out, 24 h from now: {until}"
    );
    t.stop().await;
}

#[tokio::test]
async fn raising_the_tier_override_sends_a_message_held_for_the_limit_at_once() {
    let (t, _clock, held) =
        one_sent_one_held("UPDATE tenant_settings SET tier_override = 1 WHERE tenant_id = $1")
            .await;
    assert_eq!(held["reason"], "messaging_limit");

    let (status, settings) = t
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"tier_override": 2000})),
        )
        .await;

    assert_eq!(status, 200, "{settings}");
    let id = id_of(&held);
    let sent = t
        .wait_for_message(&id, "the held message sent after the raise", sent_or_later)
        .await;
    assert!(sent["not_before"].is_null(), "{sent:#}");
    assert_eq!(t.sends_for(&id).await.len(), 1, "sent once");
    t.stop().await;
}

#[tokio::test]
async fn metas_tier_upgrade_by_webhook_sends_a_message_held_for_the_limit_at_once() {
    let (t, _clock, held) = one_sent_one_held(
        "UPDATE tenant_settings SET meta_tier = 1, tier_override = NULL WHERE tenant_id = $1",
    )
    .await;
    assert_eq!(held["reason"], "messaging_limit");
    let body = t.field_payload(
        vec![(
            "business_capability_update",
            json!({"max_daily_conversations_per_business": "TIER_2K"}),
        )],
        Utc::now().timestamp(),
    );

    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);

    let id = id_of(&held);
    t.wait_for_message(
        &id,
        "the held message sent after the upgrade",
        sent_or_later,
    )
    .await;
    assert_eq!(t.sends_for(&id).await.len(), 1, "sent once");
    let (_, limits) = t.get("/v1/limits").await;
    assert_eq!(limits["tier"], 2000);
    t.stop().await;
}

#[tokio::test]
async fn a_hold_decided_under_the_old_limit_but_recorded_after_the_raise_is_sent_too() {
    // Arrange: the held message is still with a dispatcher (as if its batch had read the old
    // limit and not yet recorded the hold) when the limit is raised.
    let (t, _clock, held) =
        one_sent_one_held("UPDATE tenant_settings SET tier_override = 1 WHERE tenant_id = $1")
            .await;
    let id = id_of(&held);
    let set_state = |state: &'static str| {
        sqlx::query("UPDATE messages SET state = $3 WHERE tenant_id = $1 AND id = $2::uuid")
            .bind(t.tenant_id)
            .bind(id.clone())
            .bind(state)
            .execute(&t.pool)
    };
    set_state("dispatching").await.unwrap();
    let (status, settings) = t
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"tier_override": 2000})),
        )
        .await;
    assert_eq!(status, 200, "{settings}");

    // Act: the batch records its hold, 24 h away, after the raise committed.
    set_state("deferred").await.unwrap();

    // Assert
    t.wait_for_message(&id, "the late hold sent after the raise", sent_or_later)
        .await;
    assert_eq!(t.sends_for(&id).await.len(), 1, "sent once");
    t.stop().await;
}
