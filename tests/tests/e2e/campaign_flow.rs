//! How the feeder releases campaigns, end to end: quiet time and the cap hold bulk back (an
//! injected clock moves time), pause/resume and cancel act on what is not yet dispatched,
//! `not_after` expires what waited too long, and a single message overtakes a campaign.

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use wafleet_core::clock::ManualClock;
use wafleet_tests::{
    TestFleet,
    campaigns::{campaign_body, count, numbers, sent_or_later},
};

/// Monday 2026-03-02 21:00 UTC: inside the test quiet time (every day 20:00–08:00 UTC).
fn evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 21, 0, 0).unwrap()
}

async fn set_quiet_time(t: &TestFleet) {
    sqlx::query("UPDATE tenant_settings SET quiet_time = $2 WHERE tenant_id = $1")
        .bind(t.tenant_id)
        .bind(json!({"days": ["mon","tue","wed","thu","fri","sat","sun"], "zone": "UTC", "start": "20:00", "end": "08:00"}))
        .execute(&t.pool)
        .await
        .expect("quiet time");
}

/// A fleet on a manual clock at `evening()`, with quiet time set.
async fn quiet_fleet() -> (TestFleet, ManualClock) {
    let clock = ManualClock::new(evening());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    set_quiet_time(&t).await;
    (t, clock)
}

async fn create(t: &TestFleet, name: &str, first: u32, n: u32) -> String {
    let (status, created) = t
        .create_campaign(&campaign_body(name, &numbers(first, n)), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_campaign_waits_out_quiet_time_then_is_sent() {
    let (t, clock) = quiet_fleet().await;
    let id = create(&t, "quiet", 0, 3).await;

    let held = t.campaign(&id).await;
    // A single message is never held by quiet time; once it is sent, feeder rounds have passed.
    let (_, single) = t.send(TestFleet::template_request("Q-single"), None).await;
    t.wait_for_message(single["id"].as_str().unwrap(), "single sent", |m| {
        m["state"] != "accepted" && m["state"] != "dispatching"
    })
    .await;
    let still = t.campaign(&id).await;
    clock.set(Utc.with_ymd_and_hms(2026, 3, 3, 8, 0, 1).unwrap());
    let done = t
        .wait_for_campaign(&id, "sent after quiet time", |c| sent_or_later(c) == 3)
        .await;

    assert_eq!(held["held_by"]["reason"], "quiet_time");
    assert_eq!(held["held_by"]["until"], "2026-03-03T08:00:00Z");
    let eta: DateTime<Utc> = held["eta"].as_str().unwrap().parse().unwrap();
    assert!(
        eta >= Utc.with_ymd_and_hms(2026, 3, 3, 8, 0, 0).unwrap(),
        "{eta}"
    );
    assert_eq!(count(&still, "queued"), 3, "{still:#}");
    assert_eq!(done["status"], "completed");
    t.stop().await;
}

#[tokio::test]
async fn a_campaign_waits_for_the_caps_bulk_share_then_is_sent_when_slots_age_out() {
    let clock = ManualClock::new(Utc::now().trunc_subsecs(0));
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    // Tier 10, 10 % kept for single sends: bulk may use 9, and 9 recipients were messaged an
    // hour ago.
    sqlx::query("UPDATE tenant_settings SET tier_override = 10, bulk_reserve_percent = 10 WHERE tenant_id = $1")
        .bind(t.tenant_id)
        .execute(&t.pool)
        .await
        .unwrap();
    let an_hour_ago = clock_now(&clock) - Duration::hours(1);
    for (i, n) in numbers(900, 9).iter().enumerate() {
        sqlx::query("INSERT INTO cap_recipients (tenant_id, recipient, counted_at, message_id, kind) VALUES ($1, $2, $3, $4, 'bulk')")
            .bind(t.tenant_id)
            .bind(n)
            .bind(an_hour_ago + Duration::seconds(i as i64))
            .bind(uuid::Uuid::now_v7())
            .execute(&t.pool)
            .await
            .unwrap();
    }

    let id = create(&t, "capped", 0, 2).await;
    let (_, single) = t.send(TestFleet::template_request("C-single"), None).await;
    t.wait_for_message(single["id"].as_str().unwrap(), "single sent", |m| {
        m["state"] != "accepted" && m["state"] != "dispatching"
    })
    .await;
    let held = t.campaign(&id).await;
    clock.set(an_hour_ago + Duration::hours(24) + Duration::seconds(30));
    let done = t
        .wait_for_campaign(&id, "sent once slots aged out", |c| sent_or_later(c) == 2)
        .await;

    assert_eq!(count(&held, "queued"), 2, "{held:#}");
    assert_eq!(held["held_by"]["reason"], "messaging_limit");
    let until: DateTime<Utc> = held["held_by"]["until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until, an_hour_ago + Duration::hours(24));
    let eta: DateTime<Utc> = held["eta"].as_str().unwrap().parse().unwrap();
    assert!(eta >= until, "{eta} before {until}");
    assert_eq!(done["pending"], 0);
    t.stop().await;
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use wafleet_core::Clock;
    clock.now()
}

#[tokio::test]
async fn a_paused_campaign_sends_nothing_until_it_is_resumed() {
    let (t, clock) = quiet_fleet().await;
    let paused = create(&t, "paused", 0, 3).await;
    let (status, body) = t.campaign_action(&paused, "pause").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    let other = create(&t, "running", 10, 2).await;

    clock.set(Utc.with_ymd_and_hms(2026, 3, 3, 8, 0, 1).unwrap());
    // The running campaign on the same sender is sent: the feeder has had its rounds.
    t.wait_for_campaign(&other, "other campaign sent", |c| sent_or_later(c) == 2)
        .await;
    let while_paused = t.campaign(&paused).await;
    let (again, _) = t.campaign_action(&paused, "pause").await;
    let (_, resumed) = t.campaign_action(&paused, "resume").await;
    let done = t
        .wait_for_campaign(&paused, "sent after resume", |c| sent_or_later(c) == 3)
        .await;

    assert_eq!(while_paused["status"], "paused");
    assert_eq!(count(&while_paused, "deferred"), 3, "{while_paused:#}");
    assert_eq!(while_paused["held_by"]["reason"], "campaign_paused");
    assert_eq!(again, StatusCode::OK);
    assert_eq!(resumed["status"], "active");
    assert_eq!(done["status"], "completed");
    t.stop().await;
}

#[tokio::test]
async fn cancel_stops_what_was_not_dispatched_and_history_keeps_what_was_sent() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 19, 0, 0).unwrap());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    set_quiet_time(&t).await;
    let id = create(&t, "cancelled", 0, 2).await;
    t.wait_for_campaign(&id, "first two sent", |c| sent_or_later(c) == 2)
        .await;
    // Into quiet time; a producer adds two more over AMQP, which wait.
    clock.set(evening());
    for (i, to) in numbers(2, 2).iter().enumerate() {
        let message = json!({
            "to": to, "record": {"type": "candidate", "id": format!("late-{i}")},
            "template": {"name": "job_opportunity", "language": "en_GB"},
            "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"},
            "kind": "bulk", "campaign_id": id,
        });
        t.publish_intake(message.to_string().as_bytes(), None).await;
    }
    t.wait_for_campaign(&id, "two more queued", |c| count(c, "queued") == 2)
        .await;

    let (status, body) = t.campaign_action(&id, "cancel").await;
    clock.set(Utc.with_ymd_and_hms(2026, 3, 3, 8, 0, 1).unwrap());
    let other = create(&t, "after", 10, 1).await;
    t.wait_for_campaign(&other, "a later campaign sent", |c| sent_or_later(c) == 1)
        .await;
    let after = t.campaign(&id).await;
    let (resume, problem) = t.campaign_action(&id, "resume").await;

    assert_eq!(
        (status, body["messages_changed"].as_i64()),
        (StatusCode::OK, Some(2))
    );
    assert_eq!(after["status"], "cancelled");
    assert_eq!(count(&after, "cancelled"), 2, "{after:#}");
    assert_eq!(sent_or_later(&after), 2);
    assert_eq!(t.sends_to(&numbers(2, 1)[0]).await, 0);
    let (_, late) = t.get("/v1/records/candidate/late-0/messages").await;
    assert_eq!(late["messages"][0]["state"], "cancelled");
    assert_eq!(late["messages"][0]["reason"], "campaign_cancelled");
    assert_eq!(
        (resume, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_cancelled"))
    );
    t.stop().await;
}

