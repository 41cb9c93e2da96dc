//! The dispatcher's policies (SPEC §4) end to end, through the real broker and database: each
//! rule's outcome as a user sees it in `GET /v1/messages/{id}` — state, reason and the event
//! trail — and what the simulated Meta did (or did not) receive.

use chrono::{Duration as TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use wafleet_core::clock::ManualClock;
use wafleet_tests::{CANDIDATE, TestFleet, fast_release, id_of, sent_or_later};

/// A template request to `to`, filed under record `record`.
fn template_to(to: &str, record: &str) -> Value {
    let mut r = TestFleet::template_request(record);
    r["to"] = json!(to);
    r
}

/// The event trail's last entry.
fn last_event(m: &Value) -> &Value {
    m["events"].as_array().unwrap().last().unwrap()
}

async fn sql(t: &TestFleet, statement: &'static str) {
    sqlx::query(statement)
        .bind(t.tenant_id)
        .execute(&t.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_recipient_outside_the_allowed_countries_is_refused_at_intake() {
    let t = TestFleet::start().await;
    let (status, _) = t
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"allowed_countries": ["IE", "FR"]})),
        )
        .await;
    assert_eq!(status, 200);

    let (status, body) = t.send(TestFleet::template_request("P-1"), None).await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "country_not_allowed");
    assert_eq!(body["field"], "to");
    let m = t.wait_for_state(&id_of(&body), "rejected").await;
    assert_eq!(m["reason"], "country_not_allowed");
    t.stop().await;
}

#[tokio::test]
async fn a_country_removed_after_intake_is_rejected_at_dispatch_before_any_call_to_meta() {
    // The fleet's clock stands still, so the held message waits until the settings change.
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    sql(
        &t,
        "UPDATE senders SET paused_until = now() + interval '1 hour' WHERE tenant_id = $1",
    )
    .await;
    let (status, body) = t.send(TestFleet::template_request("P-2"), None).await;
    assert_eq!(status, 202);
    let id = id_of(&body);
    t.wait_for_message(&id, "held by the paused sender", |m| {
        m["reason"] == "sender_paused"
    })
    .await;

    // The admin narrows the countries meanwhile; the sender's pause ends.
    t.admin(
        Method::PUT,
        "/v1/settings",
        Some(json!({"allowed_countries": ["IE"]})),
    )
    .await;
    clock.advance(TimeDelta::hours(2));

    let m = t.wait_for_state(&id, "rejected").await;
    assert_eq!(m["reason"], "country_not_allowed");
    assert!(
        last_event(&m)["detail"]["detail"]
            .as_str()
            .unwrap()
            .contains("GB")
    );
    assert!(t.sends_for(&id).await.is_empty(), "Meta was never called");
    t.stop().await;
}

#[tokio::test]
async fn a_recipient_who_replied_stop_gets_no_template_and_no_text() {
    let t = TestFleet::start().await;
    sqlx::query(
        "INSERT INTO opt_outs (tenant_id, recipient, scope, source) VALUES ($1, $2, 'all', 'keyword')",
    )
    .bind(t.tenant_id)
    .bind(CANDIDATE)
    .execute(&t.pool)
    .await
    .unwrap();

    let (_, template) = t.send(TestFleet::template_request("P-3"), None).await;
    let template = t.wait_for_state(&id_of(&template), "rejected").await;

    assert_eq!(template["reason"], "recipient_opted_out");
    assert!(t.sends_for(&id_of(&template)).await.is_empty());
    t.stop().await;
}

