//! The OpenAPI document (`GET /v1/openapi.json`) against the running server: every documented
//! route answers, and the bodies the server returns have the documented shape.

use reqwest::Method;
use serde_json::{Value, json};
use wafleet_tests::TestFleet;

#[tokio::test]
async fn the_openapi_document_lists_only_routes_the_server_answers() {
    // Arrange
    let t = TestFleet::start().await;

    // Act
    let (status, doc) = t.call(Method::GET, "/v1/openapi.json", None, None).await;

    // Assert: every documented operation exists (unauthenticated it is refused, not missing).
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/senders/{id}/verify_code"));
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let concrete = path
                .replace("{type}", "candidate")
                .replace('{', "x")
                .replace('}', "");
            let (answer, _) = t
                .call(
                    method.to_uppercase().parse().unwrap(),
                    &concrete,
                    None,
                    Some(json!({})),
                )
                .await;
            let expected = if op["security"] == json!([]) {
                200
            } else {
                401
            };
            assert_eq!(answer, expected, "{method} {path}");
        }
    }
    t.stop().await;
}

/// Where `value` departs from `schema` (`$ref`s resolved in `doc`): types, required and
/// undocumented properties, array items. Enough to catch a handler and its type drifting apart.
fn departures(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{at}: $ref {reference} does not resolve"));
        return departures(doc, target, value, at, out);
    }
    if let Some(branches) = schema["anyOf"].as_array() {
        let fits = branches.iter().any(|branch| {
            let mut misfits = Vec::new();
            departures(doc, branch, value, at, &mut misfits);
            misfits.is_empty()
        });
        if !fits {
            out.push(format!("{at}: {value} fits no branch of {schema}"));
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return, // any value
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types
        .iter()
        .any(|t| *t == actual || (*t, actual) == ("number", "integer"))
    {
        out.push(format!("{at}: {actual} where the document says {types:?}"));
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            for (key, v) in map {
                match properties.map(|p| p.get(key)) {
                    Some(None) => out.push(format!("{at}.{key} is not documented")),
                    Some(Some(s)) => departures(doc, s, v, &format!("{at}.{key}"), out),
                    None => {}
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !map.contains_key(key) {
                    out.push(format!("{at}.{key} is required but missing"));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                departures(doc, &schema["items"], item, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The documented path that `path` is an instance of (`{id}` stands for any segment).
fn documented_path<'a>(doc: &'a Value, path: &str) -> &'a str {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let segments: Vec<&str> = path.split('/').collect();
    let fits = |template: &str| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == s || p.starts_with('{'))
    };
    let paths = doc["paths"].as_object().expect("the document has paths");
    // A literal path (`/v1/senders/sync`) before a template it also fits (`/v1/senders/{id}`).
    let exact = paths.get_key_value(path).map(|(template, _)| template);
    exact
        .or_else(|| paths.keys().find(|template| fits(template)))
        .unwrap_or_else(|| panic!("{path} is not documented"))
}

#[tokio::test]
async fn the_bodies_the_server_returns_have_the_documented_shape() {
    // Arrange: a template, a setting changed (so the audit has an entry) and a message sent.
    let t = TestFleet::start().await;
    let (_, doc) = t.call(Method::GET, "/v1/openapi.json", None, None).await;
    let (sent, accepted) = t
        .admin(
            Method::POST,
            "/v1/messages",
            Some(TestFleet::template_request("C-1")),
        )
        .await;
    assert_eq!(sent, 202, "{accepted}");
    let message = format!("/v1/messages/{}", accepted["id"].as_str().unwrap());
    let mut pooled = wafleet_tests::campaigns::campaign_body(
        "documented",
        &wafleet_tests::campaigns::numbers(900, 2),
    );
    pooled["senders"] = json!([t.phone_number_id]);
    let (created, campaign) = t
        .admin(Method::POST, "/v1/campaigns", Some(pooled.clone()))
        .await;
    assert_eq!(created, 202, "{campaign}");
    let campaign = format!("/v1/campaigns/{}", campaign["id"].as_str().unwrap());
    pooled["name"] = json!("documented too");
    let quiet = json!({"quiet_time": {"days": ["sat"], "zone": "Europe/London", "start": "20:00", "end": "08:00"}});
    // A conversation (of C-1's message) and an opt-out to list and remove.
    let (_, first) = t.admin(Method::GET, &message, None).await;
    let conversation = format!(
        "/v1/conversations/{}",
        first["conversation_id"].as_str().unwrap()
    );
    let (conversation_messages, conversation_read) = (
        format!("{conversation}/messages"),
        format!("{conversation}/read"),
    );
    let opt_out = json!({"phone": "+447400123999", "reason": "documented"});
    let (_, senders) = t.admin(Method::GET, "/v1/senders", None).await;
    let register = format!(
        "/v1/senders/{}/register",
        senders["senders"][0]["id"].as_str().unwrap()
    );
    let calls = [
        (
            Method::POST,
            "/v1/messages",
            Some(TestFleet::template_request("C-2")),
        ),
        (Method::POST, "/v1/templates/sync", None),
        (Method::PUT, "/v1/settings", Some(quiet)),
        (Method::GET, "/v1/settings", None),
        (Method::GET, "/v1/settings/audit", None),
        (Method::GET, "/v1/settings/meta", None),
        (Method::POST, "/v1/settings/meta/check", None),
        (Method::POST, "/v1/settings/meta/verify_token", None),
        (Method::POST, &register, None),
        (Method::GET, "/v1/senders", None),
        (Method::POST, "/v1/senders/sync", None),
        (Method::GET, "/v1/templates", None),
        (
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "reader"})),
        ),
        (Method::GET, "/v1/api-keys", None),
        (Method::GET, "/v1/circuits", None),
        (Method::GET, "/v1/dead-letters", None),
        (Method::GET, &message, None),
        (Method::POST, "/v1/campaigns", Some(pooled)),
        (Method::GET, &campaign, None),
        (Method::GET, "/v1/campaigns", None),
        (Method::GET, "/v1/records/candidate/C-1/messages", None),
        (
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://ats.example.com/hooks", "event_types": ["inbound"]})),
        ),
        (Method::GET, "/v1/webhook-endpoints", None),
        (
            Method::GET,
            "/v1/usage?from=2026-01-01&to=2026-01-31&group_by=country",
            None,
        ),
        (Method::GET, "/v1/records/candidate/C-1/conversations", None),
        (Method::GET, &conversation_messages, None),
        (Method::POST, &conversation_read, None),
        (Method::POST, "/v1/opt-outs", Some(opt_out)),
        (Method::GET, "/v1/opt-outs", None),
        (Method::DELETE, "/v1/opt-outs/+447400123999", None),
        (Method::DELETE, "/v1/records/candidate/C-2", None),
        (Method::GET, "/v1/consent/audit", None),
    ];

    // Act and assert: each answer against the schema documented for its status.
    for (method, path, body) in calls {
        let (status, answer) = t.admin(method.clone(), path, body).await;
        let op = &doc["paths"][documented_path(&doc, path)][method.as_str().to_lowercase()];
        let schema = &op["responses"][status.as_str()]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path}: {status} is not documented: {answer}"
        );
        let mut misfits = Vec::new();
        departures(&doc, schema, &answer, "$", &mut misfits);
        assert!(
            misfits.is_empty(),
            "{method} {path}: {misfits:#?}\n{answer:#}"
        );
    }
    t.stop().await;
}
