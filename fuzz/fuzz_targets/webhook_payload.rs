//! The webhook payload parser, minus the tenant lookup: arbitrary bytes as a verified body.
//! Properties: nothing panics, and every item of a `messages` change is either used (a status,
//! an inbound message) or kept raw with its reason; none is silently dropped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wafleet_core::domain::TenantId;
use wafleet_webhooks::{
    account_fields, fields,
    inbound::InboundItem,
    payload::{self, Parsed},
    statuses::StatusItem,
};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let tenant: TenantId = "00000000-0000-0000-0000-000000000001".parse().unwrap();
    // The body may also be a bare item: the item parsers see every shape.
    check_status(&body);
    check_inbound(&body);
    let _ = fields::unix_time(Some(&body));
    let _ = account_fields::parse_tier(&body);

    let mut out = Parsed::default();
    let mut expected = Counts::default();
    for entry in body
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        payload::sort_entry(&mut out, tenant, entry);
        expected.add(entry);
    }
    let used = Counts {
        statuses: out.statuses.values().map(Vec::len).sum(),
        messages: out.inbound.values().map(Vec::len).sum(),
        errors: 0,
        others: out.changes.len(),
    };
    let dead = |reason: &str| out.dead.iter().filter(|(_, r, _)| r == reason).count();
    let unhandled = out
        .dead
        .iter()
        .filter(|(_, r, _)| r.starts_with("unhandled_field:"))
        .count();
    assert_eq!(used.statuses + dead("bad_status"), expected.statuses);
    assert_eq!(used.messages + dead("bad_message"), expected.messages);
    assert_eq!(dead("meta_error"), expected.errors);
    assert_eq!(used.others + unhandled, expected.others);
    for (_, change) in &out.changes {
        assert!(fields::HANDLED.contains(&change.field.as_str()));
    }
    for item in out.statuses.values().flatten() {
        check_status(&item.raw);
    }
    for item in out.inbound.values().flatten() {
        check_inbound(&item.content);
    }
});

/// Items per kind in one payload, counted independently of the parser.
#[derive(Default)]
struct Counts {
    statuses: usize,
    messages: usize,
    errors: usize,
    /// Changes of fields other than `messages`.
    others: usize,
}

impl Counts {
    fn add(&mut self, entry: &Value) {
        for change in entry
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if change.get("field").and_then(Value::as_str) != Some("messages") {
                self.others += 1;
                continue;
            }
            let len = |key: &str| {
                change
                    .pointer(&format!("/value/{key}"))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            };
            self.statuses += len("statuses");
            self.messages += len("messages");
            self.errors += len("errors");
        }
    }
}

fn check_status(raw: &Value) {
    if let Some(item) = StatusItem::parse(raw) {
        assert_eq!(
            raw.get("id").and_then(Value::as_str),
            Some(item.wamid.as_str())
        );
        assert_eq!(
            raw.get("status").and_then(Value::as_str),
            Some(item.status.as_str())
        );
    }
}

fn check_inbound(raw: &Value) {
    if let Some(item) = InboundItem::parse(raw, "106540352242922") {
        assert!(item.from.is_some() || item.from_user_id.is_some());
        if let Some(from) = &item.from {
            // `+E164`: a plus and digits only, as Meta's `from` carries no formatting.
            let digits = from.strip_prefix('+').expect("from starts with +");
            assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
        }
        let _ = item.text();
    }
}
