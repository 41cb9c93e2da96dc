//! E.164 normalisation (`PhoneNumber::parse`). Properties: never panics; an accepted number is
//! `+` and digits, at most 15 of them, re-parses to itself, and holds only digits of the input
//! in their order (nothing rewritten or invented); input with a letter is never accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wafleet_core::domain::PhoneNumber;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(number) = PhoneNumber::parse(input) else {
        return;
    };
    assert!(
        !input.chars().any(char::is_alphabetic),
        "a number with a letter was accepted: {input:?}"
    );
    let e164 = number.as_str();
    let digits = e164.strip_prefix('+').expect("E.164 starts with +");
    assert!(!digits.is_empty() && digits.len() <= 15, "{e164}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{e164}");
    let again = PhoneNumber::parse(e164).expect("an accepted number re-parses");
    assert_eq!(again.as_str(), e164);
    assert_eq!(again.country(), number.country());
    let mut given = input.chars().filter(char::is_ascii_digit);
    assert!(
        digits.chars().all(|d| given.any(|g| g == d)),
        "{e164} holds digits {input:?} does not"
    );
});
