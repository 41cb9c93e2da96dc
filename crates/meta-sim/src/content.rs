//! What Meta checks in a send body besides the template's name and body count (reference §1,
//! §8): the object named after the type (media by exactly one of `id` or `link`, captions only
//! where they exist, reply buttons and lists within their counts, a location's coordinates, a
//! reaction's message), `context.message_id`, and a template's header and button components
//! against the template's definition (`132000` on a mismatch).

use crate::{errors::GraphError, types::SimTemplate};
use serde_json::Value;

const TYPES: [&str; 11] = [
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "reaction",
    "template",
];

fn invalid(details: impl Into<String>) -> GraphError {
    GraphError::new(131009, details)
}

fn text_len(v: Option<&Value>) -> usize {
    v.and_then(Value::as_str).map_or(0, |s| s.chars().count())
}

/// Checks the type's object and `context` of a non-template send.
pub fn check_free_form(request: &Value, message_type: &str) -> Result<(), GraphError> {
    if !TYPES.contains(&message_type) {
        return Err(GraphError::invalid_parameter(format!(
            "type ({message_type}) is not a valid message type"
        )));
    }
    if let Some(context) = request.get("context")
        && context.get("message_id").and_then(Value::as_str).is_none()
    {
        return Err(GraphError::invalid_parameter(
            "context.message_id is required in a context",
        ));
    }
    let object = request.get(message_type);
    match message_type {
        "text" => {
            let n = text_len(object.and_then(|o| o.get("body")));
            if n == 0 || n > 4096 {
                return Err(invalid("text.body must be 1 to 4096 characters"));
            }
        }
        "image" | "audio" | "video" | "document" | "sticker" => {
            let o = object.ok_or_else(|| invalid(format!("{message_type} is required")))?;
            if o.get("id").is_some() == o.get("link").is_some() {
                return Err(invalid(format!(
                    "{message_type} needs exactly one of id and link"
                )));
            }
            if o.get("caption").is_some() && matches!(message_type, "audio" | "sticker") {
                return Err(invalid(format!("{message_type} has no caption")));
            }
            if text_len(o.get("caption")) > 1024 {
                return Err(invalid("caption is at most 1024 characters"));
            }
        }
        "interactive" => check_interactive(object)?,
        "location" => {
            let coordinate = |name: &str, max: f64| {
                object
                    .and_then(|o| o.get(name))
                    .and_then(Value::as_f64)
                    .is_some_and(|v| v.abs() <= max)
            };
            if !coordinate("latitude", 90.0) || !coordinate("longitude", 180.0) {
                return Err(invalid("location needs latitude and longitude"));
            }
        }
        "reaction"
            if object
                .and_then(|o| o.get("message_id"))
                .and_then(Value::as_str)
                .is_none() =>
        {
            return Err(invalid("reaction.message_id is required"));
        }
        _ => {}
    }
    Ok(())
}

fn check_interactive(object: Option<&Value>) -> Result<(), GraphError> {
    let o = object.ok_or_else(|| invalid("interactive is required"))?;
    let body = text_len(o.pointer("/body/text"));
    if body == 0 || body > 1024 {
        return Err(invalid(
            "interactive.body.text must be 1 to 1024 characters",
        ));
    }
    match o.get("type").and_then(Value::as_str) {
        Some("button") => {
            let buttons = o
                .pointer("/action/buttons")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            if !(1..=3).contains(&buttons.len())
                || buttons
                    .iter()
                    .any(|b| !(1..=20).contains(&text_len(b.pointer("/reply/title"))))
            {
                return Err(invalid(
                    "interactive reply buttons are 1 to 3, titles 1 to 20 characters",
                ));
            }
        }
        Some("list") => {
            let rows: usize = o
                .pointer("/action/sections")
                .and_then(Value::as_array)
                .map_or(0, |sections| {
                    sections
                        .iter()
                        .map(|s| s.get("rows").and_then(Value::as_array).map_or(0, Vec::len))
                        .sum()
                });
            if !(1..=10).contains(&rows) {
                return Err(invalid("a list has 1 to 10 rows in all"));
            }
        }
        _ => return Err(invalid("interactive.type is not supported")),
    }
    Ok(())
}

/// The components of a template send other than the body, against the template's header and
/// buttons: a header parameter exactly when the header is media or has a variable (of the same
/// format), and a parameter for each URL button with a variable and each COPY_CODE button.
pub fn check_template_components(
    template: &SimTemplate,
    components: &[Value],
) -> Result<(), GraphError> {
    fn of_type<'c>(components: &'c [Value], kind: &'static str) -> impl Iterator<Item = &'c Value> {
        components.iter().filter(move |c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    }
    let header_given = of_type(components, "header")
        .next()
        .and_then(|h| h.pointer("/parameters/0"));
    let header_wanted = template.header.as_ref().and_then(|h| {
        let format = h.format.to_ascii_lowercase();
        match format.as_str() {
            "text" if h.text.as_deref().is_some_and(|t| t.contains("{{")) => Some(format),
            "image" | "video" | "document" => Some(format),
            _ => None,
        }
    });
    match (header_wanted, header_given) {
        (None, None) => {}
        (Some(wanted), Some(given))
            if given.get("type").and_then(Value::as_str) == Some(wanted.as_str()) =>
        {
            if wanted != "text" {
                let media = given.get(wanted.as_str());
                if media.is_none_or(|m| m.get("id").is_some() == m.get("link").is_some()) {
                    return Err(invalid(format!(
                        "header {wanted} needs exactly one of id and link"
                    )));
                }
            }
        }
        (wanted, _) => {
            return Err(GraphError::new(
                132000,
                format!(
                    "header: the template expects {}",
                    wanted.map_or("no parameter".to_owned(), |w| format!("a {w} parameter"))
                ),
            ));
        }
    }
    let given: Vec<(usize, &str)> = of_type(components, "button")
        .filter_map(|b| {
            let index = b.get("index").and_then(|i| {
                i.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| i.as_u64().and_then(|n| usize::try_from(n).ok()))
            })?;
            Some((index, b.get("sub_type").and_then(Value::as_str)?))
        })
        .collect();
    for (index, sub_type) in &given {
        let expected = template
            .buttons
            .get(*index)
            .map(|b| b.kind.to_ascii_lowercase());
        if expected.as_deref() != Some(*sub_type) {
            return Err(GraphError::new(
                132000,
                format!("button at index {index} is not a {sub_type} button"),
            ));
        }
    }
    for (index, button) in template.buttons.iter().enumerate() {
        let kind = button.kind.to_ascii_uppercase();
        let needs = (kind == "URL" && button.url.as_deref().is_some_and(|u| u.contains("{{")))
            || kind == "COPY_CODE";
        if needs && !given.iter().any(|(i, _)| *i == index) {
            return Err(GraphError::new(
                132000,
                format!("button at index {index} needs a parameter"),
            ));
        }
    }
    Ok(())
}