#[tokio::test]
async fn a_marketing_opt_out_blocks_marketing_templates_but_not_utility_ones() {
    let t = TestFleet::start().await;
    sql(
        &t,
        "UPDATE templates SET category = 'MARKETING' WHERE tenant_id = $1 AND name = 'gdpr_consent_request'",
    )
    .await;
    sqlx::query(
        "INSERT INTO opt_outs (tenant_id, recipient, scope, source) VALUES ($1, $2, 'marketing', 'meta_131050')",
    )
    .bind(t.tenant_id)
    .bind(CANDIDATE)
    .execute(&t.pool)
    .await
    .unwrap();
    let marketing = json!({
        "to": CANDIDATE, "record": {"type": "candidate", "id": "P-4"},
        "template": {"name": "gdpr_consent_request", "language": "en_GB"},
        "merge_fields": {"KNOWNAS": "Anna"},
    });

    let (_, m1) = t.send(marketing, None).await;
    let (_, u1) = t.send(TestFleet::template_request("P-4"), None).await;

    let m1 = t.wait_for_state(&id_of(&m1), "rejected").await;
    assert_eq!(m1["reason"], "recipient_opted_out");
    t.wait_for_message(&id_of(&u1), "the utility template sent", sent_or_later)
        .await;
    t.stop().await;
}

#[tokio::test]
async fn free_form_text_outside_the_service_window_is_rejected_with_a_hint_to_use_a_template() {
    let t = TestFleet::start().await;

    let (status, body) = t
        .send(
            json!({"to": CANDIDATE, "record": {"type": "candidate", "id": "P-5"}, "text": "Hello?"}),
            None,
        )
        .await;

    assert_eq!(status, 202);
    let id = id_of(&body);
    let m = t.wait_for_state(&id, "rejected").await;
    assert_eq!(m["reason"], "outside_service_window");
    let detail = last_event(&m)["detail"]["detail"].as_str().unwrap();
    assert!(detail.contains("template"), "{detail}");
    assert!(t.sends_for(&id).await.is_empty());
    t.stop().await;
}

#[tokio::test]
async fn a_template_that_was_never_synced_is_refused_at_intake() {
    let t = TestFleet::start().await;

    let (status, body) = t
        .send(json!({"to": CANDIDATE, "record": {"type": "candidate", "id": "P-6"},
                      "template": {"name": "no_such_template", "language": "en_GB", "parameters": ["x"]}}), None)
        .await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "template_not_approved");
    assert!(body["detail"].as_str().unwrap().contains("sync"));
    let m = t.wait_for_state(&id_of(&body), "rejected").await;
    assert_eq!(m["reason"], "template_not_approved");
    t.stop().await;
}

#[tokio::test]
async fn missing_merge_fields_and_unapproved_templates_are_refused_at_intake() {
    let t = TestFleet::start().await;
    let mut missing = TestFleet::template_request("P-7");
    missing["merge_fields"] = json!({"KNOWNAS": "Anna"});
    let (status, body) = t.send(missing, None).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "template_parameters_mismatch");
    assert_eq!(body["field"], "merge_fields.CONSULTANTUSERNAME");

    sql(
        &t,
        "UPDATE templates SET status = 'PAUSED' WHERE tenant_id = $1 AND name = 'job_opportunity'",
    )
    .await;
    let (status, body) = t.send(TestFleet::template_request("P-7"), None).await;

    assert_eq!(status, 422);
    assert_eq!(body["code"], "template_not_approved");
    t.stop().await;
}

#[tokio::test]
async fn a_bulk_message_waits_out_quiet_time_while_a_single_one_goes_at_once() {
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    let now = Utc::now();
    let quiet = json!({
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "zone": "UTC",
        "start": (now - TimeDelta::hours(1)).format("%H:%M").to_string(),
        "end": (now + TimeDelta::hours(2)).format("%H:%M").to_string(),
    });
    let (status, body) = t
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"quiet_time": quiet})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut bulk = TestFleet::template_request("P-8");
    bulk["kind"] = json!("bulk");
    t.publish_intake(&serde_json::to_vec(&bulk).unwrap(), Some("bulk-p8"))
        .await;
    // Bulk waits in PostgreSQL: the feeder does not release it during quiet time (and a
    // dispatcher that got it anyway would defer it with reason `quiet_time`).
    let history = t
        .wait_for_get(
            "/v1/records/candidate/P-8/messages",
            "the bulk message",
            |h| h["messages"][0]["state"] == "queued" || h["messages"][0]["state"] == "deferred",
        )
        .await;
    let bulk_id = history["messages"][0]["id"].as_str().unwrap().to_owned();

    let (_, single) = t.send(template_to("+447400123457", "P-9"), None).await;
    t.wait_for_message(&id_of(&single), "the single message sent", sent_or_later)
        .await;

    let (_, held) = t.get(&format!("/v1/messages/{bulk_id}")).await;
    let waiting = (held["state"].as_str(), held["reason"].as_str());
    assert!(
        matches!(
            waiting,
            (Some("queued"), _) | (Some("deferred"), Some("quiet_time"))
        ),
        "the bulk message waits out quiet time: {held}"
    );
    assert!(t.sends_for(&bulk_id).await.is_empty());
    clock.advance(TimeDelta::hours(3));
    t.wait_for_message(
        &bulk_id,
        "the bulk message sent after quiet time",
        sent_or_later,
    )
    .await;
    t.stop().await;
}

