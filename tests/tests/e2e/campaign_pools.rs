//! Campaign sender pools end to end: a campaign sent from several of the company's numbers
//! reaches every recipient once, each from one number that stays the same (the number of an
//! earlier conversation, else its hash over the pool), every number sending; the campaign's
//! status shows each number's part; bad pools are refused; the CLI creates a pool of "all".

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use wafleet_tests::{
    TestFleet,
    campaigns::{campaign_body, numbers, sent_or_later},
    id_of,
};

/// The number each recipient in `to` was sent from (successful sends only), and how often.
async fn sends_by_recipient(t: &TestFleet, to: &[String]) -> HashMap<String, Vec<String>> {
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for s in t.all_sends().await {
        let number = format!("+{}", s.to.trim_start_matches('+'));
        if s.wamid.is_some() && to.contains(&number) {
            by.entry(number).or_default().push(s.phone_number_id);
        }
    }
    by
}

/// Creates a campaign of the test template from `senders` to `to` and waits until all are sent.
async fn send_pooled(t: &TestFleet, name: &str, senders: Value, to: &[String]) -> Value {
    let mut body = campaign_body(name, to);
    body["senders"] = senders;
    let (status, created) = t.create_campaign(&body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
    assert_eq!(created["accepted"], to.len());
    let id = id_of(&created);
    t.wait_for_campaign(&id, "every recipient sent", |c| {
        sent_or_later(c) == to.len() as i64 && c["status"] == "completed"
    })
    .await
}

#[tokio::test]
async fn a_pooled_campaign_sends_each_recipient_once_from_a_stable_number_and_uses_every_number() {
    // Arrange: three company numbers; one recipient already messaged from the second.
    let t = TestFleet::start().await;
    let a = t.phone_number_id.clone();
    let b = t.add_sender(21, "+442071838721").await;
    let c = t.add_sender(22, "+442071838722").await;
    let to = numbers(300, 60);
    let mut single = TestFleet::template_request("pool-single");
    single["to"] = json!(to[7]);
    single["sender"] = json!(b);
    let (status, sent) = t.send(single, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    t.wait_for_message(
        &id_of(&sent),
        "the single send",
        wafleet_tests::sent_or_later,
    )
    .await;

    // Act
    let done = send_pooled(&t, "pool", json!([a, b, c]), &to).await;

    // Assert: what Meta received — each recipient once from the campaign, every number used.
    let first = sends_by_recipient(&t, &to).await;
    assert_eq!(first[&to[7]], [b.clone(), b.clone()], "kept on B");
    let mut per_number: BTreeMap<String, i64> = BTreeMap::new();
    for (recipient, from) in &first {
        let campaign_sends = if *recipient == to[7] { 2 } else { 1 };
        assert_eq!(from.len(), campaign_sends, "{recipient}: {from:?}");
        *per_number.entry(from.last().unwrap().clone()).or_default() += 1;
    }
    assert_eq!(first.len(), 60);
    assert_eq!(
        per_number.keys().collect::<Vec<_>>().len(),
        3,
        "{per_number:?}"
    );
    // What GET /v1/campaigns/{id} shows: the pool, each number's part matching Meta's count.
    assert_eq!(done["senders"], json!([a, b, c]));
    assert_eq!(done["sender"], json!(a));
    assert_eq!(done["sender_rate"], 240, "three numbers at 80/s");
    assert_eq!(done["pending"], 0);
    assert!(done["eta"].is_null());
    let parts = done["per_sender"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for part in parts {
        let number = part["sender"].as_str().unwrap();
        assert_eq!(sent_or_later(part), per_number[number], "{part:#}");
        assert_eq!(
            (part["sender_rate"].as_i64(), part["pending"].as_i64()),
            (Some(80), Some(0))
        );
    }

    // Act again: the same recipients in a second pooled campaign, pool listed in another order.
    send_pooled(&t, "pool-again", json!([c, a, b]), &to).await;

    // Assert: each recipient went out from the same number as the first time.
    let second = sends_by_recipient(&t, &to).await;
    for (recipient, from) in &second {
        let mut distinct = from.clone();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            1,
            "{recipient} moved between numbers: {from:?}"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn each_number_of_a_pool_sends_at_its_own_rate() {
    // Arrange: the company's number slowed to 4/s, a second one at the default 80/s.
    let t = TestFleet::start().await;
    let slow = t.phone_number_id.clone();
    let fast = t.add_sender(26, "+442071838726").await;
    let (_, senders) = t.get("/v1/senders").await;
    let slow_id = senders["senders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phone_number_id"] == json!(slow))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = t
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/senders/{slow_id}"),
            Some(json!({"rate_mps": 4})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let to = numbers(600, 30);
    let mut body = campaign_body("two-rates", &to);
    body["senders"] = json!([slow, fast]);

    // Act
    let (status, created) = t.create_campaign(&body, None).await;

    // Assert: the fast number's share is done while the slow one is still sending.
    assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
    let id = id_of(&created);
    let part = |c: &Value, number: &str| {
        c["per_sender"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sender"] == json!(number))
            .cloned()
            .unwrap()
    };
    let midway = t
        .wait_for_campaign(&id, "the fast number's share sent", |c| {
            let f = part(c, &fast);
            f["pending"] == 0 && sent_or_later(&f) > 0
        })
        .await;
    let slow_part = part(&midway, &slow);
    assert!(slow_part["pending"].as_i64().unwrap() > 0, "{midway:#}");
    assert_eq!(slow_part["sender_rate"], 4);
    assert_eq!(midway["sender_rate"], 84, "4/s and 80/s");
    assert!(midway["eta"].is_string(), "{midway:#}");
    t.wait_for_campaign(&id, "the slow number's share sent too", |c| {
        sent_or_later(c) == 30
    })
    .await;
    t.stop().await;
}

#[tokio::test]
async fn a_pool_takes_only_the_companys_approved_numbers_and_not_sender_and_senders_at_once() {
    let t = TestFleet::start().await;
    let a = t.phone_number_id.clone();
    let pending = t.add_sender(23, "+442071838723").await;
    sqlx::query("UPDATE senders SET status = 'pending' WHERE phone_number_id = $1")
        .bind(&pending)
        .execute(&t.pool)
        .await
        .unwrap();
    let to = numbers(400, 2);
    let cases = [
        (
            json!({"sender": a, "senders": [a]}),
            "invalid_field",
            "senders",
        ),
        (json!({"senders": "some"}), "invalid_field", "senders"),
        (json!({"senders": []}), "invalid_field", "senders"),
        (
            json!({"senders": [a, "16999999999999"]}),
            "unknown_sender",
            "senders[1]",
        ),
        (
            json!({"senders": [a, pending]}),
            "sender_not_approved",
            "senders[1]",
        ),
    ];

    for (pool, code, field) in cases {
        let mut body = campaign_body("bad-pool", &to);
        body.as_object_mut()
            .unwrap()
            .extend(pool.as_object().unwrap().clone());
        let (status, problem) = t.create_campaign(&body, None).await;

        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{pool}: {problem}"
        );
        assert_eq!(
            (problem["code"].as_str(), problem["field"].as_str()),
            (Some(code), Some(field)),
            "{pool}"
        );
    }
    let (_, list) = t.get("/v1/campaigns").await;
    assert_eq!(list["campaigns"], json!([]), "nothing was created");
    t.stop().await;
}

#[tokio::test]
async fn an_operator_sends_a_campaign_from_all_company_numbers_from_the_command_line() {
    use wafleet::campaign_cli::{Api, CampaignCommand};
    // Arrange: a second company number and a consultant's own, which "all" leaves out.
    let t = TestFleet::start().await;
    let second = t.add_sender(24, "+442071838724").await;
    let own = t.add_sender(25, "+442071838725").await;
    sqlx::query("UPDATE senders SET owner_user_id = 'consultant-1' WHERE phone_number_id = $1")
        .bind(&own)
        .execute(&t.pool)
        .await
        .unwrap();
    let to = numbers(500, 20);
    let file = std::env::temp_dir().join(format!("wafleet-pool-{}.ndjson", uuid::Uuid::new_v4()));
    let lines: Vec<String> = to
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"to": n, "record": {"type": "candidate", "id": format!("all-{i}")},
                   "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"}})
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let api = || Api {
        url: t.fleet.ingest_url.clone(),
        api_key: Some(t.api_key.clone()),
    };

    // Act
    CampaignCommand::Create {
        name: "all numbers".into(),
        template: "job_opportunity".into(),
        language: "en_GB".into(),
        sender: None,
        senders: vec!["all".into()],
        not_after: None,
        idempotency_key: None,
        file: file.clone(),
    }
    .run(api())
    .await
    .expect("campaign create");
    std::fs::remove_file(&file).ok();

    // Assert
    let (_, list) = t.get("/v1/campaigns").await;
    let id = list["campaigns"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        list["campaigns"][0]["senders"],
        json!([t.phone_number_id, second])
    );
    let done = t
        .wait_for_campaign(&id, "all 20 sent", |c| sent_or_later(c) == 20)
        .await;
    CampaignCommand::Status {
        id: id.parse().unwrap(),
        follow: false,
    }
    .run(api())
    .await
    .expect("campaign status");
    let used: Vec<i64> = done["per_sender"]
        .as_array()
        .unwrap()
        .iter()
        .map(sent_or_later)
        .collect();
    assert_eq!(used.len(), 2);
    assert!(used.iter().all(|n| *n > 0), "both numbers sent: {used:?}");
    let from_own = t
        .all_sends()
        .await
        .iter()
        .filter(|s| s.phone_number_id == own)
        .count();
    assert_eq!(
        from_own, 0,
        "a consultant's own number is not a company number"
    );
    t.stop().await;
}
