//! Consent and data protection (issue 16 item 4): opt-outs by hand with their audit, STOP
//! replies by the documented rule, erasure of a record, and the retention sweep.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::{CANDIDATE, TestFleet, id_of, sent_or_later};

/// An inbound text from `from` to the tenant's number, as Meta posts it.
fn text_from(from: &str, wamid: &str, body: &str) -> Value {
    json!({"from": from.trim_start_matches('+'), "id": wamid,
           "timestamp": chrono::Utc::now().timestamp().to_string(),
           "type": "text", "text": {"body": body}})
}

#[tokio::test]
async fn opt_outs_are_added_with_a_reason_listed_and_removed_each_with_an_audit_entry() {
    // Arrange
    let t = TestFleet::start().await;
    let mut events = t.events().await;
    let body = json!({"phone": CANDIDATE, "reason": "asked by phone not to be contacted"});

    // Act: added (twice: the second changes nothing), then a template to that number.
    let (added, view) = t.post("/v1/opt-outs", body.clone()).await;
    let (again, _) = t.post("/v1/opt-outs", body).await;
    let (_, m) = t.send(TestFleet::template_request("C-O"), None).await;
    let refused = t.wait_for_state(&id_of(&m), "rejected").await;
    let (_, listed) = t.get("/v1/opt-outs").await;
    let path = format!("/v1/opt-outs/{CANDIDATE}");
    let (removed, gone) = t.admin(Method::DELETE, &path, None).await;
    let (twice, _) = t.admin(Method::DELETE, &path, None).await;
    let (_, after) = t.get("/v1/opt-outs").await;
    let (_, audit) = t.get("/v1/consent/audit").await;

    // Assert
    assert_eq!((added.as_u16(), again.as_u16()), (201, 200), "{view}");
    assert_eq!(view["source"], "api");
    assert_eq!(view["scope"], "all");
    assert_eq!(refused["reason"], "recipient_opted_out");
    assert_eq!(listed["opt_outs"][0]["phone"], CANDIDATE);
    assert_eq!(
        listed["opt_outs"][0]["reason"],
        "asked by phone not to be contacted"
    );
    assert_eq!(removed, 200, "{gone}");
    assert_eq!(gone["removed"][0]["scope"], "all");
    assert_eq!(twice, 404);
    assert_eq!(after["opt_outs"], json!([]));
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["opt_out_removed", "opt_out_added"]);
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("apikey:"));
    assert!(entries[0]["api_key_id"].is_string());
    assert_eq!(entries[1]["phone"], CANDIDATE);
    let out = events
        .wait_for("optout", "api opt-out", |e| e["action"] == "opted_out")
        .await;
    assert_eq!(out["source"], "api");
    events
        .wait_for("optout", "api opt-in", |e| e["action"] == "opted_in")
        .await;
    t.stop().await;
}

#[tokio::test]
async fn opt_out_requests_are_checked_field_by_field_and_kept_within_the_tenant() {
    // Arrange: an opt-out of ours, another tenant, a reader key.
    let t = TestFleet::start().await;
    let (status, _) = t
        .post(
            "/v1/opt-outs",
            json!({"phone": CANDIDATE, "scope": "marketing", "reason": "x"}),
        )
        .await;
    assert_eq!(status, 201);
    let other = t.other_tenant("Other", "+442071830002").await;
    let (_, reader) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "reader"})),
        )
        .await;
    let reader = reader["key"].as_str().unwrap().to_owned();

    // Act and assert: each bad field named.
    for (body, field) in [
        (json!({"phone": CANDIDATE}), "reason"),
        (json!({"phone": CANDIDATE, "reason": "  "}), "reason"),
        (json!({"reason": "r"}), "phone"),
        (json!({"phone": "07400 123456", "reason": "r"}), "phone"),
        (json!({"phone": 447400123456_u64, "reason": "r"}), "phone"),
        (
            json!({"phone": CANDIDATE, "scope": "sms", "reason": "r"}),
            "scope",
        ),
    ] {
        let (status, problem) = t.post("/v1/opt-outs", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}");
    }
    let (status, problem) = t.get("/v1/opt-outs?limit=1000").await;
    assert_eq!((status.as_u16(), &problem["field"]), (400, &json!("limit")));
    let (status, problem) = t
        .admin(Method::DELETE, "/v1/opt-outs/not-a-number", None)
        .await;
    assert_eq!((status.as_u16(), &problem["field"]), (422, &json!("phone")));
    // Another tenant sees none of ours and removes none of ours.
    let theirs = Some(other.api_key.as_str());
    let (_, list) = t.call(Method::GET, "/v1/opt-outs", theirs, None).await;
    assert_eq!(list["opt_outs"], json!([]));
    let path = format!("/v1/opt-outs/{CANDIDATE}");
    assert_eq!(t.call(Method::DELETE, &path, theirs, None).await.0, 404);
    // A reader lists but neither adds nor removes.
    let key = Some(reader.as_str());
    assert_eq!(t.call(Method::GET, "/v1/opt-outs", key, None).await.0, 200);
    let add = json!({"phone": "+447400123999", "reason": "r"});
    assert_eq!(
        t.call(Method::POST, "/v1/opt-outs", key, Some(add)).await.0,
        403
    );
    assert_eq!(t.call(Method::DELETE, &path, key, None).await.0, 403);
    let (_, ours) = t.get("/v1/opt-outs").await;
    assert_eq!(ours["opt_outs"].as_array().unwrap().len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn stop_replies_opt_out_by_the_documented_rule_and_dont_stop_does_not() {
    // Arrange: three people write; the rule is in README "Opt-outs".
    let t = TestFleet::start().await;
    let (please, dot, dont) = ("+447400100001", "+447400100002", "+447400100003");
    let body = t.inbound_payload(vec![
        text_from(please, "wamid.please", "Stop please"),
        text_from(dot, "wamid.dot", "STOP."),
        text_from(dont, "wamid.dont", "don't stop"),
    ]);

    // Act
    assert_eq!(t.post_webhook(&body, Some(&t.app_secret)).await, 200);
    t.wait_for_count("SELECT count(*) FROM messages WHERE direction = 'in'", 3)
        .await;

    // Assert
    let (_, list) = t.get("/v1/opt-outs").await;
    let phones: Vec<&str> = list["opt_outs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["phone"].as_str().unwrap())
        .collect();
    assert_eq!(phones, [please, dot]);
    assert_eq!(list["opt_outs"][0]["source"], "keyword");
    t.stop().await;
}

/// Every table's rows that contain `needle` (as text, or as the hex of a `bytea` column), as
/// `table: count`.
async fn tables_holding(t: &TestFleet, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{table}\" AS t
             WHERE strpos(t::text, $1) > 0 OR strpos(t::text, encode(convert_to($1, 'UTF8'), 'hex')) > 0"
        )))
        .bind(needle)
        .fetch_one(&t.pool)
        .await
        .unwrap();
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}

