//! The `X-Hub-Signature-256` check. Properties: arbitrary secrets, bodies and headers never
//! panic; the signature of the body verifies (with the whitespace a proxy may add); a header
//! that verifies is the full HMAC of the body (never a prefix, never under another secret).

#![no_main]

use libfuzzer_sys::fuzz_target;
use wafleet_webhooks::signature::{sign, verify};

fuzz_target!(|input: (String, Vec<u8>, Option<String>)| {
    let (secret, body, header) = input;
    let valid = sign(&secret, &body);
    if verify(&secret, &body, header.as_deref()) {
        let presented = header
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        assert_eq!(
            presented, valid,
            "a header other than the body's HMAC verified"
        );
    }
    assert!(verify(&secret, &body, Some(&valid)));
    assert!(verify(&secret, &body, Some(&format!(" {valid}\t"))));
    // One bit of the body or one hex digit of the signature off: refused.
    let mut other = body.clone();
    match other.first_mut() {
        Some(b) => *b ^= 1,
        None => other.push(0),
    }
    assert!(!verify(&secret, &other, Some(&valid)));
    let truncated = &valid[..valid.len() - 2];
    assert!(!verify(&secret, &body, Some(truncated)));
    assert!(!verify(&secret, &body, None));
});
