//! A template's header and button parameters, bound to what the synced template asks for (its
//! `components` as Meta lists them): a text header with a variable takes one text parameter, an
//! IMAGE, VIDEO or DOCUMENT header takes media of that kind, a URL button with a variable takes
//! its suffix, a COPY_CODE button takes the code, and a QUICK_REPLY button may take a payload.
//! Anything else Meta would refuse (`132000`) is refused here, naming the field. Merge fields
//! fill values the request names by `merge_field`.

use crate::validate::{rich, unprocessable};
use serde_json::Value;
use std::collections::BTreeMap;
use wafleet_core::{
    contract::{ButtonInput, ButtonParam, HeaderInput, HeaderParam, MediaRef},
    http::Problem,
};

/// What a template's header asks for at send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderNeed {
    None,
    Text,
    Media(&'static str),
    Unsupported,
}

fn component<'a>(components: &'a [Value], kind: &str) -> Option<&'a Value> {
    components.iter().find(|c| {
        c.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case(kind))
    })
}

fn has_variable(s: Option<&str>) -> bool {
    s.is_some_and(|s| s.contains("{{"))
}

fn header_need(components: &[Value]) -> HeaderNeed {
    let Some(header) = component(components, "HEADER") else {
        return HeaderNeed::None;
    };
    match header
        .get("format")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("IMAGE") => HeaderNeed::Media("image"),
        Some("VIDEO") => HeaderNeed::Media("video"),
        Some("DOCUMENT") => HeaderNeed::Media("document"),
        Some("LOCATION") => HeaderNeed::Unsupported,
        _ if has_variable(header.get("text").and_then(Value::as_str)) => HeaderNeed::Text,
        _ => HeaderNeed::None,
    }
}