#[tokio::test]
async fn an_erased_record_has_no_text_media_or_number_left_in_any_table() {
    // Arrange: a template, the person's replies (a text and a photo), and their opt-out.
    let t = TestFleet::start().await;
    let number = "+447400177001";
    let digits = number.trim_start_matches('+');
    let mut body = TestFleet::template_request("C-E");
    body["to"] = json!(number);
    let (_, m) = t.send(body, None).await;
    t.wait_for_state(&id_of(&m), "read").await;
    let photo = json!({"from": digits, "id": "wamid.photo", "type": "image",
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "image": {"id": "media-4711", "mime_type": "image/jpeg", "caption": "my passport"}});
    let inbound = t.inbound_payload(vec![
        text_from(number, "wamid.secret", "I live at 12 Hidden Lane"),
        photo,
    ]);
    assert_eq!(t.post_webhook(&inbound, Some(&t.app_secret)).await, 200);
    t.wait_for_count("SELECT count(*) FROM messages WHERE direction = 'in'", 2)
        .await;
    let (added, _) = t
        .post(
            "/v1/opt-outs",
            json!({"phone": number, "reason": "asked to be forgotten"}),
        )
        .await;
    assert_eq!(added, 201);
    assert!(
        !tables_holding(&t, digits).await.is_empty(),
        "the test finds the number"
    );

    // Act
    let (status, erased) = t
        .admin(
            Method::DELETE,
            "/v1/records/candidate/C-E?opt_outs=forget",
            None,
        )
        .await;

    // Assert: nothing left of the number, the text or the photo, in any table.
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["messages_erased"], 3);
    assert_eq!(erased["numbers_erased"], 1);
    assert_eq!(erased["opt_outs_removed"], 1);
    for needle in [digits, "Hidden Lane", "media-4711", "passport"] {
        assert_eq!(
            tables_holding(&t, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    // The history still counts three messages, with billing kept.
    let (_, history) = t.get("/v1/records/candidate/C-E/messages").await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|m| m["erased_at"].is_string() && m["to"].is_null())
    );
    assert!(messages.iter().any(|m| m["pricing"].is_object()));
    let (_, audit) = t.get("/v1/consent/audit").await;
    assert_eq!(audit["entries"][0]["action"], "record_erased");
    assert_eq!(audit["entries"][0]["record_id"], "C-E");
    assert_eq!(audit["entries"][1]["phone"], Value::Null);
    t.stop().await;
}

