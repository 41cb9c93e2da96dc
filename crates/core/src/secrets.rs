//! Secrets at rest and API keys. Meta tokens and app secrets are sealed with AES-256-GCM under
//! `WAFLEET_SECRET_KEY`; API keys are random, shown once, and stored as a SHA-256 hash (they are
//! high-entropy, so a slow password hash buys nothing).

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use sha2::{Digest, Sha256};

/// Seals and opens secrets stored in the database.
#[derive(Clone)]
pub struct SecretBox {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the key must be 64 hex characters (32 bytes)")]
    BadKey,
    #[error("a sealed secret could not be opened: wrong WAFLEET_SECRET_KEY or corrupted data")]
    Open,
    #[error("the system random source failed")]
    Random,
}

impl SecretBox {
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SecretError::BadKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SecretError::BadKey)?;
        Ok(Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
        })
    }

    /// A fresh random key in the form `WAFLEET_SECRET_KEY` expects (used by the demo).
    pub fn generate_key_hex() -> Result<String, SecretError> {
        Ok(hex::encode(random_bytes::<32>()?))
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &str) -> Result<Vec<u8>, SecretError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut buf = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::empty(),
                &mut buf,
            )
            .map_err(|_| SecretError::Random)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Open)
    }
}

/// `N` bytes from the system's secure random source.
pub fn random_array<const N: usize>() -> Result<[u8; N], SecretError> {
    random_bytes::<N>()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| SecretError::Random)?;
    Ok(out)
}

/// A six-digit two-step verification PIN (uniform: bytes above the largest multiple of a
/// million are drawn again).
pub fn random_pin() -> Result<String, SecretError> {
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let n = u32::from_be_bytes(random_bytes::<4>()?);
        if n < LIMIT {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// A webhook verify token for a tenant to paste into Meta: 32 hex characters, prefixed so an
/// admin can tell it from other secrets.
pub fn random_verify_token() -> Result<String, SecretError> {
    Ok(format!("wfv_{}", hex::encode(random_bytes::<16>()?)))
}

/// A newly minted API key: the full key (shown once), its display prefix and its stored hash.
#[derive(Debug)]
pub struct NewApiKey {
    pub key: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

/// Mints an API key `wf_<prefix>_<secret>`.
pub fn mint_api_key() -> Result<NewApiKey, SecretError> {
    let prefix = hex::encode(random_bytes::<4>()?);
    let secret = hex::encode(random_bytes::<24>()?);
    let key = format!("wf_{prefix}_{secret}");
    let hash = hash_api_key(&key);
    Ok(NewApiKey { key, prefix, hash })
}

/// The stored form of an API key.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key() {
        let key = SecretBox::generate_key_hex().unwrap();
        let sb = SecretBox::from_hex(&key).unwrap();
        let sealed = sb.seal("EAAG-token").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"EAAG"));
        assert_eq!(sb.open(&sealed).unwrap(), "EAAG-token");
        let other = SecretBox::from_hex(&SecretBox::generate_key_hex().unwrap()).unwrap();
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn pins_are_six_digits_and_verify_tokens_differ() {
        for _ in 0..100 {
            let pin = random_pin().unwrap();
            assert_eq!(pin.len(), 6);
            assert!(pin.chars().all(|c| c.is_ascii_digit()));
        }
        assert_ne!(
            random_verify_token().unwrap(),
            random_verify_token().unwrap()
        );
    }

    #[test]
    fn api_keys_are_unique_and_hash_stably() {
        let a = mint_api_key().unwrap();
        let b = mint_api_key().unwrap();
        assert_ne!(a.key, b.key);
        assert_eq!(hash_api_key(&a.key), a.hash);
        assert!(a.key.starts_with(&format!("wf_{}_", a.prefix)));
    }
}
