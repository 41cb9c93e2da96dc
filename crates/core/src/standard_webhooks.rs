//! The Standard Webhooks signature scheme (<https://www.standardwebhooks.com>), as wafleet signs
//! its notifications to tenants' endpoints: headers `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`, one or more space-separated `v1,<base64>` entries, each
//! the HMAC-SHA256 of `<id>.<timestamp>.<body>` under a secret serialised as `whsec_<base64>`.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of a serialised secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the spec asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// A new endpoint secret, `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> Result<String, crate::secrets::SecretError> {
    let bytes = crate::secrets::random_array::<SECRET_BYTES>()?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// The HMAC key of a serialised secret; `None` if it is not `whsec_<base64>`.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()
}

/// One signature entry, `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header for every key in force (the current secret and, during a
/// rotation, the previous one), space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn the_reference_libraries_vector_signs_the_same() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_is_whsec_and_32_random_bytes() {
        let a = new_secret().unwrap();
        assert!(a.starts_with("whsec_"));
        assert_eq!(secret_key(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret().unwrap());
        assert_eq!(secret_key("wf_nope"), None);
    }

    #[test]
    fn during_a_rotation_both_secrets_sign() {
        let h = signature_header(&[vec![1; 32], vec![2; 32]], "msg_1", 5, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&[1; 32], "msg_1", 5, b"{}"));
    }
}