#[tokio::test]
async fn a_paused_sender_holds_its_messages_until_the_pause_ends() {
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    sqlx::query("UPDATE senders SET paused_until = $2 WHERE tenant_id = $1")
        .bind(t.tenant_id)
        .bind(Utc::now() + TimeDelta::hours(1))
        .execute(&t.pool)
        .await
        .unwrap();

    let (_, body) = t.send(TestFleet::template_request("P-10"), None).await;
    let id = id_of(&body);
    let m = t
        .wait_for_message(&id, "held", |m| m["reason"] == "sender_paused")
        .await;

    assert_eq!(m["state"], "deferred");
    assert!(t.sends_for(&id).await.is_empty());
    clock.advance(TimeDelta::minutes(61));
    t.wait_for_message(&id, "sent once the pause ended", sent_or_later)
        .await;
    t.stop().await;
}

#[tokio::test]
async fn the_messaging_limit_defers_new_recipients_counts_each_once_and_frees_slots_after_24_hours()
{
    let clock = ManualClock::new(Utc::now());
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), fast_release).await;
    // A tier of two (the settings API only takes Meta's tiers; the arithmetic is the same).
    sql(
        &t,
        "UPDATE tenant_settings SET tier_override = 2 WHERE tenant_id = $1",
    )
    .await;
    let (a, b, c) = ("+447400100001", "+447400100002", "+447400100003");

    let (_, m1) = t.send(template_to(a, "L-1"), None).await;
    t.wait_for_message(&id_of(&m1), "first sent", sent_or_later)
        .await;
    let (_, m2) = t.send(template_to(b, "L-2"), None).await;
    t.wait_for_message(&id_of(&m2), "second sent", sent_or_later)
        .await;
    let (_, m3) = t.send(template_to(c, "L-3"), None).await;
    let held = t
        .wait_for_message(&id_of(&m3), "third held", |m| m["state"] == "deferred")
        .await;
    let (_, again) = t.send(template_to(a, "L-1"), None).await;
    t.wait_for_message(
        &id_of(&again),
        "a counted recipient sent again",
        sent_or_later,
    )
    .await;

    assert_eq!(held["reason"], "messaging_limit");
    assert!(t.sends_for(&id_of(&m3)).await.is_empty());
    let (status, limits) = t.get("/v1/limits").await;
    assert_eq!(status, 200);
    assert_eq!(limits["tier"], 2);
    assert_eq!(limits["used"], 2);
    assert_eq!(limits["headroom"], 0);
    assert!(limits["next_slot_at"].is_string());

    clock.advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    t.wait_for_message(
        &id_of(&m3),
        "the held one sent once a slot freed",
        sent_or_later,
    )
    .await;
    t.stop().await;
}

