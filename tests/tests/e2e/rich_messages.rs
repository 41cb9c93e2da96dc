//! Rich messages, end to end: a job-ad template with a document header and an "Apply" URL
//! button filled from merge fields; and, inside the service window, a job description as a
//! document replying to the candidate's message, reply buttons, a list, an interview location
//! and a reaction. Each reaches Meta (the simulator, which checks them as Meta does) in Meta's
//! shape; bad input gets a 422 naming the field, before anything is stored or sent.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::{CANDIDATE, TestFleet, id_of, sent_or_later};

/// Registers `job_ad` (document header, body `{{1}}`, an Apply URL button and a quick reply)
/// with the simulator and syncs the company's templates.
async fn with_job_ad_template(t: &TestFleet) {
    t.sim(
        Method::POST,
        "/_sim/templates",
        json!({
            "waba_id": t.waba_id, "name": "job_ad", "language": "en_GB", "category": "MARKETING",
            "body_text": "Hi {{1}}, this role could suit you.",
            "header": {"format": "DOCUMENT"},
            "buttons": [
                {"type": "URL", "text": "Apply", "url": "https://jobs.example.com/apply/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Not for me"},
            ],
        }),
    )
    .await;
    let (status, body) = t.admin(Method::POST, "/v1/templates/sync", None).await;
    assert!(status.is_success(), "{body}");
}

fn job_ad(record: &str) -> Value {
    json!({
        "to": CANDIDATE,
        "record": {"type": "candidate", "id": record},
        "template": {
            "name": "job_ad", "language": "en_GB", "parameters": ["Anna"],
            "header": {"type": "document", "link": "https://cdn.example.com/jd-4411.pdf",
                       "filename": "Senior nurse.pdf"},
            "buttons": [
                {"index": 0, "sub_type": "url", "merge_field": "JOBREF"},
                {"index": 1, "sub_type": "quick_reply", "value": "NOT_FOR_ME"},
            ],
        },
        "merge_fields": {"JOBREF": "J-4411"},
    })
}

/// The candidate writes in (opening the window); returns the wamid of their message.
async fn candidate_writes_and_the_window_opens(t: &TestFleet, text: &str) -> String {
    let wamid = t.candidate_writes(text).await;
    // The window is open for us once the webhook is recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM service_windows WHERE tenant_id = $1 AND phone_number_id = $2",
        )
        .bind(t.tenant_id)
        .bind(&t.phone_number_id)
        .fetch_optional(&t.pool)
        .await
        .unwrap();
        if open.is_some() {
            return wamid;
        }
        assert!(std::time::Instant::now() < deadline, "no service window");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends `body`, waits until Meta has it, and returns what Meta received.
