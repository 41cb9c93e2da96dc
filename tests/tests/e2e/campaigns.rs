//! Creating campaigns end to end: per-recipient validation (invalid rows reported and listable,
//! the rest sent), a duplicate recipient sent once, idempotent replay, NDJSON streaming, and
//! producers adding bulk messages to a campaign over AMQP intake.

use reqwest::StatusCode;
use serde_json::json;
use wafleet_tests::{
    TestFleet,
    campaigns::{campaign_body, numbers, recipient, sent_or_later},
};

#[tokio::test]
async fn a_campaign_with_invalid_rows_sends_the_valid_ones_and_lists_the_rest() {
    let t = TestFleet::start().await;
    let good = numbers(0, 3);
    let mut body = campaign_body("invalid-rows", &good);
    let list = body["recipients"].as_array_mut().unwrap();
    list.insert(1, recipient("0770090", "bad-number"));
    list.push(json!({"to": "+447400100900", "record": {"type": "candidate", "id": "no-fields"}}));
    list.push(
        json!({"to": "+447400100901", "merge_fields": {"KNOWNAS": "A", "CONSULTANTUSERNAME": "B"}}),
    );

    let (status, created) = t.create_campaign(&body, None).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
    assert_eq!(created["recipients"], 6);
    assert_eq!(created["accepted"], 3);
    assert_eq!(created["rejected"], 3);
    assert_eq!(created["rejected_by_code"]["invalid_recipient"], 1);
    assert_eq!(
        created["rejected_by_code"]["template_parameters_mismatch"],
        1
    );
    assert_eq!(created["rejected_by_code"]["invalid_record"], 1);
    let id = created["id"].as_str().unwrap();
    let (_, rejections) = t.get(&format!("/v1/campaigns/{id}/rejections")).await;
    let rows = rejections["rejections"].as_array().unwrap();
    let summary: Vec<(i64, &str)> = rows
        .iter()
        .map(|r| (r["position"].as_i64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "invalid_recipient"),
            (4, "template_parameters_mismatch"),
            (5, "invalid_record")
        ]
    );
    assert_eq!(rows[0]["field"], "to");
    assert_eq!(rows[1]["field"], "template.parameters");
    let done = t
        .wait_for_campaign(id, "the valid recipients sent", |c| {
            sent_or_later(c) == 3 && c["status"] == "completed"
        })
        .await;
    assert_eq!(done["pending"], 0);
    for n in &good {
        assert_eq!(t.sends_to(n).await, 1, "{n} messaged once");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_recipient_listed_twice_in_one_campaign_is_sent_once() {
    let t = TestFleet::start().await;
    let to = numbers(10, 2);
    let mut body = campaign_body("twice", &to);
    body["recipients"]
        .as_array_mut()
        .unwrap()
        .push(recipient(&to[0], "twice-again"));

    let (status, created) = t.create_campaign(&body, None).await;

    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (created["accepted"].as_i64(), created["duplicates"].as_i64()),
        (Some(2), Some(1))
    );
    let id = created["id"].as_str().unwrap();
    t.wait_for_campaign(id, "both sent", |c| sent_or_later(c) == 2)
        .await;
    assert_eq!(t.sends_to(&to[0]).await, 1);
    t.stop().await;
}

#[tokio::test]
async fn replaying_a_campaign_with_its_idempotency_key_returns_the_first_answer_and_sends_nothing_more()
 {
    let t = TestFleet::start().await;
    let to = numbers(20, 2);
    let body = campaign_body("replay", &to);

    let (_, first) = t.create_campaign(&body, Some("camp-1")).await;
    let (status, again) = t.create_campaign(&body, Some("camp-1")).await;
    let mut changed = body.clone();
    changed["name"] = json!("replay, changed");
    let (conflict, problem) = t.create_campaign(&changed, Some("camp-1")).await;

    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again, first);
    assert_eq!(conflict, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "idempotency_conflict");
    let (_, list) = t.get("/v1/campaigns").await;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);
    let id = first["id"].as_str().unwrap();
    t.wait_for_campaign(id, "both sent", |c| sent_or_later(c) == 2)
        .await;
    assert_eq!(t.sends_to(&to[0]).await, 1);
    t.stop().await;
}

