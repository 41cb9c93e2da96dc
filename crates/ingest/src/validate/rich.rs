//! Shape checks of rich content against Meta's limits (reference §1, §8; Meta's interactive
//! messages guide): media, reply buttons and lists, locations, reactions, replies, and a
//! template's header and button parameters. Where Meta states no limit, the bound is ours and
//! the README says so. Every problem names its field, e.g. `interactive.buttons[1].title`.

use super::unprocessable;
use std::collections::HashSet;
use wafleet_core::{
    contract::{
        ButtonInput, Content, HeaderInput, LocationInput, MediaInput, MediaRef, ReactionInput,
    },
    http::Problem,
};

/// Media types Meta sends by link or id.
pub const MEDIA_KINDS: [&str; 5] = ["document", "image", "video", "audio", "sticker"];
/// Header formats a template send can fill (a LOCATION header is not supported).
const HEADER_KINDS: [&str; 4] = ["text", "image", "video", "document"];
/// Template button parameters, by `sub_type`.
pub const BUTTON_SUB_TYPES: [&str; 3] = ["url", "quick_reply", "copy_code"];

const MAX_CAPTION: usize = 1024;
const MAX_FILENAME: usize = 240;
const MAX_LINK: usize = 2048;
const MAX_HEADER_TEXT: usize = 60;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `Err` naming `field` unless `value` is 1 to `max` characters (not only whitespace).
pub(super) fn required_text(
    value: Option<&str>,
    field: &str,
    max: usize,
) -> Result<String, Problem> {
    match value {
        Some(v) if !v.trim().is_empty() && chars(v) <= max => Ok(v.to_owned()),
        Some(_) => Err(unprocessable(
            "invalid_field",
            field,
            format!("`{field}` must be 1 to {max} characters"),
        )),
        None => Err(unprocessable(
            "missing_field",
            field,
            format!("`{field}` is required"),
        )),
    }
}

/// An optional text of at most `max` characters.
pub(super) fn optional_text(
    value: Option<&str>,
    field: &str,
    max: usize,
) -> Result<Option<String>, Problem> {
    value
        .map(|v| required_text(Some(v), field, max))
        .transpose()
}

use optional_text as optional;
use required_text as bounded;

/// A media reference: exactly one of an http(s) `link` or an uploaded `id`.
fn media_ref(link: Option<&str>, id: Option<&str>, field: &str) -> Result<MediaRef, Problem> {
    match (link, id) {
        (Some(link), None) => {
            let ok = (link.starts_with("https://") || link.starts_with("http://"))
                && link.len() <= MAX_LINK
                && !link.chars().any(|c| c.is_whitespace() || c.is_control());
            if ok {
                Ok(MediaRef::Link(link.to_owned()))
            } else {
                Err(unprocessable(
                    "invalid_field",
                    &format!("{field}.link"),
                    format!(
                        "`{field}.link` must be an http(s) URL of at most {MAX_LINK} characters"
                    ),
                ))
            }
        }
        (None, Some(id)) => {
            let ok = !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if ok {
                Ok(MediaRef::Id(id.to_owned()))
            } else {
                Err(unprocessable(
                    "invalid_field",
                    &format!("{field}.id"),
                    format!("`{field}.id` is an uploaded media id (letters, digits, - and _)"),
                ))
            }
        }
        _ => Err(unprocessable(
            "invalid_field",
            &format!("{field}.link"),
            format!("`{field}` needs exactly one of `link` and `id`"),
        )),
    }
}

/// A file name a candidate sees: no path, no control characters.
fn filename(value: Option<&str>, field: &str) -> Result<Option<String>, Problem> {
    let Some(name) = value else { return Ok(None) };
    let ok = !name.trim().is_empty()
        && chars(name) <= MAX_FILENAME
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if ok {
        Ok(Some(name.to_owned()))
    } else {
        Err(unprocessable(
            "invalid_field",
            field,
            format!("`{field}` is a file name of 1 to {MAX_FILENAME} characters, without a path"),
        ))
    }
}

/// A wamid as Meta gives them (`wamid.` and printable ASCII).
pub fn wamid(value: &str, field: &str) -> Result<String, Problem> {
    let ok = value.starts_with("wamid.")
        && value.len() <= 256
        && value.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(unprocessable(
            "invalid_field",
            field,
            format!(
                "`{field}` is a message's wamid (`wamid.…`), as events and the history give it"
            ),
        ))
    }
}

pub fn media(m: MediaInput, reply_to: Option<String>) -> Result<Content, Problem> {
    let kind = m
        .kind
        .filter(|k| MEDIA_KINDS.contains(&k.as_str()))
        .ok_or_else(|| {
            unprocessable(
                "invalid_field",
                "media.type",
                "`media.type` is document, image, video, audio or sticker",
            )
        })?;
    let media = media_ref(m.link.as_deref(), m.id.as_deref(), "media")?;
    if m.caption.is_some() && matches!(kind.as_str(), "audio" | "sticker") {
        return Err(unprocessable(
            "invalid_field",
            "media.caption",
            format!("a {kind} has no caption"),
        ));
    }
    if m.filename.is_some() && kind != "document" {
        return Err(unprocessable(
            "invalid_field",
            "media.filename",
            "only a document has a file name",
        ));
    }
    Ok(Content::Media {
        kind,
        media,
        caption: optional(m.caption.as_deref(), "media.caption", MAX_CAPTION)?,
        filename: filename(m.filename.as_deref(), "media.filename")?,
        reply_to,
    })
}

