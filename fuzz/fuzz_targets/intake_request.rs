//! Intake as HTTP and AMQP run it: the body's bytes → JSON → `SendRequest` → `validate`, and the
//! idempotency key. Input: the key, a newline, then the body. Properties: never panics; what
//! validates keeps the documented limits (README "Sending a message").

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use wafleet_core::contract::{Content, Kind, MediaRef, SendRequest, TemplateParameters};
use wafleet_ingest::{
    accept::Idempotency,
    validate::{DraftBody, validate},
};

fuzz_target!(|data: &[u8]| {
    let (key, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let Ok(raw) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Ok(key) = std::str::from_utf8(key)
        && let Ok(idem) = Idempotency::new(key.to_owned(), &raw)
    {
        assert!((1..=255).contains(&idem.key.len()));
        assert!(idem.key.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
        assert_eq!(idem.request_hash.len(), 32);
    }
    let Ok(request) = SendRequest::deserialize(&raw) else {
        return;
    };
    let Ok(draft) = validate(request) else {
        return;
    };
    let no_nul = |s: &str| !s.contains('\0');
    let to = draft.to.as_str();
    assert!(to.starts_with('+') && to[1..].bytes().all(|b| b.is_ascii_digit()));
    assert!(!draft.record.id.is_empty() && draft.record.id.len() <= 200);
    assert!(no_nul(&draft.record.id));
    assert!(
        draft
            .user_id
            .as_deref()
            .is_none_or(|u| !u.is_empty() && no_nul(u))
    );
    if let Some(sender) = &draft.sender {
        assert!(!sender.is_empty() && sender.bytes().all(|b| b.is_ascii_digit()));
    }
    if draft.campaign_id.is_some() {
        assert_eq!(draft.kind, Kind::Bulk);
    }
    match &draft.body {
        DraftBody::Free(content) => free_form(content),
        DraftBody::Template {
            name,
            language,
            parameters,
            merge_fields,
            header,
            buttons,
        } => {
            assert!(!name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            assert!(!language.trim().is_empty() && no_nul(language));
            let merges_beyond_body = header.as_ref().is_some_and(|h| h.merge_field.is_some())
                || buttons.iter().any(|b| b.merge_field.is_some());
            assert!(parameters.is_none() || merge_fields.is_none() || merges_beyond_body);
            let values: Vec<&String> = match parameters {
                Some(TemplateParameters::Positional(v)) => v.iter().collect(),
                Some(TemplateParameters::Named(m)) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
                None => Vec::new(),
            };
            assert!(values.iter().all(|v| no_nul(v)));
            let merged = merge_fields.iter().flatten();
            assert!(merged.flat_map(|(k, v)| [k, v]).all(|s| no_nul(s)));
            if let Some(h) = header {
                // Exactly one source: text or a merge field for text, link or id for media.
                let kind = h.kind.as_deref().unwrap_or_default();
                if kind == "text" {
                    assert!(h.text.is_some() != h.merge_field.is_some());
                    assert!(h.text.as_deref().is_none_or(|t| t.chars().count() <= 60));
                } else {
                    assert!(["image", "video", "document"].contains(&kind));
                    assert!(h.link.is_some() != h.id.is_some());
                }
            }
            let mut indexes: Vec<u8> = buttons.iter().filter_map(|b| b.index).collect();
            assert_eq!(indexes.len(), buttons.len());
            indexes.sort();
            indexes.dedup();
            assert_eq!(indexes.len(), buttons.len(), "each button index once");
            assert!(indexes.iter().all(|i| *i <= 9));
        }
    }
});

/// Free-form content within Meta's limits (README "Rich messages").
fn free_form(content: &Content) {
    let no_nul = |s: &str| !s.contains('\0');
    let wamid = |w: &str| w.starts_with("wamid.") && w.len() <= 256;
    match content {
        Content::Text { body, reply_to } => {
            assert!((1..=4096).contains(&body.chars().count()));
            assert!(!body.trim().is_empty() && no_nul(body));
            assert!(reply_to.as_deref().is_none_or(wamid));
        }
        Content::Media {
            kind,
            media,
            caption,
            filename,
            reply_to,
        } => {
            assert!(["document", "image", "video", "audio", "sticker"].contains(&kind.as_str()));
            match media {
                MediaRef::Link(l) => assert!(l.starts_with("https://") || l.starts_with("http://")),
                MediaRef::Id(id) => assert!(!id.is_empty() && id.len() <= 128),
            }
            assert!(caption.as_deref().is_none_or(|c| c.chars().count() <= 1024 && no_nul(c)));
            assert!(caption.is_none() || !["audio", "sticker"].contains(&kind.as_str()));
            assert!(filename.is_none() || kind == "document");
            assert!(reply_to.as_deref().is_none_or(wamid));
        }
        Content::Interactive { interactive, .. } => {
            let body = interactive["body"]["text"].as_str().unwrap_or_default();
            assert!((1..=1024).contains(&body.chars().count()));
            if interactive["type"] == "button" {
                let n = interactive["action"]["buttons"].as_array().map_or(0, Vec::len);
                assert!((1..=3).contains(&n));
            } else {
                assert_eq!(interactive["type"], "list");
                let rows: usize = interactive["action"]["sections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s["rows"].as_array().map_or(0, Vec::len))
                    .sum();
                assert!((1..=10).contains(&rows));
            }
        }
        Content::Location {
            latitude, longitude, ..
        } => {
            assert!(latitude.is_finite() && latitude.abs() <= 90.0);
            assert!(longitude.is_finite() && longitude.abs() <= 180.0);
        }
        Content::Reaction { message_id, emoji } => {
            assert!(wamid(message_id));
            assert!(emoji.chars().count() <= 10 && !emoji.chars().any(|c| c.is_ascii_alphanumeric()));
        }
        Content::Template { .. } => panic!("a template is never free-form"),
    }
}

