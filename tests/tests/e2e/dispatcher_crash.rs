//! A dispatcher killed mid-stream (SIGKILL: no drain, no acks, no last write). Only the messages
//! whose Graph call may have started are ambiguous: Meta may have them, so they wait
//! `ambiguous_resend_after` for a status webhook. Everything else the dead process held was
//! never claimed (the claim runs no further ahead of the sender's budget than `claim_ahead`),
//! so the next dispatcher sends it at once instead of leaving it `dispatching` for that wait.
//! And every message reaches Meta exactly once.

use serde_json::json;
use std::time::{Duration, Instant};
use wafleet_tests::{TestFleet, fast_release, id_of, procs::ServiceProcess};

/// Messages of the tenant in `state`.
async fn count_in(t: &TestFleet, state: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE tenant_id = $1 AND state = $2")
        .bind(t.tenant_id)
        .bind(state)
        .fetch_one(&t.pool)
        .await
        .unwrap()
}

/// Messages Meta accepted, by the simulator's count.
async fn accepted_by_meta(t: &TestFleet) -> usize {
    t.all_sends()
        .await
        .iter()
        .filter(|s| s.error_code.is_none())
        .count()
}

#[tokio::test]
async fn a_killed_dispatcher_strands_only_what_it_was_sending_and_every_message_is_sent_once() {
    let t = TestFleet::start_without_dispatcher(|s| {
        s.dispatch.ambiguous_resend_after = Duration::from_secs(5);
        fast_release(s);
    })
    .await;
    let slow = |s: &mut wafleet_core::Settings| s.dispatch.sender_rate = 4;
    let mut dispatcher = ServiceProcess::start(&t, "dispatcher", slow).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let mut body = TestFleet::template_request(&format!("DC-{i}"));
        body["to"] = json!(format!("+4474009{i:05}"));
        let (status, b) = t.send(body, None).await;
        assert_eq!(status, 202, "{b}");
        ids.push(id_of(&b));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted_by_meta(&t).await < 4 {
        assert!(Instant::now() < deadline, "the dispatcher never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    dispatcher.kill();
    let stranded = count_in(&t, "dispatching").await;
    let sent_before = accepted_by_meta(&t).await;
    let mut dispatcher = ServiceProcess::start(&t, "dispatcher", slow).await;
    // Everything not stranded goes at the sender's rate, without the ambiguous wait.
    let unstranded = ids.len() - usize::try_from(stranded).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted_by_meta(&t).await < unstranded {
        assert!(
            Instant::now() < deadline,
            "only {} of the {unstranded} messages that were never claimed were sent",
            accepted_by_meta(&t).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        t.wait_for_message_within(
            id,
            "sent",
            Duration::from_secs(30),
            wafleet_tests::sent_or_later,
        )
        .await;
    }

    // 4/s × 0.5 s of claim room, plus calls in flight.
    assert!(
        stranded <= 4,
        "{stranded} messages were left dispatching by the killed process (sent before: {sent_before})"
    );
    for id in &ids {
        let sends = t.sends_for(id).await;
        assert_eq!(
            sends.iter().filter(|s| s.error_code.is_none()).count(),
            1,
            "Meta got {id} once: {sends:?}"
        );
    }
    dispatcher.kill();
    t.stop().await;
}
