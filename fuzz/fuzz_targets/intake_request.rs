//! Intake as HTTP and AMQP run it: the body's bytes → JSON → `SendRequest` → `validate`, and the
//! idempotency key. Input: the key, a newline, then the body. Properties: never panics; what
//! validates keeps the documented limits (README "Sending a message").

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use wafleet_core::contract::{Kind, SendRequest, TemplateParameters};
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
        DraftBody::Text(text) => {
            assert!((1..=4096).contains(&text.chars().count()));
            assert!(!text.trim().is_empty() && no_nul(text));
        }
        DraftBody::Template {
            name,
            language,
            parameters,
            merge_fields,
        } => {
            assert!(!name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            assert!(!language.trim().is_empty() && no_nul(language));
            assert!(parameters.is_none() || merge_fields.is_none());
            let values: Vec<&String> = match parameters {
                Some(TemplateParameters::Positional(v)) => v.iter().collect(),
                Some(TemplateParameters::Named(m)) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
                None => Vec::new(),
            };
            assert!(values.iter().all(|v| no_nul(v)));
            let merged = merge_fields.iter().flatten();
            assert!(merged.flat_map(|(k, v)| [k, v]).all(|s| no_nul(s)));
        }
    }
});