/// The parameter each of the template's buttons takes: `Some((sub_type, required))`.
fn button_needs(components: &[Value]) -> Vec<Option<(&'static str, bool)>> {
    let Some(buttons) = component(components, "BUTTONS")
        .and_then(|c| c.get("buttons"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    buttons
        .iter()
        .map(|b| {
            match b
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                Some("URL") if has_variable(b.get("url").and_then(Value::as_str)) => {
                    Some(("url", true))
                }
                Some("COPY_CODE") => Some(("copy_code", true)),
                Some("QUICK_REPLY") => Some(("quick_reply", false)),
                _ => None,
            }
        })
        .collect()
}

fn mismatch(field: &str, detail: String) -> Problem {
    unprocessable("template_parameters_mismatch", field, detail)
}

/// A value given, or taken from a merge field.
fn value_of(
    value: Option<&str>,
    merge_field: Option<&str>,
    merge_fields: Option<&BTreeMap<String, String>>,
) -> Result<String, Problem> {
    match (value, merge_field) {
        (Some(v), _) => Ok(v.to_owned()),
        (None, Some(code)) => merge_fields
            .and_then(|f| f.get(code))
            .cloned()
            .ok_or_else(|| {
                mismatch(
                    &format!("merge_fields.{code}"),
                    format!("the template needs merge field {code}"),
                )
            }),
        (None, None) => unreachable!("shapes were checked at validation"),
    }
}

/// Binds a request's header and button parameters (shapes already checked) to `components`.
pub fn bind(
    name: &str,
    components: &[Value],
    header: Option<&HeaderInput>,
    buttons: &[ButtonInput],
    merge_fields: Option<&BTreeMap<String, String>>,
) -> Result<(Option<HeaderParam>, Vec<ButtonParam>), Problem> {
    let header = match (header_need(components), header) {
        (HeaderNeed::None, None) => None,
        (HeaderNeed::None, Some(_)) => {
            return Err(mismatch(
                "template.header",
                format!("template {name} has no header that takes a parameter"),
            ));
        }
        (HeaderNeed::Unsupported, _) => {
            return Err(mismatch(
                "template.header",
                format!("template {name} has a location header, which wafleet does not send yet"),
            ));
        }
        (HeaderNeed::Text, Some(h)) if h.kind.as_deref() == Some("text") => {
            let text = value_of(h.text.as_deref(), h.merge_field.as_deref(), merge_fields)?;
            Some(HeaderParam {
                kind: "text".into(),
                text: Some(rich::header_text(&text)?),
                media: None,
                filename: None,
            })
        }
        (HeaderNeed::Media(kind), Some(h)) if h.kind.as_deref() == Some(kind) => {
            let media = match (&h.link, &h.id) {
                (Some(link), _) => MediaRef::Link(link.clone()),
                (None, Some(id)) => MediaRef::Id(id.clone()),
                (None, None) => unreachable!("shapes were checked at validation"),
            };
            Some(HeaderParam {
                kind: kind.into(),
                text: None,
                media: Some(media),
                filename: h.filename.clone(),
            })
        }
        (need, _) => {
            let wanted = match need {
                HeaderNeed::Text => "a text header (`type: text`)".to_owned(),
                HeaderNeed::Media(kind) => format!("an {kind} header (`type: {kind}`)"),
                _ => unreachable!("handled above"),
            };
            return Err(mismatch(
                "template.header",
                format!("template {name} needs {wanted}"),
            ));
        }
    };
    let needs = button_needs(components);
    let mut bound = Vec::with_capacity(buttons.len());
    for (n, b) in buttons.iter().enumerate() {
        let field = format!("template.buttons[{n}]");
        let index = b.index.expect("checked at validation");
        let sub_type = b.sub_type.as_deref().expect("checked at validation");
        match needs.get(usize::from(index)).copied().flatten() {
            Some((wanted, _)) if wanted == sub_type => {}
            Some((wanted, _)) => {
                return Err(mismatch(
                    &format!("{field}.sub_type"),
                    format!("button {index} of template {name} is a {wanted} button"),
                ));
            }
            None => {
                return Err(mismatch(
                    &format!("{field}.index"),
                    format!("template {name} has no button {index} that takes a parameter"),
                ));
            }
        }
        let value = value_of(b.value.as_deref(), b.merge_field.as_deref(), merge_fields)?;
        bound.push(ButtonParam {
            index,
            sub_type: sub_type.to_owned(),
            value: rich::button_value(sub_type, &value, &format!("{field}.value"))?,
        });
    }
    for (index, need) in needs.iter().enumerate() {
        if let Some((sub_type, true)) = need
            && !bound.iter().any(|b| usize::from(b.index) == index)
        {
            return Err(mismatch(
                "template.buttons",
                format!("button {index} of template {name} needs its {sub_type} parameter"),
            ));
        }
    }
    bound.sort_by_key(|b| b.index);
    Ok((header, bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job_ad() -> Vec<Value> {
        vec![
            json!({"type": "HEADER", "format": "DOCUMENT"}),
            json!({"type": "BODY", "text": "Hi {{1}}, here is the role."}),
            json!({"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Apply", "url": "https://jobs.example.com/apply/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Not for me"},
            ]}),
        ]
    }

    fn input(v: Value) -> HeaderInput {
        serde_json::from_value(v).unwrap()
    }

    fn button(v: Value) -> ButtonInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_document_header_and_an_apply_link_from_a_merge_field_are_bound() {
        let fields = BTreeMap::from([("JOBREF".to_owned(), "J-1234".to_owned())]);
        let (header, buttons) = bind(
            "job_ad",
            &job_ad(),
            Some(&input(
                json!({"type": "document", "link": "https://cdn.example.com/jd.pdf", "filename": "Role.pdf"}),
            )),
            &[button(
                json!({"index": 0, "sub_type": "url", "merge_field": "JOBREF"}),
            )],
            Some(&fields),
        )
        .unwrap();

        let header = header.unwrap();
        assert_eq!(header.kind, "document");
        assert_eq!(
            header.media,
            Some(MediaRef::Link("https://cdn.example.com/jd.pdf".into()))
        );
        assert_eq!(buttons[0].value, "J-1234");
    }

    #[test]
    fn a_missing_header_or_apply_link_is_refused_naming_the_field() {
        let missing_header = bind("job_ad", &job_ad(), None, &[], None).unwrap_err();
        assert_eq!(missing_header.field.as_deref(), Some("template.header"));

        let header = input(json!({"type": "document", "id": "4490"}));
        let missing_link = bind("job_ad", &job_ad(), Some(&header), &[], None).unwrap_err();
        assert_eq!(missing_link.field.as_deref(), Some("template.buttons"));

        let wrong_kind = bind(
            "job_ad",
            &job_ad(),
            Some(&input(json!({"type": "image", "id": "4490"}))),
            &[],
            None,
        )
        .unwrap_err();
        assert_eq!(wrong_kind.field.as_deref(), Some("template.header"));
    }

    #[test]
    fn a_button_parameter_must_match_the_templates_button_of_that_index() {
        let header = input(json!({"type": "document", "id": "4490"}));
        let err = bind(
            "job_ad",
            &job_ad(),
            Some(&header),
            &[
                button(json!({"index": 0, "sub_type": "url", "value": "J-1"})),
                button(json!({"index": 1, "sub_type": "copy_code", "value": "X"})),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("template.buttons[1].sub_type"));
    }

    #[test]
    fn a_template_without_header_or_buttons_takes_none() {
        let plain = vec![json!({"type": "BODY", "text": "Hi {{1}}"})];
        assert!(bind("plain", &plain, None, &[], None).is_ok());
        let err = bind(
            "plain",
            &plain,
            None,
            &[button(
                json!({"index": 0, "sub_type": "quick_reply", "value": "YES"}),
            )],
            None,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("template.buttons[0].index"));
    }
}