pub fn location(l: LocationInput, reply_to: Option<String>) -> Result<Content, Problem> {
    let latitude = l
        .latitude
        .filter(|v| v.is_finite() && (-90.0..=90.0).contains(v))
        .ok_or_else(|| {
            unprocessable(
                "invalid_field",
                "location.latitude",
                "`location.latitude` is a number from -90 to 90",
            )
        })?;
    let longitude = l
        .longitude
        .filter(|v| v.is_finite() && (-180.0..=180.0).contains(v))
        .ok_or_else(|| {
            unprocessable(
                "invalid_field",
                "location.longitude",
                "`location.longitude` is a number from -180 to 180",
            )
        })?;
    Ok(Content::Location {
        latitude,
        longitude,
        name: optional(l.name.as_deref(), "location.name", 1000)?,
        address: optional(l.address.as_deref(), "location.address", 1000)?,
        reply_to,
    })
}

pub fn reaction(r: ReactionInput) -> Result<Content, Problem> {
    let message_id = wamid(
        r.message_id.as_deref().unwrap_or_default(),
        "reaction.message_id",
    )?;
    let emoji = r.emoji.ok_or_else(|| {
        unprocessable(
            "missing_field",
            "reaction.emoji",
            "`reaction.emoji` is required (empty removes a reaction)",
        )
    })?;
    // One emoji, possibly a sequence joined by zero-width joiners and modifiers: no letters,
    // digits or spaces, and short.
    let ok = chars(&emoji) <= 10
        && !emoji
            .chars()
            .any(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || c.is_control());
    if !ok {
        return Err(unprocessable(
            "invalid_field",
            "reaction.emoji",
            "`reaction.emoji` is one emoji, or empty to remove a reaction",
        ));
    }
    Ok(Content::Reaction { message_id, emoji })
}

/// A template header parameter's shape (its value may still come from a merge field).
pub fn header(h: &HeaderInput) -> Result<(), Problem> {
    let kind = h
        .kind
        .as_deref()
        .filter(|k| HEADER_KINDS.contains(k))
        .ok_or_else(|| {
            unprocessable(
                "invalid_field",
                "template.header.type",
                "`template.header.type` is text, image, video or document",
            )
        })?;
    if kind == "text" {
        if h.link.is_some() || h.id.is_some() || h.filename.is_some() {
            return Err(unprocessable(
                "invalid_field",
                "template.header.link",
                "a text header takes `text` or `merge_field`, not media",
            ));
        }
        match (&h.text, &h.merge_field) {
            (Some(text), None) => header_text(text).map(|_| ()),
            (None, Some(_)) => Ok(()),
            _ => Err(unprocessable(
                "invalid_field",
                "template.header.text",
                "a text header needs exactly one of `text` and `merge_field`",
            )),
        }
    } else {
        if h.text.is_some() || h.merge_field.is_some() {
            return Err(unprocessable(
                "invalid_field",
                "template.header.text",
                format!("an {kind} header takes `link` or `id`, not text"),
            ));
        }
        if h.filename.is_some() && kind != "document" {
            return Err(unprocessable(
                "invalid_field",
                "template.header.filename",
                "only a document header has a file name",
            ));
        }
        media_ref(h.link.as_deref(), h.id.as_deref(), "template.header")?;
        filename(h.filename.as_deref(), "template.header.filename").map(|_| ())
    }
}

/// A text header's value: 1–60 characters on one line.
pub fn header_text(text: &str) -> Result<String, Problem> {
    let value = bounded(Some(text), "template.header.text", MAX_HEADER_TEXT)?;
    if value.contains(['\n', '\r']) {
        return Err(unprocessable(
            "invalid_field",
            "template.header.text",
            "`template.header.text` is one line",
        ));
    }
    Ok(value)
}

/// The template's button parameters' shapes: indexes 0–9, each once, with a known sub-type.
pub fn buttons(buttons: &[ButtonInput]) -> Result<(), Problem> {
    let mut seen = HashSet::new();
    for (n, b) in buttons.iter().enumerate() {
        let field = format!("template.buttons[{n}]");
        let index = b.index.filter(|i| *i <= 9).ok_or_else(|| {
            unprocessable(
                "invalid_field",
                &format!("{field}.index"),
                format!("`{field}.index` is the button's position in the template, 0 to 9"),
            )
        })?;
        if !seen.insert(index) {
            return Err(unprocessable(
                "invalid_field",
                &format!("{field}.index"),
                format!("button {index} is given twice"),
            ));
        }
        let sub_type = b
            .sub_type
            .as_deref()
            .filter(|s| BUTTON_SUB_TYPES.contains(s))
            .ok_or_else(|| {
                unprocessable(
                    "invalid_field",
                    &format!("{field}.sub_type"),
                    format!("`{field}.sub_type` is url, quick_reply or copy_code"),
                )
            })?;
        match (&b.value, &b.merge_field) {
            (Some(v), None) => {
                button_value(sub_type, v, &format!("{field}.value"))?;
            }
            (None, Some(_)) => {}
            _ => {
                return Err(unprocessable(
                    "invalid_field",
                    &format!("{field}.value"),
                    format!("`{field}` needs exactly one of `value` and `merge_field`"),
                ));
            }
        }
    }
    Ok(())
}

/// A button parameter's value for its sub-type: a URL suffix (at most 2,000 characters, no
/// spaces), a quick-reply payload (at most 1,000) or a copy code (at most 15, Meta's limit).
pub fn button_value(sub_type: &str, value: &str, field: &str) -> Result<String, Problem> {
    let max = match sub_type {
        "url" => 2000,
        "quick_reply" => 1000,
        _ => 15,
    };
    let value = bounded(Some(value), field, max)?;
    if sub_type == "url" && value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(unprocessable(
            "invalid_field",
            field,
            format!("`{field}` is the end of a URL: no spaces"),
        ));
    }
    Ok(value)
}
