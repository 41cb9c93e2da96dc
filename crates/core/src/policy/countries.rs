//! Allowed countries (SPEC §4): a tenant may limit the countries it sends to. The country is the
//! one the recipient's number belongs to (libphonenumber's metadata); an empty list means
//! worldwide. Checked at intake and again at dispatch, because the list can change in between.

use crate::domain::PhoneNumber;

/// Whether a number of `country` may be messaged under `allowed` (ISO 3166-1 alpha-2 codes).
/// A number whose country is unknown (e.g. an international service number) passes only when
/// the list is empty: a tenant that limits countries did not allow it.
pub fn allowed(allowed: &[String], country: Option<&str>) -> bool {
    allowed.is_empty() || country.is_some_and(|c| allowed.iter().any(|a| a.eq_ignore_ascii_case(c)))
}

/// The country of a stored E.164 recipient, if the number parses and its country is known.
pub fn country_of(recipient: &str) -> Option<String> {
    PhoneNumber::parse(recipient)
        .ok()
        .and_then(|p| p.country().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn an_empty_list_allows_every_country_even_an_unknown_one() {
        assert!(allowed(&[], Some("GB")));
        assert!(allowed(&[], None));
    }

    #[test]
    fn a_list_allows_only_its_countries() {
        let gb_ie = list(&["GB", "IE"]);
        assert!(allowed(&gb_ie, Some("GB")));
        assert!(
            allowed(&gb_ie, Some("ie")),
            "codes compare case-insensitively"
        );
        assert!(!allowed(&gb_ie, Some("US")));
        assert!(
            !allowed(&gb_ie, None),
            "an unknown country is not on any list"
        );
    }

    #[test]
    fn the_country_comes_from_the_number() {
        assert_eq!(country_of("+447400123456").as_deref(), Some("GB"));
        assert_eq!(country_of("+14155552671").as_deref(), Some("US"));
        assert_eq!(country_of("not a number"), None);
    }

    proptest! {
        #[test]
        fn a_country_is_allowed_exactly_when_listed_or_the_list_is_empty(
            codes in proptest::collection::vec("[A-Z]{2}", 0..6),
            country in "[A-Z]{2}",
        ) {
            let expected = codes.is_empty() || codes.contains(&country);
            prop_assert_eq!(allowed(&codes, Some(&country)), expected);
        }
    }
}