#[tokio::test]
async fn erasure_keeps_an_opt_out_unless_asked_and_is_for_admins_of_the_tenant_only() {
    // Arrange: a sent message and an opt-out; another tenant; a sender key.
    let t = TestFleet::start().await;
    let (_, m) = t.send(TestFleet::template_request("C-K"), None).await;
    t.wait_for_message(&id_of(&m), "sent", sent_or_later).await;
    let opt_out = json!({"phone": CANDIDATE, "reason": "STOP by email"});
    assert_eq!(t.post("/v1/opt-outs", opt_out).await.0, 201);
    let other = t.other_tenant("Other", "+442071830003").await;
    let (_, sender) = t
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "sender"})),
        )
        .await;
    let path = "/v1/records/candidate/C-K";

    // Act and assert: refused to a sender, unknown to another tenant, a bad option named.
    let key = sender["key"].as_str();
    assert_eq!(t.call(Method::DELETE, path, key, None).await.0, 403);
    let theirs = Some(other.api_key.as_str());
    assert_eq!(t.call(Method::DELETE, path, theirs, None).await.0, 404);
    assert_eq!(
        t.admin(Method::DELETE, "/v1/records/candidate/nobody", None)
            .await
            .0,
        404
    );
    let (status, problem) = t
        .admin(Method::DELETE, &format!("{path}?opt_outs=maybe"), None)
        .await;
    assert_eq!(
        (status.as_u16(), &problem["field"]),
        (400, &json!("opt_outs"))
    );
    // Erased without forgetting: the STOP stays honoured, and the number with it only there.
    let (status, erased) = t.admin(Method::DELETE, path, None).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["opt_outs"], "kept");
    let (_, list) = t.get("/v1/opt-outs").await;
    assert_eq!(list["opt_outs"][0]["phone"], CANDIDATE);
    let mut left = tables_holding(&t, CANDIDATE.trim_start_matches('+')).await;
    left.sort();
    assert_eq!(
        left,
        ["consent_audit: 1", "opt_outs: 1", "webhook_subjects: 1"]
    );
    t.stop().await;
}

#[tokio::test]
async fn the_retention_sweep_anonymises_only_messages_older_than_the_period() {
    // Arrange: a delivered template and a reply.
    let t = TestFleet::start().await;
    let (_, m) = t.send(TestFleet::template_request("C-R"), None).await;
    let id = id_of(&m);
    t.wait_for_state(&id, "read").await;
    let reply = t.inbound_payload(vec![text_from(CANDIDATE, "wamid.keep", "See you Monday")]);
    assert_eq!(t.post_webhook(&reply, Some(&t.app_secret)).await, 200);
    t.wait_for_count("SELECT count(*) FROM messages WHERE direction = 'in'", 1)
        .await;
    let keep = std::time::Duration::from_secs(86_400);
    let now = chrono::Utc::now();

    // Act: a sweep half a day later, then one two days later.
    let early = wafleet_ingest::retention::sweep_once(
        &t.pool,
        keep,
        100,
        now + chrono::Duration::hours(12),
    )
    .await
    .unwrap();
    let late =
        wafleet_ingest::retention::sweep_once(&t.pool, keep, 100, now + chrono::Duration::days(2))
            .await
            .unwrap();
    let again =
        wafleet_ingest::retention::sweep_once(&t.pool, keep, 100, now + chrono::Duration::days(2))
            .await
            .unwrap();

    // Assert: nothing was old enough, then both were, and each is looked at once.
    assert_eq!(early, (0, 0));
    assert_eq!(late, (2, 2));
    assert_eq!(again, (0, 0));
    // The reply's notification leaves the events outbox once published.
    t.wait_for_count("SELECT count(*) FROM outbound_events", 0)
        .await;
    let (_, out) = t.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(out["content"], json!({"erased": true}));
    assert_eq!(out["to"], Value::Null);
    assert_eq!(out["state"], "read");
    assert!(out["pricing"].is_object());
    assert!(out["erased_at"].is_string());
    assert!(tables_holding(&t, "See you Monday").await.is_empty());
    t.stop().await;
}

#[tokio::test]
async fn with_retention_set_the_ingest_sweeper_anonymises_messages_once_they_are_old_enough() {
    // Arrange: a fleet on a clock the test moves, keeping messages for a day.
    let clock = wafleet_core::clock::ManualClock::new(chrono::Utc::now());
    let t = TestFleet::start_with_clock(std::sync::Arc::new(clock.clone()), |s| {
        s.retention.messages = Some(std::time::Duration::from_secs(86_400));
        s.retention.interval = std::time::Duration::from_millis(100);
    })
    .await;
    let (_, m) = t.send(TestFleet::template_request("C-Y"), None).await;
    let id = id_of(&m);
    t.wait_for_state(&id, "read").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, young) = t.get(&format!("/v1/messages/{id}")).await;

    // Act: two days pass.
    clock.advance(chrono::Duration::days(2));

    // Assert: kept while young, anonymised once old.
    assert_eq!(young["erased_at"], Value::Null);
    let old = t
        .wait_for_message(&id, "anonymised by retention", |m| {
            m["erased_at"].is_string()
        })
        .await;
    assert_eq!(old["content"], json!({"erased": true}));
    assert_eq!(old["to"], Value::Null);
    t.stop().await;
}