#[tokio::test]
async fn a_template_inside_the_service_window_does_not_count_against_the_limit() {
    let t = TestFleet::start_with(fast_release).await;
    sql(
        &t,
        "UPDATE tenant_settings SET tier_override = 1 WHERE tenant_id = $1",
    )
    .await;
    let (_, first) = t.send(template_to("+447400100011", "W-1"), None).await;
    t.wait_for_message(&id_of(&first), "first sent", sent_or_later)
        .await;
    t.sim(
        Method::POST,
        "/_sim/inbound",
        json!({"phone_number_id": t.phone_number_id, "from": CANDIDATE, "text": "Hi, is the job still open?"}),
    )
    .await;
    let mut opened = false;
    for _ in 0..200 {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM service_windows WHERE tenant_id = $1 AND recipient = $2",
        )
        .bind(t.tenant_id)
        .bind(CANDIDATE)
        .fetch_one(&t.pool)
        .await
        .unwrap();
        if n > 0 {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened, "the reply opened the window");

    let (_, reply) = t.send(TestFleet::template_request("W-2"), None).await;

    t.wait_for_message(&id_of(&reply), "sent inside the window", sent_or_later)
        .await;
    let (_, limits) = t.get("/v1/limits").await;
    assert_eq!(limits["used"], 1, "only the business-initiated one counts");
    t.stop().await;
}

#[tokio::test]
async fn a_failed_message_gives_its_slot_back() {
    let t = TestFleet::start().await;
    sql(
        &t,
        "UPDATE tenant_settings SET tier_override = 1 WHERE tenant_id = $1",
    )
    .await;
    let unreachable = "+447400100021";
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"to": unreachable, "code": 131026, "times": 1}),
    )
    .await;

    let (_, failed) = t.send(template_to(unreachable, "R-1"), None).await;
    t.wait_for_state(&id_of(&failed), "failed").await;
    let (_, next) = t.send(template_to("+447400100022", "R-2"), None).await;

    t.wait_for_message(&id_of(&next), "the slot was free again", sent_or_later)
        .await;
    let (_, limits) = t.get("/v1/limits").await;
    assert_eq!(limits["used"], 1);
    t.stop().await;
}

#[tokio::test]
async fn messages_to_one_recipient_beyond_the_pair_burst_wait_and_others_do_not() {
    let t = TestFleet::start_with(|s| {
        s.dispatch.pair_burst = 2;
        s.dispatch.pair_wait_max = Duration::from_millis(50);
    })
    .await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, b) = t
            .send(TestFleet::template_request(&format!("PR-{i}")), None)
            .await;
        ids.push(id_of(&b));
    }
    let (_, other) = t.send(template_to("+447400100031", "PR-9"), None).await;

    t.wait_for_message(&id_of(&other), "another recipient sent", sent_or_later)
        .await;
    let mut states = Vec::new();
    for id in &ids {
        let m = t
            .wait_for_message(id, "decided", |m| {
                m["state"] != "accepted" && m["state"] != "dispatching"
            })
            .await;
        states.push((m["state"].as_str().unwrap().to_owned(), m["reason"].clone()));
    }
    let held: Vec<_> = states.iter().filter(|(s, _)| s == "deferred").collect();
    assert_eq!(held.len(), 1, "{states:?}");
    assert_eq!(held[0].1, "pair_rate");
    t.stop().await;
}

