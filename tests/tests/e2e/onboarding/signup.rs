//! Embedded Signup's back end: the code from the browser in, a connected company out, with
//! its numbers registered and the app subscribed, so a template goes out and its statuses come
//! back. Meta's facts it relies on: the code is single-use (a second exchange is refused with
//! 100/36009), webhooks reach only subscribed WABAs, a number sends only once registered with
//! its two-step PIN (the PIN then must match: 133005 otherwise).

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::{TestFleet, sent_or_later};

fn template_to(to: &str, sender: &str) -> Value {
    json!({
        "to": to, "sender": sender,
        "record": {"type": "candidate", "id": "CAND-ES-1"},
        "template": {"name": "job_opportunity", "language": "en_GB", "parameters": ["Anna", "Sam"]},
    })
}

#[tokio::test]
async fn a_company_connects_through_embedded_signup_and_its_first_template_is_read() {
    // Arrange: the company finished Meta's flow with two numbers; nothing is set up in wafleet.
    let t =
        TestFleet::start_with(|s| s.public_base_url = Some("https://wa.example.com".into())).await;
    let company = t.company_after_embedded_signup(1, 2).await;

    // Act
    let (status, signup) = t.run_signup(&company).await;

    // Assert: connected, both numbers senders, registered, PINs shown once.
    assert_eq!(status, 200, "{signup}");
    assert_eq!(signup["status"], "connected");
    assert!(signup["subscribed_at"].is_string() && signup["completed_at"].is_string());
    let senders = signup["senders"].as_array().unwrap();
    assert_eq!(senders.len(), 2, "{signup}");
    for sender in senders {
        assert_eq!(sender["registration"], "registered", "{sender}");
        let pin = sender["pin"]
            .as_str()
            .expect("the generated PIN, shown once");
        assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()));
    }
    // Meta has the app subscribed and the numbers registered with that very PIN.
    let (_, apps) = t
        .graph(
            Method::GET,
            &format!("{}/subscribed_apps", company.waba_id),
            json!({}),
        )
        .await;
    assert_eq!(
        apps["data"][0]["whatsapp_business_api_data"]["id"],
        wafleet_meta_sim::DEFAULT_APP_ID
    );
    let (first, pin) = (&company.numbers[0].0, senders[0]["pin"].as_str().unwrap());
    let (_, listed) = t.graph(Method::GET, first, json!({})).await;
    assert_eq!(listed["status"], "CONNECTED");
    let (other_pin, mismatch) = t
        .graph(Method::POST, &format!("{first}/register"),
               json!({"messaging_product": "whatsapp", "pin": if pin == "000000" { "111111" } else { "000000" }}))
        .await;
    assert_eq!(
        (other_pin.as_u16(), &mismatch["error"]["code"]),
        (400, &json!(133005))
    );
    let (same_pin, _) = t
        .graph(
            Method::POST,
            &format!("{first}/register"),
            json!({"messaging_product": "whatsapp", "pin": pin}),
        )
        .await;
    assert_eq!(same_pin, 200);
    // The PIN is not shown again; the token is sealed, never shown.
    let (_, again) = t
        .as_company(&company, Method::GET, "/v1/signup", None)
        .await;
    assert!(again["senders"][0].get("pin").is_none(), "{again}");
    let (_, meta) = t
        .as_company(&company, Method::GET, "/v1/settings/meta", None)
        .await;
    assert_eq!(meta["waba_id"], company.waba_id);
    assert_eq!(meta["connection"]["status"], "connected", "{meta}");
    assert_eq!(meta["app_secret_set"], false, "on the global app");
    assert_eq!(
        meta["callback_url"],
        format!("https://wa.example.com/webhooks/meta/{}", company.tenant_id)
    );
    assert!(meta["verify_token"].as_str().unwrap().starts_with("wfv_"));
    assert!(
        !meta.to_string().contains("EAAG"),
        "the business token never comes back"
    );

    // Act: a template from the session's number; its statuses come through the subscription.
    let (synced, _) = t
        .as_company(&company, Method::POST, "/v1/templates/sync", None)
        .await;
    assert_eq!(synced, 200);
    let (sent, accepted) = t
        .as_company(
            &company,
            Method::POST,
            "/v1/messages",
            Some(template_to("+447400123456", first)),
        )
        .await;
    assert_eq!(sent, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();

    // Assert
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let message = loop {
        let (_, m) = t
            .as_company(&company, Method::GET, &format!("/v1/messages/{id}"), None)
            .await;
        if m["state"] == "read" || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(message["state"], "read", "{message}");
    assert_eq!(message["pricing_category"], "utility");
    t.stop().await;
}

#[tokio::test]
async fn a_step_meta_refuses_is_reported_with_metas_error_and_the_same_request_goes_on_from_it() {
    // Arrange: Meta fails the subscription once.
    let t = TestFleet::start().await;
    let company = t.company_after_embedded_signup(2, 1).await;
    t.sim(
        Method::POST,
        "/_sim/faults",
        json!({"endpoint": "subscribed_apps", "code": 131000, "times": 1}),
    )
    .await;

    // Act
    let (failed, problem) = t.run_signup(&company).await;
    let (_, stopped) = t
        .as_company(&company, Method::GET, "/v1/signup", None)
        .await;
    let (retried, signup) = t.run_signup(&company).await;

    // Assert: the failure names the step and Meta's error; the retry did not exchange the
    // single-use code again (Meta would refuse it) and finished.
    assert_eq!(failed, 502, "{problem}");
    assert_eq!(problem["code"], "signup_step_failed");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("(#131000) Something went wrong"),
        "{problem}"
    );
    assert_eq!(stopped["status"], "failed");
    assert!(stopped["exchanged_at"].is_string() && stopped["numbers_at"].is_string());
    assert!(stopped["subscribed_at"].is_null());
    assert_eq!(stopped["error"]["step"], "subscribe");
    assert_eq!(stopped["error"]["code"], 131000);
    assert_eq!(stopped["senders"][0]["registration"], "unregistered");
    assert_eq!(retried, 200, "{signup}");
    assert_eq!(signup["status"], "connected");
    assert!(signup["error"].is_null());
    assert_eq!(signup["senders"][0]["registration"], "registered");
    t.stop().await;
}

