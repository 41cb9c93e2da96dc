//! Domain newtypes, validated once at the edge: phone numbers in E.164, ids, record references.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, schemars::JsonSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A company using wafleet (one Meta business portfolio).
    TenantId
);
id_type!(
    /// Our id for a message, in both directions; sent to Meta as `biz_opaque_callback_data`.
    MessageId
);
id_type!(
    /// A sender phone number registered for a tenant.
    SenderId
);

/// A phone number in E.164 (`+447400123456`), validated with libphonenumber's metadata.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    e164: String,
    country: Option<String>,
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the number must be in E.164 form, starting with + and the country code")]
    NotE164,
    #[error("the number could not be parsed")]
    Unparseable,
    #[error("the number may hold only digits after the +, and spaces, dashes, dots or brackets")]
    Unexpected,
    #[error("the number is not a valid number for its country")]
    Invalid,
}

/// The most digits an E.164 number has (country code included).
const MAX_E164_DIGITS: usize = 15;

impl PhoneNumber {
    /// Parses a number given with its `+` country code. Spaces, dashes, dots and brackets are
    /// allowed and dropped; anything else is refused, never rewritten: libphonenumber would turn
    /// letters into digits (`+44-7400-24011a` → `…112`, a message to the wrong person) and drop
    /// an extension. A national number without `+` is refused rather than guessed (Meta would
    /// prepend the sender's own country code and misdeliver).
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if !trimmed.starts_with('+') {
            return Err(PhoneError::NotE164);
        }
        if !trimmed[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
        {
            return Err(PhoneError::Unexpected);
        }
        let parsed = phonenumber::parse(None, trimmed).map_err(|_| PhoneError::Unparseable)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        // E.164 allows 15 digits at most; libphonenumber's metadata admits some longer ones
        // (German numbers of 17 digits), which no network delivers to.
        if e164.len() > MAX_E164_DIGITS + 1 {
            return Err(PhoneError::Invalid);
        }
        // Normalising only drops separators: a number whose digits libphonenumber changed (it
        // read "+1 4(415255" as +14414415255) would reach someone else, so it is refused.
        if !e164[1..]
            .chars()
            .eq(trimmed.chars().filter(char::is_ascii_digit))
        {
            return Err(PhoneError::Invalid);
        }
        let country = parsed.country().id().map(|id| format!("{id:?}"));
        Ok(Self { e164, country })
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// ISO 3166-1 alpha-2 country of the number, when the metadata knows it.
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }

    /// The number as logs and spans may show it: `+44******0123`.
    pub fn masked(&self) -> String {
        mask_phone(&self.e164)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    /// Displays masked: a phone number must never reach a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.e164
    }
}

/// Masks all but the country prefix and the last four digits of any phone-like string.
pub fn mask_phone(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let keep_head = 3.min(chars.len());
    let keep_tail = 4;
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_head || i >= chars.len() - keep_tail {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// Whom a message concerns in the recruiting product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    Candidate,
    Contact,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::Contact => "contact",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "candidate" => Some(Self::Candidate),
            "contact" => Some(Self::Contact),
            _ => None,
        }
    }
}

/// A candidate or contact record of the upstream product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    #[serde(rename = "type")]
    pub kind: RecordType,
    pub id: String,
}

/// What an API key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Sender,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Sender => "sender",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reader" => Some(Self::Reader),
            "sender" => Some(Self::Sender),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The lifecycle states a user sees (SPEC §3).
pub mod state {
    pub const ACCEPTED: &str = "accepted";
    pub const QUEUED: &str = "queued";
    pub const DEFERRED: &str = "deferred";
    pub const DISPATCHING: &str = "dispatching";
    pub const SENT: &str = "sent";
    pub const DELIVERED: &str = "delivered";
    pub const READ: &str = "read";
    pub const PLAYED: &str = "played";
    pub const REJECTED: &str = "rejected";
    pub const FAILED: &str = "failed";
    pub const EXPIRED: &str = "expired";
    pub const CANCELLED: &str = "cancelled";
    pub const RECEIVED: &str = "received";

    /// Where a Meta status sits on the forward-only ladder; `None` for states Meta never reports.
    pub fn status_rank(status: &str) -> Option<i32> {
        match status {
            SENT => Some(1),
            DELIVERED => Some(2),
            READ => Some(3),
            PLAYED => Some(4),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_international_number_is_normalised_to_e164_with_its_country() {
        let n = PhoneNumber::parse("+44 7400 123-456").unwrap();
        assert_eq!(n.as_str(), "+447400123456");
        assert_eq!(n.country(), Some("GB"));
        let us = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(us.country(), Some("US"));
    }

    #[test]
    fn a_number_without_country_code_is_refused() {
        assert_eq!(PhoneNumber::parse("07700900123"), Err(PhoneError::NotE164));
        assert!(PhoneNumber::parse("+12").is_err());
        assert!(PhoneNumber::parse("+abc").is_err());
    }

    #[test]
    fn a_number_with_letters_or_an_extension_is_refused_never_rewritten() {
        for input in [
            "+44-7400-24011a",
            "+44 7400 240110 ext",
            "+44 7400 240110 x12",
            "+44 7400 240110;ext=1",
            "+44\u{0}7400240110",
            "+44 7400 240110 #",
        ] {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(PhoneError::Unexpected),
                "{input}"
            );
        }
        assert!(PhoneNumber::parse("+44 (7400) 240.110").is_ok());
    }

    #[test]
    fn a_number_longer_than_e164_allows_is_refused() {
        // Found by the `phone_number` fuzz target: libphonenumber calls this German number
        // valid, but its 17 digits are more than E.164's 15.
        assert_eq!(
            PhoneNumber::parse("+495) 555473357796-22"),
            Err(PhoneError::Invalid)
        );
        assert_eq!(
            PhoneNumber::parse("+49 555547335779622"),
            Err(PhoneError::Invalid)
        );
        assert!(PhoneNumber::parse("+49 30 123456789").is_ok());
    }

    #[test]
    fn a_number_whose_digits_the_parser_would_change_is_refused() {
        // Found by the `phone_number` fuzz target: libphonenumber made +14414415255 of this.
        assert_eq!(PhoneNumber::parse("+1 4(415255"), Err(PhoneError::Invalid));
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-2671").unwrap().as_str(),
            "+14155552671"
        );
    }

    #[test]
    fn numbers_are_masked_wherever_they_are_printed() {
        let n = PhoneNumber::parse("+447400123456").unwrap();
        assert_eq!(n.to_string(), "+44******3456");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+44******3456)");
    }
}