#[tokio::test]
async fn recipients_not_sent_by_not_after_end_expired() {
    let (t, clock) = quiet_fleet().await;
    let mut body = campaign_body("expiring", &numbers(0, 2));
    body["not_after"] = json!("2026-03-02T23:00:00Z");
    let (_, created) = t.create_campaign(&body, None).await;
    let id = created["id"].as_str().unwrap();

    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 23, 30, 0).unwrap());
    let expired = t
        .wait_for_campaign(id, "expired", |c| count(c, "expired") == 2)
        .await;

    assert_eq!(expired["status"], "completed");
    let (_, history) = t.get("/v1/records/candidate/expiring-0/messages").await;
    assert_eq!(history["messages"][0]["reason"], "not_after_passed");
    assert_eq!(t.sends_to(&numbers(0, 1)[0]).await, 0);
    t.stop().await;
}

#[tokio::test]
async fn a_single_message_is_sent_long_before_a_campaign_on_the_same_sender_ends() {
    let t = TestFleet::start_with(|s| s.dispatch.sender_rate = 5).await;
    let id = create(&t, "long", 0, 100).await;
    t.wait_for_campaign(&id, "the campaign under way", |c| sent_or_later(c) >= 1)
        .await;

    let (_, single) = t.send(TestFleet::template_request("P-single"), None).await;
    t.wait_for_message(single["id"].as_str().unwrap(), "single sent", |m| {
        ["sent", "delivered", "read"].contains(&m["state"].as_str().unwrap_or_default())
    })
    .await;
    let campaign = t.campaign(&id).await;

    // At 5/s the campaign needs 20 s; the single went out with most of it still waiting.
    assert!(campaign["pending"].as_i64().unwrap() >= 50, "{campaign:#}");
    t.wait_for_campaign(&id, "still progressing", |c| {
        c["current_rate"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await;
    let (status, _) = t.campaign_action(&id, "cancel").await;
    assert_eq!(status, StatusCode::OK);
    t.stop().await;
}