#[tokio::test]
async fn an_ndjson_campaign_streams_a_header_line_then_one_recipient_per_line() {
    let t = TestFleet::start().await;
    let to = numbers(30, 3);
    let mut lines = vec![
        json!({"name": "ndjson", "template": {"name": "job_opportunity", "language": "en_GB"}})
            .to_string(),
    ];
    lines.extend(
        to.iter()
            .enumerate()
            .map(|(i, n)| recipient(n, &format!("nd-{i}")).to_string()),
    );
    lines.insert(2, "{not json".to_owned());

    let (status, created) = t.create_campaign_ndjson(&lines, Some("nd-1")).await;
    let (_, replay) = t.create_campaign_ndjson(&lines, Some("nd-1")).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{created:#}");
    assert_eq!(
        (created["accepted"].as_i64(), created["rejected"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(replay, created);
    let id = created["id"].as_str().unwrap();
    let (_, rejections) = t.get(&format!("/v1/campaigns/{id}/rejections")).await;
    assert_eq!(rejections["rejections"][0]["position"], 1);
    assert_eq!(rejections["rejections"][0]["code"], "invalid_request");
    t.wait_for_campaign(id, "all sent", |c| sent_or_later(c) == 3)
        .await;
    t.stop().await;
}

#[tokio::test]
async fn a_campaign_without_a_usable_template_is_refused_whole() {
    let t = TestFleet::start().await;
    let mut body = campaign_body("no-template", &numbers(40, 1));
    body["template"]["name"] = json!("never_synced");

    let (status, problem) = t.create_campaign(&body, None).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "template_not_approved");
    let (_, list) = t.get("/v1/campaigns").await;
    assert!(list["campaigns"].as_array().unwrap().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn producers_add_bulk_messages_to_a_campaign_over_amqp_and_a_repeat_is_not_sent_twice() {
    let t = TestFleet::start().await;
    let (_, created) = t
        .create_campaign(&campaign_body("amqp", &numbers(50, 1)), None)
        .await;
    let id = created["id"].as_str().unwrap();
    let extra = numbers(51, 1).remove(0);
    let message = json!({
        "to": extra, "record": {"type": "candidate", "id": "amqp-1"},
        "template": {"name": "job_opportunity", "language": "en_GB"},
        "merge_fields": {"KNOWNAS": "Anna", "CONSULTANTUSERNAME": "Sam"},
        "kind": "bulk", "campaign_id": id,
    });

    t.publish_intake(message.to_string().as_bytes(), Some("p-1"))
        .await;
    t.publish_intake(message.to_string().as_bytes(), Some("p-2"))
        .await;

    let done = t
        .wait_for_campaign(id, "both recipients sent", |c| sent_or_later(c) == 2)
        .await;
    assert_eq!(done["pending"], 0);
    let (_, history) = t.get("/v1/records/candidate/amqp-1/messages").await;
    let rows = history["messages"].as_array().expect("history");
    assert_eq!(rows.len(), 1, "{history:#}");
    assert_eq!(rows[0]["kind"], "bulk");
    assert_eq!(t.sends_to(&extra).await, 1);
    t.stop().await;
}

#[tokio::test]
async fn an_operator_creates_a_campaign_from_a_csv_file_and_cancels_it_from_the_command_line() {
    use wafleet::campaign_cli::{Api, CampaignCommand};
    let t = TestFleet::start_with(|s| s.dispatch.sender_rate = 1).await;
    let file = std::env::temp_dir().join(format!("wafleet-campaign-{}.csv", uuid::Uuid::new_v4()));
    let to = numbers(60, 3);
    let mut csv = "to,record_type,record_id,KNOWNAS,CONSULTANTUSERNAME\n".to_owned();
    for (i, n) in to.iter().enumerate() {
        csv.push_str(&format!("{n},candidate,cli-{i},Anna,Sam\n"));
    }
    csv.push_str("not-a-number,candidate,cli-bad,Anna,Sam\n");
    std::fs::write(&file, csv).unwrap();
    let api = || Api {
        url: t.fleet.ingest_url.clone(),
        api_key: Some(t.api_key.clone()),
    };

    CampaignCommand::Create {
        name: "from the CLI".into(),
        template: "job_opportunity".into(),
        language: "en_GB".into(),
        sender: None,
        senders: Vec::new(),
        not_after: None,
        idempotency_key: Some("cli-1".into()),
        file: file.clone(),
    }
    .run(api())
    .await
    .expect("campaign create");
    let (_, list) = t.get("/v1/campaigns").await;
    let created = list["campaigns"][0].clone();
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    CampaignCommand::Cancel { id }
        .run(api())
        .await
        .expect("cancel");
    CampaignCommand::Status { id, follow: true }
        .run(api())
        .await
        .expect("status --follow ends once nothing is pending");
    std::fs::remove_file(&file).ok();

    assert_eq!(
        (created["accepted"].as_i64(), created["rejected"].as_i64()),
        (Some(3), Some(1))
    );
    let after = t.campaign(&id.to_string()).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["pending"], 0);
    t.stop().await;
}

#[tokio::test]
async fn a_campaign_goes_at_its_senders_own_rate_and_refuses_a_disallowed_country() {
    let t = TestFleet::start().await;
    let (_, senders) = t.get("/v1/senders").await;
    let sender = senders["senders"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = t
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/senders/{sender}"),
            Some(json!({"rate_mps": 250})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/settings",
            Some(json!({"allowed_countries": ["GB"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut to = numbers(60, 2);
    to.push("+4915112345678".into());

    let (status, created) = t
        .create_campaign(&campaign_body("own-rate", &to), None)
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["rejected_by_code"]["country_not_allowed"], 1);
    let id = created["id"].as_str().unwrap();
    let campaign = t
        .wait_for_campaign(id, "the British recipients sent", |c| sent_or_later(c) == 2)
        .await;
    assert_eq!(campaign["sender_rate"], 250);
    assert_eq!(t.sends_to("+4915112345678").await, 0);
    t.stop().await;
}
