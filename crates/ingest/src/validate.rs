//! Shape validation of a send request: pure, no I/O. What needs the database (the sender, the
//! template's bindings) is resolved afterwards in `accept`.

mod interactive;
pub mod rich;

use axum::http::StatusCode;
use std::collections::BTreeMap;
use wafleet_core::{
    contract::{ButtonInput, Content, HeaderInput, Kind, SendRequest, TemplateParameters},
    domain::{PhoneNumber, RecordRef, RecordType},
    http::Problem,
};

/// A request whose fields are individually valid.
#[derive(Debug, Clone)]
pub struct Draft {
    pub to: PhoneNumber,
    pub record: RecordRef,
    pub user_id: Option<String>,
    pub sender: Option<String>,
    pub body: DraftBody,
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    pub kind: Kind,
    pub campaign_id: Option<uuid::Uuid>,
}

#[derive(Debug, Clone)]
pub enum DraftBody {
    /// Resolved against the synced template afterwards (`resolve::bind_template`).
    Template {
        name: String,
        language: String,
        parameters: Option<TemplateParameters>,
        merge_fields: Option<BTreeMap<String, String>>,
        /// Shape-checked; bound to the template's header and buttons in `resolve`.
        header: Option<HeaderInput>,
        buttons: Vec<ButtonInput>,
    },
    /// Free-form content, complete already (text, media, interactive, location, reaction):
    /// only inside the 24 h service window.
    Free(Content),
}

/// The longest free-form text Meta accepts.
const MAX_TEXT: usize = 4096;

pub(crate) fn unprocessable(code: &'static str, field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).field(field)
}

/// The record named by a request, if it names a valid one (used to file a rejection in that
/// record's history even when other fields are wrong).
pub fn record_of(req: &SendRequest) -> Option<RecordRef> {
    let r = req.record.as_ref()?;
    let kind = RecordType::parse(r.kind.as_deref()?)?;
    let id = r.id.as_deref()?.trim();
    (!id.is_empty() && id.len() <= 200 && !id.contains('\0')).then(|| RecordRef {
        kind,
        id: id.to_owned(),
    })
}

/// The first field holding a NUL character (`\u0000`): valid JSON, but PostgreSQL stores no
/// NUL in text, and Meta would not show it.
fn nul_field(req: &SendRequest) -> Option<String> {
    let has = |s: &Option<String>| s.as_deref().is_some_and(|s| s.contains('\0'));
    let named = [
        ("to", &req.to),
        ("user_id", &req.user_id),
        ("sender", &req.sender),
        ("text", &req.text),
    ];
    if let Some((field, _)) = named.iter().find(|(_, v)| has(v)) {
        return Some((*field).to_owned());
    }
    if let Some(r) = &req.record
        && (has(&r.id) || has(&r.kind))
    {
        return Some("record".into());
    }
    if let Some(t) = &req.template {
        if has(&t.name) || has(&t.language) {
            return Some("template".into());
        }
        let values: Vec<&String> = match &t.parameters {
            Some(TemplateParameters::Positional(v)) => v.iter().collect(),
            Some(TemplateParameters::Named(m)) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
            None => Vec::new(),
        };
        if values.iter().any(|v| v.contains('\0')) {
            return Some("template.parameters".into());
        }
    }
    if let Some(field) = req.merge_fields.as_ref().and_then(|m| {
        m.iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| format!("merge_fields.{}", k.replace('\0', "")))
    }) {
        return Some(field);
    }
    let rich = [
        ("media", serde_json::to_value(&req.media)),
        ("interactive", serde_json::to_value(&req.interactive)),
        ("location", serde_json::to_value(&req.location)),
        ("reaction", serde_json::to_value(&req.reaction)),
        ("reply_to", serde_json::to_value(&req.reply_to)),
        (
            "template.header",
            serde_json::to_value(req.template.as_ref().map(|t| &t.header)),
        ),
        (
            "template.buttons",
            serde_json::to_value(req.template.as_ref().map(|t| &t.buttons)),
        ),
    ];
    rich.into_iter()
        .find(|(_, v)| v.as_ref().is_ok_and(has_nul))
        .map(|(field, _)| field.to_owned())
}

/// Whether any string in `v` holds a NUL.
fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.values().any(has_nul),
        _ => false,
    }
}