#[tokio::test]
async fn a_code_meta_refuses_is_answered_naming_the_code_and_connects_nothing() {
    // Arrange
    let t = TestFleet::start().await;
    let company = t.company_after_embedded_signup(3, 1).await;
    let mut body = company.signup_body();
    body["code"] = json!("not-the-code-meta-gave");

    // Act
    let (status, problem) = t
        .as_company(&company, Method::POST, "/v1/signup", Some(body))
        .await;
    let (_, meta) = t
        .as_company(&company, Method::GET, "/v1/settings/meta", None)
        .await;

    // Assert
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "signup_code_refused");
    assert_eq!(problem["field"], "code");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Invalid verification code format")
    );
    assert!(meta["waba_id"].is_null(), "{meta}");
    t.stop().await;
}

#[tokio::test]
async fn only_an_admin_key_of_the_company_runs_the_signup() {
    // Arrange
    let t = TestFleet::start().await;
    let company = t.company_after_embedded_signup(4, 1).await;
    let (_, key) = t
        .as_company(
            &company,
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "sender"})),
        )
        .await;

    // Act
    let (status, problem) = t
        .call(
            Method::POST,
            "/v1/signup",
            key["key"].as_str(),
            Some(company.signup_body()),
        )
        .await;

    // Assert
    assert_eq!(status, 403, "{problem}");
    assert!(!sent_or_later(&problem));
    t.stop().await;
}

#[tokio::test]
async fn no_business_token_pin_or_code_appears_in_any_span_or_log() {
    // Arrange
    let spans = wafleet_tests::observe::captured();
    let t = TestFleet::start().await;
    let company = t.company_after_embedded_signup(7, 1).await;

    // Act
    let (status, signup) = t.run_signup(&company).await;

    // Assert
    assert_eq!(status, 200, "{signup}");
    let pin = signup["senders"][0]["pin"].as_str().unwrap().to_owned();
    let exported = format!("{:?}", spans.all());
    let logs = spans.logs();
    assert!(
        logs.contains("number registered for Cloud API"),
        "logs were captured"
    );
    // The PIN as a number of its own (not six digits inside a longer id).
    let standalone = |text: &str| {
        text.match_indices(pin.as_str()).any(|(at, _)| {
            let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
            !digit(text[..at].chars().next_back()) && !digit(text[at + 6..].chars().next())
        })
    };
    assert!(!standalone(&exported), "the PIN is in a span");
    assert!(!standalone(&logs), "the PIN is in a log line");
    for (what, secret) in [
        ("a business token", "EAAG"),
        ("the signup code", company.code.as_str()),
        ("the app secret", t.app_secret.as_str()),
        ("the number", company.numbers[0].1.trim_start_matches('+')),
    ] {
        assert!(!exported.contains(secret), "{what} is in a span");
        assert!(!logs.contains(secret), "{what} is in a log line");
    }
    t.stop().await;
}