#[tokio::test]
async fn an_admin_sets_a_senders_rate_within_metas_range() {
    let t = TestFleet::start().await;
    let (_, senders) = t.get("/v1/senders").await;
    let id = senders["senders"][0]["id"].as_str().unwrap().to_owned();

    let (status, sender) = t
        .admin(
            Method::PATCH,
            &format!("/v1/senders/{id}"),
            Some(json!({"rate_mps": 500})),
        )
        .await;
    assert_eq!(status, 200, "{sender}");
    assert_eq!(sender["rate_mps"], 500);
    let (status, problem) = t
        .admin(
            Method::PATCH,
            &format!("/v1/senders/{id}"),
            Some(json!({"rate_mps": 2000})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "rate_mps");
    let (_, sender) = t
        .admin(
            Method::PATCH,
            &format!("/v1/senders/{id}"),
            Some(json!({"rate_mps": null})),
        )
        .await;

    assert_eq!(sender["rate_mps"], Value::Null, "back to the default");
    t.stop().await;
}

#[tokio::test]
async fn a_slow_sender_does_not_hold_up_another_senders_messages_on_the_same_shard() {
    let t = TestFleet::start().await;
    let topology = t.topology();
    let shard = topology.shard_for(&t.phone_number_id);
    let mut other = None;
    for suffix in 10..60u8 {
        let candidate = format!("{}{suffix:02}", &t.phone_number_id[..12]);
        if candidate != t.phone_number_id && topology.shard_for(&candidate) == shard {
            other = Some(
                t.add_sender(suffix, &format!("+4420718387{suffix:02}"))
                    .await,
            );
            break;
        }
    }
    let other = other.expect("a second sender on the same shard");
    sql(
        &t,
        "UPDATE senders SET rate_mps = 1 WHERE tenant_id = $1 AND is_company_default",
    )
    .await;
    let mut slow = Vec::new();
    for i in 0..8 {
        let (_, b) = t
            .send(
                template_to(&format!("+44740010010{i}"), &format!("S-{i}")),
                None,
            )
            .await;
        slow.push(id_of(&b));
    }

    let mut fast = template_to("+447400100200", "S-fast");
    fast["sender"] = json!(other);
    let (_, fast) = t.send(fast, None).await;
    t.wait_for_message(
        &id_of(&fast),
        "the other sender's message sent",
        sent_or_later,
    )
    .await;

    let mut waiting = 0;
    for id in &slow {
        let (_, m) = t.get(&format!("/v1/messages/{id}")).await;
        if !sent_or_later(&m) {
            waiting += 1;
        }
    }
    assert!(waiting > 0, "the slow sender still had messages waiting");
    t.stop().await;
}

#[tokio::test]
async fn the_sender_is_the_named_one_else_the_users_approved_one_else_the_companys() {
    let t = TestFleet::start().await;
    let own = t.add_sender(21, "+442071838721").await;
    let pending = t.add_sender(22, "+442071838722").await;
    sqlx::query("UPDATE senders SET owner_user_id = 'u-1' WHERE phone_number_id = $1")
        .bind(&own)
        .execute(&t.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE senders SET owner_user_id = 'u-2', status = 'pending' WHERE phone_number_id = $1",
    )
    .bind(&pending)
    .execute(&t.pool)
    .await
    .unwrap();
    let as_user = |user: Option<&str>, sender: Option<&str>| {
        let mut r = TestFleet::template_request("SEL-1");
        if let Some(u) = user {
            r["user_id"] = json!(u);
        }
        if let Some(s) = sender {
            r["sender"] = json!(s);
        }
        r
    };

    let (_, users) = t.send(as_user(Some("u-1"), None), None).await;
    let (_, fallback) = t.send(as_user(Some("u-2"), None), None).await;
    let (_, company) = t.send(as_user(None, None), None).await;
    let (status_pending, named_pending) = t.send(as_user(None, Some(&pending)), None).await;
    let (status_unknown, unknown) = t.send(as_user(None, Some("123456789")), None).await;
    sql(
        &t,
        "UPDATE senders SET is_company_default = false WHERE tenant_id = $1",
    )
    .await;
    let (status_none, none) = t.send(as_user(None, None), None).await;

    let sender_of = |body: Value| {
        let t = &t;
        async move {
            let (_, m) = t.get(&format!("/v1/messages/{}", id_of(&body))).await;
            m["sender"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(sender_of(users).await, own, "the user's own sender");
    assert_eq!(
        sender_of(fallback).await,
        t.phone_number_id,
        "a pending own sender falls back to the company's"
    );
    assert_eq!(sender_of(company).await, t.phone_number_id);
    assert_eq!(status_pending, 422);
    assert_eq!(named_pending["code"], "sender_not_approved");
    assert_eq!(status_unknown, 422);
    assert_eq!(unknown["code"], "unknown_sender");
    assert_eq!(status_none, 422);
    assert_eq!(none["code"], "unknown_sender");
    assert!(
        none["detail"]
            .as_str()
            .unwrap()
            .contains("no default sender")
    );
    t.stop().await;
}
