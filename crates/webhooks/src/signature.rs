//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the exact raw body bytes under the app
//! secret, compared in constant time, before anything is parsed. Re-serialised JSON would not
//! match (Meta escapes non-ASCII as `\uXXXX`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// True when `header` is `sha256=<hex>` of `body` under `secret`.
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The header value for `body` (the simulator and tests sign with it).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Constant-time comparison of a presented verify token with ours.
pub fn tokens_match(presented: &str, ours: &str) -> bool {
    presented.as_bytes().ct_eq(ours.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_signed_with_the_app_secret_verifies() {
        let body = "{\"text\":\"Ol\\u00e1\"}".as_bytes();
        assert!(verify("s3cret", body, Some(&sign("s3cret", body))));
    }

    #[test]
    fn a_wrong_missing_or_malformed_signature_does_not() {
        let body = b"{}";
        assert!(!verify("s3cret", body, Some(&sign("other", body))));
        assert!(!verify("s3cret", body, None));
        assert!(!verify("s3cret", body, Some("sha256=zz")));
        assert!(!verify("s3cret", body, Some("md5=abc")));
        assert!(!verify("s3cret", b"{} ", Some(&sign("s3cret", body))));
    }
}
