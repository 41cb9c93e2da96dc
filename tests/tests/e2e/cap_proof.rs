//! The proof of the portfolio cap (SPEC §4): two dispatcher processes — two
//! `wafleet_dispatcher::Application`s with their own database pools, each the active consumer
//! of a different shard — send for one tenant of tier 250 through two senders, to 1,000
//! distinct recipients. Exactly 250 reach Meta, the other 750 are `deferred: messaging_limit`
//! and none is lost; each time the injected clock moves past 24 h, 250 more go out, and never
//! more than 250 recipients in any 24 h.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use futures_util::{StreamExt, stream};
use reqwest::Method;
use serde_json::json;
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use wafleet_core::clock::ManualClock;
use wafleet_meta_sim::RecordedSend;
use wafleet_tests::TestFleet;

const RECIPIENTS: usize = 1_000;
const TIER: usize = 250;

fn recipient(i: usize) -> String {
    format!("+4474001{i:05}")
}

/// Message counts by (state, reason); sent, delivered and read count as `sent`.
async fn tally(t: &TestFleet) -> HashMap<(String, String), i64> {
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT CASE WHEN state IN ('sent', 'delivered', 'read') THEN 'sent' ELSE state END,
                reason, count(*)
         FROM messages WHERE tenant_id = $1 AND direction = 'out' GROUP BY 1, 2",
    )
    .bind(t.tenant_id)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(s, r, n)| ((s, r.unwrap_or_default()), n))
        .collect()
}

/// Waits until `sent` messages are out and the rest wait on the limit (2 minutes at most).
async fn wait_for_split(t: &TestFleet, sent: i64) -> HashMap<(String, String), i64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = tally(t).await;
        let out = counts
            .get(&("sent".into(), String::new()))
            .copied()
            .unwrap_or(0);
        let held = counts
            .get(&("deferred".into(), "messaging_limit".into()))
            .copied()
            .unwrap_or(0);
        assert!(
            out <= sent,
            "overshoot: {out} sent, the cap allows {sent}: {counts:?}"
        );
        if out == sent && held == RECIPIENTS as i64 - sent {
            return counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for {sent} sent and the rest held; now {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Successful sends the simulated Meta answered, by recipient.
async fn meta_sends(t: &TestFleet) -> Vec<RecordedSend> {
    t.all_sends()
        .await
        .into_iter()
        .filter(|s| s.wamid.is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_never_send_to_more_than_the_tier_in_any_24_hours() {
    // Arrange: the fleet's dispatcher consumes shard 0 only, a second one shard 1.
    let t0 = Utc::now();
    let clock = ManualClock::new(t0);
    let t = TestFleet::start_with_clock(Arc::new(clock.clone()), |s| {
        s.dispatch.consume_shards = Some(vec![0]);
        s.dispatch.sender_rate = 1_000;
        s.dispatch.releaser_interval = Duration::from_millis(100);
        s.database_max_connections = 8;
    })
    .await;
    let topology = t.topology();
    let main_shard = topology.shard_for(&t.phone_number_id);
    let mut second = None;
    for suffix in 10..90u8 {
        let id = format!("{}{suffix:02}", &t.phone_number_id[..12]);
        if id != t.phone_number_id && topology.shard_for(&id) != main_shard {
            second = Some(
                t.add_sender(suffix, &format!("+4420718386{suffix:02}"))
                    .await,
            );
            break;
        }
    }
    let second = second.expect("a sender on the other shard");
    let senders = [t.phone_number_id.clone(), second.clone()];
    for (id, phone) in senders.iter().zip(["+442071838750", "+442071838651"]) {
        // Meta's throughput for both numbers: 1,000 mps, so nothing here is throttled.
        t.sim(
            Method::POST,
            "/_sim/numbers",
            json!({"phone_number_id": id, "waba_id": t.waba_id, "display_phone_number": phone,
                   "verified_name": "Acme Test", "mps": 1000}),
        )
        .await;
    }
    let (status, _) = t
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"tier_override": TIER})),
        )
        .await;
    assert_eq!(status, 200);

    let mut second_settings = t.settings.clone();
    second_settings.dispatch.consume_shards = Some(vec![1]);
    let cancel = CancellationToken::new();
    let dispatcher2 =
        wafleet_dispatcher::Application::build(second_settings, Arc::new(clock.clone()), &cancel)
            .await
            .expect("a second dispatcher");
    let dispatcher2 = tokio::spawn(dispatcher2.run_until_stopped(cancel.clone()));

    // Act: 1,000 distinct recipients, half through each sender (so each process sends some).
    let statuses: Vec<u16> = stream::iter(0..RECIPIENTS)
        .map(|i| {
            let t = &t;
            let sender = senders[i % 2].clone();
            async move {
                let mut request = TestFleet::template_request(&format!("CAP-{i}"));
                request["to"] = json!(recipient(i));
                request["sender"] = json!(sender);
                t.send(request, None).await.0.as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 202), "every send accepted");

    // Assert: exactly the tier went out, the rest wait on the limit, nothing else happened.
    let counts = wait_for_split(&t, TIER as i64).await;
    assert_eq!(counts.len(), 2, "no other states: {counts:?}");
    let sends = meta_sends(&t).await;
    assert_eq!(sends.len(), TIER, "Meta received exactly the tier");
    for sender in &senders {
        assert!(
            sends.iter().any(|s| &s.phone_number_id == sender),
            "both dispatchers sent ({sender})"
        );
    }
    let (_, limits) = t.get("/v1/limits").await;
    assert_eq!(limits["used"], TIER);
    assert_eq!(limits["headroom"], 0);
    let (id,): (uuid::Uuid,) = sqlx::query_as(
        "SELECT id FROM messages WHERE tenant_id = $1 AND state = 'deferred' LIMIT 1",
    )
    .bind(t.tenant_id)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let (_, held) = t.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(held["state"], "deferred");
    assert_eq!(held["reason"], "messaging_limit");

    // Each time the window moves on, the next 250 go out.
    for day in 2..=RECIPIENTS / TIER {
        clock.advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
        wait_for_split(&t, (day * TIER) as i64).await;
        assert_eq!(meta_sends(&t).await.len(), day * TIER);
    }

    // Never more than the tier in any 24 h (by the fleet's clock: the claim of the attempt
    // that reached Meta, each message's last), each recipient once.
    let sent_at: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(e.at) AS at FROM message_events e
         JOIN messages m ON m.id = e.message_id AND m.tenant_id = e.tenant_id
         WHERE m.tenant_id = $1 AND m.state IN ('sent', 'delivered', 'read')
           AND e.state = 'dispatching'
         GROUP BY m.id ORDER BY at",
    )
    .bind(t.tenant_id)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(sent_at.len(), RECIPIENTS);
    for (i, at) in sent_at.iter().enumerate() {
        let in_window = sent_at[..=i]
            .iter()
            .filter(|s| **s > *at - TimeDelta::hours(24))
            .count();
        assert!(
            in_window <= TIER,
            "{in_window} sends in the 24 h up to {at}"
        );
    }
    let sends = meta_sends(&t).await;
    let mut recipients: Vec<&str> = sends.iter().map(|s| s.to.as_str()).collect();
    recipients.sort_unstable();
    recipients.dedup();
    assert_eq!(
        recipients.len(),
        RECIPIENTS,
        "every recipient once, none twice"
    );

    cancel.cancel();
    dispatcher2.await.unwrap().unwrap();
    t.stop().await;
}