async fn sent_to_meta(t: &TestFleet, body: Value) -> wafleet_meta_sim::RecordedSend {
    let (status, b) = t.send(body, None).await;
    assert_eq!(status, 202, "{b}");
    let id = id_of(&b);
    t.wait_for_message(&id, "sent", sent_or_later).await;
    let sends = t.sends_for(&id).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    sends.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_job_ad_reaches_the_candidate_with_its_document_and_an_apply_link_from_merge_fields() {
    let t = TestFleet::start().await;
    with_job_ad_template(&t).await;

    let send = sent_to_meta(&t, job_ad("C-RM1")).await;

    let components = send.content.unwrap()["components"].clone();
    assert_eq!(
        components[0],
        json!({"type": "header", "parameters": [{"type": "document", "document":
            {"link": "https://cdn.example.com/jd-4411.pdf", "filename": "Senior nurse.pdf"}}]})
    );
    assert_eq!(components[1]["parameters"][0]["text"], "Anna");
    assert_eq!(components[2]["sub_type"], "url");
    assert_eq!(components[2]["parameters"][0]["text"], "J-4411");
    assert_eq!(components[3]["parameters"][0]["payload"], "NOT_FOR_ME");
    t.stop().await;
}

#[tokio::test]
async fn a_job_ad_without_its_document_or_apply_link_is_refused_naming_the_field() {
    let t = TestFleet::start().await;
    with_job_ad_template(&t).await;

    let mut no_header = job_ad("C-RM2");
    no_header["template"]["header"] = Value::Null;
    let mut no_ref = job_ad("C-RM2");
    no_ref["merge_fields"] = json!({});
    let mut image = job_ad("C-RM2");
    image["template"]["header"] = json!({"type": "image", "id": "4490"});
    let mut both = job_ad("C-RM2");
    both["template"]["header"]["id"] = json!("4490");

    let (s1, b1) = t.send(no_header, None).await;
    let (s2, b2) = t.send(no_ref, None).await;
    let (s3, b3) = t.send(image, None).await;
    let (s4, b4) = t.send(both, None).await;

    assert_eq!(
        (s1.as_u16(), b1["field"].as_str()),
        (422, Some("template.header"))
    );
    assert_eq!(
        (s2.as_u16(), b2["field"].as_str()),
        (422, Some("merge_fields.JOBREF"))
    );
    assert_eq!(
        (s3.as_u16(), b3["field"].as_str()),
        (422, Some("template.header"))
    );
    assert_eq!(
        (s4.as_u16(), b4["field"].as_str()),
        (422, Some("template.header.link"))
    );
    assert!(t.all_sends().await.is_empty(), "nothing reached Meta");
    t.stop().await;
}

#[tokio::test]
async fn inside_the_window_a_job_description_document_replies_to_the_candidates_message() {
    let t = TestFleet::start().await;
    let theirs =
        candidate_writes_and_the_window_opens(&t, "Can you send me the job description?").await;

    let send = sent_to_meta(
        &t,
        json!({
            "to": CANDIDATE, "record": {"type": "candidate", "id": "C-RM3"},
            "media": {"type": "document", "link": "https://cdn.example.com/jd-4411.pdf",
                      "caption": "Here it is", "filename": "Senior nurse.pdf"},
            "reply_to": theirs,
        }),
    )
    .await;

    assert_eq!(send.message_type, "document");
    assert_eq!(
        send.content.unwrap(),
        json!({"link": "https://cdn.example.com/jd-4411.pdf", "caption": "Here it is",
               "filename": "Senior nurse.pdf"})
    );
    assert_eq!(send.context.unwrap()["message_id"], theirs.as_str());
    let (_, history) = t.get("/v1/records/candidate/C-RM3/messages").await;
    assert_eq!(history["messages"][0]["content_type"], "document");
    t.stop().await;
}

#[tokio::test]
async fn inside_the_window_buttons_a_list_a_location_and_a_reaction_reach_meta_in_its_shapes() {
    let t = TestFleet::start().await;
    let theirs = candidate_writes_and_the_window_opens(&t, "When is the interview?").await;
    let record = json!({"type": "candidate", "id": "C-RM4"});

    let buttons = sent_to_meta(
        &t,
        json!({"to": CANDIDATE, "record": record,
        "interactive": {"type": "button", "body": "Does Tuesday 10:00 suit you?",
                        "buttons": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]}}),
    )
    .await;
    let list = sent_to_meta(
        &t,
        json!({"to": CANDIDATE, "record": record,
        "interactive": {"type": "list", "body": "Pick a slot", "button": "Slots",
                        "sections": [{"rows": [{"id": "tue", "title": "Tuesday 10:00"},
                                               {"id": "wed", "title": "Wednesday 14:00",
                                                "description": "Video call"}]}]}}),
    )
    .await;
    let place = sent_to_meta(
        &t,
        json!({"to": CANDIDATE, "record": record,
        "location": {"latitude": 51.5072, "longitude": -0.1276, "name": "Acme Recruiting",
                     "address": "1 Example St, London"}}),
    )
    .await;
    let reaction = sent_to_meta(
        &t,
        json!({"to": CANDIDATE, "record": record,
        "reaction": {"message_id": theirs, "emoji": "👍"}}),
    )
    .await;

    let b = buttons.content.unwrap();
    assert_eq!(b["type"], "button");
    assert_eq!(
        b["action"]["buttons"][1],
        json!({"type": "reply", "reply": {"id": "no", "title": "No"}})
    );
    let l = list.content.unwrap();
    assert_eq!(l["action"]["button"], "Slots");
    assert_eq!(
        l["action"]["sections"][0]["rows"][1]["description"],
        "Video call"
    );
    assert_eq!(place.content.unwrap()["name"], "Acme Recruiting");
    assert_eq!(
        reaction.content.unwrap(),
        json!({"message_id": theirs, "emoji": "👍"})
    );
    t.stop().await;
}

