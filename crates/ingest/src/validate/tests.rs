use super::*;
use serde_json::json;

fn req(v: serde_json::Value) -> SendRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_template_request_with_merge_fields_validates() {
    let d = validate(req(json!({
        "to": "+447400123456",
        "record": {"type": "candidate", "id": "C-1"},
        "template": {"name": "job_opportunity", "language": "en_GB"},
        "merge_fields": {"KNOWNAS": "Anna"}
    })))
    .unwrap();
    assert_eq!(d.to.as_str(), "+447400123456");
    assert!(matches!(d.body, DraftBody::Template { .. }));
}

#[test]
fn a_bad_number_is_refused_naming_the_field() {
    let p = validate(req(json!({
        "to": "0770090",
        "record": {"type": "candidate", "id": "C-1"},
        "text": "hi"
    })))
    .unwrap_err();
    assert_eq!(p.code, "invalid_recipient");
    assert_eq!(p.field.as_deref(), Some("to"));
}

#[test]
fn a_template_without_a_name_is_refused() {
    let p = validate(req(json!({
        "to": "+447400123456",
        "record": {"type": "contact", "id": "K-9"},
        "template": {"language": "en_GB"}
    })))
    .unwrap_err();
    assert_eq!(
        (p.code, p.field.as_deref()),
        ("missing_field", Some("template.name"))
    );
}

#[test]
fn a_nul_character_in_any_field_is_refused_naming_that_field() {
    let base = json!({
        "to": "+447400123456",
        "record": {"type": "candidate", "id": "C-1"},
        "template": {"name": "job_opportunity", "language": "en_GB"},
        "merge_fields": {"KNOWNAS": "Anna"}
    });
    let mut cases = Vec::new();
    let mut text = base.clone();
    text.as_object_mut().unwrap().remove("template");
    text.as_object_mut().unwrap().remove("merge_fields");
    text["text"] = json!("hi\u{0}there");
    cases.push((text, "text"));
    let mut record = base.clone();
    record["record"]["id"] = json!("C-\u{0}1");
    cases.push((record, "record"));
    let mut merge = base.clone();
    merge["merge_fields"]["KNOWNAS"] = json!("An\u{0}na");
    cases.push((merge, "merge_fields.KNOWNAS"));
    let mut user = base;
    user["user_id"] = json!("u\u{0}1");
    cases.push((user, "user_id"));
    for (body, field) in cases {
        let p = validate(req(body)).unwrap_err();
        assert_eq!((p.code, p.field.as_deref()), ("invalid_field", Some(field)));
    }
}

#[test]
fn a_record_id_with_a_nul_names_no_record_to_file_a_rejection_in() {
    let r = req(
        json!({"to": "+447400123456", "record": {"type": "candidate", "id": "C\u{0}"}, "text": "x"}),
    );
    assert!(record_of(&r).is_none());
}

#[test]
fn text_and_template_together_are_refused() {
    let p = validate(req(json!({
        "to": "+447400123456",
        "record": {"type": "contact", "id": "K-9"},
        "template": {"name": "x", "language": "en"},
        "text": "hello"
    })))
    .unwrap_err();
    assert_eq!(p.code, "invalid_content");
}