/// Checks every field; the first problem found is returned, naming its field.
pub fn validate(mut req: SendRequest) -> Result<Draft, Problem> {
    if let Some(field) = nul_field(&req) {
        return Err(unprocessable(
            "invalid_field",
            &field,
            format!("`{field}` must not contain the NUL character (\\u0000)"),
        ));
    }
    let to = match req.to.as_deref() {
        None | Some("") => {
            return Err(unprocessable(
                "invalid_recipient",
                "to",
                "`to` is required: the recipient's number in E.164, e.g. +447400123456",
            ));
        }
        Some(raw) => PhoneNumber::parse(raw).map_err(|e| {
            unprocessable(
                "invalid_recipient",
                "to",
                format!("`to` is not a valid mobile number: {e}"),
            )
        })?,
    };
    let record = record_of(&req).ok_or_else(|| {
        unprocessable(
            "invalid_record",
            "record",
            "`record` is required: {\"type\": \"candidate\" | \"contact\", \"id\": \"...\"}",
        )
    })?;
    let body = body_of(&mut req)?;
    if let Some(sender) = &req.sender
        && (sender.is_empty() || !sender.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(unprocessable(
            "invalid_field",
            "sender",
            "`sender` is a sender's phone number id (digits)",
        ));
    }
    let kind = req.kind.unwrap_or(Kind::Single);
    if req.campaign_id.is_some() && kind != Kind::Bulk {
        return Err(unprocessable(
            "invalid_field",
            "campaign_id",
            "`campaign_id` is for bulk messages: send `kind: bulk` with it",
        ));
    }
    Ok(Draft {
        to,
        record,
        user_id: req.user_id.filter(|u| !u.is_empty()),
        sender: req.sender,
        body,
        not_after: req.not_after,
        kind,
        campaign_id: req.campaign_id,
    })
}

/// The one kind of content a request carries, checked.
fn body_of(req: &mut SendRequest) -> Result<DraftBody, Problem> {
    let given: Vec<&str> = [
        ("template", req.template.is_some()),
        ("text", req.text.is_some()),
        ("media", req.media.is_some()),
        ("interactive", req.interactive.is_some()),
        ("location", req.location.is_some()),
        ("reaction", req.reaction.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, present)| present.then_some(field))
    .collect();
    match given.as_slice() {
        [] => {
            return Err(unprocessable(
                "invalid_content",
                "template",
                "a message needs a `template` (to open a conversation) or, inside the 24 h service \
                 window, `text`, `media`, `interactive`, `location` or `reaction`",
            ));
        }
        [_] => {}
        [first, second, ..] => {
            return Err(unprocessable(
                "invalid_content",
                second,
                format!("send one kind of content: `{first}` or `{second}`, not both"),
            ));
        }
    }
    if req.merge_fields.is_some() && req.template.is_none() {
        return Err(unprocessable(
            "invalid_content",
            "merge_fields",
            "`merge_fields` only apply to templates",
        ));
    }
    let reply_to = match req.reply_to.take() {
        Some(_) if req.template.is_some() || req.reaction.is_some() => {
            return Err(unprocessable(
                "invalid_content",
                "reply_to",
                "`reply_to` goes with text, media, interactive or location messages",
            ));
        }
        Some(id) => Some(rich::wamid(&id, "reply_to")?),
        None => None,
    };
    if let Some(text) = req.text.take() {
        if text.trim().is_empty() || text.chars().count() > MAX_TEXT {
            return Err(unprocessable(
                "invalid_content",
                "text",
                format!("`text` must be 1 to {MAX_TEXT} characters"),
            ));
        }
        return Ok(DraftBody::Free(Content::Text {
            body: text,
            reply_to,
        }));
    }
    if let Some(m) = req.media.take() {
        return rich::media(m, reply_to).map(DraftBody::Free);
    }
    if let Some(i) = req.interactive.take() {
        return interactive::interactive(i, reply_to).map(DraftBody::Free);
    }
    if let Some(l) = req.location.take() {
        return rich::location(l, reply_to).map(DraftBody::Free);
    }
    if let Some(r) = req.reaction.take() {
        return rich::reaction(r).map(DraftBody::Free);
    }
    let t = req.template.take().expect("one kind of content is given");
    let name = t.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
        unprocessable(
            "missing_field",
            "template.name",
            "`template.name` is required",
        )
    })?;
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(unprocessable(
            "invalid_field",
            "template.name",
            "template names are lower-case letters, digits and underscores",
        ));
    }
    let language = t.language.filter(|l| !l.trim().is_empty()).ok_or_else(|| {
        unprocessable(
            "missing_field",
            "template.language",
            "`template.language` is required, e.g. \"en_GB\"",
        )
    })?;
    // Merge fields may still fill the header or a button when the body's values are given.
    let merges_beyond_body = t.header.as_ref().is_some_and(|h| h.merge_field.is_some())
        || t.buttons.iter().flatten().any(|b| b.merge_field.is_some());
    if t.parameters.is_some() && req.merge_fields.is_some() && !merges_beyond_body {
        return Err(unprocessable(
            "invalid_content",
            "merge_fields",
            "give the template's values either as `template.parameters` or as `merge_fields`, not both",
        ));
    }
    if let Some(h) = &t.header {
        rich::header(h)?;
    }
    let buttons = t.buttons.unwrap_or_default();
    rich::buttons(&buttons)?;
    Ok(DraftBody::Template {
        name,
        language,
        parameters: t.parameters,
        merge_fields: req.merge_fields.take(),
        header: t.header,
        buttons,
    })
}

#[cfg(test)]
mod tests;