#[tokio::test]
async fn rich_content_over_metas_limits_is_refused_naming_the_field() {
    let t = TestFleet::start().await;
    let record = json!({"type": "candidate", "id": "C-RM5"});
    let four = json!([{"id": "a", "title": "A"}, {"id": "b", "title": "B"},
                      {"id": "c", "title": "C"}, {"id": "d", "title": "D"}]);
    let cases = [
        (
            json!({"interactive": {"type": "button", "body": "Pick", "buttons": four}}),
            "interactive.buttons",
        ),
        (
            json!({"interactive": {"type": "button", "body": "Pick",
                "buttons": [{"id": "a", "title": "A title far longer than twenty"}]}}),
            "interactive.buttons[0].title",
        ),
        (
            json!({"interactive": {"type": "button", "body": "Pick",
                "buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]}}),
            "interactive.buttons[1].id",
        ),
        (
            json!({"media": {"type": "document", "link": "ftp://x/y.pdf"}}),
            "media.link",
        ),
        (
            json!({"media": {"type": "audio", "id": "77", "caption": "hi"}}),
            "media.caption",
        ),
        (
            json!({"media": {"type": "spreadsheet", "id": "77"}}),
            "media.type",
        ),
        (
            json!({"location": {"latitude": 91.0, "longitude": 0.0}}),
            "location.latitude",
        ),
        (
            json!({"reaction": {"message_id": "not-a-wamid", "emoji": "👍"}}),
            "reaction.message_id",
        ),
        (json!({"text": "hi", "reply_to": "12"}), "reply_to"),
        (
            json!({"text": "hi", "media": {"type": "image", "id": "1"}}),
            "media",
        ),
    ];
    for (content, field) in cases {
        let mut body = json!({"to": CANDIDATE, "record": record});
        for (k, v) in content.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, problem) = t.send(body.clone(), None).await;
        assert_eq!(status, 422, "{body} → {problem}");
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    assert!(t.all_sends().await.is_empty(), "nothing reached Meta");
    t.stop().await;
}

#[tokio::test]
async fn a_document_outside_the_service_window_is_rejected_like_free_form_text() {
    let t = TestFleet::start().await;

    let (status, b) = t
        .send(
            json!({"to": CANDIDATE, "record": {"type": "candidate", "id": "C-RM6"},
                   "media": {"type": "document", "id": "4490", "filename": "CV.pdf"}}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{b}");
    let m = t.wait_for_state(&id_of(&b), "rejected").await;

    assert_eq!(m["reason"], "outside_service_window");
    assert!(t.all_sends().await.is_empty(), "Meta never saw it");
    t.stop().await;
}

#[tokio::test]
async fn a_campaign_of_a_job_ad_gives_each_candidate_the_document_and_their_own_apply_link() {
    let t = TestFleet::start().await;
    with_job_ad_template(&t).await;
    let to = wafleet_tests::campaigns::numbers(700, 2);
    let body = json!({
        "name": "nurses-dec",
        "template": {
            "name": "job_ad", "language": "en_GB",
            "header": {"type": "document", "link": "https://cdn.example.com/jd-4411.pdf"},
            "buttons": [{"index": 0, "sub_type": "url", "merge_field": "JOBREF"}],
        },
        "recipients": [
            {"to": to[0], "record": {"type": "candidate", "id": "RM-C1"},
             "parameters": ["Anna"], "merge_fields": {"JOBREF": "J-1-anna"}},
            {"to": to[1], "record": {"type": "candidate", "id": "RM-C2"},
             "parameters": ["Ben"], "merge_fields": {"JOBREF": "J-1-ben"}},
        ],
    });

    let (status, created) = t.create_campaign(&body, None).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["accepted"], 2, "{created}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let sends = loop {
        let sends = t.all_sends().await;
        if sends.iter().filter(|s| s.error_code.is_none()).count() == 2 {
            break sends;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "campaign not sent: {sends:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    for (number, jobref) in [(&to[0], "J-1-anna"), (&to[1], "J-1-ben")] {
        let send = sends
            .iter()
            .find(|s| s.to.trim_start_matches('+') == number.trim_start_matches('+'))
            .expect("a send to each recipient");
        let components = &send.content.as_ref().unwrap()["components"];
        assert_eq!(
            components[0]["parameters"][0]["document"]["link"],
            "https://cdn.example.com/jd-4411.pdf"
        );
        assert_eq!(components[2]["parameters"][0]["text"], jobref);
    }
    t.stop().await;
}
